//! SmolLM2-135M end to end: FFN channels and KV heads pruned in one shot (no
//! fine-tuning), int8 per-channel symmetric weights, and perplexity on held-out Austen text.
//!
//! ```text
//! cargo run --release -p burn-compress --example smollm2 -- \
//!     [--gguf data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf] \
//!     [--text data/external/austen/persuasion.txt] [--window 256] [--windows 8] \
//!     [--calib data/external/austen/emma.txt] [--calib-window 128] [--calib-windows 2] \
//!     [--json benches/results/2026-11-30-real/smollm2.json]
//! ```
//!
//! The text is read from its "Chapter 1" (the title page is skipped) and the first
//! `windows x window` tokens are scored in non-overlapping windows
//! ([`compress_zoo::perplexity`]). Every variant reports perplexity, MACs and parameters of one
//! `window`-token forward (counted on the captured graph), the bytes of its saved burnpack file
//! and the wall time per window (the build profile and thread count are printed).
//!
//! - **FFN**: structured Wanda on `down_proj`'s input: channel `j` of layer `l` scores
//!   `mean over calibration tokens |silu(gate(x))_j * up(x)_j| x ||down_proj row j||_2` (Emma,
//!   `--calib`), and per layer the lowest-scored channels leave together from `gate_proj` /
//!   `up_proj` (columns) and `down_proj` (rows), removed by speedup; the kept width is rounded
//!   down to a multiple of 8 (int8 block tiling). Baselines: the library's `l1-norm` on gate/up
//!   (coupled with down by the captured graph's dependency groups) at 1% and 10%, and random at
//!   10%. A check: the 10% L1 masks applied as zeros give the removed model's perplexity (the
//!   removal is exact; L1 itself picks channels the model needs).
//! - **KV head**: per layer, one KV group (a KV head with its three query heads) leaves (masks
//!   on k/v columns, q columns, o rows; speedup removes the group), chosen two ways: the
//!   smallest magnitude (the sum over k, v, q and o of the mean squared weight of the group's
//!   slices), or the smallest rise of the mean NLL on calibration text (`--calib`, Emma by
//!   default: not the evaluation text) when that group alone is zeroed, 90 forwards.
//! - **int8**: every Linear weight per output channel and the (tied) embedding per token row,
//!   symmetric max-abs scales on Burn's `Q8S` ([`compress_quant::quantize_weights`]); the file
//!   holds the int8 values, and the perplexity is computed with them dequantized to f32 (what
//!   Burn's CPU backend does on every matmul anyway).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::sigmoid;
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
    calib: PathBuf,
    calib_window: usize,
    calib_windows: usize,
    json: Option<PathBuf>,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args {
        gguf: "data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        text: "data/external/austen/persuasion.txt".into(),
        window: 256,
        windows: 8,
        calib: "data/external/austen/emma.txt".into(),
        calib_window: 128,
        calib_windows: 2,
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
            "--calib" => a.calib = value()?.into(),
            "--calib-window" => a.calib_window = value()?.parse()?,
            "--calib-windows" => a.calib_windows = value()?.parse()?,
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

    let ids = read_ids(&tokenizer, &args.text, args.window * args.windows)?;
    let ids = &ids[..];
    let calibration = read_ids(
        &tokenizer,
        &args.calib,
        args.calib_window * args.calib_windows,
    )?;

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

    // Is the FFN removal right? L1 at 1% and 10%, random at 10%, and the 10% L1 masks applied
    // as zeros (no removal) against the removed model: the two must agree.
    let l1_01 = remove_ffn(&dense, &l1_masks(&dense, 0.01)?)?;
    rows.push(evaluate(
        "FFN 1% (15 of 1536) pruned (L1)",
        &l1_01,
        burnpack_size(&l1_01)?,
    )?);
    let masks = l1_masks(&dense, 0.10)?;
    let l1_10 = remove_ffn(&dense, &masks)?;
    rows.push(evaluate(
        "FFN 10% (153 of 1536) pruned (L1)",
        &l1_10,
        burnpack_size(&l1_10)?,
    )?);
    let zeroed = masks.apply_hard(&dense)?;
    let zeroed_ppl = perplexity(&zeroed, ids, window, None)?.perplexity;
    let removed_ppl = rows.last().map_or(f64::NAN, |r| r.perplexity);
    eprintln!("L1 10%: masked {zeroed_ppl:.4}, removed {removed_ppl:.4}");
    for seed in [1, 2] {
        let random = remove_ffn(
            &dense,
            &ffn_masks(&dense, &random_scores(&dense, seed), 0.10),
        )?;
        rows.push(evaluate(
            &format!(
                "FFN 10% ({} of 1536) pruned (random, seed {seed})",
                ffn_cut(1536, 0.10)
            ),
            &random,
            burnpack_size(&random)?,
        )?);
    }

    let t = Instant::now();
    let wanda = wanda_scores(&dense, &calibration, args.calib_window)?;
    let wanda_seconds = t.elapsed().as_secs_f64();
    let mut wanda_models = BTreeMap::new();
    for percent in [5u32, 10, 20] {
        let m = remove_ffn(
            &dense,
            &ffn_masks(&dense, &wanda, f64::from(percent) / 100.0),
        )?;
        let cut = ffn_cut(1536, f64::from(percent) / 100.0);
        rows.push(evaluate(
            &format!("FFN {percent}% ({cut} of 1536 channels per layer) pruned (Wanda)"),
            &m,
            burnpack_size(&m)?,
        )?);
        wanda_models.insert(percent, m);
    }
    let picks = magnitude_picks(&dense);
    let kv = prune_kv_groups(&dense, &picks)?;
    rows.push(evaluate(
        "1 of 3 KV heads pruned (magnitude)",
        &kv,
        burnpack_size(&kv)?,
    )?);
    let t = Instant::now();
    let picks = loss_picks(&dense, &calibration, args.calib_window)?;
    let loss_seconds = t.elapsed().as_secs_f64();
    eprintln!("KV-group scores on the calibration text: {loss_seconds:.1} s");
    let kv = prune_kv_groups(&dense, &picks)?;
    rows.push(evaluate(
        "1 of 3 KV heads pruned (calibration loss)",
        &kv,
        burnpack_size(&kv)?,
    )?);
    let (q, bytes) = int8(&wanda_models[&10])?;
    rows.push(evaluate("FFN 10% pruned (Wanda) + int8", &q, bytes)?);
    let both = prune_kv_groups(&wanda_models[&20], &picks)?;
    let (q, bytes) = int8(&both)?;
    rows.push(evaluate(
        "FFN 20% (Wanda) + 1 KV head (calibration loss) pruned + int8",
        &q,
        bytes,
    )?);

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
            "ffn_pruner": "Wanda (structured): per layer, the channels with the smallest mean |silu(gate(x)) * up(x)| over the calibration tokens times the L2 norm of their down_proj row leave (gate and up columns, down rows), one shot; L1 and random rows are the baselines",
            "ffn_wanda_seconds": wanda_seconds,
            "ffn_removal_check": {"l1_10_masked_perplexity": zeroed_ppl, "l1_10_removed_perplexity": removed_ppl},
            "kv_head_score": "sum over k, v, q, o of the mean squared weight of the group's slices; lowest leaves, one per layer",
            "int8": "Q8S symmetric max-abs: Linear weights per output channel, tied embedding per token row; perplexity with the int8 values dequantized",
            "kv_loss_score": "mean NLL rise on the calibration text when the group's o_proj rows are zeroed; lowest leaves, one per layer",
            "calibration_text": args.calib.file_name().map(|n| n.to_string_lossy().to_string()),
            "calibration_tokens": calibration.len(),
            "calibration_window": args.calib_window,
            "kv_loss_score_seconds": loss_seconds,
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

/// The first `need` tokens of the text at `path` from its "Chapter 1" (the title page
/// skipped).
fn read_ids(tokenizer: &LlamaTokenizer, path: &Path, need: usize) -> Result<Vec<u32>, Error> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read '{}' ({e}); the Austen texts come from `cargo xtask fetch austen`",
            path.display()
        )
    })?;
    let from = raw.find("Chapter 1").unwrap_or(0);
    // Under five characters per token: take enough text for the windows, not the novel.
    let mut end = (from + need * 8).min(raw.len());
    while !raw.is_char_boundary(end) {
        end += 1;
    }
    let mut ids = tokenizer.encode(&raw[from..end])?;
    if ids.len() < need {
        return Err(format!(
            "'{}' gives {} tokens from \"Chapter 1\", fewer than the {need} needed",
            path.display(),
            ids.len()
        )
        .into());
    }
    ids.truncate(need);
    Ok(ids)
}

/// `sparse_ratio` of every MLP's intermediate channels removed by `l1-norm` on gate and up
/// (the library's pruner; the two get one mask through their dependency group).
fn l1_masks(model: &SmolLm, ratio: f64) -> Result<MaskSet, Error> {
    let graph = capture(model, |m, d| m.forward(prompt(d)))?;
    let deps = DependencyGraph::build(&graph)?;
    let index = ModuleIndex::from_module(model);
    let config = CompressConfig::from_toml(&format!(
        "[[config_list]]\nop_names_re = ['model\\.layers\\.[0-9]+\\.mlp\\.(gate|up)_proj']\nsparse_ratio = {ratio}\n"
    ))?;
    let config = deps.auto_dependency_groups(&config, &index)?;
    let pruner = AlgorithmEntry::find("l1-norm")?.build_pruner(&Table::new())?;
    Ok(prune(model, &config, pruner.as_ref())?.masks)
}

/// Per layer, one score per FFN channel (lowest leaves first).
type FfnScores = Vec<Vec<f32>>;

/// Structured Wanda on `down_proj`'s input: channel `j` of layer `l` scores
/// `mean over tokens |silu(gate(x))_j * up(x)_j| * ||down_proj row j||_2` (Burn's `[in, out]`
/// layout: row `j` is what channel `j` writes to the stream), on the calibration text in
/// windows of `window` tokens. The forward mirrors `LlamaDecoderLayer::forward` step by step.
fn wanda_scores(model: &SmolLm, ids: &[u32], window: usize) -> Result<FfnScores, Error> {
    let device = Device::flex();
    let layers = &model.model.layers;
    let mut sums: FfnScores = layers
        .iter()
        .map(|l| vec![0.0; l.mlp.gate_proj.weight.dims()[1]])
        .collect();
    let mut tokens = 0usize;
    for chunk in ids.chunks_exact(window) {
        let v: Vec<i64> = chunk.iter().map(|&i| i64::from(i)).collect();
        let mut x = model
            .model
            .embed_tokens
            .forward(Tensor::from_data(TensorData::new(v, [1, window]), &device));
        for (layer, sum) in layers.iter().zip(sums.iter_mut()) {
            let h = x.clone() + layer.self_attn.forward(layer.input_layernorm.forward(x));
            let n = layer.post_attention_layernorm.forward(h.clone());
            let gate = layer.mlp.gate_proj.forward(n.clone());
            let act = gate.clone() * sigmoid(gate) * layer.mlp.up_proj.forward(n);
            let [_, _, ffn] = act.dims();
            let total = act.clone().abs().sum_dim(1).reshape([ffn]);
            for (s, t) in sum.iter_mut().zip(total.into_data().try_to_vec::<f32>()?) {
                *s += t;
            }
            x = h + layer.mlp.down_proj.forward(act);
        }
        tokens += window;
    }
    if tokens == 0 {
        return Err(
            format!("Wanda needs at least one window of {window} calibration tokens").into(),
        );
    }
    for (layer, sum) in layers.iter().zip(sums.iter_mut()) {
        let (down, [rows, cols]) = host(&layer.mlp.down_proj.weight);
        for (j, s) in sum.iter_mut().enumerate().take(rows) {
            let norm = down[j * cols..(j + 1) * cols]
                .iter()
                .map(|w| w * w)
                .sum::<f32>()
                .sqrt();
            *s = *s / tokens as f32 * norm;
        }
    }
    Ok(sums)
}

/// Seeded random FFN scores (the baseline).
fn random_scores(model: &SmolLm, seed: u64) -> FfnScores {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    model
        .model
        .layers
        .iter()
        .map(|l| {
            (0..l.mlp.gate_proj.weight.dims()[1])
                .map(|_| {
                    // xorshift64*
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32
                })
                .collect()
        })
        .collect()
}

/// FFN channels removed per layer at `ratio` of `ffn`: at least `floor(ffn * ratio)`, rounded up
/// so that the kept width is a multiple of 8. An int8 (`Q8S`) weight stores one scale per block
/// whose extents must divide the tensor's (at most 255): a prime width such as 1229 (20% of 1536
/// by floor) would get one scale per value and a file larger than at 10%.
fn ffn_cut(ffn: usize, ratio: f64) -> usize {
    let kept = ffn - (ffn as f64 * ratio).floor() as usize;
    ffn - kept / 8 * 8
}

/// Masks removing, per layer, the [`ffn_cut`] lowest-scored FFN channels: gate and up
/// columns and down rows (ties: the earlier channel first, as compress-core's allocator).
fn ffn_masks(model: &SmolLm, scores: &FfnScores, ratio: f64) -> MaskSet {
    let mut masks = MaskSet::default();
    for (n, (layer, s)) in model.model.layers.iter().zip(scores).enumerate() {
        let k = ffn_cut(s.len(), ratio);
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_by(|&a, &b| s[a].total_cmp(&s[b]).then(a.cmp(&b)));
        let cut: std::collections::BTreeSet<usize> = order[..k].iter().copied().collect();
        let p = |name: &str| format!("model.layers.{n}.mlp.{name}_proj.weight");
        let mlp = &layer.mlp;
        masks.insert(p("gate"), zero_set(mlp.gate_proj.weight.dims(), 1, &cut));
        masks.insert(p("up"), zero_set(mlp.up_proj.weight.dims(), 1, &cut));
        masks.insert(p("down"), zero_set(mlp.down_proj.weight.dims(), 0, &cut));
    }
    masks
}

/// The model with the FFN channels `masks` zero removed by speedup; checks that exactly the
/// coupled group leaves: gate and up lose the same output columns, down the same input rows,
/// nothing else changes shape.
fn remove_ffn(model: &SmolLm, masks: &MaskSet) -> Result<SmolLm, Error> {
    let graph = capture(model, |m, d| m.forward(prompt(d)))?;
    let deps = DependencyGraph::build(&graph)?;
    let report = deps.plan(
        masks,
        &ModuleIndex::from_module(model),
        ConflictPolicy::Union,
    )?;
    for (path, axes) in &report.plan.params {
        let ok = (path.ends_with("mlp.gate_proj.weight") || path.ends_with("mlp.up_proj.weight"))
            && axes.len() == 1
            && axes[0].axis == 1
            || path.ends_with("mlp.down_proj.weight") && axes.len() == 1 && axes[0].axis == 0;
        if !ok {
            return Err(format!("the FFN plan also shrinks '{path}'").into());
        }
    }
    for n in 0..model.model.layers.len() {
        let p = |name: &str| format!("model.layers.{n}.mlp.{name}_proj.weight");
        let kept = |name: &str| report.plan.params.get(&p(name)).map(|a| a[0].kept.clone());
        if kept("gate") != kept("up") || kept("gate") != kept("down") {
            return Err(format!("layer {n}: gate, up and down keep different FFN channels").into());
        }
    }
    Ok(apply(model, &report.plan)?)
}

/// Per layer, the KV group (KV head with its query heads) of the smallest magnitude: the sum
/// over k, v, q and o of the mean squared weight of the group's slices.
fn magnitude_picks(model: &SmolLm) -> Vec<usize> {
    model
        .model
        .layers
        .iter()
        .map(|layer| {
            let a = &layer.self_attn;
            let (hd, g) = (a.head_dim, a.heads / a.kv_heads);
            let (q, k, v, o) = (
                host(&a.q_proj.weight),
                host(&a.k_proj.weight),
                host(&a.v_proj.weight),
                host(&a.o_proj.weight),
            );
            let score = |kv: usize| {
                let (qlo, qhi) = (kv * g * hd, (kv + 1) * g * hd);
                mean_square(&k, 1, kv * hd..(kv + 1) * hd)
                    + mean_square(&v, 1, kv * hd..(kv + 1) * hd)
                    + mean_square(&q, 1, qlo..qhi)
                    + mean_square(&o, 0, qlo..qhi)
            };
            argmin((0..a.kv_heads).map(score))
        })
        .collect()
}

/// Per layer, the KV group whose removal raises the mean NLL of `ids` (calibration text, not
/// the evaluation text) the least, one group and one layer at a time. Zeroing the o rows of
/// the group's query heads removes exactly the group's contribution (its k and v feed only
/// those heads), so each trial is one forward of the model with one o_proj changed.
fn loss_picks(model: &SmolLm, ids: &[u32], window: usize) -> Result<Vec<usize>, Error> {
    let base = perplexity(model, ids, window, None)?.mean_nll;
    let mut picks = Vec::new();
    for (n, layer) in model.model.layers.iter().enumerate() {
        let a = &layer.self_attn;
        let (hd, g) = (a.head_dim, a.heads / a.kv_heads);
        let o = a.o_proj.weight.val();
        let [rows, cols] = o.dims();
        let mut rises = Vec::new();
        for kv in 0..a.kv_heads {
            let keep: Vec<f32> = (0..rows)
                .map(|r| if r / (g * hd) == kv { 0.0 } else { 1.0 })
                .collect();
            let keep = Tensor::<2>::from_data(TensorData::new(keep, [rows, 1]), &o.device());
            let mut trial = model.clone();
            trial.model.layers[n].self_attn.o_proj.weight =
                Param::from_tensor(o.clone() * keep.expand([rows, cols]));
            rises.push(perplexity(&trial, ids, window, None)?.mean_nll - base);
        }
        let pick = argmin(rises.iter().copied());
        eprintln!(
            "layer {n}: NLL rise per KV group {:?} -> remove {pick}",
            rises
                .iter()
                .map(|r| (r * 1e4).round() / 1e4)
                .collect::<Vec<_>>()
        );
        picks.push(pick);
    }
    Ok(picks)
}

/// Remove KV group `picks[n]` (with its query heads) from layer `n`, through speedup.
fn prune_kv_groups(model: &SmolLm, picks: &[usize]) -> Result<SmolLm, Error> {
    let graph = capture(model, |m, d| m.forward(prompt(d)))?;
    let deps = DependencyGraph::build(&graph)?;
    let mut masks = MaskSet::default();
    for ((n, layer), &kv) in model.model.layers.iter().enumerate().zip(picks) {
        let a = &layer.self_attn;
        let (hd, g) = (a.head_dim, a.heads / a.kv_heads);
        let p = |name: &str| format!("model.layers.{n}.self_attn.{name}_proj.weight");
        let (qs, ks) = (kv * g * hd..(kv + 1) * g * hd, kv * hd..(kv + 1) * hd);
        masks.insert(p("k"), zero_along(a.k_proj.weight.dims(), 1, ks.clone()));
        masks.insert(p("v"), zero_along(a.v_proj.weight.dims(), 1, ks));
        masks.insert(p("q"), zero_along(a.q_proj.weight.dims(), 1, qs.clone()));
        masks.insert(p("o"), zero_along(a.o_proj.weight.dims(), 0, qs));
    }
    let report = deps.plan(
        &masks,
        &ModuleIndex::from_module(model),
        ConflictPolicy::Union,
    )?;
    if report.removed != picks.len() {
        return Err(format!(
            "{} KV groups removed, {} asked for",
            report.removed,
            picks.len()
        )
        .into());
    }
    Ok(apply(model, &report.plan)?)
}

fn host(w: &Param<Tensor<2>>) -> (Vec<f32>, [usize; 2]) {
    let t = w.val();
    let dims = t.dims();
    (t.into_data().try_to_vec::<f32>().unwrap_or_default(), dims)
}

/// Mean square of the entries of `w` whose index along `axis` is in `range`.
fn mean_square(
    (w, dims): &(Vec<f32>, [usize; 2]),
    axis: usize,
    range: std::ops::Range<usize>,
) -> f64 {
    let (mut s, mut c) = (0f64, 0usize);
    for (i, x) in w.iter().enumerate() {
        let idx = if axis == 0 { i / dims[1] } else { i % dims[1] };
        if range.contains(&idx) {
            s += f64::from(*x) * f64::from(*x);
            c += 1;
        }
    }
    s / c.max(1) as f64
}

/// Index of the smallest value (the first on ties).
fn argmin(values: impl Iterator<Item = f64>) -> usize {
    values
        .enumerate()
        .fold(
            (0, f64::INFINITY),
            |best, (i, v)| {
                if v < best.1 { (i, v) } else { best }
            },
        )
        .0
}

/// A mask of `shape` with the indices in `cut` along `axis` zero.
fn zero_set(shape: [usize; 2], axis: usize, cut: &std::collections::BTreeSet<usize>) -> Dense<u8> {
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

/// A mask of `shape` with indices `cut` along `axis` zero.
fn zero_along(shape: [usize; 2], axis: usize, cut: std::ops::Range<usize>) -> Dense<u8> {
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

/// A short prompt for the captures that find the dependency groups.
fn prompt(device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(
        TensorData::new(vec![504i64, 3575, 282, 4649, 314], [1, 5]),
        device,
    )
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
