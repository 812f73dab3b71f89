//! [`Int8Linear`]: a calibrated `Linear` on the int8 GEMM.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

use super::kernel::{Epilogue, Grid, LinearWeights, executor};
use super::{LayerQuant, WeightInts, fake_quant_ops, flex_input, flex_output};
use crate::{CalibrationConfig, Result};
use compress_core::Dense;

/// A `Linear` quantized as [`QuantSim`](crate::QuantSim) simulates it, run on an int8 GEMM on
/// flex (standard Burn ops elsewhere; see the [module docs](crate::deploy)).
pub struct Int8Linear {
    path: String,
    weights: LinearWeights,
    input: Grid,
    epilogue: Epilogue,
    output: Option<Grid>,
    /// The same layer with dequantized weights (the fallback), on the source layer's device.
    reference: Linear,
    in_features: usize,
    out_features: usize,
}

impl Int8Linear {
    /// The layer at `path` of a calibrated model: its `weight` (per tensor or per output
    /// channel) and `_input_` (per tensor) entries are required; `_output_` and `bias` are used
    /// when present.
    ///
    /// # Errors
    /// [`QuantError::MissingCalibration`](crate::QuantError::MissingCalibration) naming the missing entry;
    /// [`QuantError::UnsupportedQuant`](crate::QuantError::UnsupportedQuant) for a grid the int8 path cannot run (see the
    /// [module docs](crate::deploy)).
    pub fn new(layer: &Linear, path: &str, calibration: &CalibrationConfig) -> Result<Self> {
        let weight = Dense::from_tensor(layer.weight.val(), &format!("{path}.weight"))?;
        let [in_features, out_features] = [weight.shape()[0], weight.shape()[1]];
        let ints = WeightInts::new(&weight, 1, calibration, path)?;
        let LayerQuant {
            input,
            bias,
            epilogue,
        } = LayerQuant::new(&ints, layer.bias.as_ref(), out_features, calibration, path)?;
        let exec = executor();
        let weights = LinearWeights::new(
            &exec,
            &ints.q,
            &ints.zero_ints(),
            ints.grid().i8_offset(),
            in_features,
            out_features,
        );
        let device = layer.weight.val().device();
        let reference = Linear {
            weight: Param::from_tensor(ints.dequantized.to_tensor(&device)),
            bias: bias.map(|b| Param::from_tensor(b.to_tensor(&device))),
        };
        Ok(Self {
            path: path.to_string(),
            weights,
            input,
            output: epilogue.output,
            epilogue,
            reference,
            in_features,
            out_features,
        })
    }

    /// The layer's path in the source model.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The output: on the int8 GEMM for a float32 flex input, else
    /// [`forward_reference`](Self::forward_reference).
    ///
    /// # Shapes
    /// - input `[..., in_features]`
    /// - output `[..., out_features]`
    ///
    /// # Panics
    /// If the input's last dimension is not `in_features`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        assert_eq!(
            dims[D - 1],
            self.in_features,
            "Int8Linear '{}': input features {} differ from the layer's {}",
            self.path,
            dims[D - 1],
            self.in_features
        );
        let exec = executor();
        let Some(t) = flex_input(&x).filter(|_| !exec.may_saturate()) else {
            return self.forward_reference(x);
        };
        let values = t.as_slice::<f32>().expect("contiguous");
        let rows = values.len() / self.in_features;
        match self
            .weights
            .forward(&exec, values, rows, &self.input, &self.epilogue)
        {
            Ok(bits) => {
                let mut out = dims;
                out[D - 1] = self.out_features;
                flex_output(bits, out)
            }
            // Shapes were checked above; a GEMM refusal is a bug, shown with its cause.
            Err(e) => panic!("Int8Linear '{}': the int8 GEMM failed: {e}", self.path),
        }
    }

    /// The output with standard Burn ops on any device: the input fake-quantized, a `Linear`
    /// with the dequantized weights, the output fake-quantized when calibrated.
    ///
    /// # Shapes
    /// As [`forward`](Self::forward).
    pub fn forward_reference<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let device = x.device();
        let layer = self.reference.clone().to_device(&device);
        let y = layer.forward(fake_quant_ops(x, &self.input));
        match &self.output {
            Some(g) => fake_quant_ops(y, g),
            None => y,
        }
    }
}
