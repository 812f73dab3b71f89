//! SmolLM2-135M end to end: FFN channels and KV heads pruned by magnitude (one shot, no
//! fine-tuning), int8 per-channel symmetric weights, and perplexity on held-out Austen text.
//!
//! ```text
//! cargo run --release -p burn-compress --example smollm2 -- \
//!     [--gguf data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf] \
//!     [--text data/external/austen/persuasion.txt] [--window 256] [--windows 8] \
//!     [--json benches/results/2026-11-30-real/smollm2.json]
//! ```
//!
//! The text is read from its "Chapter 1" (the title page is skipped) and the first
//! `windows x window` tokens are scored in non-overlapping windows
//! ([`compress_zoo::perplexity`]). Every variant reports perplexity, MACs and parameters of one
//! `window`-token forward (counted on the captured graph), the bytes of its saved burnpack file
//! and the wall time per window (the build profile and thread count are printed).
//!
//! - **FFN**: `l1-norm` on `mlp.gate_proj` / `mlp.up_proj`, coupled with `mlp.down_proj` by the
//!   captured graph's dependency groups, removed by speedup.
//! - **KV head**: per layer, the KV group (a KV head with its three query heads) with the
//!   smallest magnitude, the sum over k, v, q and o of the mean squared weight of the group's
//!   slices, leaves (masks on k/v columns, q columns, o rows; speedup removes the group).
//! - **int8**: every Linear weight per output channel and the (tied) embedding per token row,
//!   symmetric max-abs scales on Burn's `Q8S` ([`compress_quant::quantize_weights`]); the file
//!   holds the int8 values, and the perplexity is computed with them dequantized to f32 (what
//!   Burn's CPU backend does on every matmul anyway).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::DType;
use burn_compress::core::paths::{PathMapper, PathVisitor, map_params, visit_params};
use burn_compress::core::toml::Table;
use burn_compress::core::{AlgorithmEntry, CompressConfig, Dense, MaskSet, ModuleIndex, prune};
use burn_compress::graph::{capture, count};
use burn_compress::quant::{
    AffinePolicy, QuantBits, QuantLevel, WeightQuant, burnpack_size, quantize_weights,
};
use burn_compress::speedup::{ConflictPolicy, DependencyGraph, apply};
use burn_compress::zoo::gguf::GgufFile;
use burn_compress::zoo::{LlamaTokenizer, SmolLm, perplexity};

type Error = Box<dyn std::error::Error>;

struct Args {
    gguf: PathBuf,
    text: PathBuf,
    window: usize,
    windows: usize,
    json: Option<PathBuf>,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args {
        gguf: "data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        text: "data/external/austen/persuasion.txt".into(),
        window: 256,
        windows: 8,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--gguf" => a.gguf = value()?.into(),
            "--text" => a.text = value()?.into(),
            "--window" => a.window = value()?.parse()?,
            "--windows" => a.windows = value()?.parse()?,
            "--json" => a.json = Some(value()?.into()),
            other => return Err(format!("unknown argument '{other}'").into()),
        }
    }
    Ok(a)
}

/// One row of the table.
struct Row {
    name: String,
    perplexity: f64,
    mean_nll: f64,
    macs: u64,
    params: u64,
    bytes: u64,
    ms_per_window: f64,
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let device = Device::flex();
    let start = Instant::now();
    let file = GgufFile::open(&args.gguf)?;
    let dense = SmolLm::from_gguf(&file, &device)?;
    let tokenizer = LlamaTokenizer::from_gguf(&file)?;
    eprintln!("loaded {} in {:.1?}", args.gguf.display(), start.elapsed());

    let raw = std::fs::read_to_string(&args.text)
        .map_err(|e| format!("cannot read '{}': {e}", args.text.display()))?;
    let from = raw.find("Chapter 1").unwrap_or(0);
    // Roughly four characters per token: take enough text for the windows, not the novel.
    let need = args.window * args.windows;
    let mut end = (from + need * 8).min(raw.len());
    while !raw.is_char_boundary(end) {
        end += 1;
    }
    let ids = tokenizer.encode(&raw[from..end])?;
    if ids.len() < need {
        return Err(format!(
            "'{}' gives {} tokens, fewer than {} windows of {}",
            args.text.display(),
            ids.len(),
            args.windows,
            args.window
        )
        .into());
    }
    let ids = &ids[..need];

    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!(
        "{} tokens of {} ({} windows of {}), {profile} build, {threads} threads",
        ids.len(),
        args.text.display(),
        args.windows,
        args.window
    );

    let window = args.window;
    let evaluate = |name: &str, model: &SmolLm, bytes: u64| -> Result<Row, Error> {
        let graph = capture(model, |m, d| {
            let v: Vec<i64> = ids[..window].iter().map(|&i| i64::from(i)).collect();
            m.forward(Tensor::from_data(TensorData::new(v, [1, window]), d))
        })?;
        let cost = count(&graph);
        let t = Instant::now();
        let p = perplexity(model, ids, window, None)?;
        let ms = t.elapsed().as_secs_f64() * 1e3 / p.window_nll.len() as f64;
        let row = Row {
            name: name.to_string(),
            perplexity: p.perplexity,
            mean_nll: p.mean_nll,
            macs: cost.macs,
            params: cost.params,
            bytes,
            ms_per_window: ms,
        };
        eprintln!(
            "{name}: perplexity {:.3}, MACs {:.3} G, params {:.2} M, {:.1} MB, {ms:.0} ms/window",
            row.perplexity,
            row.macs as f64 / 1e9,
            row.params as f64 / 1e6,
            row.bytes as f64 / 1e6
        );
        Ok(row)
    };

    let mut rows = Vec::new();
    rows.push(evaluate("dense f32", &dense, burnpack_size(&dense)?)?);
    let (q, bytes) = int8(&dense)?;
    rows.push(evaluate("int8 per-channel weights", &q, bytes)?);

    let ffn10 = prune_ffn(&dense, 0.10)?;
    rows.push(evaluate("FFN 10% pruned", &ffn10, burnpack_size(&ffn10)?)?);
    let ffn25 = prune_ffn(&dense, 0.25)?;
    rows.push(evaluate("FFN 25% pruned", &ffn25, burnpack_size(&ffn25)?)?);
    let t = Instant::now();
    let kv = prune_kv_head(&dense)?;
    eprintln!("KV-head pruning (scores, plan, apply): {:.1?}", t.elapsed());
    rows.push(evaluate("1 of 3 KV heads pruned", &kv, burnpack_size(&kv)?)?);
    let (q, bytes) = int8(&ffn10)?;
    rows.push(evaluate("FFN 10% pruned + int8", &q, bytes)?);
    let both = prune_kv_head(&ffn25)?;
    let (q, bytes) = int8(&both)?;
    rows.push(evaluate("FFN 25% + 1 KV head pruned + int8", &q, bytes)?);

    let base = rows[0].perplexity;
    println!(
        "| variant | perplexity | vs dense | GMACs / {window} tokens | params (M) | file (MB) | ms / window |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {:.3} | {:+.2}% | {:.3} | {:.2} | {:.1} | {:.0} |",
            r.name,
            r.perplexity,
            (r.perplexity / base - 1.0) * 100.0,
            r.macs as f64 / 1e9,
            r.params as f64 / 1e6,
            r.bytes as f64 / 1e6,
            r.ms_per_window
        );
    }

    if let Some(path) = &args.json {
        let variants: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "perplexity": r.perplexity,
                    "mean_nll": r.mean_nll,
                    "perplexity_vs_dense": r.perplexity / base,
                    "macs": r.macs,
                    "params": r.params,
                    "file_bytes": r.bytes,
                    "ms_per_window": r.ms_per_window,
                })
            })
            .collect();
        let json = serde_json::json!({
            "model": "SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to f32)",
            "text": args.text.file_name().map(|n| n.to_string_lossy().to_string()),
            "text_start": "Chapter 1",
            "window": window,
            "windows": args.windows,
            "tokens": ids.len(),
            "profile": profile,
            "threads": threads,
            "ffn_pruner": "l1-norm on gate_proj/up_proj (coupled with down_proj), one shot",
            "kv_head_score": "sum over k, v, q, o of the mean squared weight of the group's slices; lowest leaves, one per layer",
            "int8": "Q8S symmetric max-abs: Linear weights per output channel, tied embedding per token row; perplexity with the int8 values dequantized",
            "fine_tuning": "none",
            "variants": variants,
        });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `sparse_ratio` of every MLP's intermediate channels removed by `l1-norm` on gate and up.
fn prune_ffn(model: &SmolLm, ratio: f64) -> Result<SmolLm, Error> {
    let graph = capture(model, |m, d| m.forward(prompt(d)))?;
    let deps = DependencyGraph::build(&graph)?;
    let index = ModuleIndex::from_module(model);
    let config = CompressConfig::from_toml(&format!(
        "[[config_list]]\nop_names_re = ['model\\.layers\\.[0-9]+\\.mlp\\.(gate|up)_proj']\nsparse_ratio = {ratio}\n"
    ))?;
    let config = deps.auto_dependency_groups(&config, &index)?;
    let pruner = AlgorithmEntry::find("l1-norm")?.build_pruner(&Table::new())?;
    let outcome = prune(model, &config, pruner.as_ref())?;
    let report = deps.plan(&outcome.masks, &index, ConflictPolicy::Union)?;
    Ok(apply(model, &report.plan)?)
}

/// In every layer, the KV group with the smallest magnitude leaves (see the module doc).
fn prune_kv_head(model: &SmolLm) -> Result<SmolLm, Error> {
    let graph = capture(model, |m, d| m.forward(prompt(d)))?;
    let deps = DependencyGraph::build(&graph)?;
    let mut masks = MaskSet::default();
    for (n, layer) in model.model.layers.iter().enumerate() {
        let a = &layer.self_attn;
        let (hd, kvh) = (a.head_dim, a.kv_heads);
        let g = a.heads / kvh;
        let host = |w: &Param<Tensor<2>>| -> (Vec<f32>, [usize; 2]) {
            let t = w.val();
            let dims = t.dims();
            (t.into_data().to_vec::<f32>().unwrap_or_default(), dims)
        };
        let (q, k, v, o) = (
            host(&a.q_proj.weight),
            host(&a.k_proj.weight),
            host(&a.v_proj.weight),
            host(&a.o_proj.weight),
        );
        // Mean square of the entries of `w` whose index along `axis` is in `lo..hi`.
        let ms = |(w, dims): &(Vec<f32>, [usize; 2]), axis: usize, lo: usize, hi: usize| {
            let (mut s, mut c) = (0f64, 0usize);
            for (i, x) in w.iter().enumerate() {
                let idx = if axis == 0 { i / dims[1] } else { i % dims[1] };
                if (lo..hi).contains(&idx) {
                    s += f64::from(*x) * f64::from(*x);
                    c += 1;
                }
            }
            s / c.max(1) as f64
        };
        let score = |kv: usize| {
            let (qlo, qhi) = (kv * g * hd, (kv + 1) * g * hd);
            ms(&k, 1, kv * hd, (kv + 1) * hd)
                + ms(&v, 1, kv * hd, (kv + 1) * hd)
                + ms(&q, 1, qlo, qhi)
                + ms(&o, 0, qlo, qhi)
        };
        let scores: Vec<f64> = (0..kvh).map(score).collect();
        let worst = (0..kvh)
            .min_by(|&x, &y| scores[x].total_cmp(&scores[y]))
            .unwrap_or(0);
        let p = |name: &str| format!("model.layers.{n}.self_attn.{name}_proj.weight");
        let (qlo, qhi) = (worst * g * hd, (worst + 1) * g * hd);
        let (klo, khi) = (worst * hd, (worst + 1) * hd);
        masks.insert(p("k"), zero_along(k.1, 1, klo..khi));
        masks.insert(p("v"), zero_along(v.1, 1, klo..khi));
        masks.insert(p("q"), zero_along(q.1, 1, qlo..qhi));
        masks.insert(p("o"), zero_along(o.1, 0, qlo..qhi));
    }
    let report = deps.plan(
        &masks,
        &ModuleIndex::from_module(model),
        ConflictPolicy::Union,
    )?;
    Ok(apply(model, &report.plan)?)
}

/// A mask of `shape` with indices `cut` along `axis` zero.
fn zero_along(shape: [usize; 2], axis: usize, cut: std::ops::Range<usize>) -> Dense<u8> {
    let data = (0..shape[0] * shape[1])
        .map(|i| {
            let idx = if axis == 0 { i / shape[1] } else { i % shape[1] };
            u8::from(!cut.contains(&idx))
        })
        .collect();
    Dense::new(shape.to_vec(), data)
}

/// A short prompt for the captures that find the dependency groups.
fn prompt(device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(vec![504i64, 3575, 282, 4649, 314], [1, 5]), device)
}

/// The model with int8 weights (dequantized back to f32 for the forward) and the bytes of the
/// int8 model's burnpack file.
fn int8(model: &SmolLm) -> Result<(SmolLm, u64), Error> {
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
    let plan: BTreeMap<String, WeightQuant> = found
        .0
        .into_iter()
        .map(|path| {
            // The embedding is also the tied output head: one scale per token row (its output
            // channel as a head), not per hidden column.
            let level = if path.ends_with("embed_tokens.weight") {
                QuantLevel::PerAxis(0)
            } else {
                QuantLevel::PerChannel
            };
            (path, WeightQuant::new(QuantBits::Q8S, level))
        })
        .collect();
    let quantized = quantize_weights(model, &plan, AffinePolicy::Error)?;
    let bytes = burnpack_size(&quantized)?;
    struct Dequantize;
    impl PathMapper for Dequantize {
        fn map<const D: usize>(&mut self, _: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| match t.dtype() {
                DType::QFloat(_) => t.dequantize(),
                _ => t,
            })
        }
    }
    Ok((map_params(quantized, &mut Dequantize), bytes))
}
