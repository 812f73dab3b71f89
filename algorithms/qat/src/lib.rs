//! # quant-qat: quantization-aware training
//!
//! NNI's `QATQuantizer` (Jacob et al., CVPR 2018): from `quant_start_step` on, every target's
//! range is an exponential moving average (decay 0.99) of its per-block min/max, refreshed after
//! every optimizer step, and the targets are fake-quantized with QAT's clipped gradient (zero
//! outside the range). Registry name: `qat`.
//!
//! | key | meaning |
//! | --- | --- |
//! | `quant_start_step` | optimizer steps before fake quantization starts (integer >= 0, default 0) |
//! | `decay` | EMA decay in (0, 1) (default 0.99) |
//!
//! Its formulas: NNI's `qat_clamp_round` (value as `clamp_round`, gradient zero outside the
//! range) on weights and activations, ranges tracked by an EMA after every optimizer step
//! (weights) and on every training forward (activations) once `quant_start_step` steps are
//! done. Train with `compress_quant::QuantSim` as the hook.
#![warn(missing_docs)]

use burn::tensor::Tensor;
use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, Quantizer, Result,
    quantizer::{ActivationInput, FakeQuantGrid, RangeTracking},
    registry::AlgorithmOptions,
};
use compress_quant::{FakeQuantGrad, fake_quant_activation, fake_quant_blocks};

/// The QAT quantizer.
#[derive(Debug, Clone, Copy)]
pub struct QatQuantizer {
    /// EMA decay.
    pub decay: f64,
    /// Steps before fake quantization starts.
    pub quant_start_step: usize,
}

impl Default for QatQuantizer {
    /// NNI's defaults: decay 0.99, quantized from the first step.
    fn default() -> Self {
        Self {
            decay: 0.99,
            quant_start_step: 0,
        }
    }
}

impl Quantizer for QatQuantizer {
    fn name(&self) -> &str {
        "qat"
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
        steps >= self.quant_start_step
    }
}

fn build(options: &compress_core::toml::Table) -> Result<Algorithm> {
    let o = AlgorithmOptions::new("qat", options);
    Ok(Algorithm::Quantizer(Box::new(QatQuantizer {
        decay: o.f64("decay", 0.99, |d| d > 0.0 && d < 1.0, "a number in (0, 1)")?,
        quant_start_step: o.usize("quant_start_step", 0, 0)?,
    })))
}

inventory::submit! {
    AlgorithmEntry {
        name: "qat",
        kind: AlgorithmKind::Quantizer,
        summary: "quantization-aware training, EMA ranges, clipped STE; NNI QATQuantizer",
        config_keys: &["quant_start_step", "decay"],
        build,
    }
}
