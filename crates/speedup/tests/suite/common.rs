//! Helpers shared by the speedup tests.

use burn::prelude::*;
use compress_core::testing::oracle::{burn_path, tensors, transpose};
use compress_core::{Dense, MaskSet, ModuleIndex};
use compress_speedup::{
    ConflictPolicy, DependencyGraph, FixStructure, Graph, PlanReport, apply, capture,
};

/// NNI's masks of one case, as a MaskSet in Burn's names and layout.
pub fn nni_masks(model: &str, case: &str) -> MaskSet {
    let prefix = format!("{model}/{case}/");
    let mut masks = MaskSet::default();
    for (key, m) in tensors("nni_masks.safetensors")
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
    {
        let (path, linear) = burn_path(&key[prefix.len()..]);
        let m = if linear { transpose(m) } else { m.clone() };
        masks.insert(
            path,
            Dense::new(
                m.shape().to_vec(),
                m.data().iter().map(|&x| x as u8).collect(),
            ),
        );
    }
    masks
}

/// Capture, group, plan and apply in one go.
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

/// Max |a - b| of two logit tensors.
pub fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// A tensor from an f32 fixture.
pub fn input<const D: usize>(name: &str, shape: [usize; D], device: &Device) -> Tensor<D> {
    let t = &tensors("inputs.safetensors")[name];
    Tensor::from_data(TensorData::new(t.data().to_vec(), shape), device)
}
