//! # search-sensitivity-guided: per-layer ratios read off sensitivity curves
//!
//! Given each layer's sensitivity curve (the metric after pruning only that layer, at a few
//! sparsities: the table `burn-compress sensitivity --json` prints), choose per-layer ratios
//! whose predicted cost meets the budget with the least predicted metric loss, then check the
//! choice against the real (post-speedup) cost and tighten it when it misses.
//!
//! - **Curves.** A layer's predicted loss at sparsity `s` is `baseline - metric(s)` (for
//!   [`Objective::Maximize`]; `metric(s) - baseline` when minimizing), linear between measured
//!   points, with the unpruned point `(0, baseline)`. A layer is never pruned past its last
//!   measured sparsity (a sweep that stopped early says nothing beyond it) nor past its
//!   `max_ratio`. As in NNI's sensitivity analysis, sparsity keys are shares of what is left:
//!   a layer with `current_ratio` `m` pruned by `s` ends at `m + s (1 - m)`.
//! - **Allocation: greedy on the lower convex hulls** (a fractional knapsack). Each layer's loss
//!   curve is replaced by its lower convex hull; every hull segment costs `delta loss` and saves
//!   `delta s * size` (size by the budget's measure, [`SearchLayer::size`]). Segments are taken
//!   in increasing loss per saved cost until the saved size reaches what the budget needs
//!   ([`SearchSpace::required_share`]); the last one partly. On the convexified curves this is
//!   optimal, and it is what a Lagrangian sweep over the price of cost would find; a curve's
//!   non-convex bumps are skipped over rather than stopped at. Ties go to the earlier layer.
//! - **Real cost.** The allocation is evaluated; when its measured cost misses the budget the
//!   target fraction is lowered by the miss plus 1% of the budget and the allocation repeated,
//!   at most `max_retries` times. The outcome's best is the best trial within budget; when none
//!   is, [`CompressError::BudgetUnreachable`] names the closest measured cost.
//!
//! Registry name: `sensitivity-guided`.
//!
//! | key | meaning |
//! | --- | --- |
//! | `sensitivity` | path of the sensitivity JSON `{"metric": .., "baseline": .., "layers": {layer: {"0.1": metric, ..}}}` (required) |
//! | `max_retries` | re-allocations after a measured miss, an integer >= 0 (default 5) |
//!
//! ```
//! use std::collections::BTreeMap;
//! use compress_core::search::{Cost, Measure, Objective, SearchLayer, SearchSpace};
//! use search_sensitivity_guided::{SensitivityCurves, SensitivityGuided};
//!
//! let curve = |points: &[(&str, f64)]| -> BTreeMap<String, f64> {
//!     points.iter().map(|(s, m)| (s.to_string(), *m)).collect()
//! };
//! let table = BTreeMap::from([
//!     ("big".to_string(), curve(&[("0.5", 0.96), ("0.9", 0.90)])),     // insensitive
//!     ("small".to_string(), curve(&[("0.5", 0.50), ("0.9", 0.10)])),   // sensitive
//! ]);
//! let curves = SensitivityCurves::from_map(0.97, &table)?;
//! let layer = |name: &str, params| SearchLayer { name: name.into(), op_type: "Linear".into(),
//!     params, macs: params, in_channels: 1, out_channels: 1, kernel: 1, stride: 1,
//!     input_size: 1, max_ratio: 0.9, current_ratio: 0.0 };
//! let space = SearchSpace::new(vec![layer("big", 900), layer("small", 100)]);
//! let dense = Cost { macs: 1000, params: 1000, file_bytes: 4000, latency_ms: None };
//! let plan = SensitivityGuided::new(curves).allocate(&space, Measure::Params, &dense, 0.55,
//!     Objective::Maximize)?;
//! assert!((plan.candidate.ratios["big"] - 0.5).abs() < 1e-12); // the big layer takes it all
//! assert_eq!(plan.candidate.ratios["small"], 0.0);
//! # Ok::<(), compress_core::CompressError>(())
//! ```
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;

use compress_core::error::did_you_mean;
use compress_core::registry::AlgorithmOptions;
use compress_core::search::{
    Budget, Candidate, Evaluator, Measure, Objective, Search, SearchLayer, SearchOutcome,
    SearchSpace, TrialLog,
};
use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Result};
use serde::{Deserialize, Serialize};

/// The registry name.
pub const NAME: &str = "sensitivity-guided";

/// Sensitivity curves: per layer, the metric measured after pruning only that layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SensitivityCurves {
    /// The metric's name (`accuracy`).
    pub metric: String,
    /// The unpruned model's metric.
    pub baseline: f64,
    /// Per layer, `(sparsity, metric)` points sorted by sparsity.
    pub layers: BTreeMap<String, Vec<(f64, f64)>>,
}

/// The JSON file's shape (other keys are ignored).
#[derive(Deserialize)]
struct CurvesFile {
    #[serde(default)]
    metric: Option<String>,
    baseline: f64,
    layers: BTreeMap<String, BTreeMap<String, f64>>,
}

impl SensitivityCurves {
    /// Curves from a table `{layer: {"0.1": metric, ..}}` and the unpruned `baseline`.
    ///
    /// # Errors
    /// [`CompressError::InvalidValue`] naming the layer and the key for a sparsity that is not a
    /// number in `[0, 1)`, a repeated sparsity or a non-finite metric; the same for a
    /// non-finite baseline.
    pub fn from_map(
        baseline: f64,
        table: &BTreeMap<String, BTreeMap<String, f64>>,
    ) -> Result<Self> {
        if !baseline.is_finite() {
            return Err(CompressError::InvalidValue {
                key: "baseline".into(),
                context: "sensitivity table".into(),
                value: baseline.to_string(),
                reason: "must be a finite number".into(),
            });
        }
        let mut layers = BTreeMap::new();
        for (layer, points) in table {
            let invalid = |key: &str, value: String, reason: &str| CompressError::InvalidValue {
                key: key.into(),
                context: format!("sensitivity table, layer '{layer}'"),
                value,
                reason: reason.into(),
            };
            let mut curve = Vec::with_capacity(points.len());
            for (key, &metric) in points {
                let s: f64 = key
                    .trim()
                    .parse()
                    .ok()
                    .filter(|s: &f64| (0.0..1.0).contains(s))
                    .ok_or_else(|| {
                        invalid(
                            key,
                            key.clone(),
                            "a sparsity key must be a number in [0, 1)",
                        )
                    })?;
                if !metric.is_finite() {
                    return Err(invalid(
                        key,
                        metric.to_string(),
                        "the metric must be finite",
                    ));
                }
                curve.push((s, metric));
            }
            curve.sort_by(|a, b| a.0.total_cmp(&b.0));
            if let Some(w) = curve.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(invalid(
                    &w[0].0.to_string(),
                    w[0].0.to_string(),
                    "the sparsity is given twice",
                ));
            }
            layers.insert(layer.clone(), curve);
        }
        Ok(Self {
            metric: "metric".into(),
            baseline,
            layers,
        })
    }

    /// Name the metric.
    pub fn with_metric(mut self, metric: impl Into<String>) -> Self {
        self.metric = metric.into();
        self
    }

    /// Curves from the JSON text `{"metric": .., "baseline": .., "layers": {..}}`, as
    /// `burn-compress sensitivity --json` prints it; `origin` names the source in errors.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] naming `origin` when the JSON does not have that shape;
    /// [`from_map`](Self::from_map)'s errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let file: CurvesFile =
            serde_json::from_str(text).map_err(|e| CompressError::Algorithm {
                algorithm: NAME.into(),
                message: format!("sensitivity file '{origin}' is invalid: {e}"),
            })?;
        let curves = Self::from_map(file.baseline, &file.layers)?;
        Ok(match file.metric {
            Some(m) => curves.with_metric(m),
            None => curves,
        })
    }

    /// [`from_json`](Self::from_json) on a file.
    ///
    /// # Errors
    /// [`CompressError::Io`] naming the path, or `from_json`'s errors.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = compress_core::error::fs::read_to_string(path)?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// The curve of `layer` with the unpruned point `(0, baseline)` first (unless 0 was
    /// measured).
    fn points(&self, layer: &str) -> Option<Vec<(f64, f64)>> {
        let measured = self.layers.get(layer)?;
        let mut points = Vec::with_capacity(measured.len() + 1);
        if measured.first().is_none_or(|p| p.0 > 0.0) {
            points.push((0.0, self.baseline));
        }
        points.extend_from_slice(measured);
        Some(points)
    }

    /// The metric of `layer` at sparsity `s`, linear between measured points; `None` for a
    /// layer without a curve or `s` past its last measured point.
    pub fn metric_at(&self, layer: &str, s: f64) -> Option<f64> {
        interpolate(&self.points(layer)?, s)
    }

    /// The largest measured sparsity of `layer` (0 for an empty curve).
    pub fn last_measured(&self, layer: &str) -> Option<f64> {
        self.layers
            .get(layer)
            .map(|c| c.last().map_or(0.0, |p| p.0))
    }

    /// How much worse than the baseline `layer` is predicted to be at sparsity `s`.
    pub fn predicted_loss(&self, layer: &str, s: f64, objective: Objective) -> Option<f64> {
        self.metric_at(layer, s)
            .map(|m| objective.loss(self.baseline, m))
    }
}

/// Linear interpolation on points sorted by x; `None` outside them.
fn interpolate(points: &[(f64, f64)], x: f64) -> Option<f64> {
    let last = points.last()?;
    if x > last.0 + 1e-12 || x < points[0].0 {
        return None;
    }
    let i = points
        .iter()
        .position(|p| p.0 >= x)
        .unwrap_or(points.len() - 1);
    if i == 0 || points[i].0 == x {
        return Some(points[i].1);
    }
    let (a, b) = (points[i - 1], points[i]);
    Some(a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0))
}

/// The lower convex hull of points sorted by x (Andrew's monotone chain; collinear points
/// dropped).
fn lower_hull(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut hull: Vec<(f64, f64)> = Vec::with_capacity(points.len());
    for &p in points {
        while hull.len() >= 2 {
            let (o, a) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            let cross = (a.0 - o.0) * (p.1 - o.1) - (a.1 - o.1) * (p.0 - o.0);
            if cross <= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
    hull
}

/// A chosen allocation and what it is predicted to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allocation {
    /// The per-layer final ratios.
    pub candidate: Candidate,
    /// The sum over layers of each one's predicted loss (on the interpolated curves).
    pub predicted_loss: f64,
    /// The predicted cost as a fraction of dense.
    pub predicted_fraction: f64,
}

/// One hull segment of one layer.
struct Segment {
    layer: usize,
    from: f64,
    to: f64,
    /// Loss per unit of saved size.
    price: f64,
}

/// The sensitivity-guided allocator.
#[derive(Debug, Clone, PartialEq)]
pub struct SensitivityGuided {
    curves: SensitivityCurves,
    max_retries: usize,
}

impl SensitivityGuided {
    /// An allocator on `curves`, with 5 retries after a measured miss.
    pub fn new(curves: SensitivityCurves) -> Self {
        Self {
            curves,
            max_retries: 5,
        }
    }

    /// Re-allocate at most `n` times after the real cost missed the budget.
    pub fn with_max_retries(mut self, n: usize) -> Self {
        self.max_retries = n;
        self
    }

    /// The curves.
    pub fn curves(&self) -> &SensitivityCurves {
        &self.curves
    }

    /// The allocation whose predicted cost is at most `fraction` of `dense` under `measure`,
    /// with the least predicted loss (see the crate doc).
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] for a layer without a curve (with a did-you-mean);
    /// [`CompressError::BudgetUnreachable`] when even every layer at its limit misses.
    pub fn allocate(
        &self,
        space: &SearchSpace,
        measure: Measure,
        dense: &compress_core::search::Cost,
        fraction: f64,
        objective: Objective,
    ) -> Result<Allocation> {
        let budget = Budget { measure, fraction };
        let total = space.total(measure);
        let mut curves = Vec::with_capacity(space.layers.len());
        let mut segments = Vec::new();
        let mut limits = Vec::with_capacity(space.layers.len());
        for (i, layer) in space.layers.iter().enumerate() {
            let points = self.curve_of(layer)?;
            let limit = layer
                .max_share()
                .min(self.curves.last_measured(&layer.name).unwrap_or(0.0));
            let left = layer.size(measure) * (1.0 - layer.current_ratio);
            let losses = clipped_losses(&points, limit, self.curves.baseline, objective);
            if left > 0.0 {
                for w in lower_hull(&losses).windows(2) {
                    segments.push(Segment {
                        layer: i,
                        from: w[0].0,
                        to: w[1].0,
                        price: (w[1].1 - w[0].1) / ((w[1].0 - w[0].0) * left),
                    });
                }
            }
            curves.push(points);
            limits.push(limit);
        }
        // Stable: equal prices keep layer order, and a layer's segments stay in order.
        segments.sort_by(|a, b| a.price.total_cmp(&b.price));
        let share = space.required_share(&budget, dense);
        let masked: f64 = space
            .layers
            .iter()
            .map(|l| l.size(measure) * l.current_ratio)
            .sum();
        let mut need = share * total - masked;
        let mut shares = vec![0.0; space.layers.len()];
        for seg in &segments {
            if need <= 0.0 {
                break;
            }
            let layer = &space.layers[seg.layer];
            let left = layer.size(measure) * (1.0 - layer.current_ratio);
            let take = need.min((seg.to - seg.from) * left);
            shares[seg.layer] = (seg.from + take / left).min(seg.to);
            need -= take;
        }
        if need > 1e-9 * total.max(1.0) {
            let most: f64 = space
                .layers
                .iter()
                .zip(&limits)
                .map(|(l, s)| l.size(measure) * l.compose(*s))
                .sum();
            return Err(CompressError::BudgetUnreachable {
                budget: budget.to_string(),
                closest: space.predicted_fraction(most / total, measure, dense),
                context: "predicted from the sensitivity curves and layer sizes, every layer at \
                          its max_ratio or last measured sparsity"
                    .into(),
            });
        }
        let mut ratios = BTreeMap::new();
        let mut predicted_loss = 0.0;
        let mut pruned = 0.0;
        for ((layer, points), &s) in space.layers.iter().zip(&curves).zip(&shares) {
            let ratio = layer.compose(s).min(layer.max_ratio);
            predicted_loss +=
                interpolate(points, s).map_or(0.0, |m| objective.loss(self.curves.baseline, m));
            pruned += layer.size(measure) * ratio;
            ratios.insert(layer.name.clone(), ratio);
        }
        Ok(Allocation {
            candidate: Candidate::new(ratios),
            predicted_loss,
            predicted_fraction: space.predicted_fraction(pruned / total, measure, dense),
        })
    }

    fn curve_of(&self, layer: &SearchLayer) -> Result<Vec<(f64, f64)>> {
        self.curves
            .points(&layer.name)
            .ok_or_else(|| CompressError::Algorithm {
                algorithm: NAME.into(),
                message: format!(
                    "no sensitivity curve for layer '{}'{} (the table has: {})",
                    layer.name,
                    did_you_mean(&layer.name, self.curves.layers.keys().map(String::as_str))
                        .map(|s| format!(" (did you mean '{s}'?)"))
                        .unwrap_or_default(),
                    self.curves
                        .layers
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

/// The loss points of a curve up to `limit` (the interpolated point at `limit` included).
fn clipped_losses(
    points: &[(f64, f64)],
    limit: f64,
    baseline: f64,
    objective: Objective,
) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.0 < limit)
        .map(|&(s, m)| (s, objective.loss(baseline, m)))
        .collect();
    if let Some(m) = interpolate(points, limit) {
        out.push((limit, objective.loss(baseline, m)));
    }
    out
}

impl Search for SensitivityGuided {
    fn search(
        &self,
        space: &SearchSpace,
        budget: &Budget,
        objective: Objective,
        evaluator: &mut dyn Evaluator,
    ) -> Result<SearchOutcome> {
        let mut log = TrialLog::new(space, budget, objective, evaluator);
        let dense = log.dense().clone();
        space.reachable_share(budget, &dense)?;
        let mut fraction = budget.fraction;
        for attempt in 0..=self.max_retries {
            let plan = match self.allocate(space, budget.measure, &dense, fraction, objective) {
                Ok(plan) => plan,
                // A tightened target past what the curves allow: report the measured trials.
                Err(CompressError::BudgetUnreachable { .. }) if attempt > 0 => break,
                Err(e) => return Err(e),
            };
            let trial = log.evaluate(plan.candidate)?;
            if trial.within_budget {
                break;
            }
            let Some(achieved) = trial.evaluation.cost.ratio_to(&dense, budget.measure) else {
                break;
            };
            fraction -= (achieved - budget.fraction) + 0.01 * budget.fraction;
            if fraction <= 0.0 {
                break;
            }
        }
        log.finish(NAME)
    }
}

fn build(options: &compress_core::toml::Table) -> Result<Algorithm> {
    let o = AlgorithmOptions::new(NAME, options);
    let max_retries = o.usize("max_retries", 5, 0)?;
    let path = match options.get("sensitivity") {
        Some(compress_core::toml::Value::String(p)) => p,
        Some(other) => {
            return Err(CompressError::Algorithm {
                algorithm: NAME.into(),
                message: format!("'sensitivity' must be the path of a JSON file, found {other}"),
            });
        }
        None => {
            return Err(CompressError::Algorithm {
                algorithm: NAME.into(),
                message: "'sensitivity' is required: the path of the JSON that \
                          `burn-compress sensitivity --json` prints"
                    .into(),
            });
        }
    };
    let curves = SensitivityCurves::from_file(Path::new(path))?;
    Ok(Algorithm::Search(Box::new(
        SensitivityGuided::new(curves).with_max_retries(max_retries),
    )))
}

inventory::submit! {
    AlgorithmEntry {
        name: "sensitivity-guided",
        kind: AlgorithmKind::Search,
        summary: "per-layer ratios read off sensitivity curves: least predicted loss under the budget, checked on the real cost",
        config_keys: &["sensitivity", "max_retries"],
        build,
    }
}

#[cfg(test)]
mod tests;
