//! Helpers shared by the speedup tests.

use burn::prelude::*;
use compress_core::testing::oracle::tensors;
use compress_core::{MaskSet, ModuleIndex};
use compress_graph::{Graph, capture};
use compress_speedup::{ConflictPolicy, DependencyGraph, FixStructure, PlanReport, apply};

pub use compress_core::testing::oracle::nni_masks;

/// Capture, group, plan and apply in one go.
// The library's own error type, returned as is (its size is compress-core's `CompressError`'s).
pub fn speedup<M: Module + FixStructure, const D: usize>(
    model: &M,
    masks: &MaskSet,
    forward: impl FnOnce(&M, &Device) -> Tensor<D>,
) -> compress_speedup::Result<(M, PlanReport, Graph)> {
    let graph = capture(model, forward)?;
    let deps = DependencyGraph::build(&graph)?;
    let report = deps.plan(
        masks,
        &ModuleIndex::from_module(model),
        ConflictPolicy::Union,
    )?;
    let small = apply(model, &report.plan)?;
    Ok((small, report, graph))
}

pub use compress_core::testing::max_abs_diff;

/// A tensor from an f32 fixture.
pub fn input<const D: usize>(name: &str, shape: [usize; D], device: &Device) -> Tensor<D> {
    let t = &tensors("inputs.safetensors")[name];
    Tensor::from_data(TensorData::new(t.data().to_vec(), shape), device)
}
