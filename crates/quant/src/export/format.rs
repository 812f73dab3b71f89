//! The formats: Burn's quantized values ([`QuantBits`]), where scales live ([`QuantLevel`]),
//! a parameter's request ([`WeightQuant`]) and what happens to affine calibrations
//! ([`AffinePolicy`]).

use super::*;

/// The integer formats Burn can store (all symmetric: `q · scale`, no zero point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantBits {
    /// 8 bits, `[-127, 127]`: NNI's `int8`.
    Q8S,
    /// 8 bits, `[-128, 127]`.
    Q8F,
    /// 4 bits, `[-7, 7]`: NNI's `int4`.
    Q4S,
    /// 4 bits, `[-8, 7]`.
    Q4F,
    /// 2 bits, `[-1, 1]`: NNI's `int2`.
    Q2S,
    /// 2 bits, `[-2, 1]`.
    Q2F,
}

impl QuantBits {
    /// Burn's value type.
    pub fn value(self) -> QuantValue {
        match self {
            QuantBits::Q8S => QuantValue::Q8S,
            QuantBits::Q8F => QuantValue::Q8F,
            QuantBits::Q4S => QuantValue::Q4S,
            QuantBits::Q4F => QuantValue::Q4F,
            QuantBits::Q2S => QuantValue::Q2S,
            QuantBits::Q2F => QuantValue::Q2F,
        }
    }

    /// The integer range `(qmin, qmax)`.
    pub fn range(self) -> (f32, f32) {
        self.value().range()
    }

    /// Bits per value.
    pub fn bits(self) -> usize {
        self.value().size_bits()
    }

    /// The Burn format of an NNI `quant_dtype` (`int8`, `int4`, `int2`); `None` for the others
    /// (`uint<b>` and other widths have no Burn format).
    pub fn from_nni(dtype: &str) -> Option<Self> {
        match dtype {
            "int8" => Some(QuantBits::Q8S),
            "int4" => Some(QuantBits::Q4S),
            "int2" => Some(QuantBits::Q2S),
            _ => None,
        }
    }

    pub(super) fn from_value(value: QuantValue) -> Option<Self> {
        match value {
            QuantValue::Q8S => Some(QuantBits::Q8S),
            QuantValue::Q8F => Some(QuantBits::Q8F),
            QuantValue::Q4S => Some(QuantBits::Q4S),
            QuantValue::Q4F => Some(QuantBits::Q4F),
            QuantValue::Q2S => Some(QuantBits::Q2S),
            QuantValue::Q2F => Some(QuantBits::Q2F),
            _ => None,
        }
    }
}

/// Where the scales live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QuantLevel {
    /// One scale for the whole tensor.
    PerTensor,
    /// One scale per output channel, on the axis the layer's `LayerSpec` names (axis 1 for
    /// `Linear`'s `[in, out]` weight and `ConvTranspose*`, 0 for Conv and for biases); an error
    /// for a layer type without a spec.
    PerChannel,
    /// One scale per index of this axis (Burn layout).
    PerAxis(usize),
    /// One scale per block of these extents, aligned to the trailing dimensions (missing leading
    /// extents are 1). Each extent must be in `1..=255` and divide its dimension.
    PerBlock(Vec<usize>),
}

/// What to do with one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightQuant {
    /// The integer format.
    pub value: QuantBits,
    /// Where the scales live.
    pub level: QuantLevel,
    /// Calibrated scales (from fake-quant calibration), used as they are: one value for
    /// [`QuantLevel::PerTensor`], one per channel for [`QuantLevel::PerChannel`] /
    /// [`QuantLevel::PerAxis`] (NNI's keep-dim shape or flat), one per block (block-grid order)
    /// for [`QuantLevel::PerBlock`]. `None`: symmetric max-abs scales from the weights, as NNI's
    /// symmetric formula gives for the weight's own range.
    pub scale: Option<Dense<f32>>,
    /// Calibrated zero points. All zeros (or `None`) is symmetric; anything else is affine,
    /// which Burn cannot store (see [`AffinePolicy`]).
    pub zero_point: Option<Dense<f32>>,
}

impl WeightQuant {
    /// Max-abs scales at `level`.
    pub fn new(value: QuantBits, level: QuantLevel) -> Self {
        Self {
            value,
            level,
            scale: None,
            zero_point: None,
        }
    }

    /// Use calibrated scales.
    pub fn with_scale(mut self, scale: Dense<f32>) -> Self {
        self.scale = Some(scale);
        self
    }

    /// Attach calibrated zero points (an affine calibration when any is non-zero).
    pub fn with_zero_point(mut self, zero_point: Dense<f32>) -> Self {
        self.zero_point = Some(zero_point);
        self
    }
}

/// What to do with an affine calibration (a non-zero zero point), which Burn's symmetric-only
/// quantization cannot store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AffinePolicy {
    /// Refuse with [`QuantError::UnsupportedQuant`] naming the parameter.
    #[default]
    Error,
    /// Ignore the calibrated scale and zero point and quantize symmetrically with max-abs scales
    /// at the requested level. The weights then differ from NNI's fake-quantized ones.
    Requantize,
}
