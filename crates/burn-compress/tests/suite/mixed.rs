//! Mixed-precision quantization of the bundled LeNet-5 (trained on MNIST-5k): per-layer widths
//! from sensitivity under a file-size budget, the real file's size, accuracy, the exported
//! model's round trip, and the errors.

use std::collections::BTreeMap;

use burn::prelude::*;
use burn_compress::CompressConfig;
use burn_compress::core::{
    dataset::ImageDataset,
    train::{OptimizerKind, TrainConfig, accuracy},
};
use burn_compress::quant::{
    AffinePolicy, MixedPrecision, QuantBits, QuantError, QuantLevel, SizeBudget, WeightQuant,
    fake_quant_dense, load_quantized, mixed_config, quantize_weights, quantized_params,
    save_quantized, weight_sensitivity,
};
use burn_compress::quantize::{QuantizeJob, quantize_classifier};
use burn_compress::zoo::{AnyModel, Arch, ImageClassifier, LeNet5};
use burn_compress::{Dense, ModuleIndex};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn setup() -> (LeNet5, ImageDataset, ImageDataset) {
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
    (model, train, test)
}

fn int8_config() -> CompressConfig {
    CompressConfig::from_file(root().join("configs/lenet5-ptq-int8.toml")).unwrap()
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn logits(model: &LeNet5, x: Tensor<4>) -> Vec<f32> {
    model.classify(x).into_data().try_to_vec().unwrap()
}

const LAYERS: [&str; 5] = ["conv1", "conv2", "fc1", "fc2", "fc3"];

#[test]
fn lenet5_mixed_precision_is_5x_smaller_than_f32_within_half_a_point() {
    let (model, train, test) = setup();
    let device = Device::flex();
    let dense = accuracy(&model, &test, |m, x| m.classify(x), &device);
    // The bundled int8 config (weights symmetric per tensor, activations affine int8), QAT for
    // one epoch at the chosen widths (PTQ alone: 96.70%, 0.4 points, see the README).
    let mut job = QuantizeJob::new("qat", int8_config());
    job.mixed = Some(MixedPrecision::new(SizeBudget::parse("5x").unwrap()));
    job.train = Some(TrainConfig {
        epochs: 1,
        lr: 1e-4,
        optimizer: OptimizerKind::Adam,
        progress: false,
        ..Default::default()
    });
    let q = quantize_classifier(&model.clone().train(), &train, &job).unwrap();
    let plan = q.mixed.clone().unwrap();
    let bits: Vec<u32> = LAYERS.iter().map(|l| plan.bits(l).unwrap()).collect();
    eprintln!("mixed bits {LAYERS:?} = {bits:?}, plan {plan:#?}");
    // fc1 holds 48000 of LeNet-5's 61470 weights: the only way to 5x is to narrow it.
    assert!(plan.bits("fc1").unwrap() < 8, "{bits:?}");
    assert!(bits.iter().all(|b| [8, 4, 2].contains(b)), "{bits:?}");

    // Simulated accuracy (weights at their widths, activations int8) within 0.5 points.
    let simulated = q.accuracy(&test).unwrap();
    eprintln!("accuracy: f32 {dense:.4}, mixed (simulated) {simulated:.4}");
    assert!(
        dense - simulated <= 0.005,
        "{dense} -> {simulated} with {bits:?}"
    );

    // The exported model stores each weight at its width, packed.
    let native = q.export(AffinePolicy::Error).unwrap();
    let schemes = quantized_params(&native);
    for (layer, b) in LAYERS.iter().zip(&bits) {
        let want = QuantBits::from_nni(&format!("int{b}")).unwrap().value();
        assert_eq!(schemes[&format!("{layer}.weight")].value, want, "{layer}");
    }

    // The real files: at least 5x smaller than f32's, exactly the size the plan measured.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-mixed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f32_file = dir.join("f32.bpk");
    model.clone().save_file(&f32_file).unwrap();
    let q_file = save_quantized(&native, dir.join("mixed.bpk")).unwrap();
    let (f32_bytes, q_bytes) = (file_len(&f32_file), file_len(&q_file));
    let ratio = f32_bytes as f64 / q_bytes as f64;
    eprintln!("files: f32 {f32_bytes} B, mixed {q_bytes} B, {ratio:.3}x smaller");
    assert_eq!(plan.f32_bytes, f32_bytes);
    assert_eq!(plan.file_bytes, q_bytes);
    assert_eq!(plan.budget_bytes, f32_bytes / 5);
    assert!(q_bytes <= plan.budget_bytes && ratio >= 5.0, "{ratio:.3}x");

    // The file reloads into a fresh template and computes what the exported model does, which
    // is QuantSim's weight simulation (activations float in both).
    let loaded = load_quantized(LeNet5::new(&device), &q_file).unwrap();
    let x = test.batch(0, 64, &device).0;
    let reloaded = logits(&loaded, x.clone());
    assert_eq!(
        reloaded,
        logits(&native, x.clone()),
        "load -> run is bit-exact"
    );
    let simulated_weights = logits(&q.model, x.clone());
    let worst = reloaded
        .iter()
        .zip(&simulated_weights)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "reloaded vs QuantSim weights: {worst}");
    // With QuantSim's int8 activations too, the predictions agree on (almost) every image.
    let full_sim: Vec<f32> = q.forward(x).unwrap().into_data().try_to_vec().unwrap();
    let argmax = |v: &[f32]| -> Vec<usize> {
        v.chunks(10)
            .map(|r| (0..10).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
            .collect()
    };
    let agree = argmax(&reloaded)
        .iter()
        .zip(argmax(&full_sim))
        .filter(|(a, b)| **a == *b)
        .count();
    assert!(agree >= 63, "{agree}/64 predictions agree");
    let exported_acc = accuracy(&loaded, &test, |m, x| m.classify(x), &device);
    eprintln!("reloaded file accuracy {exported_acc:.4}");
    assert!(dense - exported_acc <= 0.005, "{dense} -> {exported_acc}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sensitivity_is_the_relative_output_mse_of_one_quantized_weight() {
    let (model, train, _) = setup();
    let device = Device::flex();
    let batches = vec![
        train.batch(0, 64, &device).0,
        train.batch(64, 128, &device).0,
    ];
    let sens = weight_sensitivity(&model, &int8_config(), &[8, 4, 2], &batches, |m, x| {
        m.classify(x)
    })
    .unwrap();
    let paths: Vec<&str> = sens.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "conv1.weight",
            "conv2.weight",
            "fc1.weight",
            "fc2.weight",
            "fc3.weight"
        ]
    );
    for s in &sens {
        // Fewer bits, more error; every width strictly.
        assert!(
            0.0 < s.loss[&8] && s.loss[&8] < s.loss[&4] && s.loss[&4] < s.loss[&2],
            "{s:?}"
        );
    }
    // Bytes in the file: 8-bit values one byte each, 4-bit 8 and 2-bit 16 to a u32 word on the
    // dimension that wastes least, plus one f32 scale (per tensor).
    let fc1 = &sens[2];
    assert_eq!(fc1.numel, 48_000);
    assert_eq!(
        fc1.bytes,
        BTreeMap::from([(8, 48_004), (4, 24_004), (2, 12_004)])
    );
    // conv1 [6, 1, 5, 5]: 4 bits pack 6 -> 1 word on the first axis (25 words, not 6*1*5*1=30).
    assert_eq!(sens[0].bytes[&4], 25 * 4 + 4);

    // fc3 at 4 bits, recomputed by hand: max-abs symmetric per-tensor int4, only that weight.
    let w = Dense::from_tensor(model.fc3.weight.val(), "fc3.weight").unwrap();
    let max = w.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = Dense::new(vec![], vec![max / 7.0]);
    let zero = Dense::new(vec![], vec![0.0]);
    let int4 = burn_compress::core::config::QuantDtype::parse("int4").unwrap();
    let q = fake_quant_dense(&w, &scale, &zero, int4).unwrap();
    let mut perturbed = model.clone();
    perturbed.fc3.weight = perturbed.fc3.weight.map(|t| {
        Tensor::<1>::from_data(TensorData::new(q.data().to_vec(), [q.numel()]), &t.device())
            .reshape(t.shape())
    });
    let (mut err, mut norm) = (0f64, 0f64);
    for x in &batches {
        for (a, b) in logits(&perturbed, x.clone())
            .iter()
            .zip(logits(&model, x.clone()))
        {
            err += (f64::from(*a) - f64::from(b)).powi(2);
            norm += f64::from(b).powi(2);
        }
    }
    let expected = err / norm;
    assert!(
        (sens[4].loss[&4] - expected).abs() <= 1e-9 * expected,
        "{} vs {expected}",
        sens[4].loss[&4]
    );
}

#[test]
fn budgets_choose_more_bits_when_they_allow_and_the_config_keeps_everything_else() {
    let (model, train, _) = setup();
    let run = |budget: &str| {
        let mut job = QuantizeJob::new("ptq", int8_config());
        job.calib_batches = 2;
        job.mixed = Some(MixedPrecision::new(SizeBudget::parse(budget).unwrap()));
        quantize_classifier(&model, &train, &job)
            .map(|q| q.mixed.unwrap())
            .map_err(|e| e.to_string())
    };
    // 3x: uniform int8 (3.84x) already fits, and 8 bits is every layer's least loss.
    let loose = run("3x").unwrap();
    assert_eq!(
        loose.layers.iter().map(|l| l.bits).collect::<Vec<_>>(),
        [8; 5]
    );
    // A budget in bytes is met by the exact file size, and tighter budgets never add bits.
    let mut previous = loose.file_bytes;
    for budget in [40_000u64, 30_000, 22_000] {
        let plan = run(&budget.to_string()).unwrap();
        assert_eq!(plan.budget_bytes, budget);
        assert!(plan.file_bytes <= budget, "{plan:?}");
        assert!(plan.file_bytes <= previous, "{budget}: {plan:?}");
        previous = plan.file_bytes;
    }

    // 20x: every weight at 2 bits is still too big; the error names the closest size, which is
    // that of the all-2-bit file.
    let e = run("20x").unwrap_err();
    let index = ModuleIndex::from_module(&model);
    let all2: BTreeMap<String, WeightQuant> = LAYERS
        .iter()
        .map(|l| {
            (
                format!("{l}.weight"),
                WeightQuant::new(QuantBits::Q2S, QuantLevel::PerTensor),
            )
        })
        .collect();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-mixed-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let smallest = save_quantized(
        &quantize_weights(&model, &all2, AffinePolicy::Error).unwrap(),
        dir.join("all2.bpk"),
    )
    .unwrap();
    let closest = file_len(&smallest);
    let f32_file = dir.join("f32.bpk");
    model.clone().save_file(&f32_file).unwrap();
    let f32_bytes = file_len(&f32_file);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        e,
        format!(
            "the size budget of {} bytes cannot be met: with every quantized weight at 2 bits \
             the file is {closest} bytes ({:.2}x smaller than the f32 file of {f32_bytes} \
             bytes), the closest achievable",
            f32_bytes / 20,
            f32_bytes as f64 / closest as f64
        )
    );

    // The rewritten config resolves to the same targets and settings but the weights' widths.
    let config = int8_config();
    let bits = BTreeMap::from([("fc1.weight", 4u32), ("conv1.weight", 2)]);
    let mixed = mixed_config(&config, &index, &bits).unwrap();
    let before = config.resolve(&index).unwrap();
    let after = mixed.resolve(&index).unwrap();
    assert!(after.warnings.is_empty(), "{:?}", after.warnings);
    assert_eq!(before.targets.len(), 15);
    assert_eq!(after.targets.len(), 15);
    for t in &before.targets {
        let a = after.target(&t.path).unwrap();
        let mut want = t.setting.clone();
        if let Some(b) = bits.get(t.path.as_str()) {
            want.quant_dtype = burn_compress::core::config::QuantDtype::parse(&format!("int{b}"));
        }
        assert_eq!(a.setting, want, "{}", t.path);
    }
    let e = mixed_config(&config, &index, &BTreeMap::from([("fc1.bias", 4u32)]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid bits 'fc1.bias': not a quantization target of the config"
    );
}

#[test]
fn mixed_precision_bad_requests_are_typed_errors() {
    let (model, train, _) = setup();
    // A config that quantizes no weight leaves nothing to choose.
    let acts_only = CompressConfig::from_toml(
        "[[config_list]]\nop_types = ['Conv2d', 'Linear']\ntarget_names = ['_input_']\nquant_dtype = 'int8'\n",
    )
    .unwrap();
    let mut job = QuantizeJob::new("ptq", acts_only);
    job.mixed = Some(MixedPrecision::new(SizeBudget::TimesSmaller(5.0)));
    let e = quantize_classifier(&model, &train, &job).err().unwrap();
    assert!(
        matches!(e, QuantError::InvalidMixedPrecision { key: "config", .. }),
        "{e}"
    );
    // No calibration batch: no sensitivity.
    let mut job = QuantizeJob::new("ptq", int8_config());
    job.calib_batches = 0;
    job.mixed = Some(MixedPrecision::new(SizeBudget::TimesSmaller(5.0)));
    let e = quantize_classifier(&model, &train, &job)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "invalid calib '0': sensitivity needs at least one calibration batch"
    );
    // Budgets the parser refuses name the key and the value.
    let e = SizeBudget::parse("5 times").unwrap_err().to_string();
    assert!(e.starts_with("invalid size_budget '5 times'"), "{e}");
}

#[test]
fn recipe_quantize_steps_take_bits_auto_with_a_size_budget() {
    use burn_compress::core::toml::Table;
    use burn_compress::recipe::Recipe;
    std::env::set_current_dir(root()).unwrap();
    let head = "[model]\narch = 'lenet5'\nweights = 'data/lenet5-mnist5k.safetensors'\n\
                [data]\npath = 'data/mnist5k.safetensors'\n[[step]]\nkind = 'quantize'\n\
                config = 'configs/lenet5-ptq-int8.toml'\n";
    let parse = |extra: &str| {
        let table: Table = format!("{head}{extra}").parse().unwrap();
        Recipe::from_table(&table).map_err(|e| e.to_string())
    };
    let recipe = parse("bits = 'auto'\nsize_budget = '5x'\n").unwrap();
    let burn_compress::recipe::Step::Quantize(q) = &recipe.steps[0] else {
        panic!("{:?}", recipe.steps[0]);
    };
    assert_eq!(
        q.job.mixed,
        Some(MixedPrecision::new(SizeBudget::TimesSmaller(5.0)))
    );
    for (extra, needle) in [
        ("bits = 'auto'\n", "'bits = \"auto\"' needs a 'size_budget'"),
        (
            "size_budget = '5x'\n",
            "'size_budget' needs 'bits = \"auto\"'",
        ),
        (
            "bits = 'mixed'\nsize_budget = '5x'\n",
            "'bits' must be \"config\" or \"auto\", found \"mixed\"",
        ),
        (
            "bits = 'auto'\nsize_budget = '5y'\n",
            "invalid size_budget '5y': unknown unit",
        ),
    ] {
        let e = parse(extra).unwrap_err();
        assert!(e.contains(needle), "{extra}: {e}");
    }
    // A training step's quantize block simulates during training: it has no file to size.
    let table: Table = "[model]\narch = 'lenet5'\n[data]\npath = 'data/mnist5k.safetensors'\n\
                        [[step]]\nkind = 'train'\n[step.quantize]\n\
                        config = 'configs/lenet5-ptq-int8.toml'\nbits = 'auto'\nsize_budget = '5x'\n"
        .parse()
        .unwrap();
    let e = Recipe::from_table(&table).unwrap_err().to_string();
    assert!(
        e.contains("[quantize]") && e.contains("belongs to a quantize step"),
        "{e}"
    );
}
