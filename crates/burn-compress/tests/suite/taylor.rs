//! Taylor importance with parity to NNI 3.0 (one step on the fixed batch, eval mode, SGD lr 0):
//! metrics within 1e-5, masks exact.

use burn::prelude::*;
use burn_compress::core::testing::oracle::{config_from_json, nni_pruning};
use burn_compress::core::train::{
    GradientStatistics, OptimizerKind, TrainConfig, train_classifier,
};
use burn_compress::zoo::ImageClassifier;
use burn_compress::{ModuleIndex, prune_with_grads};

use crate::common::{
    assert_nni_masks, assert_nni_metrics, cnn, fixed_batch, mlp, pruner, pruner_error,
};

fn check<M: Module + ImageClassifier>(model_name: &str, load: fn(&Device) -> M, x: &str, y: &str) {
    let oracle = nni_pruning();
    let spec = &oracle[model_name]["cases"]["taylor"];
    let device = Device::flex().autodiff();
    let config = config_from_json(&spec["config_list"]);
    let pruner = pruner("taylor", "");
    let train = TrainConfig {
        epochs: 1,
        batch_size: 4,
        lr: 0.0,
        optimizer: OptimizerKind::Sgd,
        progress: false,
        ..Default::default()
    };
    let data = fixed_batch(x, y);
    let model = load(&device);
    let targets = config
        .resolve(&ModuleIndex::from_module(&model))
        .unwrap()
        .active_paths();
    let p = pruner.clone();
    let mut stats = GradientStatistics::new(targets, move |w, g| p.gradient_statistic(w, g));
    // Eval mode (BatchNorm on running statistics) while still computing gradients.
    let (model, report) = train_classifier(
        model.freeze().set_require_grad(true),
        &data,
        |m, x| m.classify(x),
        &train,
        &mut stats,
    );
    assert_eq!(report.steps, 1);
    let grads = stats.mean().unwrap();
    let outcome = prune_with_grads(&model, &config, pruner.as_ref(), &grads).unwrap();
    let prefix = format!("{model_name}/taylor/");
    assert_nni_metrics(&outcome.metrics, &prefix, 1e-3);
    assert_nni_masks(&outcome.masks, &prefix);
}

#[test]
fn taylor_matches_nni_on_the_cnn() {
    check("cnn", cnn, "cnn_x", "cnn_y");
}

#[test]
fn taylor_matches_nni_on_the_mlp() {
    check("mlp", mlp, "mlp_x", "mlp_y");
}

#[test]
fn taylor_without_gradients_says_how_to_get_them() {
    let pruner = pruner("taylor", "");
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
    let err = pruner_error("taylor", "training_steps = 0");
    assert!(
        err.contains("'training_steps' must be an integer >= 1"),
        "{err}"
    );
}
