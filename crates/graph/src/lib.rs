//! # compress-graph
//!
//! The captured-graph layer of burn-compress. Burn has no forward hooks, so everything that must
//! see a model's dataflow (speedup's channel dependencies, quantization simulation, activation
//! statistics, distillation taps, cost counting) records one forward pass on
//! `Device::capture()` and works on the recorded ops.
//!
//! ## Contents
//! - [`capture`]: one forward pass as a [`Graph`], every parameter tensor mapped to its dotted
//!   path.
//! - [`Analysis`]: how channel indices flow through every op (DepGraph-style rules); an op that
//!   has no rule is an error naming it. Custom ops register a [`CustomOpRule`].
//! - [`Replay`]: execute a captured graph op by op on any device (autodiff included), with a
//!   [`Tap`] at the input and output of every layer call; an op the table cannot execute is a
//!   [`GraphError::NotExecutable`] naming it.
//! - [`count`] / [`count_flops_params`]: MACs and parameters of a pass, NNI-style rows.
//! - [`onnx::export`]: the graph as an ONNX model (opset 17, weights as initializers, a dynamic
//!   batch dimension, optional QDQ quantization); each family writes its own nodes.
//! - [`sequential`]: layer-sequential calibration for one-shot compression (Wanda, SparseGPT,
//!   GPTQ, AWQ, SmoothQuant): a `BlockModel` walked block by block, statistics streamed from
//!   replay taps on every Linear input, each block compressed and re-run to feed the next.
//! - [`layer_calls`]: every call of a layer ([`LayerCall`]: conv-like, Linear, norms,
//!   embedding), the one recognition the other parts (and BatchNorm folding) share.
//!
//! ## The op table
//! Everything the crate knows about an op lives in one place: `src/ops/<family>.rs` (conv-like,
//! matmul/Linear, norms, pooling, embedding, elementwise binary, unary, reductions, shape ops,
//! custom ops). `ops::Op::of` matches burn-ir's typed enums (never names) to a family value, and
//! each family implements one trait, `ops::OpRule`, with one method per concern:
//! `channels` (the channel rule), `execute` (replay through `burn_dispatch::Dispatch`), `cost`
//! (MACs and the NNI row), `layer_call` / `bias_add` / `param_view` (which inputs are
//! parameters, seen through reshape/expand/swap_dims/permute; Linear as matmul + bias add). The
//! engines only walk the graph and ask the table. `onnx` (the ONNX nodes the op becomes; an op
//! without one is [`GraphError::Unmapped`], named).
//!
//! **Adding an op**: add its `burn_ir` variant to the `of` match of its family's file and to
//! each method's match there (or create a family file, add a variant to `ops::Op` and one line
//! to `Op::of`), with a unit test of its channel rule and cost at the bottom of that file.
//! Nothing else changes: the analysis, replay, counters and layer calls pick it up.
//!
//! ```
//! use burn::prelude::*;
//! use burn::nn::{Linear, LinearConfig};
//! use compress_graph::{capture, count};
//!
//! let device = Device::flex();
//! let fc: Linear = LinearConfig::new(4, 8).init(&device);
//! let graph = capture(&fc, |m, d| m.forward(Tensor::<2>::zeros([2, 4], d)))?;
//! assert_eq!(count(&graph).macs, 2 * 4 * 8);
//! # Ok::<(), compress_graph::GraphError>(())
//! ```
#![deny(missing_docs)]

mod capture;
mod count;
mod error;
mod norm_pattern;
pub mod onnx;
mod ops;
mod replay;
mod rules;
pub mod sequential;
mod soft_mask;
mod views;

pub use capture::{Graph, capture};
pub use count::{Cost, CountMode, FlopsReport, FlopsRow, count, count_flops_params};
pub use error::{GraphError, Result};
pub use ops::{CustomOpRule, RuleKind};
pub use replay::{ConvWindow, LayerIo, NoTap, ReparamParts, ReparamRebuild, Replay, Site, Tap};
pub use rules::{Analysis, Class, GroupedConv, HeadSplit, Member, op_name};
pub use views::{LayerCall, LayerKind, layer_calls};

// Re-exported so custom op rules and reparameterization rebuilds register with the same version.
pub use burn_dispatch::DispatchTensor;
pub use inventory;
