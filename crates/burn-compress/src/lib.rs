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
//! - [`recipe`]: whole pipelines from a TOML file (`burn-compress run`).
//! - [`zoo_capture`]: capture a zoo model's forward for an input shape.
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

pub mod device;
pub mod quantize;
pub mod recipe;
pub mod zoo_capture;

pub use compress_core as core;
pub use compress_core::{
    AlgorithmEntry, AlgorithmKind, CompressConfig, CompressError, Dense, Granularity, MaskSet,
    ModuleIndex, PruneOutcome, Pruner, prune, prune_with_grads,
};
pub use compress_graph as graph;
pub use compress_quant as quant;
pub use compress_speedup as speedup;
pub use compress_zoo as zoo;

/// The built-in algorithm crates. Naming each one here is what links it (and so registers it).
pub mod algorithms {
    pub use prune_fpgm as fpgm;
    pub use prune_level as level;
    pub use prune_movement as movement;
    pub use prune_norm as norm;
    pub use prune_slim as slim;
    pub use prune_taylor as taylor;
    pub use quant_bnn as bnn;
    pub use quant_dorefa as dorefa;
    pub use quant_lsq as lsq;
    pub use quant_ptq as ptq;
    pub use quant_qat as qat;

    /// Registry names of the built-in algorithms, sorted.
    pub const BUILT_IN: &[&str] = &[
        "bnn", "dorefa", "fpgm", "l1-norm", "l2-norm", "level", "lsq", "lsq-plus", "movement",
        "ptq", "qat", "slim", "taylor",
    ];
}
