//! all-MiniLM-L6-v2 end to end: whole attention heads and feed-forward channels pruned to half
//! the encoder's MACs, fine-tuned by distillation from the original on Austen sentences, then
//! int8 weights (per output channel).
//!
//! ```text
//! cargo xtask fetch minilm-l6 && cargo xtask fetch austen
//! cargo run --release -p burn-compress --example minilm -- \
//!     --json benches/results/2026-11-30-real/minilm.json
//! ```
//!
//! Steps:
//! 1. Importance from calibration (`--criterion act`, the default): the original runs on
//!    `--calib` training sentences. A head scores the mean over tokens of the L2 norm of its
//!    contribution to the attention output projection (its context slice times its rows of
//!    `attention.output.dense`); an FFN channel `j` scores the mean over tokens of
//!    `|GELU(intermediate)_j|` times the L2 norm of row `j` of `output.dense` (structured Wanda).
//!    `--criterion l1` is the weight-only baseline: the L1 norm of a head's q, k, v columns and
//!    output rows, of a channel's `intermediate.dense` column and `output.dense` row.
//!    The `--heads` lowest heads of every layer get whole-head masks, then the lowest FFN
//!    channels are masked until every layer's MACs at `--seq` tokens are at most half.
//! 2. Speedup (capture, dependency groups, plan, apply): a physically smaller model.
//! 3. Distillation: Adam (Burn autodiff on `Device::flex().autodiff()`) on the loss
//!    `1 - cos(student, teacher)` of the sentence embeddings plus `--hidden-weight` times the
//!    mean over layers of the MSE between the student's and the original's hidden states after
//!    each layer (real tokens only). The learning rate warms up linearly over `--warmup` steps
//!    then follows a cosine to zero. Training sentences come from every Austen novel but the
//!    held-out one; the embedding tables stay frozen.
//! 4. int8: every Linear weight as Burn `Q8S` with one max-abs scale per output channel.
//!    Activations stay float (flex dequantizes the weights at each matmul).
//!
//! Fidelity is the mean cosine between the student's and the original's embeddings over held-out
//! sentences of `northanger-abbey.txt` (never trained or calibrated on).
//!
//! Flags: `--heads` (removed per layer, 4), `--seq` (MACs measured at this many tokens, 32),
//! `--train` / `--heldout` / `--calib` (sentence counts), `--steps` (optimizer steps; default
//! `--epochs` passes over the training sentences), `--batch`, `--lr`, `--warmup`,
//! `--hidden-weight`, `--criterion l1|act`, `--json PATH`. `--sweep` only prints the one-shot
//! held-out cosine of both criteria for 0, 2, ..., 8 heads removed per layer (the FFN taking
//! the rest of the half-MACs budget) and exits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use burn_compress::core::{Dense, MaskSet, ModuleIndex};
use burn_compress::graph::{capture, count};
use burn_compress::quant::{QuantBits, QuantLevel, WeightQuant, burnpack_size, quantize_layers};
use burn_compress::speedup::{ConflictPolicy, DependencyGraph, apply};
use burn_compress::text::austen_sentences;
use burn_compress::zoo::{MiniLm, TextTokenizer};
use serde_json::json;

type Error = Box<dyn std::error::Error>;

/// The three pairs of the issue (all-MiniLM-L6-v2's model-card example).
const PAIRS: [(&str, &str); 3] = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("A man is eating food.", "A man is riding a horse."),
    ("A man is eating food.", "The new movie is awesome."),
];

/// The novel whose sentences measure fidelity; never trained or calibrated on.
const HELDOUT: &str = "northanger-abbey";

/// The training novels: every other Austen novel.
const TRAIN_NOVELS: [&str; 5] = [
    "emma",
    "persuasion",
    "pride-and-prejudice",
    "sense-and-sensibility",
    "mansfield-park",
];

/// How heads and FFN channels are ranked.
#[derive(Clone, Copy, PartialEq)]
enum Criterion {
    /// Weight L1 norms only.
    L1,
    /// Calibration activations times output weights (structured Wanda, head contributions).
    Act,
}

impl Criterion {
    fn name(self) -> &'static str {
        match self {
            Criterion::L1 => "weight L1 (q,k,v columns + output rows; FFN column + row)",
            Criterion::Act => {
                "calibration: head = mean token L2 norm of its output-projection contribution; \
                 FFN channel = mean |GELU(intermediate)| x L2 norm of its output.dense row"
            }
        }
    }
}

struct Args {
    json: Option<PathBuf>,
    heads: usize,
    seq: usize,
    train: usize,
    heldout: usize,
    calib: usize,
    epochs: usize,
    steps: Option<usize>,
    batch: usize,
    lr: f64,
    warmup: usize,
    hidden_weight: f64,
    criterion: Criterion,
    sweep: bool,
}

fn args() -> Result<Args, Error> {
    let mut a = Args {
        json: None,
        heads: 4,
        seq: 32,
        train: 8192,
        heldout: 256,
        calib: 256,
        epochs: 1,
        steps: None,
        batch: 16,
        lr: 5e-4,
        warmup: 50,
        hidden_weight: 1.0,
        criterion: Criterion::Act,
        sweep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--json" => a.json = Some(PathBuf::from(value()?)),
            "--heads" => a.heads = value()?.parse()?,
            "--seq" => a.seq = value()?.parse()?,
            "--train" => a.train = value()?.parse()?,
            "--heldout" => a.heldout = value()?.parse()?,
            "--calib" => a.calib = value()?.parse()?,
            "--epochs" => a.epochs = value()?.parse()?,
            "--steps" => a.steps = Some(value()?.parse()?),
            "--batch" => a.batch = value()?.parse()?,
            "--lr" => a.lr = value()?.parse()?,
            "--warmup" => a.warmup = value()?.parse()?,
            "--hidden-weight" => a.hidden_weight = value()?.parse()?,
            "--sweep" => a.sweep = true,
            "--criterion" => {
                a.criterion = match value()?.as_str() {
                    "l1" => Criterion::L1,
                    "act" => Criterion::Act,
                    other => {
                        return Err(format!("--criterion is 'l1' or 'act', not '{other}'").into());
                    }
                }
            }
            other => return Err(format!("unknown flag '{other}'").into()),
        }
    }
    if a.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    Ok(a)
}

/// Sentences of `novels` with 8 to 64 tokens, every `n / limit`-th one (deterministic), at
/// most `limit`.
fn pick(
    dir: &Path,
    novels: &[&str],
    tokenizer: &TextTokenizer,
    limit: usize,
) -> Result<Vec<String>, Error> {
    let mut all = Vec::new();
    for novel in novels {
        for s in austen_sentences(dir, novel)? {
            let n = tokenizer.encode(&s)?.len();
            if (8..=64).contains(&n) {
                all.push(s);
            }
        }
    }
    let stride = (all.len() / limit.max(1)).max(1);
    Ok(all.into_iter().step_by(stride).take(limit).collect())
}

/// Right-padded ids and the attention mask of a batch.
fn batch(
    tokenizer: &TextTokenizer,
    sentences: &[&str],
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2>) {
    let ids: Vec<Vec<u32>> = sentences
        .iter()
        .map(|s| tokenizer.encode(s).expect("tokenized before"))
        .collect();
    let len = ids.iter().map(Vec::len).max().unwrap_or(0);
    let mut flat = vec![0i64; ids.len() * len];
    let mut mask = vec![0f32; ids.len() * len];
    for (r, row) in ids.iter().enumerate() {
        for (c, &t) in row.iter().enumerate() {
            flat[r * len + c] = i64::from(t);
            mask[r * len + c] = 1.0;
        }
    }
    let shape = [ids.len(), len];
    (
        Tensor::from_data(TensorData::new(flat, shape), device),
        Tensor::from_data(TensorData::new(mask, shape), device),
    )
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

/// The attention bias of a `[batch, seq]` mask: 0 on real keys, -10000 on padding
/// (as `MiniLm::encode`).
fn attention_bias(mask: Tensor<2>) -> Tensor<4> {
    let [b, s] = mask.dims();
    mask.sub_scalar(1.0)
        .mul_scalar(10000.0)
        .reshape([b, 1, 1, s])
}

/// The hidden states after every layer (the same ops as `MiniLm::encode`).
fn hidden_states(model: &MiniLm, ids: Tensor<2, Int>, mask: Tensor<2>) -> Vec<Tensor<3>> {
    let bias = attention_bias(mask);
    let mut x = model.embeddings.forward(ids);
    let mut out = Vec::with_capacity(model.encoder.layer.len());
    for layer in &model.encoder.layer {
        x = layer.forward(x, bias.clone());
        out.push(x.clone());
    }
    out
}

/// L1 norm of each group of `width` consecutive entries of `axis` of a `[rows, cols]` weight.
fn l1_groups(w: &Tensor<2>, axis: usize, width: usize) -> Vec<f32> {
    let [rows, cols] = w.dims();
    let data = host(w.clone().abs());
    let n = if axis == 0 { rows } else { cols };
    let mut out = vec![0f32; n / width];
    for r in 0..rows {
        for c in 0..cols {
            let i = if axis == 0 { r } else { c };
            out[i / width] += data[r * cols + c];
        }
    }
    out
}

/// Per layer: one score per head and one per FFN channel (higher = more important).
struct Scores {
    heads: Vec<Vec<f32>>,
    ffn: Vec<Vec<f32>>,
}

/// The weight-only L1 scores.
fn l1_scores(model: &MiniLm) -> Scores {
    let mut s = Scores {
        heads: Vec::new(),
        ffn: Vec::new(),
    };
    for layer in &model.encoder.layer {
        let attn = &layer.attention.self_attn;
        let hd = attn.head_dim;
        let mut score = vec![0f32; attn.num_heads];
        for lin in [&attn.query, &attn.key, &attn.value] {
            for (s, v) in score.iter_mut().zip(l1_groups(&lin.weight.val(), 1, hd)) {
                *s += v;
            }
        }
        let o = layer.attention.output.dense.weight.val();
        for (s, v) in score.iter_mut().zip(l1_groups(&o, 0, hd)) {
            *s += v;
        }
        s.heads.push(score);
        let mut score = l1_groups(&layer.intermediate.dense.weight.val(), 1, 1);
        let down = l1_groups(&layer.output.dense.weight.val(), 0, 1);
        for (s, v) in score.iter_mut().zip(down) {
            *s += v;
        }
        s.ffn.push(score);
    }
    s
}

/// Calibration scores from the original's activations on `sentences` (see the module doc).
fn activation_scores(
    model: &MiniLm,
    tokenizer: &TextTokenizer,
    sentences: &[&str],
    device: &Device,
) -> Scores {
    let layers = &model.encoder.layer;
    let d = model.hidden_size();
    let mut heads: Vec<Vec<f64>> = layers
        .iter()
        .map(|l| vec![0.0; l.attention.self_attn.num_heads])
        .collect();
    let mut act: Vec<Vec<f64>> = layers
        .iter()
        .map(|l| vec![0.0; l.intermediate.dense.weight.dims()[1]])
        .collect();
    let mut tokens = 0f64;
    for chunk in sentences.chunks(32) {
        let (ids, mask) = batch(tokenizer, chunk, device);
        let [b, s] = ids.dims();
        let flat_mask = mask.clone().reshape([b * s, 1]);
        tokens += f64::from(mask.clone().sum().into_scalar::<f32>());
        let bias = attention_bias(mask);
        let mut x = model.embeddings.forward(ids);
        for (l, layer) in layers.iter().enumerate() {
            let attn = &layer.attention.self_attn;
            let hd = attn.head_dim;
            let context = attn.forward(x.clone(), bias.clone());
            let o = layer.attention.output.dense.weight.val();
            for (head, total) in heads[l].iter_mut().enumerate() {
                let part = context
                    .clone()
                    .slice([0..b, 0..s, head * hd..(head + 1) * hd])
                    .reshape([b * s, hd])
                    .matmul(o.clone().slice([head * hd..(head + 1) * hd, 0..d]));
                let norms = part.powi_scalar(2).sum_dim(1).sqrt() * flat_mask.clone();
                *total += f64::from(norms.sum().into_scalar::<f32>());
            }
            let x1 = layer
                .attention
                .output
                .LayerNorm
                .forward(layer.attention.output.dense.forward(context) + x);
            let inner = gelu(layer.intermediate.dense.forward(x1.clone()));
            let ffn = inner.dims()[2];
            let sums =
                host((inner.clone().reshape([b * s, ffn]).abs() * flat_mask.clone()).sum_dim(0));
            for (total, v) in act[l].iter_mut().zip(sums) {
                *total += f64::from(v);
            }
            x = layer
                .output
                .LayerNorm
                .forward(layer.output.dense.forward(inner) + x1);
        }
    }
    let mut out = Scores {
        heads: Vec::new(),
        ffn: Vec::new(),
    };
    for (l, layer) in layers.iter().enumerate() {
        out.heads
            .push(heads[l].iter().map(|v| (v / tokens) as f32).collect());
        let w = host(layer.output.dense.weight.val());
        let row_norms = w
            .chunks(d)
            .map(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt());
        out.ffn.push(
            act[l]
                .iter()
                .zip(row_norms)
                .map(|(a, n)| (a / tokens) as f32 * n)
                .collect(),
        );
    }
    out
}

/// Indices of the `k` smallest scores (ties: earlier first), increasing.
fn lowest(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let mut out: Vec<usize> = order.into_iter().take(k).collect();
    out.sort_unstable();
    out
}

/// A `[rows, cols]` mask zero on `removed` indices of `axis`.
fn zero_on(shape: [usize; 2], axis: usize, removed: &[usize]) -> Dense<u8> {
    let mut gone = vec![false; shape[axis]];
    for &i in removed {
        gone[i] = true;
    }
    let data = (0..shape[0] * shape[1])
        .map(|i| {
            let index = if axis == 0 {
                i / shape[1]
            } else {
                i % shape[1]
            };
            u8::from(!gone[index])
        })
        .collect();
    Dense::new(shape.to_vec(), data)
}

/// Whole-head and FFN masks: the `heads` lowest-scoring heads per layer, and the lowest FFN
/// channels until the MACs per layer at `seq` tokens are at most half.
fn masks(model: &MiniLm, scores: &Scores, heads: usize, seq: usize) -> (MaskSet, usize) {
    let mut set = MaskSet::default();
    let d = model.hidden_size();
    let mut ffn_removed = 0;
    for (l, layer) in model.encoder.layer.iter().enumerate() {
        let attn = &layer.attention.self_attn;
        let (h, hd) = (attn.num_heads, attn.head_dim);
        let inner = h * hd;
        let ffn = layer.intermediate.dense.weight.dims()[1];
        let cut: Vec<usize> = lowest(&scores.heads[l], heads)
            .into_iter()
            .flat_map(|i| i * hd..(i + 1) * hd)
            .collect();
        let p = format!("encoder.layer.{l}.attention");
        for name in ["query", "key", "value"] {
            set.insert(
                format!("{p}.self.{name}.weight"),
                zero_on([d, inner], 1, &cut),
            );
        }
        set.insert(
            format!("{p}.output.dense.weight"),
            zero_on([inner, d], 0, &cut),
        );

        // MACs per token: q, k, v, o (4 d kept_inner), the two attention matmuls
        // (2 seq kept_inner), the FFN (2 d kept_ffn). Keep FFN channels to reach half.
        let full = (4 * d * inner + 2 * seq * inner + 2 * d * ffn) as f64;
        let kept_inner = (h - heads) * hd;
        let attention = (4 * d * kept_inner + 2 * seq * kept_inner) as f64;
        let kept_ffn = ((full / 2.0 - attention) / (2 * d) as f64).floor().max(0.0) as usize;
        let remove = ffn - kept_ffn.min(ffn);
        ffn_removed = remove;
        let cut = lowest(&scores.ffn[l], remove);
        set.insert(
            format!("encoder.layer.{l}.intermediate.dense.weight"),
            zero_on([d, ffn], 1, &cut),
        );
        set.insert(
            format!("encoder.layer.{l}.output.dense.weight"),
            zero_on([ffn, d], 0, &cut),
        );
    }
    (set, ffn_removed)
}

/// Mean of the row-wise dot products of two sets of unit embeddings.
fn mean_cosine(a: &[f32], b: &[f32], d: usize) -> f64 {
    let n = a.len() / d;
    let sum: f64 = (0..n)
        .map(|i| {
            (0..d)
                .map(|j| f64::from(a[i * d + j]) * f64::from(b[i * d + j]))
                .sum::<f64>()
        })
        .sum();
    sum / n as f64
}

fn pair_cosines(model: &MiniLm, tokenizer: &TextTokenizer) -> Result<Vec<f64>, Error> {
    let mut out = Vec::new();
    for (a, b) in PAIRS {
        let e = host(model.embed(tokenizer, &[a, b])?);
        let d = e.len() / 2;
        out.push((0..d).map(|j| f64::from(e[j]) * f64::from(e[d + j])).sum());
    }
    Ok(out)
}

/// Seconds per sentence to embed `sentences` (one warm-up pass, then the best of three).
fn latency(model: &MiniLm, tokenizer: &TextTokenizer, sentences: &[&str]) -> Result<f64, Error> {
    model.embed(tokenizer, &sentences[..8.min(sentences.len())])?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let e = model.embed(tokenizer, sentences)?;
        let _ = e.into_data();
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best / sentences.len() as f64)
}

/// The learning rate of step `step` of `total`: linear warm-up over `warmup` steps, then a
/// cosine from `lr` to zero.
fn schedule(lr: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let t = (step - warmup) as f64 / span;
    lr * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// The order of training sentences for one epoch: a deterministic shuffle (LCG, different per
/// epoch), then sorted by length inside windows of 8 batches so that batches waste little on
/// padding, and the batches of a window shuffled.
fn epoch_batches(lengths: &[usize], batch: usize, epoch: usize) -> Vec<Vec<usize>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ epoch as u64;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize % n
    };
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, next(i + 1));
    }
    let mut out = Vec::new();
    for window in order.chunks_mut(batch * 8) {
        window.sort_by_key(|&i| lengths[i]);
        let mut batches: Vec<Vec<usize>> = window.chunks(batch).map(<[usize]>::to_vec).collect();
        for i in (1..batches.len()).rev() {
            batches.swap(i, next(i + 1));
        }
        out.extend(batches);
    }
    out
}

fn main() -> Result<(), Error> {
    let args = args()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("data/external/minilm-l6");
    let austen = root.join("data/external/austen");
    let device = Device::flex();
    let teacher = MiniLm::load(&dir, &device)?;
    let tokenizer = MiniLm::tokenizer(&dir)?;
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    let train = pick(&austen, &TRAIN_NOVELS, &tokenizer, args.train)?;
    let heldout = pick(&austen, &[HELDOUT], &tokenizer, args.heldout)?;
    let train_refs: Vec<&str> = train.iter().map(String::as_str).collect();
    let held_refs: Vec<&str> = heldout.iter().map(String::as_str).collect();
    eprintln!(
        "sentences: {} train ({}), {} held out ({HELDOUT})",
        train.len(),
        TRAIN_NOVELS.join(", "),
        heldout.len()
    );
    let t = Instant::now();
    let teacher_held = host(teacher.embed(&tokenizer, &held_refs)?);
    eprintln!(
        "teacher held-out embeddings: {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Prune and speed up.
    let probe: Vec<i64> = tokenizer
        .encode(&held_refs.join(" "))?
        .into_iter()
        .take(args.seq)
        .map(i64::from)
        .collect();
    let seq = probe.len();
    let ids =
        move |d: &Device| Tensor::<2, Int>::from_data(TensorData::new(probe.clone(), [1, seq]), d);
    let graph = capture(&teacher, |m, d| m.forward(ids(d)))?;
    let deps = DependencyGraph::build(&graph)?;
    let index = ModuleIndex::from_module(&teacher);
    let d = teacher.hidden_size();
    let fidelity = |m: &MiniLm| -> Result<f64, Error> {
        Ok(mean_cosine(
            &host(m.embed(&tokenizer, &held_refs)?),
            &teacher_held,
            d,
        ))
    };
    // Calibration sentences: spread over the training set (never the held-out novel).
    let calib_stride = (train_refs.len() / args.calib.max(1)).max(1);
    let calib: Vec<&str> = train_refs
        .iter()
        .step_by(calib_stride)
        .take(args.calib)
        .copied()
        .collect();
    let t = Instant::now();
    let act = activation_scores(&teacher, &tokenizer, &calib, &device);
    eprintln!(
        "calibration on {} sentences: {:.1} s",
        calib.len(),
        t.elapsed().as_secs_f64()
    );
    let l1 = l1_scores(&teacher);
    if args.sweep {
        // The rebalancing table: one-shot held-out cosine for 0, 2, ..., 8 heads removed per
        // layer (FFN filling the rest of the half-MACs budget), both criteria; no training.
        for heads in (0..=8).step_by(2) {
            for (criterion, scores) in [(Criterion::L1, &l1), (Criterion::Act, &act)] {
                let (mask_set, ffn_removed) = masks(&teacher, scores, heads, seq);
                let report = deps.plan(&mask_set, &index, ConflictPolicy::Union)?;
                let pruned = apply(&teacher, &report.plan)?;
                let macs = count(&capture(&pruned, |m, d| m.forward(ids(d)))?).macs;
                let ratio = macs as f64 / count(&graph).macs as f64;
                eprintln!(
                    "sweep: heads {} FFN {} MACs x{ratio:.4} criterion {}: one-shot held-out cosine {:.4}",
                    12 - heads,
                    1536 - ffn_removed,
                    if criterion == Criterion::L1 {
                        "l1"
                    } else {
                        "act"
                    },
                    fidelity(&pruned)?
                );
            }
        }
        return Ok(());
    }
    // Both criteria are pruned and measured (the one-shot comparison); `--criterion` picks
    // the one that is distilled.
    let mut one_shot = Vec::new();
    let mut chosen = None;
    for (criterion, scores) in [(Criterion::L1, &l1), (Criterion::Act, &act)] {
        let (mask_set, ffn_removed) = masks(&teacher, scores, args.heads, seq);
        let report = deps.plan(&mask_set, &index, ConflictPolicy::Union)?;
        let pruned = apply(&teacher, &report.plan)?;
        let cos = fidelity(&pruned)?;
        eprintln!(
            "one-shot pruning by {}: held-out cosine {cos:.4}",
            criterion.name()
        );
        one_shot.push((criterion, cos));
        if criterion == args.criterion {
            chosen = Some((pruned, ffn_removed, cos));
        }
    }
    let (pruned, ffn_removed, pruned_fidelity) = chosen.expect("both criteria ran");
    let dense_cost = count(&graph);
    let small_cost = count(&capture(&pruned, |m, d| m.forward(ids(d)))?);
    let macs_ratio = small_cost.macs as f64 / dense_cost.macs as f64;
    let l0 = &pruned.encoder.layer[0];
    eprintln!(
        "pruned: {} heads and {} FFN channels per layer; MACs at {seq} tokens {} -> {} (x{macs_ratio:.3})",
        l0.attention.self_attn.num_heads,
        l0.intermediate.dense.weight.dims()[1],
        dense_cost.macs,
        small_cost.macs
    );

    // Distillation.
    let ad = Device::flex().autodiff();
    let mut student = burn_compress::core::mask::deep_copy(&pruned)
        .fork(&ad)
        .train();
    student.embeddings = student.embeddings.no_grad();
    let lengths: Vec<usize> = train_refs
        .iter()
        .map(|s| tokenizer.encode(s).map(|t| t.len()))
        .collect::<Result<_, _>>()?;
    let per_epoch = train.len().div_ceil(args.batch);
    let total = args.steps.unwrap_or(args.epochs * per_epoch);
    let mut optim = AdamConfig::new().init();
    let started = Instant::now();
    let mut steps = 0;
    let mut last = (0.0f32, 0.0f32);
    let mut epoch = 0;
    let to_ad = |t: Tensor<3>| Tensor::<3>::from_data(t.into_data(), &ad);
    'train: while steps < total {
        for chunk in epoch_batches(&lengths, args.batch, epoch) {
            if steps == total {
                break 'train;
            }
            let sentences: Vec<&str> = chunk.iter().map(|&i| train_refs[i]).collect();
            let (x, mask) = batch(&tokenizer, &sentences, &device);
            let targets: Vec<Tensor<3>> = hidden_states(&teacher, x.clone(), mask.clone())
                .into_iter()
                .map(to_ad)
                .collect();
            let x = Tensor::<2, Int>::from_data(x.into_data(), &ad);
            let mask = Tensor::<2>::from_data(mask.into_data(), &ad);
            let [b, s] = mask.dims();
            let states = hidden_states(&student, x, mask.clone());
            let last_t = targets.last().expect("layers").clone();
            let teacher_emb = MiniLm::pool(last_t, mask.clone());
            let emb = MiniLm::pool(states.last().expect("layers").clone(), mask.clone());
            let cos_loss = (emb * teacher_emb).sum_dim(1).mean().neg().add_scalar(1.0);
            let mask3 = mask.clone().reshape([b, s, 1]);
            let denom = f64::from(mask.sum().into_scalar::<f32>()) * d as f64;
            let layers = states.len() as f64;
            let mut hidden_loss = Tensor::<1>::zeros([1], &ad);
            for (st, tt) in states.into_iter().zip(targets) {
                hidden_loss = hidden_loss
                    + ((st - tt).powi_scalar(2) * mask3.clone())
                        .sum()
                        .div_scalar(denom * layers);
            }
            let loss = cos_loss.clone() + hidden_loss.clone().mul_scalar(args.hidden_weight);
            last = (
                cos_loss.into_scalar::<f32>(),
                hidden_loss.into_scalar::<f32>(),
            );
            let grads = GradientsParams::from_grads(loss.backward(), &student);
            let lr = schedule(args.lr, steps, args.warmup, total);
            student = optim.step(lr, student, grads);
            steps += 1;
            if steps % 20 == 0 || steps == total {
                eprintln!(
                    "step {steps}/{total}: 1-cos {:.5}, hidden MSE {:.5}, lr {lr:.2e} ({:.0} s)",
                    last.0,
                    last.1,
                    started.elapsed().as_secs_f64()
                );
            }
            if steps % 200 == 0 {
                let cos = fidelity(&student.valid())?;
                eprintln!("step {steps}: held-out cosine {cos:.4}");
            }
        }
        epoch += 1;
        if total > 0 && per_epoch == 0 {
            break;
        }
    }
    let train_s = started.elapsed().as_secs_f64();
    let tuned = student.valid();
    let tuned_fidelity = fidelity(&tuned)?;
    eprintln!(
        "held-out cosine after distillation ({steps} steps, {epoch} epochs, {train_s:.0} s): {tuned_fidelity:.4}"
    );

    // int8 weights, one scale per output channel.
    let linears: Vec<String> = (0..tuned.encoder.layer.len())
        .flat_map(|l| {
            [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "intermediate.dense",
                "output.dense",
            ]
            .map(|s| format!("encoder.layer.{l}.{s}"))
        })
        .collect();
    let int8 = quantize_layers(
        &tuned,
        &linears,
        &WeightQuant::new(QuantBits::Q8S, QuantLevel::PerChannel),
    )?;
    let int8_fidelity = fidelity(&int8)?;
    eprintln!("held-out cosine after int8: {int8_fidelity:.4}");

    let lat_refs = &held_refs[..64.min(held_refs.len())];
    let mut rows = Vec::new();
    for (name, model, fid) in [
        ("dense", &teacher, 1.0),
        ("pruned", &pruned, pruned_fidelity),
        ("pruned+distilled", &tuned, tuned_fidelity),
        ("pruned+distilled+int8", &int8, int8_fidelity),
    ] {
        let pairs = pair_cosines(model, &tokenizer)?;
        let cost = if name == "dense" {
            dense_cost
        } else {
            small_cost
        };
        let lat = latency(model, &tokenizer, lat_refs)?;
        let bytes = burnpack_size(model)?;
        eprintln!(
            "{name:24} cos {fid:.4}  pairs {:.4} {:.4} {:.4}  MACs {}  params {}  bytes {bytes}  {:.2} ms/sentence",
            pairs[0],
            pairs[1],
            pairs[2],
            cost.macs,
            model.num_params(),
            lat * 1e3
        );
        rows.push(json!({
            "model": name,
            "heldout_mean_cosine": fid,
            "pairs": pairs,
            "macs": cost.macs,
            "params": model.num_params(),
            "encoder_params_used": cost.params,
            "bytes": bytes,
            "embed_ms_per_sentence": lat * 1e3,
        }));
    }
    let out = json!({
        "model": "all-MiniLM-L6-v2",
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "threads": threads,
        "macs_seq_len": seq,
        "macs_ratio": macs_ratio,
        "heads_per_layer": [12, 12 - args.heads],
        "ffn_per_layer": [1536, 1536 - ffn_removed],
        "criterion": args.criterion.name(),
        "calibration_sentences": calib.len(),
        "one_shot_heldout_cosine": one_shot
            .iter()
            .map(|(c, v)| json!({ "criterion": c.name(), "heldout_mean_cosine": v }))
            .collect::<Vec<_>>(),
        "train_sentences": train.len(),
        "heldout_sentences": heldout.len(),
        "train_novels": TRAIN_NOVELS,
        "heldout_novel": HELDOUT,
        "loss": format!(
            "1 - cos(student, teacher) + {} x mean over layers of hidden-state MSE (real tokens)",
            args.hidden_weight
        ),
        "optimizer": format!(
            "Adam lr {} ({} warm-up steps, cosine to 0)",
            args.lr, args.warmup
        ),
        "epochs": epoch,
        "batch": args.batch,
        "steps": steps,
        "final_loss": { "one_minus_cos": last.0, "hidden_mse": last.1 },
        "train_seconds": train_s,
        "int8": "Linear weights Q8S per output channel (max-abs); embeddings and LayerNorms f32; activations f32",
        "latency_sentences": lat_refs.len(),
        "pairs": PAIRS.iter().map(|(a, b)| format!("{a} | {b}")).collect::<Vec<_>>(),
        "rows": rows,
    });
    if let Some(path) = args.json {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&out)? + "\n")?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
