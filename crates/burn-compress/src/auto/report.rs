//! What automatic compression reports: every candidate, every iteration, the chosen model and
//! the uniform baseline, as serializable data (the `--report` JSON).

use std::collections::BTreeMap;

use compress_core::search::{Cost, Measure};
use serde::{Deserialize, Serialize};

use super::{KeepBest, Metric};

/// One evaluated candidate of a search (or of the uniform bisection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    /// `search` or `uniform`.
    pub phase: String,
    /// The scheduler iteration it belongs to.
    pub iteration: usize,
    /// Per-layer ratios as proposed, relative to the model the iteration starts from.
    pub ratios: BTreeMap<String, f64>,
    /// The same ratios relative to the dense model (`1 - (1 - current) * (1 - ratio)`).
    pub ratios_of_dense: BTreeMap<String, f64>,
    /// MACs per sample after speedup.
    pub macs: u64,
    /// Parameters after speedup.
    pub params: u64,
    /// Bytes of the saved model.
    pub file_bytes: u64,
    /// Latency (ms, batch 64, CPU) when the budget measures it.
    pub latency_ms: Option<f64>,
    /// The metric (after `candidate_epochs` of fine-tuning).
    pub metric: f64,
    /// Whether the cost meets the iteration's budget.
    pub within_budget: bool,
}

/// One scheduler iteration: prune (as the search chose), speed up, fine-tune, evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationRecord {
    /// `search` or `uniform`.
    pub phase: String,
    /// The schedule's iteration index (AGP starts at 0, a dense warm-up).
    pub iteration: usize,
    /// The iteration's cost target as a fraction of dense.
    pub target: f64,
    /// The per-layer ratios applied, relative to the model the iteration started from.
    pub ratios: BTreeMap<String, f64>,
    /// MACs per sample after the iteration.
    pub macs: u64,
    /// Parameters after the iteration.
    pub params: u64,
    /// The metric after the iteration's fine-tune (or weight reset).
    pub metric: f64,
    /// Whether the cost meets the final budget.
    pub within_budget: bool,
}

/// A model's sizes and quality, with the cost both ways relative to dense.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Per-layer ratios relative to the dense model, from the kept output channels.
    pub ratios: BTreeMap<String, f64>,
    /// MACs per sample.
    pub macs: u64,
    /// Parameters.
    pub params: u64,
    /// Bytes of the saved model.
    pub file_bytes: u64,
    /// Latency (ms, batch 64, CPU) when the budget measures it.
    pub latency_ms: Option<f64>,
    /// The metric on the test split.
    pub metric: f64,
    /// Top-1 accuracy on the test split.
    pub accuracy: f64,
    /// MACs as a fraction of dense ("x of dense").
    pub macs_of_dense: f64,
    /// Dense MACs over these ("k times fewer").
    pub macs_times_fewer: f64,
    /// Parameters as a fraction of dense.
    pub params_of_dense: f64,
    /// Dense parameters over these.
    pub params_times_fewer: f64,
}

impl ModelRecord {
    pub(crate) fn new(
        ratios: BTreeMap<String, f64>,
        cost: &Cost,
        dense: &Cost,
        metric: f64,
        accuracy: f64,
    ) -> Self {
        let of = |m| cost.ratio_to(dense, m).unwrap_or(f64::NAN);
        let fewer = |m| cost.times_fewer(dense, m).unwrap_or(f64::NAN);
        Self {
            ratios,
            macs: cost.macs,
            params: cost.params,
            file_bytes: cost.file_bytes,
            latency_ms: cost.latency_ms,
            metric,
            accuracy,
            macs_of_dense: of(Measure::Macs),
            macs_times_fewer: fewer(Measure::Macs),
            params_of_dense: of(Measure::Params),
            params_times_fewer: fewer(Measure::Params),
        }
    }
}

/// The uniform baseline as a recipe report carries it: `"uniform": {"macs", "params",
/// "accuracy"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UniformSummary {
    /// MACs per sample.
    pub macs: u64,
    /// Parameters.
    pub params: u64,
    /// Top-1 test accuracy after the same fine-tuning as the chosen model.
    pub accuracy: f64,
}

/// Everything one automatic compression run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoReport {
    /// The budget, both ways (`macs <= 0.1667 of dense (6.00x fewer)`).
    pub budget: String,
    /// What the budget counts.
    pub measure: Measure,
    /// The budget as a fraction of dense.
    pub fraction: f64,
    /// The metric candidates were judged by.
    pub metric: Metric,
    /// The search algorithm (or `uniform`).
    pub search: String,
    /// The pruner.
    pub pruner: String,
    /// The schedule (`linear`, `agp`, `lottery`).
    pub schedule: String,
    /// Iterations of the schedule.
    pub iterations: usize,
    /// Which iteration was kept.
    pub keep: KeepBest,
    /// Whether weights were reset after each pruning (lottery ticket).
    pub reset_weights: bool,
    /// Fine-tuning epochs of each candidate before it was judged.
    pub candidate_epochs: usize,
    /// Fine-tuning epochs per iteration.
    pub finetune_epochs: usize,
    /// Fine-tuning epochs of the kept model.
    pub final_epochs: usize,
    /// The dense model.
    pub dense: ModelRecord,
    /// Every candidate, in evaluation order.
    pub candidates: Vec<CandidateRecord>,
    /// Every iteration of the searched schedule.
    pub schedule_log: Vec<IterationRecord>,
    /// The chosen (kept, fine-tuned) model.
    pub chosen: ModelRecord,
    /// The scheduler iteration the chosen model comes from.
    pub chosen_iteration: usize,
    /// The uniform baseline at the chosen model's cost, fine-tuned the same way.
    pub uniform: Option<ModelRecord>,
    /// Every iteration of the uniform schedule.
    pub uniform_log: Vec<IterationRecord>,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl AutoReport {
    /// The uniform baseline in the recipe report's shape.
    pub fn uniform_summary(&self) -> Option<UniformSummary> {
        self.uniform.as_ref().map(|u| UniformSummary {
            macs: u.macs,
            params: u.params,
            accuracy: u.accuracy,
        })
    }
}
