//! `burn-compress auto`: a short searched run with its report and plot, and bad input.

use std::process::Output;

use serde_json::Value;

use crate::cli::{run, stderr};

/// `burn-compress auto` on the bundled LeNet-5 and MNIST-5k, then `rest`.
fn auto(rest: &[&str]) -> Output {
    let base = [
        "auto",
        "--arch",
        "lenet5",
        "--weights",
        "data/lenet5-mnist5k.safetensors",
        "--data",
        "data/mnist5k.safetensors",
    ];
    run(&[&base[..], rest].concat())
}

#[test]
fn auto_writes_a_report_of_every_candidate_the_chosen_model_and_the_uniform_baseline() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-auto-{}", std::process::id()));
    let report = dir.join("r.json");
    let plot = dir.join("r.svg");
    let out = auto(&[
        "--budget",
        "macs/3",
        "--iteration-epochs",
        "0",
        "--finetune-epochs",
        "0",
        "--report",
        report.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
        "--out",
        dir.join("model").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "lenet5: macs <= 0.3333 of dense (3.00x fewer) with simulated-annealing + l1-norm"
        ),
        "{text}"
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["dense"]["macs"], 416_520);
    let chosen = r["chosen"]["macs"].as_u64().unwrap();
    assert!(chosen * 3 <= 416_520, "{chosen}");
    assert!(r["uniform"]["macs"].as_u64().unwrap() <= chosen);
    let candidates = r["candidates"].as_array().unwrap();
    assert!(candidates.iter().any(|c| c["phase"] == "search"));
    for c in candidates {
        for key in ["ratios", "macs", "params", "metric", "within_budget"] {
            assert!(c.get(key).is_some(), "{key}");
        }
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("chosen"));
    assert!(dir.join("model.bpk").is_file() && dir.join("model.plan.json").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn auto_refuses_an_unknown_metric_an_unreachable_budget_and_an_empty_space() {
    let out = auto(&["--budget", "macs/6", "--metric", "acuracy"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown metric 'acuracy' (did you mean 'accuracy'?)"),
        "{}",
        stderr(&out)
    );
    let out = auto(&["--budget", "macs/1000"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot be met: the closest achievable is"),
        "{}",
        stderr(&out)
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-auto-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("none.toml");
    std::fs::write(
        &config,
        "[[config_list]]\nop_types = [\"BatchNorm\"]\nsparse_ratio = 0.5\n",
    )
    .unwrap();
    let out = auto(&["--budget", "macs/2", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the search space is empty"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
