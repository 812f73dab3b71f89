//! # prune-taylor: first-order Taylor importance
//!
//! NNI's `TaylorPruner` (Molchanov et al., "Importance Estimation for Neural Network Pruning",
//! CVPR 2019): during `training_steps` steps the per-element statistic `(w * dL/dw)^2` is
//! accumulated and averaged; the metric of a block is its sum (the L1 norm of non-negative
//! values). Small values = removing the block changes the loss least.
//!
//! Registry name: `taylor`. Default granularity: output channel.
//!
//! | key | meaning |
//! | --- | --- |
//! | `training_steps` | steps to accumulate over (integer >= 1, default 1) |
//!
//! The gradients come from the training loop ([`compress_core::train::GradientStatistics`] collects
//! [`Pruner::gradient_statistic`] after every backward); the metric is then computed by
//! [`compress_core::prune::prune_with_grads`].
#![warn(missing_docs)]

use burn::prelude::*;
use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, Dense, MetricInput, Pruner, Result,
    registry::{AlgorithmOptions, MetricNeeds},
};

/// The Taylor pruner.
#[derive(Debug, Clone, Copy)]
pub struct TaylorPruner {
    /// Steps to accumulate over.
    pub training_steps: usize,
}

impl Pruner for TaylorPruner {
    fn needs(&self) -> MetricNeeds {
        MetricNeeds::Gradients
    }

    fn training_steps(&self) -> usize {
        self.training_steps
    }

    fn gradient_statistic(&self, weight: Tensor<1>, grad: Tensor<1>) -> Tensor<1> {
        (weight * grad).powf_scalar(2.0)
    }

    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        let grad = input.trained("taylor", "gradient statistic", "GradientStatistics")?;
        input
            .scaling
            .shrink_sum(grad, true, &input.target.path, |x| x, |sum, _| sum as f32)
    }
}

fn build(options: &compress_core::toml::Table) -> Result<Algorithm> {
    let training_steps = AlgorithmOptions::new("taylor", options).usize("training_steps", 1, 1)?;
    Ok(Algorithm::Pruner(Box::new(TaylorPruner { training_steps })))
}

inventory::submit! {
    AlgorithmEntry {
        name: "taylor",
        kind: AlgorithmKind::Pruner,
        summary: "first-order Taylor importance (w * dL/dw)^2 per block; NNI TaylorPruner",
        config_keys: &["training_steps"],
        build,
    }
}
