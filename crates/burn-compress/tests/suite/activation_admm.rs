//! The activation pruners (`apoz`, `mean-activation`) and ADMM through the facade's captured
//! route: exact statistics and masks on a hand-built model, weights untouched by collection,
//! ADMM's penalty pulling the pruned weights to zero, and the typed errors without data.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn_compress::core::activations::activation_statistics;
use burn_compress::core::admm::{AdmmSpec, admm};
use burn_compress::core::dataset::ImageDataset;
use burn_compress::core::paths::{PathVisitor, visit_params};
use burn_compress::core::train::{OptimizerKind, TrainConfig, accuracy};
use burn_compress::pruning::{ReplayOutputs, prune_captured};
use burn_compress::zoo::{AnyModel, Arch, ImageClassifier, LeNet5};
use burn_compress::{CompressConfig, PruneMode, PruneSchedule, Pruner, Training};

use crate::common::{pruner, pruner_error};

/// One 1x1 conv, 1 -> 5 channels, whose output is the logits (flattened).
#[derive(Module, Debug)]
struct Tiny {
    conv: Conv2d,
}

impl Tiny {
    /// Channel `c` computes `w[c] * x + b[c]`: weights 1, 1, 1, 1, 0.1 and biases -0.1, -0.6,
    /// -0.3, -0.8, 0.1.
    fn new(device: &Device) -> Self {
        let mut conv = Conv2dConfig::new([1, 5], [1, 1]).init(device);
        conv.weight = Param::from_tensor(
            Tensor::<1>::from_floats([1.0, 1.0, 1.0, 1.0, 0.1], device).reshape([5, 1, 1, 1]),
        );
        conv.bias = Some(Param::from_tensor(Tensor::<1>::from_floats(
            [-0.1, -0.6, -0.3, -0.8, 0.1],
            device,
        )));
        Self { conv }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.conv.forward(x).flatten(1, 3)
    }
}

/// Six 1x5 images, each holding 0, 0.25, 0.5, 0.75 and 1 in some order: every image (so every
/// batch) has the same per-channel statistics.
fn tiny_data() -> ImageDataset {
    let rows = [
        [0.0, 0.25, 0.5, 0.75, 1.0],
        [1.0, 0.75, 0.5, 0.25, 0.0],
        [0.5, 0.0, 1.0, 0.25, 0.75],
        [0.25, 1.0, 0.0, 0.75, 0.5],
        [0.75, 0.5, 0.25, 1.0, 0.0],
        [0.0, 1.0, 0.25, 0.5, 0.75],
    ];
    ImageDataset {
        pixels: rows.iter().flatten().copied().collect(),
        labels: vec![0; rows.len()],
        height: 1,
        width: 5,
    }
}

fn train_config(batch_size: usize) -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch_size,
        lr: 1e-3,
        optimizer: OptimizerKind::Adam,
        seed: 7,
        progress: false,
        ..Default::default()
    }
}

/// Every parameter's values by path.
fn params<M: Module>(model: &M) -> BTreeMap<String, Vec<f32>> {
    struct Read(BTreeMap<String, Vec<f32>>);
    impl PathVisitor for Read {
        fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
            let values = param.val().into_data().try_to_vec::<f32>().unwrap();
            self.0.insert(path.to_string(), values);
        }
    }
    let mut read = Read(BTreeMap::new());
    visit_params(model, &mut read);
    read.0
}

fn assert_bit_identical(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, values) in a {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(values), bits(&b[path]), "{path} changed");
    }
}

#[test]
fn apoz_and_mean_activation_give_exact_statistics_and_masks_on_a_hand_built_model() {
    let device = Device::flex();
    let model = Tiny::new(&device);
    let data = tiny_data();
    let forward = |m: &Tiny, x: Tensor<4>| m.forward(x);
    // Batches of 4 and 2 images: unequal batches, equal statistics.
    let training = Training {
        data: &data,
        forward: &forward,
        config: train_config(4),
    };
    let config =
        CompressConfig::from_toml("[[config_list]]\nop_names = ['conv']\nsparse_ratio = 0.6\n")
            .unwrap();
    let graph =
        burn_compress::graph::capture(&model, |m, d| m.forward(Tensor::zeros([4, 1, 1, 5], d)))
            .unwrap();
    let source = ReplayOutputs::from_training(&training);
    // relu(p - t) is zero for the pixels p <= t: thresholds 0.1, 0.6, 0.3, 0.8 zero 1, 3, 2, 4
    // of the 5 values; channel 4 (0.1 p + 0.1) is never zero.
    let cases = [
        ("apoz", [0.8, 0.4, 0.6, 0.2, 1.0], [1, 0, 0, 0, 1]),
        // Means of relu(p - t): 2.1 / 5, 0.55 / 5, 1.35 / 5, 0.2 / 5, and 0.1 * 0.5 + 0.1.
        (
            "mean-activation",
            [0.42, 0.11, 0.27, 0.04, 0.15],
            [1, 0, 1, 0, 0],
        ),
    ];
    for (name, expected, kept) in cases {
        let p = pruner(name, "batches = 2");
        let stats = activation_statistics(&model, &config, p.as_ref(), &source).unwrap();
        let got = stats["conv.weight"].data();
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "{name}: {got:?} vs {expected:?}");
        }
        let before = params(&model);
        let pruned = prune_captured(
            model.clone(),
            &graph,
            &config,
            p.clone(),
            None,
            Some(&training),
        )
        .unwrap();
        assert_eq!(pruned.mode, PruneMode::Activations);
        let mask = pruned.masks.get("conv.weight").unwrap();
        assert_eq!(mask.shape(), &[5, 1, 1, 1]);
        assert_eq!(mask.data(), &kept, "{name}");
        assert_eq!(pruned.masks.get("conv.bias").unwrap().data(), &kept);
        // Collection only ran inference: the returned model is the input, bit for bit.
        assert_bit_identical(&before, &params(&pruned.model));
        // A model on an autodiff device (where the command line puts it) gives the same masks.
        let tracked = Tiny::new(&device.clone().autodiff());
        let pruned = prune_captured(tracked, &graph, &config, p, None, Some(&training)).unwrap();
        assert_eq!(pruned.masks.get("conv.weight").unwrap().data(), &kept);
    }
}

fn lenet(device: &Device) -> (LeNet5, ImageDataset, ImageDataset) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (train, test) = ImageDataset::load(root.join("data/mnist5k.safetensors"), 255.0)
        .unwrap()
        .split();
    let model = match AnyModel::load(
        Arch::LeNet5,
        &root.join("data/lenet5-mnist5k.safetensors"),
        device,
    )
    .unwrap()
    {
        AnyModel::LeNet5(m) => m,
        _ => unreachable!(),
    };
    (model, train, test)
}

fn lenet_graph(model: &LeNet5) -> burn_compress::graph::Graph {
    burn_compress::graph::capture(&model.valid(), |m, d| {
        m.forward(Tensor::zeros([1, 1, 28, 28], d))
    })
    .unwrap()
}

#[test]
fn apoz_on_lenet5_prunes_exact_ratios_from_twenty_batches_without_touching_a_weight() {
    let device = Device::flex();
    let (model, train, test) = lenet(&device);
    let forward = |m: &LeNet5, x: Tensor<4>| m.classify(x);
    let training = Training {
        data: &train,
        forward: &forward,
        config: train_config(64),
    };
    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_names = ['conv1', 'conv2', 'fc1', 'fc2']\nsparse_ratio = 0.5\n",
    )
    .unwrap();
    let graph = lenet_graph(&model);
    let before = params(&model);
    let started = std::time::Instant::now();
    let pruned = prune_captured(
        model.clone(),
        &graph,
        &config,
        pruner("apoz", ""),
        None,
        Some(&training),
    )
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_bit_identical(&before, &params(&pruned.model));
    assert_bit_identical(&before, &params(&model));
    let stats = pruned.masks.stats();
    for (path, channels) in [
        ("conv1.weight", 6),
        ("conv2.weight", 16),
        ("fc1.weight", 120),
        ("fc2.weight", 84),
    ] {
        let t = stats.targets.iter().find(|t| t.path == path).unwrap();
        assert_eq!(t.sparsity(), 0.5, "{path}");
        let mask = pruned.masks.get(path).unwrap();
        let axis = if path.starts_with("fc") { 1 } else { 0 };
        assert_eq!(mask.shape()[axis], channels);
    }
    let dense = accuracy(&model, &test, |m, x| m.classify(x), &device);
    let masked = pruned.masks.apply_hard(&model).unwrap();
    let after = accuracy(&masked, &test, |m, x| m.classify(x), &device);
    let l1 = burn_compress::prune(&model, &config, pruner("l1-norm", "").as_ref()).unwrap();
    let l1 = accuracy(
        &l1.masks.apply_hard(&model).unwrap(),
        &test,
        |m, x| m.classify(x),
        &device,
    );
    eprintln!(
        "apoz on LeNet-5 (20 batches of 64, {seconds:.2} s): test accuracy {dense:.4} -> {after:.4} \
         at 50% of the channels of conv1, conv2, fc1, fc2, no fine-tuning (l1-norm: {l1:.4})"
    );
}

/// The L2 norm of `weights` where `mask` is 0.
fn pruned_norm(weights: &[f32], mask: &[u8]) -> f64 {
    weights
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m == 0)
        .map(|(w, _)| (*w as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn admm_pulls_the_pruned_weights_to_zero_and_prunes_the_exact_ratio() {
    let device = Device::flex().autodiff();
    let (model, train, _) = lenet(&device);
    let forward = |m: &LeNet5, x: Tensor<4>| m.classify(x);
    let training = Training {
        data: &train,
        forward: &forward,
        config: TrainConfig {
            max_steps: Some(60),
            ..train_config(32)
        },
    };
    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_names = ['conv2', 'fc1', 'fc2']\nsparse_ratio = 0.5\n",
    )
    .unwrap();
    let run = |rho: f64| {
        let p = pruner("admm", &format!("rho = {rho:?}\niterations = 3"));
        let spec = p.admm().unwrap();
        assert_eq!(
            spec,
            AdmmSpec {
                rho,
                iterations: 3,
                training_epochs: 1
            }
        );
        admm(model.clone(), &config, p.as_ref(), &spec, &training).unwrap()
    };
    // rho = 0: the same training and projections without the penalty.
    let plain = run(0.0);
    let pulled = run(5.0);
    let (w_plain, w_pulled) = (params(&plain.model), params(&pulled.model));
    let (mut total_plain, mut total_pulled) = (0.0, 0.0);
    for path in ["conv2.weight", "fc1.weight", "fc2.weight"] {
        let a = pruned_norm(&w_plain[path], plain.masks.get(path).unwrap().data());
        let b = pruned_norm(&w_pulled[path], pulled.masks.get(path).unwrap().data());
        eprintln!("admm {path}: pruned-weight norm {a:.4} (rho 0) vs {b:.4} (rho 5)");
        // Measured: conv2 1.28 vs 0.87, fc1 2.91 vs 0.77, fc2 2.11 vs 1.45.
        assert!(b < 0.8 * a, "{path}: {b} vs {a}");
        total_plain += a;
        total_pulled += b;
    }
    assert!(total_pulled < 0.6 * total_plain);
    eprintln!(
        "admm residuals ||W - Z||: rho 0 {:?}, rho 5 {:?}",
        plain.residuals, pulled.residuals
    );
    // Measured: rho 0 3.77, 5.71, 7.41 (the dual drifts); rho 5 3.76, 2.67, 1.95.
    assert_eq!(pulled.residuals.len(), 3);
    assert!(pulled.residuals[2] < pulled.residuals[1] && pulled.residuals[1] < pulled.residuals[0]);
    assert!(pulled.residuals[2] < 0.5 * plain.residuals[2]);
    for path in ["conv2.weight", "fc1.weight", "fc2.weight"] {
        let t = pulled.masks.stats();
        let t = t.targets.iter().find(|t| t.path == path).unwrap();
        assert_eq!(t.sparsity(), 0.5, "{path}");
    }

    // The same through the facade's route: the driver picks ADMM from what the pruner declares.
    let pruned = prune_captured(
        model.clone(),
        &lenet_graph(&model),
        &config,
        pruner(
            "admm",
            "rho = 5.0\niterations = 1\ngranularity = 'coarse-grained'",
        ),
        None,
        Some(&training),
    )
    .unwrap();
    assert_eq!(pruned.mode, PruneMode::Admm);
    let fc1 = pruned.masks.get("fc1.weight").unwrap();
    // Coarse-grained: whole output channels (axis 1 of a Linear weight), half of them.
    let kept_columns = (0..120).filter(|&c| fc1.data()[c] == 1).collect::<Vec<_>>();
    assert_eq!(kept_columns.len(), 60);
    for row in 0..400 {
        for c in 0..120 {
            assert_eq!(fc1.data()[row * 120 + c], fc1.data()[c]);
        }
    }
}

#[test]
fn activation_and_admm_pruners_without_data_or_with_a_schedule_are_typed_errors() {
    let device = Device::flex();
    let model = LeNet5::new(&device);
    let graph = lenet_graph(&model);
    let config =
        CompressConfig::from_toml("[[config_list]]\nop_names = ['fc1']\nsparse_ratio = 0.5\n")
            .unwrap();
    let err = prune_captured(
        model.clone(),
        &graph,
        &config,
        pruner("apoz", ""),
        None,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("activation pruning reads layer outputs over data batches: give it data"),
        "{err}"
    );
    let err = prune_captured(
        model.clone(),
        &graph,
        &config,
        pruner("admm", ""),
        None,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("admm pruning trains the model: give it training data"),
        "{err}"
    );
    // Scoring with the metric alone (no driver) says what is missing.
    let err = burn_compress::prune(&model, &config, pruner("mean-activation", "").as_ref())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("needs an activation statistic for 'fc1.weight'"),
        "{err}"
    );
    let agp = PruneSchedule {
        schedule: burn_compress::core::schedule::Schedule::Agp { total_times: 2 },
        total_times: 2,
        interval_steps: 1,
    };
    for (name, says) in [
        (
            "apoz",
            "an activation pruner (apoz, mean-activation) scores once",
        ),
        ("admm", "an ADMM pruner runs its own iterations"),
    ] {
        let p: Arc<dyn Pruner> = pruner(name, "");
        let err = PruneMode::choose(p.as_ref(), Some(&agp))
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err}");
    }
    // ADMM must train: a learning rate of 0 (the statistics-only setting) is refused.
    let data = tiny_data();
    let forward = |m: &LeNet5, x: Tensor<4>| m.classify(x);
    let training = Training {
        data: &data,
        forward: &forward,
        config: TrainConfig {
            lr: 0.0,
            ..train_config(4)
        },
    };
    let err = prune_captured(
        LeNet5::new(&device.autodiff()),
        &graph,
        &config,
        pruner("admm", ""),
        None,
        Some(&training),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("the learning rate must be > 0, found 0"),
        "{err}"
    );
    let err = pruner_error("admm", "base = 'taylor'");
    assert!(
        err.contains("'base' must be a pruner that scores weights alone"),
        "{err}"
    );
    let err = pruner_error("apoz", "batches = 0");
    assert!(err.contains("'batches' must be an integer >= 1"), "{err}");
}
