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

/// Issue #15 (FFN pruning raised perplexity 159x): the removal is not the cause. With every
/// 10th FFN channel of every layer masked on gate, up and down, speedup removes exactly that
/// coupled group (gate and up lose the same columns, down the same rows, nothing else changes)
/// and the smaller model's logits equal those of the full model with the channels zeroed.
#[test]
fn ffn_channels_removed_by_speedup_give_the_logits_of_the_model_with_them_zeroed() {
    use burn_compress::core::{Dense, MaskSet, ModuleIndex};
    use burn_compress::graph::capture;
    use burn_compress::speedup::{ConflictPolicy, DependencyGraph, apply};

    let device = Device::flex();
    let file =
        GgufFile::open(&root().join("data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"))
            .unwrap_or_else(|e| panic!("{e}"));
    let model = SmolLm::from_gguf(&file, &device).unwrap();
    let tokenizer = LlamaTokenizer::from_gguf(&file).unwrap();
    let ids: Vec<i64> = tokenizer
        .encode("It is a truth universally acknowledged, that a single man in possession")
        .unwrap()
        .into_iter()
        .map(i64::from)
        .collect();
    let tokens =
        || Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [1, ids.len()]), &device);

    // Channels 0, 10, ..., 1530 of each layer's 1536: 154 per layer.
    let cut = |c: usize| c.is_multiple_of(10);
    let mask = |[rows, cols]: [usize; 2], axis: usize| {
        let data = (0..rows * cols)
            .map(|i| u8::from(!cut(if axis == 0 { i / cols } else { i % cols })))
            .collect();
        Dense::new(vec![rows, cols], data)
    };
    let mut masks = MaskSet::default();
    for (n, layer) in model.model.layers.iter().enumerate() {
        let p = |name: &str| format!("model.layers.{n}.mlp.{name}_proj.weight");
        masks.insert(p("gate"), mask(layer.mlp.gate_proj.weight.dims(), 1));
        masks.insert(p("up"), mask(layer.mlp.up_proj.weight.dims(), 1));
        masks.insert(p("down"), mask(layer.mlp.down_proj.weight.dims(), 0));
    }
    let graph = capture(&model, |m, d| {
        m.forward(Tensor::from_data(
            TensorData::new(vec![504i64, 3575, 282], [1, 3]),
            d,
        ))
    })
    .unwrap();
    let report = DependencyGraph::build(&graph)
        .unwrap()
        .plan(
            &masks,
            &ModuleIndex::from_module(&model),
            ConflictPolicy::Union,
        )
        .unwrap();
    assert_eq!(report.removed, 30 * 154);
    assert!(report.skipped.is_empty());
    let kept: Vec<usize> = (0..1536).filter(|&c| !cut(c)).collect();
    assert_eq!(
        report.plan.params.len(),
        30 * 3,
        "only gate, up and down shrink"
    );
    for (path, axes) in &report.plan.params {
        let axis = if path.ends_with("down_proj.weight") {
            0
        } else {
            1
        };
        assert!(path.contains(".mlp."), "{path}");
        assert_eq!(axes.len(), 1, "{path}");
        assert_eq!((axes[0].axis, &axes[0].kept), (axis, &kept), "{path}");
    }
    let small = apply(&model, &report.plan).unwrap();
    assert_eq!(
        small.model.layers[7].mlp.gate_proj.weight.dims(),
        [576, 1382]
    );
    assert_eq!(
        small.model.layers[7].mlp.down_proj.weight.dims(),
        [1382, 576]
    );

    let zeroed = masks.apply_hard(&model).unwrap();
    let a = zeroed
        .forward(tokens())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let b = small
        .forward(tokens())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let dense = model
        .forward(tokens())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(a.len(), ids.len() * 49152);
    let max_diff =
        |x: &[f32], y: &[f32]| x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(
        max_diff(&a, &b) < 1e-3,
        "removed vs zeroed: {}",
        max_diff(&a, &b)
    );
    // The masks do change the model (the comparison is not between two dense models).
    assert!(
        max_diff(&a, &dense) > 0.1,
        "zeroed vs dense: {}",
        max_diff(&a, &dense)
    );
}

#[test]
fn the_real_smollm2_exported_to_onnx_gives_burns_logits_in_tract() {
    use burn_compress::graph::capture;
    use burn_compress::graph::onnx::{OnnxOptions, export};
    use burn_compress::zoo::Llama;
    let device = Device::flex();
    let path = root().join("data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    let model = Llama::load(&path, &device).unwrap();
    let graph = capture(&model, |m, d| m.forward(Tensor::<2, Int>::zeros([1, 8], d))).unwrap();
    let bytes = export(&graph, &model, &OnnxOptions::default()).unwrap();
    // Two sequences (the batch is dynamic) of real token ids.
    let ids: Vec<i64> = vec![
        504, 2365, 282, 260, 4054, 30, 378, 253, 1699, 28, 357, 1010, 314, 8089, 2051, 30,
    ];
    let x = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [2, 8]), &device);
    let want: Vec<f32> = model.forward(x).into_data().try_to_vec().unwrap();
    let input = tract_onnx::prelude::Tensor::from_shape(&[2, 8], &ids).unwrap();
    let got = crate::onnx::run_tract(&bytes, input);
    assert_eq!(got.len(), 2 * 8 * 49_152);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = want
        .iter()
        .zip(&got)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-4 * scale, "max |burn - tract| {diff} of {scale}");
}
