//! Perplexity of a causal language model over non-overlapping windows.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::llama::{Llama, LlamaError, check_ids, ids_tensor};

/// The result of [`perplexity`].
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    /// `exp(mean_nll)`.
    pub perplexity: f64,
    /// Mean negative log-likelihood (nats) over every scored token.
    pub mean_nll: f64,
    /// Mean NLL of each window.
    pub window_nll: Vec<f64>,
    /// Tokens scored (`windows * (window - 1)`).
    pub scored: usize,
}

/// Perplexity of `model` on `ids`: the first `min(len, max_tokens)` ids are cut into
/// non-overlapping windows of `window` tokens (a partial last window is dropped); in each window
/// tokens 2..=window are scored given their prefix in the window, and the perplexity is
/// `exp` of the mean negative log-likelihood over all scored tokens.
///
/// # Errors
/// [`LlamaError::TooShort`] when fewer than `window` tokens are available,
/// [`LlamaError::Argument`] for a window under 2 or an id outside the vocabulary.
pub fn perplexity(
    model: &Llama,
    ids: &[u32],
    window: usize,
    max_tokens: Option<usize>,
) -> Result<Perplexity, LlamaError> {
    let device = model.model.embed_tokens.weight.device();
    perplexity_by(
        |x| model.forward(x),
        model.vocab_size(),
        &device,
        ids,
        window,
        max_tokens,
    )
}

/// [`perplexity`] with any forward pass from token ids `[1, n]` to logits `[1, n, vocab]` (a
/// model run with quantized activations, say), over a vocabulary of `vocab` ids.
///
/// # Errors
/// As [`perplexity`].
pub fn perplexity_by(
    mut forward: impl FnMut(Tensor<2, Int>) -> Tensor<3>,
    vocab: usize,
    device: &Device,
    ids: &[u32],
    window: usize,
    max_tokens: Option<usize>,
) -> Result<Perplexity, LlamaError> {
    if window < 2 {
        return Err(LlamaError::Argument(format!(
            "window of {window} tokens: a window needs at least 2 (one to predict from, one to score)"
        )));
    }
    let ids = &ids[..ids.len().min(max_tokens.unwrap_or(usize::MAX))];
    if ids.len() < window {
        return Err(LlamaError::TooShort {
            tokens: ids.len(),
            window,
        });
    }
    check_ids(ids, vocab)?;
    let window_nll = ids
        .chunks_exact(window)
        .map(|w| window_mean_nll(forward(ids_tensor(w, device)), w, device))
        .collect::<Vec<_>>();
    let mean_nll = window_nll.iter().sum::<f64>() / window_nll.len() as f64;
    Ok(Perplexity {
        perplexity: mean_nll.exp(),
        mean_nll,
        scored: window_nll.len() * (window - 1),
        window_nll,
    })
}

/// Mean NLL of tokens 2..=n of one window from its logits `[1, n, vocab]`.
fn window_mean_nll(logits: Tensor<3>, ids: &[u32], device: &Device) -> f64 {
    let n = ids.len();
    let vocab = logits.dims()[2];
    let logp = log_softmax(logits.slice([0..1, 0..n - 1, 0..vocab]), 2);
    let targets: Vec<i64> = ids[1..].iter().map(|&i| i64::from(i)).collect();
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [1, n - 1, 1]), device);
    let picked = logp.gather(2, targets).into_data();
    let picked = picked.iter::<f32>().map(f64::from).collect::<Vec<_>>();
    -picked.iter().sum::<f64>() / picked.len() as f64
}
