//! # quant-bnn: binarized weights and activations
//!
//! NNI's `BNNQuantizer` (Courbariaux et al., "Binarized Neural Networks", 2016): `sign(x)` with
//! 0 counted as +1 and a straight-through gradient, on weights and activations (on an output
//! the gradient is zeroed where `|x| > 1`); `quant_dtype` is ignored. Weights export as Burn's
//! Q2S (±1 on a scale of 1). Registry name: `bnn`; no options.
#![warn(missing_docs)]

use burn::tensor::Tensor;
use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, Dense, Quantizer, Result,
    config::{QuantDtype, QuantScheme},
    quantizer::{
        ActivationInput, ActivationSite, ExportGrid, ExportInput, FakeQuantGrid, QuantInit,
        QuantParams,
    },
};
use compress_quant::straight_through;

/// The BNN quantizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct BnnQuantizer;

/// `sign(x)`, 0 counting as +1.
fn sign<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.greater_equal_elem(0.0).float().mul_scalar(2.0) - 1.0
}

impl Quantizer for BnnQuantizer {
    fn name(&self) -> &str {
        "bnn"
    }

    /// Scale 1, zero point 0.
    fn init(&self, input: &QuantInit<'_>) -> Result<QuantParams> {
        let observed = input.observed.clone();
        Ok(QuantParams {
            scale: observed.scale.map(|_| 1.0),
            zero_point: observed.zero_point.map(|_| 0.0),
            ..observed
        })
    }

    fn scheme(&self, _configured: Option<QuantScheme>) -> Option<QuantScheme> {
        Some(QuantScheme::Symmetric)
    }

    fn fake_quant(&self, weight: Tensor<4>, _grid: &FakeQuantGrid) -> Tensor<4> {
        straight_through(sign(weight.clone()), weight)
    }

    fn quantize_activation(&self, x: Tensor<3>, input: &ActivationInput<'_>) -> Result<Tensor<3>> {
        let binary = sign(x.clone());
        if !x.is_tracked() {
            return Ok(binary);
        }
        let pass = match input.site {
            ActivationSite::Input => x.clone(),
            ActivationSite::Output => {
                x.clone() * x.clone().detach().abs().lower_equal_elem(1.0).float()
            }
        };
        Ok(binary.detach() + (pass.clone() - pass.detach()))
    }

    /// ±1 on a scale of 1: Burn's Q2S.
    fn export_grid(&self, _input: &ExportInput<'_>) -> Result<ExportGrid> {
        Ok(ExportGrid {
            dtype: QuantDtype {
                signed: true,
                bits: 2,
            },
            scale: Dense::new(vec![], vec![1.0]),
            zero_point: Dense::new(vec![], vec![0.0]),
        })
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
