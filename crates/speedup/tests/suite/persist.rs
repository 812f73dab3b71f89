//! Saving a pruned model as weights + plan, and loading it into a fresh template, bit-exactly.

use burn::prelude::*;
use compress_core::testing::oracle::module_tensors;
use compress_speedup::{load_pruned, save_pruned};
use compress_zoo::SmallCnn;

use crate::common::{nni_masks, speedup};

#[test]
fn a_pruned_model_round_trips_through_weights_and_plan_bit_exactly() {
    let device = Device::flex();
    let model = SmallCnn::new(&device);
    let (small, report, _) = speedup(&model, &nni_masks("cnn", "l1"), |m, d| {
        m.forward(Tensor::zeros([1, 1, 8, 8], d))
    })
    .unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-persist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (weights, plan) = save_pruned(&small, &report.plan, dir.join("cnn")).unwrap();
    assert!(weights.ends_with("cnn.bpk") && plan.ends_with("cnn.plan.json"));
    // A fresh, unpruned template with other random weights.
    let loaded = load_pruned(SmallCnn::new(&device), dir.join("cnn")).unwrap();
    assert_eq!(module_tensors(&loaded), module_tensors(&small));
    let x = Tensor::<4>::random([2, 1, 8, 8], burn::tensor::Distribution::Default, &device);
    assert_eq!(
        loaded.forward(x.clone()).into_data(),
        small.forward(x).into_data()
    );
    std::fs::remove_dir_all(dir).unwrap();
}
