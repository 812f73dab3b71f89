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

// The full real data sets, as `cargo xtask fetch fashion-mnist mnist` writes them (`cargo xtask
// test` fetches them first). Reference values from `python3 scripts/reference/datasets.py
// images` (NumPy + Python's gzip/pickle): pixels are k/255 (IDX) or k/256 (the MNIST pickle),
// so `sum(k)` is an exact integer, and `sum(k[j] * (j % 97))` over the first 1000 images also
// catches pixels or images out of order.

mod real {
    use std::path::{Path, PathBuf};

    use compress_core::CompressError;
    use compress_core::dataset::{DatasetSplit, ImageDataset};

    fn external(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/external")
            .join(name)
    }

    /// (sum of k, weighted sum over the first 1000 images), k = pixel * scale.
    fn checksums(set: &ImageDataset, scale: f32) -> (u64, u64) {
        let k: Vec<u64> = set
            .pixels
            .iter()
            .map(|&p| {
                let k = p * scale;
                assert_eq!(k, k.round(), "pixel {p} is not k/{scale}");
                k as u64
            })
            .collect();
        let head = 1000 * set.height * set.width;
        let weighted = k[..head]
            .iter()
            .enumerate()
            .map(|(j, &k)| k * (j as u64 % 97))
            .sum();
        (k.iter().sum(), weighted)
    }

    #[test]
    fn fashion_mnist_has_60000_train_and_10000_test_images_matching_numpy() {
        let dir = external("fashion-mnist");
        let train = ImageDataset::fashion_mnist(&dir, DatasetSplit::Train).unwrap();
        assert_eq!((train.len(), train.height, train.width), (60000, 28, 28));
        assert_eq!(train.pixels.len(), 60000 * 784);
        assert_eq!(train.labels[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
        assert_eq!(checksums(&train, 255.0), (3431114169, 2716552120));
        let test = ImageDataset::fashion_mnist(&dir, DatasetSplit::Test).unwrap();
        assert_eq!((test.len(), test.height, test.width), (10000, 28, 28));
        assert_eq!(test.labels[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
        assert_eq!(checksums(&test, 255.0), (573469082, 2786300690));
        // The first non-zero pixel of the first test image: index 215, value 3 / 255.
        let first = test.pixels[..784].iter().position(|&p| p > 0.0).unwrap();
        assert_eq!((first, test.pixels[first]), (215, 3.0 / 255.0));
    }

    #[test]
    fn mnist_pickle_has_50000_10000_10000_images_matching_numpy() {
        let path = external("mnist/mnist.pkl.gz");
        for (split, n, labels, sums) in [
            (
                DatasetSplit::Train,
                50000,
                [5, 0, 4, 1, 9, 2, 1, 3, 1, 4],
                (1309089051, 1231490527),
            ),
            (
                DatasetSplit::Valid,
                10000,
                [3, 8, 6, 9, 6, 4, 5, 3, 8, 4],
                (258209494, 1220838445),
            ),
            (
                DatasetSplit::Test,
                10000,
                [7, 2, 1, 0, 4, 1, 4, 9, 5, 9],
                (264923200, 1170559025),
            ),
        ] {
            let set = ImageDataset::from_mnist_pkl_gz(&path, split).unwrap();
            assert_eq!((set.len(), set.height, set.width), (n, 28, 28), "{split:?}");
            assert_eq!(set.labels[..10], labels, "{split:?}");
            assert_eq!(checksums(&set, 256.0), sums, "{split:?}");
        }
    }

    /// Writes `bytes` gzipped to a scratch file and returns its path.
    fn gz(name: &str, bytes: &[u8]) -> PathBuf {
        use std::io::Write;
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("core-dataset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let mut z = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        z.write_all(bytes).unwrap();
        z.finish().unwrap();
        path
    }

    /// An IDX file: magic, big-endian dims, data.
    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn a_tiny_idx_pair_loads_with_pixels_over_255() {
        let images = gz(
            "tiny-images.gz",
            &idx(0x803, &[2, 1, 2], &[0, 255, 51, 102]),
        );
        let labels = gz("tiny-labels.gz", &idx(0x801, &[2], &[7, 3]));
        let set = ImageDataset::from_idx_gz(&images, &labels).unwrap();
        assert_eq!((set.len(), set.height, set.width), (2, 1, 2));
        assert_eq!(set.pixels, [0.0, 1.0, 0.2, 0.4]);
        assert_eq!(set.labels, [7, 3]);
    }

    #[test]
    fn idx_images_with_a_label_magic_are_an_invalid_dataset_naming_both_magics() {
        let labels = gz("swapped-labels.gz", &idx(0x801, &[2], &[7, 3]));
        let err = ImageDataset::from_idx_gz(&labels, &labels).unwrap_err();
        assert!(matches!(err, CompressError::InvalidDataset { .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "dataset '{}' is invalid: IDX magic 0x00000801, expected 0x00000803 \
                 (unsigned bytes, 3 dimensions)",
                labels.display()
            )
        );
    }

    #[test]
    fn idx_data_shorter_than_its_dimensions_is_refused() {
        let images = gz("short-images.gz", &idx(0x803, &[2, 2, 2], &[1, 2, 3]));
        let labels = gz("short-labels.gz", &idx(0x801, &[2], &[7, 3]));
        let err = ImageDataset::from_idx_gz(&images, &labels).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("dimensions [2, 2, 2] need 8 bytes of data, found 3"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_names_the_fetch_command() {
        let missing = Path::new("/nonexistent/mnist.pkl.gz");
        let err = ImageDataset::from_mnist_pkl_gz(missing, DatasetSplit::Test).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dataset '/nonexistent/mnist.pkl.gz' is invalid: no such file \
             (`cargo xtask fetch mnist` puts it in data/external/mnist/)"
        );
    }

    #[test]
    fn a_pickle_that_is_not_numpy_arrays_is_refused_with_its_opcode() {
        // pickle.dumps({}, protocol=2): PROTO 2, EMPTY_DICT, '.'
        let path = gz("dict.pkl.gz", b"\x80\x02}q\x00.");
        let err = ImageDataset::from_mnist_pkl_gz(&path, DatasetSplit::Train).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "pickle opcode 0x7d at byte 2 is not supported \
                 (this reader knows NumPy-array pickles of protocols 2 to 4)"
            ),
            "{err}"
        );
    }

    #[test]
    fn split_names_parse_and_an_unknown_one_is_named() {
        assert_eq!(
            "valid".parse::<DatasetSplit>().unwrap(),
            DatasetSplit::Valid
        );
        assert_eq!("test".parse::<DatasetSplit>().unwrap(), DatasetSplit::Test);
        let err = "holdout".parse::<DatasetSplit>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "key 'split' in data set: invalid value 'holdout' (expected train, valid or test)"
        );
        let err = ImageDataset::fashion_mnist("unused", DatasetSplit::Valid).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key 'split' in Fashion-MNIST: invalid value 'valid' \
             (Fashion-MNIST has a train and a test split only)"
        );
    }
}
