//! A tiny transformer-encoder classifier over token ids.

use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;

/// `TinyTransformer`, input token ids `[N, S]` with `S <= 32` and ids below 100: token plus
/// learned positional embeddings (`d_model` 64), burn-nn's post-norm [`TransformerEncoder`]
/// (2 layers, 4 heads, `d_ff` 128, GELU, no dropout), mean pooling over the sequence, and a Linear
/// classifier.
///
/// There is no PyTorch twin; the paths are burn-nn's (`encoder.layers.0.mha.query.weight`,
/// `encoder.layers.1.norm_2.gamma`, ...), saved in PyTorch layout by the PyTorch adapter like any
/// other zoo model.
#[derive(Module, Debug)]
pub struct TinyTransformer {
    /// `Embedding(100, 64)`, weight `[100, 64]`.
    pub tokens: Embedding,
    /// `Embedding(32, 64)`, the learned position embeddings, weight `[32, 64]`.
    pub positions: Embedding,
    /// `TransformerEncoder(d_model 64, 4 heads, d_ff 128, 2 layers, post-norm, dropout 0)`.
    pub encoder: TransformerEncoder,
    /// `Linear(64 -> num_classes)`, weight `[64, num_classes]` (Burn layout).
    pub head: Linear,
}

impl TinyTransformer {
    /// The token vocabulary size.
    pub const VOCAB: usize = 100;
    /// The longest sequence (the number of position embeddings).
    pub const MAX_LEN: usize = 32;
    /// The model width.
    pub const D_MODEL: usize = 64;

    /// Randomly initialized on `device`.
    pub fn new(num_classes: usize, device: &Device) -> Self {
        Self {
            tokens: EmbeddingConfig::new(Self::VOCAB, Self::D_MODEL).init(device),
            positions: EmbeddingConfig::new(Self::MAX_LEN, Self::D_MODEL).init(device),
            encoder: TransformerEncoderConfig::new(Self::D_MODEL, 128, 4, 2)
                .with_dropout(0.0)
                .with_norm_first(false)
                .init(device),
            head: LinearConfig::new(Self::D_MODEL, num_classes).init(device),
        }
    }

    /// Logits.
    ///
    /// # Shapes
    /// - input `[N, S]` token ids, `S <= 32`, ids `< 100`
    /// - output `[N, num_classes]`
    ///
    /// # Panics
    /// If `S` exceeds the number of position embeddings (32).
    pub fn forward(&self, x: Tensor<2, Int>) -> Tensor<2> {
        let [batch, seq] = x.dims();
        let max_len = self.positions.weight.dims()[0];
        assert!(
            seq <= max_len,
            "sequence of {seq} tokens, the model has {max_len} positions"
        );
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &x.device())
            .reshape([1, seq])
            .repeat_dim(0, batch);
        let h = self.tokens.forward(x) + self.positions.forward(positions);
        let h = self.encoder.forward(TransformerEncoderInput::new(h));
        let [_, _, d_model] = h.dims();
        self.head.forward(h.mean_dim(1).reshape([batch, d_model]))
    }
}
