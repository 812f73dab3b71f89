//! Transformer structural pruning on two small mirrors of the real models' op sequences (random
//! weights): a BERT encoder (MiniLM's ops) and a Llama decoder with GQA, RoPE and a tied head
//! (SmolLM2's ops). Heads, GQA groups, FFN channels and the hidden size: the sped-up model
//! equals the masked model with propagated masks (for BERT's hidden size: the masked model whose
//! LayerNorms normalize over the kept channels), with exact kept indices and shapes.

use burn::module::{Module, Param};
use burn::nn::{
    Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, RmsNorm,
    RmsNormConfig,
};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::{gelu, silu, softmax};
use compress_core::{Dense, FixStructure, MaskSet, ModuleIndex};
use compress_graph::{capture, count};
use compress_speedup::{
    AxisKeep, ConflictPolicy, DependencyGraph, HeadsRemoved, LayerNormPolicy, PlanOptions,
    PlanReport, SpeedupError, apply,
};

use crate::common::max_abs_diff;

const VOCAB: usize = 40;
const LN_EPS: f64 = 1e-12;
const RMS_EPS: f64 = 1e-5;

/// A `[n]` parameter with values uniform in `[lo, hi)` (norm gammas and betas that are not 1 / 0).
fn vector(n: usize, lo: f64, hi: f64, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::random([n], Distribution::Uniform(lo, hi), device))
}

fn layer_norm(d: usize, device: &Device) -> LayerNorm {
    let mut ln = LayerNormConfig::new(d).with_epsilon(LN_EPS).init(device);
    ln.gamma = vector(d, 0.5, 1.5, device);
    ln.beta = Some(vector(d, -0.5, 0.5, device));
    ln
}

fn rms_norm(d: usize, device: &Device) -> RmsNorm {
    let mut n = RmsNormConfig::new(d).with_epsilon(RMS_EPS).init(device);
    n.gamma = vector(d, 0.5, 1.5, device);
    n
}

/// `ln(x)`, or with `keep` (1 kept, 0 removed) the LayerNorm over the kept channels only: the
/// reference of hidden-size pruning under [`LayerNormPolicy::NormalizeKept`].
fn norm(ln: &LayerNorm, x: Tensor<3>, keep: Option<&Tensor<1>>) -> Tensor<3> {
    let Some(keep) = keep else {
        return ln.forward(x);
    };
    let d = keep.dims()[0];
    let k = keep.clone().reshape([1, 1, d]);
    let n = f64::from(keep.clone().sum().into_scalar::<f32>());
    let mean = (x.clone() * k.clone()).sum_dim(2).div_scalar(n);
    let c = (x - mean) * k;
    let var = c.clone().square().sum_dim(2).div_scalar(n);
    let beta = ln
        .beta
        .as_ref()
        .expect("the mirror's LayerNorms have a beta");
    c / (var + LN_EPS).sqrt() * ln.gamma.val().reshape([1, 1, d]) + beta.val().reshape([1, 1, d])
}

// ---------------------------------------------------------------------------------------------
// BERT (MiniLM's op sequence)

#[derive(Module, Debug)]
struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
    n_heads: usize,
    head_dim: usize,
}

impl FixStructure for BertLayer {
    fn fix_structure(&mut self) {
        self.n_heads = self.query.weight.dims()[1] / self.head_dim;
    }
}

impl BertLayer {
    fn new(d: usize, heads: usize, ffn: usize, device: &Device) -> Self {
        let hd = d / heads;
        Self {
            query: LinearConfig::new(d, d).init(device),
            key: LinearConfig::new(d, d).init(device),
            value: LinearConfig::new(d, d).init(device),
            output: LinearConfig::new(d, d).init(device),
            attn_norm: layer_norm(d, device),
            ffn_in: LinearConfig::new(d, ffn).init(device),
            ffn_out: LinearConfig::new(ffn, d).init(device),
            ffn_norm: layer_norm(d, device),
            n_heads: heads,
            head_dim: hd,
        }
    }

    fn forward(&self, x: Tensor<3>, bias: Tensor<4>, keep: Option<&Tensor<1>>) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (h, hd) = (self.n_heads, self.head_dim);
        let heads = |t: Tensor<3>| t.reshape([b, s, h, hd]).swap_dims(1, 2);
        let q = heads(self.query.forward(x.clone()));
        let k = heads(self.key.forward(x.clone()));
        let v = heads(self.value.forward(x.clone()));
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((hd as f64).sqrt()) + bias;
        let ctx = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, s, h * hd]);
        let x = norm(&self.attn_norm, x + self.output.forward(ctx), keep);
        let f = self.ffn_out.forward(gelu(self.ffn_in.forward(x.clone())));
        norm(&self.ffn_norm, x + f, keep)
    }
}

#[derive(Module, Debug)]
struct Bert {
    word: Embedding,
    position: Embedding,
    emb_norm: LayerNorm,
    layers: Vec<BertLayer>,
}
compress_speedup::impl_fix_structure!(Bert { layers });

impl Bert {
    /// Hidden 32, 4 heads of 8, FFN 64, 2 layers.
    fn new(device: &Device) -> Self {
        Self {
            word: EmbeddingConfig::new(VOCAB, 32).init(device),
            position: EmbeddingConfig::new(16, 32).init(device),
            emb_norm: layer_norm(32, device),
            layers: (0..2).map(|_| BertLayer::new(32, 4, 64, device)).collect(),
        }
    }

    /// `ids [b, s]` with the last `pad` tokens of the second sequence masked out.
    fn forward(&self, ids: Tensor<2, Int>, pad: usize, keep: Option<&Tensor<1>>) -> Tensor<3> {
        let [b, s] = ids.dims();
        let device = ids.device();
        let bias: Vec<f32> = (0..b * s)
            .map(|i| {
                if i / s == 1 && i % s >= s - pad {
                    -1e4
                } else {
                    0.0
                }
            })
            .collect();
        let bias = Tensor::<4>::from_data(TensorData::new(bias, [b, 1, 1, s]), &device);
        let pos = Tensor::<1, Int>::arange(0..s as i64, &device).reshape([1, s]);
        let x = self.word.forward(ids) + self.position.forward(pos);
        let mut x = norm(&self.emb_norm, x, keep);
        for l in &self.layers {
            x = l.forward(x, bias.clone(), keep);
        }
        x
    }
}

// ---------------------------------------------------------------------------------------------
// Llama (SmolLM2's op sequence)

#[derive(Module, Debug)]
struct LlamaLayer {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl FixStructure for LlamaLayer {
    fn fix_structure(&mut self) {
        self.attn_norm.fix_structure();
        self.ffn_norm.fix_structure();
        self.n_heads = self.q.weight.dims()[1] / self.head_dim;
        self.n_kv_heads = self.k.weight.dims()[1] / self.head_dim;
    }
}

fn linear(i: usize, o: usize, device: &Device) -> Linear {
    LinearConfig::new(i, o).with_bias(false).init(device)
}

/// RoPE in GGML's adjacent-pair layout: pairs `(2i, 2i + 1)` of each head rotate by `pos * f_i`.
fn rope(t: Tensor<4>, cos: &Tensor<5>, sin: &Tensor<5>) -> Tensor<4> {
    let [b, h, s, hd] = t.dims();
    let p = t.reshape([b, h, s, hd / 2, 2]);
    let x0 = p.clone().slice([0..b, 0..h, 0..s, 0..hd / 2, 0..1]);
    let x1 = p.slice([0..b, 0..h, 0..s, 0..hd / 2, 1..2]);
    let r0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
    let r1 = x0 * sin.clone() + x1 * cos.clone();
    Tensor::cat(vec![r0, r1], 4).reshape([b, h, s, hd])
}

impl LlamaLayer {
    /// Hidden 32, 6 query heads and 2 KV heads of 4, FFN 48.
    fn new(device: &Device) -> Self {
        let (d, hd) = (32, 4);
        Self {
            attn_norm: rms_norm(d, device),
            q: linear(d, 6 * hd, device),
            k: linear(d, 2 * hd, device),
            v: linear(d, 2 * hd, device),
            o: linear(6 * hd, d, device),
            ffn_norm: rms_norm(d, device),
            gate: linear(d, 48, device),
            up: linear(d, 48, device),
            down: linear(48, d, device),
            n_heads: 6,
            n_kv_heads: 2,
            head_dim: hd,
        }
    }

    fn forward(&self, x: Tensor<3>, cos: &Tensor<5>, sin: &Tensor<5>) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (nh, kvh, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let g = nh / kvh;
        let h = self.attn_norm.forward(x.clone());
        let split = |t: Tensor<3>, n: usize| t.reshape([b, s, n, hd]).swap_dims(1, 2);
        let q = rope(split(self.q.forward(h.clone()), nh), cos, sin);
        let k = rope(split(self.k.forward(h.clone()), kvh), cos, sin);
        let v = split(self.v.forward(h), kvh);
        let repeat = |t: Tensor<4>| {
            t.reshape([b, kvh, 1, s, hd])
                .expand([b, kvh, g, s, hd])
                .reshape([b, kvh * g, s, hd])
        };
        let (k, v) = (repeat(k), repeat(v));
        let device = x.device();
        let causal = Tensor::<2, Int>::ones([s, s], &device)
            .triu(1)
            .bool()
            .reshape([1, 1, s, s]);
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((hd as f64).sqrt())
            .mask_fill(causal, -1e9);
        let ctx = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, s, nh * hd]);
        let x = x + self.o.forward(ctx);
        let h = self.ffn_norm.forward(x.clone());
        x + self
            .down
            .forward(silu(self.gate.forward(h.clone())) * self.up.forward(h))
    }
}

#[derive(Module, Debug)]
struct Llama {
    embed: Embedding,
    layers: Vec<LlamaLayer>,
    norm: RmsNorm,
}
compress_speedup::impl_fix_structure!(Llama { layers, norm });

impl Llama {
    fn new(device: &Device) -> Self {
        Self {
            embed: EmbeddingConfig::new(VOCAB, 32).init(device),
            layers: (0..2).map(|_| LlamaLayer::new(device)).collect(),
            norm: rms_norm(32, device),
        }
    }

    /// Logits `[b, s, VOCAB]` through the tied head.
    fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, s] = ids.dims();
        let device = ids.device();
        let hd = self.layers[0].head_dim;
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for p in 0..s {
            for i in 0..hd / 2 {
                let angle = p as f64 * 1e5f64.powf(-2.0 * i as f64 / hd as f64);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let table =
            |v: Vec<f32>| Tensor::<5>::from_data(TensorData::new(v, [1, 1, s, hd / 2, 1]), &device);
        let (cos, sin) = (table(cos), table(sin));
        let mut x = self.embed.forward(ids);
        for l in &self.layers {
            x = l.forward(x, &cos, &sin);
        }
        self.norm
            .forward(x)
            .matmul(self.embed.weight.val().transpose().unsqueeze::<3>())
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn ids(b: usize, s: usize, device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = (0..b * s).map(|i| ((i * 7 + 3) % VOCAB) as i64).collect();
    Tensor::from_data(TensorData::new(v, [b, s]), device)
}

/// A mask of `shape` (Linear `[in, out]` or embedding `[n, d]`) with the columns in `cols` zero.
fn zero_cols(shape: [usize; 2], cols: &[usize]) -> Dense<u8> {
    let data = (0..shape[0] * shape[1])
        .map(|i| u8::from(!cols.contains(&(i % shape[1]))))
        .collect();
    Dense::new(shape.to_vec(), data)
}

fn masks(entries: &[(&str, [usize; 2], Vec<usize>)]) -> MaskSet {
    let mut m = MaskSet::default();
    for (path, shape, cols) in entries {
        m.insert(*path, zero_cols(*shape, cols));
    }
    m
}

/// Capture, group and plan with `options`.
fn plan<M: Module, const D: usize>(
    model: &M,
    masks: &MaskSet,
    options: PlanOptions,
    forward: impl FnOnce(&M, &Device) -> Tensor<D>,
) -> (DependencyGraph, PlanReport, u64) {
    let graph = capture(model, forward).unwrap();
    let deps = DependencyGraph::build(&graph).unwrap();
    let report = deps
        .plan_with(masks, &ModuleIndex::from_module(model), &options)
        .unwrap();
    (deps, report, count(&graph).macs)
}

fn kept(report: &PlanReport, path: &str) -> Vec<AxisKeep> {
    report.plan.params.get(path).cloned().unwrap_or_default()
}

fn range(r: std::ops::Range<usize>) -> Vec<usize> {
    r.collect()
}

fn complement(n: usize, removed: &[usize]) -> Vec<usize> {
    (0..n).filter(|i| !removed.contains(i)).collect()
}

fn removed_heads(report: &PlanReport, layer: &str) -> Vec<usize> {
    report
        .heads
        .iter()
        .find(|h| h.layer == layer)
        .unwrap_or_else(|| panic!("no head split at {layer}: {:?}", report.heads))
        .removed
        .clone()
}

fn bert_capture(m: &Bert, d: &Device) -> Tensor<3> {
    m.forward(ids(2, 6, d), 2, None)
}

fn llama_capture(m: &Llama, d: &Device) -> Tensor<3> {
    m.forward(ids(2, 5, d))
}

// ---------------------------------------------------------------------------------------------
// BERT

#[test]
fn bert_whole_heads_leave_q_k_v_and_the_output_projection_and_the_output_is_unchanged() {
    let device = Device::flex();
    let model = Bert::new(&device);
    // Heads 1 and 3 of layer 0: columns 8..16 and 24..32 of q, k and v.
    let heads: Vec<usize> = range(8..16).into_iter().chain(24..32).collect();
    let m = masks(&[
        ("layers.0.query.weight", [32, 32], heads.clone()),
        ("layers.0.key.weight", [32, 32], heads.clone()),
        ("layers.0.value.weight", [32, 32], heads.clone()),
    ]);
    let (_, report, macs) = plan(&model, &m, PlanOptions::default(), bert_capture);
    assert_eq!(report.removed, 2, "two heads: one channel each");
    assert_eq!(
        report.heads[0],
        HeadsRemoved {
            layer: "layers.0.query".into(),
            heads: 4,
            head_dim: 8,
            removed: vec![1, 3]
        }
    );
    for l in ["layers.0.key", "layers.0.value"] {
        assert_eq!(removed_heads(&report, l), [1, 3]);
    }
    for l in ["layers.1.query", "layers.1.key", "layers.1.value"] {
        assert_eq!(removed_heads(&report, l), Vec::<usize>::new());
    }
    let kept_cols: Vec<usize> = range(0..8).into_iter().chain(16..24).collect();
    for p in ["query", "key", "value"] {
        let path = format!("layers.0.{p}.weight");
        assert_eq!(
            kept(&report, &path),
            [AxisKeep {
                axis: 1,
                kept: kept_cols.clone()
            }]
        );
        let bias = format!("layers.0.{p}.bias");
        assert_eq!(
            kept(&report, &bias),
            [AxisKeep {
                axis: 0,
                kept: kept_cols.clone()
            }]
        );
    }
    assert_eq!(
        kept(&report, "layers.0.output.weight"),
        [AxisKeep {
            axis: 0,
            kept: kept_cols
        }]
    );
    assert!(kept(&report, "layers.0.output.bias").is_empty());

    let small = apply(&model, &report.plan).unwrap();
    let l0 = &small.layers[0];
    assert_eq!(l0.query.weight.dims(), [32, 16]);
    assert_eq!(l0.key.weight.dims(), [32, 16]);
    assert_eq!(l0.value.weight.dims(), [32, 16]);
    assert_eq!(l0.output.weight.dims(), [16, 32]);
    assert_eq!((l0.n_heads, l0.head_dim), (2, 8));
    assert_eq!(small.layers[1].n_heads, 4);

    let x = ids(2, 6, &device);
    let masked = report.plan.to_masks().apply_hard(&model).unwrap();
    let diff = max_abs_diff(
        small.forward(x.clone(), 2, None),
        masked.forward(x, 2, None),
    );
    assert!(
        diff < 1e-4,
        "sped-up differs from the masked model by {diff}"
    );

    // MACs removed, batch 2 x 6 tokens: q, k, v lose 16 outputs (12 x 32 x 16 each), the
    // output projection 16 inputs (12 x 16 x 32), and both attention matmuls two heads
    // (2 x 2 heads x 6 x 6 x 8 each).
    let after = count(&capture(&small, bert_capture).unwrap()).macs;
    assert_eq!(
        macs - after,
        3 * 12 * 32 * 16 + 12 * 16 * 32 + 2 * (2 * 2 * 6 * 6 * 8)
    );
}

#[test]
fn bert_a_mask_inside_a_head_removes_nothing() {
    let device = Device::flex();
    let model = Bert::new(&device);
    // Half of head 1 (columns 8..12) in q, k and v.
    let half = range(8..12);
    let m = masks(&[
        ("layers.0.query.weight", [32, 32], half.clone()),
        ("layers.0.key.weight", [32, 32], half.clone()),
        ("layers.0.value.weight", [32, 32], half),
    ]);
    for conflict in [ConflictPolicy::Union, ConflictPolicy::Intersection] {
        let options = PlanOptions {
            conflict,
            ..PlanOptions::default()
        };
        let (_, report, _) = plan(&model, &m, options, bert_capture);
        assert_eq!(report.removed, 0, "{conflict:?}");
        assert!(report.plan.params.is_empty(), "{conflict:?}");
        assert!(report.heads.iter().all(|h| h.removed.is_empty()));
    }
}

#[test]
fn bert_ffn_channels_are_equivalent_and_cheaper() {
    let device = Device::flex();
    let model = Bert::new(&device);
    let cut = vec![0, 5, 9, 33, 63];
    let m = masks(&[("layers.1.ffn_in.weight", [32, 64], cut.clone())]);
    let (_, report, macs) = plan(&model, &m, PlanOptions::default(), bert_capture);
    assert_eq!(report.removed, 5);
    let keep = complement(64, &cut);
    assert_eq!(
        kept(&report, "layers.1.ffn_in.weight"),
        [AxisKeep {
            axis: 1,
            kept: keep.clone()
        }]
    );
    assert_eq!(
        kept(&report, "layers.1.ffn_out.weight"),
        [AxisKeep {
            axis: 0,
            kept: keep
        }]
    );
    let small = apply(&model, &report.plan).unwrap();
    assert_eq!(small.layers[1].ffn_in.weight.dims(), [32, 59]);
    assert_eq!(small.layers[1].ffn_in.bias.as_ref().unwrap().dims(), [59]);
    assert_eq!(small.layers[1].ffn_out.weight.dims(), [59, 32]);
    let x = ids(2, 6, &device);
    let masked = report.plan.to_masks().apply_hard(&model).unwrap();
    let diff = max_abs_diff(
        small.forward(x.clone(), 2, None),
        masked.forward(x, 2, None),
    );
    assert!(
        diff < 1e-4,
        "sped-up differs from the masked model by {diff}"
    );
    let after = count(&capture(&small, bert_capture).unwrap()).macs;
    assert_eq!(macs - after, 2 * (12 * 32 * 5));
}

#[test]
fn bert_hidden_channels_stay_by_default_and_under_normalize_kept_match_the_kept_channel_layer_norm_reference()
 {
    let device = Device::flex();
    let model = Bert::new(&device);
    let cut = vec![2, 11, 30];
    let m = masks(&[("word.weight", [VOCAB, 32], cut.clone())]);

    // Default: LayerNorm-normalized channels stay, and the report says why.
    let (_, report, _) = plan(&model, &m, PlanOptions::default(), bert_capture);
    assert_eq!(report.removed, 0);
    assert_eq!(report.skipped.len(), 3);
    let reasons = &report.skipped[0].reasons;
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("normalized by LayerNorm 'emb_norm'")),
        "{reasons:?}"
    );

    let options = PlanOptions {
        layer_norm: LayerNormPolicy::NormalizeKept,
        ..PlanOptions::default()
    };
    let (_, report, macs) = plan(&model, &m, options, bert_capture);
    assert_eq!(report.removed, 3);
    let keep = complement(32, &cut);
    let axis = |axis| {
        [AxisKeep {
            axis,
            kept: keep.clone(),
        }]
    };
    assert_eq!(kept(&report, "word.weight"), axis(1));
    assert_eq!(kept(&report, "position.weight"), axis(1));
    assert_eq!(kept(&report, "emb_norm.gamma"), axis(0));
    assert_eq!(kept(&report, "emb_norm.beta"), axis(0));
    for l in 0..2 {
        for p in ["query", "key", "value", "ffn_in"] {
            assert_eq!(kept(&report, &format!("layers.{l}.{p}.weight")), axis(0));
        }
        for p in ["output", "ffn_out"] {
            assert_eq!(kept(&report, &format!("layers.{l}.{p}.weight")), axis(1));
            assert_eq!(kept(&report, &format!("layers.{l}.{p}.bias")), axis(0));
        }
        for p in ["attn_norm", "ffn_norm"] {
            assert_eq!(kept(&report, &format!("layers.{l}.{p}.gamma")), axis(0));
        }
    }
    let small = apply(&model, &report.plan).unwrap();
    assert_eq!(small.word.weight.dims(), [VOCAB, 29]);
    assert_eq!(small.layers[1].query.weight.dims(), [29, 32]);
    assert_eq!(small.layers[1].ffn_out.weight.dims(), [64, 29]);

    // The reference: the masked model whose LayerNorms normalize over the kept channels.
    let x = ids(2, 6, &device);
    let masked = report.plan.to_masks().apply_hard(&model).unwrap();
    let k: Vec<f32> = (0..32)
        .map(|c| if cut.contains(&c) { 0.0 } else { 1.0 })
        .collect();
    let k = Tensor::<1>::from_data(TensorData::new(k, [32]), &device);
    let reference = masked.forward(x.clone(), 2, Some(&k));
    let removed_idx =
        Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 11, 30], [3]), &device);
    let zeros = reference.clone().select(2, removed_idx).abs().max();
    assert_eq!(zeros.into_scalar::<f32>(), 0.0);
    let kept_idx: Vec<i64> = keep.iter().map(|&i| i as i64).collect();
    let kept_idx = Tensor::<1, Int>::from_data(TensorData::new(kept_idx, [29]), &device);
    let out = small.forward(x, 2, None);
    assert_eq!(out.dims(), [2, 6, 29]);
    let diff = max_abs_diff(out, reference.select(2, kept_idx));
    assert!(diff < 1e-4, "sped-up differs from the reference by {diff}");
    let after = count(&capture(&small, bert_capture).unwrap()).macs;
    assert!(after < macs, "{after} >= {macs}");
}

// ---------------------------------------------------------------------------------------------
// Llama

#[test]
fn llama_a_kv_head_leaves_with_its_query_group() {
    let device = Device::flex();
    let model = Llama::new(&device);
    // KV head 1 (k, v columns 4..8) and its query group: heads 3, 4, 5 (q columns 12..24).
    let m = masks(&[
        ("layers.0.q.weight", [32, 24], range(12..24)),
        ("layers.0.k.weight", [32, 8], range(4..8)),
        ("layers.0.v.weight", [32, 8], range(4..8)),
    ]);
    let (_, report, macs) = plan(&model, &m, PlanOptions::default(), llama_capture);
    assert_eq!(report.removed, 1, "one KV group");
    assert_eq!(removed_heads(&report, "layers.0.q"), [3, 4, 5]);
    assert_eq!(removed_heads(&report, "layers.0.k"), [1]);
    assert_eq!(removed_heads(&report, "layers.0.v"), [1]);
    assert_eq!(removed_heads(&report, "layers.1.q"), Vec::<usize>::new());
    assert_eq!(
        kept(&report, "layers.0.q.weight"),
        [AxisKeep {
            axis: 1,
            kept: range(0..12)
        }]
    );
    assert_eq!(
        kept(&report, "layers.0.k.weight"),
        [AxisKeep {
            axis: 1,
            kept: range(0..4)
        }]
    );
    assert_eq!(
        kept(&report, "layers.0.o.weight"),
        [AxisKeep {
            axis: 0,
            kept: range(0..12)
        }]
    );
    let small = apply(&model, &report.plan).unwrap();
    let l0 = &small.layers[0];
    assert_eq!(l0.q.weight.dims(), [32, 12]);
    assert_eq!(l0.k.weight.dims(), [32, 4]);
    assert_eq!(l0.v.weight.dims(), [32, 4]);
    assert_eq!(l0.o.weight.dims(), [12, 32]);
    assert_eq!((l0.n_heads, l0.n_kv_heads), (3, 1));
    let x = ids(2, 5, &device);
    let masked = report.plan.to_masks().apply_hard(&model).unwrap();
    let diff = max_abs_diff(small.forward(x.clone()), masked.forward(x));
    assert!(
        diff < 1e-4,
        "sped-up differs from the masked model by {diff}"
    );
    let after = count(&capture(&small, llama_capture).unwrap()).macs;
    // q loses 12 outputs, k and v 4 each, o 12 inputs (10 tokens x 32 each); the attention
    // matmuls lose 3 of 6 heads (2 x 3 x 5 x 5 x 4 each).
    assert_eq!(
        macs - after,
        10 * 32 * (12 + 4 + 4) + 10 * 12 * 32 + 2 * (2 * 3 * 5 * 5 * 4)
    );
}

#[test]
fn llama_query_heads_without_the_rest_of_their_kv_group_stay_under_either_policy() {
    let device = Device::flex();
    let model = Llama::new(&device);
    // Query head 3 alone (q columns 12..16): the group of KV head 1 is the unit, and q's mask
    // is not uniform over it (heads 4 and 5 kept), so q has no opinion on the group.
    let m = masks(&[("layers.0.q.weight", [32, 24], range(12..16))]);
    for conflict in [ConflictPolicy::Union, ConflictPolicy::Intersection] {
        let options = PlanOptions {
            conflict,
            ..PlanOptions::default()
        };
        let (_, report, _) = plan(&model, &m, options, llama_capture);
        assert_eq!(report.removed, 0, "{conflict:?}");
        assert_eq!(removed_heads(&report, "layers.0.q"), Vec::<usize>::new());
    }
}

#[test]
fn llama_swiglu_channels_are_equivalent_and_cheaper() {
    let device = Device::flex();
    let model = Llama::new(&device);
    let cut = vec![1, 7, 40];
    let m = masks(&[("layers.1.gate.weight", [32, 48], cut.clone())]);
    let (_, report, macs) = plan(&model, &m, PlanOptions::default(), llama_capture);
    assert_eq!(report.removed, 3);
    let keep = complement(48, &cut);
    for p in ["gate", "up"] {
        assert_eq!(
            kept(&report, &format!("layers.1.{p}.weight")),
            [AxisKeep {
                axis: 1,
                kept: keep.clone()
            }]
        );
    }
    assert_eq!(
        kept(&report, "layers.1.down.weight"),
        [AxisKeep {
            axis: 0,
            kept: keep
        }]
    );
    let small = apply(&model, &report.plan).unwrap();
    assert_eq!(small.layers[1].up.weight.dims(), [32, 45]);
    assert_eq!(small.layers[1].down.weight.dims(), [45, 32]);
    let x = ids(2, 5, &device);
    let masked = report.plan.to_masks().apply_hard(&model).unwrap();
    let diff = max_abs_diff(small.forward(x.clone()), masked.forward(x));
    assert!(
        diff < 1e-4,
        "sped-up differs from the masked model by {diff}"
    );
    let after = count(&capture(&small, llama_capture).unwrap()).macs;
    assert_eq!(macs - after, 3 * (10 * 32 * 3));
}

#[test]
fn llama_hidden_channels_leave_the_whole_residual_stream_exactly() {
    let device = Device::flex();
    let model = Llama::new(&device);
    let cut = vec![3, 17, 31];
    let m = masks(&[("embed.weight", [VOCAB, 32], cut.clone())]);
    let (deps, report, macs) = plan(&model, &m, PlanOptions::default(), llama_capture);
    assert_eq!(deps.rms_norms.len(), 5, "{:?}", deps.rms_norms);
    assert_eq!(report.removed, 3, "{:?}", report.skipped);
    let keep = complement(32, &cut);
    let axis = |axis| {
        [AxisKeep {
            axis,
            kept: keep.clone(),
        }]
    };
    assert_eq!(kept(&report, "embed.weight"), axis(1));
    assert_eq!(kept(&report, "norm.gamma"), axis(0));
    for l in 0..2 {
        for p in ["q", "k", "v", "gate", "up"] {
            assert_eq!(kept(&report, &format!("layers.{l}.{p}.weight")), axis(0));
        }
        for p in ["o", "down"] {
            assert_eq!(kept(&report, &format!("layers.{l}.{p}.weight")), axis(1));
        }
        for p in ["attn_norm", "ffn_norm"] {
            assert_eq!(kept(&report, &format!("layers.{l}.{p}.gamma")), axis(0));
        }
    }
    let small = apply(&model, &report.plan).unwrap();
    assert_eq!(small.embed.weight.dims(), [VOCAB, 29]);
    assert_eq!(small.layers[0].q.weight.dims(), [29, 24]);
    assert_eq!(small.layers[1].down.weight.dims(), [48, 29]);
    // The RMS norms are rescaled: epsilon by d / d', gamma by its square root.
    let ratio = 32.0 / 29.0;
    assert!((small.norm.epsilon - RMS_EPS * ratio).abs() < 1e-15);
    assert!((small.layers[1].ffn_norm.epsilon - RMS_EPS * ratio).abs() < 1e-15);
    assert_eq!(model.norm.epsilon, RMS_EPS, "the original is untouched");
    let kept_idx: Vec<i64> = keep.iter().map(|&i| i as i64).collect();
    let kept_idx = Tensor::<1, Int>::from_data(TensorData::new(kept_idx, [29]), &device);
    let expected_gamma = model
        .norm
        .gamma
        .val()
        .select(0, kept_idx)
        .mul_scalar(ratio.sqrt());
    assert!(max_abs_diff(small.norm.gamma.val(), expected_gamma) < 1e-6);

    let x = ids(2, 5, &device);
    let masked = report.plan.to_masks().apply_hard(&model).unwrap();
    let out = small.forward(x.clone());
    assert_eq!(out.dims(), [2, 5, VOCAB]);
    let diff = max_abs_diff(out, masked.forward(x));
    assert!(
        diff < 1e-4,
        "sped-up differs from the masked model by {diff}"
    );
    let after = count(&capture(&small, llama_capture).unwrap()).macs;
    assert!(after < macs, "{after} >= {macs}");

    // Saved and loaded into a fresh template: the plan alone rescales the epsilons again (they
    // are not in the weights file), so the loaded model computes the same logits.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-llama-hidden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    compress_speedup::save_pruned(&small, &report.plan, dir.join("llama")).unwrap();
    let loaded = compress_speedup::load_pruned(Llama::new(&device), dir.join("llama")).unwrap();
    assert_eq!(loaded.norm.epsilon, small.norm.epsilon);
    let x = ids(2, 5, &device);
    assert_eq!(
        loaded.forward(x.clone()).into_data(),
        small.forward(x).into_data()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// RMS norm rescaling against NumPy, and a model that does not reach its norm

#[derive(Module, Debug)]
struct EmbNorm {
    embed: Embedding,
    norm: RmsNorm,
}
compress_speedup::impl_fix_structure!(EmbNorm { norm });

fn emb_norm(device: &Device) -> EmbNorm {
    let mut embed = EmbeddingConfig::new(2, 4).init(device);
    let w = vec![0.5f32, -1.0, 2.0, 0.25, 1.5, 0.75, -0.5, -2.0];
    embed.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [2, 4]), device));
    let mut norm = RmsNormConfig::new(4).with_epsilon(RMS_EPS).init(device);
    let g = vec![1.2f32, 0.8, 1.5, 0.6];
    norm.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(g, [4]), device));
    EmbNorm { embed, norm }
}

fn emb_norm_forward(m: &EmbNorm, d: &Device) -> Tensor<3> {
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1], [1, 2]), d);
    m.norm.forward(m.embed.forward(ids))
}

#[test]
fn an_rms_norm_losing_a_channel_matches_numpy() {
    let device = Device::flex();
    let model = emb_norm(&device);
    let m = masks(&[("embed.weight", [2, 4], vec![2])]);
    let (_, report, _) = plan(&model, &m, PlanOptions::default(), emb_norm_forward);
    let small = apply(&model, &report.plan).unwrap();
    // scripts/reference/rms_norm_hidden_prune.py
    let expected = Tensor::<3>::from_data(
        TensorData::new(
            vec![
                1.04743f32, -1.396573, 0.261857, 1.379266, 0.459755, -0.919511,
            ],
            [1, 2, 3],
        ),
        &device,
    );
    let diff = max_abs_diff(emb_norm_forward(&small, &device), expected);
    assert!(diff < 1e-5, "differs from NumPy by {diff}");
    let gamma = Tensor::<1>::from_data(
        TensorData::new(vec![1.385641f32, 0.92376, 0.69282], [3]),
        &device,
    );
    assert!(max_abs_diff(small.norm.gamma.val(), gamma) < 1e-5);
    assert!((small.norm.epsilon - 1.3333333333333335e-05).abs() < 1e-18);
}

#[derive(Module, Debug)]
struct Unreached {
    embed: Embedding,
    norm: RmsNorm,
}

impl FixStructure for Unreached {
    fn fix_structure(&mut self) {}
}

#[test]
fn a_model_whose_fix_structure_misses_its_rms_norm_is_an_error_naming_the_norm() {
    let device = Device::flex();
    let EmbNorm { embed, norm } = emb_norm(&device);
    let model = Unreached { embed, norm };
    let m = masks(&[("embed.weight", [2, 4], vec![2])]);
    let (_, report, _) = plan(&model, &m, PlanOptions::default(), |m, d| {
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1], [1, 2]), d);
        m.norm.forward(m.embed.forward(ids))
    });
    let err = apply(&model, &report.plan).unwrap_err();
    assert!(
        matches!(err, SpeedupError::UnfixedNorm { ref layer } if layer == "norm"),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("RMS norm 'norm' lost channels"),
        "{err}"
    );
}

#[test]
fn a_mean_over_channels_that_is_not_an_rms_norm_still_pins_them() {
    let device = Device::flex();
    let model = emb_norm(&device);
    let m = masks(&[("embed.weight", [2, 4], vec![2])]);
    // The mean of the squares, used as a feature (no division): no rescaling can fix that.
    let (_, report, _) = plan(&model, &m, PlanOptions::default(), |m, d| {
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1], [1, 2]), d);
        let x = m.embed.forward(ids);
        x.clone().square().mean_dim(2) + x
    });
    assert_eq!(report.removed, 0);
    assert_eq!(
        report.skipped[0].reasons,
        ["reduced by a mean over channels"]
    );
}

// ---------------------------------------------------------------------------------------------
// Automatic dependency groups

/// The dependency group ids of `config`'s rules after `auto_dependency_groups` on `model`.
fn auto_ids<M: Module, const D: usize>(
    model: &M,
    forward: impl FnOnce(&M, &Device) -> Tensor<D>,
) -> (Vec<String>, compress_core::CompressConfig) {
    let config = compress_core::CompressConfig::from_toml(
        "[[config_list]]\nop_names_re = ['layers\\.0\\.(query|key|value|q|k|v)$']\nsparse_ratio = 0.5\n",
    )
    .unwrap();
    let deps = DependencyGraph::build(&capture(model, forward).unwrap()).unwrap();
    let out = deps
        .auto_dependency_groups(&config, &ModuleIndex::from_module(model))
        .unwrap();
    let ids = out
        .rules
        .iter()
        .filter_map(|r| r.shortcut.dependency_group_id.as_ref())
        .map(|g| g.0.clone())
        .collect();
    (ids, out)
}

#[test]
fn auto_dependency_groups_join_bert_q_k_v_and_leave_gqa_projections_of_different_widths_apart() {
    let device = Device::flex();
    let (ids, _) = auto_ids(&Bert::new(&device), bert_capture);
    assert_eq!(
        ids,
        ["dep0", "dep0", "dep0"],
        "q, k and v share a head group"
    );
    let llama = Llama::new(&device);
    let (ids, config) = auto_ids(&llama, llama_capture);
    assert!(ids.is_empty(), "{ids:?}");
    // The pruner still runs on them (one shared mask would need one width: 24 vs 8).
    let outcome = compress_core::prune(&llama, &config, &crate::groups::L1).unwrap();
    assert_eq!(
        outcome.masks.get("layers.0.q.weight").unwrap().shape(),
        [32, 24]
    );
}

#[test]
fn heads_of_burn_nns_multi_head_attention_stay_because_its_forward_needs_them_all() {
    // burn-nn's MultiHeadAttention reshapes the heads' context to its input width, so it cannot
    // run with fewer heads: the plan keeps them and says why.
    let device = Device::flex();
    let model = compress_zoo::TinyTransformer::new(10, &device);
    let p = "encoder.layers.0.mha";
    // Head 1 of 4 (d_k 16): columns 16..32 of q, k and v.
    let m = masks(&[
        (&format!("{p}.query.weight"), [64, 64], range(16..32)),
        (&format!("{p}.key.weight"), [64, 64], range(16..32)),
        (&format!("{p}.value.weight"), [64, 64], range(16..32)),
    ]);
    let (_, report, _) = plan(&model, &m, PlanOptions::default(), |m, d| {
        m.forward(Tensor::<2, Int>::zeros([1, 8], d))
    });
    assert_eq!(report.removed, 0);
    assert_eq!(
        removed_heads(&report, &format!("{p}.query")),
        Vec::<usize>::new()
    );
    assert_eq!(report.skipped.len(), 1, "one head asked for");
    assert_eq!(
        report.skipped[0].reasons,
        [format!(
            "a parameter of burn-nn MultiHeadAttention '{p}', whose forward needs its heads' total width to equal its input width"
        )]
    );
}
