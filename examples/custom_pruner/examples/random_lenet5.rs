//! Prune the bundled LeNet-5 with the random pruner and compare it with L1-norm.

use burn::prelude::*;
use burn_compress::zoo::{AnyModel, Arch, dispatch};
use burn_compress::{AlgorithmEntry, CompressConfig, prune};
use custom_pruner as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = AnyModel::load(
        Arch::LeNet5,
        &root.join("data/lenet5-mnist5k.safetensors"),
        &Device::flex(),
    )?;
    let config = CompressConfig::from_file(root.join("configs/lenet5-l1.toml"))?;
    for name in ["random", "l1-norm"] {
        let pruner = AlgorithmEntry::find(name)?.build_pruner(&Default::default())?;
        let outcome = dispatch!(&model, m => prune(m, &config, pruner.as_ref()))?;
        let kept: Vec<String> = outcome
            .masks
            .iter()
            .filter(|(p, _)| p.ends_with("bias"))
            .map(|(p, m)| {
                format!(
                    "{p}: {:?}",
                    m.data()
                        .iter()
                        .enumerate()
                        .filter(|(_, k)| **k == 1)
                        .map(|(i, _)| i)
                        .collect::<Vec<_>>()
                )
            })
            .collect();
        println!("{name}:\n  {}", kept.join("\n  "));
    }
    Ok(())
}
