//! AWQ's clip search (llm-awq `awq/quantize/auto_clip.py`, `auto_clip_layer`): per output row
//! and quantization group, the weights are clamped to `max|w| * (1 - i / 20)` for
//! `i = 0..10` (`n_grid` 20, `max_shrink` 0.5) and the clamp whose quantized group gives the
//! smallest output MSE on the sampled input tokens is kept.
//!
//! The group's output error over tokens `x_t` is `mean_t (x_t . d)^2` with
//! `d = Q(clamp(w)) - w`, i.e. `d^T G d` with the group's Gram matrix `G = X_g^T X_g / T`; when
//! the group is narrower than the token count that costs `g^2` per candidate instead of `T g`, so
//! the Gram form is used then (the same quantity, summed in another order).

use compress_core::{Dense, Result};
use rayon::prelude::*;

use crate::scale::error;
use compress_quant::rtn::{Strategy, WeightScheme};

/// llm-awq's clip grid: `n_grid` 20 ...
pub const CLIP_GRID: usize = 20;
/// ... of which the first half is tried (`max_shrink` 0.5: clamps down to 55 % of the max).
pub const CLIP_STEPS: usize = 10;
/// Input tokens the clip search samples (`n_sample_token`).
pub const CLIP_TOKENS: usize = 512;
/// llm-awq's initial "best error" (`torch.ones_like(...) * 1e9`): a group whose every candidate
/// errs more keeps its full range.
const INITIAL_ERROR: f64 = 1e9;

/// The best clamp of every `[row, group]` of `weight` on the input rows `x`.
///
/// # Shapes
/// `weight` `[out, d_in]`, `x` `[tokens, d_in]`; the result `[out, d_in / group]`.
///
/// The groups are `scheme`'s (a whole row for per-channel quantization), each quantized with
/// its own min / max fit (`scheme.quantizer`), as round-to-nearest will quantize it.
///
/// # Errors
/// [`compress_core::CompressError::Algorithm`] naming `path` when `x`'s width differs from the
/// weight's or the scheme is per tensor (no groups to clip); [`WeightScheme::check`]'s error
/// for a group size that does not divide the width.
pub fn clip_search(
    weight: &Dense<f32>,
    x: &Dense<f32>,
    scheme: &WeightScheme,
    path: &str,
) -> Result<Dense<f32>> {
    scheme.check(path, weight.shape())?;
    let (out, d_in) = (weight.shape()[0], weight.shape()[1]);
    if x.shape().len() != 2 || x.shape()[1] != d_in {
        return Err(error(format!(
            "'{path}': clip inputs have shape {:?}, expected [_, {d_in}]",
            x.shape()
        )));
    }
    let group = match scheme.strategy {
        Strategy::Group(g) => g,
        Strategy::Channel => d_in,
        Strategy::Tensor => {
            return Err(error(format!(
                "'{path}': the clip search needs per-channel or group quantization, not per \
                 tensor"
            )));
        }
    };
    let quantizer = scheme.quantizer;
    let groups = d_in / group;
    let tokens = x.shape()[0];
    let gram = (group < tokens).then(|| gram_matrices(x, group));
    let mut best = vec![0.0f32; out * groups];
    best.par_chunks_mut(groups)
        .zip(weight.data().par_chunks(d_in))
        .for_each(|(best_row, w_row)| {
            let mut cand = vec![0.0f32; group];
            let mut diff = vec![0.0f64; group];
            for (g, best_g) in best_row.iter_mut().enumerate() {
                let w = &w_row[g * group..(g + 1) * group];
                let org_max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let mut min_err = INITIAL_ERROR;
                *best_g = org_max;
                for i in 0..CLIP_STEPS {
                    // `1 - i / n_grid` is a Python float in the reference, rounded to f32 once.
                    let max_val = org_max * (1.0 - i as f64 / CLIP_GRID as f64) as f32;
                    for (c, &v) in cand.iter_mut().zip(w) {
                        *c = v.clamp(-max_val, max_val);
                    }
                    let p = quantizer.fit(&cand);
                    cand.iter_mut().for_each(|c| *c = p.quantize(*c));
                    for ((d, c), v) in diff.iter_mut().zip(&cand).zip(w) {
                        *d = f64::from(*c) - f64::from(*v);
                    }
                    let err = match &gram {
                        Some(gram) => quadratic(&gram[g], &diff),
                        None => token_mse(x, g * group, &diff),
                    };
                    if err < min_err {
                        min_err = err;
                        *best_g = max_val;
                    }
                }
            }
        });
    Ok(Dense::new(vec![out, groups], best))
}

/// Clamp every `[row, group]` of `weight` to `[-max_val, max_val]` (llm-awq `apply_clip`).
///
/// # Shapes
/// `weight` `[out, d_in]`, `max_val` `[out, d_in / group]`.
pub fn apply_clip(weight: &mut Dense<f32>, max_val: &Dense<f32>) {
    let d_in = weight.shape()[1];
    let groups = max_val.shape()[1];
    let group = d_in / groups;
    weight
        .data_mut()
        .par_chunks_mut(d_in)
        .zip(max_val.data().par_chunks(groups))
        .for_each(|(row, maxes)| {
            for (chunk, &m) in row.chunks_mut(group).zip(maxes) {
                for v in chunk {
                    *v = v.clamp(-m, m);
                }
            }
        });
}

/// Per group `g`: `X_g^T X_g / T`, `[group, group]` row-major, accumulated in f64.
fn gram_matrices(x: &Dense<f32>, group: usize) -> Vec<Vec<f64>> {
    let (tokens, d_in) = (x.shape()[0], x.shape()[1]);
    (0..d_in / group)
        .into_par_iter()
        .map(|g| {
            let mut gram = vec![0.0f64; group * group];
            for t in 0..tokens {
                let row = &x.data()[t * d_in + g * group..t * d_in + (g + 1) * group];
                for (a, &xa) in row.iter().enumerate() {
                    let xa = f64::from(xa);
                    let dst = &mut gram[a * group..(a + 1) * group];
                    for (d, &xb) in dst.iter_mut().zip(row) {
                        *d += xa * f64::from(xb);
                    }
                }
            }
            let n = tokens.max(1) as f64;
            gram.iter_mut().for_each(|v| *v /= n);
            gram
        })
        .collect()
}

/// `d^T G d`, with four independent partial sums per row so the compiler can vectorise the
/// dot products.
fn quadratic(gram: &[f64], d: &[f64]) -> f64 {
    let n = d.len();
    let mut total = 0.0f64;
    for (a, &da) in d.iter().enumerate() {
        let row = &gram[a * n..(a + 1) * n];
        let mut acc = [0.0f64; 4];
        for (g4, d4) in row.chunks_exact(4).zip(d.chunks_exact(4)) {
            for k in 0..4 {
                acc[k] += g4[k] * d4[k];
            }
        }
        let tail: f64 = row
            .chunks_exact(4)
            .remainder()
            .iter()
            .zip(d.chunks_exact(4).remainder())
            .map(|(g, x)| g * x)
            .sum();
        total += da * (acc[0] + acc[1] + acc[2] + acc[3] + tail);
    }
    total
}

/// `mean_t (x_t[offset..offset + len] . d)^2`.
fn token_mse(x: &Dense<f32>, offset: usize, d: &[f64]) -> f64 {
    let (tokens, d_in) = (x.shape()[0], x.shape()[1]);
    let mut total = 0.0f64;
    for t in 0..tokens {
        let row = &x.data()[t * d_in + offset..t * d_in + offset + d.len()];
        let dot: f64 = row.iter().zip(d).map(|(&a, &b)| f64::from(a) * b).sum();
        total += dot * dot;
    }
    total / tokens.max(1) as f64
}
