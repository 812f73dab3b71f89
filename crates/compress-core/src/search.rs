//! Budget-driven search for per-layer pruning ratios: the vocabulary shared by every search
//! algorithm (simulated annealing, the sensitivity-guided allocator, ...) and every caller (the
//! `auto` command, recipes, library users).
//!
//! A search proposes [`Candidate`]s (a final pruning ratio per [`SearchLayer`], relative to the
//! original model), asks an [`Evaluator`] for each one's metric and *real* [`Cost`] (measured
//! after speedup, not counted from masks), and returns every [`Trial`] plus the best one that
//! meets the [`Budget`]. When none does, it fails with
//! [`CompressError::BudgetUnreachable`], which names the closest achievable cost both ways
//! ("x of dense" and "k times fewer").
//!
//! Algorithms predict costs from layer sizes ([`SearchLayer::size`]): a layer pruned by ratio `r`
//! is predicted to keep `(1 - r)` of its size. The evaluator's measured cost is what decides
//! [`Trial::within_budget`].
//!
//! ```
//! use compress_core::search::{Budget, Cost, Measure};
//!
//! let budget = Budget::parse("macs/6")?;              // six times fewer MACs than dense
//! assert_eq!(budget, Budget::times_fewer(Measure::Macs, 6.0)?);
//! assert_eq!(budget.to_string(), "macs <= 0.1667 of dense (6.00x fewer)");
//! let dense = Cost { macs: 600, params: 100, file_bytes: 400, latency_ms: None };
//! let small = Cost { macs: 100, ..dense.clone() };
//! assert!(budget.allows(&small, &dense));
//! assert_eq!(small.times_fewer(&dense, Measure::Macs), Some(6.0));
//! # Ok::<(), compress_core::CompressError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::did_you_mean;
use crate::{CompressError, Result};

/// Relative slack when comparing a cost with a budget, so that a cost computed as exactly
/// `fraction * dense` is not refused for a rounding error.
const BUDGET_SLACK: f64 = 1e-9;

/// One prunable layer, as a search sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchLayer {
    /// Module path (`conv1`, `layer1.0.conv2`).
    pub name: String,
    /// Layer type (`Conv2d`, `Linear`).
    pub op_type: String,
    /// Weight elements of the dense layer.
    pub params: u64,
    /// Multiply-accumulates per sample of the dense layer.
    pub macs: u64,
    /// Input channels (features).
    pub in_channels: usize,
    /// Output channels (features).
    pub out_channels: usize,
    /// Kernel size (1 for Linear).
    pub kernel: usize,
    /// Stride (1 for Linear).
    pub stride: usize,
    /// Spatial elements of the input (`H * W`), or the sequence length.
    pub input_size: usize,
    /// The largest ratio a search may give this layer, in `[0, 1)` (e.g. 0.8).
    pub max_ratio: f64,
    /// The ratio already pruned (pre-existing masks), in `[0, max_ratio]`.
    pub current_ratio: f64,
}

impl SearchLayer {
    /// The layer's size under `measure`: its weight elements for [`Measure::Params`] and
    /// [`Measure::FileBytes`] (a file stores the weights), its MACs for [`Measure::Macs`] and
    /// [`Measure::Latency`] (MACs are the latency proxy a prediction can use).
    pub fn size(&self, measure: Measure) -> f64 {
        match measure {
            Measure::Params | Measure::FileBytes => self.params as f64,
            Measure::Macs | Measure::Latency => self.macs as f64,
        }
    }

    /// The final ratio (relative to the dense layer) of pruning a share `s` of what is left:
    /// `current + s * (1 - current)`, NNI's mapping back for pre-existing masks.
    pub fn compose(&self, s: f64) -> f64 {
        self.current_ratio + s * (1.0 - self.current_ratio)
    }

    /// The largest share of what is left that keeps the final ratio within `max_ratio`:
    /// `(max - current) / (1 - current)`.
    pub fn max_share(&self) -> f64 {
        ((self.max_ratio - self.current_ratio) / (1.0 - self.current_ratio)).max(0.0)
    }
}

/// The layers a search allocates ratios to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SearchSpace {
    /// The layers, in model order.
    pub layers: Vec<SearchLayer>,
}

impl SearchSpace {
    /// A space of `layers`.
    pub fn new(layers: Vec<SearchLayer>) -> Self {
        Self { layers }
    }

    /// Check the space: at least one layer, unique names, `max_ratio` in `[0, 1)` and
    /// `current_ratio` in `[0, max_ratio]`.
    ///
    /// # Errors
    /// [`CompressError::EmptySearchSpace`], or [`CompressError::InvalidValue`] naming the layer
    /// and the key.
    pub fn validate(&self) -> Result<()> {
        if self.layers.is_empty() {
            return Err(CompressError::EmptySearchSpace);
        }
        let mut seen = BTreeSet::new();
        for layer in &self.layers {
            let invalid = |key: &str, value: f64, reason: &str| CompressError::InvalidValue {
                key: key.into(),
                context: format!("search layer '{}'", layer.name),
                value: value.to_string(),
                reason: reason.into(),
            };
            if !seen.insert(layer.name.as_str()) {
                return Err(CompressError::InvalidValue {
                    key: "name".into(),
                    context: "search space".into(),
                    value: layer.name.clone(),
                    reason: "the layer is listed twice".into(),
                });
            }
            if !(0.0..1.0).contains(&layer.max_ratio) {
                return Err(invalid("max_ratio", layer.max_ratio, "must be in [0, 1)"));
            }
            if !(0.0..=layer.max_ratio).contains(&layer.current_ratio) {
                return Err(invalid(
                    "current_ratio",
                    layer.current_ratio,
                    &format!("must be in [0, max_ratio = {}]", layer.max_ratio),
                ));
            }
        }
        Ok(())
    }

    /// Each layer's [`size`](SearchLayer::size) under `measure`, in layer order.
    pub fn sizes(&self, measure: Measure) -> Vec<f64> {
        self.layers.iter().map(|l| l.size(measure)).collect()
    }

    /// The layers' total size under `measure`.
    pub fn total(&self, measure: Measure) -> f64 {
        self.layers.iter().map(|l| l.size(measure)).sum()
    }

    /// The layer named `name`.
    pub fn layer(&self, name: &str) -> Option<&SearchLayer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// The share of the dense model's cost one unit of layer size stands for: `total / dense`
    /// for [`Measure::Params`] and [`Measure::Macs`] when the dense cost is known and covers the
    /// layers (layers outside the space, such as an unpruned classifier, keep their cost), else 1
    /// (file bytes and latency are predicted as proportional to the layers' sizes).
    fn weight(&self, measure: Measure, dense: &Cost) -> f64 {
        let total = self.total(measure);
        match (measure, dense.value(measure)) {
            (Measure::Params | Measure::Macs, Some(d)) if d > 0.0 && total <= d => total / d,
            _ => 1.0,
        }
    }

    /// The share `S` of the layers' total size (under the budget's measure) that must go for the
    /// predicted cost to meet `budget`: `S = (1 - fraction) / w` where `w` is the share of the
    /// dense cost the layers hold (1 when the layers are the whole model, so `S = 1 - fraction`,
    /// NNI's `total_sparsity`). Never negative.
    pub fn required_share(&self, budget: &Budget, dense: &Cost) -> f64 {
        ((1.0 - budget.fraction) / self.weight(budget.measure, dense)).max(0.0)
    }

    /// The predicted cost, as a fraction of dense, when a share `share` of the layers' total
    /// size is pruned (the inverse of [`required_share`](Self::required_share)).
    pub fn predicted_fraction(&self, share: f64, measure: Measure, dense: &Cost) -> f64 {
        1.0 - share * self.weight(measure, dense)
    }

    /// The largest share of the layers' total size that can go: every layer at `max_ratio`.
    pub fn max_share(&self, measure: Measure) -> f64 {
        let total = self.total(measure);
        if total <= 0.0 {
            return 0.0;
        }
        self.layers
            .iter()
            .map(|l| l.size(measure) * l.max_ratio)
            .sum::<f64>()
            / total
    }

    /// The share of the layers' total size a candidate prunes (layers it does not name count as
    /// their `current_ratio`).
    pub fn pruned_share(&self, candidate: &Candidate, measure: Measure) -> f64 {
        let total = self.total(measure);
        if total <= 0.0 {
            return 0.0;
        }
        self.layers
            .iter()
            .map(|l| l.size(measure) * candidate.ratio(&l.name).unwrap_or(l.current_ratio))
            .sum::<f64>()
            / total
    }

    /// [`validate`](Self::validate), then the share `S` the budget needs
    /// ([`required_share`](Self::required_share)), checked against
    /// [`max_share`](Self::max_share).
    ///
    /// # Errors
    /// As `validate`; [`CompressError::InvalidValue`] when the layers have no size under the
    /// budget's measure; [`CompressError::BudgetUnreachable`] when even every layer at its
    /// `max_ratio` is predicted to miss the budget (the closest is that prediction).
    pub fn reachable_share(&self, budget: &Budget, dense: &Cost) -> Result<f64> {
        self.validate()?;
        if self.total(budget.measure) <= 0.0 {
            return Err(CompressError::InvalidValue {
                key: "measure".into(),
                context: "search space".into(),
                value: budget.measure.to_string(),
                reason: format!("the layers have no {}", budget.measure),
            });
        }
        let needed = self.required_share(budget, dense);
        let max = self.max_share(budget.measure);
        if needed > max + BUDGET_SLACK {
            return Err(CompressError::BudgetUnreachable {
                budget: budget.to_string(),
                closest: self.predicted_fraction(max, budget.measure, dense),
                context: "predicted from the layer sizes with every layer at its max_ratio".into(),
            });
        }
        Ok(needed)
    }

    /// Check that `candidate` gives a ratio in `[0, max_ratio]` to layers of this space only.
    ///
    /// # Errors
    /// [`CompressError::UnknownOpName`] for a layer that is not in the space;
    /// [`CompressError::InvalidValue`] for a ratio outside the range.
    pub fn check(&self, candidate: &Candidate) -> Result<()> {
        for (name, &ratio) in &candidate.ratios {
            let Some(layer) = self.layer(name) else {
                return Err(CompressError::UnknownOpName {
                    name: name.clone(),
                    context: "search candidate".into(),
                    suggestion: did_you_mean(name, self.layers.iter().map(|l| l.name.as_str())),
                });
            };
            if !(0.0..=layer.max_ratio).contains(&ratio) {
                return Err(CompressError::InvalidValue {
                    key: "ratio".into(),
                    context: format!("search candidate for layer '{name}'"),
                    value: ratio.to_string(),
                    reason: format!("must be in [0, max_ratio = {}]", layer.max_ratio),
                });
            }
        }
        Ok(())
    }
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    /// Multiply-accumulates per sample (after speedup).
    Macs,
    /// Parameter elements (after speedup).
    Params,
    /// Bytes of the saved model file.
    FileBytes,
    /// Measured latency on a device, in milliseconds.
    Latency,
}

impl Measure {
    /// Every measure, with its name as [`FromStr`] reads it.
    pub const ALL: [(Measure, &'static str); 4] = [
        (Measure::Macs, "macs"),
        (Measure::Params, "params"),
        (Measure::FileBytes, "file-bytes"),
        (Measure::Latency, "latency"),
    ];
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(m, _)| m == self)
            .map_or("?", |(_, n)| n);
        f.write_str(name)
    }
}

impl FromStr for Measure {
    type Err = CompressError;

    /// `macs`, `params`, `file-bytes` (or `file_bytes`) or `latency`, case-insensitive.
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .iter()
            .find(|(_, n)| *n == key)
            .map(|(m, _)| *m)
            .ok_or_else(|| CompressError::UnknownMeasure {
                value: s.to_string(),
                suggestion: did_you_mean(&key, Self::ALL.iter().map(|(_, n)| *n)),
            })
    }
}

/// A cost budget: "at most `fraction` of the dense model's cost" under `measure`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// What is counted.
    pub measure: Measure,
    /// The largest allowed cost as a fraction of dense, in `(0, 1]`.
    pub fraction: f64,
}

impl Budget {
    /// At most `fraction` of dense.
    ///
    /// # Errors
    /// [`CompressError::InvalidBudget`] when `fraction` is not in `(0, 1]`.
    pub fn new(measure: Measure, fraction: f64) -> Result<Self> {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(CompressError::InvalidBudget {
                value: format!("{measure}<={fraction}"),
                reason: "the fraction of dense must be in (0, 1]".into(),
            });
        }
        Ok(Self { measure, fraction })
    }

    /// `k` times fewer than dense: a fraction of `1 / k`.
    ///
    /// # Errors
    /// [`CompressError::InvalidBudget`] when `k` is not a finite number `>= 1`.
    pub fn times_fewer(measure: Measure, k: f64) -> Result<Self> {
        if !(k.is_finite() && k >= 1.0) {
            return Err(CompressError::InvalidBudget {
                value: format!("{measure}/{k}"),
                reason: "k (times fewer) must be a finite number >= 1".into(),
            });
        }
        Ok(Self {
            measure,
            fraction: 1.0 / k,
        })
    }

    /// Parse `<measure><=<fraction>` ("at most a fraction of dense": `macs<=0.25`, also
    /// `macs<=25%`) or `<measure>/<k>` ("k times fewer": `macs/6`). Spaces are allowed around
    /// the parts; measures are those of [`Measure::from_str`].
    ///
    /// # Errors
    /// [`CompressError::InvalidBudget`] for another shape or an out-of-range number;
    /// [`CompressError::UnknownMeasure`] for an unknown measure.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: &str| CompressError::InvalidBudget {
            value: text.to_string(),
            reason: reason.to_string(),
        };
        let number = |s: &str| -> Result<f64> {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| invalid(&format!("'{}' is not a number", s.trim())))
        };
        let wrap = |e: CompressError| match e {
            CompressError::InvalidBudget { reason, .. } => invalid(&reason),
            other => other,
        };
        if let Some((measure, value)) = text.split_once("<=") {
            let measure: Measure = measure.parse()?;
            let value = value.trim();
            let fraction = match value.strip_suffix('%') {
                Some(percent) => number(percent)? / 100.0,
                None => number(value)?,
            };
            Self::new(measure, fraction).map_err(wrap)
        } else if let Some((measure, k)) = text.split_once('/') {
            let measure: Measure = measure.parse()?;
            Self::times_fewer(measure, number(k)?).map_err(wrap)
        } else {
            Err(invalid("no '<=' or '/'"))
        }
    }

    /// How many times fewer than dense the budget asks for: `1 / fraction`.
    pub fn times(&self) -> f64 {
        1.0 / self.fraction
    }

    /// Whether `cost` meets the budget relative to `dense` (false when the measure was not
    /// measured, e.g. latency without a device run).
    pub fn allows(&self, cost: &Cost, dense: &Cost) -> bool {
        match (cost.value(self.measure), dense.value(self.measure)) {
            (Some(c), Some(d)) => c <= self.fraction * d * (1.0 + BUDGET_SLACK),
            _ => false,
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} <= {:.4} of dense ({:.2}x fewer)",
            self.measure,
            self.fraction,
            self.times()
        )
    }
}

impl FromStr for Budget {
    type Err = CompressError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// What a model costs, measured after speedup.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Cost {
    /// Multiply-accumulates per sample.
    pub macs: u64,
    /// Parameter elements.
    pub params: u64,
    /// Bytes of the saved model file.
    pub file_bytes: u64,
    /// Measured latency in milliseconds, when measured.
    pub latency_ms: Option<f64>,
}

impl Cost {
    /// The value under `measure` (`None`: latency was not measured).
    pub fn value(&self, measure: Measure) -> Option<f64> {
        match measure {
            Measure::Macs => Some(self.macs as f64),
            Measure::Params => Some(self.params as f64),
            Measure::FileBytes => Some(self.file_bytes as f64),
            Measure::Latency => self.latency_ms,
        }
    }

    /// This cost as a fraction of `dense` ("x of dense"); `None` when either is unmeasured or
    /// dense is zero.
    pub fn ratio_to(&self, dense: &Cost, measure: Measure) -> Option<f64> {
        match (self.value(measure), dense.value(measure)) {
            (Some(c), Some(d)) if d > 0.0 => Some(c / d),
            _ => None,
        }
    }

    /// How many times fewer than `dense` ("k times fewer"): `dense / cost`, infinite for a
    /// zero cost; `None` when either is unmeasured.
    pub fn times_fewer(&self, dense: &Cost, measure: Measure) -> Option<f64> {
        match (self.value(measure), dense.value(measure)) {
            (Some(c), Some(d)) if c > 0.0 => Some(d / c),
            (Some(_), Some(_)) => Some(f64::INFINITY),
            _ => None,
        }
    }
}

/// Per-layer final pruning ratios (relative to the dense layer), by layer name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Candidate {
    /// Ratio by layer name.
    pub ratios: BTreeMap<String, f64>,
}

impl Candidate {
    /// A candidate with `ratios`.
    pub fn new(ratios: BTreeMap<String, f64>) -> Self {
        Self { ratios }
    }

    /// The same ratio for every layer of `space`, capped at each layer's `max_ratio` and never
    /// below its `current_ratio`.
    pub fn uniform(space: &SearchSpace, ratio: f64) -> Self {
        Self::new(
            space
                .layers
                .iter()
                .map(|l| {
                    (
                        l.name.clone(),
                        ratio.max(l.current_ratio).min(l.max_ratio).max(0.0),
                    )
                })
                .collect(),
        )
    }

    /// The ratio of `layer`.
    pub fn ratio(&self, layer: &str) -> Option<f64> {
        self.ratios.get(layer).copied()
    }
}

/// What an evaluator measured for a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The metric (accuracy, loss, ...), compared by the search's [`Objective`].
    pub metric: f64,
    /// The real cost (after speedup).
    pub cost: Cost,
}

/// Whether a bigger or a smaller metric is better (NNI's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Bigger is better (accuracy).
    #[default]
    Maximize,
    /// Smaller is better (loss).
    Minimize,
}

impl Objective {
    /// Whether `a` is strictly better than `b`.
    pub fn better(&self, a: f64, b: f64) -> bool {
        match self {
            Objective::Maximize => a > b,
            Objective::Minimize => a < b,
        }
    }

    /// How much worse `metric` is than `reference` (negative when it is better).
    pub fn loss(&self, reference: f64, metric: f64) -> f64 {
        match self {
            Objective::Maximize => reference - metric,
            Objective::Minimize => metric - reference,
        }
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Objective::Maximize => "maximize",
            Objective::Minimize => "minimize",
        })
    }
}

impl FromStr for Objective {
    type Err = CompressError;

    /// `maximize` or `minimize`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "maximize" => Ok(Objective::Maximize),
            "minimize" => Ok(Objective::Minimize),
            other => Err(CompressError::InvalidValue {
                key: "mode".into(),
                context: "search objective".into(),
                value: other.into(),
                reason: "expected maximize or minimize".into(),
            }),
        }
    }
}

/// Measures candidates: prune (and speed up, fine-tune, ...) the model as a candidate says and
/// report its metric and real cost.
pub trait Evaluator {
    /// The dense model's cost, the reference every budget is relative to.
    fn dense(&self) -> &Cost;

    /// Measure `candidate`.
    ///
    /// # Errors
    /// Whatever pruning, speedup or evaluation reports.
    fn evaluate(&mut self, candidate: &Candidate) -> Result<Evaluation>;
}

/// One evaluated candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// What was proposed.
    pub candidate: Candidate,
    /// What was measured.
    pub evaluation: Evaluation,
    /// Whether the measured cost meets the budget.
    pub within_budget: bool,
}

/// Every trial of a search, and the best one within budget.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SearchOutcome {
    /// Every trial, in evaluation order.
    pub trials: Vec<Trial>,
    /// Index into `trials` of the best trial within budget.
    pub best: Option<usize>,
}

impl SearchOutcome {
    /// The best trial within budget.
    pub fn best_trial(&self) -> Option<&Trial> {
        self.best.and_then(|i| self.trials.get(i))
    }
}

/// A budget-driven search for per-layer ratios.
///
/// An implementor proposes candidates and evaluates them through a [`TrialLog`], which checks
/// each candidate against the space, records the trial with its budget verdict, and picks the
/// best one (or fails with the closest achievable cost) at the end.
pub trait Search: Send + Sync {
    /// Search `space` for the best candidate under `budget`.
    ///
    /// # Errors
    /// [`CompressError::EmptySearchSpace`] and other space errors;
    /// [`CompressError::BudgetUnreachable`] when no trial meets the budget (or none can);
    /// the evaluator's errors.
    fn search(
        &self,
        space: &SearchSpace,
        budget: &Budget,
        objective: Objective,
        evaluator: &mut dyn Evaluator,
    ) -> Result<SearchOutcome>;
}

/// The trials of a running search: evaluates candidates and keeps the record.
pub struct TrialLog<'a> {
    space: &'a SearchSpace,
    budget: Budget,
    objective: Objective,
    evaluator: &'a mut dyn Evaluator,
    dense: Cost,
    trials: Vec<Trial>,
}

impl<'a> TrialLog<'a> {
    /// A log for one search.
    pub fn new(
        space: &'a SearchSpace,
        budget: &Budget,
        objective: Objective,
        evaluator: &'a mut dyn Evaluator,
    ) -> Self {
        let dense = evaluator.dense().clone();
        Self {
            space,
            budget: *budget,
            objective,
            evaluator,
            dense,
            trials: Vec::new(),
        }
    }

    /// The dense cost the evaluator reported.
    pub fn dense(&self) -> &Cost {
        &self.dense
    }

    /// The trials so far.
    pub fn trials(&self) -> &[Trial] {
        &self.trials
    }

    /// Check `candidate` against the space, evaluate it and record the trial.
    ///
    /// # Errors
    /// [`SearchSpace::check`]'s errors (a search proposed an invalid candidate), the
    /// evaluator's errors.
    pub fn evaluate(&mut self, candidate: Candidate) -> Result<&Trial> {
        self.space.check(&candidate)?;
        let evaluation = self.evaluator.evaluate(&candidate)?;
        let within_budget = self.budget.allows(&evaluation.cost, &self.dense);
        self.trials.push(Trial {
            candidate,
            evaluation,
            within_budget,
        });
        Ok(self.trials.last().expect("a trial was just pushed"))
    }

    /// The outcome: every trial and the best within budget (the first of equal metrics).
    ///
    /// # Errors
    /// [`CompressError::BudgetUnreachable`] when no trial is within budget, with the smallest
    /// measured cost as the closest achievable; [`CompressError::Algorithm`] when nothing was
    /// evaluated or no trial measured the budget's measure.
    pub fn finish(self, algorithm: &str) -> Result<SearchOutcome> {
        let mut best: Option<usize> = None;
        for (i, trial) in self.trials.iter().enumerate() {
            if trial.within_budget
                && best.is_none_or(|b| {
                    self.objective
                        .better(trial.evaluation.metric, self.trials[b].evaluation.metric)
                })
            {
                best = Some(i);
            }
        }
        if best.is_none() {
            let closest = self
                .trials
                .iter()
                .filter_map(|t| t.evaluation.cost.ratio_to(&self.dense, self.budget.measure))
                .min_by(f64::total_cmp);
            return Err(match closest {
                Some(closest) => CompressError::BudgetUnreachable {
                    budget: self.budget.to_string(),
                    closest,
                    context: format!(
                        "measured, smallest of {} trial(s) of '{algorithm}'",
                        self.trials.len()
                    ),
                },
                None => CompressError::Algorithm {
                    algorithm: algorithm.into(),
                    message: format!(
                        "no trial measured the budget's measure '{}' ({} trial(s))",
                        self.budget.measure,
                        self.trials.len()
                    ),
                },
            });
        }
        Ok(SearchOutcome {
            trials: self.trials,
            best,
        })
    }
}

#[cfg(test)]
mod tests;
