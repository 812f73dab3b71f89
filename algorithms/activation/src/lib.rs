//! # prune-activation: APoZ and mean-activation channel pruning
//!
//! Two pruners that score each **output channel** of a layer by what the layer produces on
//! data, NNI's `ActivationAPoZRankPruner` and `ActivationMeanRankPruner` (NNI v2.10,
//! `basic_pruner.py`):
//!
//! - `apoz` (Hu et al., "Network Trimming", 2016): importance = `1 - APoZ`, where APoZ is the
//!   average percentage of zeros of the channel's activation over batch and space.
//! - `mean-activation` (Molchanov et al., "Pruning Convolutional Neural Networks for Resource
//!   Efficient Inference", 2017, §2.2): importance = the channel's mean activation.
//!
//! Lowest importance is pruned first. Default granularity: output channel (the only one they
//! accept).
//!
//! **Where the statistic is taken.** As NNI does: on the target layer's own output (the Conv2d
//! or Linear call, after its bias), passed through this pruner's `activation` function (ReLU by
//! default), not on whatever the model applies next. NNI registers a forward hook on the
//! layer and computes `activation(output)` in the hook; here compress-graph's replay taps give
//! the layer output (`burn_compress::pruning::prune_captured`). So APoZ counts the elements
//! with `activation(output) == 0`, i.e. `output <= 0` for ReLU, even if a BatchNorm sits between
//! the layer and the model's ReLU.
//!
//! **How it is averaged.** Per batch, the statistic is the mean over batch and space of each
//! channel; the metric is the mean of that over the batches (each batch weighs the same, as
//! NNI's collector sums per-batch means and divides by the batch count). With equal batches
//! this is the plain mean over every example.
//!
//! **No training.** Statistics come from inference only: the weights stay bit-identical. NNI
//! trains the model while collecting (its collector runs the user's training loop, NNI issue
//! #5405); we do not.
//!
//! | key | meaning |
//! | --- | --- |
//! | `batches` | data batches to collect over (integer >= 1, default 20; NNI's `training_steps`) |
//! | `activation` | `"relu"` (default), `"relu6"` or `"gelu"`: applied to the layer output first |
#![warn(missing_docs)]

use burn::prelude::*;
use burn::tensor::activation::{gelu, relu};
use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Dense, MetricInput, Pruner, Result,
    activations::channel_metric,
    registry::{AlgorithmOptions, MetricNeeds},
};

/// The function applied to a layer's output before the statistic (NNI's `activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// GELU (exact, erf-based).
    Gelu,
}

impl Activation {
    /// Parse a config value.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] for `algorithm` naming the key and the accepted values.
    pub fn parse(algorithm: &str, value: &str) -> Result<Self> {
        match value {
            "relu" => Ok(Activation::Relu),
            "relu6" => Ok(Activation::Relu6),
            "gelu" => Ok(Activation::Gelu),
            other => Err(CompressError::Algorithm {
                algorithm: algorithm.into(),
                message: format!(
                    "'activation' must be \"relu\", \"relu6\" or \"gelu\", found \"{other}\""
                ),
            }),
        }
    }

    /// Apply it.
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => relu(x),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::Gelu => gelu(x),
        }
    }
}

/// Which statistic of the activation scores a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// `1 - APoZ`: the fraction of non-zero activations.
    NonZeroFraction,
    /// The mean activation.
    Mean,
}

/// An activation pruner (`apoz` or `mean-activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationPruner {
    /// The statistic.
    pub statistic: Statistic,
    /// The function applied to the layer output first.
    pub activation: Activation,
    /// Batches to collect over.
    pub batches: usize,
}

impl ActivationPruner {
    /// The registry name of this pruner's statistic.
    pub fn name(&self) -> &'static str {
        match self.statistic {
            Statistic::NonZeroFraction => APOZ,
            Statistic::Mean => MEAN_ACTIVATION,
        }
    }
}

/// Registry name of the APoZ pruner.
pub const APOZ: &str = "apoz";
/// Registry name of the mean-activation pruner.
pub const MEAN_ACTIVATION: &str = "mean-activation";

impl Pruner for ActivationPruner {
    fn needs(&self) -> MetricNeeds {
        MetricNeeds::Activations
    }

    fn training_steps(&self) -> usize {
        self.batches
    }

    fn activation_statistic(&self, output: Tensor<3>) -> Tensor<1> {
        let [_, channels, _] = output.dims();
        let a = self.activation.apply(output);
        let per_channel = |t: Tensor<3>| t.mean_dim(2).mean_dim(0).reshape([channels]);
        match self.statistic {
            Statistic::NonZeroFraction => {
                let zeros = per_channel(a.equal_elem(0.0).float());
                zeros.neg().add_scalar(1.0)
            }
            Statistic::Mean => per_channel(a),
        }
    }

    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        channel_metric(self.name(), input, input.observed(self.name())?)
    }
}

fn build(statistic: Statistic, options: &compress_core::toml::Table) -> Result<Algorithm> {
    let name = match statistic {
        Statistic::NonZeroFraction => APOZ,
        Statistic::Mean => MEAN_ACTIVATION,
    };
    let batches = AlgorithmOptions::new(name, options).usize("batches", 20, 1)?;
    let activation = match options.get("activation") {
        None => Activation::Relu,
        Some(v) => match v.as_str() {
            Some(s) => Activation::parse(name, s)?,
            None => {
                return Err(CompressError::Algorithm {
                    algorithm: name.into(),
                    message: format!(
                        "'activation' must be \"relu\", \"relu6\" or \"gelu\", found {v}"
                    ),
                });
            }
        },
    };
    Ok(Algorithm::Pruner(Box::new(ActivationPruner {
        statistic,
        activation,
        batches,
    })))
}

inventory::submit! {
    AlgorithmEntry {
        name: "apoz",
        kind: AlgorithmKind::Pruner,
        summary: "1 - average percentage of zeros of each output channel's activation over data batches (no training); NNI ActivationAPoZRankPruner",
        config_keys: &["batches", "activation"],
        build: |o| build(Statistic::NonZeroFraction, o),
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "mean-activation",
        kind: AlgorithmKind::Pruner,
        summary: "mean of each output channel's activation over data batches (no training); NNI ActivationMeanRankPruner",
        config_keys: &["batches", "activation"],
        build: |o| build(Statistic::Mean, o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compress_core::{Granularity, Target, granularity::Scaling};

    fn pruner(statistic: Statistic, activation: Activation) -> ActivationPruner {
        ActivationPruner {
            statistic,
            activation,
            batches: 1,
        }
    }

    /// `[batch 2, channels 3, rest 2]`: channel 0 all positive, channel 1 half zero after ReLU,
    /// channel 2 all negative.
    fn output() -> Tensor<3> {
        let values = [
            1.0, 2.0, -1.0, 3.0, -2.0, -0.5, //
            4.0, 1.0, 5.0, -3.0, -1.0, -7.0,
        ];
        Tensor::<1>::from_floats(values, &Device::flex()).reshape([2, 3, 2])
    }

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn apoz_is_one_minus_the_zero_fraction_over_batch_and_space() {
        let p = pruner(Statistic::NonZeroFraction, Activation::Relu);
        assert_eq!(values(p.activation_statistic(output())), [1.0, 0.5, 0.0]);
    }

    #[test]
    fn mean_activation_is_the_mean_after_the_activation() {
        let p = pruner(Statistic::Mean, Activation::Relu);
        // Channel 0: (1 + 2 + 4 + 1) / 4; channel 1: (3 + 5) / 4; channel 2: 0.
        assert_eq!(values(p.activation_statistic(output())), [2.0, 2.0, 0.0]);
        let p = pruner(Statistic::Mean, Activation::Relu6);
        let big = Tensor::<1>::from_floats([10.0, -1.0], &Device::flex()).reshape([1, 1, 2]);
        assert_eq!(values(p.activation_statistic(big)), [3.0]);
    }

    fn target(shape: Vec<usize>, out_axis: usize) -> Target {
        Target {
            layer: "fc".into(),
            layer_type: "Linear".into(),
            name: "weight".into(),
            path: "fc.weight".into(),
            shape,
            out_axis: Some(out_axis),
            in_axis: Some(1 - out_axis),
            role: None,
            setting: Default::default(),
            rule: 0,
        }
    }

    #[test]
    fn the_metric_puts_each_channel_statistic_on_the_output_axis() {
        // A Linear weight [in 2, out 3]: output channels on axis 1.
        let t = target(vec![2, 3], 1);
        let weight = Dense::full(vec![2, 3], 1.0);
        let stat = Dense::new(vec![3], vec![0.25, 0.5, 0.75]);
        let scaling = Granularity::OutChannel
            .scaling(2, Some(1), Some(0), "fc.weight")
            .unwrap();
        let p = pruner(Statistic::Mean, Activation::Relu);
        let m = p
            .metric(&MetricInput {
                target: &t,
                weight: &weight,
                grad: Some(&stat),
                scaling: &scaling,
            })
            .unwrap();
        assert_eq!(m.shape(), &[1, 3]);
        assert_eq!(m.data(), &[0.25, 0.5, 0.75]);
    }

    #[test]
    fn a_fine_granularity_or_a_missing_statistic_is_refused_with_the_reason() {
        let t = target(vec![2, 3], 1);
        let weight = Dense::full(vec![2, 3], 1.0);
        let stat = Dense::new(vec![3], vec![0.25, 0.5, 0.75]);
        let p = pruner(Statistic::NonZeroFraction, Activation::Relu);
        let fine = Scaling::fine();
        let err = p
            .metric(&MetricInput {
                target: &t,
                weight: &weight,
                grad: Some(&stat),
                scaling: &fine,
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("algorithm 'apoz': scores whole output channels of 'fc.weight'"),
            "{err}"
        );
        let scaling = Scaling::along_axis(1, 2);
        let err = p
            .metric(&MetricInput {
                target: &t,
                weight: &weight,
                grad: None,
                scaling: &scaling,
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no activation statistic for 'fc.weight'"),
            "{err}"
        );
        let wrong = Dense::new(vec![4], vec![0.0; 4]);
        let err = p
            .metric(&MetricInput {
                target: &t,
                weight: &weight,
                grad: Some(&wrong),
                scaling: &scaling,
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer 'fc' has 4 output channels (dim 1 of its output), the weight 'fc.weight' has 3"),
            "{err}"
        );
    }

    #[test]
    fn options_are_read_with_defaults_and_bad_values_name_the_key() {
        let table: compress_core::toml::Table = "".parse().unwrap();
        let Algorithm::Pruner(p) = build(Statistic::Mean, &table).unwrap() else {
            panic!("not a pruner");
        };
        assert_eq!(p.training_steps(), 20);
        assert_eq!(p.needs(), MetricNeeds::Activations);
        let table: compress_core::toml::Table = "activation = 'tanh'".parse().unwrap();
        let err = build(Statistic::NonZeroFraction, &table)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("algorithm 'apoz': 'activation' must be \"relu\", \"relu6\" or \"gelu\", found \"tanh\""),
            "{err}"
        );
        let table: compress_core::toml::Table = "batches = 0".parse().unwrap();
        let err = build(Statistic::Mean, &table).unwrap_err().to_string();
        assert!(
            err.contains("algorithm 'mean-activation': 'batches' must be an integer >= 1"),
            "{err}"
        );
    }
}
