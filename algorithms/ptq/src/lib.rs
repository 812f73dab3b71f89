//! # quant-ptq: post-training quantization
//!
//! NNI's `PtqQuantizer`: every target's range is observed (running min/max per block), scale and
//! zero point are computed once with NNI's formulas (`quant_dtype`, `quant_scheme`,
//! `granularity` from the config), then the targets are fake-quantized with a straight-through
//! gradient. Registry name: `ptq`; no options.
//!
//! Driven by [`compress_core::WeightQuantization`]: `calibrate`, then `simulate`.
#![warn(missing_docs)]

use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, QuantMethod, Quantizer};

/// The post-training quantizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct PtqQuantizer;

impl Quantizer for PtqQuantizer {
    fn method(&self) -> QuantMethod {
        QuantMethod::MinMax
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "ptq",
        kind: AlgorithmKind::Quantizer,
        summary: "post-training min/max calibration, clamp-round; NNI PtqQuantizer",
        config_keys: &[],
        build: |_| Ok(Algorithm::Quantizer(Box::new(PtqQuantizer))),
    }
}
