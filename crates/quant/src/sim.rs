//! Quantization simulation of a whole model: weights and biases through compress-core's
//! [`WeightQuantization`] (a reparameterization on the parameters), activations (`_input_`,
//! `_output_` of layers) through a [`Replay`] of the captured forward with taps. The user's model
//! type and forward are never edited.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::{
    CalibrationConfig, CalibrationEntry, Observer, QuantizerHandle, WeightQuantization,
    quant_bounds,
};
use burn::module::Module;
use burn::prelude::*;
use compress_core::{
    CompressConfig, CompressError, Dense, Granularity, ModuleIndex, Quantizer,
    config::{QuantDtype, QuantScheme},
    quantizer::{ActivationInput, ActivationSite},
    train::TrainHooks,
};

use crate::{QuantError, Result};
use compress_graph::{Replay, Site, Tap};

/// One quantized activation.
#[derive(Debug, Clone)]
pub struct ActivationTarget {
    /// Layer path.
    pub module: String,
    /// Input or output.
    pub site: Site,
    /// The dtype (int8 when unset).
    pub dtype: QuantDtype,
    /// The scheme (`None`: symmetric).
    pub scheme: Option<QuantScheme>,
    /// Per channel (dim 1) instead of per tensor.
    pub per_channel: bool,
}

/// What the activation taps do on a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimPhase {
    /// Observe ranges, leave values unchanged (calibration).
    Observe,
    /// Observe (QAT's EMA) and fake-quantize with parameters refreshed from the range.
    Train,
    /// Fake-quantize with the current parameters.
    Eval,
}

struct ActState {
    target: ActivationTarget,
    observer: Box<dyn Observer>,
    /// Scale and zero point per channel (or one), once computed.
    params: Option<(Vec<f32>, Vec<f32>)>,
    /// Rank of the activation, for NNI's kept-dim shape in the calibration.
    rank: usize,
}

struct Taps {
    quantizer: QuantizerHandle,
    phase: SimPhase,
    steps: usize,
    states: BTreeMap<(String, Site), ActState>,
}

/// Weights and activations of a model, quantized in simulation.
pub struct QuantSim {
    bias_correction: bool,
    weights: RefCell<WeightQuantization>,
    taps: RefCell<Taps>,
    replays: RefCell<HashMap<Vec<usize>, Replay>>,
    error: RefCell<Option<QuantError>>,
}

impl QuantSim {
    /// Resolve `config`'s quantization rules: parameter targets and activation targets.
    ///
    /// # Errors
    /// Config resolution errors; activation targets with a granularity other than per tensor or
    /// `per_channel`.
    pub fn new(
        quantizer: Arc<dyn Quantizer>,
        config: &CompressConfig,
        index: &ModuleIndex,
    ) -> Result<Self> {
        let handle = QuantizerHandle::new(quantizer.clone());
        let weights = WeightQuantization::new(quantizer, config, index)?;
        let mut states = BTreeMap::new();
        for t in crate::weights::quantization_targets(config, index)? {
            let site = match t.name.as_str() {
                "_input_" => Site::Input,
                "_output_" => Site::Output,
                _ => continue,
            };
            let per_channel = match t
                .setting
                .granularity
                .clone()
                .unwrap_or(Granularity::Default)
            {
                Granularity::Default => false,
                Granularity::PerChannel => true,
                other => {
                    return Err(QuantError::Core(CompressError::Algorithm {
                        algorithm: "quantization".into(),
                        message: format!(
                            "'{}': activations are quantized per tensor or per_channel, not {other:?}",
                            t.path
                        ),
                    }));
                }
            };
            // Observers see `[2, C]` (each channel's min and max) and reduce per block.
            let scaling = if per_channel {
                Granularity::PerChannel.scaling(2, None, None, &t.path)?
            } else {
                crate::per_tensor_scaling()
            };
            let observer =
                crate::weights::tracker(handle.quantizer().range_tracking(), scaling, &t.path)?;
            let target = ActivationTarget {
                module: t.layer.clone(),
                site,
                dtype: t.setting.quant_dtype.unwrap_or(QuantDtype {
                    signed: true,
                    bits: 8,
                }),
                scheme: t.setting.quant_scheme,
                per_channel,
            };
            states.insert(
                (t.layer.clone(), site),
                ActState {
                    target,
                    observer,
                    params: None,
                    rank: 0,
                },
            );
        }
        Ok(Self {
            bias_correction: handle.quantizer().bias_correction(),
            weights: RefCell::new(weights),
            taps: RefCell::new(Taps {
                quantizer: handle,
                phase: SimPhase::Observe,
                steps: 0,
                states,
            }),
            replays: RefCell::new(HashMap::new()),
            error: RefCell::new(None),
        })
    }

    /// The quantizer.
    pub fn quantizer(&self) -> Arc<dyn Quantizer> {
        self.taps.borrow().quantizer.shared()
    }

    /// The weight side.
    pub fn weights(&self) -> std::cell::Ref<'_, WeightQuantization> {
        self.weights.borrow()
    }

    /// The activation targets.
    pub fn activation_targets(&self) -> Vec<ActivationTarget> {
        self.taps
            .borrow()
            .states
            .values()
            .map(|s| s.target.clone())
            .collect()
    }

    /// Set what the activation taps do.
    pub fn set_phase(&self, phase: SimPhase) {
        self.taps.borrow_mut().phase = phase;
    }

    /// Calibrate: weights from their values, activations by observing `batches` through
    /// `classify` (NNI's PTQ calibration; the model is only read). Earlier observations are
    /// dropped.
    ///
    /// # Errors
    /// [`QuantError::Core`] "calibration with no data" when `batches` is empty and there are
    /// activation targets; capture, replay and observer errors.
    pub fn calibrate<M: Module, const DI: usize, const DO: usize>(
        &mut self,
        model: &M,
        batches: impl IntoIterator<Item = Tensor<DI>>,
        classify: impl Fn(&M, Tensor<DI>) -> Tensor<DO> + Copy,
    ) -> Result<CalibrationConfig> {
        self.weights.get_mut().calibrate(model)?;
        let has_activations = !self.taps.borrow().states.is_empty();
        if has_activations {
            // A calibration observes these batches afresh (a second one, after bias correction,
            // must not keep the ranges of the first).
            for s in self.taps.get_mut().states.values_mut() {
                s.observer.reset();
                s.params = None;
            }
            self.set_phase(SimPhase::Observe);
            let mut seen = 0;
            for x in batches {
                let _ = self.forward(model, x, classify)?;
                seen += 1;
            }
            if seen == 0 {
                return Err(QuantError::Core(CompressError::Algorithm {
                    algorithm: "quantization".into(),
                    message: "calibration with no data: activation targets need at least one batch"
                        .into(),
                }));
            }
            self.taps.borrow_mut().refresh();
            self.set_phase(SimPhase::Eval);
        }
        Ok(self.calibration())
    }

    /// Whether the quantizer asked for bias correction ([`Quantizer::bias_correction`]).
    pub fn wants_bias_correction(&self) -> bool {
        self.bias_correction
    }

    /// NNI's PTQ bias correction, empirical and layer by layer (Nagel et al., 2019): in graph
    /// order, run `batches` through the float model and through the model with fake-quantized
    /// weights (activations float, earlier layers already corrected), and add the layer's mean
    /// output error per output channel (float minus quantized) to its bias. Call after
    /// [`calibrate`](Self::calibrate), then calibrate the returned model again (its activation
    /// ranges moved). Layers without a bias are left alone.
    ///
    /// # Errors
    /// Capture and replay errors.
    pub fn correct_biases<M: Module, const DI: usize, const DO: usize>(
        &self,
        model: &M,
        batches: &[Tensor<DI>],
        classify: impl Fn(&M, Tensor<DI>) -> Tensor<DO> + Copy,
    ) -> Result<M> {
        let index = ModuleIndex::from_module(model);
        let quantized: std::collections::BTreeSet<String> = self
            .weights
            .borrow()
            .targets()
            .iter()
            .filter(|t| t.name == "weight" && index.param(&format!("{}.bias", t.module)).is_some())
            .map(|t| t.module.clone())
            .collect();
        let replays = batches
            .iter()
            .map(|x| Replay::capture(model, x.dims(), classify))
            .collect::<compress_graph::Result<Vec<_>>>()?;
        let mut order: Vec<String> = Vec::new();
        for l in replays.first().map(|r| r.layers()).unwrap_or_default() {
            if quantized.contains(&l.layer) && !order.contains(&l.layer) {
                order.push(l.layer.clone());
            }
        }
        let means = |m: &M, layer: &str| -> Result<Vec<f64>> {
            let mut tap = ChannelMeans {
                layers: std::iter::once(layer.to_string()).collect(),
                sums: BTreeMap::new(),
            };
            for (replay, x) in replays.iter().zip(batches) {
                let _: Tensor<DO> = replay.run(m, x.clone(), &mut tap)?;
            }
            Ok(tap
                .sums
                .remove(layer)
                .map(|(sums, n)| sums.iter().map(|s| s / n.max(1.0)).collect())
                .unwrap_or_default())
        };
        let mut corrected = compress_core::mask::deep_copy(model);
        for layer in &order {
            let float = means(model, layer)?;
            let quant = means(&self.simulate(&corrected)?, layer)?;
            let shift: Vec<f32> = float
                .iter()
                .zip(&quant)
                .map(|(f, q)| (f - q) as f32)
                .collect();
            corrected = compress_core::paths::map_params(
                corrected,
                &mut Shift {
                    path: format!("{layer}.bias"),
                    shift,
                },
            );
        }
        Ok(corrected)
    }

    /// Everything calibrated so far, weights and activations.
    pub fn calibration(&self) -> CalibrationConfig {
        let mut c = self.weights.borrow().calibration().clone();
        for s in self.taps.borrow().states.values() {
            if let Some(e) = s.entry() {
                c.insert(&s.target.module, s.target.site.target_name(), e);
            }
        }
        c
    }

    /// Use a calibration (e.g. loaded from a file) for the activations; returns the model with
    /// its weights fake-quantized from the same calibration.
    ///
    /// # Errors
    /// Entries missing for a target, shapes that do not fit, and [`WeightQuantization::simulate`]'s
    /// errors.
    pub fn load_calibration<M: Module>(
        &self,
        model: &M,
        calibration: &CalibrationConfig,
    ) -> Result<M> {
        let simulated = self.weights.borrow().simulate(model, calibration)?;
        let mut taps = self.taps.borrow_mut();
        for s in taps.states.values_mut() {
            let name = s.target.site.target_name();
            let e = calibration.get(&s.target.module, name).ok_or_else(|| {
                QuantError::Core(CompressError::Algorithm {
                    algorithm: "quantization".into(),
                    message: format!(
                        "the calibration has no entry for '{}.{name}'",
                        s.target.module
                    ),
                })
            })?;
            s.params = Some((e.scale.data().to_vec(), e.zero_point.data().to_vec()));
            s.rank = e.scale.shape().len().max(2);
            s.observer.reset();
            s.observer.observe(&Dense::new(
                vec![2, e.tracked_min.numel()],
                e.tracked_min
                    .data()
                    .iter()
                    .chain(e.tracked_max.data())
                    .copied()
                    .collect(),
            ))?;
        }
        taps.phase = SimPhase::Eval;
        Ok(simulated)
    }

    /// `model` with its weights fake-quantized by the current calibration (call after
    /// [`calibrate`](Self::calibrate)).
    ///
    /// # Errors
    /// As [`WeightQuantization::simulate`].
    pub fn simulate<M: Module>(&self, model: &M) -> Result<M> {
        let weights = self.weights.borrow();
        Ok(weights.simulate(model, weights.calibration())?)
    }

    /// [`simulate`](Self::simulate) for a model that is then trained with `&self` as its
    /// [`TrainHooks`] (QAT, LSQ): the hooks update the attached fake quantization.
    ///
    /// # Errors
    /// As [`simulate`](Self::simulate).
    pub fn attach<M: Module>(&self, model: &M) -> Result<M> {
        Ok(self.weights.borrow_mut().attach(model)?)
    }

    /// After training LSQ / LSQ+: read the learned weight scales (and zero points) of `model`
    /// into the calibration.
    ///
    /// # Errors
    /// When a value cannot be read.
    pub fn read_learned<M: Module>(&self, model: &M) -> Result<()> {
        self.weights.borrow_mut().read_learned(model)?;
        Ok(())
    }

    /// The forward of `model` (its weights as they are: pass a [`simulate`](Self::simulate)d
    /// model for fake-quantized weights) with the activation taps of the current phase. Graphs
    /// are captured once per input shape.
    ///
    /// # Errors
    /// Capture and replay errors, observer errors.
    pub fn forward<M: Module, const DI: usize, const DO: usize>(
        &self,
        model: &M,
        x: Tensor<DI>,
        classify: impl Fn(&M, Tensor<DI>) -> Tensor<DO>,
    ) -> Result<Tensor<DO>> {
        if self.taps.borrow().states.is_empty() {
            return Ok(classify(model, x));
        }
        let shape = x.dims().to_vec();
        let mut replays = self.replays.borrow_mut();
        if !replays.contains_key(&shape) {
            let replay = Replay::capture(model, x.dims(), &classify)?;
            replays.insert(shape.clone(), replay);
        }
        let replay = &replays[&shape];
        let mut taps = self.taps.borrow_mut();
        Ok(replay.run(model, x, &mut *taps)?)
    }

    /// [`forward`](Self::forward) for closures that cannot fail (a training loop): an error is
    /// kept for [`take_error`](Self::take_error) and the plain forward is returned.
    pub fn forward_or_record<M: Module, const DI: usize, const DO: usize>(
        &self,
        model: &M,
        x: Tensor<DI>,
        classify: impl Fn(&M, Tensor<DI>) -> Tensor<DO> + Copy,
    ) -> Tensor<DO> {
        match self.forward(model, x.clone(), classify) {
            Ok(y) => y,
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                classify(model, x)
            }
        }
    }

    /// The first error a recorded forward or a training update (QAT's weight ranges) hit.
    pub fn take_error(&self) -> Option<QuantError> {
        if let Some(e) = self.weights.borrow_mut().take_error() {
            return Some(e.into());
        }
        self.error.borrow_mut().take()
    }
}

impl ActState {
    fn entry(&self) -> Option<CalibrationEntry> {
        let (scale, zp) = self.params.as_ref()?;
        let (min, max) = self.observer.tracked()?;
        let shape = self.shape();
        let d = |v: &[f32]| Dense::new(shape.clone(), v.to_vec());
        let params = compress_core::quantizer::QuantParams {
            scale: d(scale),
            zero_point: d(zp),
            tracked_min: d(min.data()),
            tracked_max: d(max.data()),
        };
        Some(CalibrationEntry::new(
            params,
            self.target.dtype,
            self.target.scheme,
        ))
    }

    /// NNI's kept-dim shape: `[1, C, 1, ...]` in the activation's rank, or `[]`.
    fn shape(&self) -> Vec<usize> {
        match &self.params {
            Some((s, _)) if self.target.per_channel => {
                let mut shape = vec![1; self.rank.max(2)];
                shape[1] = s.len();
                shape
            }
            _ => Vec::new(),
        }
    }
}

impl Taps {
    /// Recompute every target's parameters from its tracked range.
    fn refresh(&mut self) {
        for s in self.states.values_mut() {
            if let Some(p) = s.observer.qparams(s.target.dtype, s.target.scheme) {
                s.params = Some((p.scale.data().to_vec(), p.zero_point.data().to_vec()));
            }
        }
    }
}

impl Tap for Taps {
    fn wants(&self, layer: &str, site: Site) -> bool {
        self.states.contains_key(&(layer.to_string(), site))
    }

    fn tap(
        &mut self,
        layer: &str,
        site: Site,
        rank: usize,
        value: Tensor<3>,
    ) -> compress_graph::Result<Tensor<3>> {
        let phase = self.phase;
        let quantizer = self.quantizer.quantizer();
        let started = quantizer.active_at(self.steps);
        let Some(s) = self.states.get_mut(&(layer.to_string(), site)) else {
            return Ok(value);
        };
        s.rank = rank;
        if matches!(phase, SimPhase::Observe | SimPhase::Train) {
            let [_, c, _] = value.dims();
            let detached = value.clone().detach();
            let (mn, mx) = if s.target.per_channel {
                let per = detached.swap_dims(0, 1).reshape([c as i32, -1]);
                (per.clone().min_dim(1), per.max_dim(1))
            } else {
                let flat = detached.reshape([1, -1]);
                (flat.clone().min_dim(1), flat.max_dim(1))
            };
            let n = if s.target.per_channel { c } else { 1 };
            let both = Tensor::cat(vec![mn.reshape([1, n]), mx.reshape([1, n])], 0);
            let data = Dense::from_tensor(both, layer)?;
            s.observer.observe(&data)?;
            if phase == SimPhase::Train
                && started
                && let Some(p) = s.observer.qparams(s.target.dtype, s.target.scheme)
            {
                s.params = Some((p.scale.data().to_vec(), p.zero_point.data().to_vec()));
            }
        }
        if phase == SimPhase::Observe || (phase == SimPhase::Train && !started) {
            return Ok(value);
        }
        let device = value.device();
        let as_tensor = |v: &[f32]| {
            let n = v.len();
            Tensor::<1>::from_data(TensorData::new(v.to_vec(), [n]), &device).reshape([1, n, 1])
        };
        let (qmin, qmax) = quant_bounds(s.target.dtype);
        let input = ActivationInput {
            layer,
            site: match site {
                Site::Input => ActivationSite::Input,
                Site::Output => ActivationSite::Output,
            },
            dtype: s.target.dtype,
            scheme: s.target.scheme,
            qmin,
            qmax,
            params: s
                .params
                .as_ref()
                .map(|(scale, zp)| (as_tensor(scale), as_tensor(zp))),
        };
        Ok(quantizer.quantize_activation(value, &input)?)
    }
}

/// Adds `shift` to the parameter at `path` (bias correction).
struct Shift {
    path: String,
    shift: Vec<f32>,
}

impl compress_core::paths::PathMapper for Shift {
    fn map<const D: usize>(
        &mut self,
        path: &str,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        if path != self.path {
            return param;
        }
        let shift = &self.shift;
        compress_core::mask::map_param_leaf(param, |t| {
            let (shape, device) = (t.shape(), t.device());
            let n = shift.len();
            t + Tensor::<1>::from_data(TensorData::new(shift.clone(), [n]), &device).reshape(shape)
        })
    }
}

/// Per-channel sums of layer outputs (bias correction).
struct ChannelMeans {
    layers: std::collections::BTreeSet<String>,
    sums: BTreeMap<String, (Vec<f64>, f64)>,
}

impl Tap for ChannelMeans {
    fn wants(&self, layer: &str, site: Site) -> bool {
        site == Site::Output && self.layers.contains(layer)
    }

    fn tap(
        &mut self,
        layer: &str,
        _: Site,
        _: usize,
        value: Tensor<3>,
    ) -> compress_graph::Result<Tensor<3>> {
        let [d0, c, rest] = value.dims();
        let sums = value
            .clone()
            .detach()
            .swap_dims(0, 1)
            .reshape([c, d0 * rest])
            .sum_dim(1);
        let sums = Dense::from_tensor(sums, layer)?;
        let entry = self
            .sums
            .entry(layer.to_string())
            .or_insert_with(|| (vec![0.0; c], 0.0));
        for (acc, v) in entry.0.iter_mut().zip(sums.data()) {
            *acc += f64::from(*v);
        }
        entry.1 += (d0 * rest) as f64;
        Ok(value)
    }
}

/// The training hooks of QAT (EMA updates of the weight ranges, the step count that gates
/// `quant_start_step`), on a shared reference so the same `QuantSim` can also run the forward.
impl<M: Module> TrainHooks<M> for &QuantSim {
    fn after_step(&mut self, model: M, step: usize) -> M {
        self.taps.borrow_mut().steps += 1;
        TrainHooks::after_step(&mut *self.weights.borrow_mut(), model, step)
    }
}
