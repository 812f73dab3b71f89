//! Quantizing the quickstart's LeNet-5 (trained on MNIST-5k): accuracy of PTQ, QAT and LSQ in
//! simulation, the exported Burn-native model's size and its bit-exact round trip.

use burn::prelude::*;
use burn_compress::CompressConfig;
use burn_compress::core::{
    dataset::ImageDataset,
    train::{OptimizerKind, TrainConfig, accuracy},
};
use burn_compress::quant::{AffinePolicy, load_quantized, quantized_params, save_quantized};
use burn_compress::quantize::{QuantizeJob, quantize_classifier};
use burn_compress::zoo::{AnyModel, Arch, ImageClassifier, LeNet5};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn setup() -> (LeNet5, ImageDataset, ImageDataset, f64) {
    let device = Device::flex();
    let (train, test) = ImageDataset::load(root().join("data/mnist5k.safetensors"), 255.0)
        .unwrap()
        .split();
    let model = match AnyModel::load(
        Arch::LeNet5,
        &root().join("data/lenet5-mnist5k.safetensors"),
        &device,
    )
    .unwrap()
    {
        AnyModel::LeNet5(m) => m,
        _ => unreachable!(),
    };
    let dense = accuracy(&model, &test, |m, x| m.classify(x), &device);
    assert!(dense > 0.97, "the bundled weights reach {dense}");
    (model, train, test, dense)
}

/// Save `model` (f32) and `native` (quantized, as `file`) into a fresh temp dir `tag`: the dir,
/// the quantized file, and how many times smaller it is than the f32 one.
fn save_both(
    model: &LeNet5,
    native: &LeNet5,
    tag: &str,
    file: &str,
) -> (std::path::PathBuf, std::path::PathBuf, f64) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f32_file = dir.join("f32.bpk");
    model.clone().save_file(&f32_file).unwrap();
    let q_file = save_quantized(native, dir.join(file)).unwrap();
    let ratio = std::fs::metadata(&f32_file).unwrap().len() as f64
        / std::fs::metadata(&q_file).unwrap().len() as f64;
    (dir, q_file, ratio)
}

fn config(text: &str) -> CompressConfig {
    CompressConfig::from_toml(text).unwrap()
}

fn one_epoch() -> Option<TrainConfig> {
    Some(TrainConfig {
        epochs: 1,
        lr: 1e-4,
        optimizer: OptimizerKind::Adam,
        progress: false,
        ..Default::default()
    })
}

const INT8_ALL: &str = "[[config_list]]\nop_types = ['Conv2d', 'Linear']\n\
    target_names = ['_input_', 'weight', '_output_']\nquant_dtype = 'int8'\nquant_scheme = 'symmetric'\n\
    [config_list.target_settings._input_]\nquant_scheme = 'affine'\n\
    [config_list.target_settings._output_]\nquant_scheme = 'affine'\n";

#[test]
fn ptq_int8_keeps_accuracy_and_exports_a_smaller_model_that_round_trips_exactly() {
    let (model, train, test, dense) = setup();
    let config = CompressConfig::from_file(root().join("configs/lenet5-ptq-int8.toml")).unwrap();
    let q = quantize_classifier(&model, &train, &QuantizeJob::new("ptq", config)).unwrap();
    let acc = q.accuracy(&test).unwrap();
    assert!(dense - acc <= 0.005, "PTQ int8: {dense} -> {acc}");
    assert_eq!(
        q.calibration().len(),
        15,
        "5 layers x (input, weight, output)"
    );

    let native = q.export(AffinePolicy::Error).unwrap();
    let schemes = quantized_params(&native);
    assert_eq!(schemes.len(), 5, "{schemes:?}");
    // The exported weights are the simulated ones exactly (symmetric int8 = Burn Q8S).
    let simulated: Vec<f32> = q.model.fc1.weight.val().into_data().try_to_vec().unwrap();
    let exported: Vec<f32> = native
        .fc1
        .weight
        .val()
        .dequantize()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(simulated, exported);

    let (dir, q8_file, ratio) = save_both(&model, &native, "bc-quant", "q8.bpk");
    // LeNet-5's int8 data is 3.95x smaller; burnpack's 256-byte alignment of each of its 10
    // tensors and its header cost the whole file ~2.4 KB (LeNet-300-100 reaches 3.97x whole
    // file: crates/speedup/tests/suite/quantized.rs).
    assert!(ratio >= 3.8, "int8 file is only {ratio:.2}x smaller");
    let loaded = load_quantized(LeNet5::new(&Device::flex()), &q8_file).unwrap();
    let x = test.batch(0, 32, &Device::flex()).0;
    let before: Vec<f32> = native.classify(x.clone()).into_data().try_to_vec().unwrap();
    let after: Vec<f32> = loaded.classify(x).into_data().try_to_vec().unwrap();
    assert_eq!(before, after, "load -> run is bit-exact");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn qat_and_lsq_int8_after_one_epoch_stay_within_0_3_points() {
    let (model, train, test, dense) = setup();
    for algorithm in ["qat", "lsq"] {
        let mut job = QuantizeJob::new(algorithm, config(INT8_ALL));
        job.train = one_epoch();
        let q = quantize_classifier(&model.clone().train(), &train, &job).unwrap();
        let acc = q.accuracy(&test).unwrap();
        assert!(dense - acc <= 0.003, "{algorithm} int8: {dense} -> {acc}");
    }
}

#[test]
fn lsq_int4_weights_after_one_epoch_stay_within_one_point_and_pack() {
    let (model, train, test, dense) = setup();
    let mut job = QuantizeJob::new(
        "lsq",
        config(
            "[[config_list]]\nop_types = ['Conv2d', 'Linear']\ntarget_names = ['weight']\nquant_dtype = 'int4'\n",
        ),
    );
    job.train = one_epoch();
    let q = quantize_classifier(&model.clone().train(), &train, &job).unwrap();
    let acc = q.accuracy(&test).unwrap();
    assert!(dense - acc <= 0.01, "LSQ int4: {dense} -> {acc}");
    let native = q.export(AffinePolicy::Error).unwrap();
    // The learned scales export exactly: the packed model computes what the simulation did.
    let x = test.batch(0, 64, &Device::flex()).0;
    let sim: Vec<f32> = q
        .forward(x.clone())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let exported: Vec<f32> = native.classify(x).into_data().try_to_vec().unwrap();
    let worst = sim
        .iter()
        .zip(&exported)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "{worst}");
    let (dir, _, ratio) = save_both(&model, &native, "bc-quant4", "q4.bpk");
    // Packed int4 data is 7.8x smaller; the whole file pays burnpack's fixed overhead (above).
    assert!(ratio >= 7.2, "int4 file is only {ratio:.2}x smaller");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn quantization_bad_inputs_are_typed_errors() {
    use burn_compress::zoo::SmallCnn;
    let device = Device::flex();
    let cnn = match AnyModel::load(
        Arch::SmallCnn,
        &burn_compress::core::testing::oracle::fixture("cnn_weights.safetensors"),
        &device,
    )
    .unwrap()
    {
        AnyModel::SmallCnn(m) => m,
        _ => unreachable!(),
    };
    let data = crate::common::fixed_batch("cnn_x", "cnn_y");
    let run = |toml: &str, data: &ImageDataset| {
        quantize_classifier::<SmallCnn>(&cnn, data, &QuantizeJob::new("ptq", config(toml)))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    // fuse_names naming layers the forward does not connect.
    let e = run(
        "[[config_list]]\nop_types = ['Conv2d']\ntarget_names = ['weight']\nquant_dtype = 'int8'\nfuse_names = [['conv1', 'bn2']]\n",
        &data,
    );
    assert!(
        e.contains("cannot fold 'bn2' into 'conv1': they are not adjacent"),
        "{e}"
    );
    // Adjacent pairs fold, and the folded model quantizes.
    let folded = quantize_classifier::<SmallCnn>(
        &cnn,
        &data,
        &QuantizeJob::new(
            "ptq",
            config("[[config_list]]\nop_types = ['Conv2d']\ntarget_names = ['weight']\nquant_dtype = 'int8'\nfuse_names = [['conv1', 'bn1'], ['conv2', 'bn2']]\n"),
        ),
    )
    .unwrap();
    assert_eq!(
        folded
            .model
            .bn1
            .gamma
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
        vec![1.0; 8]
    );
    // Calibrating activations on no data.
    let empty = ImageDataset {
        pixels: vec![],
        labels: vec![],
        height: 8,
        width: 8,
    };
    let e = run(
        "[[config_list]]\nop_types = ['Conv2d']\ntarget_names = ['_input_', 'weight']\nquant_dtype = 'int8'\n",
        &empty,
    );
    assert!(e.contains("calibration with no data"), "{e}");
    // A dtype Burn cannot store.
    let q = quantize_classifier::<SmallCnn>(
        &cnn,
        &data,
        &QuantizeJob::new(
            "ptq",
            config("[[config_list]]\nop_types = ['Conv2d']\ntarget_names = ['weight']\nquant_dtype = 'int3'\n"),
        ),
    )
    .unwrap();
    let e = q.export(AffinePolicy::Error).err().unwrap().to_string();
    assert!(
        e.contains("conv1.weight") && e.contains("int3 has no Burn quantized format"),
        "{e}"
    );
    // An affine weight calibration is refused unless requantizing is asked for.
    let q = quantize_classifier::<SmallCnn>(
        &cnn,
        &data,
        &QuantizeJob::new(
            "ptq",
            config("[[config_list]]\nop_types = ['Conv2d']\ntarget_names = ['weight']\nquant_dtype = 'int8'\nquant_scheme = 'affine'\n"),
        ),
    )
    .unwrap();
    assert!(q.export(AffinePolicy::Error).is_err());
    assert!(q.export(AffinePolicy::Requantize).is_ok());
    // A calibration of another model does not load.
    let lenet = setup().0;
    let lenet_q = quantize_classifier(
        &lenet,
        &ImageDataset::load(root().join("data/mnist5k.safetensors"), 255.0)
            .unwrap()
            .split()
            .0,
        &QuantizeJob::new(
            "ptq",
            CompressConfig::from_file(root().join("configs/lenet5-ptq-int8.toml")).unwrap(),
        ),
    )
    .unwrap();
    let e = q
        .sim
        .load_calibration(&cnn, &lenet_q.calibration())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("calibration config"), "{e}");
    // A pruner is not a quantizer.
    let e = quantize_classifier::<SmallCnn>(
        &cnn,
        &data,
        &QuantizeJob::new(
            "l1-norm",
            config("[[config_list]]\nop_types = ['Conv2d']\nquant_dtype = 'int8'\n"),
        ),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("l1-norm") && e.contains("quantizer"), "{e}");
}

#[test]
fn ptq_bias_correction_removes_most_of_the_mean_output_error() {
    let (model, train, _, _) = setup();
    let toml = "[algorithm]\nname = 'ptq'\n[[config_list]]\nop_types = ['Conv2d', 'Linear']\n\
                target_names = ['weight']\nquant_dtype = 'int4'\n";
    let x = train.batch(0, 256, &Device::flex()).0;
    let float: Vec<f32> = model.classify(x.clone()).into_data().try_to_vec().unwrap();
    // Mean over the batch of (float - quantized) logits, averaged in absolute value over classes.
    let mean_error = |bias_correction: bool| {
        let mut job = QuantizeJob::new("ptq", config(toml));
        job.options
            .insert("is_bias_correction".into(), bias_correction.into());
        job.calib_batches = 4;
        let q = quantize_classifier(&model, &train, &job).unwrap();
        let quant: Vec<f32> = q
            .forward(x.clone())
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let mut per_class = [0f64; 10];
        for (i, (f, q)) in float.iter().zip(&quant).enumerate() {
            per_class[i % 10] += f64::from(f - q) / 256.0;
        }
        per_class.iter().map(|e| e.abs()).sum::<f64>() / 10.0
    };
    let (without, with) = (mean_error(false), mean_error(true));
    assert!(with < without * 0.5, "mean logit error {without} -> {with}");
    let Err(e) = burn_compress::AlgorithmEntry::find("ptq")
        .unwrap()
        .build_quantizer(&"is_bias_correction = 'yes'".parse().unwrap())
    else {
        panic!("a string is not a bool")
    };
    assert!(
        e.to_string()
            .contains("'is_bias_correction' must be true or false"),
        "{e}"
    );
}
