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
//! Train with `compress_quant::WeightQuantization` as the hook.
#![warn(missing_docs)]

use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, AlgorithmOptions, QuantMethod, Quantizer, Result,
};

/// The QAT quantizer.
#[derive(Debug, Clone, Copy)]
pub struct QatQuantizer {
    /// EMA decay.
    pub decay: f64,
    /// Steps before fake quantization starts.
    pub quant_start_step: usize,
}

impl Quantizer for QatQuantizer {
    fn method(&self) -> QuantMethod {
        QuantMethod::Ema {
            decay: self.decay,
            quant_start_step: self.quant_start_step,
        }
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
