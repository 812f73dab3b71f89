//! # quant-bnn: binarized weights
//!
//! NNI's `BNNQuantizer` for weights (Courbariaux et al., 2016): `sign(w)` with 0 counted as
//! +1, straight-through gradient (`quant_dtype` is ignored). Registry name: `bnn`; no options.
#![warn(missing_docs)]

use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, QuantMethod, Quantizer};

/// The BNN quantizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct BnnQuantizer;

impl Quantizer for BnnQuantizer {
    fn method(&self) -> QuantMethod {
        QuantMethod::Bnn
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "bnn",
        kind: AlgorithmKind::Quantizer,
        summary: "binarized weights sign(w), straight-through; NNI BNNQuantizer",
        config_keys: &[],
        build: |_| Ok(Algorithm::Quantizer(Box::new(BnnQuantizer))),
    }
}
