//! A Linear captured as `ModuleOperationIr::Linear` (not matmul + add) has channel rules, MACs,
//! a layer call and a replay, like burn-nn's Linear.
//!
//! In Burn 0.22.1 neither `nn::Linear` nor the functional `burn::tensor::module::linear` records
//! the module op: both reach `Dispatch::linear`, which burn-dispatch leaves to `ModuleOps`'s
//! default (`float_matmul` + `float_add`; its `linear` override is a "TODO"). The capture
//! backend itself (burn-router) records `ModuleOperationIr::Linear` when its `linear` is called,
//! so this model calls it directly on capture tensors, as a backend that forwards `linear` would.

use burn::backend::Capture;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn_backend::ops::ModuleOps;
use compress_core::{Dense, FixStructure, MaskSet};
use compress_graph::{CountMode, NoTap, Replay, count, count_flops_params, layer_calls, op_name};

use crate::common::{max_abs_diff, speedup};

#[derive(Module, Debug)]
struct ModuleOpMlp {
    fc1: Linear,
    fc2: Linear,
}

impl FixStructure for ModuleOpMlp {
    fn fix_structure(&mut self) {}
}

/// `l(x)`, recorded as the Linear module op on the capture device.
fn linear(l: &Linear, x: Tensor<2>) -> Tensor<2> {
    let prim = |t: Tensor<2>| t.try_into_primitive::<Capture>().ok();
    let (Some(xp), Some(wp)) = (prim(x.clone()), prim(l.weight.val())) else {
        return l.forward(x);
    };
    let bias = l
        .bias
        .as_ref()
        .and_then(|b| b.val().try_into_primitive::<Capture>().ok());
    Tensor::from_primitive::<Capture>(<Capture as ModuleOps<Capture>>::linear(xp, wp, bias))
}

impl ModuleOpMlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        linear(
            &self.fc2,
            burn::tensor::activation::relu(linear(&self.fc1, x)),
        )
    }
}

#[test]
fn a_linear_captured_as_the_module_op_gets_channel_rules_macs_layer_calls_and_replay() {
    let device = Device::flex();
    let model = ModuleOpMlp {
        fc1: LinearConfig::new(6, 8).init(&device),
        fc2: LinearConfig::new(8, 3).init(&device),
    };
    // Remove hidden features 1, 4 and 6: fc1's weight columns (axis 1).
    let mut masks = MaskSet::default();
    let keep = |j: usize| u8::from(![1, 4, 6].contains(&j));
    let w: Vec<u8> = (0..6 * 8).map(|i| keep(i % 8)).collect();
    masks.insert("fc1.weight", Dense::new(vec![6, 8], w));
    let forward = |m: &ModuleOpMlp, d: &Device| m.forward(Tensor::zeros([2, 6], d));
    let (small, report, graph) = speedup(&model, &masks, forward).unwrap();

    let module_ops = layer_calls(&graph)
        .iter()
        .filter(|c| op_name(&graph.ops[c.op]) == "Module::Linear")
        .count();
    assert_eq!(module_ops, 2, "the capture records the module op");

    // Channel rules: fc1's outputs, its bias and fc2's inputs shrink together.
    assert_eq!(report.removed, 3);
    assert_eq!(small.fc1.weight.dims(), [6, 5]);
    assert_eq!(small.fc1.bias.as_ref().unwrap().dims(), [5]);
    assert_eq!(small.fc2.weight.dims(), [5, 3]);
    let x = Tensor::<2>::random([4, 6], burn::tensor::Distribution::Default, &device);
    let masked = report.plan.to_masks().apply_hard(&model).unwrap();
    let diff = max_abs_diff(small.forward(x.clone()), masked.forward(x.clone()));
    assert!(
        diff < 1e-5,
        "sped-up output differs from the masked model by {diff}"
    );

    // MACs and NNI rows: batch x in x out per Linear.
    assert_eq!(count(&graph).macs, 2 * 6 * 8 + 2 * 8 * 3);
    let rows = count_flops_params(&graph, CountMode::Default).rows;
    let named: Vec<(&str, &str, u64, u64)> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.module_type.as_str(), r.flops, r.params))
        .collect();
    assert_eq!(
        named,
        [("fc1", "Linear", 96, 56), ("fc2", "Linear", 48, 27)]
    );

    // Replay runs the module op and taps it as a layer.
    let replay = Replay::capture(&model, [4, 6], |m, x| m.forward(x)).unwrap();
    let layers: Vec<&str> = replay.layers().iter().map(|l| l.layer.as_str()).collect();
    assert_eq!(layers, ["fc1", "fc2"]);
    let replayed: Tensor<2> = replay.run(&model, x.clone(), &mut NoTap).unwrap();
    assert!(max_abs_diff(replayed, model.forward(x)) < 1e-6);
}
