//! [`Int8Conv2d`]: a calibrated `Conv2d` on the int8 GEMM (virtual im2col), optionally followed
//! by a BatchNorm and a ReLU folded into its float epilogue.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use compress_core::Dense;

use super::kernel::{ConvGeometry, ConvWeights, Epilogue, Grid, executor};
use super::{LayerQuant, WeightInts, fake_quant_ops, flex_input, flex_output};
use crate::{CalibrationConfig, QuantError, Result};

/// A `Conv2d` quantized as [`QuantSim`](crate::QuantSim) simulates it, run on an int8 GEMM on
/// flex (standard Burn ops elsewhere; see the [module docs](crate::deploy)). Any stride,
/// dilation, explicit or valid padding and group count.
///
/// [`with_batch_norm`](Self::with_batch_norm) and [`with_relu`](Self::with_relu) fold what
/// follows the conv into its float epilogue; the result is the same as running those layers
/// after it, up to float rounding.
pub struct Int8Conv2d {
    path: String,
    weights: ConvWeights,
    geometry: ConvGeometry,
    input: Grid,
    epilogue: Epilogue,
    /// The same conv with dequantized weights (the fallback), on the source layer's device.
    reference: Conv2d,
    batch_norm: Option<BatchNorm>,
}

impl Int8Conv2d {
    /// The layer at `path` of a calibrated model: its `weight` (per tensor or per output
    /// channel) and `_input_` (per tensor) entries are required; `_output_` and `bias` are used
    /// when present.
    ///
    /// # Errors
    /// [`QuantError::MissingCalibration`] naming the missing entry;
    /// [`QuantError::UnsupportedQuant`] for a grid the int8 path cannot run or `Same` padding
    /// (see the [module docs](crate::deploy)).
    pub fn new(layer: &Conv2d, path: &str, calibration: &CalibrationConfig) -> Result<Self> {
        let weight = Dense::from_tensor(layer.weight.val(), &format!("{path}.weight"))?;
        let [out_channels, in_g, kh, kw] = [
            weight.shape()[0],
            weight.shape()[1],
            weight.shape()[2],
            weight.shape()[3],
        ];
        let padding = match layer.padding {
            PaddingConfig2d::Valid => [0; 4],
            PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
            PaddingConfig2d::Same => {
                return Err(QuantError::UnsupportedQuant {
                    path: path.to_string(),
                    reason: "the int8 deploy path takes explicit or valid padding, not Same".into(),
                });
            }
        };
        let geometry = ConvGeometry {
            in_channels: in_g * layer.groups,
            out_channels,
            groups: layer.groups,
            kernel: [kh, kw],
            stride: layer.stride,
            dilation: layer.dilation,
            padding,
        };
        let ints = WeightInts::new(&weight, 0, calibration, path)?;
        let LayerQuant {
            input,
            bias,
            epilogue,
        } = LayerQuant::new(&ints, layer.bias.as_ref(), out_channels, calibration, path)?;
        let exec = executor();
        let weights = ConvWeights::new(
            &exec,
            &ints.q,
            &ints.zero_ints(),
            ints.grid().u8_offset(),
            geometry,
        );
        let device = layer.weight.val().device();
        let reference = Conv2d {
            weight: Param::from_tensor(ints.dequantized.to_tensor(&device)),
            bias: bias.map(|b| Param::from_tensor(b.to_tensor(&device))),
            stride: layer.stride,
            kernel_size: layer.kernel_size,
            dilation: layer.dilation,
            groups: layer.groups,
            padding: layer.padding.clone(),
        };
        Ok(Self {
            path: path.to_string(),
            weights,
            geometry,
            input,
            epilogue,
            reference,
            batch_norm: None,
        })
    }

    /// Fold the inference BatchNorm `bn` (running statistics) that follows the conv into the
    /// epilogue: per channel `y * k + (beta - mean * k)` with `k = gamma / sqrt(var + eps)`,
    /// after the conv's `_output_` quantization when it has one.
    ///
    /// # Errors
    /// [`QuantError::ShapeMismatch`] when `bn` does not have the conv's output channels.
    pub fn with_batch_norm(mut self, bn: &BatchNorm, bn_path: &str) -> Result<Self> {
        let values = |t: Tensor<1>, name: &str| -> Result<Vec<f32>> {
            Ok(Dense::from_tensor(t, &format!("{bn_path}.{name}"))?
                .data()
                .to_vec())
        };
        let gamma = values(bn.gamma.val(), "gamma")?;
        if gamma.len() != self.geometry.out_channels {
            return Err(QuantError::ShapeMismatch {
                path: format!("{bn_path}.gamma"),
                expected: vec![self.geometry.out_channels],
                found: vec![gamma.len()],
            });
        }
        let beta = values(bn.beta.val(), "beta")?;
        let mean = values(bn.running_mean.value(), "running_mean")?;
        let var = values(bn.running_var.value(), "running_var")?;
        let eps = bn.epsilon as f32;
        let k: Vec<f32> = gamma
            .iter()
            .zip(&var)
            .map(|(g, v)| g / (v + eps).sqrt())
            .collect();
        let shift: Vec<f32> = beta
            .iter()
            .zip(&mean)
            .zip(&k)
            .map(|((b, m), k)| b - m * k)
            .collect();
        let e = &mut self.epilogue;
        if e.output.is_some() {
            e.post = Some((k, shift));
        } else {
            for c in 0..k.len() {
                e.mul[c] *= k[c];
                e.add[c] = e.add[c] * k[c] + shift[c];
            }
        }
        // A clone would share the running statistics (and a later `to_device` would move them).
        self.batch_norm = Some(compress_core::mask::deep_copy(bn));
        Ok(self)
    }

    /// Apply a ReLU after everything else (fused into the epilogue).
    pub fn with_relu(mut self) -> Self {
        self.epilogue.relu = true;
        self
    }

    /// The layer's path in the source model.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The output: on the int8 GEMM for a float32 flex input, else
    /// [`forward_reference`](Self::forward_reference).
    ///
    /// # Shapes
    /// - input `[batch, in_channels, height, width]`
    /// - output `[batch, out_channels, height_out, width_out]`
    ///
    /// # Panics
    /// If the input's channels differ from the layer's or the kernel does not fit the padded
    /// input.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        assert_eq!(
            c, self.geometry.in_channels,
            "Int8Conv2d '{}': input channels {c} differ from the layer's {}",
            self.path, self.geometry.in_channels
        );
        let exec = executor();
        let Some(t) = flex_input(&x).filter(|_| !exec.may_saturate()) else {
            return self.forward_reference(x);
        };
        let values = t.as_slice::<f32>().expect("contiguous");
        match self
            .weights
            .forward(&exec, values, [n, h, w], &self.input, &self.epilogue)
        {
            Ok((bits, [oh, ow])) => flex_output(bits, [n, self.geometry.out_channels, oh, ow]),
            Err(e) => panic!(
                "Int8Conv2d '{}': the int8 GEMM failed on input {:?}: {e}",
                self.path,
                [n, c, h, w]
            ),
        }
    }

    /// The output with standard Burn ops on any device: the input fake-quantized, a `Conv2d`
    /// with the dequantized weights, the output fake-quantized when calibrated, then the folded
    /// BatchNorm and ReLU as Burn layers.
    ///
    /// # Shapes
    /// As [`forward`](Self::forward).
    pub fn forward_reference(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let layer = self.reference.clone().to_device(&device);
        let mut y = layer.forward(fake_quant_ops(x, &self.input));
        if let Some(g) = &self.epilogue.output {
            y = fake_quant_ops(y, g);
        }
        if let Some(bn) = &self.batch_norm {
            y = compress_core::mask::deep_copy(bn)
                .to_device(&device)
                .forward(y);
        }
        if self.epilogue.relu { relu(y) } else { y }
    }

    /// The input grid (shared-input checks of whole models).
    pub(crate) fn input_grid(&self) -> &Grid {
        &self.input
    }
}
