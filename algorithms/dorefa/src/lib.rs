//! # quant-dorefa: DoReFa quantization
//!
//! NNI's `DoReFaQuantizer` (Zhou et al., "DoReFa-Net", 2016):
//!
//! * weights: `w' = tanh(w) / (2 max|tanh(w)|) + 0.5` is quantized on the fixed grid of
//!   `[0, 1]` with `L = qmax - qmin` steps of the dtype's NNI range (`int2` = [-1, 1]: 2 steps;
//!   `uint2`: 3) and mapped back as `2 q - 1`; straight-through gradient. Exported on the
//!   symmetric grid of step `2 / L` (the values `2q/L - 1`).
//! * inputs: fake-quantized with the current batch's range (affine unless the config says
//!   otherwise); outputs: clamped to `[0, 1]` and quantized on that fixed range.
//!
//! Registry name: `dorefa`; no options.
#![warn(missing_docs)]

use burn::tensor::{Tensor, TensorData};
use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, Dense, Quantizer, Result,
    config::QuantScheme,
    quantizer::{
        ActivationInput, ActivationSite, ExportGrid, ExportInput, FakeQuantGrid, QuantInit,
        QuantParams,
    },
};
use compress_quant::{FakeQuantGrad, fake_quant, qparams_from_range, straight_through};

/// The DoReFa quantizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct DorefaQuantizer;

/// Steps of the `[0, 1]` grid.
fn levels(qmin: f32, qmax: f32) -> f32 {
    (qmax - qmin).max(1.0)
}

impl Quantizer for DorefaQuantizer {
    fn name(&self) -> &str {
        "dorefa"
    }

    /// The fixed `[0, 1]` grid: scale `1 / L`, zero point 0.
    fn init(&self, input: &QuantInit<'_>) -> Result<QuantParams> {
        let observed = input.observed.clone();
        let step = 1.0 / levels(input.qmin, input.qmax);
        Ok(QuantParams {
            scale: observed.scale.map(|_| step),
            zero_point: observed.zero_point.map(|_| 0.0),
            ..observed
        })
    }

    fn scheme(&self, _configured: Option<QuantScheme>) -> Option<QuantScheme> {
        Some(QuantScheme::Affine)
    }

    fn fake_quant(&self, weight: Tensor<4>, grid: &FakeQuantGrid) -> Tensor<4> {
        let levels = levels(grid.qmin, grid.qmax);
        let t = weight.tanh();
        let max = t.clone().abs().max().detach().clamp_min(f32::EPSILON);
        let unit = t / max.mul_scalar(2.0).unsqueeze() + 0.5;
        let q = straight_through(
            unit.clone().mul_scalar(levels).round().div_scalar(levels),
            unit,
        );
        q.mul_scalar(2.0) - 1.0
    }

    fn quantize_activation(&self, x: Tensor<3>, input: &ActivationInput<'_>) -> Result<Tensor<3>> {
        let device = x.device();
        let (qmin, qmax) = (input.qmin, input.qmax);
        let scalar = |v: f32| Tensor::<3>::from_data(TensorData::new(vec![v], [1, 1, 1]), &device);
        match input.site {
            ActivationSite::Input => {
                let flat = x.clone().detach().reshape([1, -1]);
                let range = Tensor::cat(vec![flat.clone().min_dim(1), flat.max_dim(1)], 1);
                let range = Dense::from_tensor(range, input.layer)?;
                let (mn, mx) = (
                    Dense::new(vec![1], vec![range.data()[0]]),
                    Dense::new(vec![1], vec![range.data()[1]]),
                );
                let scheme = input.scheme.unwrap_or(QuantScheme::Affine);
                let (scale, zp) = qparams_from_range(&mn, &mx, input.dtype, scheme);
                Ok(fake_quant(
                    x,
                    scalar(scale.data()[0]),
                    scalar(zp.data()[0]),
                    qmin,
                    qmax,
                    FakeQuantGrad::Ste,
                ))
            }
            ActivationSite::Output => Ok(fake_quant(
                x.clamp(0.0, 1.0),
                scalar(1.0 / levels(qmin, qmax)),
                scalar(qmin),
                qmin,
                qmax,
                FakeQuantGrad::Ste,
            )),
        }
    }

    /// `2q/L - 1` for `q` in `0..=L`: a symmetric grid of step `2 / L`, one scale.
    fn export_grid(&self, input: &ExportInput<'_>) -> Result<ExportGrid> {
        Ok(ExportGrid {
            dtype: input.dtype,
            scale: Dense::new(vec![], vec![2.0 / levels(input.qmin, input.qmax)]),
            zero_point: Dense::new(vec![], vec![0.0]),
        })
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
