//! Quantization simulation of weights and biases on the user's own model type.
//!
//! [`WeightQuantization`] resolves a config's quantization rules into parameter targets (dtype,
//! scheme, granularity), computes their parameters with the quantizer's [`QuantMethod`], and
//! attaches a [`FakeQuantReparam`] to each parameter: a Burn [`Reparameterization`], so
//! `Param::val()` returns the fake-quantized weight while the model keeps its type and forward,
//! gradients reach the float weights (and LSQ's learnable scales), and the input model is never
//! changed. QAT's moving ranges are updated by [`WeightQuantization`]'s [`TrainHooks`].
//!
//! Activation targets (`_input_`, `_output_`) are not parameters: they are skipped here and
//! simulated by compress-speedup's `QuantSim`, which replays the captured graph with taps (see
//! the project's `docs/architecture.md`, "Activations").

use std::collections::BTreeMap;

use burn::module::{Module, Param, Reparameterization, Reparameterizer};
use burn::prelude::*;

use crate::{
    CalibrationConfig, CalibrationEntry, EmaObserver, FakeQuantGrad, MinMaxObserver, Observer,
    fake_quant, quant_bounds, quant_scaling,
};
use compress_core::Mode;
use compress_core::TrainHooks;
use compress_core::deep_copy;
use compress_core::{
    CompressConfig, CompressError, Dense, ModuleIndex, QuantDtype, QuantParams, QuantScheme, Result,
};
use compress_core::{Granularity, Scaling};
use compress_core::{QuantMethod, Quantizer};
use compress_core::{block_expand, pad4};
use compress_core::{param_handles, read_flat};
use compress_core::{params_of_rank, set_param_values};

/// One quantized parameter.
#[derive(Debug, Clone)]
pub struct QuantTarget {
    /// Layer path (`conv1`).
    pub module: String,
    /// Parameter name (`weight`).
    pub name: String,
    /// `module.name`.
    pub path: String,
    /// Parameter shape, Burn layout.
    pub shape: Vec<usize>,
    /// The dtype (`int8` when the config leaves it unset, as NNI).
    pub dtype: QuantDtype,
    /// The scheme (`None`: NNI's unset scheme, computed as symmetric).
    pub scheme: Option<QuantScheme>,
    /// Block scaling of the granularity (per tensor by default).
    pub scaling: Scaling,
    /// Kept-dim block shape.
    pub keep: Vec<usize>,
}

/// The fake quantization attached to a parameter. `scale` and `zero_point` hold the kept-dim
/// block shape padded with trailing 1s to rank 4.
#[derive(Module, Debug)]
pub struct FakeQuantReparam {
    /// Scale per block (trainable for LSQ / LSQ+ only).
    pub scale: Param<Tensor<4>>,
    /// Zero point per block (trainable for LSQ+ only).
    pub zero_point: Param<Tensor<4>>,
    /// Lower end of the integer range.
    pub qmin: f64,
    /// Upper end of the integer range.
    pub qmax: f64,
    /// 0 clamp-round (STE), 1 clamp-round (clipped), 2 LSQ, 3 LSQ+, 4 DoReFa, 5 BNN.
    pub mode: usize,
    /// `[qmin, qmax, mode]` as a constant (never trained) parameter, so module visitors, which
    /// see only parameters, can rebuild the effective value with [`fake_quant_param`].
    pub spec: Param<Tensor<1>>,
}

const MODE_STE: usize = 0;
const MODE_CLIPPED: usize = 1;
const MODE_LSQ: usize = 2;
const MODE_LSQ_PLUS: usize = 3;
const MODE_DOREFA: usize = 4;
const MODE_BNN: usize = 5;

fn mode_of(method: QuantMethod) -> usize {
    match method {
        QuantMethod::MinMax => MODE_STE,
        QuantMethod::Ema { .. } => MODE_CLIPPED,
        QuantMethod::Lsq => MODE_LSQ,
        QuantMethod::LsqPlus => MODE_LSQ_PLUS,
        QuantMethod::Dorefa => MODE_DOREFA,
        QuantMethod::Bnn => MODE_BNN,
    }
}

/// `value` in the forward pass, `gradient`'s gradient in the backward pass. The gradient path
/// is added as `g - g.detach()`, exactly zero, so the forward value is `value` bit for bit.
fn straight_through<const D: usize>(value: Tensor<D>, gradient: Tensor<D>) -> Tensor<D> {
    if !gradient.is_tracked() {
        return value;
    }
    value.detach() + (gradient.clone() - gradient.detach())
}

impl Reparameterization for FakeQuantReparam {
    const NAME: &'static str = "fake_quant";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        fake_quant_param(
            base,
            self.scale.val(),
            self.zero_point.val(),
            self.qmin as f32,
            self.qmax as f32,
            self.mode,
        )
    }
}

/// The effective value of a parameter under [`FakeQuantReparam`] with these parts (`scale` and
/// `zero_point` in the padded block shape, `mode` as in [`FakeQuantReparam::mode`]): what
/// `Param::val()` returns. Exposed for executors that rebuild parameters from a module visitor
/// (which sees the base and the reparameterization's parameters separately).
pub fn fake_quant_param<const D: usize>(
    base: Tensor<D>,
    scale: Tensor<4>,
    zero_point: Tensor<4>,
    qmin: f32,
    qmax: f32,
    mode: usize,
) -> Tensor<D> {
    let dims = base.dims();
    match mode {
        MODE_STE | MODE_CLIPPED => {
            let scale = block_expand(scale.detach(), dims);
            let zero_point = block_expand(zero_point.detach(), dims);
            let grad = if mode == MODE_STE {
                FakeQuantGrad::Ste
            } else {
                FakeQuantGrad::Clipped
            };
            fake_quant(base, scale, zero_point, qmin, qmax, grad)
        }
        MODE_LSQ | MODE_LSQ_PLUS => {
            // LSQ's gradient scale g = 1 / sqrt(qmax * numel): value s, gradient g * ds.
            let numel = dims.iter().product::<usize>() as f64;
            let g = 1.0 / (qmax.max(1.0) as f64 * numel).sqrt();
            let scale = straight_through(scale.clone(), scale.mul_scalar(g));
            let scale = block_expand(scale, dims);
            let v = base / scale.clone();
            let v = if mode == MODE_LSQ_PLUS {
                let zp = zero_point;
                let zp = block_expand(straight_through(zp.clone(), zp.mul_scalar(g)), dims);
                let shifted = (v + zp.clone()).clamp(qmin, qmax);
                straight_through(shifted.clone().round(), shifted) - zp
            } else {
                let clamped = v.clamp(qmin, qmax);
                straight_through(clamped.clone().round(), clamped)
            };
            v * scale
        }
        MODE_DOREFA => {
            let levels = (qmax - qmin).max(1.0);
            let t = base.tanh();
            let max = t.clone().abs().max().detach().clamp_min(f32::EPSILON);
            let unit = t / max.mul_scalar(2.0).unsqueeze() + 0.5;
            let q = straight_through(
                unit.clone().mul_scalar(levels).round().div_scalar(levels),
                unit,
            );
            q.mul_scalar(2.0) - 1.0
        }
        _ => {
            // sign with 0 -> +1, straight through.
            let sign = base.clone().greater_equal_elem(0.0).float().mul_scalar(2.0) - 1.0;
            straight_through(sign, base)
        }
    }
}

fn unsupported(message: String) -> CompressError {
    CompressError::Algorithm {
        algorithm: "quantization".into(),
        message,
    }
}

/// Simulated quantization of a model's parameters, as a config and a quantizer say.
pub struct WeightQuantization {
    method: QuantMethod,
    targets: Vec<QuantTarget>,
    calibration: CalibrationConfig,
    ema: BTreeMap<String, EmaObserver>,
    steps: usize,
    attached: bool,
    error: Option<CompressError>,
}

impl WeightQuantization {
    /// Resolve `config`'s quantization rules against `index`.
    ///
    /// # Errors
    /// Config resolution errors; [`CompressError::Algorithm`] for parameters of rank above 4;
    /// granularity errors.
    pub fn new(
        quantizer: &dyn Quantizer,
        config: &CompressConfig,
        index: &ModuleIndex,
    ) -> Result<Self> {
        let quant_rules: std::collections::BTreeSet<usize> = config
            .rules
            .iter()
            .filter(|r| r.mode == Mode::Quantization)
            .map(|r| r.index)
            .collect();
        let mut targets = Vec::new();
        for t in config.resolve(index)?.targets {
            if !quant_rules.contains(&t.rule) {
                continue;
            }
            if t.name.starts_with('_') {
                continue;
            }
            if t.shape.len() > 4 {
                return Err(unsupported(format!(
                    "'{}' has rank {} (at most 4)",
                    t.path,
                    t.shape.len()
                )));
            }
            let granularity = t
                .setting
                .granularity
                .clone()
                .unwrap_or(Granularity::Default);
            let scaling =
                quant_scaling(&granularity, t.shape.len(), t.out_axis, t.in_axis, &t.path)?;
            let keep = scaling.shrunk_shape(&t.shape, true, &t.path)?;
            targets.push(QuantTarget {
                module: t.layer.clone(),
                name: t.name.clone(),
                path: t.path.clone(),
                shape: t.shape.clone(),
                dtype: t.setting.quant_dtype.unwrap_or(QuantDtype {
                    signed: true,
                    bits: 8,
                }),
                scheme: t.setting.quant_scheme,
                scaling,
                keep,
            });
        }
        Ok(Self {
            method: quantizer.method(),
            targets,
            calibration: CalibrationConfig::new(),
            ema: BTreeMap::new(),
            steps: 0,
            attached: false,
            error: None,
        })
    }

    /// The first error a QAT update hit (training goes on with the previous parameters).
    pub fn take_error(&mut self) -> Option<CompressError> {
        self.error.take()
    }

    /// The resolved targets.
    pub fn targets(&self) -> &[QuantTarget] {
        &self.targets
    }

    /// The calibration computed so far (by [`calibrate`](Self::calibrate), QAT's updates, or
    /// [`read_learned`](Self::read_learned)).
    pub fn calibration(&self) -> &CalibrationConfig {
        &self.calibration
    }

    fn weights<M: Module>(&self, model: &M) -> Result<BTreeMap<String, Dense<f32>>> {
        let wanted: std::collections::BTreeSet<&str> =
            self.targets.iter().map(|t| t.path.as_str()).collect();
        let handles = param_handles(model, |p| wanted.contains(p));
        self.targets
            .iter()
            .map(|t| {
                let (handle, shape) =
                    handles
                        .get(&t.path)
                        .ok_or_else(|| CompressError::UnknownParam {
                            path: t.path.clone(),
                            suggestion: None,
                        })?;
                Ok((t.path.clone(), read_flat(&t.path, handle, shape)?))
            })
            .collect()
    }

    /// Initial parameters of every target from its weight: the observed min/max (PTQ, QAT),
    /// LSQ's `2 * mean|w| / sqrt(qmax)` (the paper's initialisation, not NNI's constant 0.01),
    /// LSQ+'s min/max affine range, the fixed `[0, 1]` grid of DoReFa, or scale 1 (BNN).
    ///
    /// # Errors
    /// When a weight cannot be read.
    pub fn calibrate<M: Module>(&mut self, model: &M) -> Result<&CalibrationConfig> {
        let weights = self.weights(&model.valid())?;
        for t in &self.targets {
            let w = &weights[&t.path];
            let mut observer = MinMaxObserver::new(t.scaling.clone(), t.path.clone());
            observer.observe(w)?;
            let observed =
                observer
                    .qparams(t.dtype, t.scheme)
                    .ok_or_else(|| CompressError::Algorithm {
                        algorithm: "quantization".into(),
                        message: format!("nothing observed for '{}'", t.path),
                    })?;
            let (qmin, qmax) = quant_bounds(t.dtype);
            let params = match self.method {
                QuantMethod::MinMax | QuantMethod::Ema { .. } => observed,
                QuantMethod::Lsq => {
                    let mean_abs = t.scaling.shrink_with(
                        w,
                        true,
                        &t.path,
                        0.0f64,
                        |a, x| a + x.abs() as f64,
                        |a, n| (a / n.max(1) as f64) as f32,
                    )?;
                    let scale =
                        mean_abs.map(|&m| (2.0 * m / qmax.max(1.0).sqrt()).max(f32::EPSILON));
                    QuantParams {
                        zero_point: scale.map(|_| 0.0),
                        scale,
                        ..observed
                    }
                }
                QuantMethod::LsqPlus => {
                    let (scale, zero_point) = crate::qparams_from_range(
                        &observed.tracked_min,
                        &observed.tracked_max,
                        t.dtype,
                        QuantScheme::Affine,
                    );
                    QuantParams {
                        scale,
                        zero_point,
                        ..observed
                    }
                }
                QuantMethod::Dorefa => QuantParams {
                    scale: observed.scale.map(|_| 1.0 / (qmax - qmin).max(1.0)),
                    zero_point: observed.zero_point.map(|_| 0.0),
                    ..observed
                },
                QuantMethod::Bnn => QuantParams {
                    scale: observed.scale.map(|_| 1.0),
                    zero_point: observed.zero_point.map(|_| 0.0),
                    ..observed
                },
            };
            let scheme = match self.method {
                QuantMethod::LsqPlus | QuantMethod::Dorefa => Some(QuantScheme::Affine),
                QuantMethod::Lsq | QuantMethod::Bnn => Some(QuantScheme::Symmetric),
                _ => t.scheme,
            };
            self.calibration.insert(
                &t.module,
                &t.name,
                CalibrationEntry::new(params, t.dtype, scheme),
            );
        }
        Ok(&self.calibration)
    }

    /// A deep copy of `model` with fake quantization attached to every target, from
    /// `calibration` (e.g. [`calibrate`](Self::calibrate)'s, or one loaded from a file).
    ///
    /// # Errors
    /// [`CompressError::CalibrationShape`]-style errors when `calibration` does not fit the
    /// model, or a target has no entry.
    pub fn simulate<M: Module>(&self, model: &M, calibration: &CalibrationConfig) -> Result<M> {
        calibration.validate(&ModuleIndex::from_module(model))?;
        let mut values = BTreeMap::new();
        for t in &self.targets {
            let e =
                calibration
                    .get(&t.module, &t.name)
                    .ok_or_else(|| CompressError::Algorithm {
                        algorithm: "quantization".into(),
                        message: format!("the calibration has no entry for '{}'", t.path),
                    })?;
            let n: usize = t.keep.iter().product();
            for (key, d) in [("scale", &e.scale), ("zero_point", &e.zero_point)] {
                if d.numel() != n {
                    return Err(CompressError::QuantShape {
                        path: t.path.clone(),
                        key,
                        found: d.shape().to_vec(),
                        tensor: t.shape.clone(),
                        reason: format!("the granularity needs {n} blocks {:?}", t.keep),
                    });
                }
            }
            values.insert(t.path.clone(), (t, e.clone()));
        }
        struct Attach<'a> {
            values: &'a BTreeMap<String, (&'a QuantTarget, CalibrationEntry)>,
            mode: usize,
        }
        impl Reparameterizer for Attach<'_> {
            type Reparam = FakeQuantReparam;
            fn reparameterize<const D: usize>(
                &mut self,
                path: &str,
                param: Param<Tensor<D>>,
            ) -> (Param<Tensor<D>>, Option<FakeQuantReparam>) {
                let Some((t, e)) = self.values.get(path) else {
                    return (param, None);
                };
                let device = param.lazy_device();
                let padded = pad4(&t.keep);
                let tensor = |d: &Dense<f32>| {
                    Tensor::<1>::from_data(TensorData::new(d.data().to_vec(), [d.numel()]), &device)
                        .reshape(padded)
                };
                let learnable = matches!(self.mode, MODE_LSQ | MODE_LSQ_PLUS);
                let (qmin, qmax) = quant_bounds(t.dtype);
                let reparam = FakeQuantReparam {
                    scale: Param::from_tensor(tensor(&e.scale)).set_require_grad(learnable),
                    zero_point: Param::from_tensor(tensor(&e.zero_point))
                        .set_require_grad(self.mode == MODE_LSQ_PLUS),
                    qmin: qmin as f64,
                    qmax: qmax as f64,
                    mode: self.mode,
                    spec: Param::from_tensor(Tensor::from_data(
                        TensorData::new(vec![qmin, qmax, self.mode as f32], [3]),
                        &device,
                    ))
                    .set_require_grad(false),
                };
                (param, Some(reparam))
            }
        }
        Ok(deep_copy(model).apply_reparameterization(Attach {
            values: &values,
            mode: mode_of(self.method),
        }))
    }

    /// [`simulate`](Self::simulate) with the current calibration, for a model that will be
    /// trained with this as its [`TrainHooks`]: QAT's updates then write into the attached
    /// fake quantization instead of attaching it again.
    ///
    /// # Errors
    /// As [`simulate`](Self::simulate).
    pub fn attach<M: Module>(&mut self, model: &M) -> Result<M> {
        let calibration = self.calibration.clone();
        let simulated = self.simulate(model, &calibration)?;
        self.attached = true;
        Ok(simulated)
    }

    /// Read the (learned) scales and zero points back from a simulated model into
    /// [`calibration`](Self::calibration) (LSQ / LSQ+ after training).
    ///
    /// # Errors
    /// When a value cannot be read.
    pub fn read_learned<M: Module>(&mut self, model: &M) -> Result<&CalibrationConfig> {
        let found =
            params_of_rank::<4, M>(model, |p| p.split('.').any(|s| s == FakeQuantReparam::NAME));
        for t in &self.targets {
            let Some(e) = self.calibration.get(&t.module, &t.name).cloned() else {
                continue;
            };
            let read = |key: &str| -> Result<Option<Dense<f32>>> {
                match found.get(&reparam_path(&t.path, key)) {
                    Some((_, tensor)) => Ok(Some(
                        Dense::from_tensor(tensor.clone().detach(), &t.path)?
                            .reshape(t.keep.clone()),
                    )),
                    None => Ok(None),
                }
            };
            let (Some(scale), Some(zero_point)) = (read("scale")?, read("zero_point")?) else {
                continue;
            };
            let params = QuantParams {
                scale,
                zero_point,
                tracked_min: e.tracked_min.clone(),
                tracked_max: e.tracked_max.clone(),
            };
            self.calibration.insert(
                &t.module,
                &t.name,
                CalibrationEntry::new(params, e.quant_dtype, e.quant_scheme),
            );
        }
        Ok(&self.calibration)
    }

    /// QAT: recompute the EMA range of every weight and write the new parameters into `model`.
    fn update_ema<M: Module>(&mut self, model: M, decay: f64) -> Result<M> {
        let weights = self.weights(&model.valid())?;
        for t in &self.targets {
            let observer = match self.ema.get_mut(&t.path) {
                Some(o) => o,
                None => {
                    let o =
                        EmaObserver::new(t.scaling.clone(), t.path.clone()).with_decay(decay)?;
                    self.ema.entry(t.path.clone()).or_insert(o)
                }
            };
            observer.observe(&weights[&t.path])?;
            if let Some(params) = observer.qparams(t.dtype, t.scheme) {
                self.calibration.insert(
                    &t.module,
                    &t.name,
                    CalibrationEntry::new(params, t.dtype, t.scheme),
                );
            }
        }
        if !self.attached {
            self.attached = true;
            return self.simulate(&model, &self.calibration.clone());
        }
        Ok(write_values(model, &self.targets, &self.calibration))
    }
}

/// The path of a [`FakeQuantReparam`] field of the parameter at `path`.
fn reparam_path(path: &str, field: &str) -> String {
    format!("{path}.{}.{field}", FakeQuantReparam::NAME)
}

/// Write `calibration`'s scales and zero points into the model's fake-quant tensors.
fn write_values<M: Module>(
    model: M,
    targets: &[QuantTarget],
    calibration: &CalibrationConfig,
) -> M {
    let mut values = BTreeMap::new();
    for t in targets {
        if let Some(e) = calibration.get(&t.module, &t.name) {
            values.insert(reparam_path(&t.path, "scale"), e.scale.data().to_vec());
            values.insert(
                reparam_path(&t.path, "zero_point"),
                e.zero_point.data().to_vec(),
            );
        }
    }
    set_param_values(model, &values)
}

impl<M: Module> TrainHooks<M> for WeightQuantization {
    fn after_step(&mut self, model: M, _step: usize) -> M {
        self.steps += 1;
        let QuantMethod::Ema {
            decay,
            quant_start_step,
        } = self.method
        else {
            return model;
        };
        if self.steps < quant_start_step {
            return model;
        }
        match self.update_ema(model.clone(), decay) {
            Ok(m) => m,
            Err(e) => {
                self.error.get_or_insert(e);
                model
            }
        }
    }
}

/// How the graph replay rebuilds a fake-quantized parameter from what a module visitor sees
/// (the base, `scale`, `zero_point` and `spec` = `[qmin, qmax, mode]`).
fn rebuild_fake_quant(
    base: compress_graph::DispatchTensor,
    rank: usize,
    parts: &compress_graph::ReparamParts,
) -> std::result::Result<compress_graph::DispatchTensor, String> {
    let get = |k: &str| {
        parts
            .get(k)
            .cloned()
            .ok_or_else(|| format!("the fake quantization lacks its '{k}'"))
    };
    let spec: Tensor<1> = Tensor::from_dispatch(get("spec")?);
    let spec = spec
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|_| "the fake quantization has a bad spec".to_string())?;
    let [qmin, qmax, mode] = spec[..] else {
        return Err(format!(
            "the fake quantization's spec has {} values, not 3",
            spec.len()
        ));
    };
    let scale: Tensor<4> = Tensor::from_dispatch(get("scale")?);
    let zero_point: Tensor<4> = Tensor::from_dispatch(get("zero_point")?);
    macro_rules! rebuild {
        ($d:literal) => {{
            let base: Tensor<$d> = Tensor::from_dispatch(base);
            fake_quant_param(base, scale, zero_point, qmin, qmax, mode as usize).into_dispatch()
        }};
    }
    Ok(match rank {
        1 => rebuild!(1),
        2 => rebuild!(2),
        3 => rebuild!(3),
        _ => rebuild!(4),
    })
}

inventory::submit! {
    compress_graph::ReparamRebuild { name: FakeQuantReparam::NAME, rebuild: rebuild_fake_quant }
}
