//! # compress-speedup
//!
//! Masks are a simulation; speedup makes a model physically smaller. The steps, each inspectable:
//!
//! 1. [`capture`]: record one forward pass on `Device::capture()` (Burn's graph capture), with
//!    every parameter's tensor mapped to its dotted path.
//! 2. [`DependencyGraph::build`]: run a channel rule for every op (pass-through, residual
//!    coupling, concat offsets, flatten strides, depthwise and grouped convs, Linear matmuls,
//!    attention heads and GQA groups, RMS norms). An op without a rule is an error naming it;
//!    channels that cannot be removed safely are pinned with a reason. The result is a list of
//!    [`DependencyGroup`]s (a head, or a KV head with its query group, is one channel) and the
//!    layers split into heads ([`HeadGroup`]).
//! 3. [`DependencyGraph::plan`] / [`DependencyGraph::plan_with`]: masks -> a [`Plan`] (per
//!    parameter, the kept indices of each axis), with a documented [`ConflictPolicy`] when a
//!    group's masks disagree and a [`LayerNormPolicy`] for channels a LayerNorm normalizes; the
//!    report counts heads removed per layer ([`HeadsRemoved`]).
//! 4. [`apply`]: the same Rust type with smaller tensors, on a deep copy, non-tensor fields fixed
//!    through [`FixStructure`] (a compress-core trait); an RMS norm that lost channels is
//!    rescaled (gamma and epsilon) so that it computes what the masked one did.
//! 5. [`save_pruned`] / [`load_pruned`]: weights plus plan, replayed onto a fresh template.
//!
//! Capture and the op rules live in `compress-graph`; quantized export and BN folding in
//! `compress-quant`.
//!
//! ```
//! use burn::prelude::*;
//! use compress_core::MaskSet;
//! use compress_speedup::{ConflictPolicy, DependencyGraph, apply, capture};
//! # use burn::nn::{Linear, LinearConfig};
//! # #[derive(Module, Debug)] struct Net { fc1: Linear, fc2: Linear }
//! # compress_speedup::impl_fix_structure!(Net { fc1, fc2 });
//! # let device = Device::flex();
//! # let net = Net { fc1: LinearConfig::new(4, 8).init(&device), fc2: LinearConfig::new(8, 2).init(&device) };
//! let graph = capture(&net, |m, d| m.fc2.forward(m.fc1.forward(Tensor::<2>::zeros([1, 4], d))))?;
//! let deps = DependencyGraph::build(&graph)?;
//! let mut masks = MaskSet::default();
//! masks.insert("fc1.bias", compress_core::Dense::new(vec![8], vec![1, 0, 1, 0, 1, 0, 1, 0]));
//! let index = compress_core::ModuleIndex::from_module(&net);
//! let report = deps.plan(&masks, &index, ConflictPolicy::Union)?;
//! let small = apply(&net, &report.plan)?;
//! assert_eq!(small.fc1.weight.dims(), [4, 4]);
//! assert_eq!(small.fc2.weight.dims(), [4, 2]);
//! # Ok::<(), compress_speedup::SpeedupError>(())
//! ```
#![deny(missing_docs)]

mod apply;
mod error;
mod groups;
mod persist;
mod plan;

pub use apply::{apply, check_plan};
pub use error::{Result, SpeedupError};
pub use groups::{Channel, DependencyGraph, DependencyGroup, HeadGroup};
pub use persist::{load_pruned, save_pruned};
pub use plan::{
    AxisKeep, ConflictPolicy, HeadsRemoved, LayerNormPolicy, Plan, PlanOptions, PlanReport, Skipped,
};

// The pieces a speedup user needs from the other crates, under one name.
pub use compress_core::{FixStructure, impl_fix_structure};
pub use compress_graph::{CustomOpRule, Graph, RuleKind, capture};
// Re-exported for custom op rules.
pub use compress_graph::inventory;
