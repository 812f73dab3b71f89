//! # prune-level: magnitude pruning
//!
//! NNI's `LevelPruner` (Han et al., "Learning both Weights and Connections for Efficient Neural
//! Networks", 2015): the metric of each element is `|w|`, so the smallest weights are pruned.
//! With a block granularity the metric is the L1 norm of each block.
//!
//! Registry name: `level`. Default granularity: fine-grained. It has no options of its own:
//!
//! | key | meaning |
//! | --- | --- |
//! | (none) | all settings come from `config_list` |
//!
//! ```
//! use compress_core::{AlgorithmEntry, CompressConfig, prune};
//! use burn::nn::LinearConfig;
//! use burn::prelude::*;
//! use prune_level as _; // link the crate so it registers
//!
//! let model = LinearConfig::new(16, 8).init(&Device::flex());
//! let config = CompressConfig::from_toml("[[config_list]]\nop_types = ['Linear']\nsparse_ratio = 0.75")?;
//! let pruner = AlgorithmEntry::find("level")?.build_pruner(&Default::default())?;
//! let outcome = prune(&model, &config, pruner.as_ref())?;
//! assert_eq!(outcome.masks.stats().targets[1].sparsity(), 0.75); // weight; [0] is the bias
//! # Ok::<(), compress_core::CompressError>(())
//! ```
#![warn(missing_docs)]

use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, Dense, Granularity, MetricInput, Pruner, Result,
};

/// The level pruner: `|w|` per element, or the L1 norm per block.
#[derive(Debug, Clone, Copy, Default)]
pub struct LevelPruner;

impl Pruner for LevelPruner {
    fn default_granularity(&self) -> Granularity {
        Granularity::Fine
    }

    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        input.scaling.shrink_sum(
            input.weight,
            true,
            &input.target.path,
            f32::abs,
            |sum, _| sum as f32,
        )
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "level",
        kind: AlgorithmKind::Pruner,
        summary: "magnitude |w| per element (L1 per block with a block granularity); NNI LevelPruner",
        config_keys: &[],
        build: |_| Ok(Algorithm::Pruner(Box::new(LevelPruner))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compress_core::{Target, granularity::Scaling};

    fn target(shape: Vec<usize>) -> Target {
        Target {
            layer: "l".into(),
            layer_type: "Conv2d".into(),
            name: "weight".into(),
            path: "l.weight".into(),
            shape,
            out_axis: Some(0),
            in_axis: Some(1),
            role: None,
            setting: Default::default(),
            rule: 0,
        }
    }

    /// LevelPruner's metric of the weight `w` blocked by `scaling`.
    fn metric(w: &Dense<f32>, scaling: &Scaling) -> Dense<f32> {
        let t = target(w.shape().to_vec());
        LevelPruner
            .metric(&MetricInput {
                target: &t,
                weight: w,
                grad: None,
                scaling,
            })
            .unwrap()
    }

    #[test]
    fn the_metric_of_an_element_is_its_absolute_value() {
        let w = Dense::new(vec![2, 2], vec![-3.0, 1.0, 0.5, -0.25]);
        let m = metric(&w, &Scaling::fine());
        assert_eq!(m.data(), &[3.0, 1.0, 0.5, 0.25]);
    }

    #[test]
    fn with_blocks_the_metric_is_the_l1_norm_of_each_block() {
        let w = Dense::new(vec![2, 4], vec![-1.0, 1.0, 2.0, -2.0, 0.5, 0.5, 3.0, 0.0]);
        let s = Scaling::new(vec![2], compress_core::granularity::KernelPadding::Front, 1);
        let m = metric(&w, &s);
        assert_eq!(m.shape(), &[2, 2]);
        assert_eq!(m.data(), &[2.0, 4.0, 1.0, 3.0]);
    }
}
