//! A quantizer with power-of-two scales, written against burn-compress's public API only: every
//! scale NNI's min/max formula gives is rounded to the nearest power of two in the log domain,
//! `scale = 2^round(log2(s))`, so dequantization is a bit shift on integer hardware. It is
//! found by name (`pow2`) as soon as this crate is linked, and runs through the same driver
//! (`burn_compress::quantize::quantize_classifier`) and export as the built-in quantizers.
//!
//! What it writes: the initialisation (symmetric min/max, then the power of two), the
//! fake-quant forward of weights and activations (the shared clamp-round with a
//! straight-through gradient, on power-of-two scales), and nothing else: observers, targets,
//! calibration files, the replay, training and export are burn-compress's.

use burn::tensor::{Tensor, TensorData};
use burn_compress::CompressError;
use burn_compress::core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, Quantizer, Result,
    config::QuantScheme,
    quantizer::{ActivationInput, FakeQuantGrid, QuantInit, QuantParams},
};
use burn_compress::quant::{
    FakeQuantGrad, fake_quant_activation, fake_quant_blocks, qparams_from_range,
};

/// Symmetric quantization on power-of-two scales.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pow2Quantizer;

/// The nearest power of two to `s` in the log domain (`s` itself when it is not positive and
/// finite). `powi` of 2 is exact, so the result is an exact power of two.
pub fn pow2(s: f32) -> f32 {
    if !(s.is_finite() && s > 0.0) {
        return s;
    }
    2f32.powi(s.log2().round() as i32)
}

impl Quantizer for Pow2Quantizer {
    fn name(&self) -> &str {
        "pow2"
    }

    fn init(&self, input: &QuantInit<'_>) -> Result<QuantParams> {
        let observed = input.observed.clone();
        let (scale, zero_point) = qparams_from_range(
            &observed.tracked_min,
            &observed.tracked_max,
            input.dtype,
            QuantScheme::Symmetric,
        );
        Ok(QuantParams {
            scale: scale.map(|&s| pow2(s)),
            zero_point,
            ..observed
        })
    }

    fn scheme(&self, _configured: Option<QuantScheme>) -> Option<QuantScheme> {
        Some(QuantScheme::Symmetric)
    }

    fn fake_quant(&self, weight: Tensor<4>, grid: &FakeQuantGrid) -> Tensor<4> {
        // The grid already holds powers of two (from `init`).
        fake_quant_blocks(weight, grid, FakeQuantGrad::Ste)
    }

    fn quantize_activation(&self, x: Tensor<3>, input: &ActivationInput<'_>) -> Result<Tensor<3>> {
        let Some((scale, zero_point)) = &input.params else {
            return Ok(x);
        };
        // The observer's scales, rounded to powers of two (a few values per layer).
        let dims = scale.dims();
        let values = scale
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| CompressError::Algorithm {
                algorithm: "pow2".into(),
                message: format!("cannot read the scale of '{}': {e:?}", input.layer),
            })?;
        let rounded: Vec<f32> = values.into_iter().map(pow2).collect();
        let scale = Tensor::from_data(TensorData::new(rounded, dims), &x.device());
        let input = ActivationInput {
            params: Some((scale, zero_point.clone())),
            ..input.clone()
        };
        Ok(fake_quant_activation(x, &input, FakeQuantGrad::Ste))
    }

    /// Post-training, like PTQ: a job's training is skipped.
    fn trains(&self) -> bool {
        false
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "pow2",
        kind: AlgorithmKind::Quantizer,
        summary: "symmetric min/max with power-of-two scales (example crate)",
        config_keys: &[],
        build: |_| Ok(Algorithm::Quantizer(Box::new(Pow2Quantizer))),
    }
}

#[cfg(test)]
mod tests;
