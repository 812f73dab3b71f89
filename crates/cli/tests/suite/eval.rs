//! `burn-compress eval` on the real models (EfficientNet-Lite0, all-MiniLM-L6-v2, SmolLM2-135M)
//! and their data in `data/external/` (`cargo xtask fetch all`), the metrics of
//! `burn_compress::eval`, and bad input.

use std::path::PathBuf;

use burn::prelude::*;
use burn_compress::eval::{ClassLogits, EvalTask, LabelledImages, classification};
use burn_compress::zoo::gguf::GgufFile;
use burn_compress::zoo::{Llama, LlamaTokenizer, perplexity};
use serde_json::Value;

use crate::cli::{refused, root, run, stderr};

const EFFICIENTNET: &str = "data/external/efficientnet-lite0/efficientnet-lite0-57934424.pth";
const MINILM: &str = "data/external/minilm-l6";
const SMOLLM2: &str = "data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf";

/// A fresh folder for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-eval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `burn-compress eval ARGS --json`, which must succeed; its JSON.
fn eval_json(args: &[&str]) -> Value {
    let out = run(&[&["eval"], args, &["--json"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("eval --json prints JSON")
}

fn metric(report: &Value, name: &str) -> f64 {
    report["metrics"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("no metric '{name}' in {report}"))
}

#[test]
fn efficientnet_lite0_gets_17_of_20_top1_all_top5_and_agrees_with_itself() {
    let report = eval_json(&[
        "--arch",
        "efficientnet-lite0",
        "--weights",
        EFFICIENTNET,
        "--data",
        "data/external/foolbox",
        "--reference",
        EFFICIENTNET,
    ]);
    assert_eq!(report["task"], "classification");
    assert_eq!(metric(&report, "top1"), 0.85);
    assert_eq!(metric(&report, "top5"), 1.0);
    assert_eq!(metric(&report, "images"), 20.0);
    assert_eq!(metric(&report, "top1_agreement"), 1.0);
    assert!(metric(&report, "mean_kl").abs() < 1e-6, "{report}");
    let items = report["per_item"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert_eq!(items[0]["name"], "imagenet_00_243.jpg");
    assert_eq!(items[0]["label"], 243);
    let correct = items.iter().filter(|i| i["correct"] == true).count();
    assert_eq!(correct, 17);
}

#[test]
fn minilm_cosines_of_the_issue_pairs_match_sentence_transformers() {
    let dir = temp_dir("minilm");
    let tsv = dir.join("pairs.tsv");
    let a = "A man is eating food.";
    std::fs::write(
        &tsv,
        format!(
            "{a}\tA man is eating a piece of bread.\n{a}\tA man is riding a horse.\n\n\
             {a}\tThe new movie is awesome.\n"
        ),
    )
    .unwrap();
    let report = eval_json(&[
        "--arch",
        "minilm-l6",
        "--weights",
        MINILM,
        "--data",
        tsv.to_str().unwrap(),
    ]);
    assert_eq!(report["task"], "sentence-similarity");
    // The issue's values (sentence-transformers' all-MiniLM-L6-v2).
    let want = [0.7553, 0.2474, -0.0461];
    let items = report["per_item"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for (item, w) in items.iter().zip(want) {
        let got = item["cosine"].as_f64().unwrap();
        assert!((got - w).abs() < 1e-3, "{item}: want {w}");
    }
    // Line numbers count the blank line.
    let lines: Vec<_> = items.iter().map(|i| i["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [1, 2, 4]);
    let mean: f64 = items
        .iter()
        .map(|i| i["cosine"].as_f64().unwrap())
        .sum::<f64>()
        / 3.0;
    assert!((metric(&report, "mean_cosine") - mean).abs() < 1e-12);
}

#[test]
fn smollm2_perplexity_equals_the_zoo_perplexity_on_the_same_tokens() {
    let text = std::fs::read_to_string(root().join("data/external/austen/pride-and-prejudice.txt"))
        .unwrap_or_else(|e| panic!("{e} (run `cargo xtask fetch austen`)"));
    let end = (0..=2000)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap();
    let dir = temp_dir("smollm");
    let file = dir.join("pride.txt");
    std::fs::write(&file, &text[..end]).unwrap();
    let report = eval_json(&[
        "--arch",
        "smollm2-135m",
        "--weights",
        SMOLLM2,
        "--data",
        file.to_str().unwrap(),
        "--window",
        "128",
        "--max-tokens",
        "256",
    ]);
    assert_eq!(report["task"], "perplexity");
    let got = metric(&report, "perplexity");

    let gguf = GgufFile::open(&root().join(SMOLLM2)).unwrap();
    let model = Llama::from_gguf(&gguf, &Device::flex()).unwrap();
    let ids = LlamaTokenizer::from_gguf(&gguf)
        .unwrap()
        .encode(&text[..end])
        .unwrap();
    let want = perplexity(&model, &ids, 128, Some(256)).unwrap();
    assert!(
        (got / want.perplexity - 1.0).abs() < 1e-6,
        "eval {got} vs perplexity {}",
        want.perplexity
    );
    assert!(got.is_finite() && got > 1.0, "{got}");
    assert_eq!(metric(&report, "windows"), 2.0);
    assert_eq!(metric(&report, "scored_tokens"), 254.0);
    assert_eq!(metric(&report, "tokens"), ids.len() as f64);
    let items = report["per_item"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for (item, nll) in items.iter().zip(&want.window_nll) {
        assert!((item["mean_nll"].as_f64().unwrap() - nll).abs() < 1e-6);
    }
}

#[test]
fn a_quantized_lenet5_is_evaluated_against_its_dense_reference() {
    let lenet5 = "data/lenet5-mnist5k.safetensors";
    let dir = temp_dir("lenet5");
    let q = dir.join("lenet5-q8.bpk");
    let out = run(&[
        "quantize",
        "--arch",
        "lenet5",
        "--weights",
        lenet5,
        "--config",
        "configs/lenet5-ptq-int8.toml",
        "--out",
        q.to_str().unwrap(),
        "--calib-batches",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let quantized: Value = serde_json::from_slice(&out.stdout).unwrap();
    let data = "data/mnist5k.safetensors";
    let dense = eval_json(&["--arch", "lenet5", "--weights", lenet5, "--data", data]);
    // PyTorch's accuracy on the MNIST-5k test split (index % 5 == 4), and `quantize`'s.
    assert_eq!(metric(&dense, "top1"), 0.971);
    assert_eq!(
        metric(&dense, "top1"),
        quantized["accuracy_before"].as_f64().unwrap()
    );
    assert_eq!(metric(&dense, "images"), 1000.0);
    let report = eval_json(&[
        "--arch",
        "lenet5",
        "--model",
        q.to_str().unwrap(),
        "--data",
        data,
        "--reference",
        lenet5,
    ]);
    let (agreement, kl) = (
        metric(&report, "top1_agreement"),
        metric(&report, "mean_kl"),
    );
    assert!((0.98..=1.0).contains(&agreement), "{agreement}");
    assert!(
        kl > 0.0 && kl < 0.05,
        "int8 weights move the softmax a little: {kl}"
    );
    assert!((metric(&report, "top1") - 0.971).abs() <= 0.01, "{report}");
}

#[test]
fn classification_metrics_match_numpy() {
    // scripts/reference/eval_metrics.py holds the same logits and labels.
    let images = LabelledImages {
        names: vec!["a".into(), "b".into(), "c".into()],
        labels: vec![5, 0, 3],
        shape: [1, 1, 1],
        pixels: vec![0.0; 3],
    };
    let model = ClassLogits {
        classes: 6,
        values: vec![
            2.0, 1.0, 0.5, -1.0, 0.0, 3.0, //
            0.1, 0.2, 0.3, 0.4, 0.5, 0.6, //
            5.0, -2.0, 1.0, 1.0, 0.0, -1.0,
        ],
    };
    let reference = ClassLogits {
        classes: 6,
        values: vec![
            1.5, 1.0, 0.5, -1.0, 0.0, 2.0, //
            0.6, 0.5, 0.4, 0.3, 0.2, 0.1, //
            4.0, -1.0, 1.0, 2.0, 0.0, -1.0,
        ],
    };
    let report = classification(&images, &model, Some(&reference)).unwrap();
    assert_eq!(report.task, EvalTask::Classification);
    // Printed by `python3 scripts/reference/eval_metrics.py`.
    assert_eq!(report.metric("top1"), Some(1.0 / 3.0));
    assert_eq!(report.metric("top5"), Some(2.0 / 3.0));
    assert_eq!(report.metric("top1_agreement"), Some(2.0 / 3.0));
    let kl = [
        0.08763809122519822,
        0.05797667256218493,
        0.14437945452750825,
    ];
    for (item, want) in report.per_item.iter().zip(kl) {
        assert!(
            (item["kl"].as_f64().unwrap() - want).abs() < 1e-12,
            "{item}"
        );
    }
    assert!((report.metric("mean_kl").unwrap() - 0.09666473943829712).abs() < 1e-12);
    assert_eq!(
        report.per_item[2]["top5"],
        serde_json::json!([0, 2, 3, 4, 5])
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["task"], "classification");

    let wrong = ClassLogits {
        classes: 4,
        values: vec![0.0; 12],
    };
    let err = classification(&images, &model, Some(&wrong)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the reference gives 3 rows of 4 classes, the model 3 rows of 6"
    );
    let err = classification(&images, &wrong, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "label 5 of 'a' is not below the model's 4 classes"
    );
}

#[test]
fn an_image_that_does_not_decode_is_named() {
    let dir = temp_dir("garbage");
    let bad = dir.join("imagenet_00_1.jpg");
    std::fs::write(&bad, b"this is not a jpeg").unwrap();
    let out = run(&[
        "eval",
        "--arch",
        "efficientnet-lite0",
        "--weights",
        EFFICIENTNET,
        "--data",
        dir.to_str().unwrap(),
    ]);
    refused(&out, &format!("image '{}': does not decode", bad.display()));
}

#[test]
fn a_text_shorter_than_one_window_is_refused() {
    let dir = temp_dir("short");
    let file = dir.join("short.txt");
    std::fs::write(&file, "It is a truth universally acknowledged.").unwrap();
    let out = run(&[
        "eval",
        "--arch",
        "smollm2-135m",
        "--weights",
        SMOLLM2,
        "--data",
        file.to_str().unwrap(),
        "--window",
        "64",
    ]);
    refused(
        &out,
        "text of 7 tokens is shorter than one window of 64 tokens",
    );
}

#[test]
fn an_unknown_arch_lists_the_available_ones() {
    let out = run(&["eval", "--arch", "gpt-5", "--weights", "x", "--data", "y"]);
    refused(&out, "unknown architecture 'gpt-5' (available: small-cnn, ");
    refused(&out, "minilm-l6, smollm2-135m)");
}

#[test]
fn a_sentence_pair_line_without_a_tab_names_its_line() {
    let dir = temp_dir("tsv");
    let tsv = dir.join("pairs.tsv");
    std::fs::write(&tsv, "A man eats.\tA man is eating.\nno tab on this line\n").unwrap();
    let out = run(&[
        "eval",
        "--arch",
        "minilm-l6",
        "--weights",
        MINILM,
        "--data",
        tsv.to_str().unwrap(),
    ]);
    refused(
        &out,
        &format!(
            "'{}' line 2: no tab: expected 'sentence<TAB>sentence'",
            tsv.display()
        ),
    );
}
