//! SmolLM2-135M (the real GGUF, `cargo xtask fetch smollm2-135m`) with int8 weights: every
//! Linear weight per output channel and the tied embedding per token row, symmetric max-abs
//! scales on Burn's `Q8S` (`compress_quant::quantize_weights`, as the `smollm2` example does).
//! The int8 values are exactly `round(w / s) * s` with `s = max|w| / 127` per channel, the file
//! is about a quarter of the float one, and the perplexity on two windows of 128 tokens of
//! Persuasion (from "Chapter 1", held out: no calibration data is used) stays within 3% of the
//! float model's (issue #15's goal).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::DType;
use burn_compress::core::paths::{PathMapper, PathVisitor, map_params, visit_params};
use burn_compress::quant::{
    AffinePolicy, QuantBits, QuantLevel, WeightQuant, burnpack_size, quantize_weights,
    quantized_params,
};
use burn_compress::zoo::gguf::GgufFile;
use burn_compress::zoo::{LlamaTokenizer, SmolLm, perplexity};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The names of the rank-2 parameters (the 7 x 30 projections and the embedding).
fn matrices(model: &SmolLm) -> Vec<String> {
    struct Matrices(Vec<String>);
    impl PathVisitor for Matrices {
        fn visit<const D: usize>(&mut self, path: &str, _: &Param<Tensor<D>>) {
            if D == 2 {
                self.0.push(path.to_string());
            }
        }
    }
    let mut found = Matrices(Vec::new());
    visit_params(model, &mut found);
    found.0
}

struct Dequantize;
impl PathMapper for Dequantize {
    fn map<const D: usize>(&mut self, _: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| match t.dtype() {
            DType::QFloat(_) => t.dequantize(),
            _ => t,
        })
    }
}

fn host(w: &Param<Tensor<2>>) -> (Vec<f32>, [usize; 2]) {
    let t = w.val();
    let dims = t.dims();
    (t.into_data().try_to_vec::<f32>().unwrap(), dims)
}

#[test]
fn smollm2_int8_per_channel_weights_keep_perplexity_within_3_percent_of_float() {
    let device = Device::flex();
    let file =
        GgufFile::open(&root().join("data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"))
            .unwrap_or_else(|e| panic!("{e}"));
    let model = SmolLm::from_gguf(&file, &device).unwrap();
    let tokenizer = LlamaTokenizer::from_gguf(&file).unwrap();
    let text = std::fs::read_to_string(root().join("data/external/austen/persuasion.txt"))
        .unwrap_or_else(|e| panic!("persuasion.txt (cargo xtask fetch austen): {e}"));
    let from = text.find("Chapter 1").unwrap();
    let ids = tokenizer.encode(&text[from..from + 2000]).unwrap();
    assert!(ids.len() >= 256, "{} tokens", ids.len());

    let names = matrices(&model);
    assert_eq!(names.len(), 30 * 7 + 1);
    let plan: BTreeMap<String, WeightQuant> = names
        .iter()
        .map(|path| {
            let level = if path == "model.embed_tokens.weight" {
                QuantLevel::PerAxis(0)
            } else {
                QuantLevel::PerChannel
            };
            (path.clone(), WeightQuant::new(QuantBits::Q8S, level))
        })
        .collect();
    let quantized = quantize_weights(&model, &plan, AffinePolicy::Error).unwrap();
    let schemes = quantized_params(&quantized);
    assert_eq!(schemes.len(), names.len(), "every matrix, no norm");
    assert!(schemes.keys().all(|k| names.contains(k)));

    // A quarter of the bytes, plus the scales (one f32 per block of at most 255 values).
    let (float_bytes, int8_bytes) = (
        burnpack_size(&model).unwrap(),
        burnpack_size(&quantized).unwrap(),
    );
    let ratio = float_bytes as f64 / int8_bytes as f64;
    eprintln!("burnpack: f32 {float_bytes} B, int8 {int8_bytes} B ({ratio:.2}x smaller)");
    assert!((3.85..4.0).contains(&ratio), "{ratio}");

    let int8 = map_params(quantized, &mut Dequantize);
    // Per output channel (Burn's Linear is [in, out]: a column): the dequantized weight is an
    // integer multiple of s = max|w| / 127 within [-127 s, 127 s], at most s / 2 from w.
    let (w, [rows, cols]) = host(&model.model.layers[3].mlp.down_proj.weight);
    let (q, _) = host(&int8.model.layers[3].mlp.down_proj.weight);
    for c in 0..cols {
        let col = |v: &[f32]| (0..rows).map(|r| v[r * cols + c]).collect::<Vec<_>>();
        let (wc, qc) = (col(&w), col(&q));
        let s = wc.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
        for (a, b) in wc.iter().zip(&qc) {
            let k = b / s;
            assert!(
                (k - k.round()).abs() < 1e-3 && k.abs() <= 127.001,
                "{b} / {s}"
            );
            assert!(
                (a - b).abs() <= s * 0.5001,
                "column {c}: {a} -> {b} (s {s})"
            );
        }
    }
    // The embedding: one scale per token row.
    let (e, [_, d]) = host(&model.model.embed_tokens.weight);
    let (eq, _) = host(&int8.model.embed_tokens.weight);
    for row in [0usize, 1589, 49151] {
        let r = &e[row * d..(row + 1) * d];
        let s = r.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
        for (a, b) in r.iter().zip(&eq[row * d..(row + 1) * d]) {
            assert!((a - b).abs() <= s * 0.5001, "row {row}: {a} -> {b} (s {s})");
        }
    }

    let dense = perplexity(&model, &ids, 128, Some(256)).unwrap();
    let quant = perplexity(&int8, &ids, 128, Some(256)).unwrap();
    let change = quant.perplexity / dense.perplexity - 1.0;
    eprintln!(
        "Persuasion, 2 x 128 tokens: perplexity f32 {:.4}, int8 {:.4} ({:+.2}%)",
        dense.perplexity,
        quant.perplexity,
        change * 100.0
    );
    assert_eq!(quant.scored, 2 * 127);
    assert!(
        change.abs() < 0.03,
        "int8 perplexity {} vs float {} ({:+.2}%)",
        quant.perplexity,
        dense.perplexity,
        change * 100.0
    );
    // The quantization changes something: not the float model under another name.
    assert_ne!(quant.mean_nll, dense.mean_nll);
}
