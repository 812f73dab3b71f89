//! One-shot methods from `prune` / `quantize` (`--calib`, `--save-model`) on the real
//! all-MiniLM-L6-v2 (`data/external/minilm-l6`, `cargo xtask fetch minilm-l6`), the saved
//! model read back by `eval` (and refused by `export` when its activations are quantized), and
//! bad input.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn_compress::core::oneshot::ActivationQuant;
use burn_compress::oneshot::{self, OneShotMeta};
use burn_compress::quant::load_quantized;
use burn_compress::zoo::MiniLm;
use serde_json::Value;

use crate::cli::{refused, root, run, stderr};

const MINILM: &str = "data/external/minilm-l6";
const EMMA: &str = "data/external/austen/emma.txt";

/// A fresh folder for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bc-oneshot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `text` written to `dir/name`.
fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The JSON of a command that must succeed.
fn json(args: &[&str]) -> Value {
    let out = run(args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

/// The six Linears of every encoder layer, by path.
fn encoder_linears(m: &MiniLm) -> Vec<(String, &Linear)> {
    m.encoder
        .layer
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            [
                ("attention.self.query", &l.attention.self_attn.query),
                ("attention.self.key", &l.attention.self_attn.key),
                ("attention.self.value", &l.attention.self_attn.value),
                ("attention.output.dense", &l.attention.output.dense),
                ("intermediate.dense", &l.intermediate.dense),
                ("output.dense", &l.output.dense),
            ]
            .map(|(name, lin)| (format!("encoder.layer.{i}.{name}"), lin))
        })
        .collect()
}

/// A Linear's weight as `[out][in]` rows (Burn stores `[in, out]`).
fn rows(weight: &Param<Tensor<2>>) -> Vec<Vec<f32>> {
    let [d_in, d_out] = weight.val().dims();
    let v: Vec<f32> = weight.val().into_data().iter::<f32>().collect();
    (0..d_out)
        .map(|o| (0..d_in).map(|i| v[i * d_out + o]).collect())
        .collect()
}

const PAIRS: &str = "A man is eating food.\tA man is eating a piece of bread.\n\
                     A man is eating food.\tA man is riding a horse.\n";

#[test]
fn wanda_prunes_half_of_every_row_of_every_minilm_encoder_linear_and_eval_reads_it() {
    let dir = temp_dir("wanda");
    let config = file(&dir, "wanda.toml", "[algorithm]\nsparsity = 0.5\n");
    let calib = EMMA;
    let saved = dir.join("x.bpk");
    let report = json(&[
        "prune",
        "--arch",
        "minilm-l6",
        "--weights",
        MINILM,
        "--algorithm",
        "wanda",
        "--config",
        &config,
        "--calib",
        calib,
        "--calib-samples",
        "4",
        "--calib-seqlen",
        "32",
        "--save-model",
        saved.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(report["algorithm"], "wanda");
    assert_eq!(report["kind"], "one-shot pruner");
    assert_eq!(report["calibration"]["samples"], 4);
    assert_eq!(report["calibration"]["seq_len"], 32);
    let linears = report["linears"].as_array().unwrap();
    assert_eq!(linears.len(), 36, "6 layers x 6 Linears");
    for l in linears {
        let shape = l["shape"].as_array().unwrap();
        let n = shape[0].as_u64().unwrap() * shape[1].as_u64().unwrap();
        assert_eq!(l["zeros"].as_u64().unwrap(), n / 2, "{l}");
        assert_eq!(l["sparsity"].as_f64().unwrap(), 0.5, "{l}");
    }
    assert_eq!(report["sparsity"].as_f64().unwrap(), 0.5);
    let kinds: Vec<&str> = report["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense"
        ]
    );

    // The saved weights: in every row of every encoder Linear exactly half are zero, and Wanda
    // (no weight update) keeps the others as they were.
    let device = Device::flex();
    let dense = MiniLm::load(&root().join(MINILM), &device).unwrap();
    let pruned = load_quantized(dense.clone(), &saved).unwrap();
    for ((path, p), (_, d)) in encoder_linears(&pruned)
        .into_iter()
        .zip(encoder_linears(&dense))
    {
        for (o, (pr, dr)) in rows(&p.weight).iter().zip(rows(&d.weight)).enumerate() {
            let zeros = pr.iter().filter(|&&x| x == 0.0).count();
            assert_eq!(zeros, pr.len() / 2, "{path} row {o}");
            assert!(
                pr.iter().zip(&dr).all(|(&a, &b)| a == 0.0 || a == b),
                "{path} row {o}: a kept weight changed"
            );
        }
    }
    let meta = OneShotMeta::read(&saved).unwrap().expect("the sidecar");
    assert_eq!(meta.algorithm, "wanda");
    assert_eq!(meta.activation_bits, None);
    assert_eq!(meta.calibration, [4, 32]);

    // `eval` reads it (float activations), against the dense model.
    let pairs = file(&dir, "pairs.tsv", PAIRS);
    let eval = json(&[
        "eval",
        "--arch",
        "minilm-l6",
        "--model",
        saved.to_str().unwrap(),
        "--tokenizer",
        MINILM,
        "--data",
        &pairs,
        "--reference",
        MINILM,
        "--json",
    ]);
    assert_eq!(eval["task"], "sentence-similarity");
    assert_eq!(eval["per_item"].as_array().unwrap().len(), 2);
    assert!(eval["metrics"].get("activations").is_none(), "{eval}");
    let fidelity = eval["metrics"]["reference_cosine"].as_f64().unwrap();
    assert!(
        fidelity > 0.5 && fidelity < 0.9999,
        "pruned vs dense embeddings: {fidelity}"
    );
}

#[test]
fn rtn_w8a8_records_int8_activations_that_eval_applies_and_export_refuses() {
    let dir = temp_dir("w8a8");
    let config = file(
        &dir,
        "w8a8.toml",
        "[algorithm]\nname = \"rtn\"\nscheme = \"W8A8\"\n",
    );
    let calib = EMMA;
    let saved = dir.join("q.bpk");
    let report = json(&[
        "quantize",
        "--arch",
        "minilm-l6",
        "--weights",
        MINILM,
        "--config",
        &config,
        "--calib",
        calib,
        "--calib-samples",
        "2",
        "--calib-seqlen",
        "16",
        "--save-model",
        saved.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(report["algorithm"], "rtn");
    assert_eq!(report["activation_bits"], 8);
    assert_eq!(report["activations"], "int8 per token");
    assert_eq!(report["weights"], "int8 symmetric, per channel");
    assert_eq!(report["linears"].as_array().unwrap().len(), 36);
    let meta = OneShotMeta::read(&saved).unwrap().expect("the sidecar");
    assert_eq!(meta.activation_bits, Some(8));
    assert_eq!(meta.algorithm, "rtn");

    let pairs = file(&dir, "pairs.tsv", PAIRS);
    let eval = json(&[
        "eval",
        "--arch",
        "minilm-l6",
        "--model",
        saved.to_str().unwrap(),
        "--tokenizer",
        MINILM,
        "--data",
        &pairs,
        "--json",
    ]);
    assert_eq!(eval["metrics"]["activations"], "int8 per token");
    // The cosines are those of the saved model with int8 per-token activations, not with float
    // ones.
    let device = Device::flex();
    let model =
        load_quantized(MiniLm::load(&root().join(MINILM), &device).unwrap(), &saved).unwrap();
    let tokenizer = MiniLm::tokenizer(&root().join(MINILM)).unwrap();
    let sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
    ];
    let cosines = |a: Option<ActivationQuant>| {
        let e = oneshot::minilm_embeddings(&model, &tokenizer, &sentences, a).unwrap();
        let cos = |x: &[f32], y: &[f32]| {
            let dot: f64 = x
                .iter()
                .zip(y)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let n = |v: &[f32]| v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
            dot / (n(x) * n(y)).max(1e-12)
        };
        [cos(&e[0], &e[1]), cos(&e[0], &e[2])]
    };
    let int8 = cosines(Some(ActivationQuant::PerTokenDynamic { bits: 8 }));
    let float = cosines(None);
    let got: Vec<f64> = eval["per_item"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["cosine"].as_f64().unwrap())
        .collect();
    for ((g, q), f) in got.iter().zip(int8).zip(float) {
        assert!((g - q).abs() < 1e-9, "eval {g} vs int8 activations {q}");
        assert!(
            (g - f).abs() > 1e-7,
            "eval {g} equals the float-activation cosine {f}"
        );
    }

    let onnx = dir.join("q.onnx");
    let out = run(&[
        "export",
        "--arch",
        "minilm-l6",
        "--model",
        saved.to_str().unwrap(),
        "--input-shape",
        "1,8",
        "--out",
        onnx.to_str().unwrap(),
    ]);
    refused(&out, "int8 per-token activations");
    assert!(
        stderr(&out).contains("cannot quantize activations"),
        "{}",
        stderr(&out)
    );
    assert!(!onnx.exists());
}

#[test]
fn one_shot_bad_input_is_refused_naming_the_culprit() {
    let dir = temp_dir("bad");
    let wanda = file(&dir, "wanda.toml", "[algorithm]\nsparsity = 0.5\n");
    let prune = |arch: &str, weights: &str, config: &str, rest: &[&str]| {
        let args = [
            &[
                "prune",
                "--arch",
                arch,
                "--weights",
                weights,
                "--algorithm",
                "wanda",
                "--config",
                config,
            ][..],
            rest,
        ]
        .concat();
        run(&args)
    };
    // A calibration text shorter than one sample: the facade's TooShort, naming the file.
    let short = file(&dir, "short.txt", "three short words");
    let o = prune(
        "minilm-l6",
        MINILM,
        &wanda,
        &["--calib", &short, "--calib-seqlen", "32"],
    );
    refused(
        &o,
        "shorter than one sample of 33 (--calib-seqlen 32 plus one)",
    );
    assert!(stderr(&o).contains(&short), "{}", stderr(&o));
    // "n:m" with n > m: the key named.
    let nm = file(
        &dir,
        "nm.toml",
        "[algorithm]\nname = \"sparsegpt\"\nmask_structure = \"3:2\"\n",
    );
    let o = run(&[
        "prune",
        "--arch",
        "minilm-l6",
        "--weights",
        MINILM,
        "--config",
        &nm,
        "--calib",
        &short,
    ]);
    refused(&o, "mask_structure");
    assert!(stderr(&o).contains("3:2"), "{}", stderr(&o));
    // An image classifier.
    let o = prune(
        "lenet5",
        "data/lenet5-mnist5k.safetensors",
        &wanda,
        &["--calib", &short],
    );
    refused(&o, "'lenet5' is not a transformer");
    assert!(
        stderr(&o).contains("smollm2-135m and minilm-l6"),
        "{}",
        stderr(&o)
    );
    // A config that cannot be read is not skipped (the method would run with defaults).
    let o = prune(
        "minilm-l6",
        MINILM,
        "no-such-config.toml",
        &["--calib", &short],
    );
    refused(&o, "reading the config 'no-such-config.toml'");
    // No calibration text.
    let o = prune("minilm-l6", MINILM, &wanda, &[]);
    refused(&o, "give --calib PATH");
    // Rules a one-shot method would not read.
    let rules = file(
        &dir,
        "rules.toml",
        "[algorithm]\nname = \"wanda\"\n[[config_list]]\nop_types = [\"Linear\"]\nsparse_ratio = 0.5\n",
    );
    let o = prune("minilm-l6", MINILM, &rules, &["--calib", &short]);
    refused(
        &o,
        "[[config_list]] rules, which one-shot methods ('wanda') do not read",
    );
    // --algorithm and the config naming different methods.
    let o = prune("minilm-l6", MINILM, &nm, &["--calib", &short]);
    refused(&o, "--algorithm 'wanda' but the config");
    // The other command's kind, and the masks flag.
    let o = run(&[
        "quantize",
        "--arch",
        "minilm-l6",
        "--weights",
        MINILM,
        "--algorithm",
        "wanda",
        "--calib",
        &short,
    ]);
    refused(
        &o,
        "'wanda' is a one-shot pruner: run it with `burn-compress prune`",
    );
    let o = prune("minilm-l6", MINILM, &wanda, &["--out", "never.safetensors"]);
    refused(&o, "give --save-model PATH");
    // `quantize --calib` is a path now; the image quantizers' batches moved to --calib-batches.
    let o = run(&[
        "quantize",
        "--arch",
        "lenet5",
        "--weights",
        "data/lenet5-mnist5k.safetensors",
        "--config",
        "configs/lenet5-ptq-int8.toml",
        "--out",
        dir.join("never.bpk").to_str().unwrap(),
        "--calib",
        "2",
    ]);
    refused(&o, "image quantizers take --calib-batches N");
}
