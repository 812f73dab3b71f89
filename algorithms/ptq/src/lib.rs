//! # quant-ptq: post-training quantization
//!
//! NNI's `PtqQuantizer`: every target's range is observed (running min/max per block), scale and
//! zero point are computed once with NNI's formulas (`quant_dtype`, `quant_scheme`,
//! `granularity` from the config), then the targets are fake-quantized with a straight-through
//! gradient. Registry name: `ptq`.
//!
//! | key | meaning |
//! | --- | --- |
//! | `is_bias_correction` | NNI's bias correction: add each layer's mean output error (float minus quantized weights, per output channel, over the calibration data) to its bias, then re-calibrate (default false) |
//!
//! Its formulas: parameters from the observed range as NNI computes them (the trait's default
//! [`Quantizer::init`]), NNI's `clamp_round` with a straight-through gradient on weights and
//! activations ([`compress_quant::fake_quant_blocks`], [`compress_quant::fake_quant_activation`]),
//! no training. Driven by `compress_quant::QuantSim`: `calibrate`, then `simulate`.
#![warn(missing_docs)]

use burn::tensor::Tensor;
use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Quantizer, Result,
    quantizer::{ActivationInput, FakeQuantGrid},
};
use compress_quant::{FakeQuantGrad, fake_quant_activation, fake_quant_blocks};

/// The post-training quantizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct PtqQuantizer {
    /// NNI's `is_bias_correction`.
    pub bias_correction: bool,
}

impl Quantizer for PtqQuantizer {
    fn name(&self) -> &str {
        "ptq"
    }

    fn fake_quant(&self, weight: Tensor<4>, grid: &FakeQuantGrid) -> Tensor<4> {
        fake_quant_blocks(weight, grid, FakeQuantGrad::Ste)
    }

    fn quantize_activation(&self, x: Tensor<3>, input: &ActivationInput<'_>) -> Result<Tensor<3>> {
        Ok(fake_quant_activation(x, input, FakeQuantGrad::Ste))
    }

    /// Post-training: a job's training is skipped.
    fn trains(&self) -> bool {
        false
    }

    fn bias_correction(&self) -> bool {
        self.bias_correction
    }
}

fn build(options: &compress_core::toml::Table) -> Result<Algorithm> {
    let bias_correction = match options.get("is_bias_correction") {
        None => false,
        Some(v) => v.as_bool().ok_or_else(|| CompressError::Algorithm {
            algorithm: "ptq".into(),
            message: format!("'is_bias_correction' must be true or false, found {v}"),
        })?,
    };
    Ok(Algorithm::Quantizer(Box::new(PtqQuantizer {
        bias_correction,
    })))
}

inventory::submit! {
    AlgorithmEntry {
        name: "ptq",
        kind: AlgorithmKind::Quantizer,
        summary: "post-training min/max calibration, clamp-round; NNI PtqQuantizer",
        config_keys: &["is_bias_correction"],
        build,
    }
}
