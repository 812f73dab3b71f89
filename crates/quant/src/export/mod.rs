//! Real quantized export: float parameters become Burn's native quantized tensors (`QFloat`), so
//! a saved model is physically smaller, loads back into a fresh template, and runs.
//!
//! # What maps onto Burn, and what does not
//!
//! Burn 0.22 quantization (`burn::tensor::quantization`) is **symmetric only**: a value is
//! `q · scale` with `q` an integer of [`QuantBits`] and no zero point. Scales live at a
//! per-tensor level or a per-block level, where a block is a rectangle of the tensor with extents
//! of at most 255 (`BlockSize` stores `u8`s) that must tile the tensor exactly on the CPU backend
//! (burn-flex asserts it). This module maps NNI's calibration onto that:
//!
//! - **NNI `int8` symmetric = Burn [`QuantBits::Q8S`]** (both use `[-127, 127]`): pass NNI's
//!   per-tensor scale as [`WeightQuant::scale`] and the dequantized weights equal NNI's
//!   fake-quantized weights bit for bit (`round_half_even(clamp(x / s)) · s` is computed here on
//!   the host, exactly as torch does, not by Burn's `x · (1/s)` with half-away rounding).
//!   `int4` / `int2` are [`QuantBits::Q4S`] / [`QuantBits::Q2S`].
//! - **Per output channel** (NNI `out_channel`): Burn has no per-channel level, but a block of
//!   extent 1 along the channel axis and the whole extent elsewhere is one. Where an extent
//!   exceeds 255 the block is cut to the largest divisor of that extent that fits, and the
//!   channel's scale is repeated in each of its blocks: same values, a few more stored scales.
//!   [`QuantLevel::PerChannel`] takes the output axis from the layer's `LayerSpec` (Burn's
//!   Linear weight is `[in, out]`: axis 1; Conv: axis 0; a user-registered spec is honoured);
//!   [`QuantLevel::PerAxis`] names the axis.
//! - **Affine** (a non-zero zero point) has no Burn equivalent: [`AffinePolicy::Error`] (the
//!   default) refuses it with [`QuantError::UnsupportedQuant`] naming the parameter;
//!   [`AffinePolicy::Requantize`] drops the calibrated scale and zero point and re-derives
//!   symmetric max-abs scales at the requested level (the result then differs from NNI's
//!   fake-quantized weights).
//!
//! # Storage
//!
//! [`save_quantized`] writes Burn's burnpack with `QFloat` entries (safetensors has no quantized
//! dtype: burn-store refuses it). 8-bit values take one byte each (`QuantStore::Native`); 4- and
//! 2-bit values are packed 8 / 16 to a `u32` (`QuantStore::PackedU32(dim)`, Burn's own packed
//! layout, padded per line along the packed dimension), on the dimension that wastes the least.
//! [`load_quantized`] unpacks them itself: Burn's host reader
//! (`burn_std::quantization::QuantizedBytes::into_vec_i8`) only handles packing on the innermost
//! dimension and reads it as if the padding were at the end of the tensor, which is wrong when
//! that dimension is not a multiple of the packing factor. Native 8-bit files also load with
//! plain `Module::load_file`.
//!
//! # Speed
//!
//! Only bytes shrink. Burn's CPU backends dequantize the whole weight on every matmul or conv,
//! so a quantized model runs slower than the f32 one there (see `benches/benches/quantized.rs`).
//! burn-flex also re-quantizes a *block*-quantized tensor with fresh max-abs scales whenever it
//! is reshaped (`block_safe_layout_op` in burn-flex `src/ops/qtensor.rs`), and burn-tensor's
//! `linear` reshapes the weight for a 2-D input: a `Linear` with per-channel or per-block scales
//! therefore computes with re-derived block scales rather than the calibrated ones. Conv weights
//! and per-tensor scales are used as stored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{BurnpackStore, ModuleAdapter, ModuleContext, ModuleSnapshot, ModuleStore};
use burn::tensor::DType;
use burn::tensor::quantization::{
    QuantMode, QuantScheme, QuantStore, QuantValue, QuantizedBytes, ScaleDtype, quantized_data_len,
};
use compress_core::{Dense, ModuleIndex};

use crate::{QuantError, Result};

mod device;
mod file;
mod format;
mod host;
mod packing;

pub use device::quantized_to_device;
pub use file::{burnpack_size, load_quantized, save_quantized};
pub use format::{AffinePolicy, QuantBits, QuantLevel, WeightQuant};
use host::*;
pub(crate) use packing::packed_dim;
use packing::*;

/// A copy of `model` whose listed parameters are Burn quantized tensors (`QuantStore::Native`,
/// f32 scales); the others are untouched. Everything is checked before anything is converted.
///
/// ```
/// use std::collections::BTreeMap;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::prelude::*;
/// use compress_quant::{AffinePolicy, QuantBits, QuantLevel, WeightQuant, quantize_weights};
///
/// let linear: Linear = LinearConfig::new(4, 3).init(&Device::flex());
/// let plan = BTreeMap::from([(
///     "weight".to_string(),
///     WeightQuant::new(QuantBits::Q8S, QuantLevel::PerTensor),
/// )]);
/// let q = quantize_weights(&linear, &plan, AffinePolicy::Error)?;
/// assert!(matches!(q.weight.val().dtype(), burn::tensor::DType::QFloat(_)));
/// # Ok::<(), compress_quant::QuantError>(())
/// ```
///
/// # Errors
/// - [`QuantError::UnknownParam`]: a path that is not a float parameter of the model;
/// - [`QuantError::ShapeMismatch`]: calibrated scales of the wrong size;
/// - [`QuantError::UnsupportedQuant`]: an affine calibration under [`AffinePolicy::Error`], a
///   block Burn cannot express (extent over 255, not dividing, more than 5 dimensions), an axis
///   out of range, a non-positive or non-finite scale, or a parameter already quantized.
pub fn quantize_weights<M: Module>(
    model: &M,
    plan: &BTreeMap<String, WeightQuant>,
    affine: AffinePolicy,
) -> Result<M> {
    let index = ModuleIndex::from_module(model);
    for path in plan.keys() {
        if index.param(path).is_none() {
            return Err(QuantError::UnknownParam { path: path.clone() });
        }
    }
    let mut read = read_float_params(model, plan.keys().cloned().collect())?;
    let mut data = BTreeMap::new();
    for (path, quant) in plan {
        let Some(values) = read.remove(path) else {
            return Err(QuantError::UnknownParam { path: path.clone() });
        };
        let out_axis = index.out_axis(path);
        data.insert(
            path.clone(),
            quantize_host(path, &values, quant, out_axis, affine)?,
        );
    }
    let mut writer = Writer { data };
    // A deep copy: a clone shares BatchNorm running statistics, which `map` writes in place.
    Ok(compress_core::paths::map_params(
        compress_core::mask::deep_copy(model),
        &mut writer,
    ))
}

/// Quantize the `weight` of every listed layer with one scheme and max-abs scales (Burn's
/// `quantize_dynamic`, with NNI's rounding). Biases and other parameters stay f32; list them in
/// [`quantize_weights`] to quantize them too.
///
/// # Errors
/// [`QuantError::UnknownModule`] for a path that is not a layer of the model,
/// [`QuantError::UnsupportedQuant`] for a layer without a `weight` or a `quant` that carries
/// calibrated scales (they belong to one parameter: use [`quantize_weights`]), and the errors of
/// [`quantize_weights`].
pub fn quantize_layers<M: Module, S: AsRef<str>>(
    model: &M,
    layers: &[S],
    quant: &WeightQuant,
) -> Result<M> {
    let index = ModuleIndex::from_module(model);
    let mut plan = BTreeMap::new();
    for layer in layers {
        let layer = layer.as_ref();
        let info = crate::error::find_module(&index, layer)?;
        let weight = info
            .param("weight")
            .ok_or_else(|| QuantError::UnsupportedQuant {
                path: layer.to_string(),
                reason: format!("a {} has no 'weight' parameter", info.type_name),
            })?;
        if quant.scale.is_some() || quant.zero_point.is_some() {
            return Err(QuantError::UnsupportedQuant {
                path: weight.path.clone(),
                reason: "quantize_layers derives scales from each weight; pass calibrated scales \
                         per parameter to quantize_weights"
                    .into(),
            });
        }
        plan.insert(weight.path.clone(), quant.clone());
    }
    quantize_weights(model, &plan, AffinePolicy::Error)
}

/// The quantized parameters of a model and their Burn schemes.
pub fn quantized_params<M: Module>(model: &M) -> BTreeMap<String, QuantScheme> {
    struct Schemes {
        out: BTreeMap<String, QuantScheme>,
    }
    impl compress_core::paths::PathVisitor for Schemes {
        fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
            if let DType::QFloat(scheme) = param.val().dtype() {
                self.out.insert(path.to_string(), scheme);
            }
        }
    }
    let mut v = Schemes {
        out: BTreeMap::new(),
    };
    compress_core::paths::visit_params(model, &mut v);
    v.out
}

/// The float values of the `wanted` parameters of `model` (those it has; the caller checks for
/// missing ones). An already-quantized parameter is [`QuantError::UnsupportedQuant`]; the
/// first error in path order is returned.
pub(crate) fn read_float_params<M: Module>(
    model: &M,
    wanted: BTreeSet<String>,
) -> Result<BTreeMap<String, Dense<f32>>> {
    let mut reader = Reader {
        wanted,
        values: BTreeMap::new(),
    };
    compress_core::paths::visit_params(model, &mut reader);
    reader
        .values
        .into_iter()
        .map(|(path, v)| v.map(|v| (path, v)))
        .collect()
}

/// Reads the float values of the wanted parameters.
pub(super) struct Reader {
    wanted: BTreeSet<String>,
    values: BTreeMap<String, Result<Dense<f32>>>,
}

impl compress_core::paths::PathVisitor for Reader {
    fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
        let path = path.to_string();
        if !self.wanted.contains(&path) {
            return;
        }
        let tensor = param.val();
        let value = if let DType::QFloat(scheme) = tensor.dtype() {
            Err(QuantError::UnsupportedQuant {
                path: path.clone(),
                reason: format!("it is already quantized ({:?})", scheme.value),
            })
        } else {
            Dense::from_tensor(tensor, &path).map_err(QuantError::from)
        };
        self.values.insert(path, value);
    }
}

/// Swaps prepared quantized data in.
pub(super) struct Writer {
    data: BTreeMap<String, TensorData>,
}

impl compress_core::paths::PathMapper for Writer {
    fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.data.remove(path) {
            Some(data) => param.map(|t| Tensor::from_data(data, &t.device())),
            None => param,
        }
    }
}
