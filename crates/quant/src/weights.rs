//! Quantization simulation of weights and biases on the user's own model type.
//!
//! [`WeightQuantization`] resolves a config's quantization rules into parameter targets (dtype,
//! scheme, granularity), computes their parameters with the [`Quantizer`]'s formulas, and
//! attaches a [`FakeQuantReparam`] to each parameter: a Burn [`Reparameterization`], so
//! `Param::val()` returns the fake-quantized weight while the model keeps its type and forward,
//! gradients reach the float weights (and LSQ's learnable scales), and the input model is never
//! changed. QAT's moving ranges are updated by [`WeightQuantization`]'s [`TrainHooks`].
//!
//! Activation targets (`_input_`, `_output_`) are not parameters: they are skipped here and
//! simulated by compress-speedup's `QuantSim`, which replays the captured graph with taps (see
//! the project's `docs/architecture.md`, "Activations").

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::module::{Module, Param, Reparameterization, Reparameterizer};
use burn::prelude::*;

use crate::{
    CalibrationConfig, CalibrationEntry, EmaObserver, MinMaxObserver, Observer, QuantizerHandle,
    quant_bounds, quant_scaling,
};
use compress_core::config::Mode;
use compress_core::index::param_handles;
use compress_core::mask::deep_copy;
use compress_core::paths::{params_of_rank, set_param_values};
use compress_core::prune::read_handle;
use compress_core::scores::pad4;
use compress_core::train::TrainHooks;
use compress_core::{
    CompressConfig, CompressError, Dense, ModuleIndex, Result,
    config::{QuantDtype, QuantScheme},
    quantizer::QuantParams,
};
use compress_core::{Granularity, granularity::Scaling};
use compress_core::{
    Quantizer,
    quantizer::{FakeQuantGrid, QuantInit, RangeTracking},
};

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

/// The fake quantization attached to a parameter: `Param::val()` is the quantizer's
/// [`Quantizer::fake_quant`] of the base. `scale` and `zero_point` hold the kept-dim block
/// shape padded with trailing 1s to rank 4.
#[derive(Module, Debug)]
pub struct FakeQuantReparam {
    /// Scale per block (trainable where the quantizer's [`Quantizer::learnable`] says so).
    pub scale: Param<Tensor<4>>,
    /// Zero point per block (likewise).
    pub zero_point: Param<Tensor<4>>,
    /// Lower end of the integer range.
    pub qmin: f64,
    /// Upper end of the integer range.
    pub qmax: f64,
    /// The quantizer whose formulas run.
    #[module(skip)]
    pub quantizer: QuantizerHandle,
    /// `[qmin, qmax, quantizer id]` as a constant (never trained) parameter, so module
    /// visitors, which see only parameters, can rebuild the effective value (the graph
    /// replay's [`compress_graph::ReparamRebuild`]; see [`QuantizerHandle`] for why an id).
    pub spec: Param<Tensor<1>>,
}

impl Reparameterization for FakeQuantReparam {
    const NAME: &'static str = "fake_quant";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let grid = FakeQuantGrid {
            scale: self.scale.val(),
            zero_point: self.zero_point.val(),
            qmin: self.qmin as f32,
            qmax: self.qmax as f32,
        };
        fake_quant_param(base, self.quantizer.quantizer(), &grid)
    }
}

/// The effective value of a parameter (rank at most 4) under a [`FakeQuantReparam`] of
/// `quantizer` with `grid`: what `Param::val()` returns. The base is reshaped to rank 4
/// (trailing dims of 1) for [`Quantizer::fake_quant`] and back. Exposed for executors that
/// rebuild parameters from a module visitor (which sees the base and the reparameterization's
/// parameters separately).
///
/// # Panics
/// If `base` has rank above 4.
pub fn fake_quant_param<const D: usize>(
    base: Tensor<D>,
    quantizer: &dyn Quantizer,
    grid: &FakeQuantGrid,
) -> Tensor<D> {
    let dims = base.dims();
    let padded = pad4(&dims);
    quantizer
        .fake_quant(base.reshape(padded), grid)
        .reshape(dims)
}

fn unsupported(message: String) -> CompressError {
    CompressError::Algorithm {
        algorithm: "quantization".into(),
        message,
    }
}

/// Simulated quantization of a model's parameters, as a config and a quantizer say.
pub struct WeightQuantization {
    quantizer: QuantizerHandle,
    targets: Vec<QuantTarget>,
    calibration: CalibrationConfig,
    trackers: BTreeMap<String, Box<dyn Observer>>,
    steps: usize,
    attached: bool,
    error: Option<CompressError>,
}

/// The targets `config`'s quantization rules select in `index` (parameters and activations).
///
/// # Errors
/// Config resolution errors.
pub(crate) fn quantization_targets(
    config: &CompressConfig,
    index: &ModuleIndex,
) -> Result<Vec<compress_core::Target>> {
    let quant_rules: std::collections::BTreeSet<usize> = config
        .rules
        .iter()
        .filter(|r| r.mode == Mode::Quantization)
        .map(|r| r.index)
        .collect();
    let mut targets = config.resolve(index)?.targets;
    targets.retain(|t| quant_rules.contains(&t.rule));
    Ok(targets)
}

impl WeightQuantization {
    /// Resolve `config`'s quantization rules against `index`.
    ///
    /// # Errors
    /// Config resolution errors; [`CompressError::Algorithm`] for parameters of rank above 4;
    /// granularity errors.
    pub fn new(
        quantizer: Arc<dyn Quantizer>,
        config: &CompressConfig,
        index: &ModuleIndex,
    ) -> Result<Self> {
        let mut targets = Vec::new();
        for t in quantization_targets(config, index)? {
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
            quantizer: QuantizerHandle::new(quantizer),
            targets,
            calibration: CalibrationConfig::new(),
            trackers: BTreeMap::new(),
            steps: 0,
            attached: false,
            error: None,
        })
    }

    /// The first error a QAT update hit (training goes on with the previous parameters).
    pub fn take_error(&mut self) -> Option<CompressError> {
        self.error.take()
    }

    /// The quantizer.
    pub fn quantizer(&self) -> &dyn Quantizer {
        self.quantizer.quantizer()
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
            .map(|t| Ok((t.path.clone(), read_handle(&handles, &t.path)?)))
            .collect()
    }

    /// Initial parameters of every target from its weight: the quantizer's
    /// [`Quantizer::init`] from the observed min/max (PTQ and QAT keep it; LSQ starts from the
    /// paper's `2 * mean|w| / sqrt(qmax)`, LSQ+ from the affine range, DoReFa from its fixed
    /// grid, BNN from scale 1), recorded with the quantizer's [`Quantizer::scheme`].
    ///
    /// # Errors
    /// When a weight cannot be read, or the quantizer's initialisation fails.
    pub fn calibrate<M: Module>(&mut self, model: &M) -> Result<&CalibrationConfig> {
        let weights = self.weights(&model.valid())?;
        let quantizer = self.quantizer.quantizer();
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
            let params = quantizer.init(&QuantInit {
                path: &t.path,
                weight: w,
                scaling: &t.scaling,
                dtype: t.dtype,
                scheme: t.scheme,
                qmin,
                qmax,
                observed: &observed,
            })?;
            self.calibration.insert(
                &t.module,
                &t.name,
                CalibrationEntry::new(params, t.dtype, quantizer.scheme(t.scheme)),
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
            quantizer: &'a QuantizerHandle,
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
                let learnable = self.quantizer.quantizer().learnable();
                let (qmin, qmax) = quant_bounds(t.dtype);
                let reparam = FakeQuantReparam {
                    scale: Param::from_tensor(tensor(&e.scale)).set_require_grad(learnable.scale),
                    zero_point: Param::from_tensor(tensor(&e.zero_point))
                        .set_require_grad(learnable.zero_point),
                    qmin: qmin as f64,
                    qmax: qmax as f64,
                    quantizer: self.quantizer.clone(),
                    spec: Param::from_tensor(Tensor::from_data(
                        TensorData::new(vec![qmin, qmax, self.quantizer.id() as f32], [3]),
                        &device,
                    ))
                    .set_require_grad(false),
                };
                (param, Some(reparam))
            }
        }
        Ok(deep_copy(model).apply_reparameterization(Attach {
            values: &values,
            quantizer: &self.quantizer,
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

    /// Ranges that follow training (QAT): observe every weight with the quantizer's
    /// [`RangeTracking`] and write the new parameters into `model`.
    fn update_ranges<M: Module>(&mut self, model: M) -> Result<M> {
        let weights = self.weights(&model.valid())?;
        let tracking = self.quantizer.quantizer().range_tracking();
        for t in &self.targets {
            let observer = match self.trackers.get_mut(&t.path) {
                Some(o) => o,
                None => {
                    let o = tracker(tracking, t.scaling.clone(), &t.path)?;
                    self.trackers.entry(t.path.clone()).or_insert(o)
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

/// A fresh observer of `tracking`'s kind.
pub(crate) fn tracker(
    tracking: RangeTracking,
    scaling: Scaling,
    path: &str,
) -> Result<Box<dyn Observer>> {
    Ok(match tracking {
        RangeTracking::MinMax => Box::new(MinMaxObserver::new(scaling, path.to_string())),
        RangeTracking::Ema { decay } => {
            Box::new(EmaObserver::new(scaling, path.to_string()).with_decay(decay)?)
        }
    })
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
        let quantizer = self.quantizer.quantizer();
        if !quantizer.tracks_ranges_in_training() || !quantizer.active_at(self.steps) {
            return model;
        }
        match self.update_ranges(model.clone()) {
            Ok(m) => m,
            Err(e) => {
                self.error.get_or_insert(e);
                model
            }
        }
    }
}

/// How the graph replay rebuilds a fake-quantized parameter from what a module visitor sees
/// (the base, `scale`, `zero_point` and `spec` = `[qmin, qmax, quantizer id]`): the quantizer
/// is resolved by its [`QuantizerHandle`] id, then runs as in `Param::val()`.
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
    let [qmin, qmax, id] = spec[..] else {
        return Err(format!(
            "the fake quantization's spec has {} values, not 3",
            spec.len()
        ));
    };
    let handle = QuantizerHandle::resolve(id as u32)
        .ok_or_else(|| format!("the fake quantization's quantizer #{id} is no longer alive"))?;
    let grid = FakeQuantGrid {
        scale: Tensor::from_dispatch(get("scale")?),
        zero_point: Tensor::from_dispatch(get("zero_point")?),
        qmin,
        qmax,
    };
    macro_rules! rebuild {
        ($d:literal) => {{
            let base: Tensor<$d> = Tensor::from_dispatch(base);
            fake_quant_param(base, handle.quantizer(), &grid).into_dispatch()
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
