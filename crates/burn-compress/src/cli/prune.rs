//! `burn-compress prune`: masks for a zoo model, a per-layer sparsity table, optional accuracy.

use std::path::PathBuf;

use anyhow::{Context, bail};
use burn::prelude::*;
use burn_compress::core::{ImageDataset, accuracy};
use burn_compress::zoo::{AnyModel, dispatch};
use burn_compress::{AlgorithmEntry, CompressConfig, MaskSet, prune};

use super::ModelArgs;
use super::report::{percent, table};

/// Arguments of `prune`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The config file.
    #[arg(long)]
    config: PathBuf,
    /// Where to write the masks (safetensors, keys = Burn parameter paths, u8 1 = keep).
    #[arg(long)]
    out: PathBuf,
    /// Registry name of the pruner; default: the config's [algorithm] name.
    #[arg(long)]
    algorithm: Option<String>,
    /// Also measure test accuracy (split: index % 5 == 4) before and after masking on this
    /// image dataset (safetensors `images` u8 + `labels`).
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let device = Device::flex();
    let arch = args.model.arch()?;
    let config = CompressConfig::from_file(&args.config)?;
    let (name, options) = match (&args.algorithm, &config.algorithm) {
        (Some(name), Some(section)) if *name == section.name => {
            (name.clone(), section.options.clone())
        }
        (Some(name), _) => (name.clone(), Default::default()),
        (None, Some(section)) => (section.name.clone(), section.options.clone()),
        (None, None) => {
            bail!("no pruner: pass --algorithm NAME or give the config an [algorithm] table")
        }
    };
    let pruner = AlgorithmEntry::find(&name)?.build_pruner(&options)?;
    let model = args.model.load(arch, &device)?;
    let outcome = dispatch!(&model, m => prune(m, &config, pruner.as_ref()))?;
    for w in &outcome.resolved.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    outcome.masks.save(&args.out)?;

    let accuracies = match &args.eval {
        Some(path) => {
            let size = arch.input_shape(1)[2];
            let max_pixel = if size == 8 { 16.0 } else { 255.0 };
            let (_, test) = ImageDataset::load(path, max_pixel)?.split();
            if (test.height, test.width) != (size, size) {
                bail!(
                    "'{}' holds {}x{} images, '{arch}' takes {size}x{size}",
                    path.display(),
                    test.height,
                    test.width
                );
            }
            let masked = apply(&model, &outcome.masks)?;
            Some((
                accuracy(&model, &test, |m: &AnyModel, x| m.forward(x), &device),
                accuracy(&masked, &test, |m: &AnyModel, x| m.forward(x), &device),
            ))
        }
        None => None,
    };
    print_report(&args, &name, &outcome.masks, accuracies)
}

fn apply(model: &AnyModel, masks: &MaskSet) -> anyhow::Result<AnyModel> {
    Ok(dispatch!(map model, m => masks.apply_hard(m))?)
}

fn print_report(
    args: &Args,
    algorithm: &str,
    masks: &MaskSet,
    accuracies: Option<(f64, f64)>,
) -> anyhow::Result<()> {
    let stats = masks.stats();
    if args.json {
        let targets: Vec<serde_json::Value> = stats
            .targets
            .iter()
            .map(|t| {
                serde_json::json!({
                    "path": t.path, "shape": t.shape, "kept": t.kept, "total": t.total, "sparsity": t.sparsity(),
                })
            })
            .collect();
        let mut report = serde_json::json!({
            "arch": args.model.arch, "algorithm": algorithm, "masks": args.out,
            "targets": targets, "kept": stats.kept, "total": stats.total, "sparsity": stats.sparsity(),
        });
        if let Some((dense, masked)) = accuracies {
            report["accuracy_dense"] = dense.into();
            report["accuracy_masked"] = masked.into();
        }
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut t = table(&["parameter", "shape", "kept", "total", "sparsity"]);
    for s in &stats.targets {
        t.add_row(vec![
            s.path.clone(),
            format!("{:?}", s.shape),
            s.kept.to_string(),
            s.total.to_string(),
            percent(s.sparsity()),
        ]);
    }
    t.add_row(vec![
        "total".to_string(),
        String::new(),
        stats.kept.to_string(),
        stats.total.to_string(),
        percent(stats.sparsity()),
    ]);
    println!(
        "{algorithm} on {}: masks written to {}",
        args.model.arch,
        args.out.display()
    );
    println!("{t}");
    if let Some((dense, masked)) = accuracies {
        println!(
            "test accuracy: dense {} -> masked {}",
            percent(dense),
            percent(masked)
        );
    }
    Ok(())
}
