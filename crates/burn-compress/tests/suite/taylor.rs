//! Taylor importance with parity to NNI 3.0 (one step on the fixed batch, eval mode, SGD lr 0):
//! metrics within 1e-5, masks exact.

use burn::prelude::*;
use burn_compress::core::testing::oracle::{
    burn_path, config_from_json, fixture, nni_pruning, tensors, transpose,
};
use burn_compress::core::{
    dataset::ImageDataset, train::GradientStatistics, train::OptimizerKind, train::TrainConfig,
    train::train_classifier,
};
use burn_compress::zoo::{AnyModel, Arch, ImageClassifier};
use burn_compress::{AlgorithmEntry, prune_with_grads};

pub(crate) fn fixed_batch(x: &str, y: &str) -> ImageDataset {
    let inputs = tensors("inputs.safetensors");
    ImageDataset {
        pixels: inputs[x].data().to_vec(),
        labels: inputs[y].data().iter().map(|&l| l as u8).collect(),
        height: 8,
        width: 8,
    }
}

fn check(model_name: &str, arch: Arch, weights: &str, x: &str, y: &str) {
    let oracle = nni_pruning();
    let spec = &oracle[model_name]["cases"]["taylor"];
    let device = Device::flex().autodiff();
    // Eval mode (BatchNorm on running statistics) while still computing gradients.
    let config = config_from_json(&spec["config_list"]);
    let pruner = AlgorithmEntry::find("taylor")
        .unwrap()
        .build_pruner(&Default::default())
        .unwrap();
    let train = TrainConfig {
        epochs: 1,
        batch_size: 4,
        lr: 0.0,
        optimizer: OptimizerKind::Sgd,
        progress: false,
        ..Default::default()
    };
    let data = fixed_batch(x, y);
    // Eval mode (BatchNorm on running statistics) while still computing gradients.
    let model = AnyModel::load(arch, &fixture(weights), &device).unwrap();
    let index =
        burn_compress::zoo::dispatch!(&model, m => burn_compress::ModuleIndex::from_module(m));
    let targets: Vec<String> = config
        .resolve(&index)
        .unwrap()
        .targets
        .iter()
        .filter(|t| t.is_active())
        .map(|t| t.path.clone())
        .collect();
    let p = AlgorithmEntry::find("taylor")
        .unwrap()
        .build_pruner(&Default::default())
        .unwrap();
    let mut stats = GradientStatistics::new(targets, move |w, g| p.gradient_statistic(w, g));
    let (model, steps) = match model {
        AnyModel::SmallCnn(m) => {
            let (m, r) = train_classifier(
                m.freeze().set_require_grad(true),
                &data,
                |m, x| m.classify(x),
                &train,
                &mut stats,
            );
            (AnyModel::SmallCnn(m), r.steps)
        }
        AnyModel::Mlp(m) => {
            let (m, r) = train_classifier(
                m.freeze().set_require_grad(true),
                &data,
                |m, x| m.classify(x),
                &train,
                &mut stats,
            );
            (AnyModel::Mlp(m), r.steps)
        }
        _ => unreachable!(),
    };
    assert_eq!(steps, 1);
    let grads = stats.mean().unwrap();
    let outcome = burn_compress::zoo::dispatch!(&model, m => prune_with_grads(m, &config, pruner.as_ref(), &grads)).unwrap();
    let prefix = format!("{model_name}/taylor/");
    for (key, expected) in tensors("nni_metrics.safetensors")
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
    {
        let (path, linear) = burn_path(&key[prefix.len()..]);
        let expected = if linear {
            transpose(expected)
        } else {
            expected.clone()
        };
        let ours = &outcome.metrics[&path].values;
        for (a, b) in ours.data().iter().zip(expected.data()) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1e-3),
                "{prefix}{path}: metric {a} vs NNI {b}"
            );
        }
    }
    for (key, expected) in tensors("nni_masks.safetensors")
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
    {
        let (path, linear) = burn_path(&key[prefix.len()..]);
        let expected = if linear {
            transpose(expected)
        } else {
            expected.clone()
        };
        let ours: Vec<f32> = outcome
            .masks
            .get(&path)
            .unwrap()
            .data()
            .iter()
            .map(|&m| m as f32)
            .collect();
        assert_eq!(
            ours,
            expected.data(),
            "{prefix}{path}: mask differs from NNI's"
        );
    }
}

#[test]
fn taylor_matches_nni_on_the_cnn() {
    check(
        "cnn",
        Arch::SmallCnn,
        "cnn_weights.safetensors",
        "cnn_x",
        "cnn_y",
    );
}

#[test]
fn taylor_matches_nni_on_the_mlp() {
    check(
        "mlp",
        Arch::Mlp,
        "mlp_weights.safetensors",
        "mlp_x",
        "mlp_y",
    );
}

#[test]
fn taylor_without_gradients_says_how_to_get_them() {
    let pruner = AlgorithmEntry::find("taylor")
        .unwrap()
        .build_pruner(&Default::default())
        .unwrap();
    let model = burn_compress::zoo::Mlp::new(&Device::flex());
    let config = burn_compress::CompressConfig::from_toml(
        "[[config_list]]\nop_names = ['fc1']\nsparse_ratio = 0.5\n",
    )
    .unwrap();
    let err = burn_compress::prune(&model, &config, pruner.as_ref()).unwrap_err();
    assert!(
        err.to_string()
            .contains("needs a gradient for 'fc1.weight'"),
        "{err}"
    );
    let mut bad = burn_compress::core::toml::Table::new();
    bad.insert("training_steps".into(), 0.into());
    let Err(err) = AlgorithmEntry::find("taylor").unwrap().build_pruner(&bad) else {
        panic!("0 steps")
    };
    assert!(
        err.to_string()
            .contains("'training_steps' must be an integer >= 1"),
        "{err}"
    );
}
