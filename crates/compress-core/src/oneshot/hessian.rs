//! The inverse-Hessian factor SparseGPT and GPTQ share (`sparsegpt.py` / `gptq.py`, the lines
//! before the column loop):
//!
//! 1. dead columns (`diag(H)_j == 0`, an input that never fired): `H_jj = 1` (the caller zeroes
//!    `W[:, j]`);
//! 2. optional column permutation (GPTQ's `act_order`);
//! 3. damping `lambda = percdamp * mean(diag H)` added to the diagonal;
//! 4. `U` = the upper Cholesky factor of `H^-1` (`cholesky -> cholesky_inverse -> cholesky
//!    upper` in the reference), so `H^-1 = U^T U`.
//!
//! Step 4 is computed without forming `H^-1`: with `H = R R^T`, `R` upper triangular (a Cholesky
//! factorisation in reversed index order), `H^-1 = R^-T R^-1`, so `U = R^-1`; the factor is
//! unique, so this is the reference's `U` exactly, at a third of the work.
//!
//! A Hessian that is not positive definite (small calibration sets) is retried with ten times
//! the damping, up to [`MAX_RETRIES`] times; after that [`prepare`] returns
//! [`Prepared::Indefinite`] and the caller falls back to round-to-nearest / magnitude selection
//! and reports it (llm-compressor's behaviour).

use crate::{CompressError, Dense, Result};

/// Retries with ten times the damping before giving up.
pub const MAX_RETRIES: u32 = 3;

/// The factor the column loop needs.
#[derive(Debug, Clone, PartialEq)]
pub struct InverseHessian {
    /// `[d, d]` row-major, upper triangular: `H^-1 = U^T U` for the damped (and permuted) `H`.
    pub u: Dense<f64>,
    /// Dead input columns, in the original (unpermuted) order.
    pub dead: Vec<usize>,
    /// Retries with ten times the damping.
    pub retries: u32,
    /// The damping added to the diagonal in the end.
    pub damp: f64,
}

/// [`prepare`]'s outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// The factor.
    Factor(InverseHessian),
    /// `H` stayed indefinite after [`MAX_RETRIES`] retries.
    Indefinite {
        /// Dead input columns.
        dead: Vec<usize>,
        /// The last damping tried.
        damp: f64,
    },
}

/// The inverse-Hessian factor of `hessian` (`[d, d]`, symmetric) with relative damping
/// `percdamp`, its columns permuted by `perm` (`perm[k]` is the original column at position `k`)
/// when given.
///
/// # Errors
/// [`CompressError::Algorithm`] (`algorithm` named) for a non-square Hessian, a permutation of
/// the wrong length, or a non-finite entry.
pub fn prepare(
    algorithm: &str,
    hessian: &Dense<f64>,
    percdamp: f64,
    perm: Option<&[usize]>,
) -> Result<Prepared> {
    let fail = |message: String| CompressError::Algorithm {
        algorithm: algorithm.into(),
        message,
    };
    let shape = hessian.shape();
    if shape.len() != 2 || shape[0] != shape[1] {
        return Err(fail(format!("the Hessian must be square, got {shape:?}")));
    }
    let d = shape[0];
    if hessian.data().iter().any(|v| !v.is_finite()) {
        return Err(fail("the Hessian has a non-finite entry".into()));
    }
    let mut h = hessian.data().to_vec();
    let dead: Vec<usize> = (0..d).filter(|&j| h[j * d + j] == 0.0).collect();
    for &j in &dead {
        h[j * d + j] = 1.0;
    }
    if let Some(p) = perm {
        if p.len() != d {
            return Err(fail(format!(
                "the permutation has {} entries for {d} columns",
                p.len()
            )));
        }
        let mut permuted = vec![0.0; d * d];
        for (r, &pr) in p.iter().enumerate() {
            for (c, &pc) in p.iter().enumerate() {
                permuted[r * d + c] = h[pr * d + pc];
            }
        }
        h = permuted;
    }
    let mean_diag = (0..d).map(|j| h[j * d + j]).sum::<f64>() / d.max(1) as f64;
    let mut damp = percdamp * mean_diag;
    let mut retries = 0;
    loop {
        let mut damped = h.clone();
        for j in 0..d {
            damped[j * d + j] += damp;
        }
        if let Some(u) = inverse_upper_factor(&damped, d) {
            return Ok(Prepared::Factor(InverseHessian {
                u: Dense::new(vec![d, d], u),
                dead,
                retries,
                damp,
            }));
        }
        if retries == MAX_RETRIES {
            return Ok(Prepared::Indefinite { dead, damp });
        }
        retries += 1;
        damp *= 10.0;
    }
}

/// `U` upper with `A^-1 = U^T U` for a symmetric positive definite `A` (`d x d`, row-major);
/// `None` when `A` is not positive definite.
fn inverse_upper_factor(a: &[f64], d: usize) -> Option<Vec<f64>> {
    use rayon::prelude::*;
    // Lower Cholesky of the index-reversed matrix: B = J A J = L L^T (row by row; each entry a
    // dot product of two contiguous row prefixes).
    let rev = |i: usize| d - 1 - i;
    let mut l = vec![0.0f64; d * d];
    for i in 0..d {
        let (done, rest) = l.split_at_mut(i * d);
        let row = &mut rest[..d];
        for j in 0..=i {
            let rj = if j == i {
                &row[..j]
            } else {
                &done[j * d..j * d + j]
            };
            let v = a[rev(i) * d + rev(j)] - dot(&row[..j], rj);
            if i == j {
                if v.is_nan() || v <= 0.0 || v.is_infinite() {
                    return None;
                }
                row[i] = v.sqrt();
            } else {
                row[j] = v / done[j * d + j];
            }
        }
    }
    // X = L^-1, one column per task: L x = e_j by forward substitution (x_k = 0 for k < j).
    let columns: Vec<Vec<f64>> = (0..d)
        .into_par_iter()
        .map(|j| {
            let mut x = vec![0.0f64; d - j];
            for i in j..d {
                let li = &l[i * d + j..i * d + i];
                let delta = if i == j { 1.0 } else { 0.0 };
                x[i - j] = (delta - dot(li, &x[..i - j])) / l[i * d + i];
            }
            x
        })
        .collect();
    // A = J B J = (J L J)(J L J)^T = R R^T with R = J L J upper; U = R^-1 = J X J.
    let mut u = vec![0.0f64; d * d];
    for (j, col) in columns.iter().enumerate() {
        for (k, v) in col.iter().enumerate() {
            // X[j + k][j] -> U[rev(j + k)][rev(j)]
            u[rev(j + k) * d + rev(j)] = *v;
        }
    }
    Some(u)
}

/// A dot product with eight independent partial sums (vectorizes without fast-math).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factor(p: Prepared) -> InverseHessian {
        match p {
            Prepared::Factor(f) => f,
            other => panic!("{other:?}"),
        }
    }

    /// `scripts/reference/hessian.py`: NumPy's `cholesky(inv(H + damp I)).T` (the reference's
    /// `cholesky(cholesky_inverse(cholesky(H)), upper=True)`).
    #[test]
    fn the_factor_is_the_upper_cholesky_of_the_damped_inverse() {
        let h = Dense::new(
            vec![3, 3],
            vec![4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0],
        );
        let f = factor(prepare("t", &h, 0.01, None).unwrap());
        assert!((f.damp - 0.04).abs() < 1e-15);
        assert_eq!((f.retries, f.dead.len()), (0, 0));
        let expected = [
            0.556_258_005_034_663_3,
            -0.212_845_901_825_910_2,
            -0.039_772_664_866_739_416,
            0.0,
            0.460_724_197_144_001_76,
            -0.151_554_012_218_421_66,
            0.0,
            0.0,
            0.573_539_334_676_404_4,
        ];
        for (g, e) in f.u.data().iter().zip(expected) {
            assert!((g - e).abs() < 1e-12, "{:?}", f.u.data());
        }
    }

    #[test]
    fn the_factor_inverts_a_larger_hessian() {
        // A = M M^T + I for a deterministic M (53 columns: remainders in the dot products).
        let d = 53;
        let m: Vec<f64> = (0..d * d)
            .map(|k| ((k * 7919 % 101) as f64 - 50.0) / 50.0)
            .collect();
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = (0..d).map(|k| m[i * d + k] * m[j * d + k]).sum::<f64>()
                    + f64::from(u8::from(i == j));
            }
        }
        let f = factor(prepare("t", &Dense::new(vec![d, d], a.clone()), 0.0, None).unwrap());
        let u = f.u.data();
        // U upper; U^T U A = I.
        for i in 0..d {
            for j in 0..i {
                assert_eq!(u[i * d + j], 0.0);
            }
        }
        for i in 0..d {
            for j in 0..d {
                let utu_a: f64 = (0..d)
                    .map(|k| {
                        let utu_ik: f64 = (0..d).map(|r| u[r * d + i] * u[r * d + k]).sum();
                        utu_ik * a[k * d + j]
                    })
                    .sum();
                let want = f64::from(u8::from(i == j));
                assert!((utu_a - want).abs() < 1e-8, "({i}, {j}): {utu_a}");
            }
        }
    }

    #[test]
    fn dead_columns_get_a_unit_diagonal_and_are_reported() {
        let h = Dense::new(vec![2, 2], vec![2.0, 0.0, 0.0, 0.0]);
        let f = factor(prepare("t", &h, 0.0, None).unwrap());
        assert_eq!(f.dead, [1]);
        // H = diag(2, 1): U = diag(1/sqrt 2, 1).
        let u = f.u.data();
        assert!((u[0] - 0.5f64.sqrt()).abs() < 1e-15 && u[1] == 0.0 && (u[3] - 1.0).abs() < 1e-15);
    }

    #[test]
    fn a_permutation_reorders_rows_and_columns_first() {
        let h = Dense::new(vec![2, 2], vec![1.0, 0.0, 0.0, 4.0]);
        let f = factor(prepare("t", &h, 0.0, Some(&[1, 0])).unwrap());
        // Permuted H = diag(4, 1): U = diag(1/2, 1).
        assert_eq!(f.u.data(), &[0.5, 0.0, 0.0, 1.0]);
        let err = prepare("gptq", &h, 0.0, Some(&[0])).unwrap_err();
        assert!(err.to_string().contains("gptq"), "{err}");
    }

    #[test]
    fn an_indefinite_hessian_is_retried_with_ten_times_the_damping_then_given_up() {
        // Eigenvalues 3.5 and -1.5; mean diagonal 1: damping 0.01, 0.1, 1 fail, 10 succeeds.
        let h = Dense::new(vec![2, 2], vec![1.0, 2.5, 2.5, 1.0]);
        let f = factor(prepare("t", &h, 0.01, None).unwrap());
        assert_eq!(f.retries, 3);
        assert!((f.damp - 10.0).abs() < 1e-9);
        // Eigenvalue -100 needs damping > 100: 0.01 .. 10 all fail.
        let h = Dense::new(vec![2, 2], vec![1.0, 101.0, 101.0, 1.0]);
        match prepare("t", &h, 0.01, None).unwrap() {
            Prepared::Indefinite { damp, .. } => assert!((damp - 10.0).abs() < 1e-9),
            other => panic!("{other:?}"),
        }
    }
}
