//! A pruned and sped-up zoo model, shared by the ONNX latency bench and the facade's tract
//! tests (which include this file by path).

use std::sync::Arc;

use burn_compress::graph::Graph;
use burn_compress::speedup::{ConflictPolicy, DependencyGraph, apply};
use burn_compress::zoo::AnyModel;
use burn_compress::{AlgorithmEntry, CompressConfig, ModuleIndex, Pruner};

/// ResNet-18 `model` (captured as `graph`) with half of every coupled conv channel group removed
/// (L1 norm), sped up.
///
/// # Panics
/// When `model` is not a ResNet-18, or pruning or speedup fail.
pub fn resnet18_half(model: &AnyModel, graph: &Graph) -> AnyModel {
    let AnyModel::ResNet18(m) = model else {
        panic!("resnet18_half takes a ResNet-18")
    };
    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\ngranularity = 'out_channel'\n",
    )
    .unwrap();
    let table: burn_compress::core::toml::Table = "".parse().unwrap();
    let pruner: Arc<dyn Pruner> = Arc::from(
        AlgorithmEntry::find("l1-norm")
            .unwrap()
            .build_pruner(&table)
            .unwrap(),
    );
    let pruned =
        burn_compress::pruning::prune_captured(m.clone(), graph, &config, pruner, None, None)
            .unwrap();
    let report = DependencyGraph::build(graph)
        .unwrap()
        .plan(
            &pruned.masks,
            &ModuleIndex::from_module(m),
            ConflictPolicy::Union,
        )
        .unwrap();
    AnyModel::ResNet18(apply(m, &report.plan).unwrap())
}
