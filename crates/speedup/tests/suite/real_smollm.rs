//! SmolLM2-135M (the real GGUF, `cargo xtask fetch smollm2-135m`) through capture and speedup:
//! the whole decoder is captured on the capture device, and pruning FFN channels
//! (`mlp.gate_proj` / `mlp.up_proj` outputs with `mlp.down_proj` inputs) gives a model whose
//! logits equal the masked model's with propagated masks.

use std::path::Path;

use burn::prelude::*;
use compress_core::{CompressConfig, ModuleIndex, prune};
use compress_graph::{capture, count};
use compress_speedup::{ConflictPolicy, DependencyGraph, apply};
use compress_zoo::SmolLm;

use crate::common::max_abs_diff;
use crate::groups::L1;

fn ids(v: &[i64], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(v.to_vec(), [1, v.len()]), device)
}

#[test]
fn smollm2_ffn_channel_pruning_speeds_up_to_the_masked_models_logits() {
    let device = Device::flex();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    let model = SmolLm::load(&path, &device).unwrap_or_else(|e| panic!("{e}"));
    let graph = capture(&model, |m, d| {
        m.forward(ids(&[504, 3575, 282, 4649, 314], d))
    })
    .unwrap();
    let deps = DependencyGraph::build(&graph).unwrap();
    let index = ModuleIndex::from_module(&model);
    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_names_re = ['model\\.layers\\.[0-9]+\\.mlp\\.(gate|up)_proj']\nsparse_ratio = 0.25\n",
    )
    .unwrap();
    let config = deps.auto_dependency_groups(&config, &index).unwrap();
    let outcome = prune(&model, &config, &L1).unwrap();
    let report = deps
        .plan(&outcome.masks, &index, ConflictPolicy::Union)
        .unwrap();
    let small = apply(&model, &report.plan).unwrap();
    // 25% of 1536 channels leave each of the 30 MLPs; nothing else shrinks.
    for layer in &small.model.layers {
        assert_eq!(layer.mlp.gate_proj.weight.dims(), [576, 1152]);
        assert_eq!(layer.mlp.up_proj.weight.dims(), [576, 1152]);
        assert_eq!(layer.mlp.down_proj.weight.dims(), [1152, 576]);
        assert_eq!(layer.self_attn.q_proj.weight.dims(), [576, 576]);
        assert_eq!((layer.self_attn.heads, layer.self_attn.kv_heads), (9, 3));
    }
    assert_eq!(small.model.embed_tokens.weight.dims(), [49152, 576]);
    let propagated = report.plan.to_masks().apply_hard(&model).unwrap();
    let x = ids(
        &[
            1589, 314, 253, 4569, 21902, 14494, 28, 338, 253, 2244, 555, 30,
        ],
        &device,
    );
    let (ours, reference) = (small.forward(x.clone()), propagated.forward(x));
    let scale = reference.clone().abs().max().into_scalar::<f32>().max(1.0);
    let diff = max_abs_diff(ours, reference) / scale;
    assert!(
        diff < 1e-4,
        "sped-up logits differ from the masked model's by {diff} (relative)"
    );
    let (before, after) = (
        count(&graph),
        count(
            &capture(&small, |m, d| {
                m.forward(ids(&[504, 3575, 282, 4649, 314], d))
            })
            .unwrap(),
        ),
    );
    eprintln!(
        "SmolLM2 FFN 25% pruned: MACs {} -> {}, params {} -> {}",
        before.macs, after.macs, before.params, after.params
    );
    // Per token: 30 x (q, o: 576x576; k, v: 576x192; gate, up, down: 576x1536) = 106,168,320
    // plus the tied head 576x49152 = 28,311,552; per layer the 5-token attention adds
    // 2 x 9 heads x 5 x 5 x 64 = 28,800. Params: embedding 28,311,552 + 30 x (3,538,944
    // + two norms of 576) + the final norm.
    assert_eq!(before.macs, 5 * (106_168_320 + 28_311_552) + 30 * 28_800);
    assert_eq!(before.params, 28_311_552 + 30 * (3_538_944 + 1152) + 576);
    // 384 channels of gate, up and down leave each layer: 30 x 3 x 576 x 384 per token.
    let ffn_removed = 30 * 3 * 576 * 384;
    assert_eq!(after.macs, before.macs - 5 * ffn_removed);
    assert_eq!(after.params, before.params - ffn_removed);
}
