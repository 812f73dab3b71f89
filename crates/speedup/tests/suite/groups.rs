//! Dependency groups of the oracle CNN equal Torch-Pruning's, and auto dependency ids.

use burn::prelude::*;
use compress_core::{CompressConfig, ModuleIndex, prune};
use compress_graph::capture;
use compress_speedup::{ConflictPolicy, DependencyGraph, apply};
use compress_zoo::SmallCnn;

fn cnn_graph() -> (SmallCnn, DependencyGraph) {
    let model = SmallCnn::new(&Device::flex());
    let graph = capture(&model, |m, d| m.forward(Tensor::zeros([1, 1, 8, 8], d))).unwrap();
    let deps = DependencyGraph::build(&graph).unwrap();
    (model, deps)
}

#[test]
fn the_residual_group_is_torch_prunings_group() {
    let (_, deps) = cnn_graph();
    // TP 1.6.1: conv2 out, bn2, conv3 out, bn3 and fc's input are one group (16 channels).
    let group = deps
        .groups_of("conv3")
        .into_iter()
        .find(|g| g.params.contains(&("conv2.weight".into(), 0)))
        .unwrap();
    let expected: Vec<(String, usize)> = [
        ("bn2.beta", 0),
        ("bn2.gamma", 0),
        ("bn2.running_mean", 0),
        ("bn2.running_var", 0),
        ("bn3.beta", 0),
        ("bn3.gamma", 0),
        ("bn3.running_mean", 0),
        ("bn3.running_var", 0),
        ("conv2.bias", 0),
        ("conv2.weight", 0),
        ("conv3.bias", 0),
        ("conv3.weight", 0),
        ("conv3.weight", 1),
        ("fc.weight", 0),
    ]
    .iter()
    .map(|(p, a)| (p.to_string(), *a))
    .collect();
    assert_eq!(group.params, expected);
    assert_eq!(group.channels.len(), 16);
    // Flatten: channel c of the residual sum feeds fc inputs c*16 .. c*16+16.
    let fc: Vec<usize> = group.channels[3]
        .slices
        .iter()
        .filter(|(p, _, _)| p == "fc.weight")
        .map(|(_, _, i)| *i)
        .collect();
    assert_eq!(fc, (48..64).collect::<Vec<_>>());
    let first = deps.groups_of("conv1");
    assert_eq!(first.len(), 1);
    assert!(first[0].params.contains(&("conv2.weight".into(), 1)));
    assert_eq!(
        deps.groups.len(),
        3,
        "{:#?}",
        deps.groups
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
    );
}

#[test]
fn auto_dependency_ids_make_residual_masks_identical_and_match_tp_shapes() {
    let (model, deps) = cnn_graph();
    let config =
        CompressConfig::from_toml("[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\n")
            .unwrap();
    let index = ModuleIndex::from_module(&model);
    let auto = deps.auto_dependency_groups(&config, &index).unwrap();
    let outcome = prune(&model, &auto, &L1).unwrap();
    let m2 = outcome.masks.get("conv2.bias").unwrap();
    assert_eq!(m2, outcome.masks.get("conv3.bias").unwrap());
    let report = deps
        .plan(&outcome.masks, &index, ConflictPolicy::Union)
        .unwrap();
    let small = apply(&model, &report.plan).unwrap();
    // Torch-Pruning 1.6.1's shapes for MagnitudePruner 0.5 (fc ignored).
    assert_eq!(small.conv1.weight.dims(), [4, 1, 3, 3]);
    assert_eq!(small.conv2.weight.dims(), [8, 4, 3, 3]);
    assert_eq!(small.conv3.weight.dims(), [8, 8, 3, 3]);
    assert_eq!(small.fc.weight.dims(), [128, 10]);
}

/// L1-norm (the algorithm crates are not linked into this crate's tests).
pub struct L1;

impl compress_core::Pruner for L1 {
    fn metric(
        &self,
        input: &compress_core::MetricInput<'_>,
    ) -> compress_core::Result<compress_core::Dense<f32>> {
        input
            .scaling
            .shrink_sum(input.weight, true, &input.target.path, f32::abs, |s, _| {
                s as f32
            })
    }
}

#[test]
fn intersection_removes_what_any_member_removes_and_union_what_all_remove() {
    use compress_core::testing::oracle::fixture;
    let model = compress_zoo::load_pytorch_safetensors(
        SmallCnn::new(&Device::flex()),
        &fixture("cnn_weights.safetensors"),
        "small-cnn",
    )
    .unwrap();
    let graph = capture(&model, |m, d| m.forward(Tensor::zeros([1, 1, 8, 8], d))).unwrap();
    let deps = DependencyGraph::build(&graph).unwrap();
    let index = ModuleIndex::from_module(&model);
    // NNI's l1 masks prune 8 of conv2's and 8 of conv3's 16 channels, 2 of them in common.
    let masks = crate::common::nni_masks("cnn", "l1");
    let union = deps.plan(&masks, &index, ConflictPolicy::Union).unwrap();
    let inter = deps
        .plan(&masks, &index, ConflictPolicy::Intersection)
        .unwrap();
    let kept = |r: &compress_speedup::PlanReport| r.plan.shape_after("conv2.weight").unwrap()[0];
    assert_eq!(kept(&union), 14);
    assert_eq!(kept(&inter), 2);
    assert_eq!(union.removed, 4 + 2);
    assert_eq!(inter.removed, 4 + 14);
}
