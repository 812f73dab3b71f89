//! `burn-compress quantize`: calibrate (and, for training-aware quantizers, train) a zoo model,
//! report accuracy and size, write the Burn-native quantized model and the calibration config.

use std::path::PathBuf;

use anyhow::{Context, bail};
use burn::module::Module;
use burn::prelude::*;
use burn_compress::AlgorithmKind;
use burn_compress::core::{
    dataset::ImageDataset,
    train::{OptimizerKind, TrainConfig, accuracy},
};
use burn_compress::quant::{
    AffinePolicy, MixedPrecision, SizeBudget, quantized_params, save_quantized,
};
use burn_compress::quantize::{QuantizeJob, quantize_classifier};
use burn_compress::zoo::{ImageClassifier, dispatch};
use serde_json::json;

use crate::cli::ModelConfigArgs;
use crate::commands::oneshot::{self, OneShotArgs};
use crate::table::{percent, table};

/// Arguments of `quantize`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model (an image classifier) and the quantization config.
    #[command(flatten)]
    input: ModelConfigArgs,
    /// Calibration batches of 64 images from the training split of --data (image quantizers;
    /// one-shot quantizers calibrate on the text of --calib).
    #[arg(long, default_value_t = 8)]
    calib_batches: usize,
    /// Image dataset (safetensors `images` u8 + `labels`) for calibration, training and
    /// accuracy; split: test = index % 5 == 4.
    #[arg(long, default_value = "data/mnist5k.safetensors")]
    data: PathBuf,
    /// Registry name of the quantizer; default: the config's [algorithm] name, else `ptq`.
    /// One-shot quantizers (rtn, gptq, awq, smoothquant) quantize smollm2-135m or minilm-l6
    /// calibrated on --calib.
    #[arg(long)]
    algorithm: Option<String>,
    #[command(flatten)]
    oneshot: OneShotArgs,
    /// Training epochs for qat / lsq / lsq-plus / dorefa / bnn (0: calibrate only).
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Learning rate of that training (Adam).
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Affine weight calibrations have no Burn equivalent: `error` (default) or `requantize`
    /// (symmetric max-abs scales instead).
    #[arg(long, default_value = "error")]
    affine: String,
    /// Where to write the quantized model (burnpack; 4- and 2-bit packed). One-shot quantizers
    /// write theirs with --save-model.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the calibration config (NNI's JSON: module -> target -> scale, zero_point,
    /// quant_dtype, quant_scheme, quant_bits, tracked_min, tracked_max).
    #[arg(long)]
    calibration_out: Option<PathBuf>,
    /// Weight widths: `config` (the config's quant_dtype) or `auto` (mixed precision: each
    /// quantized weight gets 8, 4 or 2 bits, chosen from its sensitivity, the relative output
    /// MSE on the calibration batches with only that weight quantized, so that the written file
    /// meets --size-budget with the least summed sensitivity). Activations keep the config's
    /// settings.
    #[arg(long, default_value = "config", value_parser = ["config", "auto"])]
    bits: String,
    /// With --bits auto: the most the written file may take, as a factor (`5x`: at least 5
    /// times smaller than the f32 file) or a size (`48000`, `48kB`, `47KiB`).
    #[arg(long, value_name = "BUDGET")]
    size_budget: Option<String>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(method) = oneshot::resolve(args.algorithm.as_deref(), &args.input)? {
        if method.kind != AlgorithmKind::OneShotQuantizer {
            bail!(
                "'{}' is a one-shot pruner: run it with `burn-compress prune`",
                method.name
            );
        }
        if let Some(out) = &args.out {
            bail!(
                "--out '{}' is for image quantizers: one-shot quantizers write the model with \
                 --save-model PATH",
                out.display()
            );
        }
        return oneshot::run(&args.input.model, &method, &args.oneshot, args.json);
    }
    let device = Device::flex();
    let arch = args.input.model.arch()?;
    let affine = match args.affine.as_str() {
        "error" => AffinePolicy::Error,
        "requantize" => AffinePolicy::Requantize,
        other => bail!("--affine '{other}': expected 'error' or 'requantize'"),
    };
    let config = args.input.config()?;
    let algorithm = args
        .algorithm
        .clone()
        .or_else(|| config.algorithm.as_ref().map(|a| a.name.clone()))
        .unwrap_or_else(|| "ptq".to_string());
    args.oneshot.refuse_for(&algorithm)?;
    if args.out.is_none() {
        bail!("give --out PATH: where to write the quantized model");
    }
    let model = args.input.model.load(arch, &device)?;
    if arch.takes_tokens() {
        bail!("quantize takes image classifiers; {arch} takes token ids");
    }
    // The dataset must hold images of the size the model takes (a mismatch would fail inside
    // the first forward pass).
    let (train, test) = super::prune::load_images(&args.data, arch)?;
    let mut job = QuantizeJob::new(&algorithm, config);
    job.calib_batches = args.calib_batches;
    job.mixed = match (args.bits.as_str(), &args.size_budget) {
        ("auto", Some(budget)) => Some(MixedPrecision::new(SizeBudget::parse(budget)?)),
        ("auto", None) => bail!("--bits auto needs --size-budget (e.g. 5x or 48kB)"),
        (_, Some(_)) => bail!("--size-budget needs --bits auto"),
        _ => None,
    };
    if args.epochs > 0 {
        job.train = Some(TrainConfig {
            epochs: args.epochs,
            lr: args.lr,
            optimizer: OptimizerKind::Adam,
            ..Default::default()
        });
    }
    dispatch!(images model,
        m => quantize(m, &args, &job, &train, &test, affine),
        _m => bail!("quantize takes image classifiers; tiny-transformer takes token ids")
    )
}

fn quantize<M: Module + ImageClassifier>(
    model: M,
    args: &Args,
    job: &QuantizeJob,
    train: &ImageDataset,
    test: &ImageDataset,
    affine: AffinePolicy,
) -> anyhow::Result<()> {
    let device = Device::flex();
    let before = accuracy(&model, test, |m, x| m.classify(x), &device);
    let trainable = if job.train.is_some() {
        model.clone().train()
    } else {
        model.clone()
    };
    let quantized = quantize_classifier(&trainable, train, job)?;
    let after = quantized.accuracy(test)?;
    let native = quantized.export(affine)?;
    let out = args.out.as_deref().context("give --out PATH")?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let written = save_quantized(&native, out)?;
    let f32_file =
        std::env::temp_dir().join(format!("burn-compress-f32-{}.bpk", std::process::id()));
    model.clone().save_file(&f32_file)?;
    let f32_bytes = std::fs::metadata(&f32_file)?.len();
    let _ = std::fs::remove_file(&f32_file);
    let q_bytes = std::fs::metadata(&written)?.len();
    let calibration = quantized.calibration();
    if let Some(path) = &args.calibration_out {
        let index = burn_compress::ModuleIndex::from_module(&model);
        calibration.save_nni_json(path, &index)?;
    }
    let schemes = quantized_params(&native);
    if args.json {
        let params: serde_json::Map<String, serde_json::Value> = schemes
            .iter()
            .map(|(p, s)| (p.clone(), json!(format!("{:?}", s.value))))
            .collect();
        let out = json!({
            "algorithm": job.algorithm,
            "accuracy_before": before, "accuracy_after": after,
            "bytes_f32": f32_bytes, "bytes_quantized": q_bytes,
            "size_ratio": f32_bytes as f64 / q_bytes.max(1) as f64,
            "quantized_params": params,
            "calibration_targets": calibration.len(),
            "mixed": quantized.mixed.as_ref().map(|p| json!({
                "budget_bytes": p.budget_bytes,
                "file_bytes": p.file_bytes,
                "predicted_loss": p.predicted_loss,
                "bits": p.layers.iter().map(|l| (l.path.clone(), json!(l.bits)))
                    .collect::<serde_json::Map<_, _>>(),
                "sensitivity": p.sensitivity.iter().map(|s| (s.path.clone(), json!(
                    s.loss.iter().map(|(b, l)| (b.to_string(), json!(l)))
                        .collect::<serde_json::Map<_, _>>()
                ))).collect::<serde_json::Map<_, _>>(),
            })),
            "out": written,
            "calibration_out": args.calibration_out,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if let Some(plan) = &quantized.mixed {
        let mut widths: Vec<String> = vec!["parameter".into()];
        widths.extend(
            plan.sensitivity
                .first()
                .map(|s| {
                    s.loss
                        .keys()
                        .rev()
                        .map(|b| format!("loss @{b} bits"))
                        .collect()
                })
                .unwrap_or_else(Vec::new),
        );
        widths.push("chosen".into());
        let headers: Vec<&str> = widths.iter().map(String::as_str).collect();
        let mut m = table(&headers);
        for (s, l) in plan.sensitivity.iter().zip(&plan.layers) {
            let mut row = vec![s.path.clone()];
            row.extend(s.loss.values().rev().map(|x| format!("{x:.2e}")));
            row.push(format!("{} bits", l.bits));
            m.add_row(row);
        }
        println!("{m}");
        println!(
            "mixed precision: budget {} bytes, file {} bytes, predicted loss {:.2e}",
            plan.budget_bytes, plan.file_bytes, plan.predicted_loss
        );
    }
    let mut t = table(&["parameter", "Burn format"]);
    for (p, s) in &schemes {
        t.add_row(vec![p.clone(), format!("{:?} ({:?})", s.value, s.store)]);
    }
    println!("{t}");
    let mut summary = table(&["", "f32", job.algorithm.as_str()]);
    summary.add_row(vec![
        "test accuracy (simulated)".into(),
        percent(before),
        percent(after),
    ]);
    summary.add_row(vec![
        "file bytes".into(),
        f32_bytes.to_string(),
        format!(
            "{q_bytes} ({:.2}x smaller)",
            f32_bytes as f64 / q_bytes.max(1) as f64
        ),
    ]);
    println!("{summary}");
    println!(
        "{} calibrated targets; wrote {}{}",
        calibration.len(),
        written.display(),
        args.calibration_out
            .as_ref()
            .map(|p| format!(" and {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}
