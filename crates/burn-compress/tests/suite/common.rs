//! Helpers shared by the pruner tests: pruners by registry name, the NNI oracle's models and
//! fixed batch, and NNI's tensors of one case in Burn's names and layout.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::prelude::*;
use burn_compress::core::dataset::ImageDataset;
use burn_compress::core::registry::MetricMap;
use burn_compress::core::testing::oracle::{burn_path, fixture, tensors, transpose};
use burn_compress::zoo::{AnyModel, Arch, Mlp, SmallCnn};
use burn_compress::{AlgorithmEntry, Dense, MaskSet, Pruner};

/// The pruner registered as `name`, built with `options` (TOML).
pub(crate) fn pruner(name: &str, options: &str) -> Arc<dyn Pruner> {
    let table: burn_compress::core::toml::Table = options.parse().unwrap();
    Arc::from(
        AlgorithmEntry::find(name)
            .unwrap()
            .build_pruner(&table)
            .unwrap(),
    )
}

/// The error building the pruner `name` with `options` (TOML) gives; panics if it builds.
pub(crate) fn pruner_error(name: &str, options: &str) -> String {
    let table: burn_compress::core::toml::Table = options.parse().unwrap();
    match AlgorithmEntry::find(name).unwrap().build_pruner(&table) {
        Ok(_) => panic!("'{name}' accepted {options:?}"),
        Err(e) => e.to_string(),
    }
}

/// The oracle's small CNN with its weights.
pub(crate) fn cnn(device: &Device) -> SmallCnn {
    match AnyModel::load(Arch::SmallCnn, &fixture("cnn_weights.safetensors"), device).unwrap() {
        AnyModel::SmallCnn(m) => m,
        _ => unreachable!(),
    }
}

/// The oracle's MLP with its weights.
pub(crate) fn mlp(device: &Device) -> Mlp {
    match AnyModel::load(Arch::Mlp, &fixture("mlp_weights.safetensors"), device).unwrap() {
        AnyModel::Mlp(m) => m,
        _ => unreachable!(),
    }
}

/// The oracle's fixed batch: images `x` and labels `y` of `inputs.safetensors`.
pub(crate) fn fixed_batch(x: &str, y: &str) -> ImageDataset {
    let inputs = tensors("inputs.safetensors");
    ImageDataset {
        pixels: inputs[x].data().to_vec(),
        labels: inputs[y].data().iter().map(|&l| l as u8).collect(),
        height: 8,
        width: 8,
    }
}

/// NNI's tensors in the fixture `file` whose keys start with `prefix` (`model/case/`), each
/// under its Burn parameter path and in Burn's layout (Linear weights transposed).
pub(crate) fn nni_case(file: &str, prefix: &str) -> BTreeMap<String, Dense<f32>> {
    tensors(file)
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(key, expected)| {
            let (path, linear) = burn_path(&key[prefix.len()..]);
            let expected = if linear {
                transpose(expected)
            } else {
                expected.clone()
            };
            (path, expected)
        })
        .collect()
}

/// A mask's 0/1 values as floats, as NNI stores them.
pub(crate) fn mask_values(mask: &Dense<u8>) -> Vec<f32> {
    mask.data().iter().map(|&m| m as f32).collect()
}

/// Asserts `metrics` hold NNI's metric of case `prefix` for every target NNI scored, within
/// `1e-5 * max(|NNI|, floor)`; returns how many were compared.
pub(crate) fn assert_nni_metrics(metrics: &MetricMap, prefix: &str, floor: f32) -> usize {
    let expected = nni_case("nni_metrics.safetensors", prefix);
    for (path, expected) in &expected {
        let ours = &metrics
            .get(path)
            .unwrap_or_else(|| panic!("{prefix}: no metric for {path}"))
            .values;
        assert_eq!(ours.shape(), expected.shape(), "{prefix}{path}");
        for (a, b) in ours.data().iter().zip(expected.data()) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(floor),
                "{prefix}{path}: metric {a} vs NNI {b}"
            );
        }
    }
    expected.len()
}

/// Asserts `masks` hold NNI's mask of case `prefix` exactly for every parameter NNI masked;
/// returns how many were compared.
pub(crate) fn assert_nni_masks(masks: &MaskSet, prefix: &str) -> usize {
    let expected = nni_case("nni_masks.safetensors", prefix);
    for (path, expected) in &expected {
        let ours = masks
            .get(path)
            .unwrap_or_else(|| panic!("{prefix}: no mask for {path}"));
        assert_eq!(
            mask_values(ours),
            expected.data(),
            "{prefix}{path}: mask differs from NNI's"
        );
    }
    expected.len()
}
