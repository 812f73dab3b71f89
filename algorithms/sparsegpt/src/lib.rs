//! # prune-sparsegpt: SparseGPT
//!
//! Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot"
//! (2023); `fasterprune` of IST-DASLab/sparsegpt's `sparsegpt.py`. Per Linear, from the Hessian
//! of its input `H = (2 / samples) * sum x x^T`:
//!
//! 1. dead inputs (`diag(H)_j = 0`) get `H_jj = 1` and their weight column zeroed; damping
//!    `dampening_frac * mean(diag H)`; `U` = the upper Cholesky factor of `H^-1`
//!    ([`hessian::prepare`]);
//! 2. columns in blocks of `block_size`; at each block's start, unstructured pruning zeroes the
//!    `int(sparsity * rows * block)` lowest `w^2 / U_jj^2` over the whole rows x block (one
//!    threshold per column block, not per row); N:M instead, at every m-th column, zeroes in each
//!    row the `m - n` lowest scores among the next m columns of the already updated weights;
//! 3. per column `i` (the OBS update): `q` = `w` with the pruned entries 0, `err = (w - q) / U_ii`,
//!    `W[:, i:] -= err U[i, i:]` within the block; after the block, the lazy batch update
//!    `W[:, i2:] -= Err U[i1:i2, i2:]`.
//!
//! Rows are independent once a block's mask is chosen, so they run in parallel (rayon); the lazy
//! update is a GEMM (matrixmultiply) over row chunks. Arithmetic is f32 as in the reference
//! (`U` is rounded once from the f64 factor).
//!
//! When `H` stays indefinite after three retries with ten times the damping, the layer falls
//! back to magnitude selection without update ([`prune_magnitude`]); the report's
//! `fallback` says so. The report's `loss` is the reference's printed error,
//! `sum (w - q)^2 / U_ii^2 / 2`.
//!
//! Registry name `sparsegpt`, kind [`AlgorithmKind::OneShotPruner`]; options (llm-compressor's
//! keys, [`compress_core::oneshot::sparsity`]):
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `sparsity` | 0.5 | in `[0, 1)` |
//! | `mask_structure` | `"0:0"` | `"n:m"`: n kept of every m |
//! | `sparsity_profile` | `"uniform"` | or `"owl"` (with `owl_m` 5, `owl_lmbda` 0.08) |
//! | `block_size` | 128 | column block, a multiple of m under N:M |
//! | `dampening_frac` | 0.01 | damping as a fraction of `mean(diag H)` |
//!
//! Deliberate difference: the reference's block threshold `tmp <= sort(tmp)[int(numel * s)]`
//! also zeroes the entry at the quantile index (and ties); here exactly `int(numel * s)` are
//! zeroed, ties to the lower index.
//!
//! ```
//! use compress_core::AlgorithmEntry;
//! use prune_sparsegpt as _; // link the crate so it registers
//!
//! let options = "mask_structure = \"2:4\"".parse()?;
//! let sparsegpt = AlgorithmEntry::find("sparsegpt")?.build_oneshot(&options)?;
//! assert_eq!(sparsegpt.sparsity().unwrap().sparsity, 0.5);
//! assert!(sparsegpt.needs().hessian);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

use compress_core::oneshot::hessian::{self, MAX_RETRIES, Prepared};
use compress_core::oneshot::sparsity::{
    MaskStructure, PruneOptions, SPARSEGPT_KEYS, count_to_prune, prune_group, prune_lowest,
    prune_magnitude,
};
use compress_core::oneshot::{
    LinearReport, LinearSlot, OneShot, SparsityProfile, SparsitySpec, StatNeeds,
};
use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Result};
use rayon::prelude::*;

/// The registry name.
pub const NAME: &str = "sparsegpt";

/// SparseGPT, configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparseGpt {
    options: PruneOptions,
}

impl SparseGpt {
    /// SparseGPT with parsed options.
    pub fn new(options: PruneOptions) -> Self {
        Self { options }
    }

    /// Its options.
    pub fn options(&self) -> &PruneOptions {
        &self.options
    }
}

/// SparseGPT's `fasterprune` on `weight` (`[rows, cols]` row-major, dead columns already zeroed)
/// with the inverse-Hessian factor `u` (`[cols, cols]`, upper: `H^-1 = U^T U`). Unstructured
/// pruning zeroes `int(sparsity * rows * block)` weights per column block; N:M ignores
/// `sparsity`. Returns the reference's loss, `sum (w - q)^2 / U_ii^2 / 2`.
///
/// # Panics
/// If the lengths do not match `rows` x `cols`, `block_size` is 0, or under N:M `cols` or
/// `block_size` is not a multiple of m (callers check with [`PruneOptions::check_layer`] and
/// [`PruneOptions::parse`]).
pub fn fasterprune(
    weight: &mut [f32],
    cols: usize,
    u: &[f64],
    structure: MaskStructure,
    sparsity: f64,
    block_size: usize,
) -> f64 {
    assert!(
        cols > 0 && weight.len().is_multiple_of(cols),
        "fasterprune: ragged weight"
    );
    assert_eq!(u.len(), cols * cols, "fasterprune: U is not [cols, cols]");
    assert!(block_size > 0, "fasterprune: block_size 0");
    if let MaskStructure::NofM { m, .. } = structure {
        assert!(
            cols.is_multiple_of(m) && block_size.is_multiple_of(m),
            "fasterprune: groups of {m} do not tile"
        );
    }
    let rows = weight.len() / cols;
    if rows == 0 {
        return 0.0;
    }
    let u: Vec<f32> = u.iter().map(|&v| v as f32).collect();
    let mut err = vec![0.0f32; rows * block_size];
    let mut mask = vec![false; rows * block_size];
    let mut scores = vec![0.0f32; rows * block_size];
    let mut loss = 0.0f64;
    for i1 in (0..cols).step_by(block_size) {
        let i2 = (i1 + block_size).min(cols);
        let count = i2 - i1;
        let (err, mask, scores) = (
            &mut err[..rows * count],
            &mut mask[..rows * count],
            &mut scores[..rows * count],
        );
        let u_ref = &u;
        let diag = move |c: usize| u_ref[c * cols + c];
        match structure {
            MaskStructure::Unstructured => {
                scores
                    .par_chunks_mut(count)
                    .zip(weight.par_chunks(cols))
                    .for_each(|(s, row)| {
                        for (c, (s, w)) in s.iter_mut().zip(&row[i1..i2]).enumerate() {
                            let d = diag(i1 + c);
                            *s = w * w / (d * d);
                        }
                    });
                prune_lowest(scores, count_to_prune(rows * count, sparsity), mask);
            }
            MaskStructure::NofM { .. } => mask.fill(false),
        }
        let group = match structure {
            MaskStructure::NofM { m, .. } => m,
            MaskStructure::Unstructured => 0,
        };
        loss += weight
            .par_chunks_mut(cols)
            .zip(err.par_chunks_mut(count))
            .zip(mask.par_chunks_mut(count))
            .map_init(
                || vec![0.0f32; group],
                |scratch, ((row, e), mk)| {
                    prune_block_row(&mut row[i1..i2], e, mk, &u, cols, i1, structure, scratch)
                },
            )
            .sum::<f64>()
            / 2.0;
        if i2 < cols {
            lazy_update(weight, cols, err, count, &u[i1 * cols + i2..], i2);
        }
    }
    loss
}

/// The column loop of one block on one row: `w1` = `W[r, i1..i2]`, `e` its `err` row, `mk` its
/// mask row (N:M fills it as it goes). Returns the row's `sum (w - q)^2 / d^2`.
#[allow(clippy::too_many_arguments)]
fn prune_block_row(
    w1: &mut [f32],
    e: &mut [f32],
    mk: &mut [bool],
    u: &[f32],
    cols: usize,
    i1: usize,
    structure: MaskStructure,
    scratch: &mut [f32],
) -> f64 {
    let count = w1.len();
    let mut loss = 0.0f64;
    for i in 0..count {
        let urow = &u[(i1 + i) * cols + i1 + i..(i1 + i) * cols + i1 + count];
        if let MaskStructure::NofM { keep, m } = structure
            && i % m == 0
        {
            for (k, s) in scratch.iter_mut().enumerate() {
                let d = u[(i1 + i + k) * cols + i1 + i + k];
                *s = w1[i + k] * w1[i + k] / (d * d);
            }
            prune_group(scratch, keep, &mut mk[i..i + m]);
        }
        e[i] = column_step(&mut w1[i..], urow, mk[i]);
        // (w - q)^2 / d^2 = err^2.
        loss += f64::from(e[i]) * f64::from(e[i]);
    }
    loss
}

/// One column of the OBS update on one row: `w` = `W[r, i..i2]`, `urow` = `U[i, i..i2]`. With
/// `q` = 0 when pruned, else `w[0]`: `err = (w[0] - q) / U_ii`, `w[1..] -= err U[i, i+1..]`,
/// `w[0] = q`. Returns `err`.
fn column_step(w: &mut [f32], urow: &[f32], pruned: bool) -> f32 {
    if !pruned {
        return 0.0;
    }
    let err = w[0] / urow[0];
    for (x, &uu) in w[1..].iter_mut().zip(&urow[1..]) {
        *x -= err * uu;
    }
    w[0] = 0.0;
    err
}

/// `W[:, i2:] -= Err U[i1:i2, i2:]`, in parallel over row chunks. `u_block` starts at
/// `U[i1, i2]` (row stride `cols`).
fn lazy_update(
    weight: &mut [f32],
    cols: usize,
    err: &[f32],
    count: usize,
    u_block: &[f32],
    i2: usize,
) {
    let rows = weight.len() / cols;
    let n = cols - i2;
    let chunk = rows.div_ceil(rayon::current_num_threads() * 2).max(16);
    weight
        .par_chunks_mut(chunk * cols)
        .zip(err.par_chunks(chunk * count))
        .for_each(|(w, e)| {
            let m = w.len() / cols;
            // SAFETY: `e` is [m, count] row-major, `u_block` covers [count, n] with row stride
            // `cols` (it starts at U[i1, i2] and U has `cols - i1 >= count` more rows), and the
            // output starts at column `i2` of `w`'s [m, cols] rows: every index stays inside
            // the slices, and the output does not alias the inputs.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    count,
                    n,
                    -1.0,
                    e.as_ptr(),
                    count as isize,
                    1,
                    u_block.as_ptr(),
                    cols as isize,
                    1,
                    1.0,
                    w.as_mut_ptr().add(i2),
                    cols as isize,
                    1,
                );
            }
        });
}

impl OneShot for SparseGpt {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> StatNeeds {
        StatNeeds {
            hessian: true,
            // OWL's outlier fractions are Wanda scores.
            sq_norm: matches!(self.options.profile, SparsityProfile::Owl { .. }),
            ..StatNeeds::default()
        }
    }

    fn sparsity(&self) -> Option<SparsitySpec> {
        Some(self.options.spec())
    }

    fn compress_linear(&self, slot: &mut LinearSlot<'_>) -> Result<LinearReport> {
        let (_, cols) = self.options.check_layer(NAME, slot)?;
        let fail = |message: String| CompressError::Algorithm {
            algorithm: NAME.into(),
            message: format!("layer '{}': {message}", slot.path),
        };
        let h = slot.stats.hessian.as_ref().ok_or_else(|| {
            fail("no Hessian of its input was collected (StatNeeds::hessian)".into())
        })?;
        if h.shape() != [cols, cols] {
            return Err(fail(format!(
                "the Hessian has shape {:?}, the weight {cols} inputs",
                h.shape()
            )));
        }
        let prepared =
            hessian::prepare(NAME, h, self.options.dampening_frac, None).map_err(|e| match e {
                CompressError::Algorithm { message, .. } => fail(message),
                other => other,
            })?;
        let structure = self.options.structure;
        let sparsity = slot.sparsity;
        let w = slot.weight.data_mut();
        let zero_dead = |w: &mut [f32], dead: &[usize]| {
            for row in w.chunks_mut(cols) {
                for &j in dead {
                    row[j] = 0.0;
                }
            }
        };
        let report = match prepared {
            Prepared::Factor(f) => {
                zero_dead(w, &f.dead);
                let loss = fasterprune(
                    w,
                    cols,
                    f.u.data(),
                    structure,
                    sparsity,
                    self.options.block_size,
                );
                LinearReport {
                    dead_columns: f.dead.len(),
                    damping_retries: f.retries,
                    fallback: None,
                    zeros: 0,
                    loss: Some(loss),
                }
            }
            Prepared::Indefinite { dead, damp } => {
                zero_dead(w, &dead);
                prune_magnitude(w, cols, structure, sparsity);
                LinearReport {
                    dead_columns: dead.len(),
                    damping_retries: MAX_RETRIES,
                    fallback: Some(format!(
                        "the Hessian stayed indefinite up to damping {damp:e} ({MAX_RETRIES} retries): magnitude selection without weight update"
                    )),
                    zeros: 0,
                    loss: None,
                }
            }
        };
        Ok(LinearReport {
            zeros: w.iter().filter(|&&x| x == 0.0).count(),
            ..report
        })
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "sparsegpt",
        kind: AlgorithmKind::OneShotPruner,
        summary: "SparseGPT: one-shot unstructured or N:M pruning with the OBS weight update from the input Hessian",
        config_keys: SPARSEGPT_KEYS,
        build: |table| Ok(Algorithm::OneShot(Box::new(SparseGpt::new(PruneOptions::parse(NAME, table)?)))),
    }
}

#[cfg(test)]
mod tests;
