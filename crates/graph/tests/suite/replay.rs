//! Graph replay: the replayed forward equals the model's own (values and gradients), taps see
//! every layer's input and output and can change them, and misuse is a typed error.

use std::collections::BTreeMap;

use burn::prelude::*;
use compress_graph::{GraphError, NoTap, Replay, Site, Tap};
use compress_zoo::{AnyModel, Arch, ImageClassifier, LeNet5};

fn close(a: Tensor<2>, b: Tensor<2>, tol: f32) {
    let (a, b) = (a.into_data(), b.into_data());
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (
        a.try_to_vec::<f32>().unwrap(),
        b.try_to_vec::<f32>().unwrap(),
    );
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst <= tol, "max |diff| {worst}");
}

#[test]
fn replay_reproduces_the_forward_of_every_image_model() {
    let device = Device::flex();
    fn check<M: ImageClassifier + burn::module::Module>(model: &M, shape: [usize; 4]) -> usize {
        let device = Device::flex();
        let x = Tensor::<4>::random(shape, burn::tensor::Distribution::Default, &device);
        let replay = Replay::capture(model, shape, |m, x| m.classify(x)).unwrap();
        let got: Tensor<2> = replay.run(model, x.clone(), &mut NoTap).unwrap();
        close(got, model.classify(x), 1e-5);
        replay.layers().len()
    }
    for arch in [
        Arch::LeNet5,
        Arch::SmallCnn,
        Arch::ResNet18,
        Arch::MobileNetV2,
    ] {
        let layers = match AnyModel::init(arch, &device) {
            AnyModel::LeNet5(m) => check(&m, arch.input_shape(2)),
            AnyModel::SmallCnn(m) => check(&m, arch.input_shape(2)),
            AnyModel::ResNet18(m) => check(&m, arch.input_shape(2)),
            AnyModel::MobileNetV2(m) => check(&m, arch.input_shape(2)),
            _ => unreachable!(),
        };
        assert!(layers > 0, "{arch:?}");
    }
}

/// Records the shapes it sees and doubles one layer's output.
#[derive(Default)]
struct Recorder {
    seen: BTreeMap<(String, Site), Vec<usize>>,
    double: Option<String>,
}

impl Tap for Recorder {
    fn wants(&self, _: &str, _: Site) -> bool {
        true
    }
    fn tap(
        &mut self,
        layer: &str,
        site: Site,
        _rank: usize,
        value: Tensor<3>,
    ) -> compress_graph::Result<Tensor<3>> {
        self.seen
            .insert((layer.to_string(), site), value.dims().to_vec());
        Ok(match &self.double {
            Some(l) if l == layer && site == Site::Output => value.mul_scalar(2.0),
            _ => value,
        })
    }
}

#[test]
fn taps_see_each_layer_and_can_change_its_output() {
    let device = Device::flex();
    let model = LeNet5::new(&device);
    let replay = Replay::capture(&model, [3, 1, 28, 28], |m, x| m.forward(x)).unwrap();
    let layers: Vec<&str> = replay.layers().iter().map(|l| l.layer.as_str()).collect();
    assert_eq!(layers, ["conv1", "conv2", "fc1", "fc2", "fc3"]);
    let x = Tensor::<4>::random([3, 1, 28, 28], burn::tensor::Distribution::Default, &device);
    let mut tap = Recorder::default();
    let _: Tensor<2> = replay.run(&model, x.clone(), &mut tap).unwrap();
    assert_eq!(tap.seen[&("conv1".into(), Site::Input)], [3, 1, 784]);
    assert_eq!(tap.seen[&("conv1".into(), Site::Output)], [3, 6, 784]);
    assert_eq!(tap.seen[&("fc1".into(), Site::Input)], [3, 400, 1]);
    assert_eq!(tap.seen[&("fc3".into(), Site::Output)], [3, 10, 1]);
    // Doubling the classifier's output (after its bias) doubles the logits.
    let mut tap = Recorder {
        double: Some("fc3".into()),
        ..Default::default()
    };
    let doubled: Tensor<2> = replay.run(&model, x.clone(), &mut tap).unwrap();
    close(doubled, model.forward(x).mul_scalar(2.0), 1e-5);
}

#[test]
fn gradients_through_the_replay_reach_the_model_parameters() {
    let device = Device::flex().autodiff();
    let model = LeNet5::new(&device);
    let replay = Replay::capture(&model, [2, 1, 28, 28], |m, x| m.forward(x)).unwrap();
    let x = Tensor::<4>::random([2, 1, 28, 28], burn::tensor::Distribution::Default, &device);
    let direct = model.forward(x.clone()).sum().backward();
    let replayed: Tensor<2> = replay.run(&model, x, &mut NoTap).unwrap();
    let replayed = replayed.sum().backward();
    let conv = (model.conv1.weight.grad(&direct).unwrap()
        - model.conv1.weight.grad(&replayed).unwrap())
    .abs()
    .max()
    .into_scalar::<f32>();
    let fc = (model.fc2.weight.grad(&direct).unwrap() - model.fc2.weight.grad(&replayed).unwrap())
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(conv < 1e-5 && fc < 1e-5, "{conv} {fc}");
}

#[test]
fn a_replay_refuses_an_input_of_another_shape() {
    let device = Device::flex();
    let model = LeNet5::new(&device);
    let replay = Replay::capture(&model, [2, 1, 28, 28], |m, x| m.forward(x)).unwrap();
    let err = replay
        .run::<_, 4, 2>(&model, Tensor::zeros([3, 1, 28, 28], &device), &mut NoTap)
        .unwrap_err();
    assert!(matches!(err, GraphError::Replay(_)));
    assert!(
        err.to_string()
            .contains("input shape [3, 1, 28, 28] differs from the captured [2, 1, 28, 28]"),
        "{err}"
    );
}

#[test]
fn a_soft_masked_model_replays_equal_to_its_direct_forward() {
    let device = Device::flex();
    let model = LeNet5::new(&device);
    let mut masks = compress_core::MaskSet::default();
    // Half of conv1's output channels, every other fc1 weight, all of fc1's bias.
    let conv1: Vec<u8> = (0..6 * 25).map(|i| u8::from(i / 25 % 2 == 0)).collect();
    masks.insert(
        "conv1.weight",
        compress_core::Dense::new(vec![6, 1, 5, 5], conv1),
    );
    let fc1 = model.fc1.weight.val().dims();
    let fc1_mask: Vec<u8> = (0..fc1[0] * fc1[1]).map(|i| (i % 2) as u8).collect();
    masks.insert(
        "fc1.weight",
        compress_core::Dense::new(fc1.to_vec(), fc1_mask),
    );
    masks.insert(
        "fc1.bias",
        compress_core::Dense::new(vec![120], vec![0; 120]),
    );
    let soft = masks.apply_soft(&model).unwrap();
    let x = Tensor::<4>::random([3, 1, 28, 28], burn::tensor::Distribution::Default, &device);
    let replay = Replay::capture(&soft, [3, 1, 28, 28], |m, x| m.forward(x)).unwrap();
    let got: Tensor<2> = replay.run(&soft, x.clone(), &mut NoTap).unwrap();
    let direct = soft.forward(x.clone());
    close(got.clone(), direct.clone(), 1e-5);
    // The masks are in force: the unmasked model answers differently.
    let dense = model.forward(x);
    let diff: f32 = (dense - direct).abs().max().into_scalar();
    assert!(diff > 1e-3, "the masks changed nothing ({diff})");
}

/// A reparameterization nobody registered a rebuild for.
#[derive(burn::module::Module, Debug)]
struct Doubling {
    factor: burn::module::Param<Tensor<1>>,
}

impl burn::module::Reparameterization for Doubling {
    const NAME: &'static str = "doubling";
    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        base * 2.0
    }
}

struct DoubleBias;

impl burn::module::Reparameterizer for DoubleBias {
    type Reparam = Doubling;
    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: burn::module::Param<Tensor<D>>,
    ) -> (burn::module::Param<Tensor<D>>, Option<Doubling>) {
        let r = (path == "fc1.bias").then(|| Doubling {
            factor: burn::module::Param::from_tensor(Tensor::ones([1], &param.lazy_device())),
        });
        (param, r)
    }
}

#[test]
fn a_reparameterization_the_replay_cannot_rebuild_is_an_error_not_a_silent_wrong_answer() {
    let device = Device::flex();
    let model = LeNet5::new(&device).apply_reparameterization(DoubleBias);
    let replay = Replay::capture(&model, [1, 1, 28, 28], |m, x| m.forward(x)).unwrap();
    let err = replay
        .run::<_, 4, 2>(&model, Tensor::zeros([1, 1, 28, 28], &device), &mut NoTap)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("parameter 'fc1.bias' carries a 'doubling' reparameterization"),
        "{err}"
    );
}

/// A transformer-style block on float inputs: LayerNorm, a 3-D Linear, GELU, softmax.
#[derive(burn::module::Module, Debug)]
struct Block {
    norm: burn::nn::LayerNorm,
    fc: burn::nn::Linear,
}

#[test]
fn replay_covers_layer_norm_3d_linear_gelu_and_softmax() {
    let device = Device::flex();
    let block = Block {
        norm: burn::nn::LayerNormConfig::new(8).init(&device),
        fc: burn::nn::LinearConfig::new(8, 6).init(&device),
    };
    let forward = |m: &Block, x: Tensor<3>| -> Tensor<3> {
        let h = burn::tensor::activation::gelu(m.fc.forward(m.norm.forward(x)));
        burn::tensor::activation::softmax(h, 2)
    };
    let x = Tensor::<3>::random([2, 5, 8], burn::tensor::Distribution::Default, &device);
    let replay = Replay::capture(&block, [2, 5, 8], forward).unwrap();
    let layers: Vec<&str> = replay.layers().iter().map(|l| l.layer.as_str()).collect();
    assert_eq!(layers, ["norm", "fc"]);
    let mut tap = Recorder::default();
    let got: Tensor<3> = replay.run(&block, x.clone(), &mut tap).unwrap();
    let expected = forward(&block, x);
    let worst = (got - expected).abs().max().into_scalar::<f32>();
    assert!(worst < 1e-6, "{worst}");
    // The Linear sees [batch, seq, features] as [2, 5, 8]: dim 1 is the sequence here.
    assert_eq!(tap.seen[&("fc".into(), Site::Input)], [2, 5, 8]);
}

#[test]
fn a_replay_keeps_no_copy_of_the_parameters() {
    // LeNet-5 holds 61k parameters (~240 kB); a cache of replays (one per input shape and
    // block, as W8A8 evaluation keeps) must not hold a model copy each.
    let device = Device::flex();
    let model = LeNet5::new(&device);
    let replay = Replay::capture(&model, [2, 1, 28, 28], |m, x: Tensor<4>| m.classify(x)).unwrap();
    assert!(
        replay.constant_bytes() < 1024,
        "{} bytes of constants",
        replay.constant_bytes()
    );
    let x = Tensor::<4>::random([2, 1, 28, 28], burn::tensor::Distribution::Default, &device);
    let y: Tensor<2> = replay.run(&model, x.clone(), &mut NoTap).unwrap();
    close(y, model.classify(x), 1e-5);
}
