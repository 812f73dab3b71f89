//! `kind = "prune"`: masks from a registered pruner, run by compress-core's one pruning driver.

use std::path::PathBuf;

use compress_core::toml::Table;
use compress_core::{AlgorithmEntry, CompressConfig, driver::PruneSchedule, schedule::Schedule};
use serde::{Deserialize, Serialize};

use super::{Progress, RecipeError, at_least_one, err, non_negative, typed};

/// A prune step as written. The pruner runs the way it declares (one-shot, gradients, learned
/// scores; see [`compress_core::prune_model`]); with `schedule` it prunes gradually while
/// training.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PruneStep {
    /// The config file (required).
    pub config: PathBuf,
    /// Registry name of the pruner; default: the config's `[algorithm]` name.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// `"agp"` or `"linear"`: prune gradually while training.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Mask updates of the schedule (default 10).
    #[serde(default = "ten")]
    pub total_times: usize,
    /// Steps between mask updates (default 20).
    #[serde(default = "twenty")]
    pub interval_steps: usize,
    /// Training epochs of the scheduled pruning phase (default 1).
    #[serde(default = "one")]
    pub epochs: usize,
    /// Learning rate of that training (default 1e-3).
    #[serde(default = "lr")]
    pub lr: f64,
    /// Images per training step (default 64).
    #[serde(default = "batch")]
    pub batch_size: usize,
    /// Also write the final masks here (safetensors, as `burn-compress prune --out` does).
    #[serde(default)]
    pub masks: Option<PathBuf>,
}

fn ten() -> usize {
    10
}
fn twenty() -> usize {
    20
}
fn one() -> usize {
    1
}
fn lr() -> f64 {
    1e-3
}
fn batch() -> usize {
    64
}

/// A checked prune step.
#[derive(Debug, Clone)]
pub struct Prune {
    /// Registry name of the pruner.
    pub algorithm: String,
    /// The config.
    pub config: CompressConfig,
    /// Options for the pruner.
    pub options: Table,
    /// The schedule, if the step has one.
    pub schedule: Option<PruneSchedule>,
    /// The step as written.
    pub step: PruneStep,
}

impl Prune {
    /// The registered pruner this step names, built from its options (`ctx` names the step).
    pub(crate) fn pruner(&self, ctx: &str) -> Result<Box<dyn compress_core::Pruner>, RecipeError> {
        AlgorithmEntry::find(&self.algorithm)
            .and_then(|e| e.build_pruner(&self.options))
            .map_err(|e| err(ctx, e))
    }
}

/// The step's config file and its algorithm: the step's `algorithm` key, else the config's
/// `[algorithm]` name (with its options), else `default`.
pub(super) fn config_and_algorithm(
    config_path: &std::path::Path,
    algorithm: Option<&str>,
    ctx: &str,
    default: Option<&str>,
) -> Result<(CompressConfig, String, Table), RecipeError> {
    let config = CompressConfig::from_file(config_path).map_err(|e| err(ctx, e))?;
    let (algorithm, options) = match (algorithm, &config.algorithm) {
        (Some(a), Some(s)) if a == s.name => (a.to_string(), s.options.clone()),
        (Some(a), _) => (a.to_string(), Table::new()),
        (None, Some(s)) => (s.name.clone(), s.options.clone()),
        (None, None) => default
            .map(|d| (d.to_string(), Table::new()))
            .ok_or_else(|| {
                err(
                    ctx,
                    "name an 'algorithm' or give the config an [algorithm] table",
                )
            })?,
    };
    Ok((config, algorithm, options))
}

pub(super) fn parse(t: &Table, ctx: &str, progress: &mut Progress) -> Result<Prune, RecipeError> {
    if !t.contains_key("config") {
        return Err(err(ctx, "'config' (a config file) is required"));
    }
    let step: PruneStep = typed(t, &["kind"], ctx)?;
    if !progress.trained {
        return Err(err(
            ctx,
            "prune needs trained weights: add a train step or [model] weights",
        ));
    }
    let (config, algorithm, options) =
        config_and_algorithm(&step.config, step.algorithm.as_deref(), ctx, None)?;
    let pruner = AlgorithmEntry::find(&algorithm)
        .and_then(|e| e.build_pruner(&options))
        .map_err(|e| err(ctx, e))?;
    let schedule = match step.schedule.as_deref() {
        None => None,
        Some(kind) => {
            let total_times = at_least_one(step.total_times, "total_times", ctx)?;
            let schedule = match kind {
                "agp" => Schedule::Agp { total_times },
                "linear" => Schedule::Linear { total_times },
                _ => return Err(err(ctx, "'schedule' must be \"agp\" or \"linear\"")),
            };
            at_least_one(step.epochs, "epochs", ctx)?;
            at_least_one(step.batch_size, "batch_size", ctx)?;
            non_negative(step.lr, "lr", ctx)?;
            Some(PruneSchedule {
                schedule,
                total_times,
                interval_steps: at_least_one(step.interval_steps, "interval_steps", ctx)?,
            })
        }
    };
    compress_core::driver::PruneMode::choose(pruner.as_ref(), schedule.as_ref())
        .map_err(|e| err(ctx, e))?;
    progress.pruned = true;
    Ok(Prune {
        algorithm,
        config,
        options,
        schedule,
        step,
    })
}
