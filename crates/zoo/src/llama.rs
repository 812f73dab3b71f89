//! A Llama decoder (SmolLM2-135M and its kin) loaded from a GGUF file.
//!
//! Field paths read like Hugging Face's `LlamaForCausalLM`; each maps to one GGUF tensor:
//!
//! | path | GGUF tensor | Burn shape |
//! | --- | --- | --- |
//! | `model.embed_tokens.weight` | `token_embd.weight` | `[vocab, d]` |
//! | `model.layers.N.input_layernorm.gamma` | `blk.N.attn_norm.weight` | `[d]` |
//! | `model.layers.N.self_attn.q_proj.weight` | `blk.N.attn_q.weight` | `[d, heads * head_dim]` |
//! | `model.layers.N.self_attn.k_proj.weight` | `blk.N.attn_k.weight` | `[d, kv_heads * head_dim]` |
//! | `model.layers.N.self_attn.v_proj.weight` | `blk.N.attn_v.weight` | `[d, kv_heads * head_dim]` |
//! | `model.layers.N.self_attn.o_proj.weight` | `blk.N.attn_output.weight` | `[heads * head_dim, d]` |
//! | `model.layers.N.post_attention_layernorm.gamma` | `blk.N.ffn_norm.weight` | `[d]` |
//! | `model.layers.N.mlp.gate_proj.weight` | `blk.N.ffn_gate.weight` | `[d, ffn]` |
//! | `model.layers.N.mlp.up_proj.weight` | `blk.N.ffn_up.weight` | `[d, ffn]` |
//! | `model.layers.N.mlp.down_proj.weight` | `blk.N.ffn_down.weight` | `[ffn, d]` |
//! | `model.norm.gamma` | `output_norm.weight` | `[d]` |
//! | `lm_head.weight` (absent when tied) | `output.weight` | `[d, vocab]` |
//!
//! Linear weights are Burn's `[in, out]` (the GGUF row-major `[out, in]`, transposed on load).
//! The forward is Llama's: RMSNorm, RoPE in GGML's "normal" mode (adjacent pairs `(0, 1), (2, 3),
//! ...`; llama.cpp's converter already permuted q and k from Hugging Face's half-split layout),
//! grouped-query attention with a causal mask, SwiGLU, and tied embeddings when the file has no
//! `output.weight`.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};

use crate::gguf::{GgufError, GgufFile};

/// What can go wrong building or running a Llama model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlamaError {
    /// The GGUF file is missing.
    #[error("GGUF '{}' not found (SmolLM2-135M comes from `cargo xtask fetch smollm2-135m`)", .path.display())]
    MissingFile {
        /// The path given.
        path: PathBuf,
    },
    /// Reading the GGUF failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The file's hyperparameters or tensors do not make a Llama model.
    #[error("GGUF '{}' is not a Llama model this loader builds: {message}", .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What does not fit (naming the key or tensor).
        message: String,
    },
    /// The tokenizer could not be built or failed on a text.
    #[error("tokenizer: {message}")]
    Tokenizer {
        /// What went wrong.
        message: String,
    },
    /// A text shorter than one evaluation window.
    #[error("text of {tokens} tokens is shorter than one window of {window} tokens")]
    TooShort {
        /// Tokens in the text.
        tokens: usize,
        /// The window.
        window: usize,
    },
    /// A bad argument (window, token id).
    #[error("{0}")]
    Argument(String),
}

/// The hyperparameters read from the GGUF metadata (`llama.*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlamaConfig {
    /// `llama.block_count`.
    pub layers: usize,
    /// `llama.embedding_length`.
    pub hidden: usize,
    /// `llama.feed_forward_length`.
    pub ffn: usize,
    /// `llama.attention.head_count`.
    pub heads: usize,
    /// `llama.attention.head_count_kv` (defaults to `heads`).
    pub kv_heads: usize,
    /// `llama.rope.freq_base` (defaults to 10000).
    pub rope_base: f64,
    /// `llama.attention.layer_norm_rms_epsilon`.
    pub rms_eps: f64,
    /// Rows of `token_embd.weight`.
    pub vocab: usize,
}

impl LlamaConfig {
    /// Read from a GGUF file's metadata; the vocabulary size from `token_embd.weight`.
    ///
    /// # Errors
    /// [`LlamaError::Gguf`] for a missing key, [`LlamaError::Config`] when the architecture is
    /// not `llama` or the sizes do not divide (heads into hidden, kv heads into heads).
    pub fn from_gguf(f: &GgufFile) -> Result<Self, LlamaError> {
        let bad = |message: String| LlamaError::Config {
            path: f.path().to_path_buf(),
            message,
        };
        let arch = f.get("general.architecture")?;
        if arch.as_str() != Some("llama") {
            return Err(bad(format!(
                "general.architecture is {arch:?}, expected \"llama\""
            )));
        }
        let heads = f.get_usize("llama.attention.head_count")?;
        let config = Self {
            layers: f.get_usize("llama.block_count")?,
            hidden: f.get_usize("llama.embedding_length")?,
            ffn: f.get_usize("llama.feed_forward_length")?,
            heads,
            kv_heads: match f.metadata.contains_key("llama.attention.head_count_kv") {
                true => f.get_usize("llama.attention.head_count_kv")?,
                false => heads,
            },
            rope_base: match f.metadata.contains_key("llama.rope.freq_base") {
                true => f.get_f64("llama.rope.freq_base")?,
                false => 10_000.0,
            },
            rms_eps: f.get_f64("llama.attention.layer_norm_rms_epsilon")?,
            vocab: f
                .tensor_info("token_embd.weight")
                .and_then(|t| t.shape().first().copied())
                .ok_or_else(|| bad("no tensor 'token_embd.weight'".into()))?,
        };
        if heads == 0
            || !config.hidden.is_multiple_of(heads)
            || !(config.hidden / heads).is_multiple_of(2)
        {
            return Err(bad(format!(
                "llama.embedding_length {} is not llama.attention.head_count {heads} times an even head size",
                config.hidden
            )));
        }
        if config.kv_heads == 0 || !heads.is_multiple_of(config.kv_heads) {
            return Err(bad(format!(
                "llama.attention.head_count {heads} is not a multiple of llama.attention.head_count_kv {}",
                config.kv_heads
            )));
        }
        Ok(config)
    }

    /// `hidden / heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// A randomly initialized model of this shape (tied embeddings, gamma 1 plus noise): for
    /// tests of code that walks a Llama without the real weights.
    pub fn init(&self, device: &Device) -> Llama {
        use burn::nn::{EmbeddingConfig, LinearConfig, RmsNormConfig};
        use burn::tensor::Distribution;
        let (d, hd) = (self.hidden, self.head_dim());
        let linear = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        let norm = || {
            let mut n = RmsNormConfig::new(d)
                .with_epsilon(self.rms_eps)
                .init(device);
            n.gamma =
                Param::from_tensor(Tensor::random([d], Distribution::Uniform(0.5, 1.5), device));
            n
        };
        let layers = (0..self.layers)
            .map(|_| LlamaDecoderLayer {
                self_attn: LlamaAttention {
                    q_proj: linear(d, self.heads * hd),
                    k_proj: linear(d, self.kv_heads * hd),
                    v_proj: linear(d, self.kv_heads * hd),
                    o_proj: linear(self.heads * hd, d),
                    heads: self.heads,
                    kv_heads: self.kv_heads,
                    head_dim: hd,
                    rope_base: self.rope_base,
                },
                mlp: LlamaMlp {
                    gate_proj: linear(d, self.ffn),
                    up_proj: linear(d, self.ffn),
                    down_proj: linear(self.ffn, d),
                },
                input_layernorm: norm(),
                post_attention_layernorm: norm(),
            })
            .collect();
        Llama {
            model: LlamaModel {
                embed_tokens: EmbeddingConfig::new(self.vocab, d).init(device),
                layers,
                norm: norm(),
            },
            lm_head: None,
        }
    }
}

/// Grouped-query self-attention with RoPE.
#[derive(Module, Debug)]
pub struct LlamaAttention {
    /// `Linear(d -> heads * head_dim)`, no bias (`blk.N.attn_q.weight`).
    pub q_proj: Linear,
    /// `Linear(d -> kv_heads * head_dim)`, no bias (`blk.N.attn_k.weight`).
    pub k_proj: Linear,
    /// `Linear(d -> kv_heads * head_dim)`, no bias (`blk.N.attn_v.weight`).
    pub v_proj: Linear,
    /// `Linear(heads * head_dim -> d)`, no bias (`blk.N.attn_output.weight`).
    pub o_proj: Linear,
    /// Query heads; follows `q_proj`'s width after pruning ([`compress_core::FixStructure`]).
    pub heads: usize,
    /// Key/value heads; follows `k_proj`'s width after pruning.
    pub kv_heads: usize,
    /// Size of one head (fixed: RoPE rotates pairs within it).
    pub head_dim: usize,
    /// RoPE's frequency base.
    pub rope_base: f64,
}

impl LlamaAttention {
    /// Causal self-attention.
    ///
    /// # Shapes
    /// - `x`: `[b, s, d]`
    /// - output: `[b, s, d]`
    ///
    /// # Panics
    /// If `heads` is not a multiple of `kv_heads` (GQA pruning must leave every KV head the
    /// same number of query heads).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, _] = x.dims();
        assert!(
            self.kv_heads > 0 && self.heads.is_multiple_of(self.kv_heads),
            "{} query heads cannot share {} KV heads evenly",
            self.heads,
            self.kv_heads
        );
        let (h, kvh, hd) = (self.heads, self.kv_heads, self.head_dim);
        let device = x.device();
        let q = self
            .q_proj
            .forward(x.clone())
            .reshape([b, s, h, hd])
            .swap_dims(1, 2);
        let k = self
            .k_proj
            .forward(x.clone())
            .reshape([b, s, kvh, hd])
            .swap_dims(1, 2);
        let v = self
            .v_proj
            .forward(x)
            .reshape([b, s, kvh, hd])
            .swap_dims(1, 2);
        let (cos, sin) = rope_tables(s, hd, self.rope_base, &device);
        let q = rope(q, cos.clone(), sin.clone());
        let k = rope(k, cos, sin);
        // Hugging Face's repeat_kv: query head kv * g + j reads kv head kv.
        let g = h / kvh;
        let repeat = |t: Tensor<4>| {
            t.reshape([b, kvh, 1, s, hd])
                .expand([b, kvh, g, s, hd])
                .reshape([b, kvh * g, s, hd])
        };
        let (k, v) = (repeat(k), repeat(v));
        let scores = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt();
        let scores = scores + causal_mask(s, &device);
        let out = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, s, h * hd]);
        self.o_proj.forward(out)
    }
}

/// `cos` and `sin` of RoPE's angles, `[1, 1, s, hd / 2, 1]`: position `p`, pair `i`, angle
/// `p * base^(-2i / hd)` (computed in f64 on the host).
fn rope_tables(s: usize, hd: usize, base: f64, device: &Device) -> (Tensor<5>, Tensor<5>) {
    let half = hd / 2;
    let angles: Vec<f64> = (0..s)
        .flat_map(|p| (0..half).map(move |i| p as f64 * base.powf(-2.0 * i as f64 / hd as f64)))
        .collect();
    let table = |f: fn(f64) -> f64| {
        let v: Vec<f32> = angles.iter().map(|&a| f(a) as f32).collect();
        Tensor::<5>::from_data(TensorData::new(v, [1, 1, s, half, 1]), device)
    };
    (table(f64::cos), table(f64::sin))
}

/// RoPE on `[b, heads, s, hd]` over adjacent pairs `(2i, 2i + 1)` (GGML's normal mode).
fn rope(x: Tensor<4>, cos: Tensor<5>, sin: Tensor<5>) -> Tensor<4> {
    let [b, h, s, hd] = x.dims();
    let pairs = x.reshape([b, h, s, hd / 2, 2]);
    let x0 = pairs.clone().slice([0..b, 0..h, 0..s, 0..hd / 2, 0..1]);
    let x1 = pairs.slice([0..b, 0..h, 0..s, 0..hd / 2, 1..2]);
    let r0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
    let r1 = x0 * sin + x1 * cos;
    Tensor::cat(vec![r0, r1], 4).reshape([b, h, s, hd])
}

/// `[1, 1, s, s]`: 0 on and below the diagonal, -inf above.
fn causal_mask(s: usize, device: &Device) -> Tensor<4> {
    let v: Vec<f32> = (0..s * s)
        .map(|i| {
            if i % s > i / s {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    Tensor::<4>::from_data(TensorData::new(v, [1, 1, s, s]), device)
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct LlamaMlp {
    /// `Linear(d -> ffn)`, no bias (`blk.N.ffn_gate.weight`).
    pub gate_proj: Linear,
    /// `Linear(d -> ffn)`, no bias (`blk.N.ffn_up.weight`).
    pub up_proj: Linear,
    /// `Linear(ffn -> d)`, no bias (`blk.N.ffn_down.weight`).
    pub down_proj: Linear,
}

impl LlamaMlp {
    /// # Shapes
    /// `[b, s, d]` to `[b, s, d]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = self.gate_proj.forward(x.clone());
        // silu as x * sigmoid(x): two ops every graph rule table knows.
        let act = gate.clone() * sigmoid(gate);
        self.down_proj.forward(act * self.up_proj.forward(x))
    }
}

/// One decoder block: pre-norm attention and pre-norm MLP, each with a residual.
#[derive(Module, Debug)]
pub struct LlamaDecoderLayer {
    /// Attention.
    pub self_attn: LlamaAttention,
    /// SwiGLU MLP.
    pub mlp: LlamaMlp,
    /// RMSNorm before attention (`blk.N.attn_norm.weight`).
    pub input_layernorm: RmsNorm,
    /// RMSNorm before the MLP (`blk.N.ffn_norm.weight`).
    pub post_attention_layernorm: RmsNorm,
}

impl LlamaDecoderLayer {
    /// # Shapes
    /// `[b, s, d]` to `[b, s, d]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.input_layernorm.forward(x));
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
    }
}

/// The decoder stack (Hugging Face's `LlamaModel`).
#[derive(Module, Debug)]
pub struct LlamaModel {
    /// Token embeddings `[vocab, d]` (`token_embd.weight`).
    pub embed_tokens: Embedding,
    /// The blocks.
    pub layers: Vec<LlamaDecoderLayer>,
    /// Final RMSNorm (`output_norm.weight`).
    pub norm: RmsNorm,
}

/// A Llama causal language model (`LlamaForCausalLM`): [`LlamaModel`] plus the output head,
/// tied to the embeddings unless the file has `output.weight`.
#[derive(Module, Debug)]
pub struct Llama {
    /// The decoder.
    pub model: LlamaModel,
    /// The untied output head `Linear(d -> vocab)`; `None` when tied to `model.embed_tokens`.
    pub lm_head: Option<Linear>,
}

/// SmolLM2-135M(-Instruct) is a [`Llama`]: 30 layers, hidden 576, 9 query / 3 KV heads, FFN
/// 1536, RoPE base 1e5, tied embeddings.
pub type SmolLm = Llama;

/// A dequantized GGUF tensor checked against the shape the model needs.
fn load_tensor<const D: usize>(
    f: &GgufFile,
    name: &str,
    shape: [usize; D],
    device: &Device,
) -> Result<Tensor<D>, LlamaError> {
    let (found, values) = f.tensor_f32(name)?;
    if found != shape {
        return Err(LlamaError::Config {
            path: f.path().to_path_buf(),
            message: format!("tensor '{name}' has shape {found:?}, expected {shape:?}"),
        });
    }
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}

/// A bias-free Linear from a GGUF matrix `[out, in]` (row-major), stored as Burn's `[in, out]`.
fn load_linear(
    f: &GgufFile,
    name: &str,
    d_in: usize,
    d_out: usize,
    device: &Device,
) -> Result<Linear, LlamaError> {
    let (found, values) = f.tensor_f32(name)?;
    if found != [d_out, d_in] {
        return Err(LlamaError::Config {
            path: f.path().to_path_buf(),
            message: format!("tensor '{name}' has shape {found:?}, expected [{d_out}, {d_in}]"),
        });
    }
    // Transpose on the host so the weight is a plain contiguous [in, out] tensor.
    let mut t = vec![0f32; values.len()];
    for (o, row) in values.chunks_exact(d_in).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            t[i * d_out + o] = v;
        }
    }
    let weight = Tensor::<2>::from_data(TensorData::new(t, [d_in, d_out]), device);
    Ok(Linear {
        weight: Param::from_tensor(weight),
        bias: None,
    })
}

fn load_norm(
    f: &GgufFile,
    name: &str,
    d: usize,
    eps: f64,
    device: &Device,
) -> Result<RmsNorm, LlamaError> {
    Ok(RmsNorm {
        gamma: Param::from_tensor(load_tensor(f, name, [d], device)?),
        epsilon: eps,
    })
}

impl Llama {
    /// Load from a GGUF file (Q4_1 / Q8_0 / F16 / F32 / Q4_0 / Q6_K tensors, dequantized to
    /// f32).
    ///
    /// # Errors
    /// [`LlamaError::MissingFile`] naming the path and the fetch command, [`LlamaError::Gguf`]
    /// for an unreadable file, a missing key or tensor or an unsupported tensor type (naming the
    /// tensor), [`LlamaError::Config`] for sizes that do not fit.
    pub fn load(path: &Path, device: &Device) -> Result<Self, LlamaError> {
        if !path.is_file() {
            return Err(LlamaError::MissingFile {
                path: path.to_path_buf(),
            });
        }
        Self::from_gguf(&GgufFile::open(path)?, device)
    }

    /// Build from an opened GGUF file; see [`Llama::load`].
    ///
    /// # Errors
    /// As [`Llama::load`].
    pub fn from_gguf(f: &GgufFile, device: &Device) -> Result<Self, LlamaError> {
        let c = LlamaConfig::from_gguf(f)?;
        let (d, hd) = (c.hidden, c.head_dim());
        let layers = (0..c.layers)
            .map(|n| {
                let name = |t: &str| format!("blk.{n}.{t}.weight");
                let linear = |t: &str, i, o| load_linear(f, &name(t), i, o, device);
                Ok(LlamaDecoderLayer {
                    self_attn: LlamaAttention {
                        q_proj: linear("attn_q", d, c.heads * hd)?,
                        k_proj: linear("attn_k", d, c.kv_heads * hd)?,
                        v_proj: linear("attn_v", d, c.kv_heads * hd)?,
                        o_proj: linear("attn_output", c.heads * hd, d)?,
                        heads: c.heads,
                        kv_heads: c.kv_heads,
                        head_dim: hd,
                        rope_base: c.rope_base,
                    },
                    mlp: LlamaMlp {
                        gate_proj: linear("ffn_gate", d, c.ffn)?,
                        up_proj: linear("ffn_up", d, c.ffn)?,
                        down_proj: linear("ffn_down", c.ffn, d)?,
                    },
                    input_layernorm: load_norm(f, &name("attn_norm"), d, c.rms_eps, device)?,
                    post_attention_layernorm: load_norm(
                        f,
                        &name("ffn_norm"),
                        d,
                        c.rms_eps,
                        device,
                    )?,
                })
            })
            .collect::<Result<Vec<_>, LlamaError>>()?;
        let embed = load_tensor(f, "token_embd.weight", [c.vocab, d], device)?;
        let lm_head = match f.tensor_info("output.weight") {
            Some(_) => Some(load_linear(f, "output.weight", d, c.vocab, device)?),
            None => None,
        };
        Ok(Self {
            model: LlamaModel {
                embed_tokens: Embedding {
                    weight: Param::from_tensor(embed),
                },
                layers,
                norm: load_norm(f, "output_norm.weight", d, c.rms_eps, device)?,
            },
            lm_head,
        })
    }

    /// The vocabulary size (rows of the embedding).
    pub fn vocab_size(&self) -> usize {
        self.model.embed_tokens.weight.lazy_shape()[0]
    }

    /// Next-token logits at every position.
    ///
    /// # Shapes
    /// - `ids`: `[b, s]` token ids below [`Llama::vocab_size`]
    /// - output: `[b, s, vocab]`
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let mut x = self.model.embed_tokens.forward(ids);
        for layer in &self.model.layers {
            x = layer.forward(x);
        }
        self.logits(self.model.norm.forward(x))
    }

    /// The LM head (or the tied embedding) on final-normed hidden states.
    ///
    /// # Shapes
    /// - `x`: `[b, s, hidden]`
    /// - output: `[b, s, vocab]`
    pub fn logits(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, d] = x.dims();
        match &self.lm_head {
            Some(head) => head.forward(x),
            None => {
                let vocab = self.vocab_size();
                let w = self.model.embed_tokens.weight.val().transpose();
                x.reshape([b * s, d]).matmul(w).reshape([b, s, vocab])
            }
        }
    }

    /// `steps` greedy tokens after `prompt` (each step reruns the whole sequence: a sanity
    /// helper, not a fast decoder).
    ///
    /// # Errors
    /// [`LlamaError::Argument`] for an empty prompt or an id outside the vocabulary.
    pub fn generate_greedy(
        &self,
        prompt: &[u32],
        steps: usize,
        device: &Device,
    ) -> Result<Vec<u32>, LlamaError> {
        check_ids(prompt, self.vocab_size())?;
        let mut seq = prompt.to_vec();
        for _ in 0..steps {
            let logits = self.forward(ids_tensor(&seq, device));
            let [_, s, vocab] = logits.dims();
            let last = logits.slice([0..1, s - 1..s, 0..vocab]).reshape([vocab]);
            let next = last.argmax(0).into_scalar::<i64>();
            seq.push(next as u32);
        }
        Ok(seq.split_off(prompt.len()))
    }
}

/// Refuse an empty sequence or ids outside the vocabulary.
pub(crate) fn check_ids(ids: &[u32], vocab: usize) -> Result<(), LlamaError> {
    if ids.is_empty() {
        return Err(LlamaError::Argument("empty token sequence".into()));
    }
    if let Some((i, id)) = ids
        .iter()
        .enumerate()
        .find(|(_, id)| **id as usize >= vocab)
    {
        return Err(LlamaError::Argument(format!(
            "token {i} has id {id}, outside the vocabulary of {vocab}"
        )));
    }
    Ok(())
}

/// `[1, n]` token ids.
pub(crate) fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    Tensor::<2, Int>::from_data(TensorData::new(v, [1, ids.len()]), device)
}

impl compress_core::FixStructure for LlamaAttention {
    fn fix_structure(&mut self) {
        // Head pruning removes whole heads: head_dim stays, the counts follow the projections.
        let q = self.q_proj.weight.lazy_shape()[1];
        let kv = self.k_proj.weight.lazy_shape()[1];
        if let (Some(heads), Some(kv_heads)) =
            (q.checked_div(self.head_dim), kv.checked_div(self.head_dim))
        {
            self.heads = heads;
            self.kv_heads = kv_heads;
        }
    }
}

compress_core::impl_fix_structure!(LlamaMlp {
    gate_proj,
    up_proj,
    down_proj
});
compress_core::impl_fix_structure!(LlamaDecoderLayer {
    self_attn,
    mlp,
    input_layernorm,
    post_attention_layernorm
});
compress_core::impl_fix_structure!(LlamaModel {
    embed_tokens,
    layers,
    norm
});
compress_core::impl_fix_structure!(Llama { model, lm_head });
