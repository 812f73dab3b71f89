//! GPTQ's column loop (`GPTQ.fasterquant` of IST-DASLab/gptq, `gptq.py`) on a host `[out, in]`
//! matrix.
//!
//! Every output row is independent once `U` is known (its error only feeds its own later
//! columns), so rows run in parallel in tiles of [`TILE_ROWS`]: a tile walks the columns block
//! by block exactly as the reference does (the within-block update on a copy of the block, the
//! lazy batch update of the columns after it), and each row of `U` it reads serves all the
//! tile's rows.

use compress_core::oneshot::LinearReport;
use compress_core::oneshot::hessian::{self, MAX_RETRIES, Prepared};
use compress_core::{CompressError, Dense, Result};
use compress_quant::rtn::{QParams, Quantizer, Strategy, WeightScheme, rtn_quantize};
use rayon::prelude::*;

use crate::NAME;

/// Rows processed together by one task.
pub const TILE_ROWS: usize = 16;

/// Column order (`act_order`) and how group parameters are fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActOrder {
    /// Natural column order.
    Off,
    /// Columns by `diag(H)` descending; groups are runs of the permuted order, fitted on the
    /// error-updated weights when they start (IST's `--act-order`; llm-compressor's
    /// `"group"` / `"dynamic"`).
    Group,
    /// Columns by `diag(H)` descending; group parameters fitted on the original weight up
    /// front, per original column group, and looked up through the permutation (IST's
    /// `--act-order --static-groups`; llm-compressor's `"weight"` / `"static"`).
    Weight,
}

/// GPTQ's options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptqConfig {
    /// The weight grid.
    pub weights: WeightScheme,
    /// Columns per lazy-update block (`block_size`, 128).
    pub block_size: usize,
    /// Damping relative to `mean(diag H)` (`dampening_frac`, 0.01).
    pub dampening_frac: f64,
    /// Column order (`actorder`).
    pub actorder: ActOrder,
    /// Group parameters fitted on the original weight up front (`static_groups`; implied by
    /// [`ActOrder::Weight`]). Without it groups are fitted dynamically, when the column loop
    /// reaches a group's first column.
    pub static_groups: bool,
}

impl Default for GptqConfig {
    fn default() -> Self {
        Self {
            weights: WeightScheme::w4a16(),
            block_size: 128,
            dampening_frac: 0.01,
            actorder: ActOrder::Weight,
            static_groups: true,
        }
    }
}

fn fail(path: &str, message: impl std::fmt::Display) -> CompressError {
    CompressError::Algorithm {
        algorithm: NAME.into(),
        message: format!("'{path}': {message}"),
    }
}

/// GPTQ-quantize the `[out, in]` weight of the Linear at `path` in place, given its input
/// Hessian `H` (`[in, in]`, `(2 / samples) sum x x^T`).
///
/// As `gptq.py`: per-tensor / per-channel parameters are fitted on the weight as given; dead
/// columns (`diag(H) = 0`) are zeroed; static groups are fitted next; the columns are permuted
/// by `diag(H)` descending under act_order (ties in column order); `U` = the upper Cholesky
/// factor of the damped `H^-1` ([`hessian::prepare`]); then per block of `block_size` columns
/// and per column `i`: the group's parameters (dynamic groups: fitted on the current,
/// error-updated weight of the group's columns when `i % group_size == 0`, as the reference
/// reads it, i.e. with the updates of earlier blocks but not yet of the current block's
/// earlier columns), `q = Q(w_i)`, `err = (w_i - q) / U_ii`, the block's later columns
/// `-= err * U[i, ..]`; after the block, the lazy update of all later columns. The reported
/// loss is the reference's `sum (w - q)^2 / U_ii^2 / 2`.
///
/// A Hessian that stays indefinite after [`MAX_RETRIES`] damping retries falls back to
/// round-to-nearest ([`rtn_quantize`]) and says so in [`LinearReport::fallback`].
///
/// # Errors
/// [`CompressError::KernelMismatch`] (named layer) for a group size that does not divide the
/// input width; [`CompressError::Algorithm`] (named layer) for a Hessian of the wrong shape or
/// with a non-finite entry, or `block_size` 0.
pub fn fasterquant(
    weight: &mut Dense<f32>,
    h: &Dense<f64>,
    config: &GptqConfig,
    path: &str,
) -> Result<LinearReport> {
    let scheme = &config.weights;
    scheme.check(path, weight.shape())?;
    let (rows, cols) = (weight.shape()[0], weight.shape()[1]);
    if h.shape() != [cols, cols] {
        return Err(fail(
            path,
            format!(
                "the Hessian has shape {:?}, expected [{cols}, {cols}] for the weight {:?}",
                h.shape(),
                weight.shape()
            ),
        ));
    }
    if h.data().iter().any(|v| !v.is_finite()) {
        return Err(fail(path, "the Hessian has a non-finite entry"));
    }
    if config.block_size == 0 {
        return Err(fail(path, "block_size must be at least 1"));
    }
    if rows == 0 || cols == 0 {
        return Ok(LinearReport::default());
    }
    let q = scheme.quantizer;
    // Per-tensor / per-channel parameters come from the weight as given (before dead columns
    // are zeroed), as the reference's first `find_params(W)`.
    let fixed: Vec<QParams> = match scheme.strategy {
        Strategy::Tensor => vec![q.fit(weight.data()); rows],
        Strategy::Channel => weight.data().chunks(cols).map(|r| q.fit(r)).collect(),
        Strategy::Group(_) => Vec::new(),
    };
    let diag: Vec<f64> = (0..cols).map(|j| h.data()[j * cols + j]).collect();
    let dead: Vec<usize> = (0..cols).filter(|&j| diag[j] == 0.0).collect();
    {
        let w = weight.data_mut();
        for r in 0..rows {
            for &j in &dead {
                w[r * cols + j] = 0.0;
            }
        }
    }
    let group = scheme.group_size();
    let static_groups = group.is_some() && config.static_groups;
    let statics: Vec<QParams> = match group {
        Some(g) if static_groups => weight.data().chunks(g).map(|c| q.fit(c)).collect(),
        _ => Vec::new(),
    };
    let perm: Option<Vec<usize>> = match config.actorder {
        ActOrder::Off => None,
        ActOrder::Group | ActOrder::Weight => {
            let key = |j: usize| if diag[j] == 0.0 { 1.0 } else { diag[j] };
            let mut p: Vec<usize> = (0..cols).collect();
            p.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
            Some(p)
        }
    };
    let factor = match hessian::prepare(NAME, h, config.dampening_frac, perm.as_deref()).map_err(
        |e| match e {
            CompressError::Algorithm { message, .. } => fail(path, message),
            other => other,
        },
    )? {
        Prepared::Factor(f) => f,
        Prepared::Indefinite { damp, .. } => {
            rtn_quantize(weight, scheme, path)?;
            return Ok(LinearReport {
                dead_columns: dead.len(),
                damping_retries: MAX_RETRIES,
                fallback: Some(format!(
                    "the Hessian stayed indefinite with damping up to {damp:.3e} \
                     ({MAX_RETRIES} retries x10): round-to-nearest"
                )),
                ..LinearReport::default()
            });
        }
    };
    let u: Vec<f32> = factor.u.data().iter().map(|&v| v as f32).collect();
    // The weight in the permuted column order.
    let mut w: Vec<f32> = match &perm {
        None => weight.data().to_vec(),
        Some(p) => {
            let src = weight.data();
            let mut out = vec![0.0f32; rows * cols];
            for (dst, s) in out.chunks_mut(cols).zip(src.chunks(cols)) {
                for (d, &pj) in dst.iter_mut().zip(p) {
                    *d = s[pj];
                }
            }
            out
        }
    };
    let ctx = Loop {
        u: &u,
        cols,
        block: config.block_size,
        group,
        quantizer: q,
        fixed: &fixed,
        statics: &statics,
        groups_per_row: group.map_or(0, |g| cols / g),
        perm: perm.as_deref(),
    };
    let loss: f64 = w
        .par_chunks_mut(TILE_ROWS * cols)
        .enumerate()
        .map(|(t, tile)| ctx.run_tile(t * TILE_ROWS, tile))
        .sum();
    // Back to the original column order.
    let out = weight.data_mut();
    match &perm {
        None => out.copy_from_slice(&w),
        Some(p) => {
            for (dst, s) in out.chunks_mut(cols).zip(w.chunks(cols)) {
                for (&pj, &v) in p.iter().zip(s) {
                    dst[pj] = v;
                }
            }
        }
    }
    Ok(LinearReport {
        dead_columns: dead.len(),
        damping_retries: factor.retries,
        loss: Some(loss),
        ..LinearReport::default()
    })
}

/// What every tile shares.
struct Loop<'a> {
    /// `U`, `[cols, cols]`, f32, in the permuted order.
    u: &'a [f32],
    cols: usize,
    block: usize,
    group: Option<usize>,
    /// The grid dynamic groups are fitted with.
    quantizer: Quantizer,
    /// Per-row parameters (tensor / channel strategies).
    fixed: &'a [QParams],
    /// Static group parameters, `[rows, groups_per_row]`, by original column group.
    statics: &'a [QParams],
    groups_per_row: usize,
    perm: Option<&'a [usize]>,
}

impl Loop<'_> {
    /// Quantize the rows `row0 ..` held in `tile` (`[n, cols]`, permuted order); each row ends
    /// up holding its quantized values. Returns the tile's loss.
    fn run_tile(&self, row0: usize, tile: &mut [f32]) -> f64 {
        let cols = self.cols;
        let n = tile.len() / cols;
        let bs = self.block.min(cols);
        let mut w1 = vec![0.0f32; n * bs];
        let mut err1 = vec![0.0f32; n * bs];
        let mut q1 = vec![0.0f32; n * bs];
        let mut params: Vec<QParams> = if self.fixed.is_empty() {
            vec![
                QParams {
                    scale: 1.0,
                    zero: 0.0,
                    maxq: 1.0
                };
                n
            ]
        } else {
            self.fixed[row0..row0 + n].to_vec()
        };
        let mut loss = 0.0f64;
        let mut i1 = 0;
        while i1 < cols {
            let i2 = (i1 + bs).min(cols);
            let count = i2 - i1;
            for r in 0..n {
                w1[r * bs..r * bs + count].copy_from_slice(&tile[r * cols + i1..r * cols + i2]);
            }
            for i in 0..count {
                let col = i1 + i;
                self.update_params(row0, tile, col, &mut params);
                let urow = &self.u[col * cols + i1..col * cols + i2];
                let d = urow[i];
                for r in 0..n {
                    let row = &mut w1[r * bs..r * bs + count];
                    let x = row[i];
                    let qv = params[r].quantize(x);
                    q1[r * bs + i] = qv;
                    let e = (x - qv) / d;
                    loss += f64::from(e) * f64::from(e) / 2.0;
                    for (v, &uv) in row[i..].iter_mut().zip(&urow[i..]) {
                        *v -= e * uv;
                    }
                    err1[r * bs + i] = e;
                }
            }
            // The lazy batch update: W[:, i2:] -= Err1 @ U[i1:i2, i2:].
            if i2 < cols {
                for r in 0..n {
                    let rest = &mut tile[r * cols + i2..(r + 1) * cols];
                    for k in 0..count {
                        let e = err1[r * bs + k];
                        let urow = &self.u[(i1 + k) * cols + i2..(i1 + k + 1) * cols];
                        for (v, &uv) in rest.iter_mut().zip(urow) {
                            *v -= e * uv;
                        }
                    }
                }
            }
            for r in 0..n {
                tile[r * cols + i1..r * cols + i2].copy_from_slice(&q1[r * bs..r * bs + count]);
            }
            i1 = i2;
        }
        loss
    }

    /// The group parameters in force at (permuted) column `col`.
    fn update_params(&self, row0: usize, tile: &[f32], col: usize, params: &mut [QParams]) {
        let Some(g) = self.group else { return };
        let cols = self.cols;
        if self.statics.is_empty() {
            if col.is_multiple_of(g) {
                let end = (col + g).min(cols);
                for (r, p) in params.iter_mut().enumerate() {
                    *p = self.quantizer.fit(&tile[r * cols + col..r * cols + end]);
                }
            }
        } else {
            let idx = self.perm.map_or(col, |p| p[col]) / g;
            for (r, p) in params.iter_mut().enumerate() {
                *p = self.statics[(row0 + r) * self.groups_per_row + idx];
            }
        }
    }
}
