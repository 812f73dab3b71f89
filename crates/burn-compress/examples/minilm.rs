//! all-MiniLM-L6-v2 end to end: whole attention heads and feed-forward channels pruned to half
//! the encoder's MACs, fine-tuned by embedding distillation from the original on Austen
//! sentences, then int8 weights (per output channel).
//!
//! ```text
//! cargo xtask fetch minilm-l6 && cargo xtask fetch austen
//! cargo run --release -p burn-compress --example minilm -- \
//!     --json benches/results/2026-11-30-real/minilm.json
//! ```
//!
//! Steps:
//! 1. Head importance: the L1 norm of each head's slices of q, k, v (output columns) and of the
//!    attention output projection (input rows); the `--heads` least important heads of every
//!    layer get whole-head masks. FFN importance: the L1 norm of each intermediate channel's
//!    `intermediate.dense` column and `output.dense` row; the least important are masked until
//!    the encoder's MACs at `--seq` tokens are at most half the original's.
//! 2. Speedup (capture, dependency groups, plan, apply): a physically smaller model.
//! 3. Distillation: the student's sentence embeddings are pulled to the original's with the loss
//!    `1 - cos(student, teacher)` (Adam, Burn autodiff on `Device::flex().autodiff()`), on the
//!    sentences of `emma.txt` and `persuasion.txt`; the embedding tables stay frozen.
//! 4. int8: every Linear weight as Burn `Q8S` with one max-abs scale per output channel.
//!    Activations stay float (flex dequantizes the weights at each matmul).
//!
//! Fidelity is the mean cosine between the student's and the original's embeddings over held-out
//! sentences of `northanger-abbey.txt`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
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

struct Args {
    json: Option<PathBuf>,
    heads: usize,
    seq: usize,
    train: usize,
    heldout: usize,
    epochs: usize,
    batch: usize,
    lr: f64,
}

fn args() -> Result<Args, Error> {
    let mut a = Args {
        json: None,
        heads: 4,
        seq: 32,
        train: 2048,
        heldout: 512,
        epochs: 1,
        batch: 16,
        lr: 1e-4,
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
            "--epochs" => a.epochs = value()?.parse()?,
            "--batch" => a.batch = value()?.parse()?,
            "--lr" => a.lr = value()?.parse()?,
            other => return Err(format!("unknown flag '{other}'").into()),
        }
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

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
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

/// Whole-head and FFN masks: `heads` heads per layer, and FFN channels until the MACs per layer
/// at `seq` tokens are at most half.
fn masks(model: &MiniLm, heads: usize, seq: usize) -> (MaskSet, usize) {
    let mut set = MaskSet::default();
    let d = model.hidden_size();
    let mut ffn_removed = 0;
    for (l, layer) in model.encoder.layer.iter().enumerate() {
        let attn = &layer.attention.self_attn;
        let (h, hd) = (attn.num_heads, attn.head_dim);
        let inner = h * hd;
        let ffn = layer.intermediate.dense.weight.dims()[1];
        let mut score = vec![0f32; h];
        for lin in [&attn.query, &attn.key, &attn.value] {
            for (s, v) in score.iter_mut().zip(l1_groups(&lin.weight.val(), 1, hd)) {
                *s += v;
            }
        }
        let o = layer.attention.output.dense.weight.val();
        for (s, v) in score.iter_mut().zip(l1_groups(&o, 0, hd)) {
            *s += v;
        }
        let cut: Vec<usize> = lowest(&score, heads)
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
        let mut score = l1_groups(&layer.intermediate.dense.weight.val(), 1, 1);
        let down = l1_groups(&layer.output.dense.weight.val(), 0, 1);
        for (s, v) in score.iter_mut().zip(down) {
            *s += v;
        }
        let cut = lowest(&score, remove);
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

    let train = pick(&austen, &["emma", "persuasion"], &tokenizer, args.train)?;
    let heldout = pick(&austen, &["northanger-abbey"], &tokenizer, args.heldout)?;
    let train_refs: Vec<&str> = train.iter().map(String::as_str).collect();
    let held_refs: Vec<&str> = heldout.iter().map(String::as_str).collect();
    eprintln!(
        "sentences: {} train (emma + persuasion), {} held out (northanger-abbey)",
        train.len(),
        heldout.len()
    );
    let t = Instant::now();
    let teacher_train = teacher.embed(&tokenizer, &train_refs)?;
    let teacher_held = host(teacher.embed(&tokenizer, &held_refs)?);
    eprintln!("teacher embeddings: {:.1} s", t.elapsed().as_secs_f64());

    // Prune and speed up.
    let probe: Vec<i64> = tokenizer
        .encode(
            &heldout
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        )?
        .into_iter()
        .take(args.seq)
        .map(i64::from)
        .collect();
    let seq = probe.len();
    let ids =
        move |d: &Device| Tensor::<2, Int>::from_data(TensorData::new(probe.clone(), [1, seq]), d);
    let graph = capture(&teacher, |m, d| m.forward(ids(d)))?;
    let deps = DependencyGraph::build(&graph)?;
    let (mask_set, ffn_removed) = masks(&teacher, args.heads, seq);
    let report = deps.plan(
        &mask_set,
        &ModuleIndex::from_module(&teacher),
        ConflictPolicy::Union,
    )?;
    let pruned = apply(&teacher, &report.plan)?;
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
    let d = teacher.hidden_size();
    let fidelity = |m: &MiniLm| -> Result<f64, Error> {
        Ok(mean_cosine(
            &host(m.embed(&tokenizer, &held_refs)?),
            &teacher_held,
            d,
        ))
    };
    let pruned_fidelity = fidelity(&pruned)?;
    eprintln!("held-out cosine to the original after pruning: {pruned_fidelity:.4}");

    // Distillation.
    let ad = Device::flex().autodiff();
    let mut student = burn_compress::core::mask::deep_copy(&pruned)
        .fork(&ad)
        .train();
    student.embeddings = student.embeddings.no_grad();
    let teacher_train = Tensor::<2>::from_data(teacher_train.into_data(), &ad);
    let mut optim = AdamConfig::new().init();
    let started = Instant::now();
    let mut steps = 0;
    let mut last_loss = 0.0;
    for epoch in 0..args.epochs {
        // A deterministic shuffle (LCG), different per epoch.
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ epoch as u64;
        for i in (1..order.len()).rev() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        for chunk in order.chunks(args.batch) {
            let sentences: Vec<&str> = chunk.iter().map(|&i| train_refs[i]).collect();
            let (x, mask) = batch(&tokenizer, &sentences, &ad);
            let rows: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
            let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [chunk.len()]), &ad);
            let target = teacher_train.clone().select(0, rows);
            let emb = student.forward_masked(x, mask);
            let loss = (emb * target).sum_dim(1).mean().neg().add_scalar(1.0);
            last_loss = loss.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(loss.backward(), &student);
            student = optim.step(args.lr, student, grads);
            steps += 1;
            if steps % 20 == 0 {
                eprintln!(
                    "step {steps}: loss {last_loss:.5} ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    let train_s = started.elapsed().as_secs_f64();
    let tuned = student.valid();
    let tuned_fidelity = fidelity(&tuned)?;
    eprintln!(
        "held-out cosine after distillation ({steps} steps, {train_s:.0} s): {tuned_fidelity:.4}"
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
        "train_sentences": train.len(),
        "heldout_sentences": heldout.len(),
        "train_novels": ["emma", "persuasion"],
        "heldout_novel": "northanger-abbey",
        "loss": "1 - cos(student, teacher)",
        "optimizer": format!("Adam lr {}", args.lr),
        "epochs": args.epochs,
        "batch": args.batch,
        "steps": steps,
        "final_loss": last_loss,
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
