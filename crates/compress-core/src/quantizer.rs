//! The quantizer contract: what a quantization method decides, and nothing else.
//!
//! A [`Quantizer`] is an opinionated trait, like [`Pruner`](crate::Pruner): an implementor
//! writes the formulas of one method (how scale and zero point start from a weight, the
//! fake-quant forward and its gradient, what happens to activations, the grid the weights are
//! exported on) and declares a few facts (which of its parameters train, which observer tracks
//! ranges, whether ranges follow training). It does **not** handle module traversal, config and
//! targets, granularity, observers, calibration files, reparameterization, the graph replay of
//! activations, training loops or export packing: compress-quant does all of that identically
//! for every quantizer (`compress_quant::WeightQuantization`, `QuantSim`, `quantize_weights`),
//! and its shared math (`fake_quant`, `qparams_from_range`, `fake_quant_blocks`, ...) is what an
//! implementor calls inside these methods.
//!
//! Tensors here carry no backend type, so the trait is object safe and a quantizer is shared as
//! an `Arc<dyn Quantizer>`. Weights reach [`Quantizer::fake_quant`] reshaped to rank 4 (trailing
//! dims of 1), so one method serves parameters of every rank.
use burn::tensor::Tensor;

use crate::granularity::Scaling;
use crate::{
    Dense, Result,
    config::{QuantDtype, QuantScheme},
};

/// Quantization parameters of one target, in the kept-dim shape of its granularity.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantParams {
    /// Scale per block.
    pub scale: Dense<f32>,
    /// Zero point per block.
    pub zero_point: Dense<f32>,
    /// Lower end of the range the parameters were computed from.
    pub tracked_min: Dense<f32>,
    /// Upper end of that range.
    pub tracked_max: Dense<f32>,
}

/// Which quantization parameters of a weight are trained by the user's optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Learnable {
    /// The scale trains (LSQ, LSQ+).
    pub scale: bool,
    /// The zero point trains (LSQ+).
    pub zero_point: bool,
}

impl Learnable {
    /// Whether anything trains (then the learned values are read back after training).
    pub fn any(self) -> bool {
        self.scale || self.zero_point
    }
}

/// How ranges are tracked from observed values (weights after an optimizer step, activations
/// on each forward).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RangeTracking {
    /// Running global min/max (NNI's PTQ observer).
    #[default]
    MinMax,
    /// Exponential moving average of each batch's min/max (NNI's QAT).
    Ema {
        /// Weight of the old range, in (0, 1).
        decay: f64,
    },
}

/// Everything a quantizer gets to initialise one weight target.
#[derive(Debug, Clone, Copy)]
pub struct QuantInit<'a> {
    /// Parameter path (`conv1.weight`), for error messages.
    pub path: &'a str,
    /// The parameter's value, Burn layout.
    pub weight: &'a Dense<f32>,
    /// The block scaling of its granularity (`shrink_with` reduces per block).
    pub scaling: &'a Scaling,
    /// The configured dtype (`int8` when unset).
    pub dtype: QuantDtype,
    /// The configured scheme (`None`: NNI's unset scheme, computed as symmetric).
    pub scheme: Option<QuantScheme>,
    /// Integer range of `dtype` (NNI's, e.g. `[-127, 127]` for `int8`).
    pub qmin: f32,
    /// Upper end of that range.
    pub qmax: f32,
    /// NNI's parameters from the weight's observed min/max with the configured scheme; their
    /// `tracked_min`/`tracked_max` are the observed range.
    pub observed: &'a QuantParams,
}

/// A weight's fake-quantization parameters as tensors: the kept-dim block shape padded with
/// trailing 1s to rank 4 (`compress_core::scores::block_expand` spreads them over the weight). They are
/// trainable parameters where [`Quantizer::learnable`] says so.
#[derive(Debug, Clone)]
pub struct FakeQuantGrid {
    /// Scale per block.
    pub scale: Tensor<4>,
    /// Zero point per block.
    pub zero_point: Tensor<4>,
    /// Lower end of the integer range.
    pub qmin: f32,
    /// Upper end of the integer range.
    pub qmax: f32,
}

/// Where an activation is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationSite {
    /// A layer's input (NNI's `_input_`).
    Input,
    /// A layer's output (NNI's `_output_`).
    Output,
}

/// Everything a quantizer gets to treat one activation.
#[derive(Debug, Clone)]
pub struct ActivationInput<'a> {
    /// Layer path.
    pub layer: &'a str,
    /// Input or output.
    pub site: ActivationSite,
    /// The configured dtype (`int8` when unset).
    pub dtype: QuantDtype,
    /// The configured scheme.
    pub scheme: Option<QuantScheme>,
    /// Integer range of `dtype`.
    pub qmin: f32,
    /// Upper end of that range.
    pub qmax: f32,
    /// The calibrated scale and zero point, `[1, channels or 1, 1]`, once the observer has
    /// computed them (`None` before).
    pub params: Option<(Tensor<3>, Tensor<3>)>,
}

/// Everything a quantizer gets to choose the export grid of one weight.
#[derive(Debug, Clone, Copy)]
pub struct ExportInput<'a> {
    /// Parameter path.
    pub path: &'a str,
    /// The calibrated dtype.
    pub dtype: QuantDtype,
    /// The calibrated scheme.
    pub scheme: Option<QuantScheme>,
    /// The calibrated (or learned) parameters.
    pub params: &'a QuantParams,
    /// Integer range of `dtype`.
    pub qmin: f32,
    /// Upper end of that range.
    pub qmax: f32,
}

/// The grid a weight is exported on: Burn's symmetric formats store `round(w / scale)` in the
/// signed integer range of `dtype` (`int8` -> Q8S, `int4` -> Q4S, `int2` -> Q2S). A non-zero
/// zero point is affine, which the exporter refuses or requantizes as its `AffinePolicy` says.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportGrid {
    /// The integer format.
    pub dtype: QuantDtype,
    /// Scale per block (kept-dim shape, or `[]` for one scale).
    pub scale: Dense<f32>,
    /// Zero point per block.
    pub zero_point: Dense<f32>,
}

/// A quantization method: its formulas and the facts the driver needs.
///
/// What each method does with the default bodies: ranges by running min/max, parameters from
/// that range with NNI's formulas, nothing trained, ranges frozen during training, quantized
/// from the first step, exported on the calibrated grid, no bias correction. An implementor
/// always writes [`name`](Self::name), [`fake_quant`](Self::fake_quant) (weights) and
/// [`quantize_activation`](Self::quantize_activation); compress-quant's `fake_quant_blocks` and
/// `fake_quant_activation` are the plain clamp-round for both.
///
/// ```
/// use burn::tensor::Tensor;
/// use compress_core::{quantizer::{ActivationInput, FakeQuantGrid}, Quantizer, Result};
///
/// /// Weights pass through unquantized (a do-nothing method, for the shape of the trait).
/// struct Identity;
///
/// impl Quantizer for Identity {
///     fn name(&self) -> &str {
///         "identity"
///     }
///     fn fake_quant(&self, weight: Tensor<4>, _: &FakeQuantGrid) -> Tensor<4> {
///         weight
///     }
///     fn quantize_activation(&self, x: Tensor<3>, _: &ActivationInput<'_>) -> Result<Tensor<3>> {
///         Ok(x)
///     }
/// }
/// assert!(!Identity.learnable().any());
/// ```
pub trait Quantizer: Send + Sync {
    /// The registry name (`ptq`), for messages.
    fn name(&self) -> &str;

    /// Initial parameters of a weight target. Default: the observed min/max parameters
    /// (PTQ, QAT).
    ///
    /// # Errors
    /// A granularity error from `Scaling`, or [`CompressError::Algorithm`](crate::CompressError)
    /// naming the target when the method cannot start from this weight.
    fn init(&self, input: &QuantInit<'_>) -> Result<QuantParams> {
        Ok(input.observed.clone())
    }

    /// The scheme the calibration records for a weight configured with `configured` (LSQ+ and
    /// DoReFa are affine whatever the config says). Default: as configured.
    fn scheme(&self, configured: Option<QuantScheme>) -> Option<QuantScheme> {
        configured
    }

    /// Which of a weight's parameters train. Default: none.
    fn learnable(&self) -> Learnable {
        Learnable::default()
    }

    /// The fake-quantized weight (rank 4, trailing dims 1) in the forward pass, with the
    /// method's gradient in the backward pass: to the weight (straight through, clipped, ...)
    /// and, for [`learnable`](Self::learnable) parameters, to `grid.scale` / `grid.zero_point`
    /// with whatever scaling the method prescribes (LSQ: `1 / sqrt(qmax * numel)`). Runs on
    /// every `Param::val()`, so it must not read tensors back to the host.
    fn fake_quant(&self, weight: Tensor<4>, grid: &FakeQuantGrid) -> Tensor<4>;

    /// An activation `[d0, channels, rest]` once calibrated (and while training): usually
    /// fake-quantized with `input.params` (returned unchanged while those are `None`); DoReFa
    /// clamps, BNN binarizes.
    ///
    /// # Errors
    /// When the value cannot be read (a range taken from the batch itself).
    fn quantize_activation(&self, x: Tensor<3>, input: &ActivationInput<'_>) -> Result<Tensor<3>>;

    /// Whether the method trains the model (QAT, LSQ, DoReFa, BNN); `false` (PTQ) skips the
    /// training a job asks for. Default: true.
    fn trains(&self) -> bool {
        true
    }

    /// The observer of weight ranges after optimizer steps and of activation ranges. Default:
    /// running min/max.
    fn range_tracking(&self) -> RangeTracking {
        RangeTracking::MinMax
    }

    /// Whether ranges follow training: weight parameters recomputed after every optimizer step
    /// and activation parameters on every training forward (QAT). Default: false (the
    /// calibrated values stay).
    fn tracks_ranges_in_training(&self) -> bool {
        false
    }

    /// Whether fake quantization is on after `steps` optimizer steps (QAT's
    /// `quant_start_step`). Default: always.
    fn active_at(&self, steps: usize) -> bool {
        let _ = steps;
        true
    }

    /// The grid a weight is exported on. Default: the calibrated dtype, scale and zero point.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`](crate::CompressError) when the method has no integer grid.
    fn export_grid(&self, input: &ExportInput<'_>) -> Result<ExportGrid> {
        Ok(ExportGrid {
            dtype: input.dtype,
            scale: input.params.scale.clone(),
            zero_point: input.params.zero_point.clone(),
        })
    }

    /// NNI `PtqQuantizer`'s `is_bias_correction`: after calibration, add each layer's mean
    /// output error (float minus fake-quantized weights, per output channel, over the
    /// calibration data) to its bias, then calibrate the activations again. Default: false.
    fn bias_correction(&self) -> bool {
        false
    }
}
