//! MaskSet files, statistics, and hard/soft application.

use burn::module::Module;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Tensor, TensorData};
use compress_core::testing::test_device;
use compress_core::{CompressConfig, Dense, MaskSet, prune};
use compress_zoo::SmallCnn;

use crate::pruners::L2;

fn sample_masks() -> MaskSet {
    let mut masks = MaskSet::default();
    let mut conv = vec![1u8; 8 * 9];
    conv[..18].fill(0); // channels 0 and 1 pruned
    masks.insert("conv1.weight", Dense::new(vec![8, 1, 3, 3], conv));
    masks.insert(
        "conv1.bias",
        Dense::new(vec![8], vec![0, 0, 1, 1, 1, 1, 1, 1]),
    );
    masks.insert(
        "bn1.gamma",
        Dense::new(vec![8], vec![0, 0, 1, 1, 1, 1, 1, 1]),
    );
    masks
}

#[test]
fn masks_round_trip_through_a_file_and_bool_masks_load_too() {
    let masks = sample_masks();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-masks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("m.safetensors");
    masks.save(&file).unwrap();
    assert_eq!(MaskSet::load(&file).unwrap(), masks);

    let data = [1u8, 0, 1];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::BOOL, vec![3], &data).unwrap();
    let bytes = safetensors::serialize(vec![("fc.bias", view)], &None).unwrap();
    let loaded = MaskSet::from_bytes(&bytes, &file).unwrap();
    assert_eq!(loaded.get("fc.bias").unwrap().data(), &[1, 0, 1]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn stats_count_kept_elements_per_target_and_in_total() {
    let stats = sample_masks().stats();
    let conv = stats
        .targets
        .iter()
        .find(|s| s.path == "conv1.weight")
        .unwrap();
    assert_eq!((conv.kept, conv.total), (54, 72));
    assert_eq!(conv.sparsity(), 0.25);
    assert_eq!((stats.kept, stats.total), (54 + 6 + 6, 72 + 8 + 8));
}

#[test]
fn hard_masks_zero_weights_on_a_copy_and_leave_the_model_and_its_batch_norm_alone() {
    let device = test_device().autodiff();
    let model = SmallCnn::new(&device);
    let weight_before = model.conv1.weight.val().into_data();
    let mean_before = model.bn1.running_mean.value().into_data();

    let masked = sample_masks().apply_hard(&model).unwrap();
    let w = Dense::from_tensor(masked.conv1.weight.val(), "conv1.weight").unwrap();
    assert!(w.data()[..18].iter().all(|&x| x == 0.0));
    assert_eq!(
        &w.data()[18..],
        &Dense::from_data(weight_before.clone(), "w").unwrap().data()[18..]
    );

    // A training-mode forward updates the copy's running statistics, not the original's.
    let x = Tensor::<4>::random([4, 1, 8, 8], burn::tensor::Distribution::Default, &device);
    let _ = masked.forward(x);
    assert_ne!(
        masked.bn1.running_mean.value_sync().into_data(),
        mean_before
    );
    assert_eq!(model.bn1.running_mean.value_sync().into_data(), mean_before);
    assert_eq!(model.conv1.weight.val().into_data(), weight_before);
}

#[test]
fn soft_masks_keep_pruned_weights_at_zero_through_training() {
    let device = test_device().autodiff();
    let model = SmallCnn::new(&device);
    let mut model = sample_masks().apply_soft(&model).unwrap();
    let mut optim = SgdConfig::new().init();
    for _ in 0..3 {
        let x = Tensor::<4>::random([4, 1, 8, 8], burn::tensor::Distribution::Default, &device);
        let loss = model.forward(x).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.1, model, grads);
    }
    let effective = Dense::from_tensor(model.conv1.weight.val(), "w").unwrap();
    assert!(effective.data()[..18].iter().all(|&x| x == 0.0));
    assert!(effective.data()[18..].iter().any(|&x| x != 0.0));
    let merged = model.valid().materialize();
    let folded = Dense::from_tensor(merged.conv1.weight.val(), "w").unwrap();
    assert!(folded.data()[..18].iter().all(|&x| x == 0.0));
    assert_eq!(
        Dense::from_tensor(merged.bn1.gamma.val(), "g")
            .unwrap()
            .data()[..2],
        [0.0, 0.0]
    );
}

#[test]
fn pruning_a_model_yields_masks_that_apply_to_it() {
    let device = test_device();
    let mut model = SmallCnn::new(&device);
    // Channel c of conv2 gets magnitude c, so the 8 smallest are channels 0..8.
    let values: Vec<f32> = (0..16)
        .flat_map(|c| std::iter::repeat_n(c as f32, 72))
        .collect();
    model.conv2.weight = model
        .conv2
        .weight
        .map(|t| Tensor::from_data(TensorData::new(values.clone(), [16, 8, 3, 3]), &t.device()));
    let config =
        CompressConfig::from_toml("[[config_list]]\nop_names = ['conv2']\nsparse_ratio = 0.5\n")
            .unwrap();
    let outcome = prune(&model, &config, &L2).unwrap();
    let bias = outcome.masks.get("conv2.bias").unwrap();
    assert_eq!(
        bias.data(),
        &[0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    );
    let metric = &outcome.metrics["conv2.weight"].values;
    assert_eq!(metric.shape(), &[16, 1, 1, 1]);
    assert_eq!(metric.data()[3], (72.0f32 * 9.0).sqrt());
    let pruned = outcome.masks.apply_hard(&model).unwrap();
    let out = pruned.forward(Tensor::zeros([1, 1, 8, 8], &device));
    assert_eq!(out.dims(), [1, 10]);
}
