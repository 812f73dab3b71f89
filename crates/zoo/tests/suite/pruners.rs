//! Norm pruners for driving core's pruning on zoo models (the real ones live in the algorithm
//! crates, which depend on core and so cannot be used here).

use compress_core::{Dense, MetricInput, Pruner, Result};

/// The L1 norm of each block.
pub struct L1;
impl Pruner for L1 {
    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        input.scaling.shrink_with(
            input.weight,
            true,
            &input.target.path,
            0.0f32,
            |a, x| a + x.abs(),
            |a, _| a,
        )
    }
}

/// The L2 norm of each block.
pub struct L2;
impl Pruner for L2 {
    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        input.scaling.shrink_with(
            input.weight,
            true,
            &input.target.path,
            0.0f32,
            |a, x| a + x * x,
            |a, _| a.sqrt(),
        )
    }
}
