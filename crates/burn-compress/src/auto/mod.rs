//! Automatic compression: per-layer pruning ratios searched under a cost budget, applied by an
//! iterative scheduler, with a same-run uniform baseline. What `burn-compress auto` and the
//! recipe step `kind = "auto"` run.
//!
//! The pipeline (NNI v2's scheduler and AutoCompress, `shared/notes/nni-automation.md` §2):
//!
//! 1. **Search space** ([`search_space`]): every Conv2d / Linear weight the config resolves
//!    (default: all of them but the classifier, the last layer of the forward), with params,
//!    MACs (the captured graph's cost counting), channels, kernel, stride and input size.
//! 2. **Iterations** ([`AutoSettings::schedule`], `iterations`): the budget's cost share is
//!    reached gradually (linear, AGP or lottery targets, relative to the dense model). Each
//!    iteration asks the search algorithm (any registered `search` algorithm, or `uniform`) for
//!    per-layer ratios *on the compact model* (the target converted with
//!    [`compact_ratio`](compress_core::schedule::compact_ratio)), prunes with the chosen pruner,
//!    speeds the model up, fine-tunes and evaluates. With `reset_weights` (lottery ticket) the
//!    iteration fine-tunes first, prunes, then reloads the weights the task started from.
//! 3. **Keep best** ([`KeepBest`]): which iteration within the budget is kept (the latest, or
//!    the best metric), then a final fine-tune.
//! 4. **Uniform baseline**: the same schedule and fine-tuning with one ratio for every layer,
//!    bisected per iteration so that its measured cost meets the chosen model's.
//!
//! Every candidate is evaluated by a [`PruneEvaluator`]: prune, speed up, measure the real
//! [`Cost`](compress_core::search::Cost) (MACs and params from the sped-up model's graph,
//! the saved file's bytes, latency when the budget asks for it), optionally fine-tune
//! (`candidate_epochs`, default 0), and measure the [`Metric`] on the test split.
//!
//! ADMM (AutoCompress's pruner) is any registry name to this module: when an `admm` pruner is
//! registered, `pruner = "admm"` with `search = "simulated-annealing"` is AutoCompress (the
//! evaluator hands pruners that train a [`Training`](compress_core::driver::Training) on the
//! training split).

mod evaluator;
mod plot;
mod report;
mod scheduler;
mod space;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use compress_core::error::did_you_mean;
use compress_core::schedule::IterativeSchedule;
use compress_core::search::{Budget, Objective};
use compress_core::toml::Table;
use compress_core::{CompressConfig, CompressError};
use serde::{Deserialize, Serialize};

pub use evaluator::PruneEvaluator;
pub use plot::plot_svg;
pub use report::{AutoReport, CandidateRecord, IterationRecord, ModelRecord, UniformSummary};
pub use scheduler::{AutoEvent, AutoOutcome, auto_compress, compose_plans};
pub use space::search_space;

/// The search name that allocates one ratio to every layer (not a registry entry).
pub const UNIFORM: &str = "uniform";

/// Why automatic compression failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AutoError {
    /// Config, budget, search or pruning errors (an empty search space, a budget that cannot be
    /// met, an unknown algorithm, ...).
    #[error(transparent)]
    Compress(Box<CompressError>),
    /// Capturing or counting the model failed.
    #[error(transparent)]
    Graph(Box<compress_graph::GraphError>),
    /// Speedup (planning or applying) failed.
    #[error(transparent)]
    Speedup(Box<compress_speedup::SpeedupError>),
    /// Pruning through the captured graph failed.
    #[error(transparent)]
    Prune(Box<crate::pruning::PruneError>),
    /// A metric name the tool does not support.
    #[error("unknown metric '{name}'{}: expected one of accuracy, loss", suggestion_text(.suggestion))]
    UnknownMetric {
        /// The name as given.
        name: String,
        /// The closest supported name.
        suggestion: Option<String>,
    },
    /// A data set without labels, for a metric that needs them.
    #[error(
        "data set '{}' has no 'labels' tensor: the '{metric}' metric needs labels",
        .path.display()
    )]
    NoLabels {
        /// The data set.
        path: PathBuf,
        /// The metric that needs them.
        metric: Metric,
    },
    /// A setting out of range.
    #[error("auto setting '{key}' = {value}: {reason}")]
    InvalidSetting {
        /// The key (`iterations`, `max_ratio`, ...).
        key: String,
        /// The value found.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("'{}': {message}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// Drawing the plot failed.
    #[error("drawing the plot: {0}")]
    Plot(String),
}

/// Boxed wrappers: the wrapped errors are large, and `AutoError` travels through every `Result`.
macro_rules! boxed_from {
    ($($variant:ident: $ty:ty),* $(,)?) => {$(
        impl From<$ty> for AutoError {
            fn from(e: $ty) -> Self {
                AutoError::$variant(Box::new(e))
            }
        }
    )*};
}

boxed_from!(
    Compress: CompressError,
    Graph: compress_graph::GraphError,
    Speedup: compress_speedup::SpeedupError,
    Prune: crate::pruning::PruneError,
);

fn suggestion_text(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default()
}

/// What a candidate is judged by, on the data set's test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Top-1 accuracy (a fraction; bigger is better).
    #[default]
    Accuracy,
    /// Mean cross-entropy (smaller is better).
    Loss,
}

impl Metric {
    /// Every metric with its name.
    pub const ALL: [(Metric, &'static str); 2] =
        [(Metric::Accuracy, "accuracy"), (Metric::Loss, "loss")];

    /// Whether bigger or smaller is better.
    pub fn objective(&self) -> Objective {
        match self {
            Metric::Accuracy => Objective::Maximize,
            Metric::Loss => Objective::Minimize,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Accuracy => "accuracy",
            Metric::Loss => "loss",
        })
    }
}

impl FromStr for Metric {
    type Err = AutoError;

    /// `accuracy` or `loss`.
    fn from_str(s: &str) -> Result<Self, AutoError> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == s.trim())
            .map(|(m, _)| *m)
            .ok_or_else(|| AutoError::UnknownMetric {
                name: s.to_string(),
                suggestion: did_you_mean(s.trim(), Self::ALL.iter().map(|(_, n)| *n)),
            })
    }
}

/// Which iteration's model the scheduler keeps (NNI's keep-best modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepBest {
    /// The last iteration's.
    #[default]
    Latest,
    /// The biggest metric among the iterations within the budget.
    Maximize,
    /// The smallest metric among the iterations within the budget.
    Minimize,
}

impl FromStr for KeepBest {
    type Err = AutoError;

    /// `latest`, `maximize` or `minimize`.
    fn from_str(s: &str) -> Result<Self, AutoError> {
        match s.trim() {
            "latest" => Ok(KeepBest::Latest),
            "maximize" => Ok(KeepBest::Maximize),
            "minimize" => Ok(KeepBest::Minimize),
            other => Err(AutoError::InvalidSetting {
                key: "keep".into(),
                value: format!("'{other}'"),
                reason: "expected latest, maximize or minimize".into(),
            }),
        }
    }
}

/// Everything automatic compression needs besides the model and the data.
#[derive(Debug, Clone)]
pub struct AutoSettings {
    /// The cost budget (measured after speedup).
    pub budget: Budget,
    /// Registry name of the search algorithm (`simulated-annealing`, `sensitivity-guided`), or
    /// [`UNIFORM`]. `sensitivity-guided` without a `sensitivity` option gets curves computed on
    /// each iteration's model.
    pub search: String,
    /// Options of the search algorithm (its `[algorithm]` table keys).
    pub search_options: Table,
    /// Registry name of the pruner (default `l1-norm`).
    pub pruner: String,
    /// Options of the pruner.
    pub pruner_options: Table,
    /// Restricts the search space to the targets its pruning rules resolve (their ratios are
    /// not used); `None`: every Conv2d and Linear but the classifier.
    pub config: Option<CompressConfig>,
    /// What candidates are judged by.
    pub metric: Metric,
    /// How the budget is reached over the iterations.
    pub schedule: IterativeSchedule,
    /// Iterations of the schedule (`N`, >= 1).
    pub iterations: usize,
    /// Which iteration's model is kept.
    pub keep: KeepBest,
    /// Lottery ticket: reload the weights the task started from after each iteration's pruning.
    pub reset_weights: bool,
    /// The largest ratio a search gives a layer in one iteration, in `[0, 1)` (default 0.9).
    pub max_ratio: f64,
    /// Fine-tuning epochs of each candidate before it is measured (default 0: candidates are
    /// judged right after pruning and speedup).
    pub candidate_epochs: usize,
    /// Fine-tuning epochs after each iteration's pruning.
    pub finetune_epochs: usize,
    /// Fine-tuning epochs of the kept model.
    pub final_epochs: usize,
    /// Learning rate of every fine-tune (Adam).
    pub lr: f64,
    /// Images per training step.
    pub batch_size: usize,
    /// Seed of fine-tuning orders and of the search (when its options do not set one).
    pub seed: u64,
    /// Also run the uniform baseline (default true).
    pub uniform_baseline: bool,
}

impl AutoSettings {
    /// Defaults for `budget`: simulated annealing, `l1-norm`, accuracy, one linear iteration,
    /// latest, no reset, max ratio 0.9, no candidate fine-tune, 1 epoch per iteration, 5 final
    /// epochs, lr 5e-4, batch 64, seed 0, with the uniform baseline.
    pub fn new(budget: Budget) -> Self {
        Self {
            budget,
            search: "simulated-annealing".into(),
            search_options: Table::new(),
            pruner: "l1-norm".into(),
            pruner_options: Table::new(),
            config: None,
            metric: Metric::Accuracy,
            schedule: IterativeSchedule::Linear,
            iterations: 1,
            keep: KeepBest::Latest,
            reset_weights: false,
            max_ratio: 0.9,
            candidate_epochs: 0,
            finetune_epochs: 1,
            final_epochs: 5,
            lr: 5e-4,
            batch_size: 64,
            seed: 0,
            uniform_baseline: true,
        }
    }

    /// Check the ranges and that the search and the pruner are registered.
    ///
    /// # Errors
    /// [`AutoError::InvalidSetting`] naming the key; the registry's errors
    /// ([`CompressError::UnknownAlgorithm`], wrong kind, unknown option keys).
    pub fn validate(&self) -> Result<(), AutoError> {
        let invalid = |key: &str, value: String, reason: &str| AutoError::InvalidSetting {
            key: key.into(),
            value,
            reason: reason.into(),
        };
        if self.iterations == 0 {
            return Err(invalid("iterations", "0".into(), "must be an integer >= 1"));
        }
        if self.batch_size == 0 {
            return Err(invalid("batch_size", "0".into(), "must be an integer >= 1"));
        }
        if !(0.0..1.0).contains(&self.max_ratio) {
            return Err(invalid(
                "max_ratio",
                self.max_ratio.to_string(),
                "must be in [0, 1)",
            ));
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(invalid(
                "lr",
                self.lr.to_string(),
                "must be a non-negative number",
            ));
        }
        compress_core::AlgorithmEntry::find(&self.pruner)?.build_pruner(&self.pruner_options)?;
        if self.search != UNIFORM {
            let entry = compress_core::AlgorithmEntry::find(&self.search)?;
            // The sensitivity-guided allocator needs curves; they are computed per iteration
            // when not given, so it is built only once they exist.
            let computed_curves = entry.name == scheduler::SENSITIVITY_GUIDED
                && !self.search_options.contains_key("sensitivity");
            if !computed_curves {
                entry.build_search(&self.search_options)?;
            }
        }
        Ok(())
    }
}

/// Check that the data set at `path` has labels, which every [`Metric`] needs, before any work.
///
/// # Errors
/// [`AutoError::NoLabels`]; [`AutoError::Io`] when the file cannot be read;
/// [`CompressError::InvalidDataset`] when it is not safetensors.
pub fn check_labels(path: &Path, metric: Metric) -> Result<(), AutoError> {
    let bytes = std::fs::read(path).map_err(|e| AutoError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
        CompressError::InvalidDataset {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    if !meta.tensors().contains_key("labels") {
        return Err(AutoError::NoLabels {
            path: path.to_path_buf(),
            metric,
        });
    }
    Ok(())
}
