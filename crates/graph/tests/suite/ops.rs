//! The op table from the outside: replay executes the conv-like layers the channel rules know
//! (Conv1d, Conv3d, ConvTranspose2d), and an op without execution is a typed refusal naming it.

use burn::module::Module;
use burn::nn::conv::{Conv1dConfig, Conv3dConfig, ConvTranspose2dConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use compress_graph::{GraphError, NoTap, Replay, count};

/// Replay `forward` and compare with the direct forward.
fn replayed_equals_direct<M: Module, const D: usize>(
    model: &M,
    shape: [usize; D],
    forward: impl Fn(&M, Tensor<D>) -> Tensor<D> + Copy,
) -> Replay {
    let device = Device::flex();
    let x = Tensor::<D>::random(shape, Distribution::Default, &device);
    let replay = Replay::capture(model, shape, forward).unwrap();
    let got: Tensor<D> = replay.run(model, x.clone(), &mut NoTap).unwrap();
    let expected = forward(model, x);
    assert_eq!(got.dims(), expected.dims());
    let worst = (got - expected).abs().max().into_scalar::<f32>();
    assert!(worst <= 1e-5, "max |diff| {worst}");
    replay
}

#[test]
fn replay_runs_conv1d_like_the_layer() {
    let device = Device::flex();
    let conv = Conv1dConfig::new(3, 5, 3)
        .with_stride(2)
        .with_dilation(2)
        .init(&device);
    let replay = replayed_equals_direct(&conv, [2, 3, 17], |m, x| m.forward(x));
    assert_eq!(replay.layers().len(), 1);
}

#[test]
fn replay_runs_grouped_conv3d_like_the_layer() {
    let device = Device::flex();
    let conv = Conv3dConfig::new([4, 6], [3, 3, 3])
        .with_groups(2)
        .with_padding(burn::nn::PaddingConfig3d::Explicit(1, 1, 1))
        .init(&device);
    replayed_equals_direct(&conv, [1, 4, 5, 6, 4], |m, x| m.forward(x));
}

#[test]
fn replay_runs_conv_transpose2d_like_the_layer_and_taps_it() {
    let device = Device::flex();
    let conv = ConvTranspose2dConfig::new([3, 4], [3, 3])
        .with_stride([2, 2])
        .with_padding_out([1, 1])
        .init(&device);
    let replay = replayed_equals_direct(&conv, [2, 3, 5, 5], |m, x| m.forward(x));
    let layers: Vec<&str> = replay.layers().iter().map(|l| l.layer.as_str()).collect();
    assert_eq!(layers, [""]);
}

#[test]
fn an_op_without_execution_is_a_typed_refusal_naming_it() {
    let device = Device::flex();
    let conv = Conv1dConfig::new(2, 2, 1).init(&device);
    let replay = Replay::capture(&conv, [1, 2, 4], |m, x| m.forward(x).flip([2])).unwrap();
    let err = replay
        .run::<_, 3, 3>(&conv, Tensor::zeros([1, 2, 4], &device), &mut NoTap)
        .unwrap_err();
    match &err {
        GraphError::NotExecutable { op, .. } => assert_eq!(op, "Base::Flip"),
        other => panic!("expected NotExecutable, got {other:?}"),
    }
    assert!(err.to_string().contains("cannot be replayed"), "{err}");
}

#[test]
fn conv3d_and_conv_transpose_macs_come_from_the_table() {
    let device = Device::flex();
    let conv = Conv3dConfig::new([2, 3], [1, 1, 1]).init(&device);
    let graph = compress_graph::capture(&conv, |m, d| {
        m.forward(Tensor::<5>::zeros([1, 2, 2, 2, 2], d))
    })
    .unwrap();
    // 8 positions x 3 outputs x 2 inputs.
    assert_eq!(count(&graph).macs, 48);
}
