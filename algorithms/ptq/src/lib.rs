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
//! Driven by `compress_quant::WeightQuantization`: `calibrate`, then `simulate`.
#![warn(missing_docs)]

use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, QuantMethod, Quantizer, Result,
};

/// The post-training quantizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct PtqQuantizer {
    /// NNI's `is_bias_correction`.
    pub bias_correction: bool,
}

impl Quantizer for PtqQuantizer {
    fn method(&self) -> QuantMethod {
        QuantMethod::MinMax
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
