//! Activation statistics for pruners that score output channels by what the layers produce
//! (APoZ, mean activation: [`MetricNeeds::Activations`](crate::registry::MetricNeeds)).
//!
//! Burn has no forward hooks, and compress-core knows nothing about graph capture, so the
//! layer outputs come from the **caller** through [`LayerOutputs`]: a source that runs the model
//! forward over data batches and shows each requested layer's output. The facade implements it
//! with compress-graph's replay taps over the training data
//! (`burn_compress::pruning::ReplayOutputs`, used by `prune_captured`); a test or a user can
//! implement it with any forward that exposes its layer outputs.
//!
//! Collection never trains: the source runs inference only, so the weights stay bit-identical
//! (NNI's activation pruners train while collecting, a known pain point, NNI issue #5405).

use std::collections::{BTreeMap, BTreeSet};

use burn::module::Module;
use burn::prelude::*;

use crate::prune::pruning_targets;
use crate::registry::Pruner;
use crate::{CompressConfig, CompressError, Dense, ModuleIndex, Result};

/// Runs a model forward over data batches and shows the outputs of chosen layers.
pub trait LayerOutputs<M> {
    /// Run `model` forward on up to `batches` batches, without training it and without changing
    /// any parameter, and call `visit(layer, output)` for every call of a layer in `layers`
    /// (paths such as `conv1`), with its output as `[batch, channels, rest]` (a Linear's
    /// `[batch, features]` as `[batch, features, 1]`). Returns the number of batches run (fewer
    /// than `batches` when the data runs out).
    ///
    /// # Errors
    /// The source's own failures (a forward that cannot be replayed), or the first error
    /// `visit` returns.
    fn for_each_output(
        &self,
        model: &M,
        layers: &BTreeSet<String>,
        batches: usize,
        visit: &mut dyn FnMut(&str, Tensor<3>) -> Result<()>,
    ) -> Result<usize>;
}

/// The per-channel activation statistic of every active pruning target of `config`: the mean
/// over the batches `source` runs of `pruner.activation_statistic(output of the target's
/// layer)`, keyed by target path (a `[channels]` vector each). [`Pruner::training_steps`]
/// batches are asked for (at least one).
///
/// # Errors
/// [`CompressError::Algorithm`] when the source ran no batch, when a target's layer produced
/// no output, or when the statistic is not one value per channel; config resolution errors;
/// the source's errors.
pub fn activation_statistics<M: Module>(
    model: &M,
    config: &CompressConfig,
    pruner: &dyn Pruner,
    source: &dyn LayerOutputs<M>,
) -> Result<BTreeMap<String, Dense<f32>>> {
    let index = ModuleIndex::from_module(model);
    let (_, active) = pruning_targets(config, &index)?;
    let layers: BTreeSet<String> = active.iter().map(|t| t.layer.clone()).collect();
    // Per layer: the sum of the per-batch statistics and how many outputs were seen.
    let mut sums: BTreeMap<String, (Tensor<1>, usize)> = BTreeMap::new();
    let batches = pruner.training_steps().max(1);
    let ran = source.for_each_output(model, &layers, batches, &mut |layer, output| {
        let [_, channels, _] = output.dims();
        let statistic = pruner.activation_statistic(output);
        if statistic.dims() != [channels] {
            return Err(CompressError::Algorithm {
                algorithm: "pruner".into(),
                message: format!(
                    "the activation statistic of '{layer}' has shape {:?}, expected [{channels}] \
                     (one value per output channel)",
                    statistic.dims()
                ),
            });
        }
        match sums.get_mut(layer) {
            Some((sum, n)) => {
                *sum = sum.clone() + statistic;
                *n += 1;
            }
            None => {
                sums.insert(layer.to_string(), (statistic, 1));
            }
        }
        Ok(())
    })?;
    if ran == 0 {
        return Err(CompressError::Algorithm {
            algorithm: "pruner".into(),
            message: "no data batch to collect layer outputs on: give it data".into(),
        });
    }
    let mut stats = BTreeMap::new();
    for t in &active {
        let (sum, n) = sums.get(&t.layer).ok_or_else(|| CompressError::Algorithm {
            algorithm: "pruner".into(),
            message: format!(
                "layer '{}' (target '{}') produced no output in the forward pass, so it has no \
                 activation statistic",
                t.layer, t.path
            ),
        })?;
        let mean = Dense::from_tensor(sum.clone().div_scalar(*n as f64), &t.path)?;
        stats.insert(t.path.clone(), mean);
    }
    Ok(stats)
}

/// A per-output-channel `statistic` (`[channels]`) as the metric of `input`'s target: one value
/// per output channel, in the kept-dim shape of an output-channel scaling.
///
/// # Errors
/// [`CompressError::Algorithm`] for `algorithm` when the granularity is not one block per output
/// channel, the target has no output axis, or the statistic has another channel count than the
/// weight (a Linear applied to a sequence reports its sequence axis as dim 1).
pub fn channel_metric(
    algorithm: &str,
    input: &crate::registry::MetricInput<'_>,
    statistic: &Dense<f32>,
) -> Result<Dense<f32>> {
    let t = input.target;
    let refuse = |message: String| CompressError::Algorithm {
        algorithm: algorithm.into(),
        message,
    };
    let axis = t.out_axis.ok_or_else(|| {
        refuse(format!(
            "'{}' ({}) has no output-channel axis to score",
            t.path, t.layer_type
        ))
    })?;
    let shape = input.scaling.shrunk_shape(&t.shape, true, &t.path)?;
    let channels = t.shape[axis];
    let per_channel = shape
        .iter()
        .enumerate()
        .all(|(d, &n)| if d == axis { n == channels } else { n == 1 });
    if !per_channel {
        return Err(refuse(format!(
            "scores whole output channels of '{}': use granularity 'out_channel' (the default), \
             not one giving blocks {shape:?}",
            t.path
        )));
    }
    if statistic.numel() != channels {
        return Err(refuse(format!(
            "layer '{}' has {} output channels (dim 1 of its output), the weight '{}' has \
             {channels}",
            t.layer,
            statistic.numel(),
            t.path
        )));
    }
    Ok(Dense::new(shape, statistic.data().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{MetricInput, MetricNeeds};
    use burn::nn::{Linear, LinearConfig};

    #[derive(Module, Debug)]
    struct Net {
        fc: Linear,
        head: Linear,
    }

    /// Scores by the mean output (the trait's default statistic).
    struct MeanOut;
    impl Pruner for MeanOut {
        fn needs(&self) -> MetricNeeds {
            MetricNeeds::Activations
        }
        fn training_steps(&self) -> usize {
            3
        }
        fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
            channel_metric("mean-out", input, input.observed("mean-out")?)
        }
    }

    /// Fixed outputs of `fc` per batch, `[batch, 3, 1]`; `layer` is what it reports them as.
    struct Fixed {
        batches: Vec<Vec<f32>>,
        layer: &'static str,
    }
    impl<M> LayerOutputs<M> for Fixed {
        fn for_each_output(
            &self,
            _model: &M,
            layers: &BTreeSet<String>,
            batches: usize,
            visit: &mut dyn FnMut(&str, Tensor<3>) -> Result<()>,
        ) -> Result<usize> {
            assert_eq!(layers.iter().collect::<Vec<_>>(), ["fc"]);
            let mut ran = 0;
            for values in self.batches.iter().take(batches) {
                let b = values.len() / 3;
                let t =
                    Tensor::<1>::from_floats(values.as_slice(), &Device::flex()).reshape([b, 3, 1]);
                visit(self.layer, t)?;
                ran += 1;
            }
            Ok(ran)
        }
    }

    fn setup() -> (Net, CompressConfig) {
        let d = Device::flex();
        let net = Net {
            fc: LinearConfig::new(4, 3).init(&d),
            head: LinearConfig::new(3, 2).init(&d),
        };
        let config =
            CompressConfig::from_toml("[[config_list]]\nop_names = ['fc']\nsparse_ratio = 0.34\n")
                .unwrap();
        (net, config)
    }

    #[test]
    fn each_batch_weighs_the_same_and_only_the_asked_batches_run() {
        let (net, config) = setup();
        let source = Fixed {
            batches: vec![
                // Two examples: per-channel means 2, 0, 4.
                vec![1.0, 0.0, 4.0, 3.0, 0.0, 4.0],
                // One example: 0, 6, 1.
                vec![0.0, 6.0, 1.0],
                vec![0.0, 6.0, 1.0],
                // Beyond the pruner's 3 batches: never read.
                vec![100.0, 100.0, 100.0],
            ],
            layer: "fc",
        };
        let stats = activation_statistics(&net, &config, &MeanOut, &source).unwrap();
        assert_eq!(stats.keys().collect::<Vec<_>>(), ["fc.weight"]);
        assert_eq!(stats["fc.weight"].data(), &[2.0 / 3.0, 4.0, 2.0]);
        // The metric sits on the Linear's output axis (1) and the lowest channel is pruned.
        let masks = crate::prune::prune_with_grads(&net, &config, &MeanOut, &stats)
            .unwrap()
            .masks;
        let mask = masks.get("fc.weight").unwrap();
        assert_eq!(&mask.data()[..3], &[0, 1, 1]);
    }

    #[test]
    fn no_batch_or_no_output_of_a_target_layer_is_an_error_naming_it() {
        let (net, config) = setup();
        let none = Fixed {
            batches: vec![],
            layer: "fc",
        };
        let err = activation_statistics(&net, &config, &MeanOut, &none)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no data batch to collect layer outputs on"),
            "{err}"
        );
        let elsewhere = Fixed {
            batches: vec![vec![1.0, 2.0, 3.0]],
            layer: "head",
        };
        let err = activation_statistics(&net, &config, &MeanOut, &elsewhere)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer 'fc' (target 'fc.weight') produced no output"),
            "{err}"
        );
    }
}
