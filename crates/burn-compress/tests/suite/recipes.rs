//! Recipes: bad ones are refused before any training; a short one runs end to end.

use burn_compress::core::toml::Table;
use burn_compress::recipe::{Recipe, RunOptions, run};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn parse(text: &str) -> Result<Recipe, burn_compress::recipe::RecipeError> {
    std::env::set_current_dir(root()).unwrap();
    let table: Table = text.parse().unwrap();
    Recipe::from_table(&table)
}

const HEAD: &str = "[model]\narch = 'lenet5'\n[data]\npath = 'data/mnist5k.safetensors'\n";

fn refused(steps: &str, needle: &str) {
    let err = parse(&format!("{HEAD}{steps}")).unwrap_err();
    assert!(err.to_string().contains(needle), "{err}");
}

#[test]
fn an_unknown_step_kind_is_refused() {
    refused("[[step]]\nkind = 'distill'\n", "unknown kind 'distill'");
}

#[test]
fn an_unknown_model_is_refused() {
    let err = parse("[model]\narch = 'lenet7'\n[data]\npath = 'data/mnist5k.safetensors'\n[[step]]\nkind = 'train'\n").unwrap_err();
    assert!(
        err.to_string().contains("unknown architecture 'lenet7'"),
        "{err}"
    );
}

#[test]
fn missing_weights_are_refused() {
    let err = parse("[model]\narch = 'lenet5'\nweights = 'nope.safetensors'\n[data]\npath = 'data/mnist5k.safetensors'\n[[step]]\nkind = 'evaluate'\n").unwrap_err();
    assert!(
        err.to_string()
            .contains("weights 'nope.safetensors' do not exist"),
        "{err}"
    );
}

#[test]
fn speedup_before_any_prune_is_refused() {
    refused(
        "[[step]]\nkind = 'train'\n[[step]]\nkind = 'speedup'\n",
        "speedup needs masks: put a prune step before it",
    );
}

#[test]
fn finetune_before_any_prune_is_refused() {
    refused(
        "[[step]]\nkind = 'finetune'\n",
        "finetune comes after a prune step",
    );
}

#[test]
fn pruning_untrained_weights_is_refused() {
    refused(
        "[[step]]\nkind = 'prune'\nconfig = 'configs/lenet5-l1.toml'\n",
        "prune needs trained weights",
    );
}

#[test]
fn a_bad_step_key_and_value_are_refused() {
    refused(
        "[[step]]\nkind = 'train'\nepoch = 3\n",
        "unknown key 'epoch'",
    );
    refused(
        "[[step]]\nkind = 'train'\nepochs = 0\n",
        "'epochs' must be an integer >= 1",
    );
}

#[test]
fn an_unregistered_pruner_is_refused() {
    refused(
        "[[step]]\nkind = 'train'\n[[step]]\nkind = 'prune'\nalgorithm = 'l3-norm'\nconfig = 'configs/lenet5-l1.toml'\n",
        "unknown algorithm 'l3-norm'",
    );
}

#[test]
fn a_short_recipe_trains_prunes_speeds_up_and_finetunes() {
    let recipe = parse(&format!(
        "{HEAD}[[step]]\nkind = 'train'\nmax_steps = 8\n[[step]]\nkind = 'prune'\nconfig = 'configs/lenet5-l1.toml'\n\
         [[step]]\nkind = 'speedup'\n[[step]]\nkind = 'finetune'\nmax_steps = 2\n[[step]]\nkind = 'report'\n"
    ))
    .unwrap();
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-recipe-{}", std::process::id()))
        .join("lenet5");
    let report = run(
        &recipe,
        &RunOptions {
            out: Some(out.clone()),
            verbose: false,
        },
    )
    .unwrap();
    let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["train", "prune", "speedup", "finetune"]);
    let (dense, small) = (&report.stages[0], &report.stages[2]);
    assert!(
        small.macs * 3 < dense.macs,
        "MACs {} -> {}",
        dense.macs,
        small.macs
    );
    assert!(small.params < dense.params && small.bytes < dense.bytes);
    assert_eq!(report.stages[3].macs, small.macs);
    for s in &report.stages {
        assert!(
            (0.0..=1.0).contains(&s.accuracy) && s.latency_ms > 0.0,
            "{s:?}"
        );
    }
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["stages"][2]["name"], "speedup");
    assert!(out.with_extension("bpk").is_file() && out.with_extension("plan.json").is_file());
}

#[test]
fn scheduled_pruning_reaches_its_ratio_and_keeps_pruned_weights_at_zero() {
    use burn::prelude::*;
    use burn_compress::core::{
        ModuleIndex,
        dataset::ImageDataset,
        schedule::Schedule,
        scheduled::ScheduledPruning,
        train::{TrainConfig, train_classifier},
    };
    use burn_compress::zoo::{ImageClassifier, LeNet5};
    use burn_compress::{AlgorithmEntry, CompressConfig, Dense};

    let (train, _) = ImageDataset::load(root().join("data/mnist5k.safetensors"), 255.0)
        .unwrap()
        .split();
    let device = Device::flex().autodiff();
    let model = LeNet5::new(&device);
    let config =
        CompressConfig::from_toml("[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\n")
            .unwrap();
    let pruner = AlgorithmEntry::find("l1-norm")
        .unwrap()
        .build_pruner(&Default::default())
        .unwrap();
    let schedule = Schedule::Agp { total_times: 2 };
    let mut hook = ScheduledPruning::new(
        std::sync::Arc::from(pruner),
        config,
        &ModuleIndex::from_module(&model),
        schedule,
        3,
        2,
    )
    .unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        max_steps: Some(8),
        progress: false,
        ..Default::default()
    };
    let (trained, _) = train_classifier(model, &train, |m, x| m.classify(x), &cfg, &mut hook);
    assert_eq!(hook.updates(), 2);
    let masks = hook.masks().unwrap();
    let conv2 = masks
        .stats()
        .targets
        .into_iter()
        .find(|t| t.path == "conv2.weight")
        .unwrap();
    assert_eq!(conv2.sparsity(), 0.5);
    // Two more optimizer steps ran after the last update: pruned weights are still zero.
    let w = Dense::from_tensor(trained.conv2.weight.val(), "conv2.weight").unwrap();
    let m = masks.get("conv2.weight").unwrap();
    assert!(
        w.data()
            .iter()
            .zip(m.data())
            .all(|(x, k)| *k == 1 || *x == 0.0)
    );
    assert!(w.data().iter().any(|x| *x != 0.0));
}

#[test]
fn a_schedule_that_does_not_fit_the_training_is_refused() {
    let recipe = parse(&format!(
        "{HEAD}[[step]]\nkind = 'train'\nmax_steps = 2\n[[step]]\nkind = 'prune'\nconfig = 'configs/lenet5-l1.toml'\n\
         schedule = 'agp'\ntotal_times = 100\ninterval_steps = 50\nepochs = 1\n"
    ))
    .unwrap();
    let err = run(&recipe, &RunOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("mask updates fit in the training"),
        "{err}"
    );
    refused(
        "[[step]]\nkind = 'train'\n[[step]]\nkind = 'prune'\nconfig = 'configs/lenet5-l1.toml'\nschedule = 'cubic'\n",
        "'schedule' must be \"agp\" or \"linear\"",
    );
}

#[test]
fn a_learned_score_pruner_trains_its_scores_inside_a_recipe() {
    let recipe = parse(&format!(
        "{HEAD}[[step]]\nkind = 'train'\nmax_steps = 4\n[[step]]\nkind = 'prune'\nconfig = 'configs/lenet5-movement.toml'\n\
         [[step]]\nkind = 'speedup'\n"
    ))
    .unwrap();
    let report = run(&recipe, &RunOptions::default()).unwrap();
    let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["train", "prune", "speedup"]);
    let (dense, small) = (&report.stages[0], &report.stages[2]);
    // Half the channels of conv1, conv2, fc1 and fc2: far fewer MACs and parameters.
    assert!(
        small.macs * 2 < dense.macs,
        "MACs {} -> {}",
        dense.macs,
        small.macs
    );
    assert!(
        small.params * 2 < dense.params,
        "params {} -> {}",
        dense.params,
        small.params
    );
}

#[test]
fn a_quantize_step_adds_a_smaller_stage_and_must_come_last() {
    let recipe = parse(&format!(
        "{HEAD}[[step]]\nkind = 'train'\nmax_steps = 8\n[[step]]\nkind = 'quantize'\nconfig = 'configs/lenet5-ptq-int8.toml'\ncalib = 2\n[[step]]\nkind = 'report'\n"
    ))
    .unwrap();
    let report = run(&recipe, &RunOptions::default()).unwrap();
    let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["train", "quantize"]);
    let (f32_stage, q) = (&report.stages[0], &report.stages[1]);
    assert_eq!((q.params, q.macs), (f32_stage.params, f32_stage.macs));
    assert!(
        q.bytes * 3 < f32_stage.bytes,
        "{} -> {} bytes",
        f32_stage.bytes,
        q.bytes
    );
    assert!((0.0..=1.0).contains(&q.accuracy) && q.latency_ms > 0.0);

    refused(
        "[[step]]\nkind = 'quantize'\nconfig = 'configs/lenet5-ptq-int8.toml'\n",
        "quantize needs trained weights",
    );
    refused(
        "[[step]]\nkind = 'train'\n[[step]]\nkind = 'quantize'\nconfig = 'configs/lenet5-ptq-int8.toml'\n[[step]]\nkind = 'finetune'\n",
        "quantize is the last step that changes the model",
    );
    refused(
        "[[step]]\nkind = 'train'\n[[step]]\nkind = 'quantize'\nconfig = 'configs/lenet5-ptq-int8.toml'\nalgorithm = 'l1-norm'\n",
        "'l1-norm' is a pruner",
    );
    refused(
        "[[step]]\nkind = 'train'\n[[step]]\nkind = 'quantize'\nconfig = 'configs/lenet5-ptq-int8.toml'\naffine = 'maybe'\n",
        "'affine' must be \"error\" or \"requantize\"",
    );
}

#[test]
fn a_pruned_and_quantized_recipe_output_loads_into_a_fresh_template() {
    use burn::prelude::*;
    use burn_compress::quant::{load_quantized, quantized_params};
    use burn_compress::speedup::{Plan, apply};
    use burn_compress::zoo::{ImageClassifier, LeNet5};

    let recipe = parse(&format!(
        "{HEAD}[[step]]\nkind = 'train'\nmax_steps = 4\n[[step]]\nkind = 'prune'\nconfig = 'configs/lenet5-l1.toml'\n\
         [[step]]\nkind = 'speedup'\n[[step]]\nkind = 'quantize'\nconfig = 'configs/lenet5-ptq-int8.toml'\ncalib = 1\n"
    ))
    .unwrap();
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-recipe-q-{}", std::process::id()))
        .join("lenet5");
    run(
        &recipe,
        &RunOptions {
            out: Some(out.clone()),
            verbose: false,
        },
    )
    .unwrap();
    // As the README says: apply the plan to a fresh template, then load the quantized weights.
    let device = Device::flex();
    let plan = Plan::load(out.with_extension("plan.json")).unwrap();
    let template = apply(&LeNet5::new(&device), &plan).unwrap();
    let loaded = load_quantized(template, out.with_extension("bpk")).unwrap();
    assert_eq!(
        loaded.conv1.weight.dims(),
        [3, 1, 5, 5],
        "half of conv1's 6 filters"
    );
    assert_eq!(quantized_params(&loaded).len(), 5);
    let logits = loaded.classify(Tensor::zeros([2, 1, 28, 28], &device));
    assert_eq!(logits.dims(), [2, 10]);
}

#[test]
fn an_unknown_key_gets_a_did_you_mean_in_every_step_kind() {
    refused(
        "[[step]]\nkind = 'train'\nepoch = 3\n",
        "recipe step[0] (train): unknown key 'epoch' (did you mean 'epochs'?) (allowed: batch_size, distill, epochs, kind, lr, max_steps, prune, quantize)",
    );
    refused(
        "[[step]]\nkind = 'train'\n[[step]]\nkind = 'prune'\nconfig = 'configs/lenet5-l1.toml'\nshedule = 'agp'\n",
        "unknown key 'shedule' (did you mean 'schedule'?)",
    );
    // evaluate and report check their keys too.
    refused(
        "[[step]]\nkind = 'evaluate'\nepochs = 1\n",
        "recipe step[0] (evaluate): unknown key 'epochs' (allowed: kind)",
    );
    refused(
        "[[step]]\nkind = 'report'\ntabel = 'x.txt'\n",
        "unknown key 'tabel' (did you mean 'table'?)",
    );
    refused(
        "[[step]]\nkind = 'speedup'\nforce = true\n",
        "unknown key 'force'",
    );
    let err = parse(
        "[model]\narch = 'lenet5'\nweigths = 'w'\n[data]\npath = 'data/mnist5k.safetensors'\n[[step]]\nkind = 'train'\n",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("recipe [model]: unknown key 'weigths' (did you mean 'weights'?)"),
        "{err}"
    );
    let err = parse(&format!("{HEAD}sed = 1\n[[step]]\nkind = 'train'\n")).unwrap_err();
    assert!(
        err.to_string().contains("recipe [data]: unknown key 'sed'"),
        "{err}"
    );
    refused(
        "[[step]]\nkind = 'trian'\n",
        "unknown kind 'trian' (did you mean 'train'?)",
    );
}

#[test]
fn values_of_the_wrong_type_are_refused_with_the_key_named() {
    refused("[[step]]\nkind = 'train'\nepochs = 'three'\n", "epochs");
    refused(
        "[[step]]\nkind = 'train'\nlr = -0.1\n",
        "'lr' must be a non-negative number, found -0.1",
    );
    refused(
        "[[step]]\nkind = 3\n",
        "'kind' must be a string, found integer",
    );
    refused("[[step]]\nepochs = 3\n", "'kind' is required");
    let err = Recipe::from_toml("[model\narch = 'lenet5'\n").unwrap_err();
    assert_eq!(err.context, "TOML");
    assert!(err.message.contains("TOML syntax error at line 1"), "{err}");
}

#[test]
fn a_report_step_writes_the_stage_table_and_json_and_a_prune_step_its_masks() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-recipe-report-{}", std::process::id()));
    let (table, json, masks) = (
        dir.join("stages.txt"),
        dir.join("stages.json"),
        dir.join("masks.safetensors"),
    );
    let recipe = parse(&format!(
        "{HEAD}[[step]]\nkind = 'train'\nmax_steps = 2\n[[step]]\nkind = 'prune'\nconfig = 'configs/lenet5-l1.toml'\nmasks = '{}'\n\
         [[step]]\nkind = 'evaluate'\n[[step]]\nkind = 'report'\ntable = '{}'\njson = '{}'\n",
        masks.display(),
        table.display(),
        json.display()
    ))
    .unwrap();
    let report = run(&recipe, &RunOptions::default()).unwrap();
    let text = std::fs::read_to_string(&table).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("stage") && lines[0].contains("test accuracy"),
        "{text}"
    );
    for (line, stage) in lines[1..].iter().zip(["train", "prune", "evaluate"]) {
        assert!(line.starts_with(stage), "{text}");
    }
    assert!(
        lines[2].contains(&report.stages[1].params.to_string()),
        "{text}"
    );
    assert_eq!(text, report.table());
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let names: Vec<&str> = written["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["train", "prune", "evaluate"]);
    assert_eq!(written["stages"][1]["macs"], report.stages[1].macs);
    let saved = burn_compress::MaskSet::load(&masks).unwrap();
    assert_eq!(saved.stats().sparsity(), 0.5);
    assert_eq!(saved.len(), 8);
}

#[test]
fn a_report_that_cannot_be_written_is_an_error_naming_the_file() {
    let recipe = parse(&format!(
        "{HEAD}[[step]]\nkind = 'train'\nmax_steps = 1\n[[step]]\nkind = 'report'\njson = 'Cargo.toml/stages.json'\n"
    ))
    .unwrap();
    let err = run(&recipe, &RunOptions::default()).unwrap_err();
    assert_eq!(err.context, "step[1]");
    assert!(err.message.contains("'Cargo.toml'"), "{err}");
}
