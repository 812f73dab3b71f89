//! `kind = "quantize"`: calibrate (and train, for the training-aware quantizers), then export
//! the weights to Burn's native quantized tensors. `bits = "auto"` with `size_budget` (`"5x"`,
//! `"48kB"`, ...) chooses each weight's width (8, 4, 2 bits) so the exported file fits.

use std::path::PathBuf;

use compress_core::toml::Table;
use compress_core::{
    AlgorithmEntry,
    train::{OptimizerKind, TrainConfig},
};
use serde::{Deserialize, Serialize};

use super::prune::config_and_algorithm;
use super::{Progress, RecipeError, at_least_one, err, non_negative, typed};
use crate::quantize::QuantizeJob;

/// A quantize step as written. It is the last step that changes the model (only evaluate and
/// report may follow).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeStep {
    /// The quantization config file (required).
    pub config: PathBuf,
    /// Registry name of the quantizer; default: the config's `[algorithm]` name, else `ptq`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Calibration batches (default 8).
    #[serde(default = "eight")]
    pub calib: usize,
    /// Training epochs for the training-aware quantizers; absent: calibrate only.
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Learning rate of that training (default 1e-4).
    #[serde(default = "lr")]
    pub lr: f64,
    /// Images per calibration batch and training step (default 64).
    #[serde(default = "batch")]
    pub batch_size: usize,
    /// Affine weight calibrations: `"error"` (default) or `"requantize"` (symmetric instead).
    #[serde(default)]
    pub affine: Option<String>,
    /// Weight widths: `"config"` (default: the config's `quant_dtype`) or `"auto"` (mixed
    /// precision: 8, 4 or 2 bits per layer from its sensitivity, to meet `size_budget`).
    #[serde(default)]
    pub bits: Option<String>,
    /// The exported file's budget with `bits = "auto"`: `"5x"` (times smaller than f32) or a
    /// size (`"48000"`, `"48kB"`, `"47KiB"`).
    #[serde(default)]
    pub size_budget: Option<String>,
}

fn eight() -> usize {
    8
}
fn lr() -> f64 {
    1e-4
}
fn batch() -> usize {
    64
}

/// A checked quantize step.
#[derive(Debug, Clone)]
pub struct Quantize {
    /// What to quantize and how.
    pub job: QuantizeJob,
    /// Affine weight calibrations: refuse or requantize symmetric.
    pub affine: compress_quant::AffinePolicy,
}

pub(super) fn parse(
    t: &Table,
    ctx: &str,
    progress: &mut Progress,
) -> Result<Quantize, RecipeError> {
    if !t.contains_key("config") {
        return Err(err(ctx, "'config' (a config file) is required"));
    }
    let step: QuantizeStep = typed(t, &["kind"], ctx)?;
    if !progress.trained {
        return Err(err(
            ctx,
            "quantize needs trained weights: add a train step or [model] weights",
        ));
    }
    let (config, algorithm, options) =
        config_and_algorithm(&step.config, step.algorithm.as_deref(), ctx, Some("ptq"))?;
    AlgorithmEntry::find(&algorithm)
        .and_then(|e| e.build_quantizer(&options))
        .map_err(|e| err(ctx, e))?;
    let mut job = QuantizeJob::new(&algorithm, config);
    job.options = options;
    job.calib_batches = at_least_one(step.calib, "calib", ctx)?;
    job.batch_size = at_least_one(step.batch_size, "batch_size", ctx)?;
    if let Some(epochs) = step.epochs {
        job.train = Some(TrainConfig {
            epochs: at_least_one(epochs, "epochs", ctx)?,
            lr: non_negative(step.lr, "lr", ctx)?,
            batch_size: job.batch_size,
            max_steps: None,
            optimizer: OptimizerKind::Adam,
            seed: progress.seed,
            progress: true,
        });
    }
    let affine = match step.affine.as_deref() {
        None | Some("error") => compress_quant::AffinePolicy::Error,
        Some("requantize") => compress_quant::AffinePolicy::Requantize,
        Some(other) => {
            return Err(err(
                ctx,
                format!("'affine' must be \"error\" or \"requantize\", found \"{other}\""),
            ));
        }
    };
    job.mixed = match (step.bits.as_deref(), step.size_budget.as_deref()) {
        (None | Some("config"), None) => None,
        (Some("auto"), Some(budget)) => Some(compress_quant::MixedPrecision::new(
            compress_quant::SizeBudget::parse(budget).map_err(|e| err(ctx, e))?,
        )),
        (Some("auto"), None) => {
            return Err(err(
                ctx,
                "'bits = \"auto\"' needs a 'size_budget' (\"5x\", \"48kB\", ...)",
            ));
        }
        (None | Some("config"), Some(_)) => {
            return Err(err(ctx, "'size_budget' needs 'bits = \"auto\"'"));
        }
        (Some(other), _) => {
            return Err(err(
                ctx,
                format!("'bits' must be \"config\" or \"auto\", found \"{other}\""),
            ));
        }
    };
    progress.quantized = true;
    Ok(Quantize { job, affine })
}
