//! `kind = "auto"`: automatic compression under a budget ([`crate::auto`]): per-layer ratios
//! from a search, an iterative schedule of prune -> speedup -> fine-tune, a uniform baseline.

use std::path::PathBuf;

use compress_core::CompressConfig;
use compress_core::schedule::IterativeSchedule;
use compress_core::search::Budget;
use compress_core::toml::Table;
use serde::{Deserialize, Serialize};

use super::{Progress, RecipeError, at_least_one, err, non_negative, typed};
use crate::auto::{AutoSettings, KeepBest, Metric};

/// An auto step as written (defaults in brackets).
///
/// ```toml
/// [[step]]
/// kind = "auto"
/// budget = "macs/6"                   # or "macs<=0.2", "params/4", "file-bytes/3", "latency/2"
/// search = "simulated-annealing"      # a registered search, or "uniform"
/// pruner = "l1-norm"
/// schedule = "lottery"                # linear | agp | lottery ["linear"]
/// iterations = 3                      # [1]
/// finetune_epochs = 2                 # per iteration [1]
/// final_epochs = 10                   # [5]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AutoStep {
    /// The budget: `<measure>/<k>` (k times fewer) or `<measure><=<fraction>` (required).
    pub budget: String,
    /// Registry name of the search algorithm, or `uniform` [`simulated-annealing`].
    #[serde(default = "default_search")]
    pub search: String,
    /// The search algorithm's options (its `[algorithm]` keys) [none].
    #[serde(default)]
    pub search_options: Table,
    /// Registry name of the pruner [`l1-norm`].
    #[serde(default = "default_pruner")]
    pub pruner: String,
    /// The pruner's options [none].
    #[serde(default)]
    pub pruner_options: Table,
    /// A config restricting the search space to its pruning targets [every Conv2d and Linear
    /// but the classifier].
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// `accuracy` or `loss` [`accuracy`].
    #[serde(default = "default_metric")]
    pub metric: String,
    /// `linear`, `agp` or `lottery` [`linear`].
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// Iterations of the schedule, >= 1 [1].
    #[serde(default = "one")]
    pub iterations: usize,
    /// `latest`, `maximize` or `minimize` [`latest`].
    #[serde(default = "default_keep")]
    pub keep: String,
    /// Lottery ticket: reload the starting weights after each iteration's pruning [false].
    #[serde(default)]
    pub reset_weights: bool,
    /// The largest ratio per layer and iteration, in [0, 1) [0.9].
    #[serde(default = "default_max_ratio")]
    pub max_ratio: f64,
    /// Fine-tuning epochs of each candidate before it is judged [0].
    #[serde(default)]
    pub candidate_epochs: usize,
    /// Fine-tuning epochs after each iteration [1].
    #[serde(default = "one")]
    pub finetune_epochs: usize,
    /// Fine-tuning epochs of the kept model (and of the uniform baseline) [5].
    #[serde(default = "five")]
    pub final_epochs: usize,
    /// Learning rate (Adam) [5e-4].
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Images per training step [64].
    #[serde(default = "batch")]
    pub batch_size: usize,
    /// Run the uniform baseline [true].
    #[serde(default = "yes")]
    pub uniform: bool,
    /// Also write the auto report (every candidate, the chosen model, the baseline) as JSON.
    #[serde(default)]
    pub report: Option<PathBuf>,
    /// Also write the SVG of the search.
    #[serde(default)]
    pub plot: Option<PathBuf>,
}

fn default_search() -> String {
    "simulated-annealing".into()
}
fn default_pruner() -> String {
    "l1-norm".into()
}
fn default_metric() -> String {
    "accuracy".into()
}
fn default_schedule() -> String {
    "linear".into()
}
fn default_keep() -> String {
    "latest".into()
}
fn default_max_ratio() -> f64 {
    0.9
}
fn default_lr() -> f64 {
    5e-4
}
fn one() -> usize {
    1
}
fn five() -> usize {
    5
}
fn batch() -> usize {
    64
}
fn yes() -> bool {
    true
}

/// A checked auto step.
#[derive(Debug, Clone)]
pub struct Auto {
    /// The step as written.
    pub step: AutoStep,
    /// The settings it resolves to (the seed is set per run).
    pub settings: AutoSettings,
}

impl AutoStep {
    /// The settings this step asks for (`ctx` names the step in errors).
    ///
    /// # Errors
    /// [`RecipeError`] naming the key at fault.
    pub fn settings(&self, ctx: &str) -> Result<AutoSettings, RecipeError> {
        let budget = Budget::parse(&self.budget).map_err(|e| err(ctx, format!("'budget': {e}")))?;
        let mut s = AutoSettings::new(budget);
        s.search = self.search.clone();
        s.search_options = self.search_options.clone();
        s.pruner = self.pruner.clone();
        s.pruner_options = self.pruner_options.clone();
        s.config = match &self.config {
            Some(p) => Some(CompressConfig::from_file(p).map_err(|e| err(ctx, e))?),
            None => None,
        };
        s.metric = self
            .metric
            .parse::<Metric>()
            .map_err(|e| err(ctx, format!("'metric': {e}")))?;
        s.schedule = self
            .schedule
            .parse::<IterativeSchedule>()
            .map_err(|e| err(ctx, format!("'schedule': {e}")))?;
        s.iterations = at_least_one(self.iterations, "iterations", ctx)?;
        s.keep = self
            .keep
            .parse::<KeepBest>()
            .map_err(|e| err(ctx, format!("'keep': {e}")))?;
        s.reset_weights = self.reset_weights;
        s.max_ratio = self.max_ratio;
        s.candidate_epochs = self.candidate_epochs;
        s.finetune_epochs = self.finetune_epochs;
        s.final_epochs = self.final_epochs;
        s.lr = non_negative(self.lr, "lr", ctx)?;
        s.batch_size = at_least_one(self.batch_size, "batch_size", ctx)?;
        s.uniform_baseline = self.uniform;
        s.validate().map_err(|e| err(ctx, e))?;
        Ok(s)
    }
}

pub(super) fn parse(t: &Table, ctx: &str, progress: &mut Progress) -> Result<Auto, RecipeError> {
    if !t.contains_key("budget") {
        return Err(err(ctx, "'budget' is required (e.g. \"macs/6\")"));
    }
    let step: AutoStep = typed(t, &["kind"], ctx)?;
    if !progress.trained {
        return Err(err(
            ctx,
            "auto needs trained weights: add a train step or [model] weights",
        ));
    }
    let settings = step.settings(ctx)?;
    // The model leaves the step sped up: no masks are pending.
    progress.pruned = false;
    Ok(Auto { step, settings })
}

impl Auto {
    /// Write the step's `report` (JSON) and `plot` (SVG) files, when it names them.
    ///
    /// # Errors
    /// [`RecipeError`] naming the file that could not be written.
    pub fn write(&self, report: &crate::auto::AutoReport, ctx: &str) -> Result<(), RecipeError> {
        let write = |path: &std::path::Path, text: &str| {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| err(ctx, format!("creating '{}': {e}", parent.display())))?;
            }
            std::fs::write(path, text)
                .map_err(|e| err(ctx, format!("writing '{}': {e}", path.display())))
        };
        if let Some(path) = &self.step.report {
            let text = serde_json::to_string_pretty(report).map_err(|e| err(ctx, e))?;
            write(path, &text)?;
        }
        if let Some(path) = &self.step.plot {
            let title = format!(
                "auto: {} ({}, {})",
                report.budget, report.search, report.pruner
            );
            let svg = crate::auto::plot_svg(report, &title).map_err(|e| err(ctx, e))?;
            write(path, &svg)?;
        }
        Ok(())
    }
}

/// One line per event on stderr (the recipe runner's verbose output).
pub(super) fn print_event(event: &crate::auto::AutoEvent<'_>) {
    use crate::auto::AutoEvent;
    match event {
        AutoEvent::Phase(p) => eprintln!("     auto: {p}"),
        AutoEvent::Candidate(_) => {}
        AutoEvent::Iteration(r) => eprintln!(
            "     auto: {} iteration {} (target {:.4} of dense): {} MACs, {} params, metric {:.4}",
            r.phase, r.iteration, r.target, r.macs, r.params, r.metric
        ),
    }
}
