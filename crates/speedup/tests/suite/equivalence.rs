//! At 50% channels, the sped-up ResNet-18, ResNet-50, MobileNetV2 and transformer encoder run,
//! compute what the masked model with propagated masks computes, and cost less.

use burn::module::Module;
use burn::prelude::*;
use compress_core::{CompressConfig, ModuleIndex, prune};
use compress_graph::{Graph, capture, count};
use compress_speedup::{ConflictPolicy, DependencyGraph, FixStructure, apply};
use compress_zoo::{ImageClassifier, MobileNetV2, ResNet, TinyTransformer};

use crate::common::max_abs_diff;
use crate::groups::L1;

/// Prune with auto dependency groups, speed up, and check equivalence; returns the MACs and
/// params ratios (after / before).
fn check<M: Module + FixStructure>(
    name: &str,
    model: &M,
    config: &str,
    capture_fn: impl Fn(&M, &Device) -> Tensor<2> + Copy,
    run: impl Fn(&M) -> Tensor<2>,
) -> (f64, f64) {
    let graph: Graph = capture(model, capture_fn).unwrap();
    let deps = DependencyGraph::build(&graph).unwrap();
    let index = ModuleIndex::from_module(model);
    let config = CompressConfig::from_toml(config).unwrap();
    let config = deps.auto_dependency_groups(&config, &index).unwrap();
    let outcome = prune(model, &config, &L1).unwrap();
    let report = deps
        .plan(&outcome.masks, &index, ConflictPolicy::Union)
        .unwrap();
    assert!(report.removed > 0, "{name}: nothing removed");
    let small = apply(model, &report.plan).unwrap();
    let propagated = report.plan.to_masks().apply_hard(model).unwrap();
    // Relative to the output's scale: random-init networks grow large activations, and the two
    // models sum in different orders (the sped-up one over fewer terms).
    let (ours, reference) = (run(&small), run(&propagated));
    let scale = reference.clone().abs().max().into_scalar::<f32>().max(1.0);
    let diff = max_abs_diff(ours, reference) / scale;
    assert!(
        diff < 1e-4,
        "{name}: sped-up output differs from the propagated-mask model by {diff} (relative)"
    );
    let before = count(&graph);
    let after = count(&capture(&small, capture_fn).unwrap());
    (
        after.macs as f64 / before.macs as f64,
        after.params as f64 / before.params as f64,
    )
}

const CONVS: &str = "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\n";

/// [`check`] of an image classifier at half of every conv's outputs ([`CONVS`]), captured on
/// one 32x32 RGB image and compared on `batch` random ones; the MACs and params ratios must stay
/// under `max_macs` and `max_params`.
fn check_convs<M: Module + FixStructure + ImageClassifier>(
    name: &str,
    model: impl Fn(&Device) -> M,
    batch: usize,
    max_macs: f64,
    max_params: f64,
) {
    let device = Device::flex();
    let x = Tensor::<4>::random(
        [batch, 3, 32, 32],
        burn::tensor::Distribution::Default,
        &device,
    );
    let (macs, params) = check(
        name,
        &model(&device),
        CONVS,
        |m, d| m.classify(Tensor::zeros([1, 3, 32, 32], d)),
        |m| m.classify(x.clone()),
    );
    assert!(macs < max_macs, "{name} MACs ratio {macs}");
    assert!(params < max_params, "{name} params ratio {params}");
}

#[test]
fn resnet18_at_half_the_channels_is_equivalent_and_smaller() {
    // Half of every conv's outputs (and so of the next conv's inputs): about a quarter of the MACs.
    check_convs("resnet18", |d| ResNet::resnet18(10, d), 2, 0.3, 0.3);
}

#[test]
fn resnet50_at_half_the_channels_is_equivalent_and_smaller() {
    check_convs("resnet50", |d| ResNet::resnet50(10, d), 1, 0.3, 0.35);
}

#[test]
fn mobilenet_v2_with_depthwise_and_inverted_residuals_is_equivalent_and_smaller() {
    check_convs("mobilenet_v2", |d| MobileNetV2::new(10, d), 2, 0.4, 0.4);
}

#[test]
fn transformer_feed_forward_channels_are_equivalent_and_smaller() {
    let device = Device::flex();
    let model = TinyTransformer::new(10, &device);
    let ids = Tensor::<2, Int>::from_data(
        TensorData::new(
            (0..32i64).map(|i| (i * 7) % 100).collect::<Vec<_>>(),
            [2, 16],
        ),
        &device,
    );
    let config = "[[config_list]]\nop_names_re = ['encoder\\.layers\\.[0-9]+\\.pwff\\.linear_inner']\nsparse_ratio = 0.5\n";
    let (macs, _) = check(
        "tiny-transformer",
        &model,
        config,
        |m, d| m.forward(Tensor::<2, Int>::zeros([1, 16], d)),
        |m| m.forward(ids.clone()),
    );
    assert!(macs < 0.9, "transformer MACs ratio {macs}");
}
