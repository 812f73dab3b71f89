//! Bad inputs to speedup are typed errors naming the culprit; the input model is untouched.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use compress_core::testing::oracle::module_tensors;
use compress_core::{CompressError, Dense, MaskSet, ModuleIndex};
use compress_graph::GraphError;
use compress_graph::capture;
use compress_speedup::{
    AxisKeep, ConflictPolicy, DependencyGraph, Plan, SpeedupError, apply, impl_fix_structure,
    load_pruned,
};
use compress_zoo::{Mlp, SmallCnn};

fn cnn_deps(model: &SmallCnn) -> DependencyGraph {
    DependencyGraph::build(
        &capture(model, |m, d| m.forward(Tensor::zeros([1, 1, 8, 8], d))).unwrap(),
    )
    .unwrap()
}

fn plan_err(masks: &MaskSet) -> SpeedupError {
    let model = SmallCnn::new(&Device::flex());
    cnn_deps(&model)
        .plan(
            masks,
            &ModuleIndex::from_module(&model),
            ConflictPolicy::Union,
        )
        .unwrap_err()
}

/// A model whose forward sorts along the channel axis: no rule can say where channels go.
#[derive(Module, Debug)]
struct Sorter {
    fc1: Linear,
    fc2: Linear,
}
impl_fix_structure!(Sorter { fc1, fc2 });

#[test]
fn an_op_without_a_rule_is_an_error_naming_it_and_where_it_sits() {
    let device = Device::flex();
    let model = Sorter {
        fc1: LinearConfig::new(4, 6).init(&device),
        fc2: LinearConfig::new(6, 2).init(&device),
    };
    let graph = capture(&model, |m, d| {
        m.fc2
            .forward(m.fc1.forward(Tensor::<2>::ones([1, 4], d)).sort(1))
    })
    .unwrap();
    let err = DependencyGraph::build(&graph).unwrap_err();
    assert!(
        matches!(err, SpeedupError::Graph(GraphError::UnsupportedOp { .. })),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("unsupported op 'Numeric::Sort'") && msg.contains("after layer 'fc1'"),
        "{msg}"
    );
}

#[test]
fn a_mask_for_a_parameter_the_model_lacks_is_refused() {
    let mut masks = MaskSet::default();
    masks.insert("conv4.weight", Dense::full(vec![8, 1, 3, 3], 0u8));
    let err = plan_err(&masks);
    assert!(
        matches!(err, SpeedupError::Core(CompressError::UnknownParam { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("conv4.weight"));
}

#[test]
fn a_mask_of_the_wrong_shape_is_refused() {
    let mut masks = MaskSet::default();
    masks.insert("conv1.weight", Dense::full(vec![4, 1, 3, 3], 0u8));
    let err = plan_err(&masks);
    assert!(
        matches!(err, SpeedupError::Core(CompressError::ShapeMismatch { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("expected [8, 1, 3, 3], found [4, 1, 3, 3]"),
        "{err}"
    );
}

#[test]
fn pruning_every_channel_of_a_layer_is_an_empty_layer_error() {
    let mut masks = MaskSet::default();
    masks.insert("conv1.bias", Dense::full(vec![8], 0u8));
    let err = plan_err(&masks);
    assert!(
        matches!(err, SpeedupError::EmptyLayer { ref layer, axis: 0, .. } if layer == "conv1"),
        "{err}"
    );
}

#[test]
fn a_plan_for_another_architecture_is_refused_and_the_model_untouched() {
    let device = Device::flex();
    let cnn = SmallCnn::new(&device);
    let mut masks = MaskSet::default();
    masks.insert(
        "conv1.bias",
        Dense::new(vec![8], vec![0, 1, 1, 1, 1, 1, 1, 1]),
    );
    let plan = cnn_deps(&cnn)
        .plan(
            &masks,
            &ModuleIndex::from_module(&cnn),
            ConflictPolicy::Union,
        )
        .unwrap()
        .plan;
    let mlp = Mlp::new(&device);
    let before = module_tensors(&mlp);
    let Err(err) = apply(&mlp, &plan) else {
        panic!("a CNN plan must not fit an MLP")
    };
    assert!(matches!(err, SpeedupError::PlanMismatch(_)), "{err}");
    assert!(err.to_string().contains("no parameter 'bn1."), "{err}");
    assert_eq!(module_tensors(&mlp), before);
}

#[test]
fn a_plan_made_for_other_shapes_is_refused() {
    let device = Device::flex();
    let mut plan = Plan::default();
    plan.original_shapes
        .insert("fc1.weight".into(), vec![64, 64]);
    plan.params.insert(
        "fc1.weight".into(),
        vec![AxisKeep {
            axis: 1,
            kept: vec![0, 1],
        }],
    );
    let Err(err) = apply(&Mlp::new(&device), &plan) else {
        panic!("shapes differ")
    };
    assert!(
        err.to_string()
            .contains("'fc1.weight' has shape [64, 32], the plan was made for Some([64, 64])"),
        "{err}"
    );
}

#[test]
fn a_plan_index_out_of_range_is_refused() {
    let mut plan = Plan::default();
    plan.original_shapes.insert("fc3.bias".into(), vec![10]);
    plan.params.insert(
        "fc3.bias".into(),
        vec![AxisKeep {
            axis: 0,
            kept: vec![3, 12],
        }],
    );
    let Err(err) = apply(&Mlp::new(&Device::flex()), &plan) else {
        panic!("index 12 of 10")
    };
    assert!(
        err.to_string()
            .contains("'fc3.bias' axis 0 has 10 entries, the plan keeps 12"),
        "{err}"
    );
}

#[test]
fn a_corrupt_plan_file_is_refused() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-badplan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("m.plan.json"),
        "{\"params\": {\"fc1.weight\": [{\"axis\": 1, \"kept\": [3, 1]}]}",
    )
    .unwrap();
    let Err(err) = load_pruned(Mlp::new(&Device::flex()), dir.join("m")) else {
        panic!("corrupt plan")
    };
    assert!(matches!(err, SpeedupError::InvalidPlan { .. }), "{err}");
    std::fs::write(dir.join("m.plan.json"), "{\"original_shapes\": {\"fc1.weight\": [64, 32]}, \"params\": {\"fc1.weight\": [{\"axis\": 1, \"kept\": [3, 1]}]}}").unwrap();
    let Err(err) = load_pruned(Mlp::new(&Device::flex()), dir.join("m")) else {
        panic!("unsorted plan")
    };
    assert!(err.to_string().contains("not increasing"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A grouped conv (4 groups of 2 outputs) between two plain convs.
#[derive(Module, Debug)]
struct Grouped {
    conv1: Conv2d,
    conv2: Conv2d,
}
impl_fix_structure!(Grouped { conv1, conv2 });

#[test]
fn an_unbalanced_grouped_conv_is_refused() {
    let device = Device::flex();
    let model = Grouped {
        conv1: Conv2dConfig::new([3, 8], [1, 1]).init(&device),
        conv2: Conv2dConfig::new([8, 8], [1, 1])
            .with_groups(4)
            .init(&device),
    };
    let graph = capture(&model, |m, d| {
        m.conv2
            .forward(m.conv1.forward(Tensor::zeros([1, 3, 4, 4], d)))
    })
    .unwrap();
    let deps = DependencyGraph::build(&graph).unwrap();
    let index = ModuleIndex::from_module(&model);
    let mut masks = MaskSet::default();
    masks.insert(
        "conv2.bias",
        Dense::new(vec![8], vec![0, 1, 1, 1, 1, 1, 1, 1]),
    );
    let err = deps
        .plan(&masks, &index, ConflictPolicy::Union)
        .unwrap_err();
    assert!(
        matches!(err, SpeedupError::UnbalancedGroups { groups: 4, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("[1, 2, 2, 2]"), "{err}");
    // Balanced is fine; the grouped conv's inputs are pinned, so conv1 keeps its channels.
    masks.insert(
        "conv2.bias",
        Dense::new(vec![8], vec![0, 1, 0, 1, 0, 1, 0, 1]),
    );
    masks.insert(
        "conv1.bias",
        Dense::new(vec![8], vec![0, 1, 1, 1, 1, 1, 1, 1]),
    );
    let report = deps.plan(&masks, &index, ConflictPolicy::Union).unwrap();
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].reasons[0].contains("grouped conv 'conv2'"));
    let small = apply(&model, &report.plan).unwrap();
    assert_eq!(small.conv2.weight.dims(), [4, 2, 1, 1]);
    assert_eq!(small.conv1.weight.dims(), [8, 3, 1, 1]);
}
