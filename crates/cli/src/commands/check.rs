//! `burn-compress check CONFIG.toml [--arch NAME]`: validate a config and explain it.

use std::path::PathBuf;

use anyhow::Context;
use burn::prelude::*;
use burn_compress::zoo::{AnyModel, Arch, dispatch};
use burn_compress::{AlgorithmEntry, CompressConfig, ModuleIndex};

/// Arguments of `check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The config file (TOML, NNI config_list keys).
    config: PathBuf,
    /// Also resolve the rules against this zoo model and list the targets they hit.
    #[arg(long)]
    arch: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = CompressConfig::from_file(&args.config)?;
    if let Some(algo) = &config.algorithm {
        let entry = AlgorithmEntry::find(&algo.name)?;
        entry.build(&algo.options)?;
        println!(
            "algorithm: {} ({}): {}",
            entry.name, entry.kind, entry.summary
        );
    }
    for rule in &config.rules {
        println!("{}: {}", rule.context(), rule.describe());
    }
    if let Some(arch) = &args.arch {
        let arch: Arch = arch.parse()?;
        let model = AnyModel::init(arch, &Device::flex());
        let index = dispatch!(&model, m => ModuleIndex::from_module(m));
        let resolved = config
            .resolve(&index)
            .with_context(|| format!("resolving against '{arch}'"))?;
        let mut table = crate::table::table(&["target", "type", "shape", "rule", "setting"]);
        for t in &resolved.targets {
            let setting = match (
                t.setting.sparse_ratio,
                t.setting.sparse_threshold,
                &t.setting.align,
            ) {
                (Some(r), _, _) => format!("ratio {r}"),
                (_, Some(th), _) => format!("threshold {th}"),
                (_, _, Some(a)) => format!("follows {}", a.target_name),
                _ => t
                    .setting
                    .quant_dtype
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
            };
            table.add_row(vec![
                t.path.clone(),
                t.layer_type.clone(),
                format!("{:?}", t.shape),
                format!("config_list[{}]", t.rule),
                setting,
            ]);
        }
        println!("{table}");
        for w in &resolved.warnings {
            eprintln!("warning: {w}");
        }
    }
    println!("{}: ok", args.config.display());
    Ok(())
}
