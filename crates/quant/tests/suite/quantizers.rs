//! Minimal quantizers for driving compress-quant's machinery in its own tests. The real
//! methods live in the quantizer crates (which depend on compress-quant, so they cannot be
//! dev-dependencies here without a cycle); their own behaviour is tested through the facade
//! (`crates/burn-compress/tests/suite/quantizers.rs`). These two are the plain NNI formulas,
//! written with compress-quant's shared helpers exactly as `quant-ptq` and `quant-qat` are.

use std::sync::Arc;

use burn::tensor::Tensor;
use compress_core::{
    Quantizer, Result, quantizer::ActivationInput, quantizer::FakeQuantGrid,
    quantizer::RangeTracking,
};
use compress_quant::{FakeQuantGrad, fake_quant_activation, fake_quant_blocks};

/// NNI's `PtqQuantizer`: observed min/max, clamp-round with a straight-through gradient.
pub struct Ptq;

impl Quantizer for Ptq {
    fn name(&self) -> &str {
        "test-ptq"
    }
    fn fake_quant(&self, weight: Tensor<4>, grid: &FakeQuantGrid) -> Tensor<4> {
        fake_quant_blocks(weight, grid, FakeQuantGrad::Ste)
    }
    fn quantize_activation(&self, x: Tensor<3>, input: &ActivationInput<'_>) -> Result<Tensor<3>> {
        Ok(fake_quant_activation(x, input, FakeQuantGrad::Ste))
    }
    fn trains(&self) -> bool {
        false
    }
}

/// NNI's `QATQuantizer`: EMA ranges after every step from `start` on, clipped gradient.
pub struct Qat {
    pub decay: f64,
    pub start: usize,
}

impl Quantizer for Qat {
    fn name(&self) -> &str {
        "test-qat"
    }
    fn fake_quant(&self, weight: Tensor<4>, grid: &FakeQuantGrid) -> Tensor<4> {
        fake_quant_blocks(weight, grid, FakeQuantGrad::Clipped)
    }
    fn quantize_activation(&self, x: Tensor<3>, input: &ActivationInput<'_>) -> Result<Tensor<3>> {
        Ok(fake_quant_activation(x, input, FakeQuantGrad::Clipped))
    }
    fn range_tracking(&self) -> RangeTracking {
        RangeTracking::Ema { decay: self.decay }
    }
    fn tracks_ranges_in_training(&self) -> bool {
        true
    }
    fn active_at(&self, steps: usize) -> bool {
        steps >= self.start
    }
}

/// A shared [`Ptq`].
pub fn ptq() -> Arc<dyn Quantizer> {
    Arc::new(Ptq)
}
