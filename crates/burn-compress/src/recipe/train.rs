//! `kind = "train"` and `kind = "finetune"`: cross-entropy training with Adam.

use serde::{Deserialize, Serialize};

use super::{Progress, RecipeError, at_least_one, err, non_negative, typed};

/// A train (or fine-tune) step. Fine-tuning comes after a prune step, and the masks stay in
/// force while it runs, so pruned weights never come back.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainStep {
    /// Passes over the training data (default 1).
    pub epochs: usize,
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Images per step (default 64).
    pub batch_size: usize,
    /// Stop after this many steps, if set.
    pub max_steps: Option<usize>,
    /// `finetune` (after a prune) rather than `train`.
    #[serde(skip)]
    pub finetune: bool,
}

impl Default for TrainStep {
    fn default() -> Self {
        Self {
            epochs: 1,
            lr: 1e-3,
            batch_size: 64,
            max_steps: None,
            finetune: false,
        }
    }
}

impl TrainStep {
    /// `train` or `finetune`: the stage's name in the report.
    pub fn name(&self) -> &'static str {
        if self.finetune { "finetune" } else { "train" }
    }
}

pub(super) fn parse(
    t: &compress_core::toml::Table,
    finetune: bool,
    ctx: &str,
    progress: &mut Progress,
) -> Result<TrainStep, RecipeError> {
    let mut step: TrainStep = typed(t, &["kind"], ctx)?;
    if finetune && !progress.pruned {
        return Err(err(ctx, "finetune comes after a prune step"));
    }
    at_least_one(step.epochs, "epochs", ctx)?;
    at_least_one(step.batch_size, "batch_size", ctx)?;
    if let Some(n) = step.max_steps {
        at_least_one(n, "max_steps", ctx)?;
    }
    non_negative(step.lr, "lr", ctx)?;
    step.finetune = finetune;
    progress.trained = true;
    Ok(step)
}
