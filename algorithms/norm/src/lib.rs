//! # prune-norm: L1-norm and L2-norm filter pruning
//!
//! NNI's `L1NormPruner` and `L2NormPruner` (Li et al., "Pruning Filters for Efficient
//! ConvNets", ICLR 2017): the metric of each block is its L1 norm `Σ|w|` or L2 norm
//! `sqrt(Σw²)`. The default block is one output channel, on the layer's real output axis (the
//! [`LayerSpec`](compress_core::layers::LayerSpec) says axis 0 for convs, axis 1 for Burn's Linear).
//!
//! Registry names: `l1-norm`, `l2-norm`. No options of their own.
//!
//! ```
//! use compress_core::{AlgorithmEntry, CompressConfig, prune};
//! use burn::nn::conv::Conv2dConfig;
//! use burn::prelude::*;
//! use prune_norm as _;
//!
//! let conv = Conv2dConfig::new([3, 8], [3, 3]).init(&Device::flex());
//! let config = CompressConfig::from_toml("[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5")?;
//! let pruner = AlgorithmEntry::find("l2-norm")?.build_pruner(&Default::default())?;
//! let outcome = prune(&conv, &config, pruner.as_ref())?;
//! assert_eq!(outcome.metrics["weight"].values.shape(), &[8, 1, 1, 1]);
//! # Ok::<(), compress_core::CompressError>(())
//! ```
#![warn(missing_docs)]

use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, Dense, MetricInput, Pruner, Result};

/// Which norm a [`NormPruner`] takes of each block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// `Σ|w|`.
    L1,
    /// `sqrt(Σw²)`.
    L2,
}

/// The norm pruner.
#[derive(Debug, Clone, Copy)]
pub struct NormPruner {
    /// The norm.
    pub norm: Norm,
}

impl Pruner for NormPruner {
    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        let (s, w, path) = (input.scaling, input.weight, &input.target.path);
        match self.norm {
            Norm::L1 => s.shrink_sum(w, true, path, f32::abs, |sum, _| sum as f32),
            Norm::L2 => s.shrink_sum(w, true, path, |x| x * x, |sum, _| sum.sqrt() as f32),
        }
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "l1-norm",
        kind: AlgorithmKind::Pruner,
        summary: "L1 norm of each block (default: output channel); NNI L1NormPruner",
        config_keys: &[],
        build: |_| Ok(Algorithm::Pruner(Box::new(NormPruner { norm: Norm::L1 }))),
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "l2-norm",
        kind: AlgorithmKind::Pruner,
        summary: "L2 norm of each block (default: output channel); NNI L2NormPruner",
        config_keys: &[],
        build: |_| Ok(Algorithm::Pruner(Box::new(NormPruner { norm: Norm::L2 }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compress_core::{Target, granularity::Scaling};

    fn linear_target() -> Target {
        Target {
            layer: "fc".into(),
            layer_type: "Linear".into(),
            name: "weight".into(),
            path: "fc.weight".into(),
            shape: vec![2, 3],
            out_axis: Some(1),
            in_axis: Some(0),
            role: None,
            setting: Default::default(),
            rule: 0,
        }
    }

    #[test]
    fn norms_of_burn_linear_output_channels_run_down_the_columns() {
        // Burn Linear [in=2, out=3]: output channel j is column j.
        let w = Dense::new(vec![2, 3], vec![3.0, -1.0, 0.0, 4.0, 1.0, -2.0]);
        let t = linear_target();
        let s = Scaling::along_axis(1, 2);
        let input = MetricInput {
            target: &t,
            weight: &w,
            grad: None,
            scaling: &s,
        };
        let l1 = NormPruner { norm: Norm::L1 }.metric(&input).unwrap();
        assert_eq!(l1.shape(), &[1, 3]);
        assert_eq!(l1.data(), &[7.0, 2.0, 2.0]);
        let l2 = NormPruner { norm: Norm::L2 }.metric(&input).unwrap();
        assert_eq!(l2.data(), &[5.0, 2.0f32.sqrt(), 2.0]);
    }
}
