//! # compress-core
//!
//! The contracts and shared machinery of burn-compress: everything an algorithm crate builds on,
//! and nothing algorithm-specific.
//!
//! ## Key features
//! - [`ModuleIndex`]: every layer of any Burn module by dotted path, type and parameters.
//! - [`LayerSpec`]: per layer type, which parameters are targets and where their output and
//!   input channel axes sit in Burn's layout (`Linear.weight` is `[in, out]`). Extensible
//!   through `inventory`.
//! - [`CompressConfig`]: TOML with NNI's `config_list` keys, validated with typed errors, then
//!   resolved against a model into [`Target`]s.
//! - [`Scaling`] / [`Granularity`]: one block shrink/expand primitive for metrics, masks and
//!   quantization scales.
//! - [`allocate`]: NNI's sparsity rules (ratio, threshold, global, dependency, align), shared by
//!   every pruner.
//! - [`MaskSet`]: masks by parameter path, statistics, safetensors files, hard and soft
//!   (reparameterized) application.
//! - [`Pruner`], [`Quantizer`], [`Distiller`] and the [`AlgorithmEntry`] registry.
//! - Distillation: [`Distiller`] (each method's loss), NNI's distances [`mse_loss`] and
//!   [`kl_loss`], link resolution [`distill_targets`] / [`check_links`].
//! - [`prune_model`]: the one pruning driver, choosing one-shot, gradient (Taylor),
//!   learned-score (Slim, Movement) or scheduled (AGP, Linear) pruning from what the pruner
//!   declares.
//! - Training: [`train_classifier`] with [`TrainHooks`], [`GradientStatistics`] (Taylor),
//!   [`ScheduledPruning`] (AGP, Linear), [`LearnedScores`] (Slim, Movement).
//! - [`FixStructure`]: the non-tensor fields a model fixes after its tensors shrank.
//!
//! Quantization math, calibration, simulation and export live in `compress-quant`; graph
//! capture, replay and counting in `compress-graph`; making models smaller in
//! `compress-speedup`.
//!
//! ## Quick start
//! ```
//! use burn::nn::{Linear, LinearConfig};
//! use burn::prelude::*;
//! use compress_core::{CompressConfig, Dense, MetricInput, Pruner, Result, prune};
//!
//! // A pruner is one metric function: here, the L1 norm of each block.
//! struct L1;
//! impl Pruner for L1 {
//!     fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
//!         input.scaling.shrink_with(input.weight, true, &input.target.path, 0.0f32,
//!             |acc, x| acc + x.abs(), |acc, _| acc)
//!     }
//! }
//!
//! let model: Linear = LinearConfig::new(8, 4).init(&Device::flex());
//! let config = CompressConfig::from_toml(r#"
//!     [[config_list]]
//!     op_types = ["Linear"]
//!     sparse_ratio = 0.5
//! "#)?;
//! let outcome = prune(&model, &config, &L1)?;
//! let weight_mask = outcome.masks.get("weight").unwrap();
//! assert_eq!(weight_mask.shape(), &[8, 4]);       // Burn layout: [in, out]
//! assert_eq!(outcome.masks.stats().sparsity(), 0.5);
//! let pruned = outcome.masks.apply_hard(&model)?; // `model` itself is unchanged
//! # Ok::<(), compress_core::CompressError>(())
//! ```
//!
//! ## Feature flags
//! - `testing`: tiny seeded models and oracle helpers (the `testing` module) for tests of this
//!   and other crates.
#![deny(missing_docs)]

mod allocate;
mod config;
mod dataset;
mod dense;
mod distill;
mod driver;
mod error;
mod granularity;
mod index;
mod layers;
mod mask;
mod paths;
mod prune;
mod quantizer;
mod registry;
mod schedule;
mod scheduled;
mod scores;
mod structure;
mod targets;
mod train;

#[cfg(feature = "testing")]
pub mod testing;

pub use allocate::{Metric, allocate, ratio_mask, smallest_k};
pub use config::{
    AlgorithmSection, Align, ApplyMethod, CompressConfig, GroupId, Mode, QuantDtype, QuantScheme,
    Rule, Selection, TargetSetting, parse_granularity,
};
pub use dataset::ImageDataset;
pub use dense::{Dense, strides};
pub use distill::{
    DistillInput, DistillMethod, DistillReads, DistillTarget, Distiller, Features, TargetFeatures,
    check_links, distance, distill_targets, kl_loss, mse_loss,
};
pub use driver::{PruneMode, PruneSchedule, Pruned, Training, prune_model};
pub use error::{CompressError, Result, check_keys, did_you_mean, fs};
pub use granularity::{Granularity, KernelPadding, Scaling};
pub use index::{LayerInfo, ModuleIndex, ParamInfo, param_handles, read_flat};
pub use layers::{LayerSpec, ParamRole, ParamSpec};
pub use mask::{MaskSet, MaskStat, MaskStats, SoftMask, deep_copy, map_param_leaf};
pub use paths::{
    PathMapper, PathVisitor, map_params, params_of_rank, set_param_values, visit_params,
};
pub use prune::{PruneOutcome, prune, prune_with_grads};
pub use quantizer::{
    ActivationInput, ActivationSite, ExportGrid, ExportInput, FakeQuantGrid, Learnable, QuantInit,
    QuantParams, Quantizer, RangeTracking,
};
pub use registry::{
    Algorithm, AlgorithmEntry, AlgorithmKind, AlgorithmOptions, MetricInput, MetricMap,
    MetricNeeds, Pruner,
};
pub use schedule::Schedule;
pub use scheduled::ScheduledPruning;
pub use scores::{
    LearnedScores, ScoreForward, ScorePenalty, ScoreReparam, ScoreSpec, ScoreTrigger, block_expand,
    pad4,
};
pub use structure::FixStructure;
pub use targets::{ConfigWarning, Resolved, Target};
pub use train::{
    GradientStatistics, HookChain, NoHooks, OptimizerKind, StepBatch, TrainConfig, TrainHooks,
    TrainReport, accuracy, shuffled, train_classifier,
};

// Re-exported so algorithm crates and users register with the same version.
pub use inventory;
pub use toml;
