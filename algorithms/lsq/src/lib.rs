//! # quant-lsq: learned step size quantization
//!
//! * `lsq` (Esser et al., "Learned Step Size Quantization", ICLR 2020): the scale of every block
//!   is a parameter trained by the user's optimizer (zero point 0); forward
//!   `round(clamp(w / s, qmin, qmax)) * s`, the scale's gradient scaled by
//!   `1 / sqrt(qmax * numel)`, no gradient to `w` outside the range.
//! * `lsq-plus` (Bhalgat et al., "LSQ+", CVPRW 2020): a learnable scale and zero point.
//!
//! Initialisation (better than NNI's constant 0.01 for every scale): LSQ uses the paper's
//! `2 * mean|w| / sqrt(qmax)` per block; LSQ+ starts from the min/max affine range. No options.
#![warn(missing_docs)]

use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, QuantMethod, Quantizer};

/// The LSQ quantizer; `plus` selects LSQ+.
#[derive(Debug, Clone, Copy, Default)]
pub struct LsqQuantizer {
    /// LSQ+ (learnable zero point) instead of LSQ.
    pub plus: bool,
}

impl Quantizer for LsqQuantizer {
    fn method(&self) -> QuantMethod {
        if self.plus {
            QuantMethod::LsqPlus
        } else {
            QuantMethod::Lsq
        }
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "lsq",
        kind: AlgorithmKind::Quantizer,
        summary: "learned step size (scale trained, paper init 2*mean|w|/sqrt(qmax)); NNI LsqQuantizer",
        config_keys: &[],
        build: |_| Ok(Algorithm::Quantizer(Box::new(LsqQuantizer { plus: false }))),
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "lsq-plus",
        kind: AlgorithmKind::Quantizer,
        summary: "LSQ+ (scale and zero point trained, min/max affine init); NNI LsqPlusQuantizer",
        config_keys: &[],
        build: |_| Ok(Algorithm::Quantizer(Box::new(LsqQuantizer { plus: true }))),
    }
}
