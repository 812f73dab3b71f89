//! BatchNorm folding (NNI §5.6): same outputs, the formula's weights, adjacency on the graph.

use burn::module::{Module, Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use compress_core::Dense;
use compress_core::testing::oracle::module_tensors;
use compress_quant::QuantError;
use compress_quant::{FoldBatchNorm, fuse_bn};
use compress_zoo::SmallCnn;

use compress_core::testing::max_abs_diff;

/// A BatchNorm with non-trivial statistics (as after training).
fn trained(bn: BatchNorm, device: &Device) -> BatchNorm {
    let n = bn.gamma.dims()[0];
    let r = |lo: f64, hi: f64| Tensor::<1>::random([n], Distribution::Uniform(lo, hi), device);
    BatchNorm {
        gamma: Param::from_tensor(r(0.5, 1.5)),
        beta: Param::from_tensor(r(-0.5, 0.5)),
        running_mean: RunningState::new(r(-0.3, 0.3)),
        running_var: RunningState::new(r(0.2, 2.0)),
        ..bn
    }
}

fn small_cnn(device: &Device) -> SmallCnn {
    let m = SmallCnn::new(device);
    SmallCnn {
        bn1: trained(m.bn1, device),
        bn2: trained(m.bn2, device),
        bn3: trained(m.bn3, device),
        ..m
    }
}

fn dense<const D: usize>(t: Tensor<D>) -> Dense<f32> {
    Dense::from_tensor(t, "t").unwrap()
}

#[test]
fn folding_small_cnn_keeps_its_outputs_and_follows_the_formula() {
    let device = Device::flex();
    let model = small_cnn(&device);
    let before = module_tensors(&model);
    let fused = fuse_bn(
        &model,
        &[
            vec!["conv1", "bn1", "relu"],
            vec!["conv2", "bn2"],
            vec!["conv3", "bn3", "relu"],
        ],
        |m, d| m.forward(Tensor::zeros([1, 1, 8, 8], d)),
    )
    .unwrap();

    let x = Tensor::<4>::random([8, 1, 8, 8], Distribution::Default, &device);
    let diff = max_abs_diff(model.forward(x.clone()), fused.forward(x));
    assert!(diff <= 1e-5, "max |diff| {diff}");

    // w_f = w·γ/√(σ²+ε) per output channel, b_f = (b − μ)·γ/√(σ²+ε) + β.
    let eps = model.bn2.epsilon as f32;
    let (g, b) = (dense(model.bn2.gamma.val()), dense(model.bn2.beta.val()));
    let (mu, var) = (
        dense(model.bn2.running_mean.value()),
        dense(model.bn2.running_var.value()),
    );
    let s: Vec<f32> = (0..16)
        .map(|c| g.data()[c] / (var.data()[c] + eps).sqrt())
        .collect();
    let w = dense(model.conv2.weight.val());
    let expected: Vec<f32> = w
        .data()
        .iter()
        .enumerate()
        .map(|(i, x)| x * s[i / 72])
        .collect();
    assert_eq!(dense(fused.conv2.weight.val()).data(), expected.as_slice());
    let bias = dense(model.conv2.bias.as_ref().unwrap().val());
    let expected: Vec<f32> = (0..16)
        .map(|c| (bias.data()[c] - mu.data()[c]) * s[c] + b.data()[c])
        .collect();
    assert_eq!(
        dense(fused.conv2.bias.as_ref().unwrap().val()).data(),
        expected.as_slice()
    );

    // The BatchNorms are exact identities now.
    for bn in [&fused.bn1, &fused.bn2, &fused.bn3] {
        let n = bn.gamma.dims()[0];
        assert!(dense(bn.gamma.val()).data().iter().all(|&v| v == 1.0));
        assert!(dense(bn.beta.val()).data().iter().all(|&v| v == 0.0));
        assert!(
            dense(bn.running_mean.value())
                .data()
                .iter()
                .all(|&v| v == 0.0)
        );
        let y = Tensor::<4>::random([2, n, 3, 3], Distribution::Default, &device);
        assert_eq!(bn.forward(y.clone()).into_data(), y.into_data());
    }
    // The input model (running statistics included) is untouched.
    assert_eq!(module_tensors(&model), before);
}

#[test]
fn a_non_adjacent_pair_is_an_error_naming_both_layers() {
    let device = Device::flex();
    let model = small_cnn(&device);
    let err = fuse_bn(&model, &[["conv1", "bn2"]], |m, d| {
        m.forward(Tensor::zeros([1, 1, 8, 8], d))
    })
    .unwrap_err();
    assert!(
        matches!(&err, QuantError::NotAdjacent { layer, bn, .. } if layer == "conv1" && bn == "bn2"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("conv1") && msg.contains("bn2") && msg.contains("not adjacent"),
        "{msg}"
    );
    assert!(msg.contains("conv2"), "names the real producer: {msg}");
}

/// `bn(conv(x)) + conv(x)`: the conv's output is read twice.
#[derive(Module, Debug)]
struct Branchy {
    conv: Conv2d,
    bn: BatchNorm,
}

#[test]
fn a_conv_output_read_elsewhere_too_is_not_adjacent() {
    let device = Device::flex();
    let model = Branchy {
        conv: Conv2dConfig::new([1, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device),
        bn: trained(BatchNormConfig::new(4).init(&device), &device),
    };
    let err = fuse_bn(&model, &[["conv", "bn"]], |m, d| {
        let c = m.conv.forward(Tensor::zeros([1, 1, 5, 5], d));
        m.bn.forward(c.clone()) + c
    })
    .unwrap_err();
    assert!(
        matches!(&err, QuantError::NotAdjacent { .. }) && err.to_string().contains("also read"),
        "{err}"
    );
}

#[test]
fn unknown_paths_wrong_types_and_missing_relus_are_typed_errors() {
    let device = Device::flex();
    let model = small_cnn(&device);
    let run = |m: &SmallCnn, d: &Device| m.forward(Tensor::zeros([1, 1, 8, 8], d));
    let err = fuse_bn(&model, &[["conv9", "bn1"]], run).unwrap_err();
    assert!(matches!(&err, QuantError::UnknownModule { path } if path == "conv9"));
    let err = fuse_bn(&model, &[["conv1", "bn9"]], run).unwrap_err();
    assert!(matches!(&err, QuantError::UnknownModule { path } if path == "bn9"));
    let err = fuse_bn(&model, &[["fc", "bn1"]], run).unwrap_err();
    assert!(matches!(err, QuantError::NotAdjacent { .. }), "{err}");
    for group in [
        vec!["bn1", "conv1"],
        vec!["conv1"],
        vec!["conv1", "bn1", "relu", "x"],
    ] {
        let err = fuse_bn(&model, std::slice::from_ref(&group), run).unwrap_err();
        assert!(
            matches!(err, QuantError::UnsupportedFusion { .. }),
            "{group:?}: {err}"
        );
    }
    let err = fuse_bn(&model, &[["conv1", "bn1"], ["conv1", "bn2"]], run).unwrap_err();
    assert!(err.to_string().contains("more than one group"), "{err}");

    let model = LinearBn::new(true, &device);
    let err = fuse_bn(&model, &[["fc", "bn", "relu"]], |m, d| {
        m.forward(Tensor::zeros([2, 6], d))
    })
    .unwrap_err();
    assert!(err.to_string().contains("ReLU"), "{err}");
}

/// `bn(fc(x))`, with or without a bias on fc.
#[derive(Module, Debug)]
struct LinearBn {
    fc: Linear,
    bn: BatchNorm,
}

impl LinearBn {
    fn new(bias: bool, device: &Device) -> Self {
        Self {
            fc: LinearConfig::new(6, 5).with_bias(bias).init(device),
            bn: trained(BatchNormConfig::new(5).init(device), device),
        }
    }
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.bn.forward(self.fc.forward(x))
    }
}

#[test]
fn linear_and_batchnorm1d_fold_with_and_without_a_bias() {
    let device = Device::flex();
    let x = Tensor::<2>::random([7, 6], Distribution::Default, &device);
    for bias in [true, false] {
        let model = LinearBn::new(bias, &device);
        let fused = fuse_bn(&model, &[["fc", "bn"]], |m, d| {
            m.forward(Tensor::zeros([2, 6], d))
        })
        .unwrap();
        let diff = max_abs_diff(model.forward(x.clone()), fused.forward(x.clone()));
        assert!(diff <= 1e-5, "bias {bias}: {diff}");
        // Without a bias the folded bias stays in the BatchNorm's β (a pure bias add).
        let beta = dense(fused.bn.beta.val());
        assert_eq!(beta.data().iter().all(|&v| v == 0.0), bias);
        assert_eq!(fused.fc.bias.is_some(), bias);
    }
}

#[test]
fn the_typed_fold_creates_the_missing_conv_bias() {
    let device = Device::flex();
    let conv: Conv2d = Conv2dConfig::new([2, 4], [3, 3])
        .with_bias(false)
        .init(&device);
    let bn = trained(BatchNormConfig::new(4).init(&device), &device);
    let folded = conv.fold_batch_norm(&bn).unwrap();
    assert!(folded.bias.is_some());
    let x = Tensor::<4>::random([3, 2, 6, 6], Distribution::Default, &device);
    let a = bn.forward(conv.forward(x.clone()));
    let b = folded.forward(x);
    let diff = (a - b).abs().max().into_scalar::<f32>();
    assert!(diff <= 1e-5, "{diff}");
    assert!(conv.bias.is_none(), "the input layer is untouched");

    let fc: Linear = LinearConfig::new(3, 4).init(&device);
    let bn3 = trained(BatchNormConfig::new(3).init(&device), &device);
    let err = fc.fold_batch_norm(&bn3).unwrap_err();
    assert!(matches!(err, QuantError::UnsupportedFusion { .. }), "{err}");
    let folded = fc.fold_batch_norm(&bn).unwrap();
    let x = Tensor::<2>::random([5, 3], Distribution::Default, &device);
    let diff = max_abs_diff(bn.forward(fc.forward(x.clone())), folded.forward(x));
    assert!(diff <= 1e-5, "{diff}");
}
