//! `burn-compress speedup`: masks -> a physically smaller model, with shapes, params, MACs and
//! measured latency before and after.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::prelude::*;
use burn_compress::MaskSet;
use burn_compress::core::ModuleIndex;
use burn_compress::device::DeviceChoice;
use burn_compress::graph::count;
use burn_compress::speedup::{ConflictPolicy, DependencyGraph, apply, save_pruned};
use burn_compress::zoo::{AnyModel, dispatch};
use burn_compress::zoo_capture::capture_zoo;
use serde_json::json;

use crate::cli::ModelArgs;
use crate::table::table;

/// Arguments of `speedup`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Masks (the MaskSet file `prune` writes).
    #[arg(long)]
    masks: PathBuf,
    /// Example input shape, comma-separated, of the model's input kind: images
    /// `batch,channels,height,width` (`1,3,64,64`), feature vectors `batch,features` (`4,64` for
    /// mlp), token ids `batch,seq` (tiny-transformer). Default: a batch of 1 of the size the
    /// model was built for.
    #[arg(long, value_delimiter = ',')]
    input_shape: Vec<usize>,
    /// Output base path: writes `<out>.bpk` (weights) and `<out>.plan.json`.
    #[arg(long)]
    out: PathBuf,
    /// When a group's masks disagree: keep a channel any mask keeps (`union`, NNI's rule) or
    /// remove a channel any mask removes (`intersection`).
    #[arg(long, default_value = "union")]
    policy: String,
    /// Timed forward passes for latency (median reported).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Where the models load, shrink and are timed: `cpu` (Burn's flex backend) or `vulkan`
    /// (a build with the `gpu` feature).
    #[arg(long, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// Median forward latency in milliseconds on `device` (the shape was checked beforehand).
fn latency_ms(
    model: &AnyModel,
    shape: &[usize],
    device: &Device,
    runs: usize,
) -> anyhow::Result<f64> {
    let run = || model.forward_example(shape, device).map(|t| t.into_data());
    for _ in 0..2 {
        run()?;
    }
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        run()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let arch = args.model.arch()?;
    let device = args.device.init()?;
    let policy = match args.policy.as_str() {
        "union" => ConflictPolicy::Union,
        "intersection" => ConflictPolicy::Intersection,
        other => bail!("--policy '{other}': expected 'union' or 'intersection'"),
    };
    let shape = if args.input_shape.is_empty() {
        arch.input_kind().example_shape(1)
    } else {
        args.input_shape.clone()
    };
    arch.input_kind().check(arch, &shape)?;
    let model = args.model.load(arch, &device)?;
    let masks = MaskSet::load(&args.masks)?;
    let started = Instant::now();
    let graph = capture_zoo(&model, &shape)?;
    let deps = DependencyGraph::build(&graph)?;
    let index = dispatch!(&model, m => ModuleIndex::from_module(m));
    let report = deps.plan(&masks, &index, policy)?;
    let small = dispatch!(map &model, m => apply(m, &report.plan))?;
    let speedup_seconds = started.elapsed().as_secs_f64();
    let after_graph = capture_zoo(&small, &shape)?;
    let (before, after) = (count(&graph), count(&after_graph));
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let (weights_file, plan_file) =
        dispatch!(&small, m => save_pruned(m, &report.plan, &args.out))?;
    let (lat_before, lat_after) = (
        latency_ms(&model, &shape, &device, args.runs)?,
        latency_ms(&small, &shape, &device, args.runs)?,
    );

    let small_index = dispatch!(&small, m => ModuleIndex::from_module(m));
    // Every layer, changed or not, with each parameter's shape before and after.
    let layers: Vec<serde_json::Value> = index
        .layers()
        .iter()
        .map(|l| {
            let params: serde_json::Map<String, serde_json::Value> = l
                .params
                .iter()
                .map(|p| {
                    let after = small_index
                        .param(&p.path)
                        .map(|q| q.shape.clone())
                        .unwrap_or_default();
                    (p.name.clone(), json!({"before": p.shape, "after": after}))
                })
                .collect();
            let changed = params.values().any(|s| s["before"] != s["after"]);
            json!({"path": l.path, "type": l.type_name, "changed": changed, "params": params})
        })
        .collect();
    if args.json {
        let out = json!({
            "layers": layers,
            "params_before": before.params, "params_after": after.params,
            "macs_before": before.macs, "macs_after": after.macs,
            "latency_ms_before": lat_before, "latency_ms_after": lat_after,
            "device": args.device.to_string(), "input_shape": shape,
            "channels_removed": report.removed, "channels": report.channels,
            "skipped": report.skipped.len(), "speedup_seconds": speedup_seconds,
            "weights": weights_file, "plan": plan_file,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut t = table(&["layer", "type", "param", "before", "after"]);
    for l in &layers {
        for (name, shapes) in l["params"].as_object().into_iter().flatten() {
            t.add_row(vec![
                l["path"].as_str().unwrap_or_default().to_string(),
                l["type"].as_str().unwrap_or_default().to_string(),
                name.clone(),
                shapes["before"].to_string(),
                shapes["after"].to_string(),
            ]);
        }
    }
    println!("{t}");
    let mut summary = table(&["", "before", "after", "ratio"]);
    let ratio = |a: f64, b: f64| format!("{:.2}x", a / b.max(f64::MIN_POSITIVE));
    summary.add_row(vec![
        "params".into(),
        before.params.to_string(),
        after.params.to_string(),
        ratio(before.params as f64, after.params as f64),
    ]);
    summary.add_row(vec![
        "MACs".into(),
        before.macs.to_string(),
        after.macs.to_string(),
        ratio(before.macs as f64, after.macs as f64),
    ]);
    summary.add_row(vec![
        format!("latency (ms, median of {}, {})", args.runs, args.device),
        format!("{lat_before:.3}"),
        format!("{lat_after:.3}"),
        ratio(lat_before, lat_after),
    ]);
    println!("{summary}");
    println!(
        "removed {} of {} channels ({} kept because pinned) in {:.3} s; wrote {} and {}",
        report.removed,
        report.channels,
        report.skipped.len(),
        speedup_seconds,
        weights_file.display(),
        plan_file.display()
    );
    Ok(())
}
