//! The ImageNet models' parameter paths equal torchvision's `state_dict` keys, every model runs
//! on its input shape, and PyTorch-named safetensors round-trip through `AnyModel::load` with the
//! class count read from the file.

use std::path::PathBuf;

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Distribution, Tolerance};
use compress_zoo::{
    AnyModel, Arch, MobileNetV2, ResNet, TinyTransformer, ZooError, safetensors_shape,
};

/// Records the dotted path of every float tensor (parameters and running stats), in visit order.
#[derive(Default)]
struct Paths {
    stack: Vec<String>,
    paths: Vec<String>,
}

impl ModuleVisitor for Paths {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
        self.paths.push(self.stack.join("."));
    }
}

fn paths<M: Module>(model: &M) -> Vec<String> {
    let mut visitor = Paths::default();
    model.visit(&mut visitor);
    visitor.paths
}

/// A BatchNorm's tensors as Burn names them (torchvision: `weight`, `bias`, `running_mean`,
/// `running_var`, `num_batches_tracked`).
fn bn(keys: &mut Vec<String>, prefix: &str) {
    for name in ["gamma", "beta", "running_mean", "running_var"] {
        keys.push(format!("{prefix}.{name}"));
    }
}

/// torchvision's `resnet18` / `resnet50` `state_dict` keys (minus `num_batches_tracked`, with
/// `gamma`/`beta`), built the way torchvision's `ResNet._make_layer` names them.
fn torchvision_resnet_keys(layers: [usize; 4], bottleneck: bool) -> Vec<String> {
    let mut keys = vec!["conv1.weight".to_string()];
    bn(&mut keys, "bn1");
    let convs = if bottleneck { 3 } else { 2 };
    for (stage, blocks) in layers.into_iter().enumerate() {
        for block in 0..blocks {
            let prefix = format!("layer{}.{block}", stage + 1);
            for c in 1..=convs {
                keys.push(format!("{prefix}.conv{c}.weight"));
                bn(&mut keys, &format!("{prefix}.bn{c}"));
            }
            // Stage 1 of a BasicBlock ResNet keeps 64 channels at stride 1: no downsample.
            if block == 0 && (stage > 0 || bottleneck) {
                keys.push(format!("{prefix}.downsample.0.weight"));
                bn(&mut keys, &format!("{prefix}.downsample.1"));
            }
        }
    }
    keys.push("fc.weight".to_string());
    keys.push("fc.bias".to_string());
    keys
}

/// torchvision's `mobilenet_v2` `state_dict` keys (minus `num_batches_tracked`, with
/// `gamma`/`beta`), built the way torchvision's `MobileNetV2.__init__` names them.
fn torchvision_mobilenet_v2_keys() -> Vec<String> {
    let mut keys = vec!["features.0.0.weight".to_string()];
    bn(&mut keys, "features.0.1");
    let table = [(1, 1), (6, 2), (6, 3), (6, 4), (6, 3), (6, 3), (6, 1)];
    let mut index = 1;
    for (t, n) in table {
        for _ in 0..n {
            let prefix = format!("features.{index}.conv");
            let mut layer = 0;
            // ConvBNReLU: the expand conv (t != 1), then the depthwise conv.
            for _ in 0..(if t == 1 { 1 } else { 2 }) {
                keys.push(format!("{prefix}.{layer}.0.weight"));
                bn(&mut keys, &format!("{prefix}.{layer}.1"));
                layer += 1;
            }
            keys.push(format!("{prefix}.{layer}.weight"));
            bn(&mut keys, &format!("{prefix}.{}", layer + 1));
            index += 1;
        }
    }
    assert_eq!(index, 18);
    keys.push("features.18.0.weight".to_string());
    bn(&mut keys, "features.18.1");
    keys.push("classifier.1.weight".to_string());
    keys.push("classifier.1.bias".to_string());
    keys
}

#[test]
fn resnet18_paths_equal_torchvision_keys() {
    let ours = paths(&ResNet::resnet18(1000, &Device::flex()));
    let expected = torchvision_resnet_keys([2, 2, 2, 2], false);
    // 122 torchvision entries, 20 of them num_batches_tracked.
    assert_eq!(expected.len(), 102);
    assert_eq!(ours, expected);
    for key in [
        "conv1.weight",
        "bn1.gamma",
        "bn1.running_var",
        "layer1.0.conv1.weight",
        "layer1.1.bn2.beta",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_mean",
        "layer4.1.conv2.weight",
        "fc.weight",
        "fc.bias",
    ] {
        assert!(ours.iter().any(|p| p == key), "missing {key}");
    }
    assert!(!ours.iter().any(|p| p.starts_with("layer1.0.downsample")));
}

#[test]
fn resnet50_paths_equal_torchvision_keys() {
    let ours = paths(&ResNet::resnet50(1000, &Device::flex()));
    let expected = torchvision_resnet_keys([3, 4, 6, 3], true);
    // 320 torchvision entries, 53 of them num_batches_tracked.
    assert_eq!(expected.len(), 267);
    assert_eq!(ours, expected);
    for key in [
        "layer1.0.downsample.0.weight",
        "layer3.5.conv3.weight",
        "layer3.5.bn3.gamma",
        "layer4.0.downsample.1.running_var",
    ] {
        assert!(ours.iter().any(|p| p == key), "missing {key}");
    }
}

#[test]
fn mobilenet_v2_paths_equal_torchvision_keys() {
    let ours = paths(&MobileNetV2::new(1000, &Device::flex()));
    let expected = torchvision_mobilenet_v2_keys();
    // 314 torchvision entries, 52 of them num_batches_tracked.
    assert_eq!(expected.len(), 262);
    assert_eq!(ours, expected);
    for key in [
        "features.0.0.weight",
        "features.0.1.gamma",
        "features.1.conv.0.0.weight",
        "features.1.conv.0.1.running_mean",
        "features.1.conv.1.weight",
        "features.1.conv.2.beta",
        "features.2.conv.0.0.weight",
        "features.2.conv.1.0.weight",
        "features.2.conv.1.1.gamma",
        "features.2.conv.2.weight",
        "features.2.conv.3.running_var",
        "features.17.conv.3.gamma",
        "features.18.0.weight",
        "features.18.1.beta",
        "classifier.1.weight",
        "classifier.1.bias",
    ] {
        assert!(ours.iter().any(|p| p == key), "missing {key}");
    }
}

#[test]
fn mobilenet_v2_shapes_match_torchvision() {
    let model = MobileNetV2::new(1000, &Device::flex());
    let features = &model.features;
    assert_eq!(features.stem.0.weight.dims(), [32, 3, 3, 3]);
    // features.1: depthwise 32, project 32 -> 16.
    assert_eq!(features.first.conv.0.0.weight.dims(), [32, 1, 3, 3]);
    assert_eq!(features.first.conv.0.0.groups, 32);
    assert_eq!(features.first.conv.1.weight.dims(), [16, 32, 1, 1]);
    assert_eq!(features.blocks.len(), 16);
    // features.2: expand 16 -> 96, depthwise 96 stride 2, project 96 -> 24.
    let block = &features.blocks[0];
    assert_eq!(block.conv.0.0.weight.dims(), [96, 16, 1, 1]);
    assert_eq!(block.conv.1.0.weight.dims(), [96, 1, 3, 3]);
    assert_eq!(block.conv.1.0.groups, 96);
    assert_eq!(block.conv.1.0.stride, [2, 2]);
    assert_eq!(block.conv.2.weight.dims(), [24, 96, 1, 1]);
    assert!(!block.residual);
    // features.3 (24 -> 24, stride 1) adds its input.
    assert!(features.blocks[1].residual);
    // features.17: 160 -> 320.
    assert_eq!(features.blocks[15].conv.2.weight.dims(), [320, 960, 1, 1]);
    assert_eq!(features.last.0.weight.dims(), [1280, 320, 1, 1]);
    assert_eq!(model.classifier.1.weight.dims(), [1280, 1000]);
    assert!(features.stem.0.bias.is_none());
}

#[test]
fn tiny_transformer_paths() {
    let ours = paths(&TinyTransformer::new(10, &Device::flex()));
    assert_eq!(ours[0], "tokens.weight");
    assert_eq!(ours[1], "positions.weight");
    assert_eq!(ours[ours.len() - 2..], ["head.weight", "head.bias"]);
    for key in [
        "encoder.layers.0.mha.query.weight",
        "encoder.layers.0.pwff.linear_inner.weight",
        "encoder.layers.1.norm_2.gamma",
    ] {
        assert!(ours.iter().any(|p| p == key), "missing {key}");
    }
    assert!(ours.iter().all(|p| !p.starts_with("encoder.layers.2.")));
}

fn images(n: usize, device: &Device) -> Tensor<4> {
    Tensor::random([n, 3, 64, 64], Distribution::Default, device)
}

fn tokens(device: &Device) -> Tensor<2, Int> {
    Tensor::<1, Int>::arange(0..32, device).reshape([2, 16])
}

#[test]
fn image_models_give_one_logit_row_per_image() {
    let device = Device::flex();
    for arch in [Arch::ResNet18, Arch::ResNet50, Arch::MobileNetV2] {
        let model = AnyModel::init(arch, &device);
        assert_eq!(model.arch(), arch);
        assert!(!arch.takes_tokens());
        assert_eq!(arch.input_shape(2), [2, 3, 64, 64]);
        let x = Tensor::random(arch.input_shape(2), Distribution::Default, &device);
        assert_eq!(model.forward(x).dims(), [2, 1000], "{arch}");
        assert!(model.forward_tokens(tokens(&device)).is_none());
    }
    let x = images(2, &device);
    assert_eq!(ResNet::resnet18(7, &device).forward(x).dims(), [2, 7]);
}

#[test]
fn transformer_gives_one_logit_row_per_sequence() {
    let device = Device::flex();
    let model = AnyModel::init(Arch::TinyTransformer, &device);
    assert!(Arch::TinyTransformer.takes_tokens());
    assert_eq!(Arch::TinyTransformer.token_shape(2), Some([2, 32]));
    assert_eq!(Arch::ResNet18.token_shape(2), None);
    let logits = model.forward_tokens(tokens(&device)).unwrap();
    assert_eq!(logits.dims(), [2, 10]);
    let longest = Tensor::<1, Int>::arange(0..64, &device).reshape([2, 32]);
    assert_eq!(model.forward_tokens(longest).unwrap().dims(), [2, 10]);
}

#[test]
fn new_names_parse() {
    for (name, arch) in [
        ("resnet18", Arch::ResNet18),
        ("resnet50", Arch::ResNet50),
        ("mobilenet_v2", Arch::MobileNetV2),
        ("tiny-transformer", Arch::TinyTransformer),
        ("small-cnn", Arch::SmallCnn),
        ("efficientnet-lite0", Arch::EfficientNetLite0),
    ] {
        assert_eq!(name.parse::<Arch>().unwrap(), arch);
        assert_eq!(arch.to_string(), name);
    }
    assert_eq!(Arch::ALL.len(), 10);
}

/// Shifts every float tensor by a random amount in `[0, 0.5)`, so BatchNorm's `gamma`, `beta`
/// and running stats leave their initial values (running variances stay positive).
struct Perturb;

impl ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let noise = t.random_like(Distribution::Uniform(0.0, 0.5));
            t + noise
        })
    }
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("compress-zoo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Saves `model` with PyTorch names and layouts, as `torch.save(model.state_dict())` followed by
/// a safetensors conversion would (minus `num_batches_tracked`).
fn save_pytorch<M: Module>(model: &M, name: &str) -> PathBuf {
    let path = temp_file(name);
    let mut store = SafetensorsStore::from_file(&path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .overwrite(true);
    model.save_into(&mut store).unwrap();
    path
}

fn assert_same(a: Tensor<2>, b: Tensor<2>) {
    a.into_data()
        .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-5));
}

#[test]
fn resnet18_round_trips_through_pytorch_safetensors() {
    let device = Device::flex();
    let model = ResNet::resnet18(7, &device).map(&mut Perturb);
    // The perturbation moved BatchNorm off its identity initialization.
    let gamma = model.bn1.gamma.val().min().into_scalar::<f32>();
    assert!(gamma > 1.0, "{gamma}");
    let path = save_pytorch(&model, "resnet18-7.safetensors");
    assert_eq!(
        safetensors_shape(&path, "fc.weight").unwrap(),
        Some(vec![7, 512])
    );
    assert_eq!(
        safetensors_shape(&path, "bn1.weight").unwrap(),
        Some(vec![64])
    );
    assert_eq!(safetensors_shape(&path, "bn1.gamma").unwrap(), None);

    let loaded = AnyModel::load(Arch::ResNet18, &path, &device).unwrap();
    let AnyModel::ResNet18(ref inner) = loaded else {
        panic!("loaded {}", loaded.arch())
    };
    assert_eq!(inner.fc.weight.dims(), [512, 7]);
    let x = images(2, &device);
    let ours = loaded.forward(x.clone());
    assert_eq!(ours.dims(), [2, 7]);
    assert_same(model.forward(x), ours);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn mobilenet_v2_round_trips_through_pytorch_safetensors() {
    let device = Device::flex();
    let model = MobileNetV2::new(5, &device).map(&mut Perturb);
    let path = save_pytorch(&model, "mobilenet_v2-5.safetensors");
    assert_eq!(
        safetensors_shape(&path, "classifier.1.weight").unwrap(),
        Some(vec![5, 1280])
    );
    assert_eq!(
        safetensors_shape(&path, "features.17.conv.1.0.weight").unwrap(),
        Some(vec![960, 1, 3, 3])
    );
    assert_eq!(
        safetensors_shape(&path, "features.18.1.running_var").unwrap(),
        Some(vec![1280])
    );

    let loaded = AnyModel::load(Arch::MobileNetV2, &path, &device).unwrap();
    let x = images(2, &device);
    let ours = loaded.forward(x.clone());
    assert_eq!(ours.dims(), [2, 5]);
    assert_same(model.forward(x), ours);

    // A MobileNetV2 file is no ResNet: the classifier size cannot be read.
    let err = AnyModel::load(Arch::ResNet18, &path, &device).unwrap_err();
    assert!(
        matches!(&err, ZooError::Mismatch { message, .. } if message.contains("fc.weight")),
        "{err}"
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn tiny_transformer_round_trips_through_pytorch_safetensors() {
    let device = Device::flex();
    let model = TinyTransformer::new(3, &device).map(&mut Perturb);
    let path = save_pytorch(&model, "tiny-transformer-3.safetensors");
    assert_eq!(
        safetensors_shape(&path, "head.weight").unwrap(),
        Some(vec![3, 64])
    );
    assert_eq!(
        safetensors_shape(&path, "encoder.layers.0.norm_1.weight").unwrap(),
        Some(vec![64])
    );

    let loaded = AnyModel::load(Arch::TinyTransformer, &path, &device).unwrap();
    let ours = loaded.forward_tokens(tokens(&device)).unwrap();
    assert_eq!(ours.dims(), [2, 3]);
    assert_same(model.forward(tokens(&device)), ours);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn missing_weights_file_is_a_read_error() {
    let path = temp_file("does-not-exist.safetensors");
    let err = AnyModel::load(Arch::ResNet50, &path, &Device::flex()).unwrap_err();
    assert!(matches!(err, ZooError::Read { .. }), "{err}");
}
