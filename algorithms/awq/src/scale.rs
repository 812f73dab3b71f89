//! AWQ's scale search (llm-awq `awq/quantize/auto_scale.py`, `_search_module_scale`): for every
//! grid ratio `alpha`, scale the balance Linears' input columns by `s = s_X^alpha` (normalised),
//! quantize, scale back, and measure the inspected module's output error; the best `alpha`'s
//! scales are folded into the block.

use compress_core::oneshot::{BlockOps, MappingInputs, SmoothMapping};
use compress_core::{CompressError, Dense, Result};
use rayon::prelude::*;

use compress_quant::rtn::{WeightScheme, rtn_quantize};

/// The floor llm-awq clamps `s_X^alpha` to (`clamp(min=1e-4)`), also llm-compressor's offset in
/// the duo-scaling denominator.
const SCALE_FLOOR: f64 = 1e-4;

/// The grid point `alpha`'s normalised scales, one per input channel.
///
/// Plain AWQ (llm-awq): `s = clamp(s_X^alpha, 1e-4)`. Duo scaling (llm-compressor,
/// `w_mean = Some`): `s = clamp(s_X^alpha / (w_mean^(1 - alpha) + 1e-4), 1e-4)`. Either is then
/// normalised as `s / sqrt(max(s) * min(s))`, so the scales straddle 1.
///
/// # Shapes
/// `s_x`, `w_mean` and the result: `[d_in]`.
///
/// # Panics
/// When `w_mean` is given with another length than `s_x` (an internal invariant: both come from
/// the same balance Linears).
pub fn grid_scales(s_x: &[f64], alpha: f64, w_mean: Option<&[f64]>) -> Vec<f32> {
    if let Some(w) = w_mean {
        assert_eq!(w.len(), s_x.len(), "weight means and s_X differ in length");
    }
    let raw: Vec<f64> = s_x
        .iter()
        .enumerate()
        .map(|(j, &x)| {
            let s = match w_mean {
                None => x.powf(alpha),
                Some(w) => x.powf(alpha) / (w[j].powf(1.0 - alpha) + SCALE_FLOOR),
            };
            // `f64::max` would turn a NaN into the floor; a NaN must stay visible (skipped later).
            if s < SCALE_FLOOR { SCALE_FLOOR } else { s }
        })
        .collect();
    let max = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = raw.iter().copied().fold(f64::INFINITY, f64::min);
    let norm = (max * min).sqrt();
    raw.iter().map(|s| (s / norm) as f32).collect()
}

/// llm-compressor's `_compute_layer_means`: `|W|` normalised by its quantization group's
/// maximum (`+ 1e-6`), averaged over the output rows of all `weights` together.
///
/// # Shapes
/// Each weight `[out, d_in]`; the result `[d_in]`.
pub fn weight_means(weights: &[Dense<f32>], group: usize) -> Vec<f64> {
    let d_in = weights.first().map_or(0, |w| w.shape()[1]);
    let mut sum = vec![0.0f64; d_in];
    let mut rows = 0usize;
    for w in weights {
        for row in w.data().chunks(d_in) {
            for (g, chunk) in row.chunks(group).enumerate() {
                let amax = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64 + 1e-6;
                for (k, v) in chunk.iter().enumerate() {
                    sum[g * group + k] += v.abs() as f64 / amax;
                }
            }
            rows += 1;
        }
    }
    sum.iter().map(|s| s / rows.max(1) as f64).collect()
}

/// `Q(W diag(s)) diag(s)^-1`: the weight as the quantized, scaled Linear computes it (the
/// scaled-down input `x / s` folded back); `Q` is `scheme`'s round-to-nearest
/// ([`rtn_quantize`]).
///
/// # Shapes
/// `weight` `[out, d_in]`, `scales` `[d_in]`.
///
/// # Errors
/// As [`rtn_quantize`] (a group size that does not divide the width, named `path`).
pub fn quantize_scaled(
    weight: &Dense<f32>,
    scales: &[f32],
    scheme: &WeightScheme,
    path: &str,
) -> Result<Dense<f32>> {
    let d_in = scales.len();
    let mut scaled = weight.clone();
    scaled.data_mut().par_chunks_mut(d_in).for_each(|row| {
        for (w, s) in row.iter_mut().zip(scales) {
            *w *= s;
        }
    });
    rtn_quantize(&mut scaled, scheme, path)?;
    scaled.data_mut().par_chunks_mut(d_in).for_each(|row| {
        for (w, s) in row.iter_mut().zip(scales) {
            *w /= s;
        }
    });
    Ok(scaled)
}

/// The outcome of one mapping's grid search.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleChoice {
    /// The best ratio.
    pub alpha: f64,
    /// Its loss (the inspected module's output MSE).
    pub loss: f64,
    /// The loss of every grid point in order (`NaN` / `inf` for the skipped ones).
    pub losses: Vec<f64>,
    /// The best ratio's scales, `[d_in]`.
    pub scales: Vec<f32>,
}

/// The grid search of one mapping on `block`: `n_grid` ratios `k / n_grid`, the balance Linears'
/// weights replaced by [`quantize_scaled`] ones and the loss read from
/// [`BlockOps::inspect_error`] on `mapping.inspect`. Ties keep the smaller ratio (llm-awq's
/// strict `<`); non-finite losses are skipped. Nothing is folded here.
///
/// # Errors
/// [`CompressError::Algorithm`] when the first balance Linear has no `abs_mean` statistic, the
/// block refuses a Linear or the scope, or no grid point gives a finite loss (the mapping named).
pub fn search_scales(
    block: &mut dyn BlockOps,
    mapping: &SmoothMapping,
    scheme: &WeightScheme,
    n_grid: usize,
    duo_scaling: bool,
) -> Result<ScaleChoice> {
    let inputs = MappingInputs::read(crate::NAME, block, mapping, "abs_mean", |s| {
        s.abs_mean.as_ref().map(Vec::len)
    })?;
    let (name, weights) = (inputs.name, inputs.weights);
    let s_x = inputs.stats.abs_mean.clone().unwrap_or_default();
    for (l, w) in mapping.balance.iter().zip(&weights) {
        scheme.check(&format!("{}.{l}", block.path()), w.shape())?;
    }
    let chunk = scheme.group_size().unwrap_or(s_x.len());
    let w_mean = duo_scaling.then(|| weight_means(&weights, chunk));
    let mut best: Option<(f64, f64, Vec<f32>)> = None;
    let mut losses = Vec::with_capacity(n_grid);
    for k in 0..n_grid {
        let alpha = k as f64 / n_grid as f64;
        let scales = grid_scales(&s_x, alpha, w_mean.as_deref());
        if scales.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            losses.push(f64::NAN);
            continue;
        }
        let overrides = mapping
            .balance
            .iter()
            .zip(&weights)
            .map(|(l, w)| {
                let path = format!("{}.{l}", block.path());
                Ok((l.clone(), quantize_scaled(w, &scales, scheme, &path)?))
            })
            .collect::<Result<Vec<(String, Dense<f32>)>>>()?;
        let loss = block.inspect_error(&mapping.inspect, &overrides)?;
        losses.push(loss);
        if loss.is_finite() && best.as_ref().is_none_or(|(_, b, _)| loss < *b) {
            best = Some((alpha, loss, scales));
        }
    }
    let (alpha, loss, scales) = best.ok_or_else(|| {
        error(format!(
            "{name}: no grid point gave a finite loss (losses {losses:?}); NaN or inf in the \
             block's output"
        ))
    })?;
    Ok(ScaleChoice {
        alpha,
        loss,
        losses,
        scales,
    })
}

pub(crate) fn error(message: String) -> CompressError {
    CompressError::Algorithm {
        algorithm: "awq".into(),
        message,
    }
}
