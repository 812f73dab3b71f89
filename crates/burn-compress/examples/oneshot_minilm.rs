//! The one-shot table of all-MiniLM-L6-v2 (issue #16): embedding fidelity to the dense model on
//! held-out Austen sentences, and the three example pair similarities, for every one-shot
//! method, each calibrated on other Austen text, in one run.
//!
//! ```text
//! cargo run --release -p burn-compress --example oneshot_minilm -- \
//!     [--calib-samples 32] [--calib-seqlen 128] [--heldout 256] [--only ...] [--json PATH]
//! ```
//!
//! Calibration: windows of the tokenized Emma (from its first "CHAPTER I"); held-out: sentences of 8..64
//! tokens of Northanger Abbey (every n-th, deterministic). Fidelity: the mean cosine between
//! the compressed and the dense model's sentence embeddings. MiniLM's widths (384, 1536) are
//! multiples of 128: int4 rows use groups of 128. BERT is post-norm: the only exact scale fold
//! is value -> attention output, so SmoothQuant has nothing to smooth (its row equals W8A8
//! round-to-nearest) and AWQ scales only that pair (its clip search covers every Linear but the
//! query and key).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use burn_compress::oneshot::{self, SequentialOptions};
use burn_compress::text::austen_sentences;
use burn_compress::zoo::{MiniLm, TextTokenizer};

const PAIRS: [(&str, &str); 3] = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("A man is eating food.", "A man is riding a horse."),
    ("A man is eating food.", "The new movie is awesome."),
];

struct Args {
    model: PathBuf,
    austen: PathBuf,
    samples: usize,
    seqlen: usize,
    heldout: usize,
    only: Option<Vec<String>>,
    json: Option<PathBuf>,
}

fn args() -> Result<Args, Box<dyn std::error::Error>> {
    let mut a = Args {
        model: "data/external/minilm-l6".into(),
        austen: "data/external/austen".into(),
        samples: 32,
        seqlen: 128,
        heldout: 256,
        only: None,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = value()?.into(),
            "--austen" => a.austen = value()?.into(),
            "--calib-samples" => a.samples = value()?.parse()?,
            "--calib-seqlen" => a.seqlen = value()?.parse()?,
            "--heldout" => a.heldout = value()?.parse()?,
            "--only" => a.only = Some(value()?.split(',').map(String::from).collect()),
            "--json" => a.json = Some(value()?.into()),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

fn rows() -> Vec<(&'static str, &'static str, &'static str)> {
    const INT4: &str = "scheme = \"W4A16_ASYM\"\nweights = { num_bits = 4, symmetric = false, strategy = \"group\", group_size = 128 }";
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
    ]
}

/// Sentences of `novel` with 8 to 64 tokens, every `n / limit`-th one, at most `limit`.
fn heldout(
    dir: &Path,
    novel: &str,
    tokenizer: &TextTokenizer,
    limit: usize,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut all = Vec::new();
    for s in austen_sentences(dir, novel)? {
        if (8..=64).contains(&tokenizer.encode(&s)?.len()) {
            all.push(s);
        }
    }
    let stride = (all.len() / limit.max(1)).max(1);
    Ok(all.into_iter().step_by(stride).take(limit).collect())
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-12)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let device = Device::flex();
    let tokenizer = MiniLm::tokenizer(&args.model)?;
    let raw = std::fs::read_to_string(args.austen.join("emma.txt"))?;
    let from = raw.find("CHAPTER I").unwrap_or(0);
    let calib_ids = tokenizer.encode(&raw[from..])?;
    let windows = oneshot::calibration_windows(&calib_ids, args.samples, args.seqlen, 0)?;
    let held = heldout(&args.austen, "northanger-abbey", &tokenizer, args.heldout)?;
    let held: Vec<&str> = held.iter().map(String::as_str).collect();
    let pair_sentences: Vec<&str> = PAIRS.iter().flat_map(|(a, b)| [*a, *b]).collect();
    let threads = rayon::current_num_threads();
    println!(
        "all-MiniLM-L6-v2: calibration {} x {} tokens of emma.txt, {} held-out sentences of northanger-abbey.txt, {threads} threads",
        args.samples,
        args.seqlen,
        held.len()
    );
    let dense = MiniLm::load(&args.model, &device)?;
    let reference = oneshot::minilm_embeddings(&dense, &tokenizer, &held, None)?;
    let mut results = Vec::new();
    for (label, name, options) in rows() {
        if let Some(only) = &args.only
            && !only.iter().any(|o| o == label)
        {
            continue;
        }
        let model = MiniLm::load(&args.model, &device)?;
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
        let emb = oneshot::minilm_embeddings(&model, &tokenizer, &held, activations)?;
        let fidelity = emb
            .iter()
            .zip(&reference)
            .map(|(a, b)| cosine(a, b))
            .sum::<f64>()
            / emb.len().max(1) as f64;
        let pe = oneshot::minilm_embeddings(&model, &tokenizer, &pair_sentences, activations)?;
        let pairs: Vec<f64> = pe.chunks(2).map(|p| cosine(&p[0], &p[1])).collect();
        let eval_s = start.elapsed().as_secs_f64();
        println!(
            "{label:>18}: fidelity {fidelity:.4}, pairs {:.4} / {:.4} / {:.4}, compress {compress_s:5.1} s, eval {eval_s:5.1} s{}",
            pairs[0],
            pairs[1],
            pairs[2],
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
            "heldout_mean_cosine": fidelity,
            "pairs": pairs,
            "activations": activations.map(|a| format!("{a:?}")),
            "compress_seconds": compress_s,
            "eval_seconds": eval_s,
            "engine_peak_bytes": report.as_ref().map(|r| r.peak_bytes),
            "dead_columns": report.as_ref().map(|r| r.dead_columns()),
            "fallbacks": report.as_ref().map(|r| r.fallbacks().len()),
            "notes": report.as_ref().map(|r| r.notes.iter().take(6).cloned().collect::<Vec<_>>()),
        }));
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "model": "all-MiniLM-L6-v2 (safetensors as shipped)",
            "calibration": {
                "text": "emma.txt", "from": "CHAPTER I", "samples": args.samples,
                "seq_len": args.seqlen, "seed": 0
            },
            "heldout": { "novel": "northanger-abbey", "sentences": held.len(), "tokens": "8..64" },
            "pairs": PAIRS.iter().map(|(a, b)| format!("{a} | {b}")).collect::<Vec<_>>(),
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
