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
    let out = std::env::temp_dir()
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
