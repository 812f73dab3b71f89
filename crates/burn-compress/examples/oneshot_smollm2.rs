//! The one-shot table of SmolLM2-135M (issue #16): perplexity on held-out Austen text of the
//! dense model and of every one-shot method, each calibrated on other Austen text, in one run.
//!
//! ```text
//! cargo run --release -p burn-compress --example oneshot_smollm2 -- \
//!     [--calib data/external/austen/emma.txt] [--calib-samples 32] [--calib-seqlen 256] \
//!     [--text data/external/austen/persuasion.txt] [--window 256] [--eval-tokens 4096] \
//!     [--only dense,wanda-50,...] [--json PATH]
//! ```
//!
//! Rows: dense; 50% unstructured magnitude / Wanda / SparseGPT; 2:4 magnitude / Wanda /
//! SparseGPT; int4 round-to-nearest / GPTQ / AWQ (asymmetric, groups of 64: SmolLM2's width 576
//! is not a multiple of 128); W8A8 round-to-nearest and W8A8 after SmoothQuant; and 70% Wanda /
//! SparseGPT with and without OWL. Each method starts from the dense model.

use std::path::PathBuf;
use std::time::Instant;

use burn::prelude::*;
use burn_compress::oneshot::{self, SequentialOptions};
use burn_compress::zoo::{Llama, LlamaTokenizer, gguf::GgufFile};

struct Args {
    gguf: PathBuf,
    calib: PathBuf,
    samples: usize,
    seqlen: usize,
    text: PathBuf,
    window: usize,
    eval_tokens: usize,
    only: Option<Vec<String>>,
    json: Option<PathBuf>,
}

fn args() -> Result<Args, Box<dyn std::error::Error>> {
    let mut a = Args {
        gguf: "data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        calib: "data/external/austen/emma.txt".into(),
        samples: 32,
        seqlen: 256,
        text: "data/external/austen/persuasion.txt".into(),
        window: 256,
        eval_tokens: 4096,
        only: None,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--gguf" => a.gguf = value()?.into(),
            "--calib" => a.calib = value()?.into(),
            "--calib-samples" => a.samples = value()?.parse()?,
            "--calib-seqlen" => a.seqlen = value()?.parse()?,
            "--text" => a.text = value()?.into(),
            "--window" => a.window = value()?.parse()?,
            "--eval-tokens" => a.eval_tokens = value()?.parse()?,
            "--only" => a.only = Some(value()?.split(',').map(String::from).collect()),
            "--json" => a.json = Some(value()?.into()),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

/// The rows: label, registry name, options.
fn rows() -> Vec<(&'static str, &'static str, &'static str)> {
    const INT4: &str = "scheme = \"W4A16_ASYM\"\nweights = { num_bits = 4, symmetric = false, strategy = \"group\", group_size = 64 }";
    vec![
        ("dense", "", ""),
        ("magnitude-50", "magnitude", "sparsity = 0.5"),
        ("wanda-50", "wanda", "sparsity = 0.5"),
        ("sparsegpt-50", "sparsegpt", "sparsity = 0.5"),
        ("magnitude-2:4", "magnitude", "mask_structure = \"2:4\""),
        ("wanda-2:4", "wanda", "mask_structure = \"2:4\""),
        ("sparsegpt-2:4", "sparsegpt", "mask_structure = \"2:4\""),
        ("rtn-int4", "rtn", INT4),
        ("gptq-int4", "gptq", INT4),
        ("awq-int4", "awq", INT4),
        ("rtn-w8a8", "rtn", "scheme = \"W8A8\""),
        (
            "smoothquant-w8a8",
            "smoothquant",
            "smoothing_strength = 0.5",
        ),
        ("wanda-70", "wanda", "sparsity = 0.7"),
        (
            "wanda-70-owl",
            "wanda",
            "sparsity = 0.7\nsparsity_profile = \"owl\"",
        ),
        ("sparsegpt-70", "sparsegpt", "sparsity = 0.7"),
        (
            "sparsegpt-70-owl",
            "sparsegpt",
            "sparsity = 0.7\nsparsity_profile = \"owl\"",
        ),
    ]
}

/// The tokens of `path` from its "Chapter 1" heading (the title page skipped), or from its start
/// when it has none (emma.txt's headings read "CHAPTER I").
fn tokens(
    tokenizer: &LlamaTokenizer,
    path: &PathBuf,
) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read '{}' ({e}); the Austen texts come from `cargo xtask fetch austen`",
            path.display()
        )
    })?;
    let from = raw.find("Chapter 1").unwrap_or(0);
    Ok(tokenizer.encode(&raw[from..])?)
}

/// Where [`tokens`] starts reading `path`.
fn start_of(path: &PathBuf) -> &'static str {
    match std::fs::read_to_string(path) {
        Ok(raw) if raw.contains("Chapter 1") => "Chapter 1",
        _ => "the start of the file",
    }
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let device = Device::flex();
    let gguf = GgufFile::open(&args.gguf)?;
    let tokenizer = LlamaTokenizer::from_gguf(&gguf)?;
    let calib_ids = tokens(&tokenizer, &args.calib)?;
    let eval_ids = tokens(&tokenizer, &args.text)?;
    let windows = oneshot::calibration_windows(&calib_ids, args.samples, args.seqlen, 0)?;
    let threads = rayon::current_num_threads();
    println!(
        "SmolLM2-135M: calibration {} x {} tokens of {}, evaluation {} tokens of {} (windows of {}), {threads} threads",
        args.samples,
        args.seqlen,
        args.calib.display(),
        args.eval_tokens,
        args.text.display(),
        args.window
    );
    let mut results = Vec::new();
    let mut dense_ppl = None;
    for (label, name, options) in rows() {
        if let Some(only) = &args.only
            && !only.iter().any(|o| o == label)
        {
            continue;
        }
        let model = Llama::from_gguf(&gguf, &device)?;
        let table: burn_compress::core::toml::Table = options.parse()?;
        let start = Instant::now();
        let (model, report, activations) = if name.is_empty() {
            (model, None, None)
        } else {
            let method = oneshot::method(name, &table)?;
            let activations = method.activation_quant();
            let (m, r) = oneshot::compress(
                model,
                &windows,
                method.as_ref(),
                &SequentialOptions::default(),
                &device,
            )?;
            (m, Some(r), activations)
        };
        let compress_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let p = oneshot::llama_perplexity(
            &model,
            &eval_ids,
            args.window,
            Some(args.eval_tokens),
            activations,
        )?;
        let eval_s = start.elapsed().as_secs_f64();
        let ratio = dense_ppl.map_or(1.0, |d: f64| p.perplexity / d);
        if name.is_empty() {
            dense_ppl = Some(p.perplexity);
        }
        let (zeros, total) = sparsity(&model);
        println!(
            "{label:>18}: perplexity {:8.3} (x{ratio:.3}), block-Linear sparsity {:.3}, compress {compress_s:6.1} s, eval {eval_s:5.1} s{}",
            p.perplexity,
            zeros as f64 / total as f64,
            report
                .as_ref()
                .map(|r| format!(
                    ", engine peak {:.1} MiB, dead columns {}, fallbacks {}",
                    r.peak_bytes as f64 / (1 << 20) as f64,
                    r.dead_columns(),
                    r.fallbacks().len()
                ))
                .unwrap_or_default()
        );
        results.push(serde_json::json!({
            "row": label,
            "algorithm": name,
            "options": options,
            "perplexity": p.perplexity,
            "perplexity_vs_dense": ratio,
            "mean_nll": p.mean_nll,
            "scored_tokens": p.scored,
            "block_linear_sparsity": zeros as f64 / total as f64,
            "activations": activations.map(|a| format!("{a:?}")),
            "compress_seconds": compress_s,
            "eval_seconds": eval_s,
            "engine_peak_bytes": report.as_ref().map(|r| r.peak_bytes),
            "dead_columns": report.as_ref().map(|r| r.dead_columns()),
            "fallbacks": report.as_ref().map(|r| r.fallbacks().len()),
            "block_sparsity": report.as_ref().map(|r| r.block_sparsity.clone()),
            "notes": report.as_ref().map(|r| r.notes.iter().take(8).cloned().collect::<Vec<_>>()),
            "process_peak_rss_mib": peak_rss_mib(),
        }));
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "model": "SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to f32)",
            "calibration": {
                "text": args.calib, "from": start_of(&args.calib), "samples": args.samples,
                "seq_len": args.seqlen, "seed": 0,
                "sampling": "random window offsets (the reference loaders' randint), ChaCha8 seed 0",
                "offsets": oneshot::calibration_offsets(calib_ids.len(), args.samples, args.seqlen, 0),
                "text_tokens": calib_ids.len(),
                "tokenizer": "the GGUF's BPE (no BOS)"
            },
            "evaluation": {
                "text": args.text, "from": start_of(&args.text), "tokens": args.eval_tokens,
                "window": args.window
            },
            "engine": "layer-sequential, error propagation on, chunks of 8 sequences",
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "threads": threads,
            "device": "flex (CPU)",
            "rows": results,
        });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Zeros and weights over the blocks' Linear weights.
fn sparsity(model: &Llama) -> (usize, usize) {
    let mut zeros = 0;
    let mut total = 0;
    for layer in &model.model.layers {
        let a = &layer.self_attn;
        let m = &layer.mlp;
        for w in [
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ] {
            let v = w.weight.val().into_data();
            let v = v.as_slice::<f32>().unwrap_or(&[]);
            zeros += v.iter().filter(|x| **x == 0.0).count();
            total += v.len();
        }
    }
    (zeros, total.max(1))
}
