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

    fn from_value(value: QuantValue) -> Option<Self> {
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
    Ok(compress_core::map_params(
        compress_core::deep_copy(model),
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
        let info = index
            .layer(layer)
            .ok_or_else(|| QuantError::UnknownModule {
                path: layer.to_string(),
            })?;
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
    impl compress_core::PathVisitor for Schemes {
        fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
            if let DType::QFloat(scheme) = param.val().dtype() {
                self.out.insert(path.to_string(), scheme);
            }
        }
    }
    let mut v = Schemes {
        out: BTreeMap::new(),
    };
    compress_core::visit_params(model, &mut v);
    v.out
}

/// Write `model` (quantized or not) to `path` (used as given) as a burnpack file. 4- and 2-bit
/// tensors are packed into `u32`s (`QuantStore::PackedU32`); 8-bit ones take one byte per value;
/// float tensors are stored as they are. An existing file is replaced.
///
/// # Errors
/// [`QuantError::Io`] when the file cannot be written.
pub fn save_quantized<M: Module>(model: &M, path: impl AsRef<Path>) -> Result<PathBuf> {
    let path = path.as_ref().to_path_buf();
    let mut store = BurnpackStore::from_file(&path)
        .auto_extension(false)
        .overwrite(true)
        // As `Module::save_file`: no metadata entries (they can push the header across a
        // 256-byte boundary, which costs a small model 0.4%).
        .clear_metadata()
        .with_to_adapter(PackSubByte);
    model.save_into(&mut store).map_err(|e| QuantError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(path)
}

/// Load what [`save_quantized`] wrote into `template`, a fresh model of the same type: every
/// parameter takes the file's dtype (quantized or float) and values. The file must hold exactly
/// the template's parameters, with the same shapes.
///
/// # Errors
/// [`QuantError::Io`] when the file cannot be read, [`QuantError::ModelFileMismatch`] when
/// it is not a burnpack file, lacks a parameter of the template, holds one the template does not
/// have, has another shape, or holds a quantized format this crate does not read (float-point
/// quantization, two-level scales, lookup tables).
pub fn load_quantized<M: Module>(template: M, path: impl AsRef<Path>) -> Result<M> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let mismatch = |message: String| QuantError::ModelFileMismatch {
        file: file.clone(),
        message,
    };
    std::fs::metadata(path).map_err(|e| QuantError::Io {
        path: file.clone(),
        message: e.to_string(),
    })?;
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    let stored: Vec<PackTensor> = store
        .get_all_tensors()
        .map_err(|e| mismatch(format!("not a readable burnpack file: {e}")))?
        .values()
        .cloned()
        .collect();
    let index = ModuleIndex::from_module(&template);
    let names: BTreeSet<&str> = stored.iter().map(|t| t.name.as_str()).collect();
    if let Some(p) = index.params().find(|p| !names.contains(p.path.as_str())) {
        return Err(mismatch(format!("it has no tensor '{}'", p.path)));
    }
    let mut tensors = Vec::with_capacity(stored.len());
    for t in stored {
        let Some(info) = index.param(&t.name) else {
            return Err(mismatch(format!(
                "it holds '{}', which the model does not have",
                t.name
            )));
        };
        if t.shape.as_slice() != info.shape.as_slice() {
            return Err(mismatch(format!(
                "'{}' has shape {:?} in the file, {:?} in the model",
                t.name,
                t.shape.as_slice(),
                info.shape
            )));
        }
        tensors.push(decode(t).map_err(&mismatch)?);
    }
    let mut model = template;
    let result = model.apply(tensors, None, None, false);
    if let Some(e) = result.errors.first() {
        return Err(mismatch(e.to_string()));
    }
    if let Some((name, _)) = result.missing.first() {
        return Err(mismatch(format!("it has no tensor '{name}'")));
    }
    if let Some(name) = result.unused.first() {
        return Err(mismatch(format!(
            "it holds '{name}', which the model does not have"
        )));
    }
    Ok(model)
}

// ---------------------------------------------------------------------------------------------
// Host-side quantization.

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
    compress_core::visit_params(model, &mut reader);
    reader
        .values
        .into_iter()
        .map(|(path, v)| v.map(|v| (path, v)))
        .collect()
}

/// Reads the float values of the wanted parameters.
struct Reader {
    wanted: BTreeSet<String>,
    values: BTreeMap<String, Result<Dense<f32>>>,
}

impl compress_core::PathVisitor for Reader {
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
struct Writer {
    data: BTreeMap<String, TensorData>,
}

impl compress_core::PathMapper for Writer {
    fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.data.remove(path) {
            Some(data) => param.map(|t| Tensor::from_data(data, &t.device())),
            None => param,
        }
    }
}

/// The largest divisor of `n` that fits a Burn block extent (`u8`).
fn block_extent(n: usize) -> usize {
    (1..=n.min(255))
        .rev()
        .find(|d| n.is_multiple_of(*d))
        .unwrap_or(1)
}

/// The blocks of a tensor: extents per dimension (left-padded to the rank) and the grid.
struct Blocks {
    extents: Vec<usize>,
    grid: Vec<usize>,
}

impl Blocks {
    fn new(shape: &[usize], extents: Vec<usize>) -> Self {
        let grid = shape.iter().zip(&extents).map(|(&d, &e)| d / e).collect();
        Self { extents, grid }
    }

    fn count(&self) -> usize {
        self.grid.iter().product()
    }

    /// The row-major block of row-major element `index` (as burn-std's `BlockLayout::block_of`).
    fn block_of(&self, shape: &[usize], mut index: usize) -> usize {
        let mut block = 0;
        let mut stride = 1;
        for d in (0..shape.len()).rev() {
            let coordinate = index % shape[d];
            index /= shape[d];
            block += coordinate / self.extents[d] * stride;
            stride *= self.grid[d];
        }
        block
    }

    /// The block-grid coordinate of `block` along `axis`.
    fn coordinate(&self, mut block: usize, axis: usize) -> usize {
        for d in (axis + 1..self.grid.len()).rev() {
            block /= self.grid[d];
        }
        block % self.grid[axis]
    }
}

fn unsupported(path: &str, reason: impl Into<String>) -> QuantError {
    QuantError::UnsupportedQuant {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Quantize one parameter on the host, NNI's way: `q = round_half_even(clamp(x / s, qmin,
/// qmax))`, stored as Burn `QFloat` data (`QuantStore::Native`, f32 scales).
fn quantize_host(
    path: &str,
    values: &Dense<f32>,
    quant: &WeightQuant,
    out_axis: Option<usize>,
    affine: AffinePolicy,
) -> Result<TensorData> {
    let shape = values.shape().to_vec();
    let rank = shape.len();
    let is_affine = quant
        .zero_point
        .as_ref()
        .is_some_and(|z| z.data().iter().any(|&v| v != 0.0));
    let calibrated = match (is_affine, affine) {
        (true, AffinePolicy::Error) => {
            return Err(unsupported(
                path,
                "its calibration is affine (non-zero zero point); Burn quantization is symmetric \
                 only. Calibrate with the symmetric scheme, or use AffinePolicy::Requantize",
            ));
        }
        (true, AffinePolicy::Requantize) => None,
        (false, _) => quant.scale.as_ref(),
    };

    // The block layout and, for channel levels, the channel axis.
    let (blocks, axis) = match &quant.level {
        QuantLevel::PerTensor => (None, None),
        QuantLevel::PerChannel | QuantLevel::PerAxis(_) => {
            let axis = match quant.level {
                QuantLevel::PerAxis(a) => a,
                _ => out_axis.ok_or_else(|| {
                    unsupported(
                        path,
                        "per channel needs its output axis, and its layer's LayerSpec gives none: \
                         register a LayerSpec for the layer type, or use QuantLevel::PerAxis",
                    )
                })?,
            };
            if axis >= rank.max(1) {
                return Err(unsupported(
                    path,
                    format!("axis {axis} is out of range for shape {shape:?}"),
                ));
            }
            let extents = (0..rank)
                .map(|d| if d == axis { 1 } else { block_extent(shape[d]) })
                .collect();
            (Some(Blocks::new(&shape, extents)), Some(axis))
        }
        QuantLevel::PerBlock(block) => {
            if block.len() > rank {
                return Err(unsupported(
                    path,
                    format!("block {block:?} has more dimensions than shape {shape:?}"),
                ));
            }
            let mut extents = vec![1; rank - block.len()];
            extents.extend(block);
            for (d, (&e, &n)) in extents.iter().zip(&shape).enumerate() {
                if e == 0 || e > 255 {
                    return Err(unsupported(
                        path,
                        format!("block extent {e} (dimension {d}) is outside Burn's 1..=255"),
                    ));
                }
                if !n.is_multiple_of(e) {
                    return Err(unsupported(
                        path,
                        format!(
                            "block {block:?} does not tile shape {shape:?} (dimension {d}); \
                             Burn's CPU backend needs whole blocks"
                        ),
                    ));
                }
            }
            (Some(Blocks::new(&shape, extents)), None)
        }
    };
    if let Some(b) = &blocks {
        let significant = b.extents.iter().skip_while(|&&e| e == 1).count();
        if significant > 5 {
            return Err(unsupported(
                path,
                format!(
                    "block {:?} spans more than Burn's 5 block dimensions",
                    b.extents
                ),
            ));
        }
    }

    // One scale per block (or one for the tensor).
    let (qmin, qmax) = quant.value.range();
    let half_range = (qmax - qmin) / 2.0;
    let data = values.data();
    let scales: Vec<f32> = match (calibrated, &blocks, axis) {
        (Some(scale), _, _) => {
            let expected = match (&blocks, axis) {
                (None, _) => 1,
                (Some(_), Some(a)) => shape[a],
                (Some(b), None) => b.count(),
            };
            if scale.numel() != expected {
                return Err(QuantError::ShapeMismatch {
                    path: format!("{path} (scale)"),
                    expected: match (&blocks, axis) {
                        (Some(b), None) => b.grid.clone(),
                        _ => vec![expected],
                    },
                    found: scale.shape().to_vec(),
                });
            }
            if let Some(bad) = scale.data().iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return Err(unsupported(path, format!("scale {bad} is not positive")));
            }
            match (&blocks, axis) {
                (Some(b), Some(a)) => (0..b.count())
                    .map(|k| scale.data()[b.coordinate(k, a)])
                    .collect(),
                _ => scale.data().to_vec(),
            }
        }
        (None, None, _) => {
            let max = data.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            vec![symmetric_scale(max, half_range)]
        }
        (None, Some(b), axis) => {
            let mut peaks = vec![0.0f32; b.count()];
            for (i, x) in data.iter().enumerate() {
                let p = &mut peaks[b.block_of(&shape, i)];
                *p = p.max(x.abs());
            }
            if let Some(a) = axis {
                // One scale per channel, repeated over the channel's blocks.
                let mut per_channel = vec![0.0f32; shape[a]];
                for (k, p) in peaks.iter().enumerate() {
                    let c = &mut per_channel[b.coordinate(k, a)];
                    *c = c.max(*p);
                }
                for (k, p) in peaks.iter_mut().enumerate() {
                    *p = per_channel[b.coordinate(k, a)];
                }
            }
            peaks
                .into_iter()
                .map(|p| symmetric_scale(p, half_range))
                .collect()
        }
    };

    let q: Vec<i8> = data
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let s = match &blocks {
                Some(b) => scales[b.block_of(&shape, i)],
                None => scales[0],
            };
            (x / s).clamp(qmin, qmax).round_ties_even() as i8
        })
        .collect();
    let scheme = scheme(quant.value, blocks.as_ref().map(|b| b.extents.as_slice()));
    Ok(TensorData::quantized(q, shape, scheme, &scales, None))
}

/// NNI's symmetric scale for a max-abs value: `max / ((qmax - qmin) / 2)`, floored at
/// `f32::EPSILON`.
fn symmetric_scale(max_abs: f32, half_range: f32) -> f32 {
    (max_abs / half_range).max(f32::EPSILON)
}

/// Burn's scheme for a format and block layout (f32 scales, one byte per value in memory).
fn scheme(value: QuantBits, block: Option<&[usize]>) -> QuantScheme {
    let scheme = QuantScheme::default()
        .with_value(value.value())
        .with_mode(QuantMode::Symmetric)
        .with_store(QuantStore::Native);
    match block {
        Some(b) => scheme.per_block(
            b.iter().map(|&e| e as u8).collect::<Vec<u8>>(),
            ScaleDtype::F32,
        ),
        None => scheme,
    }
}

// ---------------------------------------------------------------------------------------------
// Packed storage.

/// Values per `u32` word and bits per value.
fn packing(value: QuantValue) -> (usize, usize) {
    let bits = value.size_bits();
    (32 / bits, bits)
}

/// The packed dimension (counted from the innermost, as `QuantStore::PackedU32` counts) that
/// stores the fewest words, preferring the innermost on ties, and the word count.
fn packed_dim(shape: &[usize], per_word: usize) -> (usize, usize) {
    let numel: usize = shape.iter().product();
    let words = |d: usize| {
        let axis = shape.len() - 1 - d;
        numel / shape[axis].max(1) * shape[axis].div_ceil(per_word)
    };
    (0..shape.len().max(1))
        .map(|d| (d, if shape.is_empty() { 1 } else { words(d) }))
        .min_by_key(|&(d, w)| (w, d))
        .unwrap_or((0, numel.div_ceil(per_word)))
}

/// The storage shape of a tensor packed on `dim` (from the innermost).
fn storage_shape(shape: &[usize], dim: usize, per_word: usize) -> Vec<usize> {
    let mut storage = shape.to_vec();
    if let Some(axis) = shape.len().checked_sub(dim + 1) {
        storage[axis] = storage[axis].div_ceil(per_word);
    }
    storage
}

/// The packed word and slot of every element, in row-major element order.
fn word_slots(
    shape: &[usize],
    dim: usize,
    per_word: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let storage = storage_shape(shape, dim, per_word);
    let axis = shape.len().checked_sub(dim + 1);
    let numel: usize = shape.iter().product();
    let shape = shape.to_vec();
    (0..numel).map(move |mut index| {
        let mut word = 0;
        let mut slot = 0;
        let mut stride = 1;
        for d in (0..shape.len()).rev() {
            let c = index % shape[d];
            index /= shape[d];
            let sc = if Some(d) == axis {
                slot = c % per_word;
                c / per_word
            } else {
                c
            };
            word += sc * stride;
            stride *= storage[d];
        }
        (word, slot)
    })
}

/// Saves 4- and 2-bit tensors packed into `u32`s.
#[derive(Clone)]
struct PackSubByte;

impl ModuleAdapter for PackSubByte {
    fn adapt(&self, tensor: PackTensor, _: ModuleContext<'_>) -> PackTensor {
        let DType::QFloat(scheme) = tensor.dtype else {
            return tensor;
        };
        let packable = scheme.value.size_bits() < 8
            && QuantBits::from_value(scheme.value).is_some()
            && scheme.store == QuantStore::Native
            && scheme.mode == QuantMode::Symmetric
            && scheme.scale_dtype() == ScaleDtype::F32
            && burn::tensor::quantization::global_scale_dtype(&scheme).is_none();
        if !packable {
            return tensor;
        }
        let shape = tensor.shape.clone();
        let (per_word, bits) = packing(scheme.value);
        let (dim, _) = packed_dim(shape.as_slice(), per_word);
        let packed = scheme.with_store(QuantStore::PackedU32(dim));
        let name = tensor.name.clone();
        let dims = shape.as_slice().to_vec();
        burn::store::bridge::map_data(
            tensor,
            name,
            DType::QFloat(packed),
            shape.clone(),
            move |data| {
                let (values, scales) = QuantizedBytes {
                    bytes: data.into_bytes(),
                    scheme,
                    shape: shape.clone(),
                }
                .into_vec_i8();
                let storage: usize = storage_shape(&dims, dim, per_word).iter().product();
                let mut words = vec![0u32; storage];
                let mask = (1u32 << bits) - 1;
                for ((word, slot), v) in word_slots(&dims, dim, per_word).zip(values) {
                    words[word] |= (v as u8 as u32 & mask) << (slot * bits);
                }
                let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                bytes.extend(scales.block.iter().flat_map(|s| s.to_le_bytes()));
                TensorData::from_bytes_vec(bytes, shape.clone(), DType::QFloat(packed))
            },
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// A stored tensor as the backend takes it: packed values unpacked to one `i8` each
/// (`QuantStore::Native`); unsupported quantized formats refused before Burn could panic on
/// them.
fn decode(tensor: PackTensor) -> std::result::Result<PackTensor, String> {
    let DType::QFloat(scheme) = tensor.dtype else {
        return Ok(tensor);
    };
    let name = tensor.name.clone();
    let param_id = tensor.param_id;
    let supported = QuantBits::from_value(scheme.value).is_some()
        && scheme.mode == QuantMode::Symmetric
        && scheme.scale_dtype() == ScaleDtype::F32
        && burn::tensor::quantization::global_scale_dtype(&scheme).is_none();
    if !supported {
        return Err(format!(
            "'{name}' uses a quantized format this crate does not read ({scheme:?})"
        ));
    }
    let shape = tensor.shape.clone();
    let dims = shape.as_slice().to_vec();
    let expected = quantized_data_len(&scheme, &shape);
    let data =
        burn::store::bridge::into_data(tensor).map_err(|e| format!("cannot read '{name}': {e}"))?;
    let bytes = data.into_bytes();
    if bytes.len() != expected {
        return Err(format!(
            "'{name}' holds {} bytes, its format needs {expected}",
            bytes.len()
        ));
    }
    let native = scheme.with_store(QuantStore::Native);
    // Values (one byte each, or packed words), then the f32 scales.
    let value_len = match scheme.store {
        QuantStore::Native => dims.iter().product::<usize>(),
        QuantStore::PackedU32(dim) => {
            let (per_word, _) = packing(scheme.value);
            storage_shape(&dims, dim, per_word)
                .iter()
                .product::<usize>()
                * 4
        }
        QuantStore::PackedNative(_) => {
            return Err(format!("'{name}' uses PackedNative storage, not read here"));
        }
    };
    let (value_bytes, scale_bytes) = bytes.split_at(value_len.min(bytes.len()));
    let scales: Vec<f32> = scale_bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let values: Vec<i8> = match scheme.store {
        QuantStore::PackedU32(dim) => {
            let (per_word, bits) = packing(scheme.value);
            let words: Vec<u32> = value_bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let mask = (1u32 << bits) - 1;
            let shift = 8 - bits as u32;
            word_slots(&dims, dim, per_word)
                .map(|(word, slot)| {
                    let raw = ((words[word] >> (slot * bits)) & mask) as u8;
                    ((raw << shift) as i8) >> shift
                })
                .collect()
        }
        _ => value_bytes.iter().map(|&b| b as i8).collect(),
    };
    let (qmin, qmax) = scheme.value.range();
    if values
        .iter()
        .any(|&v| (v as f32) < qmin || (v as f32) > qmax)
    {
        return Err(format!(
            "'{name}' holds values outside {:?}'s range",
            scheme.value
        ));
    }
    if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
        return Err(format!("'{name}' holds an invalid scale {bad}"));
    }
    let data = TensorData::quantized(values, shape, native, &scales, None);
    Ok(burn::store::bridge::from_data(data, name, param_id))
}

/// A copy of a quantized model on `device`, each quantized parameter in the storage that device
/// reads. CPU backends take [`save_quantized`]'s one-byte `Native` values as they are; GPU
/// (CubeCL) backends read packed `u32` words (`QuantStore::PackedU32`), and some Vulkan drivers
/// (lavapipe) cannot convert native `i8` at all, so there every quantized parameter is re-packed
/// with its own scales: the integer values are unchanged. Packing needs an innermost extent that is
/// a multiple of the values per word (4 at 8 bits, 8 at 4 bits, 16 at 2 bits; Burn's CubeCL
/// `new_quantized` refuses anything else, and reads outer packing axes back wrongly): a parameter
/// without one (LeNet-5's convs, `[.., 5, 5]`) is moved dequantized, as float;
/// [`quantized_params`] on the result tells which stayed quantized. Float parameters are moved as
/// they are.
///
/// # Errors
/// [`QuantError::UnsupportedQuant`] for a quantized parameter whose data cannot be read back.
pub fn quantized_to_device<M: Module>(model: &M, device: &Device) -> Result<M> {
    struct Move<'a> {
        device: &'a Device,
        packed: bool,
        error: Option<QuantError>,
    }
    impl compress_core::PathMapper for Move<'_> {
        fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let device = self.device.clone();
            let packed = self.packed;
            let path = path.to_string();
            let mut failure = None;
            let moved = param.map(|t| {
                let DType::QFloat(scheme) = t.dtype() else {
                    return t.to_device(&device);
                };
                if !packed || matches!(scheme.store, QuantStore::PackedU32(_)) {
                    return t.to_device(&device);
                }
                // Native values are followed by the f32 scales in the data's bytes.
                let numel = t.shape().num_elements();
                let values = t.clone().dequantize().to_device(&device);
                let bytes = t.into_data().into_bytes();
                let scales: Vec<f32> = bytes
                    .get(numel..)
                    .unwrap_or_default()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                if scales.is_empty() {
                    failure = Some(QuantError::UnsupportedQuant {
                        path: path.clone(),
                        reason: "its quantized data has no scales to re-pack with".into(),
                    });
                    return values;
                }
                // Packed along the innermost dimension, which must divide evenly. (Burn 0.22's
                // CubeCL backend also accepts an outer packing axis, but dequantizes such tensors
                // wrongly: measured on lavapipe, LeNet-5's conv2 packed on its outer axis read back
                // values up to 0.47 off.)
                let per_word = 32 / scheme.value.size_bits();
                if !values.dims()[D - 1].is_multiple_of(per_word) {
                    return values;
                }
                let axis = 0;
                let n = scales.len();
                let params = burn::tensor::quantization::QuantizationParameters {
                    scales: Tensor::<1>::from_data(TensorData::new(scales, [n]), &device),
                    global: None,
                };
                values.quantize(&scheme.with_store(QuantStore::PackedU32(axis)), params)
            });
            if let Some(e) = failure {
                self.error.get_or_insert(e);
            }
            moved
        }
    }
    // CPU backends read native values; every other (CubeCL) device gets packed words.
    let name = format!("{device:?}");
    let packed = !(name.contains("Flex") || name.contains("NdArray"));
    let mut mover = Move {
        device,
        packed,
        error: None,
    };
    let moved = compress_core::map_params(compress_core::deep_copy(model), &mut mover);
    match mover.error {
        Some(e) => Err(e),
        None => Ok(moved),
    }
}
