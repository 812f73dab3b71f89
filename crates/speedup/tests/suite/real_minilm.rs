//! all-MiniLM-L6-v2 with its real weights (`data/external/minilm-l6`, `cargo xtask fetch
//! minilm-l6`): the capture records the HF parameter paths, and speedup gives the embeddings of
//! the masked model with propagated masks when half of every feed-forward layer's intermediate
//! channels (`intermediate.dense`) or three whole attention heads are pruned; the hidden size
//! pruned under `LayerNormPolicy::NormalizeKept` equals the masked model whose LayerNorms
//! normalize over the kept channels (the policy's documented reference).

use std::path::Path;

use burn::nn::LayerNorm;
use burn::prelude::*;
use burn::tensor::activation::gelu;
use compress_core::{CompressConfig, Dense, MaskSet, ModuleIndex, prune};
use compress_graph::{capture, count};
use compress_speedup::{
    AxisKeep, ConflictPolicy, DependencyGraph, HeadsRemoved, LayerNormPolicy, PlanOptions, apply,
};
use compress_zoo::{MiniLm, TextTokenizer};

use crate::common::max_abs_diff;
use crate::groups::L1;

#[test]
fn minilm_feed_forward_pruned_by_speedup_equals_the_masked_model() {
    let device = Device::flex();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/external/minilm-l6");
    let model = MiniLm::load(&dir, &device).unwrap();
    let tokenizer = MiniLm::tokenizer(&dir).unwrap();
    let ids = tokenizer.encode("A man is eating food.").unwrap();
    let len = ids.len();
    let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
    let graph = capture(&model, |m, d| {
        m.forward(Tensor::from_data(TensorData::new(ids.clone(), [1, len]), d))
    })
    .unwrap();
    let paths: Vec<&str> = graph.params.values().map(String::as_str).collect();
    for key in [
        "embeddings.word_embeddings.weight",
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.5.attention.output.LayerNorm.gamma",
        "encoder.layer.5.intermediate.dense.weight",
    ] {
        assert!(paths.contains(&key), "{key} not captured");
    }

    let deps = DependencyGraph::build(&graph).unwrap();
    let index = ModuleIndex::from_module(&model);
    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_names_re = ['encoder\\.layer\\.[0-9]+\\.intermediate\\.dense']\nsparse_ratio = 0.5\n",
    )
    .unwrap();
    let config = deps.auto_dependency_groups(&config, &index).unwrap();
    let outcome = prune(&model, &config, &L1).unwrap();
    let report = deps
        .plan(&outcome.masks, &index, ConflictPolicy::Union)
        .unwrap();
    let small = apply(&model, &report.plan).unwrap();
    let propagated = report.plan.to_masks().apply_hard(&model).unwrap();
    for layer in &small.encoder.layer {
        assert_eq!(layer.intermediate.dense.weight.dims(), [384, 768]);
        assert_eq!(layer.output.dense.weight.dims(), [768, 384]);
        assert_eq!(layer.attention.self_attn.query.weight.dims(), [384, 384]);
    }

    // Sentences of different lengths: padding and the attention mask go through both models.
    let sentences = [
        "A man is eating food.",
        "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
        "The new movie is awesome.",
    ];
    let ours = small.embed(&tokenizer, &sentences).unwrap();
    let reference = propagated.embed(&tokenizer, &sentences).unwrap();
    let diff = max_abs_diff(ours, reference);
    assert!(
        diff < 1e-4,
        "sped-up embeddings differ from the propagated-mask model's by {diff}"
    );

    // The feed-forward blocks hold two thirds of the encoder's MACs: half of them go.
    let before = count(&graph);
    let after = count(
        &capture(&small, |m, d| {
            m.forward(Tensor::from_data(TensorData::new(ids.clone(), [1, len]), d))
        })
        .unwrap(),
    );
    let ratio = after.macs as f64 / before.macs as f64;
    eprintln!("minilm-l6, feed-forward halved: MACs x{ratio:.3}, max |diff| {diff:.2e}");
    assert!((0.6..0.75).contains(&ratio), "MACs ratio {ratio}");
}

fn load() -> (MiniLm, TextTokenizer) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/external/minilm-l6");
    let model = MiniLm::load(&dir, &Device::flex()).unwrap_or_else(|e| panic!("{e}"));
    (model, MiniLm::tokenizer(&dir).unwrap())
}

/// Token ids of `text` as a `[1, len]` tensor.
fn token_ids(tokenizer: &TextTokenizer, text: &str, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = tokenizer
        .encode(text)
        .unwrap()
        .into_iter()
        .map(i64::from)
        .collect();
    let len = ids.len();
    Tensor::from_data(TensorData::new(ids, [1, len]), device)
}

/// A mask of `shape` that zeroes the listed indices of `axis` (0: rows, 1: columns).
fn zero_on(shape: [usize; 2], axis: usize, removed: &[usize]) -> Dense<u8> {
    let data = (0..shape[0] * shape[1])
        .map(|i| {
            let index = if axis == 0 {
                i / shape[1]
            } else {
                i % shape[1]
            };
            u8::from(!removed.contains(&index))
        })
        .collect();
    Dense::new(shape.to_vec(), data)
}

const SENTENCES: [&str; 3] = [
    "A man is eating food.",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
    "The new movie is awesome.",
];

#[test]
fn minilm_whole_heads_2_5_7_of_layer_1_leave_q_k_v_and_o_and_the_embeddings_are_unchanged() {
    let device = Device::flex();
    let (model, tokenizer) = load();
    let x = token_ids(&tokenizer, SENTENCES[1], &device);
    let seq = x.dims()[1];
    let graph = capture(&model, |m, d| m.forward(x.clone().to_device(d))).unwrap();
    let deps = DependencyGraph::build(&graph).unwrap();
    // Heads 2, 5 and 7 of 12 (32 channels each): q/k/v output columns and o's input rows.
    let heads = [2usize, 5, 7];
    let channels: Vec<usize> = heads.iter().flat_map(|h| h * 32..(h + 1) * 32).collect();
    let mut masks = MaskSet::default();
    let prefix = "encoder.layer.1.attention";
    for p in ["query", "key", "value"] {
        masks.insert(
            format!("{prefix}.self.{p}.weight"),
            zero_on([384, 384], 1, &channels),
        );
    }
    masks.insert(
        format!("{prefix}.output.dense.weight"),
        zero_on([384, 384], 0, &channels),
    );
    let report = deps
        .plan(
            &masks,
            &ModuleIndex::from_module(&model),
            ConflictPolicy::Union,
        )
        .unwrap();
    assert_eq!(report.removed, 3, "three heads, one channel class each");
    for p in ["query", "key", "value"] {
        let layer = format!("{prefix}.self.{p}");
        let entry = report.heads.iter().find(|h| h.layer == layer).unwrap();
        assert_eq!(
            *entry,
            HeadsRemoved {
                layer,
                heads: 12,
                head_dim: 32,
                removed: heads.to_vec()
            }
        );
    }
    for l in [0, 2, 3, 4, 5] {
        let layer = format!("encoder.layer.{l}.attention.self.query");
        let entry = report.heads.iter().find(|h| h.layer == layer).unwrap();
        assert!(entry.removed.is_empty(), "{layer}: {:?}", entry.removed);
    }
    let kept: Vec<usize> = (0..384).filter(|c| !channels.contains(c)).collect();
    assert_eq!(
        report.plan.params[&format!("{prefix}.output.dense.weight")],
        [AxisKeep {
            axis: 0,
            kept: kept.clone()
        }]
    );
    assert_eq!(
        report.plan.params[&format!("{prefix}.self.value.bias")],
        [AxisKeep { axis: 0, kept }]
    );
    assert!(
        !report
            .plan
            .params
            .contains_key(&format!("{prefix}.output.dense.bias"))
    );

    let small = apply(&model, &report.plan).unwrap();
    for (l, layer) in small.encoder.layer.iter().enumerate() {
        let attn = &layer.attention.self_attn;
        let width = if l == 1 { 288 } else { 384 };
        assert_eq!(attn.num_heads, width / 32, "layer {l}");
        assert_eq!(attn.head_dim, 32);
        assert_eq!(attn.query.weight.dims(), [384, width]);
        assert_eq!(attn.key.weight.dims(), [384, width]);
        assert_eq!(attn.value.weight.dims(), [384, width]);
        assert_eq!(attn.value.bias.as_ref().unwrap().dims(), [width]);
        assert_eq!(layer.attention.output.dense.weight.dims(), [width, 384]);
    }
    let propagated = report.plan.to_masks().apply_hard(&model).unwrap();
    let diff = max_abs_diff(
        small.embed(&tokenizer, &SENTENCES).unwrap(),
        propagated.embed(&tokenizer, &SENTENCES).unwrap(),
    );
    assert!(diff < 1e-4, "sped-up embeddings differ by {diff}");

    // MACs at batch 1 x `seq` tokens: q, k, v lose 96 outputs, o 96 inputs, and the two
    // attention matmuls three heads (seq x seq x 32 each).
    let after = count(&capture(&small, |m, d| m.forward(x.clone().to_device(d))).unwrap()).macs;
    let before = count(&graph).macs;
    let (s, removed) = (seq as u64, 96u64);
    assert_eq!(
        before - after,
        4 * s * 384 * removed + 2 * 3 * s * s * 32,
        "seq {seq}"
    );
}

/// `ln(x)` with mean and variance over the channels where `keep` is 1 (zero elsewhere): the
/// reference of `LayerNormPolicy::NormalizeKept` (MiniLM's epsilon, 1e-12).
fn kept_norm(ln: &LayerNorm, x: Tensor<3>, keep: &Tensor<1>) -> Tensor<3> {
    let d = keep.dims()[0];
    let k = keep.clone().reshape([1, 1, d]);
    let n = f64::from(keep.clone().sum().into_scalar::<f32>());
    let mean = (x.clone() * k.clone()).sum_dim(2).div_scalar(n);
    let c = (x - mean) * k;
    let var = c.clone().square().sum_dim(2).div_scalar(n);
    let beta = ln.beta.as_ref().expect("BERT's LayerNorms have a beta");
    c / (var + 1e-12).sqrt() * ln.gamma.val().reshape([1, 1, d]) + beta.val().reshape([1, 1, d])
}

/// MiniLM's last hidden states (no padding) with every LayerNorm replaced by [`kept_norm`].
fn encode_normalizing_kept(model: &MiniLm, ids: Tensor<2, Int>, keep: &Tensor<1>) -> Tensor<3> {
    let [b, s] = ids.dims();
    let device = ids.device();
    let e = &model.embeddings;
    let positions = Tensor::<1, Int>::arange(0..s as i64, &device).reshape([1, s]);
    let types = Tensor::<2, Int>::zeros([b, s], &device);
    let x = e.word_embeddings.forward(ids) + e.token_type_embeddings.forward(types);
    let mut x = kept_norm(
        &e.LayerNorm,
        x + e.position_embeddings.forward(positions),
        keep,
    );
    let bias = Tensor::<4>::zeros([b, 1, 1, s], &device);
    for l in &model.encoder.layer {
        let context = l.attention.self_attn.forward(x.clone(), bias.clone());
        let out = &l.attention.output;
        x = kept_norm(&out.LayerNorm, out.dense.forward(context) + x, keep);
        let inner = gelu(l.intermediate.dense.forward(x.clone()));
        x = kept_norm(&l.output.LayerNorm, l.output.dense.forward(inner) + x, keep);
    }
    x
}

#[test]
fn minilm_hidden_size_pruned_under_normalize_kept_equals_the_kept_channel_layer_norm_reference() {
    let device = Device::flex();
    let (model, tokenizer) = load();
    let x = token_ids(&tokenizer, SENTENCES[1], &device);
    let seq = x.dims()[1];
    let graph = capture(&model, |m, d| m.forward(x.clone().to_device(d))).unwrap();
    let deps = DependencyGraph::build(&graph).unwrap();
    // 32 of the 384 stream channels (every 12th), named by a mask on the word embeddings.
    let cut: Vec<usize> = (0..384).step_by(12).collect();
    let mut masks = MaskSet::default();
    masks.insert(
        "embeddings.word_embeddings.weight",
        zero_on([30522, 384], 1, &cut),
    );
    let index = ModuleIndex::from_module(&model);
    let pinned = deps.plan(&masks, &index, ConflictPolicy::Union).unwrap();
    assert_eq!(pinned.removed, 0, "LayerNorm pins the stream by default");
    let options = PlanOptions {
        layer_norm: LayerNormPolicy::NormalizeKept,
        ..PlanOptions::default()
    };
    let report = deps.plan_with(&masks, &index, &options).unwrap();
    assert_eq!(report.removed, 32);
    let kept: Vec<usize> = (0..384).filter(|c| !cut.contains(c)).collect();
    let axis = |axis| {
        [AxisKeep {
            axis,
            kept: kept.clone(),
        }]
    };
    for p in [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
    ] {
        assert_eq!(report.plan.params[p], axis(1), "{p}");
    }
    assert_eq!(report.plan.params["embeddings.LayerNorm.gamma"], axis(0));
    for l in 0..6 {
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        for s in ["attention.self.query.weight", "intermediate.dense.weight"] {
            assert_eq!(report.plan.params[&p(s)], axis(0), "{}", p(s));
        }
        for s in ["attention.output.dense.weight", "output.dense.weight"] {
            assert_eq!(report.plan.params[&p(s)], axis(1), "{}", p(s));
        }
        for s in ["attention.output.LayerNorm.beta", "output.LayerNorm.gamma"] {
            assert_eq!(report.plan.params[&p(s)], axis(0), "{}", p(s));
        }
    }
    let small = apply(&model, &report.plan).unwrap();
    assert_eq!(small.hidden_size(), 352);
    assert_eq!(
        small.encoder.layer[5].intermediate.dense.weight.dims(),
        [352, 1536]
    );
    assert_eq!(small.encoder.layer[0].attention.self_attn.num_heads, 12);

    let propagated = report.plan.to_masks().apply_hard(&model).unwrap();
    let keep: Vec<f32> = (0..384)
        .map(|c| if cut.contains(&c) { 0.0 } else { 1.0 })
        .collect();
    let keep = Tensor::<1>::from_data(TensorData::new(keep, [384]), &device);
    let reference = encode_normalizing_kept(&propagated, x.clone(), &keep);
    let cut_idx: Vec<i64> = cut.iter().map(|&c| c as i64).collect();
    let cut_idx = Tensor::<1, Int>::from_data(TensorData::new(cut_idx, [32]), &device);
    let on_removed = reference.clone().select(2, cut_idx).abs().max();
    assert_eq!(on_removed.into_scalar::<f32>(), 0.0);
    let kept_idx: Vec<i64> = kept.iter().map(|&c| c as i64).collect();
    let kept_idx = Tensor::<1, Int>::from_data(TensorData::new(kept_idx, [352]), &device);
    let ours = small.encode(x.clone(), Tensor::ones([1, seq], &device));
    assert_eq!(ours.dims(), [1, seq, 352]);
    let diff = max_abs_diff(ours, reference.select(2, kept_idx));
    assert!(
        diff < 1e-4,
        "sped-up hidden states differ from the reference by {diff}"
    );
}
