//! # prune-movement: movement pruning
//!
//! NNI's `MovementPruner` (Sanh et al., "Movement Pruning: Adaptive Sparsity by Fine-Tuning",
//! NeurIPS 2020): every block of a target gets a learnable score `S` (initialised to 0); the
//! forward uses `w * mask(S)` with a straight-through estimator, so `S` accumulates
//! `-w * dL/dw` ("movement" away from zero). The scores are trained by their own Adam at lr 1e-2
//! while the weights fine-tune. After `warmup_step` steps the masks are regenerated after every
//! step, the goal following `final * (1 - (1 - k/K)^3)` up to `cooldown_begin_step`.
//!
//! * `sparse_ratio` targets: the metric is `S`; the lowest scores are pruned.
//! * `sparse_threshold` targets: the metric is `sigmoid(S)`, blocks under the (scheduled)
//!   threshold are pruned, and the loss gets
//!   `regular_scale * cubic_ratio * mean over those targets of mean(sigmoid(S))`.
//!
//! Registry name: `movement`. Default granularity: output channel.
//!
//! | key | meaning |
//! | --- | --- |
//! | `warmup_step` | steps before any pruning (integer >= 0, default 0) |
//! | `cooldown_begin_step` | step from which the final goal holds (integer > `warmup_step`, required) |
//! | `regular_scale` | weight of the threshold-mode penalty (>= 0, default 1.0) |
#![warn(missing_docs)]

use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Dense, MetricInput, Pruner, Result,
    registry::AlgorithmOptions,
    scores::{ScoreForward, ScorePenalty, ScoreSpec, ScoreTrigger},
};

/// The movement pruner.
#[derive(Debug, Clone, Copy)]
pub struct MovementPruner {
    /// Steps before any pruning.
    pub warmup_step: usize,
    /// Step from which the final goal holds.
    pub cooldown_begin_step: usize,
    /// Weight of the threshold-mode penalty.
    pub regular_scale: f64,
}

impl Pruner for MovementPruner {
    fn learned_scores(&self) -> Option<ScoreSpec> {
        Some(ScoreSpec {
            init: 0.0,
            forward: ScoreForward::StraightThroughMask,
            lr: 1e-2,
            regular_scale: self.regular_scale,
            penalty: ScorePenalty::SigmoidMean,
            trigger: ScoreTrigger::Movement {
                warmup_step: self.warmup_step,
                cooldown_begin_step: self.cooldown_begin_step,
            },
        })
    }

    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        let scores = input.trained(
            "movement",
            "movement scores",
            "compress_core::scores::LearnedScores",
        )?;
        Ok(if input.target.setting.sparse_threshold.is_some() {
            scores.map(|&s| 1.0 / (1.0 + (-s).exp()))
        } else {
            scores.clone()
        })
    }
}

fn build(options: &compress_core::toml::Table) -> Result<Algorithm> {
    let o = AlgorithmOptions::new("movement", options);
    let warmup_step = o.usize("warmup_step", 0, 0)?;
    if !options.contains_key("cooldown_begin_step") {
        return Err(CompressError::Algorithm {
            algorithm: "movement".into(),
            message: "'cooldown_begin_step' is required (the step the final sparsity is reached)"
                .into(),
        });
    }
    let cooldown_begin_step = o.usize("cooldown_begin_step", 0, warmup_step + 1)?;
    Ok(Algorithm::Pruner(Box::new(MovementPruner {
        warmup_step,
        cooldown_begin_step,
        regular_scale: o.f64("regular_scale", 1.0, |x| x >= 0.0, "a number >= 0")?,
    })))
}

inventory::submit! {
    AlgorithmEntry {
        name: "movement",
        kind: AlgorithmKind::Pruner,
        summary: "learned scores with a straight-through mask, cubic schedule; NNI MovementPruner",
        config_keys: &["warmup_step", "cooldown_begin_step", "regular_scale"],
        build,
    }
}
