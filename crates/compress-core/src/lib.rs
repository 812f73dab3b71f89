//! # compress-core
//!
//! The contracts and shared machinery of burn-compress: everything an algorithm crate builds on,
//! and nothing algorithm-specific.
//!
//! ## The map
//! The crate root holds the vocabulary almost every user needs ([`CompressConfig`],
//! [`ModuleIndex`], [`Dense`], [`MaskSet`], [`Target`], [`Granularity`], the [`Pruner`] /
//! [`Quantizer`] / [`Distiller`] traits and the [`AlgorithmEntry`] registry, [`prune()`] /
//! [`prune_model`], [`FixStructure`], [`CompressError`]); everything else lives in the module
//! named for what it holds:
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`index`] | [`ModuleIndex`]: every layer of any Burn module by dotted path, type and parameters; reading parameters as host data |
//! | [`layers`] | [`LayerSpec`](layers::LayerSpec) registry: per layer type, which parameters are targets and where their channel axes sit in Burn's layout (`Linear.weight` is `[in, out]`) |
//! | [`config`] | [`CompressConfig`]: TOML with NNI's `config_list` keys, validated with typed errors |
//! | [`targets`] | stage two of the config: rules resolved against a model into [`Target`]s |
//! | [`granularity`] | [`Scaling`](granularity::Scaling) / [`Granularity`]: one block shrink/expand primitive for metrics, masks and quantization scales |
//! | [`mod@allocate`] | NNI's sparsity rules (ratio, threshold, global, dependency, align), shared by every pruner |
//! | [`mask`] | [`MaskSet`]: masks by parameter path, statistics, files, hard and soft application, deep copies |
//! | [`dense`] | [`Dense`]: the small host tensor metrics and masks are computed on |
//! | [`distill`] | the [`Distiller`] trait (each method's loss), NNI's distances (MSE, KL with T²), link resolution |
//! | [`registry`] | the [`Pruner`] trait, [`AlgorithmEntry`], typed option reads |
//! | [`quantizer`] | the [`Quantizer`] contract: initialisation, fake quantization, learnable parameters, export grid |
//! | [`mod@prune`] | one-shot masks from a pruner ([`prune()`], [`prune_with_grads`](prune::prune_with_grads)) |
//! | [`driver`] | [`prune_model`]: one-shot, gradient, learned-score, activation, ADMM or scheduled pruning, chosen from what the pruner declares |
//! | [`activations`] | per-channel statistics of layer outputs over data batches (APoZ, mean activation), from a caller's [`LayerOutputs`](activations::LayerOutputs) source |
//! | [`admm`] | ADMM pruning: penalised training alternating with projections onto the sparse set |
//! | [`schedule`] / [`scheduled`] | NNI's sparsity schedules (Linear, AGP; the iterative scheduler's Linear, AGP, Lottery) and scheduled pruning during training |
//! | [`search`] | budget-driven search for per-layer ratios: [`Search`](search::Search), budgets, costs, candidates, trials |
//! | [`scores`] | learned per-block scores (Slim, Movement) through a Burn reparameterization |
//! | [`sensitivity`] | NNI's sensitivity analysis: the metric with one layer at a time pruned to growing sparsities |
//! | [`train`] | a small classifier trainer with [`TrainHooks`](train::TrainHooks), gradient statistics |
//! | [`dataset`] | the bundled image datasets and their split |
//! | [`paths`] | module traversal by dotted parameter path |
//! | [`structure`] | [`FixStructure`]: non-tensor fields a model fixes after its tensors shrank |
//! | [`error`] | [`CompressError`], did-you-mean, file I/O that names the path |
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

pub mod activations;
pub mod admm;
pub mod allocate;
pub mod config;
pub mod dataset;
pub mod dense;
pub mod distill;
pub mod driver;
pub mod error;
pub mod granularity;
pub mod index;
pub mod layers;
pub mod mask;
pub mod oneshot;
pub mod paths;
pub mod prune;
pub mod quantizer;
pub mod registry;
pub mod schedule;
pub mod scheduled;
pub mod scores;
pub mod search;
pub mod sensitivity;
pub mod structure;
pub mod targets;
pub mod train;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::CompressConfig;
pub use dense::Dense;
pub use distill::Distiller;
pub use driver::prune_model;
pub use error::{CompressError, Result};
pub use granularity::Granularity;
pub use index::ModuleIndex;
pub use mask::MaskSet;
pub use prune::{PruneOutcome, prune};
pub use quantizer::Quantizer;
pub use registry::{Algorithm, AlgorithmEntry, AlgorithmKind, MetricInput, Pruner};
pub use structure::FixStructure;
pub use targets::Target;

// Re-exported so algorithm crates and users register with the same version.
pub use inventory;
pub use toml;
