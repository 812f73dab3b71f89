//! The zoo's transformers as [`BlockModel`]s, for layer-sequential one-shot compression
//! (`compress_graph::sequential`): SmolLM2's Llama decoder and MiniLM's BERT encoder.
//!
//! Each says where its blocks are, which Linears read the same input ("true sequential" groups)
//! and which scale folds are exact:
//! - **Llama** (pre-norm): `input_layernorm -> q, k, v` and `post_attention_layernorm -> gate,
//!   up` (RMSNorm gamma divided), `up_proj -> down_proj` (SwiGLU is linear in `up`), and
//!   `v_proj -> o_proj` only without grouped-query attention (llm-awq's condition: with GQA a
//!   value channel feeds several heads' output columns).
//! - **BERT** (post-norm): only `value -> attention.output.dense`. A LayerNorm's output also
//!   feeds the residual of the next sub-layer, so dividing it would change the function: no norm
//!   fold is exact in a post-norm block.

use burn::prelude::*;
use compress_core::oneshot::{BlockModel, SmoothKind, SmoothMapping};

use crate::{Llama, MiniLm};

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

fn mapping(smooth: &str, kind: SmoothKind, balance: &[&str], inspect: &str) -> SmoothMapping {
    SmoothMapping {
        smooth: smooth.into(),
        kind,
        balance: names(balance),
        inspect: inspect.into(),
    }
}

impl BlockModel for Llama {
    fn num_blocks(&self) -> usize {
        self.model.layers.len()
    }

    fn block_path(&self, i: usize) -> String {
        format!("model.layers.{i}")
    }

    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.model.embed_tokens.forward(ids)
    }

    fn block_forward(&self, i: usize, x: Tensor<3>) -> Tensor<3> {
        self.model.layers[i].forward(x)
    }

    fn head(&self, x: Tensor<3>) -> Tensor<3> {
        self.logits(self.model.norm.forward(x))
    }

    fn linear_groups(&self, _: usize) -> Vec<Vec<String>> {
        vec![
            names(&["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]),
            names(&["self_attn.o_proj"]),
            names(&["mlp.gate_proj", "mlp.up_proj"]),
            names(&["mlp.down_proj"]),
        ]
    }

    fn smooth_mappings(&self, i: usize) -> Vec<SmoothMapping> {
        let attn = &self.model.layers[i].self_attn;
        let mut m = vec![mapping(
            "input_layernorm",
            SmoothKind::Norm,
            &["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
            "self_attn",
        )];
        if attn.heads == attn.kv_heads {
            m.push(mapping(
                "self_attn.v_proj",
                SmoothKind::Linear,
                &["self_attn.o_proj"],
                "self_attn.o_proj",
            ));
        }
        m.push(mapping(
            "post_attention_layernorm",
            SmoothKind::Norm,
            &["mlp.gate_proj", "mlp.up_proj"],
            "mlp",
        ));
        m.push(mapping(
            "mlp.up_proj",
            SmoothKind::Linear,
            &["mlp.down_proj"],
            "mlp.down_proj",
        ));
        m
    }

    fn scope_forward(&self, i: usize, scope: &str, x: Tensor<3>) -> Option<Tensor<3>> {
        let layer = self.model.layers.get(i)?;
        Some(match scope {
            "self_attn" => layer.self_attn.forward(x),
            "mlp" => layer.mlp.forward(x),
            "self_attn.q_proj" => layer.self_attn.q_proj.forward(x),
            "self_attn.k_proj" => layer.self_attn.k_proj.forward(x),
            "self_attn.v_proj" => layer.self_attn.v_proj.forward(x),
            "self_attn.o_proj" => layer.self_attn.o_proj.forward(x),
            "mlp.gate_proj" => layer.mlp.gate_proj.forward(x),
            "mlp.up_proj" => layer.mlp.up_proj.forward(x),
            "mlp.down_proj" => layer.mlp.down_proj.forward(x),
            _ => return None,
        })
    }
}

/// A zero attention bias `[batch, 1, 1, seq]`: calibration sequences are unpadded.
fn no_mask(x: &Tensor<3>) -> Tensor<4> {
    let [b, s, _] = x.dims();
    Tensor::zeros([b, 1, 1, s], &x.device())
}

impl BlockModel for MiniLm {
    fn num_blocks(&self) -> usize {
        self.encoder.layer.len()
    }

    fn block_path(&self, i: usize) -> String {
        format!("encoder.layer.{i}")
    }

    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.embeddings.forward(ids)
    }

    fn block_forward(&self, i: usize, x: Tensor<3>) -> Tensor<3> {
        let bias = no_mask(&x);
        self.encoder.layer[i].forward(x, bias)
    }

    fn head(&self, x: Tensor<3>) -> Tensor<3> {
        x
    }

    fn linear_groups(&self, _: usize) -> Vec<Vec<String>> {
        vec![
            names(&[
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
            ]),
            names(&["attention.output.dense"]),
            names(&["intermediate.dense"]),
            names(&["output.dense"]),
        ]
    }

    fn smooth_mappings(&self, _: usize) -> Vec<SmoothMapping> {
        vec![mapping(
            "attention.self.value",
            SmoothKind::Linear,
            &["attention.output.dense"],
            "attention.output.dense",
        )]
    }

    fn scope_forward(&self, i: usize, scope: &str, x: Tensor<3>) -> Option<Tensor<3>> {
        let layer = self.encoder.layer.get(i)?;
        Some(match scope {
            "attention.self.query" => layer.attention.self_attn.query.forward(x),
            "attention.self.key" => layer.attention.self_attn.key.forward(x),
            "attention.self.value" => layer.attention.self_attn.value.forward(x),
            "attention.output.dense" => layer.attention.output.dense.forward(x),
            "intermediate.dense" => layer.intermediate.dense.forward(x),
            "output.dense" => layer.output.dense.forward(x),
            _ => return None,
        })
    }
}
