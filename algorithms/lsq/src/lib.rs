//! # quant-lsq: learned step size quantization
//!
//! * `lsq` (Esser et al., "Learned Step Size Quantization", ICLR 2020): the scale of every block
//!   is a parameter trained by the user's optimizer (zero point 0); forward
//!   `round(clamp(w / s, qmin, qmax)) * s`, the scale's gradient scaled by
//!   `g = 1 / sqrt(qmax * numel)`, no gradient to `w` outside the range.
//! * `lsq-plus` (Bhalgat et al., "LSQ+", CVPRW 2020): a learnable scale and zero point,
//!   forward `(round(clamp(w / s + z, qmin, qmax)) - z) * s`, both gradients scaled by `g`.
//!
//! Initialisation (better than NNI's constant 0.01 for every scale): LSQ uses the paper's
//! `2 * mean|w| / sqrt(qmax)` per block; LSQ+ starts from the min/max affine range. Activations
//! are fake-quantized with their calibrated (not learned) parameters, straight through. No
//! options.
#![warn(missing_docs)]

use burn::tensor::Tensor;
use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, Quantizer, Result,
    config::QuantScheme,
    quantizer::{ActivationInput, FakeQuantGrid, Learnable, QuantInit, QuantParams},
    scores::block_expand,
};
use compress_quant::{FakeQuantGrad, fake_quant_activation, qparams_from_range, straight_through};

/// The LSQ quantizer; `plus` selects LSQ+.
#[derive(Debug, Clone, Copy, Default)]
pub struct LsqQuantizer {
    /// LSQ+ (learnable zero point) instead of LSQ.
    pub plus: bool,
}

/// LSQ's gradient scale `1 / sqrt(qmax * numel)`.
fn gradient_scale(qmax: f32, numel: usize) -> f64 {
    1.0 / (qmax.max(1.0) as f64 * numel as f64).sqrt()
}

impl Quantizer for LsqQuantizer {
    fn name(&self) -> &str {
        if self.plus { "lsq-plus" } else { "lsq" }
    }

    fn init(&self, input: &QuantInit<'_>) -> Result<QuantParams> {
        let observed = input.observed.clone();
        if self.plus {
            let (scale, zero_point) = qparams_from_range(
                &observed.tracked_min,
                &observed.tracked_max,
                input.dtype,
                QuantScheme::Affine,
            );
            return Ok(QuantParams {
                scale,
                zero_point,
                ..observed
            });
        }
        let mean_abs = input.scaling.shrink_with(
            input.weight,
            true,
            input.path,
            0.0f64,
            |a, x| a + x.abs() as f64,
            |a, n| (a / n.max(1) as f64) as f32,
        )?;
        let qmax = input.qmax;
        let scale = mean_abs.map(|&m| (2.0 * m / qmax.max(1.0).sqrt()).max(f32::EPSILON));
        Ok(QuantParams {
            zero_point: scale.map(|_| 0.0),
            scale,
            ..observed
        })
    }

    fn scheme(&self, _configured: Option<QuantScheme>) -> Option<QuantScheme> {
        Some(if self.plus {
            QuantScheme::Affine
        } else {
            QuantScheme::Symmetric
        })
    }

    fn learnable(&self) -> Learnable {
        Learnable {
            scale: true,
            zero_point: self.plus,
        }
    }

    fn fake_quant(&self, weight: Tensor<4>, grid: &FakeQuantGrid) -> Tensor<4> {
        let dims = weight.dims();
        let g = gradient_scale(grid.qmax, dims.iter().product());
        let (qmin, qmax) = (grid.qmin, grid.qmax);
        // Value s, gradient g * ds (the paper's gradient scaling).
        let scale = grid.scale.clone();
        let scale = block_expand(straight_through(scale.clone(), scale.mul_scalar(g)), dims);
        let v = weight / scale.clone();
        let v = if self.plus {
            let zp = grid.zero_point.clone();
            let zp = block_expand(straight_through(zp.clone(), zp.mul_scalar(g)), dims);
            let shifted = (v + zp.clone()).clamp(qmin, qmax);
            straight_through(shifted.clone().round(), shifted) - zp
        } else {
            let clamped = v.clamp(qmin, qmax);
            straight_through(clamped.clone().round(), clamped)
        };
        v * scale
    }

    fn quantize_activation(&self, x: Tensor<3>, input: &ActivationInput<'_>) -> Result<Tensor<3>> {
        Ok(fake_quant_activation(x, input, FakeQuantGrad::Ste))
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
