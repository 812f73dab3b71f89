//! Sensitivity analysis (NNI v2's `SensitivityAnalysis`): how a metric responds when one layer
//! at a time is pruned to growing sparsities.
//!
//! For each target (by default the weight of every `Conv2d` and `Linear` layer; a config can
//! restrict the set) and each sparsity `s` in ascending order, only that target is pruned, to
//! `a + (1 - a) * s` where `a` is the fraction of its weight already zero, with the chosen
//! pruner at its granularity (the config's, else the pruner's default); the biases that follow
//! the weight are masked with it. The user's closure evaluates the masked model. An
//! [`EarlyStop`] ends a target's sweep at the first point that meets it (that point is
//! recorded, as NNI does), so rows may be ragged.
//!
//! The model is never changed: every point is evaluated on a masked deep copy
//! ([`MaskSet::apply_hard`]), so each target starts from the original weights.
//!
//! ```
//! use burn::nn::{Linear, LinearConfig};
//! use burn::prelude::*;
//! use compress_core::sensitivity::{EarlyStop, SensitivityAnalysis};
//! use compress_core::{Dense, MetricInput, Pruner, Result};
//!
//! struct L1;
//! impl Pruner for L1 {
//!     fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
//!         input.scaling.shrink_with(input.weight, true, &input.target.path, 0.0f32,
//!             |acc, x| acc + x.abs(), |acc, _| acc)
//!     }
//! }
//!
//! let model: Linear = LinearConfig::new(4, 10).init(&Device::flex());
//! // The metric here: the fraction of output channels still alive.
//! let alive = |m: &Linear| -> Result<f64> {
//!     let w = Dense::from_tensor(m.weight.val(), "weight")?;
//!     let cols = (0..10).filter(|c| (0..4).any(|r| w.data()[r * 10 + c] != 0.0)).count();
//!     Ok(cols as f64 / 10.0)
//! };
//! let table = SensitivityAnalysis::new(&L1)
//!     .with_sparsities(&[0.2, 0.5, 0.9])?
//!     .with_early_stop(EarlyStop::Dropped(0.4))
//!     .run(&model, alive)?;
//! assert_eq!(table.baseline, 1.0);
//! // 0.9 is never evaluated: 0.5 already dropped the metric by more than 0.4.
//! assert_eq!(table.layers[""].len(), 2);
//! assert_eq!(table.layers[""]["0.5"], 0.5);
//! assert_eq!(table.to_csv(), "layername,0.2,0.5\n,0.8,0.5\n");
//! # Ok::<(), compress_core::CompressError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use serde::{Deserialize, Serialize};

use crate::allocate::{Metric, allocate};
use crate::config::Mode;
use crate::index::param_handles;
use crate::prune::{read_handle, target_scaling};
use crate::registry::{MetricInput, MetricNeeds, Pruner};
use crate::targets::Target;
use crate::{CompressConfig, CompressError, Dense, MaskSet, ModuleIndex, Result};

/// Where sensitivity errors say they come from.
const CONTEXT: &str = "sensitivity analysis";

/// When a target's sweep stops (NNI's `early_stop_mode` and `early_stop_value`), with
/// `cur` the metric at the current point and `ori` the unpruned model's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "value")]
pub enum EarlyStop {
    /// Stop when `cur < value` (a metric to keep above a floor, e.g. accuracy).
    Minimize(f64),
    /// Stop when `cur > value` (a metric to keep below a ceiling, e.g. a loss).
    Maximize(f64),
    /// Stop when `cur < ori - value`: the metric dropped by more than `value`.
    Dropped(f64),
    /// Stop when `cur > ori + value`: the metric rose by more than `value`.
    Raised(f64),
}

impl EarlyStop {
    /// The mode names, as [`FromStr`] reads them.
    pub const MODES: [&'static str; 4] = ["minimize", "maximize", "dropped", "raised"];

    /// Whether a sweep stops at a point where the metric is `current`, the unpruned model's
    /// being `baseline`.
    pub fn stops(&self, baseline: f64, current: f64) -> bool {
        match *self {
            EarlyStop::Minimize(v) => current < v,
            EarlyStop::Maximize(v) => current > v,
            EarlyStop::Dropped(v) => current < baseline - v,
            EarlyStop::Raised(v) => current > baseline + v,
        }
    }
}

impl fmt::Display for EarlyStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mode, value) = match *self {
            EarlyStop::Minimize(v) => ("minimize", v),
            EarlyStop::Maximize(v) => ("maximize", v),
            EarlyStop::Dropped(v) => ("dropped", v),
            EarlyStop::Raised(v) => ("raised", v),
        };
        write!(f, "{mode}:{value}")
    }
}

impl FromStr for EarlyStop {
    type Err = CompressError;

    /// `MODE:VALUE`, e.g. `dropped:0.05`.
    ///
    /// # Errors
    /// [`CompressError::InvalidValue`] for key `early_stop`, quoting the text, when the mode is
    /// unknown (with a did-you-mean) or the value is not a finite number.
    fn from_str(text: &str) -> Result<Self> {
        let invalid = |reason: String| CompressError::InvalidValue {
            key: "early_stop".into(),
            context: CONTEXT.into(),
            value: text.into(),
            reason,
        };
        let (mode, value) = text.split_once(':').ok_or_else(|| {
            invalid(format!(
                "expected MODE:VALUE with MODE one of {}",
                Self::MODES.join(", ")
            ))
        })?;
        let value: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| invalid(format!("'{}' is not a finite number", value.trim())))?;
        Ok(match mode.trim() {
            "minimize" => EarlyStop::Minimize(value),
            "maximize" => EarlyStop::Maximize(value),
            "dropped" => EarlyStop::Dropped(value),
            "raised" => EarlyStop::Raised(value),
            other => {
                let hint = crate::error::did_you_mean(other, Self::MODES.iter().copied())
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default();
                return Err(invalid(format!(
                    "unknown mode '{other}'{hint}; the modes are {}",
                    Self::MODES.join(", ")
                )));
            }
        })
    }
}

/// NNI's default sparsities: 0.1, 0.2, ..., 0.9.
pub fn default_sparsities() -> Vec<f64> {
    (1..10).map(|i| round2(i as f64 * 0.1)).collect()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Check sparsities and put them in sweep order: each in `(0, 1)` with at most two decimals,
/// sorted ascending, duplicates dropped.
///
/// # Errors
/// [`CompressError::OutOfRange`] (key `sparsities`) for a value outside `(0, 1)` or not
/// finite, [`CompressError::InvalidValue`] for one with more than two decimals or an empty list.
pub fn check_sparsities(values: &[f64]) -> Result<Vec<f64>> {
    if values.is_empty() {
        return Err(CompressError::InvalidValue {
            key: "sparsities".into(),
            context: CONTEXT.into(),
            value: String::new(),
            reason: "at least one sparsity is needed".into(),
        });
    }
    let mut out = Vec::with_capacity(values.len());
    for &s in values {
        if !(s > 0.0 && s < 1.0) {
            return Err(CompressError::OutOfRange {
                key: "sparsities".into(),
                context: CONTEXT.into(),
                value: s,
                range: "(0, 1)".into(),
            });
        }
        let rounded = round2(s);
        if (rounded - s).abs() > 1e-9 {
            return Err(CompressError::InvalidValue {
                key: "sparsities".into(),
                context: CONTEXT.into(),
                value: s.to_string(),
                reason: "sparsities have at most two decimals (0.25, not 0.125)".into(),
            });
        }
        out.push(rounded);
    }
    out.sort_by(f64::total_cmp);
    out.dedup();
    Ok(out)
}

/// Parse a comma-separated list (`0.1,0.2,0.5`) and [`check_sparsities`] it.
///
/// # Errors
/// [`CompressError::InvalidValue`] (key `sparsities`) quoting an entry that is not a number;
/// as [`check_sparsities`].
pub fn parse_sparsities(text: &str) -> Result<Vec<f64>> {
    let values = text
        .split(',')
        .map(|part| {
            let part = part.trim();
            part.parse::<f64>()
                .map_err(|_| CompressError::InvalidValue {
                    key: "sparsities".into(),
                    context: CONTEXT.into(),
                    value: part.into(),
                    reason: "not a number (expected a comma-separated list such as 0.1,0.2,0.5)"
                        .into(),
                })
        })
        .collect::<Result<Vec<f64>>>()?;
    check_sparsities(&values)
}

/// A sparsity as a table key: one decimal where it has one (`0.1`), else two (`0.25`).
pub fn sparsity_key(sparsity: f64) -> String {
    if ((sparsity * 10.0).round() / 10.0 - sparsity).abs() < 1e-9 {
        format!("{sparsity:.1}")
    } else {
        format!("{sparsity:.2}")
    }
}

/// The result: the metric of the unpruned model and, per layer, per sparsity key
/// ([`sparsity_key`]), the metric with only that layer pruned. NNI's `sensitivities` dict.
///
/// Serialized as `{"metric": "accuracy", "baseline": 0.971, "layers": {"conv1": {"0.1": 0.971,
/// ...}, ...}}`. Keys sort as numbers too: every key is `0.d` or `0.dd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensitivityTable {
    /// What was measured (`accuracy`).
    pub metric: String,
    /// The metric of the unpruned model.
    pub baseline: f64,
    /// Per layer (its path; `layer.param` for a target that is not a layer's `weight`), per
    /// sparsity key, the metric.
    pub layers: BTreeMap<String, BTreeMap<String, f64>>,
}

impl SensitivityTable {
    /// Every sparsity key of any layer, in ascending order.
    pub fn sparsity_keys(&self) -> Vec<String> {
        let keys: BTreeSet<&String> = self.layers.values().flat_map(|row| row.keys()).collect();
        let mut keys: Vec<String> = keys.into_iter().cloned().collect();
        keys.sort_by(|a, b| {
            let (x, y) = (a.parse::<f64>(), b.parse::<f64>());
            match (x, y) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                _ => a.cmp(b),
            }
        });
        keys
    }

    /// NNI's CSV: a header `layername,s1,s2,...`, then one row per layer; a point an early stop
    /// skipped is an empty cell.
    pub fn to_csv(&self) -> String {
        let keys = self.sparsity_keys();
        let mut out = format!("layername,{}\n", keys.join(","));
        for (layer, row) in &self.layers {
            let cells: Vec<String> = keys
                .iter()
                .map(|k| row.get(k).map(|v| v.to_string()).unwrap_or_default())
                .collect();
            out.push_str(&format!("{layer},{}\n", cells.join(",")));
        }
        out
    }

    /// The table as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a table of strings and finite numbers")
    }

    /// Read a table written by [`to_json`](Self::to_json) (or by hand).
    ///
    /// # Errors
    /// [`CompressError::InvalidValue`] (key `sensitivity table`) with serde's message (line,
    /// column, what was expected).
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| CompressError::InvalidValue {
            key: "sensitivity table".into(),
            context: "JSON".into(),
            value: text.chars().take(40).collect(),
            reason: e.to_string(),
        })
    }
}

/// One evaluated point, as [`SensitivityAnalysis::run_observed`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SensitivityPoint<'a> {
    /// The layer key of the table.
    pub layer: &'a str,
    /// The sparsity of the sweep.
    pub sparsity: f64,
    /// The ratio the target was pruned to: `a + (1 - a) * sparsity`.
    pub ratio: f64,
    /// The metric there.
    pub value: f64,
    /// Whether the early stop ended the sweep of this layer here.
    pub stopped: bool,
}

/// A sensitivity analysis: a pruner, the targets, the sparsities and the early stop.
///
/// Built with [`new`](Self::new) and the `with_*` methods, run with [`run`](Self::run).
pub struct SensitivityAnalysis<'a> {
    pruner: &'a dyn Pruner,
    config: Option<CompressConfig>,
    sparsities: Vec<f64>,
    early_stop: Option<EarlyStop>,
    metric: String,
    grads: BTreeMap<String, Dense<f32>>,
}

impl fmt::Debug for SensitivityAnalysis<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SensitivityAnalysis")
            .field("sparsities", &self.sparsities)
            .field("early_stop", &self.early_stop)
            .field("metric", &self.metric)
            .field("restricted_by_config", &self.config.is_some())
            .finish()
    }
}

impl<'a> SensitivityAnalysis<'a> {
    /// An analysis with `pruner`, every `Conv2d` and `Linear` weight as a target, the
    /// [`default_sparsities`], no early stop and the metric named `accuracy`.
    pub fn new(pruner: &'a dyn Pruner) -> Self {
        Self {
            pruner,
            config: None,
            sparsities: default_sparsities(),
            early_stop: None,
            metric: "accuracy".into(),
            grads: BTreeMap::new(),
        }
    }

    /// Take the targets from `config`: its active pruning targets (the layers its rules select
    /// with a `sparse_ratio` or `sparse_threshold`), each with its rule's granularity. The
    /// config's ratios, thresholds and groups are not used: the sweep sets each target's ratio.
    pub fn with_config(mut self, config: CompressConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// The sparsities to sweep ([`check_sparsities`]).
    ///
    /// # Errors
    /// As [`check_sparsities`].
    pub fn with_sparsities(mut self, sparsities: &[f64]) -> Result<Self> {
        self.sparsities = check_sparsities(sparsities)?;
        Ok(self)
    }

    /// Stop each target's sweep at the first point that meets `early_stop`.
    pub fn with_early_stop(mut self, early_stop: EarlyStop) -> Self {
        self.early_stop = Some(early_stop);
        self
    }

    /// The metric's name in the table (default `accuracy`).
    pub fn with_metric_name(mut self, name: impl Into<String>) -> Self {
        self.metric = name.into();
        self
    }

    /// Gradient statistics by parameter path, for a pruner that needs them
    /// ([`MetricNeeds::Gradients`], e.g. Taylor): what
    /// [`GradientStatistics`](crate::train::GradientStatistics) gathered.
    pub fn with_gradients(mut self, grads: BTreeMap<String, Dense<f32>>) -> Self {
        self.grads = grads;
        self
    }

    /// The sparsities that will be swept, ascending.
    pub fn sparsities(&self) -> &[f64] {
        &self.sparsities
    }

    /// The targets of `model` the analysis prunes (in config, then model order), and the other
    /// resolved pruning targets: the followers (biases) that align to them.
    ///
    /// # Errors
    /// Config resolution errors; [`CompressError::Algorithm`] when no target is selected.
    pub fn targets<M: Module>(&self, model: &M) -> Result<(Vec<Target>, Vec<Target>)> {
        let index = ModuleIndex::from_module(model);
        let default;
        let config = match &self.config {
            Some(c) => c,
            None => {
                default = CompressConfig::from_toml(
                    "[[config_list]]\nop_types = [\"Conv2d\", \"Linear\"]\nsparse_ratio = 0.5\n",
                )?;
                &default
            }
        };
        let pruning: BTreeSet<usize> = config
            .rules
            .iter()
            .filter(|r| r.mode == Mode::Pruning)
            .map(|r| r.index)
            .collect();
        let (active, followers): (Vec<Target>, Vec<Target>) = config
            .resolve(&index)?
            .targets
            .into_iter()
            .filter(|t| pruning.contains(&t.rule))
            .partition(|t| t.is_active());
        if active.is_empty() {
            return Err(CompressError::Algorithm {
                algorithm: CONTEXT.into(),
                message: match self.config {
                    Some(_) => "the config selects no pruning target (a rule with sparse_ratio)",
                    None => "the model has no Conv2d or Linear layer to analyse",
                }
                .into(),
            });
        }
        Ok((active, followers))
    }

    /// Run the analysis: `evaluate` the unpruned `model` once, then every target at every
    /// sparsity (until an early stop). `model` itself is never changed.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] for a learned-score pruner (its scores are trained for all
    /// targets together), a gradient pruner without [`with_gradients`](Self::with_gradients),
    /// or a metric that is not finite (naming the layer and sparsity); target, granularity
    /// and pruner errors; `evaluate`'s own errors.
    pub fn run<M: Module>(
        &self,
        model: &M,
        evaluate: impl FnMut(&M) -> Result<f64>,
    ) -> Result<SensitivityTable> {
        self.run_observed(model, evaluate, |_| {})
    }

    /// [`run`](Self::run), telling `observe` about every point as soon as it is evaluated
    /// (for progress output).
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_observed<M: Module>(
        &self,
        model: &M,
        mut evaluate: impl FnMut(&M) -> Result<f64>,
        mut observe: impl FnMut(&SensitivityPoint<'_>),
    ) -> Result<SensitivityTable> {
        if self.pruner.needs() == MetricNeeds::LearnedScores {
            return Err(CompressError::Algorithm {
                algorithm: CONTEXT.into(),
                message: "a learned-score pruner (slim, movement) trains scores for all targets \
                          together; sensitivity analysis needs a one-shot or gradient pruner"
                    .into(),
            });
        }
        let (active, followers) = self.targets(model)?;
        let finite = |value: f64, layer: &str, sparsity: Option<f64>| {
            if value.is_finite() {
                Ok(value)
            } else {
                let at = match sparsity {
                    Some(s) => format!("'{layer}' at sparsity {}", sparsity_key(s)),
                    None => "the unpruned model".into(),
                };
                Err(CompressError::Algorithm {
                    algorithm: CONTEXT.into(),
                    message: format!("the metric is {value} for {at}"),
                })
            }
        };
        let baseline = finite(evaluate(model)?, "", None)?;
        let wanted: BTreeSet<&str> = active.iter().map(|t| t.path.as_str()).collect();
        let weights = param_handles(model, |p| wanted.contains(p));
        let mut layers = BTreeMap::new();
        for target in &active {
            let key = if target.name == "weight" {
                target.layer.clone()
            } else {
                target.path.clone()
            };
            let weight = read_handle(&weights, &target.path)?;
            let already = weight.data().iter().filter(|&&x| x == 0.0).count() as f64
                / weight.numel().max(1) as f64;
            let metric = self.metric_of(target, &weight)?;
            let mut row = BTreeMap::new();
            for &sparsity in &self.sparsities {
                let ratio = already + (1.0 - already) * sparsity;
                let masks = self.masks(target, ratio, &followers, &metric)?;
                let value = finite(evaluate(&masks.apply_hard(model)?)?, &key, Some(sparsity))?;
                row.insert(sparsity_key(sparsity), value);
                let stopped = self.early_stop.is_some_and(|e| e.stops(baseline, value));
                observe(&SensitivityPoint {
                    layer: &key,
                    sparsity,
                    ratio,
                    value,
                    stopped,
                });
                if stopped {
                    break;
                }
            }
            layers.insert(key, row);
        }
        Ok(SensitivityTable {
            metric: self.metric.clone(),
            baseline,
            layers,
        })
    }

    /// The pruner's metric of one target (computed once: the sweep only changes the ratio).
    fn metric_of(&self, target: &Target, weight: &Dense<f32>) -> Result<Metric> {
        let scaling = target_scaling(target, self.pruner)?;
        scaling.shrunk_shape(&target.shape, true, &target.path)?;
        let grad = self.grads.get(&target.path);
        if self.pruner.needs() == MetricNeeds::Gradients && grad.is_none() {
            return Err(CompressError::Algorithm {
                algorithm: CONTEXT.into(),
                message: format!(
                    "the pruner needs a gradient statistic for '{}', and none was given",
                    target.path
                ),
            });
        }
        let values = self.pruner.metric(&MetricInput {
            target,
            weight,
            grad,
            scaling: &scaling,
        })?;
        Ok(Metric { scaling, values })
    }

    /// Masks pruning only `target`, to `ratio`, plus the followers aligned to it.
    fn masks(
        &self,
        target: &Target,
        ratio: f64,
        followers: &[Target],
        metric: &Metric,
    ) -> Result<MaskSet> {
        let mut alone = target.clone();
        let s = &mut alone.setting;
        s.sparse_ratio = Some(ratio);
        s.sparse_threshold = None;
        s.min_sparse_ratio = None;
        s.max_sparse_ratio = None;
        s.global_group_id = None;
        s.dependency_group_id = None;
        // Followers aligned to other targets find no source mask and stay unmasked.
        let targets: Vec<Target> = std::iter::once(alone)
            .chain(followers.iter().cloned())
            .collect();
        let metrics = BTreeMap::from([(target.path.clone(), metric.clone())]);
        allocate(&targets, &metrics)
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::prelude::*;

    use super::*;
    use crate::testing::{Nested, test_device};

    /// L1 norm of each block (`l1-norm`'s metric; the norm crate is not a dependency of core).
    struct L1;
    impl Pruner for L1 {
        fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
            input.scaling.shrink_with(
                input.weight,
                true,
                &input.target.path,
                0.0f32,
                |acc, x| acc + x.abs(),
                |acc, _| acc,
            )
        }
    }

    /// Every float parameter's bits by path.
    fn bits<M: Module>(model: &M) -> BTreeMap<String, Vec<u32>> {
        param_handles(model, |_| true)
            .into_iter()
            .map(|(path, (t, shape))| {
                let d = crate::index::read_flat(&path, &t, &shape).unwrap();
                (path, d.data().iter().map(|x| x.to_bits()).collect())
            })
            .collect()
    }

    /// Fraction of output columns of a Burn Linear (`[in, out]`) whose weights are all zero.
    fn dead_columns(m: &Linear) -> f64 {
        let w = Dense::from_tensor(m.weight.val(), "weight").unwrap();
        let (rows, cols) = (w.shape()[0], w.shape()[1]);
        let dead = (0..cols)
            .filter(|&c| (0..rows).all(|r| w.data()[r * cols + c] == 0.0))
            .count();
        dead as f64 / cols as f64
    }

    /// A Linear(3 -> 10) whose column `c` has L1 norm `c + 1`, so L1 prunes columns in order.
    fn ordered_linear(device: &Device) -> Linear {
        let mut linear = LinearConfig::new(3, 10).init(device);
        let values: Vec<f32> = (0..3)
            .flat_map(|_| (0..10).map(|c| (c + 1) as f32 / 3.0))
            .collect();
        linear.weight =
            Param::from_tensor(Tensor::from_data(TensorData::new(values, [3, 10]), device));
        linear
    }

    #[test]
    fn every_point_prunes_only_its_layer_and_the_model_stays_bit_identical() {
        let device = test_device();
        let model = Nested::new(&device);
        let before = bits(&model);
        let mut seen: Vec<BTreeMap<String, f64>> = Vec::new();
        let table = SensitivityAnalysis::new(&L1)
            .with_sparsities(&[0.5, 0.25])
            .unwrap()
            .with_metric_name("zeros")
            .run(&model, |m| {
                // Per parameter, the fraction of exact zeros of this evaluated copy.
                let zeros: BTreeMap<String, f64> = bits(m)
                    .into_iter()
                    .map(|(p, b)| {
                        let z = b.iter().filter(|&&x| f32::from_bits(x) == 0.0).count();
                        (p, z as f64 / b.len() as f64)
                    })
                    .collect();
                let total = zeros.values().sum();
                seen.push(zeros);
                Ok(total)
            })
            .unwrap();
        assert_eq!(bits(&model), before, "the model's parameters changed");
        // Targets: every Conv2d and Linear; the BatchNorms and the user layer are not.
        assert_eq!(
            table.layers.keys().collect::<Vec<_>>(),
            ["blocks.0.conv", "blocks.1.conv", "head", "stem"]
        );
        assert_eq!(table.metric, "zeros");
        // Baseline plus 4 layers x 2 sparsities, ascending (0.25 before 0.5).
        assert_eq!(seen.len(), 9);
        let baseline = &seen[0];
        // stem (the first target, in model order): Conv2d(1 -> 4), 4 output channels;
        // 0.25 -> 1 channel, 0.5 -> 2 channels.
        let stem_points = &seen[1..3];
        for (point, channels) in stem_points.iter().zip([1.0, 2.0]) {
            for (path, &z) in point {
                let expected = match path.as_str() {
                    "stem.weight" | "stem.bias" => channels / 4.0,
                    _ => baseline[path],
                };
                assert_eq!(z, expected, "{path}");
            }
        }
    }

    #[test]
    fn ratios_follow_the_fraction_already_pruned_and_the_early_stop_point_is_recorded() {
        let device = test_device();
        let mut model = ordered_linear(&device);
        // Half the columns already zero: a = 0.5, so s = 0.2 prunes 0.5 + 0.5 * 0.2 = 0.6.
        let mut masks = MaskSet::default();
        let mut keep = vec![1u8; 30];
        for r in 0..3 {
            for c in 0..5 {
                keep[r * 10 + c] = 0;
            }
        }
        masks.insert("weight", Dense::new(vec![3, 10], keep));
        model = masks.apply_hard(&model).unwrap();
        let mut ratios = Vec::new();
        let table = SensitivityAnalysis::new(&L1)
            .with_sparsities(&[0.2, 0.4, 0.6, 0.8])
            .unwrap()
            .with_early_stop(EarlyStop::Minimize(0.55))
            .run_observed(
                &model,
                |m| Ok(dead_columns(m)),
                |p| ratios.push((p.ratio, p.stopped)),
            )
            .unwrap();
        assert_eq!(table.baseline, 0.5);
        // Metric: dead columns. 0.2 -> 0.6, 0.4 -> 0.7, 0.6 -> 0.8, 0.8 -> 0.9.
        // Minimize(0.55) stops at cur < 0.55: never here, so all four.
        assert_eq!(
            table.layers[""],
            BTreeMap::from([
                ("0.2".to_string(), 0.6),
                ("0.4".to_string(), 0.7),
                ("0.6".to_string(), 0.8),
                ("0.8".to_string(), 0.9),
            ])
        );
        let r: Vec<f64> = ratios
            .iter()
            .map(|(r, _)| (r * 100.0).round() / 100.0)
            .collect();
        assert_eq!(r, [0.6, 0.7, 0.8, 0.9]);
        // Maximize(0.65) stops at the first cur > 0.65, which is recorded: 0.4 -> 0.7.
        let table = SensitivityAnalysis::new(&L1)
            .with_sparsities(&[0.2, 0.4, 0.6, 0.8])
            .unwrap()
            .with_early_stop(EarlyStop::Maximize(0.65))
            .run(&model, |m| Ok(dead_columns(m)))
            .unwrap();
        assert_eq!(table.layers[""].keys().collect::<Vec<_>>(), ["0.2", "0.4"]);
        assert_eq!(table.to_csv(), "layername,0.2,0.4\n,0.6,0.7\n");
    }

    #[test]
    fn early_stop_modes_compare_as_nni_does() {
        let cases = [
            (EarlyStop::Minimize(0.5), 0.49, true),
            (EarlyStop::Minimize(0.5), 0.5, false),
            (EarlyStop::Maximize(0.5), 0.51, true),
            (EarlyStop::Maximize(0.5), 0.5, false),
            (EarlyStop::Dropped(0.1), 0.79, true),
            (EarlyStop::Dropped(0.1), 0.81, false),
            (EarlyStop::Raised(0.1), 1.01, true),
            (EarlyStop::Raised(0.1), 0.99, false),
        ];
        for (stop, current, stops) in cases {
            assert_eq!(stop.stops(0.9, current), stops, "{stop} at {current}");
        }
        assert_eq!(
            "dropped:0.05".parse::<EarlyStop>().unwrap(),
            EarlyStop::Dropped(0.05)
        );
        assert_eq!(
            " raised : 2 ".parse::<EarlyStop>().unwrap(),
            EarlyStop::Raised(2.0)
        );
        let err = "droped:0.05".parse::<EarlyStop>().unwrap_err().to_string();
        assert_eq!(
            err,
            "key 'early_stop' in sensitivity analysis: invalid value 'droped:0.05' (unknown mode \
             'droped' (did you mean 'dropped'?); the modes are minimize, maximize, dropped, raised)"
        );
        let err = "dropped:x".parse::<EarlyStop>().unwrap_err().to_string();
        assert!(err.contains("'x' is not a finite number"), "{err}");
        let err = "dropped".parse::<EarlyStop>().unwrap_err().to_string();
        assert!(err.contains("expected MODE:VALUE"), "{err}");
    }

    #[test]
    fn sparsities_are_checked_sorted_and_keyed_with_one_or_two_decimals() {
        assert_eq!(
            default_sparsities(),
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
        );
        assert_eq!(
            parse_sparsities("0.5, 0.25,0.1,0.5").unwrap(),
            [0.1, 0.25, 0.5]
        );
        let keys: Vec<String> = [0.1, 0.25, 0.3, 0.05, 0.9].map(sparsity_key).to_vec();
        assert_eq!(keys, ["0.1", "0.25", "0.3", "0.05", "0.9"]);
        assert_eq!(
            parse_sparsities("0.1,1.2").unwrap_err().to_string(),
            "key 'sparsities' in sensitivity analysis: 1.2 is outside (0, 1)"
        );
        assert_eq!(
            parse_sparsities("0.1,abc").unwrap_err().to_string(),
            "key 'sparsities' in sensitivity analysis: invalid value 'abc' (not a number \
             (expected a comma-separated list such as 0.1,0.2,0.5))"
        );
        for bad in ["0", "1", "-0.1", "NaN"] {
            let err = parse_sparsities(bad).unwrap_err().to_string();
            assert!(err.contains("is outside (0, 1)"), "{bad}: {err}");
        }
        let err = parse_sparsities("0.125").unwrap_err().to_string();
        assert!(err.contains("invalid value '0.125'"), "{err}");
        assert!(check_sparsities(&[]).is_err());
    }

    #[test]
    fn the_table_round_trips_through_json_and_writes_nni_csv() {
        let table = SensitivityTable {
            metric: "accuracy".into(),
            baseline: 0.971,
            layers: BTreeMap::from([
                (
                    "conv1".to_string(),
                    BTreeMap::from([("0.1".to_string(), 0.971), ("0.25".to_string(), 0.95)]),
                ),
                (
                    "fc1".to_string(),
                    BTreeMap::from([("0.1".to_string(), 0.5)]),
                ),
            ]),
        };
        let json = serde_json::to_string(&table).unwrap();
        assert_eq!(
            json,
            r#"{"metric":"accuracy","baseline":0.971,"layers":{"conv1":{"0.1":0.971,"0.25":0.95},"fc1":{"0.1":0.5}}}"#
        );
        assert_eq!(
            SensitivityTable::from_json(&table.to_json()).unwrap(),
            table
        );
        assert_eq!(
            table.to_csv(),
            "layername,0.1,0.25\nconv1,0.971,0.95\nfc1,0.5,\n"
        );
        let err = SensitivityTable::from_json(r#"{"metric": "accuracy"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `baseline`"), "{err}");
    }

    #[test]
    fn a_config_restricts_the_targets_and_bad_setups_are_refused() {
        let device = test_device();
        let model = Nested::new(&device);
        let config = CompressConfig::from_toml(
            "[[config_list]]\nop_names = [\"head\"]\nsparse_ratio = 0.5\n",
        )
        .unwrap();
        let table = SensitivityAnalysis::new(&L1)
            .with_config(config)
            .with_sparsities(&[0.5])
            .unwrap()
            .run(&model, |_| Ok(1.0))
            .unwrap();
        assert_eq!(table.layers.keys().collect::<Vec<_>>(), ["head"]);

        let err = SensitivityAnalysis::new(&L1)
            .run(&model, |_| Ok(f64::NAN))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "algorithm 'sensitivity analysis': the metric is NaN for the unpruned model"
        );
        let mut calls = 0;
        let err = SensitivityAnalysis::new(&L1)
            .run(&model, |_| {
                calls += 1;
                Ok(if calls == 1 { 1.0 } else { f64::INFINITY })
            })
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "algorithm 'sensitivity analysis': the metric is inf for 'stem' at sparsity 0.1"
        );

        struct NeedsGrads;
        impl Pruner for NeedsGrads {
            fn needs(&self) -> MetricNeeds {
                MetricNeeds::Gradients
            }
            fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
                L1.metric(input)
            }
        }
        let err = SensitivityAnalysis::new(&NeedsGrads)
            .run(&model, |_| Ok(1.0))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("needs a gradient statistic for 'stem.weight'"),
            "{err}"
        );
    }
}
