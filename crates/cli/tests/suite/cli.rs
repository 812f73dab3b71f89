//! The `burn-compress` binary: output and error messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn_compress::MaskSet;

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_burn-compress"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the binary runs")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the command failed with exit code 2 and said `needle` on stderr.
pub(crate) fn refused(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    assert!(stderr(out).contains(needle), "{}", stderr(out));
}

fn temp(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The bundled LeNet-5 weights (PyTorch's, trained on MNIST-5k).
const LENET5: &str = "data/lenet5-mnist5k.safetensors";
/// The bundled L1-norm config for LeNet-5.
const LENET5_L1: &str = "configs/lenet5-l1.toml";

/// `burn-compress COMMAND --arch ARCH --weights WEIGHTS`, then `rest`.
fn run_on(command: &str, arch: &str, weights: &str, rest: &[&str]) -> Output {
    run(&[&[command, "--arch", arch, "--weights", weights], rest].concat())
}

/// `burn-compress prune` of `arch` with `config`, masks to `out`, then `rest`.
fn prune(arch: &str, weights: &str, config: &str, out: &str, rest: &[&str]) -> Output {
    let args = [&["--config", config, "--out", out], rest].concat();
    run_on("prune", arch, weights, &args)
}

/// `burn-compress speedup` of `arch` with `masks` at `input_shape`, model to `out`, then `rest`.
fn speedup(
    arch: &str,
    weights: &str,
    masks: &Path,
    input_shape: &str,
    out: &Path,
    rest: &[&str],
) -> Output {
    let (masks, out) = (masks.to_str().unwrap(), out.to_str().unwrap());
    let args = [
        &["--masks", masks, "--input-shape", input_shape, "--out", out],
        rest,
    ]
    .concat();
    run_on("speedup", arch, weights, &args)
}

/// `burn-compress quantize` of `arch` with the bundled int8 PTQ config, model to `out`, then
/// `rest`.
fn quantize(arch: &str, weights: &str, out: &Path, rest: &[&str]) -> Output {
    let config = "configs/lenet5-ptq-int8.toml";
    let args = [&["--config", config, "--out", out.to_str().unwrap()], rest].concat();
    run_on("quantize", arch, weights, &args)
}

/// Asserts the command succeeded.
fn succeeded(out: &Output) {
    assert!(out.status.success(), "{}", stderr(out));
}

/// The JSON report of a command that succeeded.
fn json(out: &Output) -> serde_json::Value {
    succeeded(out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn list_shows_exactly_the_registered_algorithms_sorted() {
    let out = run(&["list", "--json"]);
    assert!(out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    // The facade's registry test spells the list out.
    assert_eq!(names, burn_compress::algorithms::BUILT_IN);
    let kinds: Vec<(&str, &str)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["kind"].as_str().unwrap_or(""),
            )
        })
        .filter(|(_, k)| *k == "distiller")
        .collect();
    assert_eq!(
        kinds.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        ["adaptive1d-layerwise", "dynamic-layerwise", "kd"]
    );
    let table = stdout(&run(&["list"]));
    assert!(table.contains("kd") && table.contains("distiller"));
    assert!(table.find("fpgm").unwrap() < table.find("level").unwrap());
}

#[test]
fn check_explains_each_rule_and_resolves_against_a_model() {
    let out = run(&["check", "configs/lenet5-l1.toml", "--arch", "lenet5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("config_list[0]: pruning of every layer of type Conv2d, Linear; excluding fc3; mask 50% of each target"), "{text}");
    assert!(
        text.contains("fc2.weight") && !text.contains("fc3.weight"),
        "{text}"
    );
}

#[test]
fn check_reports_a_bad_config_with_its_culprit_and_exit_code_2() {
    let config = config(
        "bad.toml",
        "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 1.5\n",
    );
    let out = run(&["check", config.to_str().unwrap()]);
    refused(
        &out,
        "error: key 'sparse_ratio' in config_list[0]: 1.5 is outside [0, 1]",
    );
}

#[test]
fn prune_writes_masks_and_reports_sparsity_and_accuracy() {
    let masks = temp("lenet5.safetensors");
    let report = json(&prune(
        "lenet5",
        LENET5,
        LENET5_L1,
        masks.to_str().unwrap(),
        &["--eval", "data/mnist5k.safetensors", "--json"],
    ));
    assert_eq!(report["algorithm"], "l1-norm");
    assert_eq!(report["sparsity"], 0.5);
    // The bundled weights are PyTorch's, which score 0.971 on this split.
    assert_eq!(report["accuracy_dense"], 0.971);
    assert!(report["accuracy_masked"].as_f64().unwrap() < 0.971);
    let saved = burn_compress::MaskSet::load(&masks).unwrap();
    assert_eq!(saved.get("conv2.weight").unwrap().shape(), &[16, 6, 5, 5]);
    assert_eq!(saved.len(), 8);
}

#[test]
fn prune_refuses_an_unknown_arch() {
    let out = prune("resnet9", "w", LENET5_L1, "m", &[]);
    refused(
        &out,
        "unknown architecture 'resnet9' (available: small-cnn, mlp, lenet5, lenet-300-100, resnet18, resnet50, mobilenet_v2, tiny-transformer, efficientnet-lite0, minilm-l6)",
    );
}

#[test]
fn prune_refuses_weights_that_do_not_fit_the_arch() {
    let out = temp("x.safetensors");
    let out = prune(
        "lenet-300-100",
        LENET5,
        LENET5_L1,
        out.to_str().unwrap(),
        &[],
    );
    refused(&out, "do not fit 'lenet-300-100'");
    assert!(stderr(&out).contains("fc1.weight"), "{}", stderr(&out));
}

#[test]
fn prune_refuses_a_missing_weights_file() {
    let out = prune("lenet5", "nope.safetensors", LENET5_L1, "m", &[]);
    refused(&out, "cannot read weights 'nope.safetensors': no such file");
}

#[test]
fn prune_without_a_pruner_says_how_to_name_one() {
    let config = config(
        "noalgo.toml",
        "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\n",
    );
    let out = prune("lenet5", LENET5, config.to_str().unwrap(), "m", &[]);
    refused(&out, "pass --algorithm NAME");
}

/// An empty mask file (nothing pruned) in the test's temp folder.
fn empty_masks(name: &str) -> PathBuf {
    let masks = temp(name);
    MaskSet::default().save(&masks).unwrap();
    masks
}

/// `burn-compress speedup` on the bundled LeNet-5 with these masks, input shape and output base,
/// then `extra`.
fn speedup_lenet5(masks: &Path, input_shape: &str, out: &Path, extra: &[&str]) -> Output {
    speedup("lenet5", LENET5, masks, input_shape, out, extra)
}

/// `prune` then `speedup --json` on the bundled LeNet-5 (files named by `tag`, extra speedup
/// arguments appended); returns the speedup report.
pub(crate) fn speedup_json(extra: &[&str], tag: &str) -> serde_json::Value {
    let masks = temp(&format!("lenet5-speedup-masks-{tag}.safetensors"));
    succeeded(&prune(
        "lenet5",
        LENET5,
        LENET5_L1,
        masks.to_str().unwrap(),
        &[],
    ));
    let base = temp(&format!("lenet5-small-{tag}"));
    let args = [&["--runs", "3", "--json"], extra].concat();
    json(&speedup_lenet5(&masks, "8,1,28,28", &base, &args))
}

#[test]
fn speedup_writes_a_smaller_model_and_reports_shapes_macs_and_latency() {
    let report = speedup_json(&[], "cpu");
    assert_eq!(report["device"], "cpu");
    let base = temp("lenet5-small-cpu");
    let conv2 = layer(&report, "conv2");
    assert_eq!(conv2["type"], "Conv2d");
    assert_eq!(
        conv2["params"]["weight"]["before"],
        serde_json::json!([16, 6, 5, 5])
    );
    assert_eq!(
        conv2["params"]["weight"]["after"],
        serde_json::json!([8, 3, 5, 5])
    );
    assert_eq!(report["params_before"], 61706);
    assert_eq!(report["params_after"], 15738);
    assert!(report["macs_after"].as_u64().unwrap() * 3 < report["macs_before"].as_u64().unwrap());
    for key in ["latency_ms_before", "latency_ms_after"] {
        assert!(report[key].as_f64().unwrap() > 0.0, "{key}");
    }
    // The written model loads back into a fresh LeNet-5 through its plan.
    let loaded = burn_compress::speedup::load_pruned(
        burn_compress::zoo::LeNet5::new(&burn::prelude::Device::flex()),
        &base,
    )
    .unwrap();
    assert_eq!(loaded.fc1.weight.dims(), [200, 60]);
}

#[test]
fn speedup_refuses_masks_that_do_not_fit_the_model() {
    let masks = temp("mlp-masks.safetensors");
    let mut set = burn_compress::MaskSet::default();
    set.insert("conv9.weight", burn_compress::Dense::full(vec![2], 1u8));
    set.save(&masks).unwrap();
    let out = speedup_lenet5(&masks, "1,1,28,28", &temp("x"), &[]);
    refused(&out, "'conv9.weight' is not a parameter of the model");
}

#[test]
fn speedup_refuses_an_input_shape_of_the_wrong_rank() {
    let masks = empty_masks("empty-masks.safetensors");
    let out = speedup_lenet5(&masks, "1,784", &temp("y"), &[]);
    refused(&out, "image models take [batch, channels, height, width]");
}

#[test]
fn speedup_refuses_an_unknown_device_and_vulkan_in_a_cpu_only_build() {
    let masks = empty_masks("device-masks.safetensors");
    let speedup =
        |device: &str| speedup_lenet5(&masks, "1,1,28,28", &temp("z"), &["--device", device]);
    let out = speedup("tpu");
    refused(
        &out,
        "invalid value 'tpu' for '--device <DEVICE>': unknown device 'tpu': expected 'cpu' or 'vulkan'",
    );
    if cfg!(not(feature = "gpu")) {
        let out = speedup("vulkan");
        refused(&out, "device 'vulkan' needs burn-compress's `gpu` feature");
    }
}

#[test]
fn quantize_writes_a_native_model_and_nni_calibration_json() {
    let out = temp("lenet5-q8.bpk");
    let calibration = temp("lenet5-calibration.json");
    let report = json(&quantize(
        "lenet5",
        LENET5,
        &out,
        &[
            "--calib-batches",
            "2",
            "--calibration-out",
            calibration.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(report["algorithm"], "ptq");
    assert!(report["size_ratio"].as_f64().unwrap() > 3.8, "{report}");
    let (before, after) = (
        report["accuracy_before"].as_f64().unwrap(),
        report["accuracy_after"].as_f64().unwrap(),
    );
    assert!(before - after <= 0.005, "{before} -> {after}");
    assert_eq!(report["quantized_params"].as_object().unwrap().len(), 5);
    assert!(out.is_file());
    let nni: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&calibration).unwrap()).unwrap();
    // NNI's names and layout: `_input_0`, `weight`, `_output_0` per module.
    let fc1 = &nni["fc1"];
    assert_eq!(fc1["weight"]["quant_dtype"], "int8");
    assert_eq!(fc1["_input_0"]["quant_scheme"], "affine");
    assert!(fc1["_output_0"]["scale"].as_f64().unwrap() > 0.0);
}

#[test]
fn quantize_refuses_bad_requests_with_the_culprit_named() {
    let out = temp("never.bpk");
    let with = |extra: &[&str]| quantize("lenet5", LENET5, &out, extra);
    let o = with(&["--calib-batches", "0"]);
    refused(&o, "calibration with no data");
    let o = with(&["--affine", "maybe"]);
    assert!(stderr(&o).contains("--affine 'maybe'"), "{}", stderr(&o));
    let o = with(&["--algorithm", "fpgm"]);
    assert!(stderr(&o).contains("'fpgm' is a pruner"), "{}", stderr(&o));
    assert!(!out.exists(), "nothing is written on error");
}

#[test]
fn quantize_bits_auto_meets_the_size_budget_in_the_written_file() {
    let out = temp("lenet5-mixed.bpk");
    let report = json(&quantize(
        "lenet5",
        LENET5,
        &out,
        &[
            "--calib-batches",
            "2",
            "--bits",
            "auto",
            "--size-budget",
            "5x",
            "--json",
        ],
    ));
    let mixed = &report["mixed"];
    let written = std::fs::metadata(&out).unwrap().len();
    assert_eq!(report["bytes_quantized"].as_u64().unwrap(), written);
    assert_eq!(mixed["file_bytes"].as_u64().unwrap(), written);
    assert_eq!(
        mixed["budget_bytes"].as_u64().unwrap(),
        report["bytes_f32"].as_u64().unwrap() / 5
    );
    assert!(report["size_ratio"].as_f64().unwrap() >= 5.0, "{report}");
    // Every weight has a width, and the written format follows it.
    let bits = mixed["bits"].as_object().unwrap();
    assert_eq!(bits.len(), 5, "{report}");
    for (path, b) in bits {
        let format = report["quantized_params"][path].as_str().unwrap();
        assert_eq!(format, format!("Q{}S", b.as_u64().unwrap()), "{path}");
        assert_eq!(mixed["sensitivity"][path].as_object().unwrap().len(), 3);
    }
    // A budget without --bits auto, --bits auto without a budget, a budget that cannot be met.
    let never = temp("never-mixed.bpk");
    let with = |extra: &[&str]| quantize("lenet5", LENET5, &never, extra);
    let o = with(&["--size-budget", "5x"]);
    assert!(
        stderr(&o).contains("--size-budget needs --bits auto"),
        "{}",
        stderr(&o)
    );
    let o = with(&["--bits", "auto"]);
    assert!(
        stderr(&o).contains("--bits auto needs --size-budget"),
        "{}",
        stderr(&o)
    );
    let o = with(&[
        "--calib-batches",
        "1",
        "--bits",
        "auto",
        "--size-budget",
        "20x",
    ]);
    assert!(
        stderr(&o).contains("cannot be met") && stderr(&o).contains("the closest achievable"),
        "{}",
        stderr(&o)
    );
    let o = with(&["--bits", "auto", "--size-budget", "5y"]);
    assert!(
        stderr(&o).contains("invalid size_budget '5y'"),
        "{}",
        stderr(&o)
    );
    assert!(!never.exists(), "nothing is written on error");
}

/// `burn-compress prune` on the bundled LeNet-5 with `config`, training on the bundled MNIST-5k
/// when the pruner needs it; returns the JSON report and the masks.
fn prune_trained(config: &str, extra: &[&str], tag: &str) -> (serde_json::Value, MaskSet) {
    let masks = temp(&format!("lenet5-{tag}.safetensors"));
    let args = [&["--data", "data/mnist5k.safetensors", "--json"], extra].concat();
    let report = json(&prune(
        "lenet5",
        LENET5,
        config,
        masks.to_str().unwrap(),
        &args,
    ));
    (report, MaskSet::load(&masks).unwrap())
}

/// Sparsity per parameter path.
fn sparsities(masks: &MaskSet) -> Vec<(String, f64)> {
    masks
        .stats()
        .targets
        .iter()
        .map(|t| (t.path.clone(), t.sparsity()))
        .collect()
}

#[test]
fn prune_taylor_gathers_gradients_on_the_data_and_matches_the_recipe_path_exactly() {
    let (report, cli_masks) = prune_trained("configs/lenet5-taylor.toml", &[], "taylor");
    assert_eq!(report["algorithm"], "taylor");
    assert_eq!(report["mode"], "gradients");
    // 70% of the output channels of conv1 (6 -> 2 kept), conv2, fc1, fc2; fc3 untouched.
    let conv1 = cli_masks.get("conv1.weight").unwrap();
    let kept: usize = conv1.data().iter().map(|&k| k as usize).sum();
    assert_eq!(kept, 2 * 25);

    // The same config and seed through a recipe: the same driver, the same masks.
    let recipe_masks = temp("lenet5-taylor-recipe.safetensors");
    let recipe = config(
        "taylor-recipe.toml",
        &format!(
            "[model]\narch = 'lenet5'\nweights = 'data/lenet5-mnist5k.safetensors'\n\
             [data]\npath = 'data/mnist5k.safetensors'\n\
             [[step]]\nkind = 'prune'\nconfig = 'configs/lenet5-taylor.toml'\nmasks = '{}'\n",
            recipe_masks.display()
        ),
    );
    succeeded(&run(&[
        "run",
        recipe.to_str().unwrap(),
        "--out",
        temp("taylor-recipe-model").to_str().unwrap(),
    ]));
    let recipe_masks = MaskSet::load(&recipe_masks).unwrap();
    assert_eq!(sparsities(&cli_masks), sparsities(&recipe_masks));
    assert!(cli_masks == recipe_masks, "the masks differ element-wise");
}

#[test]
fn prune_slim_and_movement_learn_scores_on_the_data() {
    let (report, masks) = prune_trained("configs/lenet5-movement.toml", &[], "movement");
    assert_eq!(report["mode"], "learned-scores");
    assert_eq!(report["algorithm"], "movement");
    for (path, sparsity) in sparsities(&masks) {
        if path.ends_with("weight") {
            assert_eq!(sparsity, 0.5, "{path}");
        }
    }
    let (report, masks) = prune_trained("configs/lenet5-l1.toml", &["--algorithm", "slim"], "slim");
    assert_eq!(report["mode"], "learned-scores");
    assert_eq!(report["algorithm"], "slim");
    assert_eq!(masks.get("conv2.weight").unwrap().shape(), &[16, 6, 5, 5]);
    assert_eq!(report["sparsity"], 0.5);
}

#[test]
fn prune_with_a_schedule_trains_and_reaches_the_ratio() {
    let (report, masks) = prune_trained(
        "configs/lenet5-l1.toml",
        &[
            "--schedule",
            "agp",
            "--total-times",
            "2",
            "--interval-steps",
            "3",
        ],
        "agp",
    );
    assert_eq!(report["mode"], "scheduled");
    assert_eq!(report["sparsity"], 0.5);
    assert_eq!(masks.len(), 8);
}

#[test]
fn prune_taylor_without_data_says_to_pass_data() {
    let never = temp("never-taylor.safetensors");
    let taylor = |rest: &[&str]| {
        let config = "configs/lenet5-taylor.toml";
        prune("lenet5", LENET5, config, never.to_str().unwrap(), rest)
    };
    refused(
        &taylor(&[]),
        "'taylor' runs gradients pruning, which trains: pass --data PATH",
    );
    refused(
        &taylor(&["--data", "data/digits.safetensors"]),
        "holds 8x8 images, 'lenet5' takes 28x28",
    );
}

/// A file in the test's temp folder holding `text` (a config or a recipe).
fn config(name: &str, text: &str) -> PathBuf {
    let path = temp(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `prune` (l1-norm, `config`) then `speedup --json` of `arch` with `weights` at `input_shape`.
fn prune_and_speedup(
    arch: &str,
    weights: &Path,
    config: &Path,
    input_shape: &str,
) -> serde_json::Value {
    let masks = temp(&format!("{arch}-kind-masks.safetensors"));
    let weights = weights.to_str().unwrap();
    succeeded(&prune(
        arch,
        weights,
        config.to_str().unwrap(),
        masks.to_str().unwrap(),
        &["--algorithm", "l1-norm"],
    ));
    let out = temp(&format!("{arch}-kind-small"));
    let rest = ["--runs", "2", "--json"];
    json(&speedup(arch, weights, &masks, input_shape, &out, &rest))
}

/// `layer`'s entry in a speedup report.
fn layer<'a>(report: &'a serde_json::Value, layer: &str) -> &'a serde_json::Value {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["path"] == layer)
        .unwrap_or_else(|| panic!("no layer '{layer}' in {report}"))
}

/// The paths of the layers a speedup report lists, in order.
fn layer_paths(report: &serde_json::Value) -> Vec<&str> {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap())
        .collect()
}

/// The `[before, after]` shapes of `layer`'s `param` in a speedup report.
/// Asserts that `layer`'s `param` lost half of its first dimension.
fn assert_halved(report: &serde_json::Value, layer: &str, param: &str) {
    let (before, after) = shapes(report, layer, param);
    assert_eq!(
        after[0].as_u64().unwrap() * 2,
        before[0].as_u64().unwrap(),
        "{layer}.{param}: {report}"
    );
}

fn shapes(
    report: &serde_json::Value,
    layer: &str,
    param: &str,
) -> (serde_json::Value, serde_json::Value) {
    let l = self::layer(report, layer);
    (
        l["params"][param]["before"].clone(),
        l["params"][param]["after"].clone(),
    )
}

#[test]
fn speedup_takes_feature_vectors_for_the_mlp() {
    let config = config(
        "mlp-fc1.toml",
        "[[config_list]]\nop_names = ['fc1']\nsparse_ratio = 0.5\n",
    );
    let weights = root().join("tests/fixtures/mlp_weights.safetensors");
    let report = prune_and_speedup("mlp", &weights, &config, "4,64");
    assert_eq!(report["input_shape"], serde_json::json!([4, 64]));
    // Every layer is listed, changed or not: fc1 loses half its outputs, fc2 the matching
    // inputs, fc3 is untouched.
    assert_eq!(layer_paths(&report), ["fc1", "fc2", "fc3"]);
    let (before, after) = shapes(&report, "fc1", "weight");
    let (in1, out1) = (before[0].as_u64().unwrap(), before[1].as_u64().unwrap());
    assert_eq!(before, serde_json::json!([64, out1]));
    assert_eq!(after, serde_json::json!([in1, out1 / 2]));
    assert_halved(&report, "fc2", "weight");
    let (before, after) = shapes(&report, "fc2", "weight");
    assert_eq!(after[1], before[1]);
    let fc3 = &report["layers"][2];
    assert_eq!(fc3["changed"], false);
    assert_eq!(
        fc3["params"]["weight"]["before"],
        fc3["params"]["weight"]["after"]
    );
    assert_eq!(report["layers"][0]["changed"], true);
}

#[test]
fn speedup_takes_images_for_the_small_cnn() {
    let config = config(
        "cnn-conv1.toml",
        "[[config_list]]\nop_names = ['conv1']\nsparse_ratio = 0.5\n",
    );
    let weights = root().join("tests/fixtures/cnn_weights.safetensors");
    let report = prune_and_speedup("small-cnn", &weights, &config, "2,1,8,8");
    assert_halved(&report, "conv1", "weight");
    // conv1's BatchNorm follows it; the classifier keeps its shape.
    assert_halved(&report, "bn1", "gamma");
    let (fc_before, fc_after) = shapes(&report, "fc", "weight");
    assert_eq!(fc_before, fc_after);
    assert!(report["params_after"].as_u64() < report["params_before"].as_u64());
}

#[test]
fn speedup_takes_token_ids_for_the_tiny_transformer() {
    use burn::prelude::*;
    use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
    let weights = temp("tiny-transformer.safetensors");
    let model = burn_compress::zoo::TinyTransformer::new(10, &Device::flex());
    let mut store =
        SafetensorsStore::from_file(weights.clone()).with_to_adapter(BurnToPyTorchAdapter);
    model.save_into(&mut store).unwrap();
    let config = config(
        "tt-ff.toml",
        "[[config_list]]\nop_names_re = ['encoder\\.layers\\.[0-9]+\\.pwff\\.linear_inner']\nsparse_ratio = 0.5\n",
    );
    let report = prune_and_speedup("tiny-transformer", &weights, &config, "2,16");
    assert_eq!(report["input_shape"], serde_json::json!([2, 16]));
    let (before, after) = shapes(&report, "encoder.layers.0.pwff.linear_inner", "weight");
    assert_eq!(before, serde_json::json!([64, 128]));
    assert_eq!(after, serde_json::json!([64, 64]));
    let (before, after) = shapes(&report, "encoder.layers.1.pwff.linear_outer", "weight");
    assert_eq!(
        (before, after),
        (serde_json::json!([128, 64]), serde_json::json!([64, 64]))
    );
    let (before, after) = shapes(&report, "head", "weight");
    assert_eq!(before, after);

    // A sequence longer than the model's 32 positions is refused before anything runs.
    let masks = temp("tiny-transformer-kind-masks.safetensors");
    let out = speedup(
        "tiny-transformer",
        weights.to_str().unwrap(),
        &masks,
        "1,64",
        &temp("tt-never"),
        &[],
    );
    refused(
        &out,
        "input shape [1, 64] does not fit 'tiny-transformer': token models take token ids [batch, seq] with seq <= 32",
    );
}

#[test]
fn speedup_json_lists_every_layer_of_lenet5_with_shapes_before_and_after() {
    let report = speedup_json(&[], "every-layer");
    assert_eq!(
        layer_paths(&report),
        ["conv1", "conv2", "fc1", "fc2", "fc3"]
    );
    for l in report["layers"].as_array().unwrap() {
        for (name, s) in l["params"].as_object().unwrap() {
            assert!(
                s["before"].is_array() && s["after"].is_array(),
                "{} {name}",
                l["path"]
            );
        }
    }
    // fc3 keeps its 10 outputs but loses the inputs fc2 no longer produces.
    let (before, after) = shapes(&report, "fc3", "weight");
    assert_eq!(
        (before, after),
        (serde_json::json!([84, 10]), serde_json::json!([42, 10]))
    );
    let (before, after) = shapes(&report, "fc3", "bias");
    assert_eq!(before, after);
}

#[test]
fn quantize_refuses_a_dataset_of_another_image_size_than_the_model_takes() {
    let weights = root().join("tests/fixtures/mlp_weights.safetensors");
    let out = quantize(
        "mlp",
        weights.to_str().unwrap(),
        &temp("never-mlp.bpk"),
        &[],
    );
    refused(
        &out,
        "'data/mnist5k.safetensors' holds 28x28 images, 'mlp' takes 8x8",
    );
}

/// Runs an exported ONNX file on tract (a runtime other than Burn) for `input` of `shape`.
fn tract_run(file: &Path, shape: &[usize], input: &[f32]) -> Vec<f32> {
    use tract_onnx::prelude::*;
    let plan = tract_onnx::onnx()
        .model_for_path(file)
        .expect("tract reads the export")
        .with_input_fact(
            0,
            InferenceFact::dt_shape(f32::datum_type(), shape.to_vec()),
        )
        .unwrap()
        .into_optimized()
        .expect("tract optimizes the export")
        .into_runnable()
        .unwrap();
    let x: TValue = Tensor::from_shape(shape, input).unwrap().into();
    let out = plan.run(tvec!(x)).expect("tract runs the export");
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

/// `n` MNIST-like inputs (a deterministic ramp in [0, 1)).
fn ramp(n: usize) -> Vec<f32> {
    (0..n * 784).map(|i| (i % 97) as f32 / 97.0).collect()
}

/// The bundled LeNet-5's logits for `ramp(n)`, computed by Burn.
fn burn_logits<M>(model: &M, n: usize) -> Vec<f32>
where
    M: burn::module::Module,
    M: LeNetLike,
{
    use burn::prelude::*;
    let x = Tensor::<1>::from_floats(ramp(n).as_slice(), &Device::flex()).reshape([n, 1, 28, 28]);
    model.logits(x).into_data().try_to_vec::<f32>().unwrap()
}

/// The LeNet-5 forward, for the dense and the sped-up model alike.
trait LeNetLike {
    fn logits(&self, x: burn::prelude::Tensor<4>) -> burn::prelude::Tensor<2>;
}
impl LeNetLike for burn_compress::zoo::LeNet5 {
    fn logits(&self, x: burn::prelude::Tensor<4>) -> burn::prelude::Tensor<2> {
        self.forward(x)
    }
}

fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst <= tol, "largest difference {worst} > {tol}");
}

#[test]
fn export_writes_onnx_that_tract_runs_like_burn_for_dense_sped_up_and_quantized_models() {
    use burn::prelude::Device;
    use burn_compress::zoo::LeNet5;
    // Dense weights: the file runs at another batch size than the capture's (dynamic batch) and
    // gives Burn's logits.
    let dense = temp("lenet5-dense.onnx");
    let o = run_on(
        "export",
        "lenet5",
        LENET5,
        &[
            "--input-shape",
            "1,1,28,28",
            "--out",
            dense.to_str().unwrap(),
        ],
    );
    succeeded(&o);
    assert!(stdout(&o).contains("input 'input' [1, 1, 28, 28] with a dynamic batch"));
    let model = burn_compress::zoo::AnyModel::load(
        "lenet5".parse().unwrap(),
        Path::new(&root().join(LENET5)),
        &Device::flex(),
    )
    .unwrap();
    let burn_compress::zoo::AnyModel::LeNet5(model) = model else {
        panic!("lenet5 loads as LeNet5")
    };
    let got = tract_run(&dense, &[3, 1, 28, 28], &ramp(3));
    assert_close(&got, &burn_logits(&model, 3), 1e-4);

    // The sped-up model `speedup` wrote (`<base>.bpk` + `<base>.plan.json`).
    speedup_json(&[], "export");
    let base = temp("lenet5-small-export");
    let small = temp("lenet5-small.onnx");
    let bpk = base.with_extension("bpk");
    let o = run(&[
        "export",
        "--arch",
        "lenet5",
        "--model",
        bpk.to_str().unwrap(),
        "--input-shape",
        "1,1,28,28",
        "--out",
        small.to_str().unwrap(),
    ]);
    succeeded(&o);
    let pruned = burn_compress::speedup::load_pruned(LeNet5::new(&Device::flex()), &base).unwrap();
    assert_eq!(pruned.conv2.weight.dims(), [8, 3, 5, 5]);
    let got = tract_run(&small, &[2, 1, 28, 28], &ramp(2));
    assert_close(&got, &burn_logits(&pruned, 2), 1e-4);
    assert!(
        std::fs::metadata(&small).unwrap().len() * 3 < std::fs::metadata(&dense).unwrap().len(),
        "the sped-up export is smaller"
    );

    // A quantized model with the calibration `quantize` wrote: QDQ int8, which tract runs and
    // whose top-1 agrees with the f32 model's on most inputs.
    let q = temp("lenet5-export-q8.bpk");
    let cal = temp("lenet5-export-cal.json");
    succeeded(&quantize(
        "lenet5",
        LENET5,
        &q,
        &[
            "--calib-batches",
            "2",
            "--calibration-out",
            cal.to_str().unwrap(),
        ],
    ));
    let qonnx = temp("lenet5-q8.onnx");
    let o = run(&[
        "export",
        "--arch",
        "lenet5",
        "--model",
        q.to_str().unwrap(),
        "--calibration",
        cal.to_str().unwrap(),
        "--input-shape",
        "1,1,28,28",
        "--out",
        qonnx.to_str().unwrap(),
    ]);
    succeeded(&o);
    assert!(stdout(&o).contains("QDQ int8"), "{}", stdout(&o));
    let bytes = std::fs::read(&qonnx).unwrap();
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has("QuantizeLinear") && has("DequantizeLinear"));
    let got = tract_run(&qonnx, &[1, 1, 28, 28], &ramp(1));
    assert_close(
        &got,
        &burn_logits(&model, 1),
        0.25 * got.iter().fold(0f32, |m, v| m.max(v.abs())),
    );
}

#[test]
fn export_refuses_a_model_file_that_does_not_fit_and_an_unknown_format() {
    speedup_json(&[], "export-bad");
    let bpk = temp("lenet5-small-export-bad").with_extension("bpk");
    let out = temp("never.onnx");
    let export = |arch: &str, rest: &[&str]| {
        let args = [
            &["export", "--arch", arch, "--input-shape", "1,1,28,28"][..],
            rest,
            &["--out", out.to_str().unwrap()],
        ]
        .concat();
        run(&args)
    };
    // A LeNet-5 plan and weights given as a SmallCNN.
    let o = export("small-cnn", &["--model", bpk.to_str().unwrap()]);
    refused(&o, "loading the sped-up model");
    let o = export("lenet5", &["--weights", LENET5, "--format", "tflite"]);
    refused(&o, "--format 'tflite': only 'onnx' is supported");
    assert!(!out.exists(), "nothing is written on error");
}
