//! SmolLM2-135M (the real GGUF, `cargo xtask fetch smollm2-135m`) through capture and speedup:
//! the whole decoder is captured on the capture device, and pruning
//! - FFN channels (`mlp.gate_proj` / `mlp.up_proj` outputs with `mlp.down_proj` inputs),
//! - a KV head with its query group (GQA: k and v columns of the KV head, q columns and o rows
//!   of its three query heads), in some layers,
//! - hidden channels across the whole residual stream (embedding columns, every RMSNorm, every
//!   Linear reading or writing the stream, the tied output head),
//!
//! gives a model whose logits equal the masked model's with propagated masks (relative to the
//! largest logit, within 1e-4).

use std::path::Path;
use std::sync::OnceLock;

use burn::prelude::*;
use compress_core::{CompressConfig, Dense, MaskSet, ModuleIndex, prune};
use compress_graph::{Graph, capture, count};
use compress_speedup::{AxisKeep, ConflictPolicy, DependencyGraph, PlanReport, apply};
use compress_zoo::SmolLm;

use crate::common::max_abs_diff;
use crate::groups::L1;

const D: usize = 576;
const FFN: usize = 1536;
const VOCAB: usize = 49152;
const HEAD_DIM: usize = 64;
const PROMPT: [i64; 5] = [504, 3575, 282, 4649, 314];
const SENTENCE: [i64; 12] = [
    1589, 314, 253, 4569, 21902, 14494, 28, 338, 253, 2244, 555, 30,
];

fn ids(v: &[i64], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(v.to_vec(), [1, v.len()]), device)
}

/// The real model, loaded once for the three tests.
fn smollm() -> &'static SmolLm {
    static MODEL: OnceLock<SmolLm> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
        SmolLm::load(&path, &Device::flex()).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn capture_prompt(model: &SmolLm) -> Graph {
    capture(model, |m, d| m.forward(ids(&PROMPT, d))).unwrap()
}

/// Max |sped-up - masked| over the logits of [`SENTENCE`], relative to the largest |logit|.
fn relative_diff(small: &SmolLm, report: &PlanReport, model: &SmolLm) -> f32 {
    let device = Device::flex();
    let propagated = report.plan.to_masks().apply_hard(model).unwrap();
    let x = ids(&SENTENCE, &device);
    let (ours, reference) = (small.forward(x.clone()), propagated.forward(x));
    assert_eq!(ours.dims(), [1, SENTENCE.len(), VOCAB]);
    let scale = reference.clone().abs().max().into_scalar::<f32>().max(1.0);
    let diff = max_abs_diff(ours, reference) / scale;
    eprintln!("max |sped-up - masked| / max |logit| = {diff:.2e}");
    diff
}

/// A mask of `shape` whose `axis` indices in `cut` are zero (rank 2).
fn zero_along(shape: [usize; 2], axis: usize, cut: &[usize]) -> Dense<u8> {
    let data = (0..shape[0] * shape[1])
        .map(|i| {
            let idx = if axis == 0 {
                i / shape[1]
            } else {
                i % shape[1]
            };
            u8::from(!cut.contains(&idx))
        })
        .collect();
    Dense::new(shape.to_vec(), data)
}

fn kept(report: &PlanReport, path: &str) -> Vec<AxisKeep> {
    report.plan.params.get(path).cloned().unwrap_or_default()
}

fn removed_heads(report: &PlanReport, layer: &str) -> Vec<usize> {
    report
        .heads
        .iter()
        .find(|h| h.layer == layer)
        .unwrap_or_else(|| panic!("no head split at {layer}"))
        .removed
        .clone()
}

#[test]
fn smollm2_ffn_channel_pruning_speeds_up_to_the_masked_models_logits() {
    let model = smollm();
    let graph = capture_prompt(model);
    let deps = DependencyGraph::build(&graph).unwrap();
    let index = ModuleIndex::from_module(model);
    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_names_re = ['model\\.layers\\.[0-9]+\\.mlp\\.(gate|up)_proj']\nsparse_ratio = 0.25\n",
    )
    .unwrap();
    let config = deps.auto_dependency_groups(&config, &index).unwrap();
    let outcome = prune(model, &config, &L1).unwrap();
    let report = deps
        .plan(&outcome.masks, &index, ConflictPolicy::Union)
        .unwrap();
    let small = apply(model, &report.plan).unwrap();
    // 25% of 1536 channels leave each of the 30 MLPs; nothing else shrinks.
    for layer in &small.model.layers {
        assert_eq!(layer.mlp.gate_proj.weight.dims(), [576, 1152]);
        assert_eq!(layer.mlp.up_proj.weight.dims(), [576, 1152]);
        assert_eq!(layer.mlp.down_proj.weight.dims(), [1152, 576]);
        assert_eq!(layer.self_attn.q_proj.weight.dims(), [576, 576]);
        assert_eq!((layer.self_attn.heads, layer.self_attn.kv_heads), (9, 3));
    }
    assert_eq!(small.model.embed_tokens.weight.dims(), [49152, 576]);
    let diff = relative_diff(&small, &report, model);
    assert!(
        diff < 1e-4,
        "sped-up logits differ from the masked model's by {diff} (relative)"
    );
    let (before, after) = (count(&graph), count(&capture_prompt(&small)));
    eprintln!(
        "SmolLM2 FFN 25% pruned: MACs {} -> {}, params {} -> {}",
        before.macs, after.macs, before.params, after.params
    );
    // Per token: 30 x (q, o: 576x576; k, v: 576x192; gate, up, down: 576x1536) = 106,168,320
    // plus the tied head 576x49152 = 28,311,552; per layer the 5-token attention adds
    // 2 x 9 heads x 5 x 5 x 64 = 28,800. Params: embedding 28,311,552 + 30 x (3,538,944
    // + two norms of 576) + the final norm.
    assert_eq!(before.macs, 5 * (106_168_320 + 28_311_552) + 30 * 28_800);
    assert_eq!(before.params, 28_311_552 + 30 * (3_538_944 + 1152) + 576);
    // 384 channels of gate, up and down leave each layer: 30 x 3 x 576 x 384 per token.
    let ffn_removed = 30 * 3 * 576 * 384;
    assert_eq!(after.macs, before.macs - 5 * ffn_removed);
    assert_eq!(after.params, before.params - ffn_removed);
}

#[test]
fn smollm2_a_kv_head_leaves_with_its_query_group_and_the_logits_are_unchanged() {
    let model = smollm();
    let graph = capture_prompt(model);
    let deps = DependencyGraph::build(&graph).unwrap();
    let index = ModuleIndex::from_module(model);
    // (layer, KV head): KV head `g` owns k/v columns 64g..64g+64 and query heads 3g..3g+3,
    // i.e. q columns and o rows 192g..192g+192.
    let cuts = [(0usize, 1usize), (7, 0), (29, 2)];
    let mut masks = MaskSet::default();
    for &(layer, g) in &cuts {
        let p = |n: &str| format!("model.layers.{layer}.self_attn.{n}_proj.weight");
        let kv: Vec<usize> = (g * HEAD_DIM..(g + 1) * HEAD_DIM).collect();
        let q: Vec<usize> = (3 * g * HEAD_DIM..3 * (g + 1) * HEAD_DIM).collect();
        masks.insert(p("k"), zero_along([D, 192], 1, &kv));
        masks.insert(p("v"), zero_along([D, 192], 1, &kv));
        masks.insert(p("q"), zero_along([D, D], 1, &q));
        masks.insert(p("o"), zero_along([D, D], 0, &q));
    }
    let report = deps.plan(&masks, &index, ConflictPolicy::Union).unwrap();
    assert_eq!(report.removed, cuts.len(), "one KV group per masked layer");
    for &(layer, g) in &cuts {
        let l = |n: &str| format!("model.layers.{layer}.self_attn.{n}_proj");
        assert_eq!(
            removed_heads(&report, &l("q")),
            [3 * g, 3 * g + 1, 3 * g + 2]
        );
        assert_eq!(removed_heads(&report, &l("k")), [g]);
        assert_eq!(removed_heads(&report, &l("v")), [g]);
        let keep_kv: Vec<usize> = (0..192).filter(|c| c / HEAD_DIM != g).collect();
        let keep_q: Vec<usize> = (0..D).filter(|c| c / (3 * HEAD_DIM) != g).collect();
        let axis = |axis, kept: &Vec<usize>| {
            vec![AxisKeep {
                axis,
                kept: kept.clone(),
            }]
        };
        assert_eq!(
            kept(&report, &format!("{}.weight", l("k"))),
            axis(1, &keep_kv)
        );
        assert_eq!(
            kept(&report, &format!("{}.weight", l("v"))),
            axis(1, &keep_kv)
        );
        assert_eq!(
            kept(&report, &format!("{}.weight", l("q"))),
            axis(1, &keep_q)
        );
        assert_eq!(
            kept(&report, &format!("{}.weight", l("o"))),
            axis(0, &keep_q)
        );
    }
    assert_eq!(
        removed_heads(&report, "model.layers.1.self_attn.q_proj"),
        Vec::<usize>::new()
    );

    let small = apply(model, &report.plan).unwrap();
    for (n, layer) in small.model.layers.iter().enumerate() {
        let a = &layer.self_attn;
        if cuts.iter().any(|&(l, _)| l == n) {
            assert_eq!((a.heads, a.kv_heads), (6, 2), "layer {n}");
            assert_eq!(a.q_proj.weight.dims(), [D, 384]);
            assert_eq!(a.k_proj.weight.dims(), [D, 128]);
            assert_eq!(a.v_proj.weight.dims(), [D, 128]);
            assert_eq!(a.o_proj.weight.dims(), [384, D]);
        } else {
            assert_eq!((a.heads, a.kv_heads), (9, 3), "layer {n}");
            assert_eq!(a.o_proj.weight.dims(), [D, D]);
        }
        assert_eq!(layer.mlp.gate_proj.weight.dims(), [D, FFN]);
    }
    let diff = relative_diff(&small, &report, model);
    assert!(
        diff < 1e-4,
        "sped-up logits differ from the masked model's by {diff} (relative)"
    );
    // Per pruned layer and token: q and o lose 576 x 192 each, k and v 576 x 64 each; the
    // attention matmuls lose 3 of 9 heads (2 x 3 x 5 x 5 x 64 over the 5-token prompt).
    let (before, after) = (count(&graph), count(&capture_prompt(&small)));
    let per_layer = 5 * (2 * D * 192 + 2 * D * 64) + 2 * 3 * 5 * 5 * HEAD_DIM;
    assert_eq!(before.macs - after.macs, (cuts.len() * per_layer) as u64);
    let params = 2 * D * 192 + 2 * D * 64;
    assert_eq!(before.params - after.params, (cuts.len() * params) as u64);
}

#[test]
fn smollm2_hidden_channels_leave_the_whole_residual_stream_and_the_logits_are_unchanged() {
    let model = smollm();
    let graph = capture_prompt(model);
    let deps = DependencyGraph::build(&graph).unwrap();
    let index = ModuleIndex::from_module(model);
    assert_eq!(deps.rms_norms.len(), 61, "two per layer and the final norm");
    // A mask on the embedding's columns: every residual add couples the stream, so the
    // channels leave every norm, every Linear reading or writing it and the tied head.
    let cut = [5usize, 77, 300, 511];
    let mut masks = MaskSet::default();
    masks.insert("model.embed_tokens.weight", zero_along([VOCAB, D], 1, &cut));
    let report = deps.plan(&masks, &index, ConflictPolicy::Union).unwrap();
    assert_eq!(report.removed, cut.len(), "{:?}", report.skipped);
    let keep: Vec<usize> = (0..D).filter(|c| !cut.contains(c)).collect();
    let axis = |axis| {
        vec![AxisKeep {
            axis,
            kept: keep.clone(),
        }]
    };
    assert_eq!(kept(&report, "model.embed_tokens.weight"), axis(1));
    assert_eq!(kept(&report, "model.norm.gamma"), axis(0));
    for l in 0..30 {
        let p = |n: &str| format!("model.layers.{l}.{n}");
        for n in ["input_layernorm.gamma", "post_attention_layernorm.gamma"] {
            assert_eq!(kept(&report, &p(n)), axis(0), "{}", p(n));
        }
        for n in ["q", "k", "v"] {
            let path = p(&format!("self_attn.{n}_proj.weight"));
            assert_eq!(kept(&report, &path), axis(0), "{path}");
        }
        for n in ["gate", "up"] {
            let path = p(&format!("mlp.{n}_proj.weight"));
            assert_eq!(kept(&report, &path), axis(0), "{path}");
        }
        assert_eq!(kept(&report, &p("self_attn.o_proj.weight")), axis(1));
        assert_eq!(kept(&report, &p("mlp.down_proj.weight")), axis(1));
    }

    let small = apply(model, &report.plan).unwrap();
    let d2 = D - cut.len();
    assert_eq!(small.model.embed_tokens.weight.dims(), [VOCAB, d2]);
    assert!(small.lm_head.is_none(), "the head stays tied");
    let ratio = D as f64 / d2 as f64;
    let eps = model.model.norm.epsilon;
    assert!((small.model.norm.epsilon - eps * ratio).abs() < 1e-15 * ratio);
    for layer in &small.model.layers {
        assert_eq!(layer.self_attn.q_proj.weight.dims(), [d2, D]);
        assert_eq!(layer.self_attn.k_proj.weight.dims(), [d2, 192]);
        assert_eq!(layer.self_attn.o_proj.weight.dims(), [D, d2]);
        assert_eq!(layer.mlp.up_proj.weight.dims(), [d2, FFN]);
        assert_eq!(layer.mlp.down_proj.weight.dims(), [FFN, d2]);
        assert_eq!(layer.input_layernorm.gamma.dims(), [d2]);
        assert!((layer.post_attention_layernorm.epsilon - eps * ratio).abs() < 1e-15 * ratio);
    }
    assert_eq!(model.model.norm.epsilon, eps, "the original is untouched");
    let diff = relative_diff(&small, &report, model);
    assert!(
        diff < 1e-4,
        "sped-up logits differ from the masked model's by {diff} (relative)"
    );
    // Per token, each layer's q, k, v, gate, up lose input rows (576 + 192 + 192 + 1536 +
    // 1536) and o, down output columns (576 + 1536); the tied head loses 4 x 49152.
    let (before, after) = (count(&graph), count(&capture_prompt(&small)));
    let per_channel = 30 * (D + 192 + 192 + FFN + FFN + D + FFN) + VOCAB;
    assert_eq!(
        before.macs - after.macs,
        (5 * cut.len() * per_channel) as u64
    );
    // Params also lose the norms' entries: two per layer and the final norm.
    assert_eq!(
        before.params - after.params,
        (cut.len() * (per_channel + 30 * 2 + 1)) as u64
    );
}
