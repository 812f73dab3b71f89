//! EfficientNet-Lite0 with its real weights (`cargo xtask fetch efficientnet-lite0`, images from
//! `cargo xtask fetch foolbox`): capture works, and pruning 30% of every MBConv expansion by L1
//! then speeding up gives the masked model's output with propagated masks. (Here rather than in
//! the zoo's suite: the zoo may depend on compress-core only.)

use std::path::Path;

use burn::prelude::*;
use compress_core::{CompressConfig, ModuleIndex, prune};
use compress_graph::{capture, count};
use compress_speedup::{ConflictPolicy, DependencyGraph, apply};
use compress_zoo::{EfficientNetLite0, ImageFolder};

use crate::common::max_abs_diff;
use crate::groups::L1;

const EXPANSIONS: &str =
    "[[config_list]]\nop_names_re = ['_blocks\\.[0-9]+\\._expand_conv']\nsparse_ratio = 0.3\n";

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn lite0_with_30_percent_of_its_expansions_pruned_equals_the_propagated_masks() {
    let device = Device::flex();
    let model = EfficientNetLite0::load(&repo(EfficientNetLite0::WEIGHTS), &device).unwrap();
    let images = ImageFolder::load(&repo("data/external/foolbox"), 224, "imagenet").unwrap();
    let x = EfficientNetLite0::preprocess(images.images(&device).narrow(0, 0, 2));

    let forward = |m: &EfficientNetLite0, d: &Device| m.forward(Tensor::zeros([1, 3, 224, 224], d));
    let graph = capture(&model, forward).unwrap();
    let deps = DependencyGraph::build(&graph).unwrap();
    let index = ModuleIndex::from_module(&model);
    let config = CompressConfig::from_toml(EXPANSIONS).unwrap();
    let config = deps.auto_dependency_groups(&config, &index).unwrap();
    let outcome = prune(&model, &config, &L1).unwrap();
    let report = deps
        .plan(&outcome.masks, &index, ConflictPolicy::Union)
        .unwrap();
    let small = apply(&model, &report.plan).unwrap();

    // NNI's ratio rule: floor(0.3 * hidden) channels leave each expansion, and with them the
    // BatchNorm, the depthwise conv (whose groups follow) and the projection's inputs.
    for (n, block) in small._blocks.iter().enumerate().skip(1) {
        let hidden = model._blocks[n]._depthwise_conv.weight.dims()[0];
        let kept = hidden - (hidden * 3) / 10;
        let k = block._depthwise_conv.weight.dims()[2];
        let expand = block._expand_conv.as_ref().unwrap();
        assert_eq!(expand.weight.dims()[0], kept, "block {n}");
        assert_eq!(
            block._depthwise_conv.weight.dims(),
            [kept, 1, k, k],
            "block {n}"
        );
        assert_eq!(block._depthwise_conv.groups, kept, "block {n}");
        assert_eq!(block._bn1.gamma.dims(), [kept], "block {n}");
        assert_eq!(block._project_conv.weight.dims()[1], kept, "block {n}");
    }
    // Block 0 has no expansion: untouched.
    assert_eq!(
        small._blocks[0]._depthwise_conv.weight.dims(),
        [32, 1, 3, 3]
    );

    let propagated = report.plan.to_masks().apply_hard(&model).unwrap();
    let (ours, reference) = (small.forward(x.clone()), propagated.forward(x));
    let diff = max_abs_diff(ours, reference);
    assert!(
        diff < 1e-4,
        "sped-up logits differ from the propagated-mask model's by {diff}"
    );

    let before = count(&graph);
    let after = count(&capture(&small, forward).unwrap());
    let macs = after.macs as f64 / before.macs as f64;
    eprintln!(
        "efficientnet-lite0, expansions at 0.3: MACs {} -> {} ({macs:.3}), params {} -> {}",
        before.macs, after.macs, before.params, after.params
    );
    // The expansions, depthwise convs and projections hold most of the MACs.
    assert!(macs < 0.8 && macs > 0.6, "MACs ratio {macs}");
}

/// The residual stream of a stage: blocks 1 and 2 (24 channels) add their projections, so their
/// project convs, their BatchNorms and block 2's and 3's expansion inputs lose the same channels.
#[test]
fn lite0_residual_stage_channels_leave_every_projection_and_reader_together() {
    let device = Device::flex();
    let model = EfficientNetLite0::load(&repo(EfficientNetLite0::WEIGHTS), &device).unwrap();
    let images = ImageFolder::load(&repo("data/external/foolbox"), 224, "imagenet").unwrap();
    let x = EfficientNetLite0::preprocess(images.images(&device).narrow(0, 0, 2));

    let forward = |m: &EfficientNetLite0, d: &Device| m.forward(Tensor::zeros([1, 3, 224, 224], d));
    let graph = capture(&model, forward).unwrap();
    let deps = DependencyGraph::build(&graph).unwrap();
    let index = ModuleIndex::from_module(&model);
    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_names = ['_blocks.1._project_conv', '_blocks.2._project_conv']\nsparse_ratio = 0.25\n",
    )
    .unwrap();
    let config = deps.auto_dependency_groups(&config, &index).unwrap();
    let outcome = prune(&model, &config, &L1).unwrap();
    let report = deps
        .plan(&outcome.masks, &index, ConflictPolicy::Union)
        .unwrap();
    let small = apply(&model, &report.plan).unwrap();

    // floor(0.25 * 24) = 6 channels leave the stage's stream.
    for n in [1, 2] {
        assert_eq!(
            small._blocks[n]._project_conv.weight.dims()[0],
            18,
            "block {n}"
        );
        assert_eq!(small._blocks[n]._bn2.gamma.dims(), [18], "block {n}");
    }
    for n in [2, 3] {
        let expand = small._blocks[n]._expand_conv.as_ref().unwrap();
        assert_eq!(expand.weight.dims()[1], 18, "block {n} reads the stream");
    }
    // Block 3 starts a new stage (40 channels): its output is untouched.
    assert_eq!(small._blocks[3]._project_conv.weight.dims()[0], 40);

    let propagated = report.plan.to_masks().apply_hard(&model).unwrap();
    let diff = max_abs_diff(small.forward(x.clone()), propagated.forward(x));
    assert!(diff < 1e-4, "sped-up logits differ by {diff}");
}
