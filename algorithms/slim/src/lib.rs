//! # prune-slim: Network Slimming
//!
//! NNI's `SlimPruner` (Liu et al., "Learning Efficient Convolutional Networks through Network
//! Slimming", ICCV 2017): every block of a target gets a learnable scaling factor `s`
//! (initialised to 1), the target is used as `w * s`, the loss gets
//! `regular_scale * mean over targets of ||s||_1`, and the factors are trained by their own Adam
//! at lr 1e-2 for `training_steps` steps. The metric is `|s|`: small factors are pruned first.
//! The usual target is BatchNorm's `gamma` (NNI's `weight`).
//!
//! Registry name: `slim`. Default granularity: output channel.
//!
//! | key | meaning |
//! | --- | --- |
//! | `training_steps` | steps before the masks are generated (integer >= 1, default 1) |
//! | `regular_scale` | weight of the L1 penalty (>= 0, default 1.0) |
//!
//! Training goes through [`compress_core::scores::LearnedScores`]: attach the factors, train with the
//! hook, then [`LearnedScores::finish`](compress_core::scores::LearnedScores::finish) for the masks.
//! Unlike NNI, which leaves the bias mask all ones (so its speedup removes nothing), the bias
//! of a pruned channel is masked with it, so the channel can really be removed.
#![warn(missing_docs)]

use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, Dense, MetricInput, Pruner, Result,
    registry::AlgorithmOptions,
    scores::{ScoreForward, ScorePenalty, ScoreSpec, ScoreTrigger},
};

/// The Slim pruner.
#[derive(Debug, Clone, Copy)]
pub struct SlimPruner {
    /// Steps before the masks are generated.
    pub training_steps: usize,
    /// Weight of the L1 penalty on the factors.
    pub regular_scale: f64,
}

impl Pruner for SlimPruner {
    fn learned_scores(&self) -> Option<ScoreSpec> {
        Some(ScoreSpec {
            init: 1.0,
            forward: ScoreForward::Scale,
            lr: 1e-2,
            regular_scale: self.regular_scale,
            penalty: ScorePenalty::L1Mean,
            trigger: ScoreTrigger::Once {
                training_steps: self.training_steps,
            },
        })
    }

    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        let factors = input.trained(
            "slim",
            "scaling factors",
            "compress_core::scores::LearnedScores",
        )?;
        Ok(factors.map(|x| x.abs()))
    }
}

fn build(options: &compress_core::toml::Table) -> Result<Algorithm> {
    let o = AlgorithmOptions::new("slim", options);
    Ok(Algorithm::Pruner(Box::new(SlimPruner {
        training_steps: o.usize("training_steps", 1, 1)?,
        regular_scale: o.f64("regular_scale", 1.0, |x| x >= 0.0, "a number >= 0")?,
    })))
}

inventory::submit! {
    AlgorithmEntry {
        name: "slim",
        kind: AlgorithmKind::Pruner,
        summary: "learned per-channel scaling factors with an L1 penalty; NNI SlimPruner",
        config_keys: &["training_steps", "regular_scale"],
        build,
    }
}
