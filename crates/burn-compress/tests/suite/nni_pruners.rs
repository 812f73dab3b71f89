//! Parity with real NNI 3.0: zoo model + oracle weights + config + pruner by registry name give
//! NNI's masks exactly and NNI's metrics within 1e-5 (relative).

use burn::prelude::*;
use burn_compress::core::testing::oracle::{config_from_json, fixture, nni_pruning, tensors};
use burn_compress::prune;
use burn_compress::zoo::{AnyModel, Arch, dispatch};

use crate::common::{assert_nni_masks, assert_nni_metrics, pruner};

const CASES: &[(&str, &str)] = &[
    ("cnn", "level"),
    ("cnn", "l1"),
    ("cnn", "l2"),
    ("cnn", "fpgm"),
    ("cnn", "l1_exclude"),
    ("cnn", "l1_opnames"),
    ("cnn", "l1_global"),
    ("cnn", "l1_global_max"),
    ("cnn", "l1_dependency"),
    ("mlp", "level"),
    ("mlp", "l1"),
    ("mlp", "l2"),
    ("mlp", "fpgm"),
    ("mlp", "l1_exclude"),
];

fn registry_name(nni_pruner: &str) -> &'static str {
    match nni_pruner {
        "LevelPruner" => "level",
        "L1NormPruner" => "l1-norm",
        "L2NormPruner" => "l2-norm",
        "FPGMPruner" => "fpgm",
        other => panic!("no one-shot pruner for {other}"),
    }
}

fn check_case(model_name: &str, case: &str) {
    let oracle = nni_pruning();
    let spec = &oracle[model_name]["cases"][case];
    let (arch, weights) = match model_name {
        "cnn" => (Arch::SmallCnn, "cnn_weights.safetensors"),
        _ => (Arch::Mlp, "mlp_weights.safetensors"),
    };
    let model =
        AnyModel::load(arch, &fixture(weights), &Device::flex()).expect("oracle weights load");
    let config = config_from_json(&spec["config_list"]);
    let pruner = pruner(registry_name(spec["pruner"].as_str().unwrap()), "");
    let outcome = dispatch!(&model, m => prune(m, &config, pruner.as_ref())).unwrap();

    let prefix = format!("{model_name}/{case}/");
    assert_eq!(
        assert_nni_metrics(&outcome.metrics, &prefix, 1.0),
        outcome.metrics.len(),
        "{prefix}: we computed metrics NNI did not"
    );
    assert_eq!(
        assert_nni_masks(&outcome.masks, &prefix),
        outcome.masks.len(),
        "{prefix}: we masked parameters NNI did not"
    );
}

#[test]
fn one_shot_pruners_reproduce_nni_on_every_oracle_case() {
    for (model, case) in CASES {
        check_case(model, case);
    }
}

#[test]
fn zoo_models_load_the_oracle_weights_and_compute_nnis_logits() {
    let oracle = nni_pruning();
    let inputs = tensors("inputs.safetensors");
    let device = Device::flex();
    for (model_name, arch, weights, input) in [
        ("cnn", Arch::SmallCnn, "cnn_weights.safetensors", "cnn_x"),
        ("mlp", Arch::Mlp, "mlp_weights.safetensors", "mlp_x"),
    ] {
        let model = AnyModel::load(arch, &fixture(weights), &device).unwrap();
        let x = &inputs[input];
        let x = Tensor::<1>::from_data(TensorData::new(x.data().to_vec(), [x.numel()]), &device)
            .reshape(arch.input_shape(4));
        // On a device without autodiff BatchNorm uses its running statistics (eval mode).
        let ours = model.forward(x).into_data().try_into_vec::<f32>().unwrap();
        let expected: Vec<f32> = oracle[model_name]["cases"]["l1"]["output_original"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
            })
            .collect();
        for (a, b) in ours.iter().zip(&expected) {
            assert!(
                (a - b).abs() < 1e-5,
                "{model_name}: logit {a} vs PyTorch {b}"
            );
        }
    }
}
