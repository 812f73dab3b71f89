//! Norm pruners for driving core's pruning on zoo models (the real ones live in the algorithm
//! crates, which depend on core and so cannot be used here).

use compress_core::{Dense, MetricInput, Pruner, Result};

/// A norm of each block: `add` folds the block's elements into an accumulator starting at 0,
/// `finish` turns the sum into the norm.
fn block_norm(
    input: &MetricInput<'_>,
    add: fn(f32, f32) -> f32,
    finish: fn(f32) -> f32,
) -> Result<Dense<f32>> {
    input.scaling.shrink_with(
        input.weight,
        true,
        &input.target.path,
        0.0f32,
        add,
        |a, _| finish(a),
    )
}

/// The L1 norm of each block.
pub struct L1;
impl Pruner for L1 {
    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        block_norm(input, |a, x| a + x.abs(), |a| a)
    }
}

/// The L2 norm of each block.
pub struct L2;
impl Pruner for L2 {
    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        block_norm(input, |a, x| a + x * x, f32::sqrt)
    }
}
