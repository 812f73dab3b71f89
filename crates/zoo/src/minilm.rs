//! all-MiniLM-L6-v2: a BERT encoder with mean pooling and L2 normalisation ([`MiniLm`]), built
//! from any BERT `config.json` ([`BertConfig`]).
//!
//! Field paths equal the HuggingFace `BertModel` safetensors keys
//! (`embeddings.word_embeddings.weight`, `encoder.layer.3.attention.self.query.weight`,
//! `encoder.layer.3.attention.output.LayerNorm.weight`, `encoder.layer.3.intermediate.dense.bias`,
//! ...), so pruning configs name the HF paths and the shipped `model.safetensors` loads through
//! burn-store's PyTorch adapter with no key mapping. Two keys of the file are not parameters
//! here: `embeddings.position_ids` (a buffer, `0..512`; the positions are computed) and the
//! `pooler.dense` layer (BERT's `[CLS]` pooler, which sentence-transformers does not use).
// The HF names `LayerNorm` are field names here (see the module doc).
#![allow(non_snake_case)]

use std::path::{Path, PathBuf};

use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};
use compress_core::{FixStructure, impl_fix_structure};
use serde_json::Value;

use crate::{TextTokenizer, ZooError, load_pytorch_safetensors};

/// The zoo's name for the model (`Arch::MiniLmL6`), and the `cargo xtask fetch` name of its files.
const NAME: &str = "minilm-l6";

/// The sizes of a BERT encoder, as HuggingFace's `config.json` gives them.
///
/// Only what the forward pass needs is kept; [`BertConfig::from_file`] refuses the settings this
/// implementation does not follow (an activation other than erf GELU, relative position
/// embeddings).
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    /// Tokens in the vocabulary (`vocab_size`, 30522).
    pub vocab_size: usize,
    /// The width of the residual stream (`hidden_size`, 384).
    pub hidden_size: usize,
    /// Encoder layers (`num_hidden_layers`, 6).
    pub num_hidden_layers: usize,
    /// Attention heads per layer (`num_attention_heads`, 12); `hidden_size` must be a multiple.
    pub num_attention_heads: usize,
    /// The feed-forward width (`intermediate_size`, 1536).
    pub intermediate_size: usize,
    /// The longest sequence (`max_position_embeddings`, 512).
    pub max_position_embeddings: usize,
    /// Token types (`type_vocab_size`, 2); sentences use type 0.
    pub type_vocab_size: usize,
    /// LayerNorm's epsilon (`layer_norm_eps`, 1e-12).
    pub layer_norm_eps: f64,
}

impl BertConfig {
    /// all-MiniLM-L6-v2's sizes (what its `config.json` says).
    pub fn minilm_l6() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        }
    }

    /// Read a HuggingFace BERT `config.json`.
    ///
    /// # Errors
    /// [`ZooError::Read`] when the file is missing (naming `cargo xtask fetch minilm-l6`) or is
    /// not JSON; [`ZooError::Mismatch`] naming the key when a size is missing or not a positive
    /// integer, when `hidden_act` is not `gelu`, when `position_embedding_type` is not
    /// `absolute`, or when `hidden_size` is not a multiple of `num_attention_heads`.
    pub fn from_file(path: &Path) -> Result<Self, ZooError> {
        let text = std::fs::read_to_string(path).map_err(|e| ZooError::Read {
            path: path.to_path_buf(),
            message: match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("no such file (run `cargo xtask fetch {NAME}`)")
                }
                _ => e.to_string(),
            },
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|e| ZooError::Read {
            path: path.to_path_buf(),
            message: format!("not JSON: {e}"),
        })?;
        let bad = |message: String| ZooError::Mismatch {
            path: path.to_path_buf(),
            arch: NAME.to_string(),
            message,
        };
        let size = |key: &str| match json.get(key) {
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| bad(format!("key '{key}' is {v}, expected a positive integer"))),
            None => Err(bad(format!("missing key '{key}'"))),
        };
        let text_key = |key: &str, default: &str, expected: &str| {
            let value = json.get(key).and_then(Value::as_str).unwrap_or(default);
            if value == expected {
                Ok(())
            } else {
                Err(bad(format!(
                    "key '{key}' is \"{value}\", only \"{expected}\" is supported"
                )))
            }
        };
        text_key("hidden_act", "gelu", "gelu")?;
        text_key("position_embedding_type", "absolute", "absolute")?;
        let config = Self {
            vocab_size: size("vocab_size")?,
            hidden_size: size("hidden_size")?,
            num_hidden_layers: size("num_hidden_layers")?,
            num_attention_heads: size("num_attention_heads")?,
            intermediate_size: size("intermediate_size")?,
            max_position_embeddings: size("max_position_embeddings")?,
            type_vocab_size: size("type_vocab_size")?,
            layer_norm_eps: match json.get("layer_norm_eps") {
                None => 1e-12,
                Some(v) => v.as_f64().filter(|e| *e > 0.0).ok_or_else(|| {
                    bad(format!(
                        "key 'layer_norm_eps' is {v}, expected a positive number"
                    ))
                })?,
            },
        };
        if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
        {
            return Err(bad(format!(
                "'hidden_size' {} is not a multiple of 'num_attention_heads' {}",
                config.hidden_size, config.num_attention_heads
            )));
        }
        Ok(config)
    }

    /// A randomly initialised [`MiniLm`] of these sizes on `device`.
    ///
    /// # Panics
    /// If `hidden_size` is not a multiple of `num_attention_heads` (a programmer error;
    /// [`BertConfig::from_file`] checks it).
    pub fn init(&self, device: &Device) -> MiniLm {
        assert!(
            self.hidden_size.is_multiple_of(self.num_attention_heads),
            "hidden_size {} must be a multiple of num_attention_heads {}",
            self.hidden_size,
            self.num_attention_heads
        );
        let d = self.hidden_size;
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let layer = (0..self.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    self_attn: BertSelfAttention {
                        query: linear(d, d),
                        key: linear(d, d),
                        value: linear(d, d),
                        num_heads: self.num_attention_heads,
                        head_dim: d / self.num_attention_heads,
                    },
                    output: BertSelfOutput {
                        dense: linear(d, d),
                        LayerNorm: norm(),
                    },
                },
                intermediate: BertIntermediate {
                    dense: linear(d, self.intermediate_size),
                },
                output: BertOutput {
                    dense: linear(self.intermediate_size, d),
                    LayerNorm: norm(),
                },
            })
            .collect();
        MiniLm {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(self.vocab_size, d).init(device),
                position_embeddings: EmbeddingConfig::new(self.max_position_embeddings, d)
                    .init(device),
                token_type_embeddings: EmbeddingConfig::new(self.type_vocab_size, d).init(device),
                LayerNorm: norm(),
            },
            encoder: BertEncoder { layer },
        }
    }
}

/// A BERT sentence encoder: HuggingFace's `BertModel` (post-LN encoder, erf GELU) followed by
/// sentence-transformers' mean pooling over the real tokens and L2 normalisation. With
/// [`MiniLm::load`] on the all-MiniLM-L6-v2 files it is that model (6 layers, 12 heads, hidden
/// 384, feed-forward 1536, LayerNorm eps 1e-12).
///
/// Parameter paths are the HF keys (see the module doc). Sizes are read from the tensors, or
/// kept per attention layer ([`BertSelfAttention::num_heads`], updated by [`FixStructure`]), so a
/// pruned and sped-up model runs with the same code.
#[derive(Module, Debug)]
pub struct MiniLm {
    /// Word, position and token-type embeddings and their LayerNorm.
    pub embeddings: BertEmbeddings,
    /// The encoder layers.
    pub encoder: BertEncoder,
}

/// BERT's input embeddings: `LayerNorm(word[id] + token_type[0] + position[i])`.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `[vocab, hidden]`.
    pub word_embeddings: Embedding,
    /// `[max_positions, hidden]`.
    pub position_embeddings: Embedding,
    /// `[type_vocab, hidden]`; every token has type 0.
    pub token_type_embeddings: Embedding,
    /// Over `hidden`.
    pub LayerNorm: LayerNorm,
}

/// The encoder's layers (HF `encoder.layer.N`).
#[derive(Module, Debug)]
pub struct BertEncoder {
    /// One per layer.
    pub layer: Vec<BertLayer>,
}

/// One post-LN encoder layer: attention block, then the feed-forward block
/// (`output.LayerNorm(output.dense(gelu(intermediate.dense(x))) + x)`).
#[derive(Module, Debug)]
pub struct BertLayer {
    /// Self-attention with its output projection, residual and LayerNorm.
    pub attention: BertAttention,
    /// The feed-forward expansion.
    pub intermediate: BertIntermediate,
    /// The feed-forward projection, residual and LayerNorm.
    pub output: BertOutput,
}

/// HF's `BertAttention`: `output.LayerNorm(output.dense(self(x)) + x)`.
///
/// Its `Module` impl is written by hand (it is what `#[derive(Module)]` generates) so that the
/// field `self_attn` is visited under the name `self`, the HF key (`self` cannot be a Rust
/// field name): its parameters are `attention.self.query.weight`, ....
#[derive(Debug, Clone)]
pub struct BertAttention {
    /// Query, key and value projections and the head split (path `self`).
    pub self_attn: BertSelfAttention,
    /// The output projection, residual and LayerNorm (path `output`).
    pub output: BertSelfOutput,
}

/// Multi-head scaled dot-product attention without the output projection (HF
/// `BertSelfAttention`).
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    /// `Linear(hidden -> heads * head_dim)`.
    pub query: Linear,
    /// `Linear(hidden -> heads * head_dim)`.
    pub key: Linear,
    /// `Linear(hidden -> heads * head_dim)`.
    pub value: Linear,
    /// Heads; [`FixStructure`] sets it to the query width over `head_dim` after head pruning.
    #[module(skip)]
    pub num_heads: usize,
    /// The width of one head (32 in MiniLM); head pruning keeps it.
    #[module(skip)]
    pub head_dim: usize,
}

/// The attention output projection with the residual and LayerNorm (HF `BertSelfOutput`).
#[derive(Module, Debug)]
pub struct BertSelfOutput {
    /// `Linear(heads * head_dim -> hidden)`.
    pub dense: Linear,
    /// Over `hidden`, after the residual add.
    pub LayerNorm: LayerNorm,
}

/// The feed-forward expansion (HF `BertIntermediate`): `gelu(dense(x))`.
#[derive(Module, Debug)]
pub struct BertIntermediate {
    /// `Linear(hidden -> intermediate)`.
    pub dense: Linear,
}

/// The feed-forward projection with the residual and LayerNorm (HF `BertOutput`).
#[derive(Module, Debug)]
pub struct BertOutput {
    /// `Linear(intermediate -> hidden)`.
    pub dense: Linear,
    /// Over `hidden`, after the residual add.
    pub LayerNorm: LayerNorm,
}

impl MiniLm {
    /// Load a HuggingFace BERT sentence encoder as shipped: `path` is the model directory
    /// (`config.json`, `model.safetensors`), or the `model.safetensors` file with its
    /// `config.json` beside it. Every tensor's shape is checked against the config.
    ///
    /// # Errors
    /// [`ZooError::Read`] naming a missing file (and `cargo xtask fetch minilm-l6`);
    /// [`BertConfig::from_file`]'s errors; [`ZooError::Mismatch`] naming the file and the
    /// tensor when a key is missing or has another shape.
    pub fn load(path: &Path, device: &Device) -> Result<Self, ZooError> {
        let (dir, weights) = model_files(path);
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        if !weights.is_file() {
            return Err(ZooError::Read {
                path: weights,
                message: format!("no such file (run `cargo xtask fetch {NAME}`)"),
            });
        }
        load_pytorch_safetensors(config.init(device), &weights, NAME)
    }

    /// The WordPiece tokenizer shipped with the model (`tokenizer.json` in the model directory,
    /// or beside the file `path` names), padding and truncation off.
    ///
    /// # Errors
    /// As [`TextTokenizer::from_file`].
    pub fn tokenizer(path: &Path) -> Result<TextTokenizer, ZooError> {
        TextTokenizer::from_file(&model_files(path).0.join("tokenizer.json"), NAME)
    }

    /// The width of the residual stream (the word embeddings' width).
    pub fn hidden_size(&self) -> usize {
        self.embeddings.word_embeddings.weight.lazy_shape()[1]
    }

    /// The longest sequence (the number of position embeddings).
    pub fn max_len(&self) -> usize {
        self.embeddings.position_embeddings.weight.lazy_shape()[0]
    }

    /// The vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.embeddings.word_embeddings.weight.lazy_shape()[0]
    }

    /// Unit-length sentence embeddings of `sentences`.
    ///
    /// Sentences are tokenized one by one, sorted by length and run in batches of up to
    /// [`MiniLm::EMBED_BATCH`], each padded on the right with `[PAD]` (id 0) to its longest
    /// sentence under an attention mask; the rows come back in the order of `sentences`.
    /// Padding changes no embedding (beyond float rounding: a test holds batched and
    /// one-at-a-time embeddings within 1e-5).
    ///
    /// # Shapes
    /// - output `[sentences.len(), hidden]`
    ///
    /// # Errors
    /// The tokenizer's errors, and [`ZooError::InputShape`] for a sentence longer than
    /// [`MiniLm::max_len`] tokens.
    pub fn embed(
        &self,
        tokenizer: &TextTokenizer,
        sentences: &[&str],
    ) -> Result<Tensor<2>, ZooError> {
        let device = self.embeddings.word_embeddings.weight.device();
        let ids = sentences
            .iter()
            .map(|s| tokenizer.encode(s))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(long) = ids.iter().find(|t| t.len() > self.max_len()) {
            return Err(ZooError::InputShape {
                arch: NAME.to_string(),
                shape: vec![1, long.len()],
                expected: format!("sentences of at most {} tokens", self.max_len()),
            });
        }
        if ids.is_empty() {
            return Ok(Tensor::zeros([0, self.hidden_size()], &device));
        }
        // Batches of similar lengths waste less on padding: run in order of length, then put
        // the rows back in the caller's order.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let batches = order
            .chunks(Self::EMBED_BATCH)
            .map(|chunk| {
                let rows: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
                let (ids, mask) = pad_batch(&rows, &device);
                self.forward_masked(ids, mask)
            })
            .collect();
        let mut position = vec![0i64; ids.len()];
        for (sorted, &i) in order.iter().enumerate() {
            position[i] = sorted as i64;
        }
        let n = position.len();
        let position = Tensor::<1, Int>::from_data(TensorData::new(position, [n]), &device);
        Ok(Tensor::cat(batches, 0).select(0, position))
    }

    /// Sentences per forward pass in [`MiniLm::embed`].
    pub const EMBED_BATCH: usize = 32;

    /// Unit-length sentence embeddings of token ids without padding (every token is real).
    ///
    /// # Shapes
    /// - input `[batch, seq]` token ids, `seq <= max_len`
    /// - output `[batch, hidden]`
    ///
    /// # Panics
    /// If `seq` exceeds [`MiniLm::max_len`] or an id is not below the vocabulary size.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        let mask = Tensor::ones(ids.dims(), &ids.device());
        self.forward_masked(ids, mask)
    }

    /// Unit-length sentence embeddings: the mean of the last hidden states over the tokens
    /// whose `mask` is 1, L2-normalised.
    ///
    /// # Shapes
    /// - `ids` `[batch, seq]` token ids, `seq <= max_len`
    /// - `mask` `[batch, seq]`, 1 for real tokens, 0 for padding
    /// - output `[batch, hidden]`
    ///
    /// # Panics
    /// As [`MiniLm::forward`].
    pub fn forward_masked(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let hidden = self.encode(ids, mask.clone());
        Self::pool(hidden, mask)
    }

    /// The sentence embedding of hidden states: sentence-transformers' mean pooling over the
    /// real tokens, then its Normalize (`F.normalize(p=2, eps=1e-12)`).
    ///
    /// # Shapes
    /// - `hidden` `[batch, seq, hidden]`, `mask` `[batch, seq]` (1 for real tokens)
    /// - output `[batch, hidden]`
    pub fn pool(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let [batch, seq, d] = hidden.dims();
        let mask = mask.reshape([batch, seq, 1]);
        let sum = (hidden * mask.clone()).sum_dim(1).reshape([batch, d]);
        let count = mask.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9);
        let mean = sum / count;
        let norm = mean
            .clone()
            .powi_scalar(2)
            .sum_dim(1)
            .sqrt()
            .clamp_min(1e-12);
        mean / norm
    }

    /// The last hidden states (HF `last_hidden_state`).
    ///
    /// # Shapes
    /// - `ids` `[batch, seq]` token ids, `seq <= max_len`
    /// - `mask` `[batch, seq]`, 1 for real tokens, 0 for padding (padded keys get a -10000
    ///   attention bias, BERT's original value)
    /// - output `[batch, seq, hidden]`
    ///
    /// # Panics
    /// As [`MiniLm::forward`].
    pub fn encode(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        let [batch, seq] = ids.dims();
        assert!(
            seq <= self.max_len(),
            "sequence of {seq} tokens, the model has {} positions",
            self.max_len()
        );
        let bias = mask
            .sub_scalar(1.0)
            .mul_scalar(10000.0)
            .reshape([batch, 1, 1, seq]);
        let mut x = self.embeddings.forward(ids);
        for layer in &self.encoder.layer {
            x = layer.forward(x, bias.clone());
        }
        x
    }
}

/// The model directory and the weights file for a directory or a `model.safetensors` path.
fn model_files(path: &Path) -> (PathBuf, PathBuf) {
    if path.is_file() {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        (dir, path.to_path_buf())
    } else {
        (path.to_path_buf(), path.join("model.safetensors"))
    }
}

/// Right-pad `ids` with 0 (`[PAD]`) to the longest; the mask is 1 on real tokens.
fn pad_batch(ids: &[&[u32]], device: &Device) -> (Tensor<2, Int>, Tensor<2>) {
    let len = ids.iter().map(|t| t.len()).max().unwrap_or(0);
    let mut flat = vec![0i64; ids.len() * len];
    let mut mask = vec![0f32; ids.len() * len];
    for (row, tokens) in ids.iter().enumerate() {
        for (col, &t) in tokens.iter().enumerate() {
            flat[row * len + col] = i64::from(t);
            mask[row * len + col] = 1.0;
        }
    }
    let shape = [ids.len(), len];
    (
        Tensor::from_data(TensorData::new(flat, shape), device),
        Tensor::from_data(TensorData::new(mask, shape), device),
    )
}

impl BertEmbeddings {
    /// `LayerNorm(word[ids] + token_type[0] + position[0..seq])` (HF's order of the sums).
    ///
    /// # Shapes
    /// - input `[batch, seq]` token ids
    /// - output `[batch, seq, hidden]`
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, seq] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device)
            .reshape([1, seq])
            .repeat_dim(0, batch);
        let types = Tensor::<2, Int>::zeros([batch, seq], &device);
        let x = self.word_embeddings.forward(ids) + self.token_type_embeddings.forward(types);
        let x = x + self.position_embeddings.forward(positions);
        self.LayerNorm.forward(x)
    }
}

impl BertLayer {
    /// One layer.
    ///
    /// # Shapes
    /// - `x` `[batch, seq, hidden]`, `bias` `[batch, 1, 1, seq]` (added to the attention
    ///   scores)
    /// - output `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let x = self.attention.forward(x, bias);
        let inner = gelu(self.intermediate.dense.forward(x.clone()));
        self.output
            .LayerNorm
            .forward(self.output.dense.forward(inner) + x)
    }
}

impl BertAttention {
    /// `output.LayerNorm(output.dense(self(x)) + x)`.
    ///
    /// # Shapes
    /// As [`BertLayer::forward`].
    pub fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let context = self.self_attn.forward(x.clone(), bias);
        self.output
            .LayerNorm
            .forward(self.output.dense.forward(context) + x)
    }
}

impl BertSelfAttention {
    /// `softmax(q k^T / sqrt(head_dim) + bias) v` per head, heads concatenated.
    ///
    /// The op sequence is fixed (speedup's head-group rule follows it): q, k, v Linear;
    /// `reshape([b, s, h, hd])`; `swap_dims(1, 2)`; `q.matmul(k.swap_dims(2, 3))`;
    /// `div_scalar(sqrt(hd))`; `+ bias`; `softmax(3)`; `matmul(v)`; `swap_dims(1, 2)`;
    /// `reshape([b, s, h * hd])`.
    ///
    /// # Shapes
    /// - `x` `[batch, seq, hidden]`, `bias` `[batch, 1, 1, seq]`
    /// - output `[batch, seq, heads * head_dim]`
    pub fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (h, hd) = (self.num_heads, self.head_dim);
        let split = |t: Tensor<3>| t.reshape([b, s, h, hd]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((hd as f64).sqrt()) + bias;
        softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, s, h * hd])
    }
}

// What `#[derive(Module)]` generates for `BertAttention`, with `self_attn` named `self`.
impl Module for BertAttention {
    fn collect_devices(&self, devices: Devices) -> Devices {
        let devices = self.self_attn.collect_devices(devices);
        self.output.collect_devices(devices)
    }

    fn fork(self, device: &Device) -> Self {
        Self {
            self_attn: self.self_attn.fork(device),
            output: self.output.fork(device),
        }
    }

    fn to_device(self, device: &Device) -> Self {
        Self {
            self_attn: self.self_attn.to_device(device),
            output: self.output.to_device(device),
        }
    }

    fn train(self) -> Self {
        Self {
            self_attn: self.self_attn.train(),
            output: self.output.train(),
        }
    }

    fn valid(&self) -> Self {
        Self {
            self_attn: self.self_attn.valid(),
            output: self.output.valid(),
        }
    }

    fn materialize(self) -> Self {
        Self {
            self_attn: self.self_attn.materialize(),
            output: self.output.materialize(),
        }
    }

    fn num_params(&self) -> usize {
        Module::num_params(&self.self_attn) + Module::num_params(&self.output)
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        const TYPE: &str = "Struct:BertAttention";
        visitor.enter_module("self", TYPE);
        self.self_attn.visit(visitor);
        visitor.exit_module("self", TYPE);
        visitor.enter_module("output", TYPE);
        self.output.visit(visitor);
        visitor.exit_module("output", TYPE);
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        const TYPE: &str = "Struct:BertAttention";
        mapper.enter_module("self", TYPE);
        let self_attn = self.self_attn.map(mapper);
        mapper.exit_module("self", TYPE);
        mapper.enter_module("output", TYPE);
        let output = self.output.map(mapper);
        mapper.exit_module("output", TYPE);
        Self { self_attn, output }
    }
}

impl core::fmt::Display for BertAttention {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", ModuleDisplay::format(self, Default::default()))
    }
}

impl ModuleDisplayDefault for BertAttention {
    fn content(&self, content: Content) -> Option<Content> {
        content
            .set_top_level_type("BertAttention")
            .add("self", &self.self_attn)
            .add("output", &self.output)
            .optional()
    }

    fn num_params(&self) -> usize {
        Module::num_params(self)
    }
}

impl ModuleDisplay for BertAttention {}

impl FixStructure for BertSelfAttention {
    fn fix_structure(&mut self) {
        // Head pruning removes whole heads and keeps head_dim.
        let inner = self.query.weight.lazy_shape()[1];
        if self.head_dim > 0 && inner.is_multiple_of(self.head_dim) {
            self.num_heads = inner / self.head_dim;
        }
    }
}

impl_fix_structure!(MiniLm {
    embeddings,
    encoder
});
impl_fix_structure!(BertEmbeddings {
    word_embeddings,
    position_embeddings,
    token_type_embeddings,
    LayerNorm
});
impl_fix_structure!(BertEncoder { layer });
impl_fix_structure!(BertLayer {
    attention,
    intermediate,
    output
});
impl_fix_structure!(BertAttention { self_attn, output });
impl_fix_structure!(BertSelfOutput { dense, LayerNorm });
impl_fix_structure!(BertIntermediate { dense });
impl_fix_structure!(BertOutput { dense, LayerNorm });

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::list_param_ids;

    fn tiny() -> BertConfig {
        BertConfig {
            vocab_size: 20,
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 12,
            max_position_embeddings: 10,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        }
    }

    /// Every parameter path, in visiting order.
    fn paths<M: Module>(model: &M) -> Vec<String> {
        struct Paths(Vec<String>, Vec<String>);
        impl ModuleVisitor for Paths {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.1.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.1.pop();
            }
            fn visit_float<const D: usize>(&mut self, _: &burn::module::Param<Tensor<D>>) {
                self.0.push(self.1.join("."));
            }
        }
        let mut v = Paths(Vec::new(), Vec::new());
        model.visit(&mut v);
        v.0
    }

    #[test]
    fn parameter_paths_are_the_huggingface_keys() {
        let model = tiny().init(&Device::flex());
        let paths = paths(&model);
        for key in [
            "embeddings.word_embeddings.weight",
            "embeddings.token_type_embeddings.weight",
            "embeddings.LayerNorm.gamma",
            "encoder.layer.0.attention.self.query.weight",
            "encoder.layer.0.attention.self.value.bias",
            "encoder.layer.1.attention.output.dense.weight",
            "encoder.layer.1.attention.output.LayerNorm.beta",
            "encoder.layer.1.intermediate.dense.weight",
            "encoder.layer.1.output.dense.bias",
            "encoder.layer.1.output.LayerNorm.gamma",
        ] {
            assert!(paths.contains(&key.to_string()), "{key} not in {paths:?}");
        }
        // 3 embedding tables and their LayerNorm's 2 vectors, 16 tensors per layer.
        assert_eq!(paths.len(), 5 + 16 * 2);
        assert_eq!(list_param_ids(&model).len(), paths.len());
        assert_eq!(
            Module::num_params(&model),
            Module::num_params(&model.valid())
        );
    }

    #[test]
    fn padding_under_the_mask_changes_no_embedding() {
        let device = Device::flex();
        let model = tiny().init(&device);
        let ids = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<2, Int>::from_data(TensorData::new(v, [1, n]), &device)
        };
        let alone = model.forward(ids(vec![3, 5, 7]));
        let (padded, mask) = pad_batch(&[&[3, 5, 7], &[1, 2, 3, 4, 5, 6]], &device);
        let batched = model.forward_masked(padded, mask);
        let first = batched.clone().slice([0..1, 0..8]);
        let diff = (first - alone.clone()).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "padded and unpadded differ by {diff}");
        let norm = alone.powi_scalar(2).sum().sqrt().into_scalar::<f32>();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        assert_eq!(batched.dims(), [2, 8]);
    }

    #[test]
    fn fix_structure_follows_pruned_heads() {
        let mut model = tiny().init(&Device::flex());
        let attn = &mut model.encoder.layer[0].attention.self_attn;
        attn.query.weight = attn.query.weight.clone().map(|w| w.slice([0..8, 0..4]));
        model.fix_structure();
        assert_eq!(model.encoder.layer[0].attention.self_attn.num_heads, 1);
        assert_eq!(model.encoder.layer[1].attention.self_attn.num_heads, 2);
    }
}
