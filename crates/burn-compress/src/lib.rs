//! # burn-compress
//!
//! Model compression for [Burn](https://burn.dev): pruning, speedup and quantization;
//! distillation as it lands. This facade re-exports the toolkit under short names and links every
//! algorithm crate, so the registry ([`AlgorithmEntry::all`]) lists them all.
//!
//! - [`core`]: targets, config, granularity, masks, allocation, the algorithm traits.
//! - [`graph`]: graph capture, the op table (channel rules, replay, costs).
//! - [`speedup`]: dependency groups, plans, physically smaller models.
//! - [`quant`]: quantization math, calibration, simulation, BN folding, export.
//! - [`zoo`]: reference models with PyTorch parameter names.
//! - [`algorithms`]: the built-in algorithm crates.
//! - [`device`]: choose where models run by name (`cpu`, `vulkan`).
//! - [`quantize`]: quantize an image classifier end to end (calibrate, train, export).
//! - [`auto`]: automatic compression: per-layer ratios searched under a cost budget, an
//!   iterative scheduler and a uniform baseline (`burn-compress auto`, recipe step `auto`).
//! - [`eval`]: evaluation by task (classification, sentence similarity, perplexity).
//! - [`pruning`]: prune a captured model the way the command line and recipes do.
//! - [`recipe`]: whole pipelines from a TOML file (`burn-compress run`, in the
//!   `burn-compress-cli` crate).
//! - [`zoo_capture`]: capture a zoo model's forward for an input shape.
//! - [`text`]: plain-text corpora (the Austen novels) split into sentences.
//!
//! ```
//! use burn_compress::{AlgorithmEntry, CompressConfig, prune};
//! use burn_compress::zoo::LeNet5;
//! use burn::prelude::*;
//!
//! let model = LeNet5::new(&Device::flex());
//! let config = CompressConfig::from_toml(r#"
//!     [[config_list]]
//!     op_types = ["Conv2d", "Linear"]
//!     exclude_op_names = ["fc3"]
//!     sparse_ratio = 0.5
//! "#)?;
//! let pruner = AlgorithmEntry::find("l1-norm")?.build_pruner(&Default::default())?;
//! let outcome = prune(&model, &config, pruner.as_ref())?;
//! assert_eq!(outcome.masks.get("conv1.weight").unwrap().shape(), &[6, 1, 5, 5]);
//! # Ok::<(), burn_compress::CompressError>(())
//! ```
#![warn(missing_docs)]

pub mod auto;
pub mod device;
pub mod distill;
pub mod eval;
pub mod fusion;
pub mod oneshot;
pub mod pruning;
pub mod quantize;
pub mod recipe;
pub mod text;
pub mod zoo_capture;

pub use compress_core as core;
pub use compress_core::{
    AlgorithmEntry, AlgorithmKind, CompressConfig, CompressError, Dense, Granularity, MaskSet,
    ModuleIndex, PruneOutcome, Pruner,
    driver::{PruneMode, PruneSchedule, Pruned, Training},
    prune,
    prune::prune_with_grads,
    prune_model,
};
pub use compress_graph as graph;
pub use compress_quant as quant;
pub use compress_speedup as speedup;
pub use compress_zoo as zoo;

/// The algorithm crates this facade depends on, each re-exported under its short name
/// (`prune-taylor` as `algorithms::taylor`). Naming each one is what links it, and so registers
/// it. The list is generated from this crate's `Cargo.toml` by `build.rs`: every dependency named
/// `prune-*`, `quant-*`, `distill-*` or `search-*` is an algorithm crate, so adding one takes no edit here.
pub mod algorithms {
    include!(concat!(env!("OUT_DIR"), "/algorithms.rs"));
}
