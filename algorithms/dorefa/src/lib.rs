//! # quant-dorefa: DoReFa weight quantization
//!
//! NNI's `DoReFaQuantizer` for weights (Zhou et al., 2016): `w' = tanh(w) / (2 max|tanh(w)|) +
//! 0.5` is quantized on the fixed grid of `[0, 1]` with `qmax - qmin` steps of the dtype's NNI
//! range (`int2` = [-1, 1]: 2 steps; `uint2`: 3) and mapped back as `2 q - 1`; straight-through
//! gradient. Registry name: `dorefa`; no options.
#![warn(missing_docs)]

use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, QuantMethod, Quantizer};

/// The DoReFa quantizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct DorefaQuantizer;

impl Quantizer for DorefaQuantizer {
    fn method(&self) -> QuantMethod {
        QuantMethod::Dorefa
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "dorefa",
        kind: AlgorithmKind::Quantizer,
        summary: "DoReFa weights: tanh-normalised, fixed [0, 1] grid; NNI DoReFaQuantizer",
        config_keys: &[],
        build: |_| Ok(Algorithm::Quantizer(Box::new(DorefaQuantizer))),
    }
}
