//! The calibration config: quantization parameters by module path and target name, NNI's
//! `get_calibration_config()` format, with JSON and safetensors persistence.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::{Map, Number, Value};

use crate::fake::fake_quant_dense;
use crate::params::quant_bounds;
use compress_core::config::{QuantDtype, QuantScheme};
use compress_core::error::did_you_mean;
use compress_core::layers::{LayerSpec, ParamRole};
use compress_core::quantizer::QuantParams;
use compress_core::{CompressError, Dense, Result};
use compress_core::{ModuleIndex, index::LayerInfo};

/// The quantization parameters of one target, with NNI's keys.
///
/// Values are in Burn's layout, in the kept-dim block shape of the target's granularity. A
/// per-tensor value is stored with shape `[]` (as NNI's 0-d tensors): [`CalibrationEntry::new`]
/// turns any one-element all-ones shape into `[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationEntry {
    /// `scale`, per block.
    pub scale: Dense<f32>,
    /// `zero_point`, per block (integral values as floats, as NNI's).
    pub zero_point: Dense<f32>,
    /// `quant_dtype`.
    pub quant_dtype: QuantDtype,
    /// `quant_scheme`; `None` is NNI's unset scheme, which computes as symmetric.
    pub quant_scheme: Option<QuantScheme>,
    /// `quant_bits`: the bits of `quant_dtype`.
    pub quant_bits: u32,
    /// `tracked_min`, per block (before the range is widened to include 0).
    pub tracked_min: Dense<f32>,
    /// `tracked_max`, per block.
    pub tracked_max: Dense<f32>,
}

/// A one-element all-ones shape becomes `[]`.
fn per_tensor_as_scalar(d: Dense<f32>) -> Dense<f32> {
    if d.numel() == 1 && d.shape().iter().all(|&n| n == 1) {
        d.reshape(Vec::new())
    } else {
        d
    }
}

impl CalibrationEntry {
    /// An entry from an observer's parameters; `quant_bits` is the dtype's.
    pub fn new(params: QuantParams, dtype: QuantDtype, scheme: Option<QuantScheme>) -> Self {
        Self {
            scale: per_tensor_as_scalar(params.scale),
            zero_point: per_tensor_as_scalar(params.zero_point),
            quant_dtype: dtype,
            quant_scheme: scheme,
            quant_bits: dtype.bits,
            tracked_min: per_tensor_as_scalar(params.tracked_min),
            tracked_max: per_tensor_as_scalar(params.tracked_max),
        }
    }

    /// The four tensors as [`QuantParams`].
    pub fn params(&self) -> QuantParams {
        QuantParams {
            scale: self.scale.clone(),
            zero_point: self.zero_point.clone(),
            tracked_min: self.tracked_min.clone(),
            tracked_max: self.tracked_max.clone(),
        }
    }

    /// `(qmin, qmax)` of the dtype.
    pub fn bounds(&self) -> (f32, f32) {
        quant_bounds(self.quant_dtype)
    }

    /// Fake-quantize `x` (Burn layout) with this entry ([`fake_quant_dense`]).
    ///
    /// # Errors
    /// [`CompressError::QuantShape`] when the entry's shape does not fit `x`.
    pub fn fake_quant(&self, x: &Dense<f32>) -> Result<Dense<f32>> {
        fake_quant_dense(x, &self.scale, &self.zero_point, self.quant_dtype)
    }
}

/// Quantization parameters by module path, then target name: what NNI's
/// `Quantizer.compress()` returns as `calibration_config`.
///
/// Target names are Burn's (`weight`, `gamma`, `_input_`, `_output_`); NNI's first positional
/// activation names `_input_0` / `_output_0` are the same targets as `_input_` / `_output_`
/// (both are accepted everywhere and stored as `_input_` / `_output_`).
///
/// Persistence:
/// - [`to_nni_json`](Self::to_nni_json) / [`from_nni_json`](Self::from_nni_json): NNI's nested
///   dict (`scale`, `zero_point`, `quant_dtype`, `quant_scheme`, `quant_bits`, `tracked_max`,
///   `tracked_min`), tensors as nested lists in PyTorch's layout and names. These need the
///   model's [`ModuleIndex`]: a Linear weight is `[in, out]` in Burn and `[out, in]` in PyTorch,
///   so its per-channel values are transposed, and BatchNorm's `gamma` is NNI's `weight`.
/// - [`save`](Self::save) / [`load`](Self::load): safetensors in Burn's layout and names, no
///   model needed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CalibrationConfig {
    modules: BTreeMap<String, BTreeMap<String, CalibrationEntry>>,
}

/// `_input_0` -> `_input_`, `_output_0` -> `_output_`; other names unchanged.
fn canonical_target(target: &str) -> &str {
    match target {
        "_input_0" => "_input_",
        "_output_0" => "_output_",
        t => t,
    }
}

/// Our activation name as NNI writes it.
fn nni_activation_name(target: &str) -> &str {
    match target {
        "_input_" => "_input_0",
        "_output_" => "_output_0",
        t => t,
    }
}

fn is_activation(target: &str) -> bool {
    target.starts_with("_input_") || target.starts_with("_output_")
}

/// What a target is, resolved against the model.
enum Resolved<'a> {
    Activation,
    Param {
        burn_name: &'static str,
        nni_name: &'static str,
        shape: &'a [usize],
        /// A 2-D `[in, out]` weight, stored `[out, in]` by PyTorch.
        transpose: bool,
    },
    /// A parameter of a layer type without a [`LayerSpec`]: Burn's name and layout only.
    Unspecified {
        name: &'a str,
        shape: &'a [usize],
    },
}

/// Whose names a file uses: NNI's (`weight`, `_input_0`) or Burn's (`gamma`, `_input_`).
#[derive(Clone, Copy)]
enum Naming {
    Nni,
    Burn,
}

impl Resolved<'_> {
    /// The target's name in `naming`, and whether its 2-D value is stored transposed.
    fn named(&self, target: &str, naming: Naming) -> (String, bool) {
        match (self, naming) {
            (Resolved::Activation, Naming::Nni) => (nni_activation_name(target).to_string(), false),
            (Resolved::Activation, Naming::Burn) => (canonical_target(target).to_string(), false),
            (
                Resolved::Param {
                    nni_name,
                    transpose,
                    ..
                },
                Naming::Nni,
            ) => (nni_name.to_string(), *transpose),
            (
                Resolved::Param {
                    burn_name,
                    transpose,
                    ..
                },
                Naming::Burn,
            ) => (burn_name.to_string(), *transpose),
            (Resolved::Unspecified { name, .. }, _) => (name.to_string(), false),
        }
    }
}

fn find_layer<'a>(index: &'a ModuleIndex, module: &str) -> Result<&'a LayerInfo> {
    index
        .layer(module)
        .ok_or_else(|| CompressError::UnknownCalibrationModule {
            module: module.to_string(),
            suggestion: did_you_mean(module, index.layers().iter().map(|l| l.path.as_str())),
        })
}

/// Resolve a target name (Burn's or NNI's) of `layer`.
fn resolve<'a>(layer: &'a LayerInfo, target: &str) -> Result<Resolved<'a>> {
    let spec = LayerSpec::find(&layer.type_name);
    let unknown = || {
        let mut names: Vec<String> = match &spec {
            Some(s) => s
                .params
                .iter()
                .filter(|p| p.role != ParamRole::Buffer && layer.param(p.name).is_some())
                .map(|p| p.name.to_string())
                .collect(),
            None => layer.params.iter().map(|p| p.name.clone()).collect(),
        };
        if spec.is_some_and(|s| s.activations) {
            names.push("_input_".into());
            names.push("_output_".into());
        }
        CompressError::UnknownCalibrationTarget {
            module: layer.path.clone(),
            layer_type: layer.type_name.clone(),
            target: target.to_string(),
            available: names.join(", "),
        }
    };
    if is_activation(target) {
        return match spec {
            Some(s) if s.activations => Ok(Resolved::Activation),
            _ => Err(unknown()),
        };
    }
    match spec {
        Some(spec) => {
            let p = spec
                .param(target)
                .filter(|p| p.role != ParamRole::Buffer)
                .ok_or_else(unknown)?;
            let info = layer.param(p.name).ok_or_else(unknown)?;
            Ok(Resolved::Param {
                burn_name: p.name,
                nni_name: p.nni_name,
                shape: &info.shape,
                transpose: info.shape.len() == 2 && p.in_axis == Some(0) && p.out_axis == Some(1),
            })
        }
        None => {
            let info = layer.param(target).ok_or_else(unknown)?;
            Ok(Resolved::Unspecified {
                name: &info.name,
                shape: &info.shape,
            })
        }
    }
}

/// Swap the two dims of a 2-D tensor; other ranks are returned as they are.
fn transpose2(t: &Dense<f32>) -> Dense<f32> {
    let [r, c] = t.shape() else {
        return t.clone();
    };
    let (r, c) = (*r, *c);
    let mut out = Vec::with_capacity(r * c);
    for j in 0..c {
        for i in 0..r {
            out.push(t.data()[i * c + j]);
        }
    }
    Dense::new(vec![c, r], out)
}

const KEYS: [&str; 4] = ["scale", "zero_point", "tracked_min", "tracked_max"];

fn tensors(e: &CalibrationEntry) -> [&Dense<f32>; 4] {
    [&e.scale, &e.zero_point, &e.tracked_min, &e.tracked_max]
}

fn scheme_name(s: Option<QuantScheme>) -> Option<&'static str> {
    s.map(|s| match s {
        QuantScheme::Affine => "affine",
        QuantScheme::Symmetric => "symmetric",
    })
}

impl CalibrationConfig {
    /// An empty config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) the entry of `module` / `target`, returning the replaced one.
    pub fn insert(
        &mut self,
        module: impl Into<String>,
        target: &str,
        entry: CalibrationEntry,
    ) -> Option<CalibrationEntry> {
        self.modules
            .entry(module.into())
            .or_default()
            .insert(canonical_target(target).to_string(), entry)
    }

    /// The entry of `module` / `target` (`_input_0` finds `_input_`).
    pub fn get(&self, module: &str, target: &str) -> Option<&CalibrationEntry> {
        self.modules.get(module)?.get(canonical_target(target))
    }

    /// Every entry as `(module, target, entry)`, sorted by module, then target.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &CalibrationEntry)> {
        self.modules.iter().flat_map(|(m, targets)| {
            targets
                .iter()
                .map(move |(t, e)| (m.as_str(), t.as_str(), e))
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.modules.values().map(BTreeMap::len).sum()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Check every entry against a model: the module exists, it has the target (a non-buffer
    /// parameter, or `_input_*` / `_output_*` on a layer type with activations), every value of
    /// a parameter target is a kept-dim block shape of the parameter (each dim divides the
    /// parameter's; `[]` is per-tensor), the four values agree in shape, scales are finite and
    /// positive, and `quant_bits` is the dtype's.
    ///
    /// # Errors
    /// [`CompressError::UnknownCalibrationModule`], [`CompressError::UnknownCalibrationTarget`],
    /// [`CompressError::CalibrationShape`] or [`CompressError::InvalidCalibration`], naming the
    /// module, target and key.
    pub fn validate(&self, index: &ModuleIndex) -> Result<()> {
        for (module, target, entry) in self.iter() {
            let layer = find_layer(index, module)?;
            let resolved = resolve(layer, target)?;
            check_entry(module, target, entry)?;
            let param_shape = match resolved {
                Resolved::Activation => continue,
                Resolved::Param { shape, .. } | Resolved::Unspecified { shape, .. } => shape,
            };
            for (key, value) in KEYS.into_iter().zip(tensors(entry)) {
                let s = value.shape();
                let fits = s.is_empty()
                    || (s.len() == param_shape.len()
                        && s.iter()
                            .zip(param_shape)
                            .all(|(&b, &n)| b > 0 && n.is_multiple_of(b)));
                if !fits {
                    return Err(CompressError::CalibrationShape {
                        param: if module.is_empty() {
                            target.to_string()
                        } else {
                            format!("{module}.{target}")
                        },
                        key,
                        found: s.to_vec(),
                        param_shape: param_shape.to_vec(),
                    });
                }
            }
        }
        Ok(())
    }

    /// NNI's calibration config as a JSON value (see [`to_nni_json`](Self::to_nni_json)).
    ///
    /// # Errors
    /// As [`validate`](Self::validate), and [`CompressError::InvalidCalibration`] for a
    /// non-finite value (JSON has no NaN or infinity).
    pub fn to_nni_value(&self, index: &ModuleIndex) -> Result<Value> {
        self.validate(index)?;
        let mut root = Map::new();
        for (module, targets) in &self.modules {
            let layer = find_layer(index, module)?;
            let mut out = Map::new();
            for (target, entry) in targets {
                let (name, transpose) = resolve(layer, target)?.named(target, Naming::Nni);
                let mut fields = Map::new();
                for (key, value) in KEYS.into_iter().zip(tensors(entry)) {
                    let value = if transpose {
                        transpose2(value)
                    } else {
                        value.clone()
                    };
                    let json =
                        to_nested(&value).ok_or_else(|| CompressError::InvalidCalibration {
                            module: module.clone(),
                            target: target.clone(),
                            key: key.to_string(),
                            message: "holds a NaN or infinite value, which JSON cannot store"
                                .into(),
                        })?;
                    fields.insert(key.to_string(), json);
                }
                fields.insert(
                    "quant_dtype".into(),
                    Value::String(entry.quant_dtype.to_string()),
                );
                fields.insert(
                    "quant_scheme".into(),
                    scheme_name(entry.quant_scheme).map_or(Value::Null, |s| s.into()),
                );
                fields.insert("quant_bits".into(), entry.quant_bits.into());
                out.insert(name, Value::Object(fields));
            }
            root.insert(module.clone(), Value::Object(out));
        }
        Ok(Value::Object(root))
    }

    /// NNI's calibration config as JSON text: `{module: {target: {scale, zero_point,
    /// quant_dtype, quant_scheme, quant_bits, tracked_max, tracked_min}}}` with PyTorch's
    /// names (`weight` for BatchNorm's `gamma`, `_input_0` for `_input_`) and layout (the
    /// kept-dim values of a Linear weight transposed to `[out, in]`); per-tensor values are
    /// plain numbers, as NNI's 0-d tensors.
    ///
    /// # Errors
    /// As [`to_nni_value`](Self::to_nni_value).
    pub fn to_nni_json(&self, index: &ModuleIndex) -> Result<String> {
        let value = self.to_nni_value(index)?;
        serde_json::to_string_pretty(&value).map_err(|e| CompressError::InvalidCalibrationFile {
            origin: "<json text>".into(),
            message: e.to_string(),
        })
    }

    /// Read NNI's calibration config (JSON text) for a model (see
    /// [`from_nni_value`](Self::from_nni_value)).
    ///
    /// # Errors
    /// [`CompressError::InvalidCalibrationFile`] when the text is not JSON, and the errors of
    /// [`from_nni_value`](Self::from_nni_value).
    pub fn from_nni_json(text: &str, index: &ModuleIndex) -> Result<Self> {
        Self::from_nni_json_in(text, index, "<json text>")
    }

    fn from_nni_json_in(text: &str, index: &ModuleIndex, origin: &str) -> Result<Self> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| CompressError::InvalidCalibrationFile {
                origin: origin.to_string(),
                message: e.to_string(),
            })?;
        Self::from_nni_value(&value, index, origin)
    }

    /// Read NNI's calibration config from a JSON value, converting names and layout to Burn's
    /// with the model's index, then [`validate`](Self::validate) it.
    ///
    /// Missing `quant_dtype` means `int8` (NNI's default), a missing or `null` `quant_scheme`
    /// is unset, a missing `quant_bits` is the dtype's, and missing tracked values are derived
    /// as NNI does: `tracked_min = scale * (qmin - zero_point)`,
    /// `tracked_max = scale * (qmax - zero_point)`. Other keys are ignored (NNI calls its key
    /// set "not stable").
    ///
    /// # Errors
    /// [`CompressError::InvalidCalibrationFile`] when the value is not a nested object,
    /// [`CompressError::InvalidCalibration`] for a missing or malformed value (naming module,
    /// target and key), and the errors of [`validate`](Self::validate).
    pub fn from_nni_value(value: &Value, index: &ModuleIndex, origin: &str) -> Result<Self> {
        let bad_file = |message: String| CompressError::InvalidCalibrationFile {
            origin: origin.to_string(),
            message,
        };
        let Value::Object(root) = value else {
            return Err(bad_file(format!(
                "expected an object of modules, found {}",
                json_kind(value)
            )));
        };
        let mut config = Self::new();
        for (module, targets) in root {
            let Value::Object(targets) = targets else {
                return Err(bad_file(format!(
                    "module '{module}' must map to an object of targets, found {}",
                    json_kind(targets)
                )));
            };
            let layer = find_layer(index, module)?;
            for (target, fields) in targets {
                let Value::Object(fields) = fields else {
                    return Err(bad_file(format!(
                        "'{module}' / '{target}' must be an object of keys, found {}",
                        json_kind(fields)
                    )));
                };
                let (name, transpose) = resolve(layer, target)?.named(target, Naming::Burn);
                let entry = entry_from_json(module, target, fields, transpose)?;
                config.insert(module.clone(), &name, entry);
            }
        }
        config.validate(index)?;
        Ok(config)
    }

    /// Write NNI's JSON ([`to_nni_json`](Self::to_nni_json)) to a file.
    ///
    /// # Errors
    /// As [`to_nni_json`](Self::to_nni_json), and [`CompressError::Io`].
    pub fn save_nni_json(&self, path: impl AsRef<Path>, index: &ModuleIndex) -> Result<()> {
        let path = path.as_ref();
        compress_core::error::fs::write(path, self.to_nni_json(index)?)
    }

    /// Read NNI's JSON ([`from_nni_json`](Self::from_nni_json)) from a file.
    ///
    /// # Errors
    /// As [`from_nni_json`](Self::from_nni_json), and [`CompressError::Io`].
    pub fn load_nni_json(path: impl AsRef<Path>, index: &ModuleIndex) -> Result<Self> {
        let path = path.as_ref();
        let text = compress_core::error::fs::read_to_string(path)?;
        Self::from_nni_json_in(&text, index, &path.display().to_string())
    }

    /// Serialize as safetensors in Burn's layout and names: one f32 tensor per value, keyed
    /// `<module>/<target>/<key>` (`fc/weight/scale`), and per entry a metadata item
    /// `<module>/<target>` holding `{"quant_dtype", "quant_scheme", "quant_bits"}` as JSON, next
    /// to `format` and `version`.
    ///
    /// # Errors
    /// [`CompressError::InvalidCalibrationFile`] if safetensors refuses a tensor.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bad = |message: String| CompressError::InvalidCalibrationFile {
            origin: "<memory>".into(),
            message,
        };
        let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut metadata: HashMap<String, String> = HashMap::new();
        metadata.insert("format".into(), FORMAT.into());
        metadata.insert("version".into(), VERSION.into());
        for (module, target, entry) in self.iter() {
            for (key, value) in KEYS.into_iter().zip(tensors(entry)) {
                let bytes = value.data().iter().flat_map(|x| x.to_le_bytes()).collect();
                buffers.push((
                    format!("{module}/{target}/{key}"),
                    value.shape().to_vec(),
                    bytes,
                ));
            }
            let info = serde_json::json!({
                "quant_dtype": entry.quant_dtype.to_string(),
                "quant_scheme": scheme_name(entry.quant_scheme),
                "quant_bits": entry.quant_bits,
            });
            metadata.insert(format!("{module}/{target}"), info.to_string());
        }
        let views = buffers
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(Dtype::F32, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| bad(format!("'{name}': {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, &Some(metadata)).map_err(|e| bad(e.to_string()))
    }

    /// Parse safetensors bytes written by [`to_bytes`](Self::to_bytes); `origin` names the
    /// source in errors.
    ///
    /// # Errors
    /// [`CompressError::InvalidCalibrationFile`] when the bytes are truncated or corrupt, the
    /// format metadata is missing, a tensor is not f32 or belongs to no entry, or an entry
    /// lacks a value; [`CompressError::InvalidCalibration`] for bad metadata of an entry.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let bad = |message: String| CompressError::InvalidCalibrationFile {
            origin: origin.to_string(),
            message,
        };
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
        let file = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("corrupt: {e}")))?;
        let metadata: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!(
                "not a calibration file: its metadata lacks format = \"{FORMAT}\""
            )));
        }
        let mut tensors: BTreeMap<String, Dense<f32>> = BTreeMap::new();
        for (name, view) in file.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "'{name}' has dtype {:?}; calibration values are f32",
                    view.dtype()
                )));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.insert(name, Dense::new(view.shape().to_vec(), values));
        }
        let mut config = Self::new();
        for (key, info) in &metadata {
            if key == "format" || key == "version" {
                continue;
            }
            let Some((module, target)) = key.rsplit_once('/') else {
                return Err(bad(format!("unknown metadata key '{key}'")));
            };
            let info: Value = serde_json::from_str(info).map_err(|e| {
                invalid(
                    module,
                    target,
                    "metadata",
                    format!("not JSON ({e}): {info}"),
                )
            })?;
            let Value::Object(info) = info else {
                return Err(invalid(
                    module,
                    target,
                    "metadata",
                    "expected an object".into(),
                ));
            };
            let (dtype, scheme, bits) = dtype_scheme_bits(module, target, &info)?;
            let mut take = |k: &str| {
                tensors
                    .remove(&format!("{module}/{target}/{k}"))
                    .ok_or_else(|| bad(format!("'{module}/{target}' has no tensor '{k}'")))
            };
            let entry = CalibrationEntry {
                scale: take("scale")?,
                zero_point: take("zero_point")?,
                quant_dtype: dtype,
                quant_scheme: scheme,
                quant_bits: bits,
                tracked_min: take("tracked_min")?,
                tracked_max: take("tracked_max")?,
            };
            check_entry(module, target, &entry)?;
            config.insert(module, target, entry);
        }
        if let Some(stray) = tensors.keys().next() {
            return Err(bad(format!(
                "tensor '{stray}' belongs to no entry of the metadata"
            )));
        }
        Ok(config)
    }

    /// Write a safetensors file ([`to_bytes`](Self::to_bytes)).
    ///
    /// # Errors
    /// As [`to_bytes`](Self::to_bytes), and [`CompressError::Io`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        compress_core::error::fs::write(path, self.to_bytes()?)
    }

    /// Read a safetensors file ([`from_bytes`](Self::from_bytes)).
    ///
    /// # Errors
    /// As [`from_bytes`](Self::from_bytes), and [`CompressError::Io`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = compress_core::error::fs::read(path)?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }
}

const FORMAT: &str = "burn-compress-calibration";
const VERSION: &str = "1";

fn invalid(module: &str, target: &str, key: &str, message: String) -> CompressError {
    CompressError::InvalidCalibration {
        module: module.to_string(),
        target: target.to_string(),
        key: key.to_string(),
        message,
    }
}

/// Checks that need no model: shapes agree, values are finite, scales positive, bits match.
fn check_entry(module: &str, target: &str, e: &CalibrationEntry) -> Result<()> {
    if e.quant_bits != e.quant_dtype.bits {
        return Err(invalid(
            module,
            target,
            "quant_bits",
            format!(
                "{} does not match quant_dtype {} ({} bits)",
                e.quant_bits, e.quant_dtype, e.quant_dtype.bits
            ),
        ));
    }
    for (key, value) in KEYS.iter().zip(tensors(e)).skip(1) {
        if value.shape() != e.scale.shape() {
            return Err(invalid(
                module,
                target,
                key,
                format!(
                    "has shape {:?}, but scale has {:?}",
                    value.shape(),
                    e.scale.shape()
                ),
            ));
        }
    }
    if e.scale.numel() == 0 {
        return Err(invalid(module, target, "scale", "is empty".into()));
    }
    if let Some(s) = e
        .scale
        .data()
        .iter()
        .find(|s| !(s.is_finite() && **s > 0.0))
    {
        return Err(invalid(
            module,
            target,
            "scale",
            format!("holds {s}; scales must be finite and positive"),
        ));
    }
    if let Some(z) = e.zero_point.data().iter().find(|z| !z.is_finite()) {
        return Err(invalid(
            module,
            target,
            "zero_point",
            format!("holds {z}; zero points must be finite"),
        ));
    }
    Ok(())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A tensor as nested lists (a plain number for shape `[]`); `None` if a value is not finite.
fn to_nested(t: &Dense<f32>) -> Option<Value> {
    fn level(shape: &[usize], data: &[f32]) -> Option<Value> {
        match shape.split_first() {
            None => Number::from_f64(f64::from(*data.first()?)).map(Value::Number),
            Some((&n, rest)) => {
                let chunk = rest.iter().product::<usize>();
                let items = (0..n)
                    .map(|i| level(rest, &data[i * chunk..(i + 1) * chunk]))
                    .collect::<Option<Vec<_>>>()?;
                Some(Value::Array(items))
            }
        }
    }
    if t.data().iter().any(|x| !x.is_finite()) {
        return None;
    }
    // Per-tensor (one element, all dims 1): NNI's 0-d tensor is a plain number.
    if t.numel() == 1 && t.shape().iter().all(|&n| n == 1) {
        return level(&[], t.data());
    }
    level(t.shape(), t.data())
}

/// Nested lists (or a number) as a tensor; the message says what is wrong.
fn from_nested(v: &Value) -> std::result::Result<Dense<f32>, String> {
    fn shape_of(v: &Value) -> std::result::Result<Vec<usize>, String> {
        match v {
            Value::Number(_) => Ok(Vec::new()),
            Value::Array(items) => {
                let first = items.first().ok_or("an empty list")?;
                let mut shape = vec![items.len()];
                shape.extend(shape_of(first)?);
                Ok(shape)
            }
            other => Err(format!("expected numbers, found {}", json_kind(other))),
        }
    }
    fn flatten(v: &Value, shape: &[usize], out: &mut Vec<f32>) -> std::result::Result<(), String> {
        match (v, shape.split_first()) {
            (Value::Number(n), None) => {
                let x = n.as_f64().ok_or("a number out of range")?;
                out.push(x as f32);
                Ok(())
            }
            (Value::Array(items), Some((&len, rest))) if items.len() == len => {
                items.iter().try_for_each(|i| flatten(i, rest, out))
            }
            _ => Err("a ragged nested list (rows of different lengths or depths)".into()),
        }
    }
    let shape = shape_of(v)?;
    let mut data = Vec::with_capacity(shape.iter().product());
    flatten(v, &shape, &mut data)?;
    Ok(Dense::new(shape, data))
}

fn dtype_scheme_bits(
    module: &str,
    target: &str,
    fields: &Map<String, Value>,
) -> Result<(QuantDtype, Option<QuantScheme>, u32)> {
    let dtype = match fields.get("quant_dtype") {
        None | Some(Value::Null) => QuantDtype {
            signed: true,
            bits: 8,
        },
        Some(Value::String(s)) => QuantDtype::parse(s).ok_or_else(|| {
            invalid(
                module,
                target,
                "quant_dtype",
                format!("'{s}' is not int2..int8 or uint2..uint8"),
            )
        })?,
        Some(other) => {
            return Err(invalid(
                module,
                target,
                "quant_dtype",
                format!("expected a string, found {}", json_kind(other)),
            ));
        }
    };
    let scheme = match fields.get("quant_scheme") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "affine" => Some(QuantScheme::Affine),
        Some(Value::String(s)) if s == "symmetric" => Some(QuantScheme::Symmetric),
        Some(other) => {
            return Err(invalid(
                module,
                target,
                "quant_scheme",
                format!("expected \"affine\", \"symmetric\" or null, found {other}"),
            ));
        }
    };
    let bits = match fields.get("quant_bits") {
        None | Some(Value::Null) => dtype.bits,
        Some(v) => v
            .as_u64()
            .and_then(|b| u32::try_from(b).ok())
            .ok_or_else(|| {
                invalid(
                    module,
                    target,
                    "quant_bits",
                    format!("expected a non-negative integer, found {v}"),
                )
            })?,
    };
    Ok((dtype, scheme, bits))
}

fn entry_from_json(
    module: &str,
    target: &str,
    fields: &Map<String, Value>,
    transpose: bool,
) -> Result<CalibrationEntry> {
    let (dtype, scheme, bits) = dtype_scheme_bits(module, target, fields)?;
    let tensor = |key: &str| -> Result<Option<Dense<f32>>> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let t = from_nested(v).map_err(|m| invalid(module, target, key, m))?;
                let t = if transpose { transpose2(&t) } else { t };
                Ok(Some(per_tensor_as_scalar(t)))
            }
        }
    };
    let required = |key: &str| -> Result<Dense<f32>> {
        tensor(key)?.ok_or_else(|| invalid(module, target, key, "is missing".into()))
    };
    let scale = required("scale")?;
    let zero_point = required("zero_point")?;
    if zero_point.shape() != scale.shape() {
        return Err(invalid(
            module,
            target,
            "zero_point",
            format!(
                "has shape {:?}, but scale has {:?}",
                zero_point.shape(),
                scale.shape()
            ),
        ));
    }
    let (qmin, qmax) = quant_bounds(dtype);
    // NNI derives missing tracked values from scale and zero point.
    let derive = |q: f32| {
        let values = scale
            .data()
            .iter()
            .zip(zero_point.data())
            .map(|(&s, &z)| s * (q - z))
            .collect();
        Dense::new(scale.shape().to_vec(), values)
    };
    let tracked_min = tensor("tracked_min")?.unwrap_or_else(|| derive(qmin));
    let tracked_max = tensor("tracked_max")?.unwrap_or_else(|| derive(qmax));
    Ok(CalibrationEntry {
        scale,
        zero_point,
        quant_dtype: dtype,
        quant_scheme: scheme,
        quant_bits: bits,
        tracked_min,
        tracked_max,
    })
}
