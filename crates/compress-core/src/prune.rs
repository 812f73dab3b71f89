//! The pruning driver: config + model + pruner -> masks. Written once for every pruner.

use std::collections::{BTreeMap, BTreeSet};

use burn::module::Module;
use rayon::prelude::*;

use crate::allocate::{Metric, allocate};
use crate::config::Mode;
use crate::granularity::{Granularity, Scaling};
use crate::index::{param_handles, read_flat};
use crate::registry::{MetricInput, MetricMap, MetricNeeds, Pruner};
use crate::targets::{Resolved, Target};
use crate::{CompressConfig, CompressError, Dense, MaskSet, ModuleIndex, Result};

/// What a pruning run produced.
#[derive(Debug, Clone)]
pub struct PruneOutcome {
    /// The masks (weights and the biases that follow them).
    pub masks: MaskSet,
    /// The metric of every active target.
    pub metrics: MetricMap,
    /// The resolved targets and the config warnings.
    pub resolved: Resolved,
}

/// Compute masks for `model` with `pruner` as `config` says.
///
/// Targets are resolved from the config's pruning rules, metrics are computed in parallel
/// (layers are independent) and turned into masks by [`allocate`]. The model is only read.
///
/// # Errors
/// Config resolution errors, granularity errors, the pruner's own errors, allocation errors,
/// or [`CompressError::Algorithm`] when the pruner needs gradients (use [`prune_with_grads`]).
pub fn prune<M: Module>(
    model: &M,
    config: &CompressConfig,
    pruner: &dyn Pruner,
) -> Result<PruneOutcome> {
    prune_with_grads(model, config, pruner, &BTreeMap::new())
}

/// How a target's metric is blocked: its rule's granularity, or the pruner's default.
pub(crate) fn target_scaling(t: &Target, pruner: &dyn Pruner) -> Result<Scaling> {
    let granularity = match t
        .setting
        .granularity
        .clone()
        .unwrap_or(Granularity::Default)
    {
        Granularity::Default => pruner.default_granularity(),
        g => g,
    };
    granularity.scaling(t.shape.len(), t.out_axis, t.in_axis, &t.path)
}

/// [`prune`], with gradient statistics by parameter path for pruners that need them.
///
/// # Errors
/// As [`prune`]; a missing gradient for a target is [`CompressError::Algorithm`].
pub fn prune_with_grads<M: Module>(
    model: &M,
    config: &CompressConfig,
    pruner: &dyn Pruner,
    grads: &BTreeMap<String, Dense<f32>>,
) -> Result<PruneOutcome> {
    prune_values(model, config, pruner, grads, &BTreeMap::new())
}

/// The config's pruning targets against `index` (rules in pruning mode only), and the active
/// ones' paths.
pub(crate) fn pruning_targets(
    config: &CompressConfig,
    index: &ModuleIndex,
) -> Result<(Resolved, Vec<Target>)> {
    let mut resolved = config.resolve(index)?;
    let pruning_rules: BTreeSet<usize> = config
        .rules
        .iter()
        .filter(|r| r.mode == Mode::Pruning)
        .map(|r| r.index)
        .collect();
    resolved.targets.retain(|t| pruning_rules.contains(&t.rule));
    let active = resolved
        .targets
        .iter()
        .filter(|t| t.is_active())
        .cloned()
        .collect();
    Ok((resolved, active))
}

/// [`prune_with_grads`], scoring `values` in place of the model's own value for each path it
/// holds (ADMM scores `Z = W + U`, not the weights). The model is still what targets resolve
/// against.
///
/// # Errors
/// As [`prune_with_grads`]; [`CompressError::ShapeMismatch`] for a value that is not in its
/// parameter's shape.
pub fn prune_values<M: Module>(
    model: &M,
    config: &CompressConfig,
    pruner: &dyn Pruner,
    grads: &BTreeMap<String, Dense<f32>>,
    values: &BTreeMap<String, Dense<f32>>,
) -> Result<PruneOutcome> {
    let index = ModuleIndex::from_module(model);
    let (resolved, active) = pruning_targets(config, &index)?;
    let wanted: BTreeSet<&str> = active
        .iter()
        .map(|t| t.path.as_str())
        .filter(|p| !values.contains_key(*p))
        .collect();
    let weights = param_handles(model, |p| wanted.contains(p));

    let metrics = active
        .par_iter()
        .map(|t| {
            let scaling = target_scaling(t, pruner)?;
            scaling.shrunk_shape(&t.shape, true, &t.path)?;
            // Each weight is copied to the host here and dropped after its metric, so only a
            // few layers are resident at a time.
            let read;
            let weight = match values.get(&t.path) {
                Some(v) if v.shape() != t.shape.as_slice() => {
                    return Err(CompressError::ShapeMismatch {
                        path: t.path.clone(),
                        expected: t.shape.clone(),
                        found: v.shape().to_vec(),
                    });
                }
                Some(v) => v,
                None => {
                    read = read_handle(&weights, &t.path)?;
                    &read
                }
            };
            let grad = grads.get(&t.path);
            let what = match pruner.needs() {
                MetricNeeds::Weights => None,
                MetricNeeds::Activations => Some("an activation statistic"),
                MetricNeeds::Gradients | MetricNeeds::LearnedScores => Some("a gradient"),
            };
            if let (Some(what), None) = (what, grad) {
                return Err(CompressError::Algorithm {
                    algorithm: "pruner".into(),
                    message: format!("needs {what} for '{}', and none was given", t.path),
                });
            }
            let values = pruner.metric(&MetricInput {
                target: t,
                weight,
                grad,
                scaling: &scaling,
            })?;
            Ok((t.path.clone(), Metric { scaling, values }))
        })
        // Collect in target order first, so the error reported is always the first one.
        .collect::<Vec<Result<_>>>()
        .into_iter()
        .collect::<Result<MetricMap>>()?;
    let masks = allocate(&resolved.targets, &metrics)?;
    Ok(PruneOutcome {
        masks,
        metrics,
        resolved,
    })
}

/// The host values of the parameter `path` among `handles` (what
/// [`param_handles`] gathered).
///
/// # Errors
/// [`CompressError::UnknownParam`] when `handles` lacks it; as
/// [`read_flat`].
pub fn read_handle(
    handles: &BTreeMap<String, (burn::tensor::Tensor<1>, Vec<usize>)>,
    path: &str,
) -> Result<Dense<f32>> {
    let (handle, shape) = handles
        .get(path)
        .ok_or_else(|| CompressError::UnknownParam {
            path: path.to_string(),
            suggestion: None,
        })?;
    read_flat(path, handle, shape)
}
