//! The bundled datasets load and split as documented.

use compress_core::{CompressError, dataset::ImageDataset};

fn data(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(name)
}

#[test]
fn mnist_5k_splits_into_4000_train_and_1000_balanced_test_images() {
    let all = ImageDataset::load(data("mnist5k.safetensors"), 255.0).unwrap();
    assert_eq!((all.len(), all.height, all.width), (5000, 28, 28));
    assert!(all.pixels.iter().all(|&p| (0.0..=1.0).contains(&p)));
    let (train, test) = all.split();
    assert_eq!((train.len(), test.len()), (4000, 1000));
    for class in 0..10u8 {
        assert_eq!(test.labels.iter().filter(|&&l| l == class).count(), 100);
    }
    let (x, y) = test.batch(0, 64, &compress_core::testing::test_device());
    assert_eq!(x.dims(), [64, 1, 28, 28]);
    assert_eq!(y.dims(), [64]);
}

#[test]
fn digits_load_with_pixels_scaled_by_sixteen() {
    let digits = ImageDataset::load(data("digits.safetensors"), 16.0).unwrap();
    assert_eq!((digits.len(), digits.height), (1797, 8));
    assert_eq!(digits.pixels.iter().cloned().fold(0.0f32, f32::max), 1.0);
}

#[test]
fn a_file_without_images_is_an_invalid_dataset() {
    let err = ImageDataset::load(data("lenet5-mnist5k.safetensors"), 255.0).unwrap_err();
    assert!(matches!(err, CompressError::InvalidDataset { .. }));
    assert!(err.to_string().contains("'images'"), "{err}");
}
