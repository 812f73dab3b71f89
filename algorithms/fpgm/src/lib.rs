//! # prune-fpgm: filter pruning via the geometric median
//!
//! NNI's `FPGMPruner` (He et al., "Filter Pruning via Geometric Median for Deep Convolutional
//! Neural Networks Acceleration", CVPR 2019). The metric of block `i` is the sum of Euclidean
//! distances to every other block of the same target, `Σ_j ‖w_j − w_i‖₂`: a block close to the
//! geometric median is redundant (replaceable by the others) and is pruned first.
//!
//! NNI loops over pairs with one small tensor op each (O(n²) ops); here all distances come from
//! one Gram matrix, `‖w_i − w_j‖² = ‖w_i‖² + ‖w_j‖² − 2⟨w_i, w_j⟩`, computed by a blocked GEMM in
//! f64 (so the subtraction loses nothing that matters against NNI's f32 metric).
//!
//! Registry name: `fpgm`. Default granularity: output channel; fine-grained is an error (a single
//! element has no geometric median worth the name). No options of its own.
#![warn(missing_docs)]

use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Dense, MetricInput, Pruner, Result,
};

/// The FPGM pruner.
#[derive(Debug, Clone, Copy, Default)]
pub struct FpgmPruner;

/// `Σ_j ‖r_j − r_i‖₂` for each row `i` of a row-major `[rows, len]` matrix.
pub fn distance_sums(rows: usize, len: usize, values: &[f32]) -> Vec<f32> {
    let x: Vec<f64> = values.iter().map(|&v| v as f64).collect();
    let mut gram = vec![0.0f64; rows * rows];
    // SAFETY: `x` is `rows * len` and `gram` is `rows * rows`, both row-major with the strides
    // given, as dgemm requires.
    unsafe {
        matrixmultiply::dgemm(
            rows,
            len,
            rows,
            1.0,
            x.as_ptr(),
            len as isize,
            1,
            x.as_ptr(),
            1,
            len as isize,
            0.0,
            gram.as_mut_ptr(),
            rows as isize,
            1,
        );
    }
    (0..rows)
        .map(|i| {
            let gii = gram[i * rows + i];
            (0..rows)
                .filter(|&j| j != i)
                .map(|j| {
                    (gii + gram[j * rows + j] - 2.0 * gram[i * rows + j])
                        .max(0.0)
                        .sqrt()
                })
                .sum::<f64>() as f32
        })
        .collect()
}

impl Pruner for FpgmPruner {
    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        let path = &input.target.path;
        let (rows, len, values) = input.scaling.block_rows(input.weight, path)?;
        if len == 1 {
            return Err(CompressError::Algorithm {
                algorithm: "fpgm".into(),
                message: format!(
                    "'{path}' has a fine-grained granularity: FPGM ranks blocks (filters) by their distance to the others"
                ),
            });
        }
        let shape = input
            .scaling
            .shrunk_shape(input.weight.shape(), true, path)?;
        debug_assert_eq!(shape.iter().product::<usize>(), rows);
        Ok(Dense::new(shape, distance_sums(rows, len, &values)))
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "fpgm",
        kind: AlgorithmKind::Pruner,
        summary: "sum of distances to the other filters (geometric median); NNI FPGMPruner",
        config_keys: &[],
        build: |_| Ok(Algorithm::Pruner(Box::new(FpgmPruner))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v2.10 NNI oracle: filter i is the constant i + 1 over 5x5x5.
    fn constant_filters() -> (usize, usize, Vec<f32>) {
        let len = 125;
        (
            10,
            len,
            (0..10)
                .flat_map(|i| std::iter::repeat_n((i + 1) as f32, len))
                .collect(),
        )
    }

    #[test]
    fn distance_sums_match_the_direct_loop() {
        let (rows, len, values) = constant_filters();
        let direct: Vec<f32> = (0..rows)
            .map(|i| {
                (0..rows)
                    .map(|j| {
                        (0..len)
                            .map(|k| (values[j * len + k] - values[i * len + k]).powi(2))
                            .sum::<f32>()
                            .sqrt()
                    })
                    .sum()
            })
            .collect();
        let gram = distance_sums(rows, len, &values);
        for (a, b) in gram.iter().zip(&direct) {
            assert!((a - b).abs() <= 1e-4 * b.abs(), "{a} vs {b}");
        }
    }

    #[test]
    fn middle_filters_are_nearest_the_geometric_median() {
        // NNI v2.10 test: sparsity 0.2 masks filters 4 and 5; 0.6 masks filters 2..=7.
        let (rows, len, values) = constant_filters();
        let metric = Dense::new(vec![rows], distance_sums(rows, len, &values));
        let masked = |ratio| {
            compress_core::allocate::ratio_mask(&metric, ratio)
                .data()
                .iter()
                .enumerate()
                .filter(|(_, m)| **m == 0)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        assert_eq!(masked(0.2), [4, 5]);
        assert_eq!(masked(0.6), [2, 3, 4, 5, 6, 7]);
    }
}
