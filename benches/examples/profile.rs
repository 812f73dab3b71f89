//! Time each pruner once on ResNet-50's conv weights (a quick look; the bench is the measurement).
use burn::prelude::*;
use burn_compress::{AlgorithmEntry, CompressConfig, prune};
use burn_compress_benches::ConvStack;

fn main() {
    let model = ConvStack::resnet50(&Device::flex());
    let config =
        CompressConfig::from_toml("[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\n")
            .expect("valid");
    for name in ["level", "l1-norm", "l2-norm", "fpgm"] {
        let pruner = AlgorithmEntry::find(name)
            .expect("registered")
            .build_pruner(&Default::default())
            .expect("builds");
        for _ in 0..3 {
            let t = std::time::Instant::now();
            prune(&model, &config, pruner.as_ref()).expect("prunes");
            eprintln!("{name}: {:?}", t.elapsed());
        }
    }
}
