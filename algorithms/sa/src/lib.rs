//! # search-sa: simulated annealing over per-layer pruning ratios
//!
//! NNI v2's `SimulatedAnnealingTaskGenerator` (`pruning/tools/task_generator.py` L165-376,
//! defaults from `iterative_pruner.py` L403-415), with the same schedule, rescale and
//! acceptance, but without its infinite loops.
//!
//! - **Target.** `S` is the share of the layers' total size that must go for the predicted cost to
//!   meet the budget ([`SearchSpace::required_share`]: `1 - fraction` when the layers are the
//!   whole model). Pre-existing masks (`current_ratio` `m_l`) turn it into `S' = (S - M) / (1 -
//!   M)` of what is left (`M` the size-weighted masked share), and a share `s` of layer `l` maps
//!   back to the final ratio `m_l + s (1 - m_l)`.
//! - **Rescale** (L268-294): sorted sparsities go to the layers sorted by (remaining) size, so a
//!   bigger layer gets a bigger ratio; they are scaled by `k = S' / (sum(floor(n_i s_i)) /
//!   sum(n_i))`. A rescaled list is valid when every value is in `[0, 1)` and, beyond NNI, no
//!   layer passes its `max_ratio`.
//! - **Start**: repeat `low <- low + 0.05 (1 - low)`, draw sorted `U(low, 1)` until the rescale
//!   is valid. **Perturb**: magnitude `perturbation_magnitude * T / T0`, `s' = max(0, s +
//!   U(-mag, mag))`, rescale, retry until valid.
//! - **Accept** a proposal if its metric is better (by the [`Objective`]), else with probability
//!   `exp(-|delta| / T)`; cool `T <- cool_down_rate * T` only on acceptance (the first
//!   evaluation only sets the current point), stop when `T < stop_temperature`. An
//!   always-improving metric therefore costs exactly 17 evaluations with the defaults.
//!
//! Layer size is `params` for [`Measure::Params`] and [`Measure::FileBytes`], `macs` for
//! [`Measure::Macs`] and [`Measure::Latency`] ([`SearchLayer::size`]); the evaluator's real
//! cost decides whether a trial is within budget. With `size = "params"` the layers are *ordered*
//! by their weight counts whatever the budget counts, as NNI orders them (its `n_i` is
//! `weight.numel()`), while the rescale still weights them by the budget's measure so the
//! predicted cost meets it: under a MACs budget that lets a many-MACs conv with few weights keep
//! more channels than the large Linear layers, which the MACs ordering never allows.
//!
//! ## Where NNI loops forever, and what happens here
//! - The start draw (NNI #3865, targets above 0.8): at most 200 draws (by then `low` is within
//!   4e-5 of 1); if none is valid, the start is the *water-filling* allocation (every layer the
//!   same share, capped at its maximum), which exists whenever the budget is reachable.
//! - A perturbation: at most 100 draws; if none is valid, the proposal is the current point
//!   (delta 0, so it is accepted and the temperature still falls).
//! - Metrics on a loss scale (NNI #4527: deltas of hundreds make `exp(-|delta|/T)` zero, nothing
//!   is accepted, the temperature never falls): at most `max_evaluations` evaluations.
//! - A budget that even every layer at its `max_ratio` misses is refused before any evaluation
//!   with [`CompressError::BudgetUnreachable`].
//!
//! Registry name: `simulated-annealing`.
//!
//! | key | meaning |
//! | --- | --- |
//! | `start_temperature` | `T0`, a number > 0 (default 100) |
//! | `stop_temperature` | stop when `T` falls below it, in `(0, start_temperature)` (default 20) |
//! | `cool_down_rate` | `T <- rate * T` on each acceptance, in `(0, 1)` (default 0.9) |
//! | `perturbation_magnitude` | the perturbation at `T0`, > 0 (default 0.35) |
//! | `seed` | the random stream (ChaCha8), an integer >= 0 (default 0) |
//! | `max_evaluations` | an upper bound on evaluations, >= 1 (default 100) |
//! | `size` | what orders the layers (a bigger one gets a bigger ratio): `budget` (the budget's measure, default), `params` (NNI's weight counts) or `macs` |
//!
//! ```
//! use compress_core::search::{Budget, Candidate, Cost, Evaluation, Evaluator, Measure,
//!     Objective, Search, SearchLayer, SearchSpace};
//! use search_sa::SimulatedAnnealingConfig;
//!
//! // Two layers; the metric prefers pruning the big one.
//! struct Toy(Cost);
//! impl Evaluator for Toy {
//!     fn dense(&self) -> &Cost { &self.0 }
//!     fn evaluate(&mut self, c: &Candidate) -> compress_core::Result<Evaluation> {
//!         let (a, b) = (c.ratios["small"], c.ratios["big"]);
//!         let params = (100.0 * (1.0 - a) + 900.0 * (1.0 - b)).round() as u64;
//!         Ok(Evaluation { metric: b - a, cost: Cost { params, ..self.0.clone() } })
//!     }
//! }
//! let layer = |name: &str, params| SearchLayer { name: name.into(), op_type: "Linear".into(),
//!     params, macs: params, in_channels: 1, out_channels: 1, kernel: 1, stride: 1,
//!     input_size: 1, max_ratio: 0.9, current_ratio: 0.0 };
//! let space = SearchSpace::new(vec![layer("small", 100), layer("big", 900)]);
//! let dense = Cost { macs: 1000, params: 1000, file_bytes: 4000, latency_ms: None };
//! let budget = Budget::parse("params<=0.5")?;
//! let sa = SimulatedAnnealingConfig::default().init()?;
//! let outcome = sa.search(&space, &budget, Objective::Maximize, &mut Toy(dense))?;
//! let best = outcome.best_trial().unwrap();
//! assert!(best.within_budget && best.candidate.ratios["big"] >= best.candidate.ratios["small"]);
//! # Ok::<(), compress_core::CompressError>(())
//! ```
#![warn(missing_docs)]

use compress_core::registry::AlgorithmOptions;
use compress_core::search::{
    Budget, Candidate, Evaluator, Measure, Objective, Search, SearchLayer, SearchOutcome,
    SearchSpace, TrialLog,
};
use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

/// The registry name.
pub const NAME: &str = "simulated-annealing";

/// Start draws before the water-filling fallback.
const START_DRAWS: usize = 200;
/// Perturbation draws before proposing the current point again.
const PERTURB_DRAWS: usize = 100;

/// Options of the `[algorithm]` table (NNI's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatedAnnealingConfig {
    /// `T0`, > 0 (default 100).
    pub start_temperature: f64,
    /// Stop below this temperature, in `(0, start_temperature)` (default 20).
    pub stop_temperature: f64,
    /// Cooling factor per acceptance, in `(0, 1)` (default 0.9).
    pub cool_down_rate: f64,
    /// Perturbation magnitude at `T0`, > 0 (default 0.35).
    pub perturbation_magnitude: f64,
    /// Seed of the ChaCha8 random stream (default 0).
    pub seed: u64,
    /// Upper bound on evaluations, >= 1 (default 100).
    pub max_evaluations: usize,
    /// What orders the layers in the rescale (bigger gets a bigger ratio): `None` for the
    /// budget's measure (default), `Some(Measure::Params)` for NNI's weight counts.
    pub size: Option<Measure>,
}

impl Default for SimulatedAnnealingConfig {
    fn default() -> Self {
        Self {
            start_temperature: 100.0,
            stop_temperature: 20.0,
            cool_down_rate: 0.9,
            perturbation_magnitude: 0.35,
            seed: 0,
            max_evaluations: 100,
            size: None,
        }
    }
}

impl SimulatedAnnealingConfig {
    /// Read the options (unknown keys were already refused by the registry) and validate them.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] naming the key and the value found.
    pub fn from_table(table: &compress_core::toml::Table) -> Result<Self> {
        let o = AlgorithmOptions::new(NAME, table);
        let d = Self::default();
        let positive = |x: f64| x > 0.0;
        let config = Self {
            start_temperature: o.f64(
                "start_temperature",
                d.start_temperature,
                positive,
                "a number > 0",
            )?,
            stop_temperature: o.f64(
                "stop_temperature",
                d.stop_temperature,
                positive,
                "a number > 0",
            )?,
            cool_down_rate: o.f64(
                "cool_down_rate",
                d.cool_down_rate,
                |x| x > 0.0 && x < 1.0,
                "a number in (0, 1)",
            )?,
            perturbation_magnitude: o.f64(
                "perturbation_magnitude",
                d.perturbation_magnitude,
                positive,
                "a number > 0",
            )?,
            seed: o.usize("seed", 0, 0)? as u64,
            max_evaluations: o.usize("max_evaluations", d.max_evaluations, 1)?,
            size: size_option(table)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Check the ranges the table documents.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] naming the first key out of range.
    pub fn validate(&self) -> Result<()> {
        let fail = |message: String| {
            Err(CompressError::Algorithm {
                algorithm: NAME.into(),
                message,
            })
        };
        let finite_positive = |x: f64| x.is_finite() && x > 0.0;
        if !finite_positive(self.start_temperature) {
            return fail(format!(
                "'start_temperature' must be a number > 0, found {}",
                self.start_temperature
            ));
        }
        if !(finite_positive(self.stop_temperature)
            && self.stop_temperature < self.start_temperature)
        {
            return fail(format!(
                "'stop_temperature' must be in (0, start_temperature = {}), found {}",
                self.start_temperature, self.stop_temperature
            ));
        }
        if !(self.cool_down_rate > 0.0 && self.cool_down_rate < 1.0) {
            return fail(format!(
                "'cool_down_rate' must be a number in (0, 1), found {}",
                self.cool_down_rate
            ));
        }
        if !finite_positive(self.perturbation_magnitude) {
            return fail(format!(
                "'perturbation_magnitude' must be a number > 0, found {}",
                self.perturbation_magnitude
            ));
        }
        if self.max_evaluations == 0 {
            return fail("'max_evaluations' must be an integer >= 1, found 0".into());
        }
        Ok(())
    }

    /// The search, after [`validate`](Self::validate).
    ///
    /// # Errors
    /// As `validate`.
    pub fn init(&self) -> Result<SimulatedAnnealing> {
        self.validate()?;
        Ok(SimulatedAnnealing { config: *self })
    }
}

/// Simulated annealing over per-layer ratios (build it with [`SimulatedAnnealingConfig::init`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatedAnnealing {
    config: SimulatedAnnealingConfig,
}

impl SimulatedAnnealing {
    /// Its options.
    pub fn config(&self) -> &SimulatedAnnealingConfig {
        &self.config
    }
}

/// The problem in NNI's terms: shares of what is left, layers sorted by remaining size.
struct Annealing<'a> {
    /// The layers, sorted by remaining size (stable: model order among equals).
    layers: Vec<&'a SearchLayer>,
    /// Their remaining sizes `n_l (1 - m_l)`.
    remaining: Vec<f64>,
    /// The largest share of what is left each may lose.
    caps: Vec<f64>,
    /// `S'`: the share of the remaining total to prune.
    target: f64,
}

impl<'a> Annealing<'a> {
    /// Layers sorted by their remaining size under `order`, weighted by `measure`.
    fn new(space: &'a SearchSpace, measure: Measure, order: Measure, share: f64) -> Self {
        let mut layers: Vec<&SearchLayer> = space.layers.iter().collect();
        let left = |l: &SearchLayer| l.size(measure) * (1.0 - l.current_ratio);
        let rank = |l: &SearchLayer| l.size(order) * (1.0 - l.current_ratio);
        layers.sort_by(|a, b| rank(a).total_cmp(&rank(b)));
        let remaining: Vec<f64> = layers.iter().map(|l| left(l)).collect();
        let total = space.total(measure);
        let masked = space
            .layers
            .iter()
            .map(|l| l.size(measure) * l.current_ratio)
            .sum::<f64>()
            / total;
        Self {
            caps: layers.iter().map(|l| l.max_share()).collect(),
            layers,
            remaining,
            target: ((share - masked) / (1.0 - masked)).max(0.0),
        }
    }

    /// NNI's `_rescale_sparsity` plus the validity check: `None` when invalid.
    fn rescale(&self, values: &[f64]) -> Option<Vec<f64>> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let total: f64 = self.remaining.iter().sum();
        let pruned: f64 = self
            .remaining
            .iter()
            .zip(&sorted)
            .map(|(n, s)| (n * s).floor())
            .sum();
        if pruned.is_nan() || pruned <= 0.0 {
            return None;
        }
        let scale = self.target / (pruned / total);
        let scaled: Vec<f64> = sorted.iter().map(|s| s * scale).collect();
        let valid = scaled
            .iter()
            .zip(&self.caps)
            .all(|(&s, &cap)| (0.0..1.0).contains(&s) && s <= cap);
        valid.then_some(scaled)
    }

    /// The start point: NNI's rising `low` draws, bounded, then water-filling.
    fn start(&self, rng: &mut ChaCha8Rng) -> Vec<f64> {
        let mut low = 0.0;
        for _ in 0..START_DRAWS {
            low += 0.05 * (1.0 - low);
            let draws: Vec<f64> = (0..self.layers.len())
                .map(|_| low + (1.0 - low) * rng.random::<f64>())
                .collect();
            if let Some(valid) = self.rescale(&draws) {
                return valid;
            }
        }
        self.water_fill()
    }

    /// Every layer the same share `t`, capped at its maximum, with `t` the smallest that
    /// reaches the target (bisection; the caps reach it when the budget is reachable).
    fn water_fill(&self) -> Vec<f64> {
        let total: f64 = self.remaining.iter().sum();
        let pruned = |t: f64| -> f64 {
            self.remaining
                .iter()
                .zip(&self.caps)
                .map(|(n, c)| n * t.min(*c))
                .sum::<f64>()
        };
        let (mut lo, mut hi) = (0.0, self.caps.iter().copied().fold(0.0, f64::max));
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if pruned(mid) >= self.target * total {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        self.caps.iter().map(|c| hi.min(*c)).collect()
    }

    /// A perturbed, rescaled proposal; the current point when no draw is valid.
    fn perturb(&self, current: &[f64], magnitude: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
        for _ in 0..PERTURB_DRAWS {
            let moved: Vec<f64> = current
                .iter()
                .map(|s| (s + magnitude * (2.0 * rng.random::<f64>() - 1.0)).max(0.0))
                .collect();
            if let Some(valid) = self.rescale(&moved) {
                return valid;
            }
        }
        current.to_vec()
    }

    /// Final ratios by layer name: `m_l + s (1 - m_l)`, within `max_ratio`.
    fn candidate(&self, shares: &[f64]) -> Candidate {
        Candidate::new(
            self.layers
                .iter()
                .zip(shares)
                .map(|(l, &s)| (l.name.clone(), l.compose(s).min(l.max_ratio)))
                .collect(),
        )
    }
}

impl Search for SimulatedAnnealing {
    fn search(
        &self,
        space: &SearchSpace,
        budget: &Budget,
        objective: Objective,
        evaluator: &mut dyn Evaluator,
    ) -> Result<SearchOutcome> {
        let c = &self.config;
        let mut log = TrialLog::new(space, budget, objective, evaluator);
        let share = space.reachable_share(budget, log.dense())?;
        let problem = Annealing::new(
            space,
            budget.measure,
            c.size.unwrap_or(budget.measure),
            share,
        );
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
        if problem.target <= 0.0 {
            // Nothing to prune (NNI: every layer at 0, no perturbation): one evaluation.
            log.evaluate(problem.candidate(&vec![0.0; problem.layers.len()]))?;
            return log.finish(NAME);
        }
        let mut current = problem.start(&mut rng);
        let mut score = log.evaluate(problem.candidate(&current))?.evaluation.metric;
        let mut temperature = c.start_temperature;
        while temperature >= c.stop_temperature && log.trials().len() < c.max_evaluations {
            let magnitude = temperature / c.start_temperature * c.perturbation_magnitude;
            let proposal = problem.perturb(&current, magnitude, &mut rng);
            let metric = log
                .evaluate(problem.candidate(&proposal))?
                .evaluation
                .metric;
            let accept = objective.better(metric, score)
                || rng.random::<f64>() < (-(metric - score).abs() / temperature).exp();
            if accept {
                current = proposal;
                score = metric;
                temperature *= c.cool_down_rate;
            }
        }
        log.finish(NAME)
    }
}

/// The `size` option: `budget` (or absent) -> `None`, otherwise a [`Measure`] name.
fn size_option(table: &compress_core::toml::Table) -> Result<Option<Measure>> {
    let Some(value) = table.get("size") else {
        return Ok(None);
    };
    let invalid = || CompressError::Algorithm {
        algorithm: NAME.into(),
        message: format!("'size' must be \"budget\", \"params\" or \"macs\", found {value}"),
    };
    match value.as_str().ok_or_else(invalid)? {
        "budget" => Ok(None),
        "params" => Ok(Some(Measure::Params)),
        "macs" => Ok(Some(Measure::Macs)),
        _ => Err(invalid()),
    }
}

fn build(options: &compress_core::toml::Table) -> Result<Algorithm> {
    Ok(Algorithm::Search(Box::new(
        SimulatedAnnealingConfig::from_table(options)?.init()?,
    )))
}

inventory::submit! {
    AlgorithmEntry {
        name: "simulated-annealing",
        kind: AlgorithmKind::Search,
        summary: "simulated annealing over per-layer ratios (NNI's schedule, rescale and acceptance; bounded)",
        config_keys: &[
            "start_temperature",
            "stop_temperature",
            "cool_down_rate",
            "perturbation_magnitude",
            "seed",
            "max_evaluations",
            "size",
        ],
        build,
    }
}

#[cfg(test)]
mod tests;
