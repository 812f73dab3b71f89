//! One-shot compression of the real all-MiniLM-L6-v2 through the facade: the engine walks the
//! six encoder blocks on Austen calibration text, the registered methods compress every Linear,
//! and the result keeps the masks and grids it promises (`data/external/minilm-l6`,
//! `data/external/austen`; `cargo xtask fetch minilm-l6 austen`).
//!
//! The SmolLM2 table (every method, perplexity) is the release example
//! `crates/burn-compress/examples/oneshot_smollm2.rs`.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_compress::oneshot::{self, SequentialOptions};
use burn_compress::zoo::MiniLm;

fn external(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/external")
        .join(name)
}

/// `[out, in]` rows of every encoder Linear of `model`.
fn linears(model: &MiniLm) -> Vec<(String, usize, usize, Vec<f32>)> {
    let mut out = Vec::new();
    for (i, l) in model.encoder.layer.iter().enumerate() {
        let a = &l.attention;
        for (name, lin) in [
            ("query", &a.self_attn.query),
            ("key", &a.self_attn.key),
            ("value", &a.self_attn.value),
            ("attention.output", &a.output.dense),
            ("intermediate", &l.intermediate.dense),
            ("output", &l.output.dense),
        ] {
            let w = lin.weight.val();
            let [d_in, d_out] = w.dims();
            let v: Vec<f32> = w.into_data().iter::<f32>().collect();
            // Burn's [in, out] -> [out, in].
            let mut t = vec![0.0; v.len()];
            for r in 0..d_in {
                for c in 0..d_out {
                    t[c * d_in + r] = v[r * d_out + c];
                }
            }
            out.push((format!("{i}.{name}"), d_out, d_in, t));
        }
    }
    out
}

fn setup(samples: usize, seq: usize) -> (MiniLm, Vec<Vec<u32>>, Vec<String>) {
    let device = Device::flex();
    let dir = external("minilm-l6");
    let model = MiniLm::load(&dir, &device).unwrap_or_else(|e| panic!("{e}"));
    let tokenizer = MiniLm::tokenizer(&dir).unwrap();
    let emma = std::fs::read_to_string(external("austen/emma.txt")).unwrap();
    let ids = tokenizer
        .encode(&emma[emma.find("CHAPTER I").unwrap_or(0)..])
        .unwrap();
    let windows = oneshot::calibration_windows(&ids, samples, seq, 0).unwrap();
    let held: Vec<String> =
        burn_compress::text::austen_sentences(&external("austen"), "persuasion")
            .unwrap()
            .into_iter()
            .filter(|s| s.split_whitespace().count() >= 6)
            .step_by(97)
            .take(24)
            .collect();
    (model, windows, held)
}

fn fidelity(a: &MiniLm, b: &MiniLm, sentences: &[String]) -> f64 {
    let tokenizer = MiniLm::tokenizer(&external("minilm-l6")).unwrap();
    let s: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let ea = oneshot::minilm_embeddings(a, &tokenizer, &s, None).unwrap();
    let eb = oneshot::minilm_embeddings(b, &tokenizer, &s, None).unwrap();
    ea.iter()
        .zip(&eb)
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| f64::from(p * q)).sum::<f64>())
        .sum::<f64>()
        / ea.len() as f64
}

#[test]
fn wanda_and_sparsegpt_prune_every_minilm_linear_to_their_patterns() {
    let (dense, windows, held) = setup(4, 32);
    let device = Device::flex();
    let wanda = oneshot::method("wanda", &"sparsity = 0.5".parse().unwrap()).unwrap();
    let (pruned, report) = oneshot::compress(
        dense.clone(),
        &windows,
        wanda.as_ref(),
        &SequentialOptions::default(),
        &device,
    )
    .unwrap();
    assert_eq!(report.linears.len(), 36);
    assert_eq!((report.samples, report.seq_len), (4, 32));
    for (name, out, inp, w) in linears(&pruned) {
        for r in 0..out {
            let zeros = w[r * inp..(r + 1) * inp]
                .iter()
                .filter(|v| **v == 0.0)
                .count();
            assert_eq!(zeros, inp / 2, "{name} row {r}");
        }
    }
    let wanda_fidelity = fidelity(&dense, &pruned, &held);
    let sparsegpt =
        oneshot::method("sparsegpt", &"mask_structure = \"2:4\"".parse().unwrap()).unwrap();
    let (pruned, report) = oneshot::compress(
        dense.clone(),
        &windows,
        sparsegpt.as_ref(),
        &SequentialOptions::default(),
        &device,
    )
    .unwrap();
    assert!(report.fallbacks().is_empty(), "{:?}", report.fallbacks());
    for (name, _, _, w) in linears(&pruned) {
        for (g, group) in w.chunks(4).enumerate() {
            let zeros = group.iter().filter(|v| **v == 0.0).count();
            assert!(zeros >= 2, "{name} group {g}: {group:?}");
        }
    }
    let sparsegpt_fidelity = fidelity(&dense, &pruned, &held);
    // Both keep the embeddings close; measured 2026-11-30 (debug, 4 x 32 calibration tokens).
    assert!(wanda_fidelity > 0.8, "wanda 50%: {wanda_fidelity}");
    assert!(
        sparsegpt_fidelity > 0.7,
        "sparsegpt 2:4: {sparsegpt_fidelity}"
    );
    eprintln!("wanda 50% {wanda_fidelity:.4}, sparsegpt 2:4 {sparsegpt_fidelity:.4}");
}

#[test]
fn gptq_puts_every_minilm_weight_on_its_int4_group_grid() {
    let (dense, windows, held) = setup(4, 32);
    let device = Device::flex();
    let options = "scheme = \"W4A16_ASYM\"\nweights = { num_bits = 4, symmetric = false, strategy = \"group\", group_size = 128 }";
    let gptq = oneshot::method("gptq", &options.parse().unwrap()).unwrap();
    let (quantized, report) = oneshot::compress(
        dense.clone(),
        &windows,
        gptq.as_ref(),
        &SequentialOptions::default(),
        &device,
    )
    .unwrap();
    assert!(report.fallbacks().is_empty());
    // At most 16 distinct values in every group of 128 input columns of every row.
    for (name, out, inp, w) in linears(&quantized) {
        for r in 0..out {
            for (g, group) in w[r * inp..(r + 1) * inp].chunks(128).enumerate() {
                let mut v: Vec<u32> = group.iter().map(|x| x.to_bits()).collect();
                v.sort_unstable();
                v.dedup();
                assert!(
                    v.len() <= 16,
                    "{name} row {r} group {g}: {} values",
                    v.len()
                );
            }
        }
    }
    let f = fidelity(&dense, &quantized, &held);
    assert!(f > 0.9, "gptq int4: {f}");
    eprintln!("gptq int4 g128 {f:.4}");
}
