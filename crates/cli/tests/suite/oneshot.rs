//! One-shot methods from `prune` / `quantize` (`--calib`, `--save-model`) on the real
//! all-MiniLM-L6-v2 (`data/external/minilm-l6`, `cargo xtask fetch minilm-l6`) and, layer by
//! layer on MNIST images, on the bundled LeNet-5; the saved model read back by `eval` and
//! `export` (W8A8's per-token activations as ONNX ops), and bad input.

use std::path::{Path, PathBuf};
use std::process::Output;

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn_compress::core::oneshot::ActivationQuant;
use burn_compress::oneshot::{self, OneShotMeta};
use burn_compress::quant::load_quantized;
use burn_compress::zoo::{LeNet5, MiniLm, load_pytorch_safetensors};
use serde_json::Value;

use crate::cli::{refused, root, run, stderr, stdout};

const MINILM: &str = "data/external/minilm-l6";
const LENET5: &str = "data/lenet5-mnist5k.safetensors";
const MNIST: &str = "data/mnist5k.safetensors";
const EMMA: &str = "data/external/austen/emma.txt";

/// A fresh folder for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-oneshot-{}-{name}", std::process::id()));
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

/// `export --arch ARCH --model SAVED --input-shape SHAPE --out OUT`.
fn export_model(arch: &str, saved: &Path, shape: &str, out: &Path) -> Output {
    run(&[
        "export",
        "--arch",
        arch,
        "--model",
        saved.to_str().unwrap(),
        "--input-shape",
        shape,
        "--out",
        out.to_str().unwrap(),
    ])
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

    // `export` writes it (the zeros stay zeros in the ONNX initializers).
    let onnx = dir.join("x.onnx");
    let out = export_model("minilm-l6", &saved, "1,16", &onnx);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::metadata(&onnx).unwrap().len() > 10_000_000);
}

#[test]
fn rtn_w8a8_records_int8_activations_that_eval_applies_and_export_writes() {
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

    // `export` writes the quantization as ONNX ops: per token (ReduceMax over the last axis)
    // on the 4 distinct block Linear inputs of each of the 6 layers (q, k, v share one).
    let onnx = dir.join("q.onnx");
    let out = export_model("minilm-l6", &saved, "1,8", &onnx);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("every block Linear's input quantized per token to int8"),
        "{}",
        stdout(&out)
    );
    let bytes = std::fs::read(&onnx).unwrap();
    let count = |needle: &[u8]| bytes.windows(needle.len()).filter(|w| *w == needle).count();
    // Each node's op type and its name (`ReduceMax_<index>`).
    assert_eq!(count(b"ReduceMax"), 2 * 24);
    assert_eq!(count(b"ReduceMax_"), 24);
    // A QDQ export of it would quantize the activations twice.
    let out = run(&[
        "export",
        "--arch",
        "minilm-l6",
        "--model",
        saved.to_str().unwrap(),
        "--input-shape",
        "1,8",
        "--calibration",
        "cal.json",
        "--out",
        dir.join("never.onnx").to_str().unwrap(),
    ]);
    refused(&out, "a QDQ export would quantize them again per tensor");
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
    // An image model calibrates on images, layer by layer: a text is not a data set, block
    // options do not apply, AWQ needs blocks, an ignored layer must exist.
    let lenet = |config: &str, rest: &[&str]| prune("lenet5", LENET5, config, rest);
    let o = lenet(&wanda, &["--calib", &short]);
    refused(&o, "not an image folder, a safetensors image set");
    assert!(stderr(&o).contains(&short), "{}", stderr(&o));
    let o = lenet(&wanda, &["--calib", MNIST, "--calib-seqlen", "8"]);
    refused(
        &o,
        "--calib-seqlen is for transformers' blocks; 'lenet5' is compressed layer by layer",
    );
    let o = lenet(&wanda, &[]);
    refused(&o, "'wanda' calibrates on images: give --calib PATH");
    let o = lenet(&wanda, &["--calib", MNIST, "--calib-samples", "5000"]);
    refused(
        &o,
        "5000 calibration images asked for (--calib-samples), the data set holds 4000",
    );
    let typo = file(
        &dir,
        "typo.toml",
        "[algorithm]\nsparsity = 0.5\nignore = [\"conv3\"]\n",
    );
    let o = lenet(&typo, &["--calib", MNIST, "--calib-samples", "8"]);
    refused(&o, "ignore: the model's forward calls no layer 'conv3'");
    let o = run(&[
        "quantize",
        "--arch",
        "lenet5",
        "--weights",
        LENET5,
        "--algorithm",
        "awq",
        "--calib",
        MNIST,
    ]);
    refused(
        &o,
        "'awq' balances each Linear against the norm or Linear feeding it",
    );
    // A token model without pretrained weights.
    let o = prune("tiny-transformer", LENET5, &wanda, &["--calib", &short]);
    refused(&o, "'tiny-transformer' takes token ids");
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

/// `COMMAND --arch lenet5` with one-shot `algorithm` and `config`, calibrated on `samples`
/// MNIST-5k training images, the model saved under `dir`: the JSON report and the model path.
fn lenet_oneshot(
    command: &str,
    dir: &Path,
    algorithm: &str,
    config: &str,
    samples: &str,
) -> (Value, PathBuf) {
    let saved = dir.join(format!("{algorithm}.bpk"));
    let report = json(&[
        command,
        "--arch",
        "lenet5",
        "--weights",
        LENET5,
        "--algorithm",
        algorithm,
        "--config",
        config,
        "--calib",
        MNIST,
        "--calib-samples",
        samples,
        "--save-model",
        saved.to_str().unwrap(),
        "--json",
    ]);
    (report, saved)
}

/// Test-split top-1 of LeNet-5 (`eval --weights` or `--model`).
fn lenet_accuracy(flag: &str, path: &Path) -> f64 {
    let eval = json(&[
        "eval",
        "--arch",
        "lenet5",
        flag,
        path.to_str().unwrap(),
        "--data",
        MNIST,
        "--json",
    ]);
    eval["metrics"]["top1"].as_f64().unwrap()
}

#[test]
fn sparsegpt_prunes_lenet5_layer_by_layer_on_mnist_far_better_than_magnitude() {
    let dir = temp_dir("lenet");
    let config = file(&dir, "sparse.toml", "[algorithm]\nsparsity = 0.7\n");
    let prune = |algorithm: &str| lenet_oneshot("prune", &dir, algorithm, &config, "256");
    let (report, sparsegpt) = prune("sparsegpt");
    assert_eq!(report["arch"], "lenet5");
    assert_eq!(report["calibration"]["samples"], 256);
    assert_eq!(
        report["calibration"]["data_images"], 4000,
        "the training split"
    );
    let layers: Vec<(&str, u64, u64)> = report["linears"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let s = l["shape"].as_array().unwrap();
            let n = s[0].as_u64().unwrap() * s[1].as_u64().unwrap();
            (l["path"].as_str().unwrap(), n, l["zeros"].as_u64().unwrap())
        })
        .collect();
    let paths: Vec<&str> = layers.iter().map(|l| l.0).collect();
    assert_eq!(paths, ["conv1", "conv2", "fc1", "fc2", "fc3"]);
    // conv1 is [6, 1 x 5 x 5], conv2 [16, 6 x 5 x 5].
    assert_eq!((layers[0].1, layers[1].1), (150, 2400));
    for (path, n, zeros) in &layers {
        let s = *zeros as f64 / *n as f64;
        assert!((s - 0.7).abs() < 0.01, "{path}: {zeros} of {n}");
    }
    let (_, magnitude) = prune("magnitude");

    let dense = lenet_accuracy("--weights", Path::new(LENET5));
    let model = |p: &Path| lenet_accuracy("--model", p);
    let (s, m) = (model(&sparsegpt), model(&magnitude));
    eprintln!("lenet5 70%: dense {dense:.4}, sparsegpt {s:.4}, magnitude {m:.4}");
    assert!(s > m + 0.1, "sparsegpt {s} vs magnitude {m}");
    assert!(s > dense - 0.05, "sparsegpt {s} vs dense {dense}");

    // `export` writes the pruned model.
    let onnx = dir.join("sparsegpt.onnx");
    let out = export_model("lenet5", &sparsegpt, "1,1,28,28", &onnx);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::metadata(&onnx).unwrap().len() > 10_000);
}

#[test]
fn gptq_quantizes_every_lenet5_row_to_its_int3_grid() {
    let dir = temp_dir("lenet-gptq");
    let config = file(
        &dir,
        "int3.toml",
        "[algorithm.weights]\nnum_bits = 3\nstrategy = \"channel\"\nsymmetric = true\n",
    );
    let quantize = |algorithm: &str| {
        let (report, saved) = lenet_oneshot("quantize", &dir, algorithm, &config, "128");
        assert_eq!(report["weights"], "int3 symmetric, per channel");
        assert_eq!(report["linears"].as_array().unwrap().len(), 5);
        saved
    };
    let (gptq, rtn) = (quantize("gptq"), quantize("rtn"));
    // Every output row of every layer holds at most 2^3 distinct values.
    let device = Device::flex();
    let dense =
        load_pytorch_safetensors(LeNet5::new(&device), &root().join(LENET5), "lenet5").unwrap();
    let q = load_quantized(dense.clone(), &gptq).unwrap();
    let rows_of = |w: Vec<f32>, out: usize| -> Vec<Vec<f32>> {
        let cols = w.len() / out;
        (0..out)
            .map(|o| w[o * cols..(o + 1) * cols].to_vec())
            .collect()
    };
    let convs = [(&q.conv1, &dense.conv1), (&q.conv2, &dense.conv2)];
    // (quantized rows, dense rows) per layer.
    type Rows = Vec<Vec<f32>>;
    let mut layers: Vec<(Rows, Rows)> = convs
        .iter()
        .map(|(a, b)| {
            let out = a.weight.val().dims()[0];
            let host =
                |c: &burn::nn::conv::Conv2d| c.weight.val().into_data().iter::<f32>().collect();
            (rows_of(host(a), out), rows_of(host(b), out))
        })
        .collect();
    for (a, b) in [
        (&q.fc1, &dense.fc1),
        (&q.fc2, &dense.fc2),
        (&q.fc3, &dense.fc3),
    ] {
        layers.push((rows(&a.weight), rows(&b.weight)));
    }
    for (l, (qr, dr)) in layers.iter().enumerate() {
        assert_ne!(qr, dr, "layer {l} unchanged");
        for (o, row) in qr.iter().enumerate() {
            let mut distinct: Vec<u32> = row.iter().map(|v| v.to_bits()).collect();
            distinct.sort_unstable();
            distinct.dedup();
            assert!(
                distinct.len() <= 8,
                "layer {l} row {o}: {} values",
                distinct.len()
            );
        }
    }
    let model = |p: &Path| lenet_accuracy("--model", p);
    let (g, r) = (model(&gptq), model(&rtn));
    let dense_acc = lenet_accuracy("--weights", Path::new(LENET5));
    eprintln!("lenet5 int3: dense {dense_acc:.4}, gptq {g:.4}, rtn {r:.4}");
    assert!(g >= r, "gptq {g} vs rtn {r}");
}

#[test]
fn a_wanda_pruned_smollm2_is_exported_with_its_gguf_architecture() {
    const GGUF: &str = "data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf";
    let dir = temp_dir("smollm2");
    let config = file(&dir, "wanda.toml", "[algorithm]\nsparsity = 0.5\n");
    let saved = dir.join("w.bpk");
    let report = json(&[
        "prune",
        "--arch",
        "smollm2-135m",
        "--weights",
        GGUF,
        "--algorithm",
        "wanda",
        "--config",
        &config,
        "--calib",
        EMMA,
        "--calib-samples",
        "2",
        "--calib-seqlen",
        "16",
        "--save-model",
        saved.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(report["linears"].as_array().unwrap().len(), 30 * 7);
    assert_eq!(report["sparsity"].as_f64().unwrap(), 0.5);
    let onnx = dir.join("w.onnx");
    let export = |rest: &[&str]| {
        let args = [
            &[
                "export",
                "--arch",
                "smollm2-135m",
                "--model",
                saved.to_str().unwrap(),
                "--out",
                onnx.to_str().unwrap(),
            ][..],
            rest,
        ]
        .concat();
        run(&args)
    };
    refused(
        &export(&["--input-shape", "1,8"]),
        "give --gguf PATH, the smollm2-135m .gguf that gives its architecture",
    );
    refused(
        &export(&["--input-shape", "1,8,3", "--gguf", GGUF]),
        "--input-shape [1, 8, 3]: smollm2-135m takes token ids [batch, seq]",
    );
    assert!(!onnx.exists());
    let out = export(&["--input-shape", "1,8", "--gguf", GGUF]);
    assert!(out.status.success(), "{}", stderr(&out));
    // 135M f32 weights.
    assert!(std::fs::metadata(&onnx).unwrap().len() > 500_000_000);
    std::fs::remove_dir_all(&dir).unwrap();
}
