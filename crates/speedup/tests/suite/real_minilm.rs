//! all-MiniLM-L6-v2 with its real weights (`data/external/minilm-l6`, `cargo xtask fetch
//! minilm-l6`): the capture records the HF parameter paths, and half of every feed-forward
//! layer's intermediate channels (`intermediate.dense`) pruned by speedup gives the embeddings of
//! the masked model with propagated masks.

use std::path::Path;

use burn::prelude::*;
use compress_core::{CompressConfig, ModuleIndex, prune};
use compress_graph::{capture, count};
use compress_speedup::{ConflictPolicy, DependencyGraph, apply};
use compress_zoo::MiniLm;

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
