//! EfficientNet-Lite0 with its real weights (`cargo xtask fetch efficientnet-lite0`) on foolbox's
//! ImageNet images (`cargo xtask fetch foolbox`): dense accuracy, parity with an independent NumPy
//! forward, and the errors for a broken image or checkpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use compress_zoo::{AnyModel, Arch, EfficientNetLite0, ImageClassifier, ImageFolder, ZooError};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn weights() -> PathBuf {
    repo(EfficientNetLite0::WEIGHTS)
}

fn foolbox() -> PathBuf {
    repo("data/external/foolbox")
}

/// The indices of the `k` largest values of each row, largest first.
fn top_k(logits: &Tensor<2>, k: usize) -> Vec<Vec<usize>> {
    let [rows, cols] = logits.dims();
    let values = logits.to_data().try_to_vec::<f32>().unwrap();
    (0..rows)
        .map(|r| {
            let row = &values[r * cols..(r + 1) * cols];
            let mut order: Vec<usize> = (0..cols).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            order.truncate(k);
            order
        })
        .collect()
}

/// A scratch folder under the target directory, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn dense_lite0_gets_17_of_20_top1_and_20_of_20_top5_on_foolbox_imagenet() {
    let device = Device::flex();
    let arch: Arch = "efficientnet-lite0".parse().unwrap();
    assert_eq!(arch.input_shape(20), [20, 3, 224, 224]);
    let model = AnyModel::load(arch, &weights(), &device).unwrap();
    let images = ImageFolder::load(&foolbox(), 224, "imagenet").unwrap();
    assert_eq!(images.len(), 20);
    assert_eq!(&images.labels[..3], &[243, 559, 438]);

    let batch = images.images(&device);
    let start = Instant::now();
    // AnyModel::forward takes RGB in [0, 1] and normalises it.
    let logits = model.forward(batch);
    let top = top_k(&logits, 5);
    eprintln!(
        "efficientnet-lite0: dense forward of 20 images at 224x224 in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let top1 = top
        .iter()
        .zip(&images.labels)
        .filter(|(t, l)| t[0] == **l)
        .count();
    let top5 = top
        .iter()
        .zip(&images.labels)
        .filter(|(t, l)| t.contains(l))
        .count();
    assert_eq!((top1, top5), (17, 20), "top-5 per image: {top:?}");
}

#[test]
fn flipped_images_are_mirrored_and_classified_through_the_image_classifier_trait() {
    let device = Device::flex();
    let model = EfficientNetLite0::load(&weights(), &device).unwrap();
    let images = ImageFolder::load(&foolbox(), 224, "imagenet").unwrap();
    let flipped = images.flip();
    assert_eq!(flipped.labels, images.labels);
    // Pixel (c, y, x) of the flip is pixel (c, y, 223 - x) of the original.
    let (a, b) = (images.pixels(), flipped.pixels());
    for (c, y, x) in [(0, 0, 0), (1, 100, 7), (2, 223, 223)] {
        let at = |x: usize| ((c * 224) + y) * 224 + x;
        assert_eq!(b[at(x)], a[at(223 - x)]);
    }
    // A mirrored photo keeps its class: the flips stay in their label's top 5 about as often
    // as the originals (20 of 20).
    let logits = model.classify(flipped.images(&device));
    let top = top_k(&logits, 5);
    let top1 = top
        .iter()
        .zip(&flipped.labels)
        .filter(|(t, l)| t[0] == **l)
        .count();
    let top5 = top
        .iter()
        .zip(&flipped.labels)
        .filter(|(t, l)| t.contains(l))
        .count();
    eprintln!("efficientnet-lite0 on the 20 flipped images: top-1 {top1}/20, top-5 {top5}/20");
    assert!(
        top5 >= 18,
        "flips in their label's top 5: {top5} of 20 ({top:?})"
    );
}

/// `scripts/reference/efficientnet_lite0.py`: pixel (c, y, x) = 0.5 + 0.5 sin(0.1 (c + 1) x +
/// 0.07 y + c), 224x224.
fn synthetic_image(device: &Device) -> Tensor<4> {
    let mut pixels = Vec::with_capacity(3 * 224 * 224);
    for c in 0..3 {
        for y in 0..224 {
            for x in 0..224 {
                let (c, y, x) = (c as f64, y as f64, x as f64);
                pixels.push((0.5 + 0.5 * (0.1 * (c + 1.0) * x + 0.07 * y + c).sin()) as f32);
            }
        }
    }
    Tensor::from_data(TensorData::new(pixels, [1, 3, 224, 224]), device)
}

#[test]
fn logits_equal_the_independent_numpy_forward() {
    // Output of `python3 scripts/reference/efficientnet_lite0.py` (float64 NumPy forward of
    // the same .pth, read with pickle + NumPy, on the synthetic image).
    const TOP5: [usize; 5] = [767, 418, 709, 723, 807];
    const TOP5_LOGITS: [f32; 5] = [10.556698, 8.323175, 8.066377, 7.156538, 6.815052];
    const FIRST4: [f32; 4] = [0.061332, 2.369931, 0.150467, -1.782755];

    let device = Device::flex();
    let model = EfficientNetLite0::load(&weights(), &device).unwrap();
    let logits = model.forward(EfficientNetLite0::preprocess(synthetic_image(&device)));
    assert_eq!(logits.dims(), [1, 1000]);
    assert_eq!(top_k(&logits, 5)[0], TOP5);
    let values = logits.to_data().try_to_vec::<f32>().unwrap();
    for (class, expected) in TOP5.iter().zip(TOP5_LOGITS) {
        let got = values[*class];
        assert!(
            (got - expected).abs() < 1e-3,
            "class {class}: {got} vs {expected}"
        );
    }
    for (class, expected) in FIRST4.iter().enumerate() {
        let got = values[class];
        assert!(
            (got - expected).abs() < 1e-3,
            "class {class}: {got} vs {expected}"
        );
    }
}

#[test]
fn the_real_weights_round_trip_through_pytorch_safetensors_at_any_image_size() {
    use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
    let device = Device::flex();
    let model = EfficientNetLite0::load(&weights(), &device).unwrap();
    let path = scratch("effnet_safetensors").join("lite0.safetensors");
    let mut store = SafetensorsStore::from_file(&path).with_to_adapter(BurnToPyTorchAdapter);
    model.save_into(&mut store).unwrap();
    // Not a legacy pickle: AnyModel::load reads it as PyTorch-named safetensors.
    let loaded = AnyModel::load(Arch::EfficientNetLite0, &path, &device).unwrap();
    // 100x100: odd feature maps (25, 13, 7) after the stride-2 convs, so "same" padding puts
    // the extra row at the bottom on some and none on others.
    let x = synthetic_image(&device).narrow(2, 0, 100).narrow(3, 0, 100);
    let expected = model.classify(x.clone());
    let got = loaded.forward(x);
    assert_eq!(got.dims(), [1, 1000]);
    got.into_data().assert_approx_eq::<f32>(
        &expected.into_data(),
        burn::tensor::Tolerance::absolute(1e-6),
    );
}

#[test]
fn parameter_paths_are_the_checkpoint_keys() {
    let device = Device::flex();
    let model = EfficientNetLite0::new(1000, &device);
    // 296 keys in the .pth, minus 49 BatchNorms' num_batches_tracked.
    let mut count = 0;
    let mut visitor = Paths::default();
    burn::module::Module::visit(&model, &mut visitor);
    for path in &visitor.paths {
        count += 1;
        assert!(!path.contains("num_batches"), "{path}");
    }
    assert_eq!(count, 296 - 49);
    for key in [
        "_conv_stem.weight",
        "_bn0.gamma",
        "_blocks.0._depthwise_conv.weight",
        "_blocks.1._expand_conv.weight",
        "_blocks.15._bn2.running_var",
        "_conv_head.weight",
        "_bn1.beta",
        "_fc.weight",
        "_fc.bias",
    ] {
        assert!(visitor.paths.iter().any(|p| p == key), "no '{key}'");
    }
    assert!(
        !visitor
            .paths
            .iter()
            .any(|p| p == "_blocks.0._expand_conv.weight")
    );
}

#[derive(Default)]
struct Paths {
    stack: Vec<String>,
    paths: Vec<String>,
}

impl burn::module::ModuleVisitor for Paths {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, _param: &burn::module::Param<Tensor<D>>) {
        self.paths.push(self.stack.join("."));
    }
}

#[test]
fn a_truncated_or_garbage_image_is_an_error_naming_the_file() {
    let dir = scratch("effnet_bad_images");
    let jpeg = std::fs::read(foolbox().join("imagenet_00_243.jpg")).unwrap();
    let truncated = dir.join("imagenet_00_243.jpg");
    std::fs::write(&truncated, &jpeg[..jpeg.len() / 10]).unwrap();
    let err = ImageFolder::load(&dir, 224, "imagenet").unwrap_err();
    assert!(
        matches!(&err, ZooError::Image { path, .. } if *path == truncated),
        "{err}"
    );
    assert!(err.to_string().contains("does not decode"), "{err}");

    let dir = scratch("effnet_garbage_image");
    let garbage = dir.join("cifar10_00_3.png");
    std::fs::write(&garbage, b"this is not a png").unwrap();
    let err = ImageFolder::load(&dir, 32, "cifar10").unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("image '{}': does not decode", garbage.display())),
        "{err}"
    );
}

#[test]
fn a_folder_without_matching_images_or_a_missing_one_is_an_error() {
    let err = ImageFolder::load(&foolbox(), 224, "imagenette").unwrap_err();
    assert!(
        err.to_string()
            .ends_with("no image named 'imagenette_*' (.jpg, .jpeg or .png)"),
        "{err}"
    );
    let err = ImageFolder::load(&repo("data/external/no-such-set"), 224, "x").unwrap_err();
    assert!(
        err.to_string()
            .ends_with("run `cargo xtask fetch no-such-set`"),
        "{err}"
    );
}

#[test]
fn a_checkpoint_missing_a_key_is_an_error_naming_it() {
    // Rename one key inside the pickle to a name of the same length, so the file stays valid.
    let mut bytes = std::fs::read(weights()).unwrap();
    let key = b"_blocks.3._bn1.weight";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("the key is in the pickle");
    bytes[at + key.len() - 1] = b'X';
    let path = scratch("effnet_missing_key").join("lite0.pth");
    std::fs::write(&path, bytes).unwrap();
    let err = EfficientNetLite0::load(&path, &Device::flex()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "weights '{}' do not fit 'efficientnet-lite0': missing tensor '_blocks.3._bn1.weight'",
            path.display()
        )
    );
}

#[test]
fn a_missing_or_foreign_checkpoint_is_an_error_naming_the_fix() {
    let device = Device::flex();
    let missing = repo("data/external/efficientnet-lite0/nothing.pth");
    let err = EfficientNetLite0::load(&missing, &device).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "'{}' not found: run `cargo xtask fetch efficientnet-lite0`",
            missing.display()
        )
    );
    let zip = scratch("effnet_zip").join("model.pth");
    std::fs::write(&zip, b"PK\x03\x04 a zip checkpoint").unwrap();
    let err = EfficientNetLite0::load(&zip, &device).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a legacy (non-zip) torch.save file"),
        "{err}"
    );
}
