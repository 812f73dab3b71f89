//! Allocation parity with real NNI 3.0: feed the exact metrics NNI ranked through our allocator
//! with the same config and get NNI's masks, biases included.

use std::collections::BTreeMap;

use compress_core::testing::test_device;
use compress_core::{
    Dense, Granularity, ModuleIndex,
    allocate::{Metric, allocate},
    layers::ParamRole,
};
use compress_zoo::{Mlp, SmallCnn};

use compress_core::testing::oracle::{
    burn_path, config_from_json, nni_pruning, tensors, transpose,
};

fn run_case(model: &str, case: &str, spec: &serde_json::Value) -> usize {
    let device = test_device();
    let index = match model {
        "cnn" => ModuleIndex::from_module(&SmallCnn::new(&device)),
        _ => ModuleIndex::from_module(&Mlp::new(&device)),
    };
    let config = config_from_json(&spec["config_list"]);
    let mut resolved = config.resolve(&index).unwrap();
    let pruner = spec["pruner"].as_str().unwrap();
    if pruner == "SlimPruner" {
        // Slim multiplies only the weight by its factor: NNI leaves the bias unmasked.
        for t in &mut resolved.targets {
            if t.role == Some(ParamRole::Bias) {
                t.setting.align = None;
            }
        }
    }
    let default = if pruner == "LevelPruner" {
        Granularity::Fine
    } else {
        Granularity::OutChannel
    };

    let nni_metrics = tensors("nni_metrics.safetensors");
    let prefix = format!("{model}/{case}/");
    let mut metrics = BTreeMap::new();
    for (key, value) in nni_metrics.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        let (path, linear) = burn_path(&key[prefix.len()..]);
        let target = resolved
            .target(&path)
            .unwrap_or_else(|| panic!("{case}: no target {path}"));
        let values = if linear {
            transpose(value)
        } else {
            value.clone()
        };
        let scaling = default
            .scaling(target.shape.len(), target.out_axis, target.in_axis, &path)
            .unwrap();
        metrics.insert(path, Metric { scaling, values });
    }
    let active = resolved.targets.iter().filter(|t| t.is_active()).count();
    assert_eq!(
        active,
        metrics.len(),
        "{case}: every active target has an NNI metric"
    );

    let masks = allocate(&resolved.targets, &metrics).unwrap();
    let nni_masks = tensors("nni_masks.safetensors");
    let mut compared = 0;
    for (key, expected) in nni_masks.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        let (path, linear) = burn_path(&key[prefix.len()..]);
        let expected = if linear {
            transpose(expected)
        } else {
            expected.clone()
        };
        let ours: Dense<f32> = match masks.get(&path) {
            Some(m) => Dense::new(
                m.shape().to_vec(),
                m.data().iter().map(|&x| x as f32).collect(),
            ),
            // No mask means nothing pruned.
            None => Dense::full(expected.shape().to_vec(), 1.0),
        };
        assert_eq!(
            ours, expected,
            "{model}/{case}: mask of {path} differs from NNI's"
        );
        compared += 1;
    }
    for (path, _) in masks.iter() {
        let nni_name = path.replace("gamma", "weight").replace("beta", "bias");
        assert!(
            nni_masks.contains_key(&format!("{prefix}{nni_name}")),
            "{model}/{case}: we masked {path}, NNI did not"
        );
    }
    compared
}

#[test]
fn every_oracle_case_gives_nnis_masks_from_nnis_metrics() {
    let configs = nni_pruning();
    let mut cases = 0;
    let mut masks = 0;
    for model in ["cnn", "mlp"] {
        for (case, spec) in configs[model]["cases"].as_object().unwrap() {
            masks += run_case(model, case, spec);
            cases += 1;
        }
    }
    assert_eq!(cases, 17);
    assert!(masks >= 80, "compared {masks} masks");
}
