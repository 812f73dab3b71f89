//! Quantize an image classifier with any registered quantizer, end to end: calibrate, train
//! (QAT, LSQ, LSQ+, DoReFa, BNN), evaluate in simulation (weights and activations), and export
//! the weights to Burn's native quantized tensors.
//!
//! ```no_run
//! use burn::prelude::*;
//! use burn_compress::core::dataset::ImageDataset;
//! use burn_compress::quantize::{QuantizeJob, quantize_classifier};
//! use burn_compress::zoo::LeNet5;
//! use burn_compress::CompressConfig;
//!
//! let (train, test) = ImageDataset::load("data/mnist5k.safetensors", 255.0)?.split();
//! let model = LeNet5::new(&Device::flex()); // trained weights in practice
//! let config = CompressConfig::from_file("configs/lenet5-ptq-int8.toml")?;
//! let job = QuantizeJob::new("ptq", config);
//! let quantized = quantize_classifier(&model, &train, &job)?;
//! println!("accuracy {:.4}", quantized.accuracy(&test)?);
//! let native = quantized.export(Default::default())?; // Burn Q8S tensors
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Mixed precision: set [`QuantizeJob::mixed`] and each quantized weight gets 8, 4 or 2 bits,
//! chosen from its sensitivity so that the exported file meets the budget
//! ([`compress_quant::plan_mixed_precision`]); activations keep the config's settings.
//!
//! ```no_run
//! # use burn::prelude::*;
//! # use burn_compress::core::dataset::ImageDataset;
//! # use burn_compress::quantize::{QuantizeJob, quantize_classifier};
//! # use burn_compress::quant::{MixedPrecision, SizeBudget};
//! # use burn_compress::zoo::LeNet5;
//! # use burn_compress::CompressConfig;
//! # let (train, test) = ImageDataset::load("data/mnist5k.safetensors", 255.0)?.split();
//! # let model = LeNet5::new(&Device::flex());
//! let config = CompressConfig::from_file("configs/lenet5-ptq-int8.toml")?;
//! let mut job = QuantizeJob::new("ptq", config);
//! job.mixed = Some(MixedPrecision::new(SizeBudget::parse("5x")?));
//! let quantized = quantize_classifier(&model, &train, &job)?;
//! let plan = quantized.mixed.as_ref().unwrap();
//! println!("fc1: {:?} bits, file {:.2}x smaller", plan.bits("fc1"), plan.ratio());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::module::Module;
use burn::prelude::*;
use compress_core::toml::Table;
use compress_core::{
    AlgorithmEntry, CompressConfig, ModuleIndex, Quantizer,
    dataset::ImageDataset,
    quantizer::ExportInput,
    train::{TrainConfig, accuracy, train_classifier},
};
use compress_quant::QuantError;
use compress_quant::{
    AffinePolicy, QuantBits, QuantLevel, QuantSim, SimPhase, WeightQuant, quantize_weights,
};
use compress_quant::{CalibrationConfig, MixedPlan, MixedPrecision};
use compress_zoo::ImageClassifier;

/// What to quantize, and how.
#[derive(Debug, Clone)]
pub struct QuantizeJob {
    /// Registry name of the quantizer (`ptq`, `qat`, `lsq`, ...).
    pub algorithm: String,
    /// Its options (the config's `[algorithm]` table without `name`).
    pub options: Table,
    /// The quantization config.
    pub config: CompressConfig,
    /// Calibration batches taken from the start of the training data.
    pub calib_batches: usize,
    /// Images per calibration batch.
    pub batch_size: usize,
    /// Training for the training-aware quantizers; `None` skips training (then QAT and LSQ
    /// behave as a calibrated PTQ).
    pub train: Option<TrainConfig>,
    /// Mixed precision: choose each quantized weight's width (8, 4, 2 bits) from its
    /// sensitivity on the calibration batches so that the exported file meets the budget; the
    /// config's `quant_dtype` of weights is replaced, everything else (activations, schemes,
    /// granularities) is kept. `None`: the config's widths.
    pub mixed: Option<MixedPrecision>,
}

impl QuantizeJob {
    /// `algorithm` with `config`, 8 calibration batches of 64, no training, and the config's
    /// `[algorithm]` options when it names the same algorithm.
    pub fn new(algorithm: &str, config: CompressConfig) -> Self {
        let options = match &config.algorithm {
            Some(a) if a.name == algorithm => a.options.clone(),
            _ => Table::new(),
        };
        Self {
            algorithm: algorithm.to_string(),
            options,
            config,
            calib_batches: 8,
            batch_size: 64,
            train: None,
            mixed: None,
        }
    }
}

/// A quantized classifier: the simulated model (fake-quantized weights) and the simulation that
/// also fake-quantizes its activations.
pub struct Quantized<M> {
    /// The model with fake-quantized weights (inference mode).
    pub model: M,
    /// The simulation: activation taps, calibration.
    pub sim: QuantSim,
    /// The mixed-precision choice (per-layer widths, sensitivities, the exact file size) when
    /// the job asked for one.
    pub mixed: Option<MixedPlan>,
}

impl<M: Module + ImageClassifier> Quantized<M> {
    /// Logits of the simulated model (weights and activations fake-quantized).
    ///
    /// # Errors
    /// Replay errors.
    pub fn forward(&self, x: Tensor<4>) -> compress_quant::Result<Tensor<2>> {
        self.sim.forward(&self.model, x, |m: &M, x| m.classify(x))
    }

    /// Top-1 accuracy of the simulated model on `data` (CPU).
    ///
    /// # Errors
    /// The first replay error of the evaluation (never a silent fallback to the float forward).
    pub fn accuracy(&self, data: &ImageDataset) -> compress_quant::Result<f64> {
        let device = Device::flex();
        let acc = accuracy(
            &self.model,
            data,
            |m, x| self.sim.forward_or_record(m, x, |m: &M, x| m.classify(x)),
            &device,
        );
        match self.sim.take_error() {
            Some(e) => Err(e),
            None => Ok(acc),
        }
    }

    /// The quantizer that made it.
    pub fn quantizer(&self) -> Arc<dyn Quantizer> {
        self.sim.quantizer()
    }

    /// The calibration config: every target's scale, zero point, dtype, scheme and range.
    pub fn calibration(&self) -> CalibrationConfig {
        self.sim.calibration()
    }

    /// The model with its quantized weights stored as Burn quantized tensors (`Q8S`, `Q4S`,
    /// `Q2S`, per tensor or per output channel) on the grid the quantizer chooses
    /// ([`Quantizer::export_grid`]; the calibrated scales by default): the fake-quantized
    /// values are folded in first, so a symmetric calibration exports exactly. Activations stay
    /// float (Burn's quantized tensors are weights); their ranges are in
    /// [`calibration`](Self::calibration).
    ///
    /// # Errors
    /// An affine weight calibration under [`AffinePolicy::Error`] (Burn is symmetric only), a
    /// block granularity Burn cannot store, and [`quantize_weights`]' other errors.
    pub fn export(&self, affine: AffinePolicy) -> compress_quant::Result<M> {
        let folded = self.model.clone().materialize();
        let weights = self.sim.weights();
        let calibration = weights.calibration();
        let quantizer = weights.quantizer();
        let mut plan = BTreeMap::new();
        for t in weights.targets() {
            let Some(e) = calibration.get(&t.module, &t.name) else {
                continue;
            };
            let (qmin, qmax) = compress_quant::quant_bounds(e.quant_dtype);
            let params = compress_core::quantizer::QuantParams {
                scale: e.scale.clone(),
                zero_point: e.zero_point.clone(),
                tracked_min: e.tracked_min.clone(),
                tracked_max: e.tracked_max.clone(),
            };
            let grid = quantizer.export_grid(&ExportInput {
                path: &t.path,
                dtype: e.quant_dtype,
                scheme: e.quant_scheme,
                params: &params,
                qmin,
                qmax,
            })?;
            let value = QuantBits::from_nni(&grid.dtype.to_string()).ok_or_else(|| {
                QuantError::UnsupportedQuant {
                    path: t.path.clone(),
                    reason: format!("{} has no Burn quantized format", grid.dtype),
                }
            })?;
            let (scale, zero_point) = (grid.scale, grid.zero_point);
            let level = if scale.numel() == 1 {
                QuantLevel::PerTensor
            } else if t.keep.iter().filter(|&&k| k > 1).count() == 1 {
                QuantLevel::PerChannel
            } else {
                return Err(QuantError::UnsupportedQuant {
                    path: t.path.clone(),
                    reason: format!(
                        "scales of shape {:?} are neither per tensor nor per channel",
                        t.keep
                    ),
                });
            };
            plan.insert(
                t.path.clone(),
                WeightQuant::new(value, level)
                    .with_scale(scale)
                    .with_zero_point(zero_point),
            );
        }
        quantize_weights(&folded, &plan, affine)
    }
}

/// Quantize `model` (trained; on any device) as `job` says, calibrating on and, for the
/// training-aware quantizers, training on `data`. `model` itself is not changed.
///
/// # Errors
/// Unknown or non-quantizer algorithm, config errors, `fuse_names` naming layers that are not
/// adjacent, calibration with no data (an empty dataset), replay errors, errors recorded during
/// training; with [`QuantizeJob::mixed`], [`QuantError::BudgetUnreachable`] (with the closest
/// achievable size) and the other mixed-precision errors.
pub fn quantize_classifier<M: Module + ImageClassifier>(
    model: &M,
    data: &ImageDataset,
    job: &QuantizeJob,
) -> compress_quant::Result<Quantized<M>> {
    let quantizer: Arc<dyn Quantizer> = AlgorithmEntry::find(&job.algorithm)?
        .build_quantizer(&job.options)?
        .into();
    let device = Device::flex();
    let mut inference = model.valid();
    // NNI's module fusion: fold each (conv | linear, batchnorm[, relu]) before calibrating, so
    // the folded weight is what gets quantized. Adjacency is checked on the captured graph.
    let fuse: Vec<Vec<String>> = job
        .config
        .rules
        .iter()
        .flat_map(|r| r.fuse_names.iter().cloned())
        .collect();
    if !fuse.is_empty() {
        let (x, _) = data.batch(0, data.len().min(1), &device);
        let shape = x.dims();
        inference = compress_quant::fuse_bn(&inference, &fuse, |m, d| {
            m.classify(Tensor::zeros(shape, d))
        })?;
    }
    let batch = job.batch_size.max(1);
    let batches: Vec<Tensor<4>> = (0..job.calib_batches)
        .map(|i| (i * batch, ((i + 1) * batch).min(data.len())))
        .take_while(|(start, end)| start < end)
        .map(|(start, end)| data.batch(start, end, &device).0)
        .collect();
    let index = ModuleIndex::from_module(&inference);
    let (config, mixed) = match &job.mixed {
        Some(mixed) => {
            let plan = compress_quant::plan_mixed_precision(
                &inference,
                &job.config,
                mixed,
                &batches,
                |m: &M, x| m.classify(x),
            )?;
            (plan.config(&job.config, &index)?, Some(plan))
        }
        None => (job.config.clone(), None),
    };
    let mut sim = QuantSim::new(quantizer.clone(), &config, &index)?;
    let classify = |m: &M, x: Tensor<4>| m.classify(x);
    sim.calibrate(&inference, batches.clone(), classify)?;
    if sim.wants_bias_correction() {
        inference = sim.correct_biases(&inference, &batches, classify)?;
        sim.calibrate(&inference, batches, classify)?;
    }
    let simulated = match &job.train {
        Some(train) if quantizer.trains() => {
            let start = sim.attach(&inference)?.train();
            sim.set_phase(if quantizer.tracks_ranges_in_training() {
                SimPhase::Train
            } else {
                SimPhase::Eval
            });
            let mut hooks = &sim;
            let (trained, _) = train_classifier(
                start,
                data,
                |m, x| sim.forward_or_record(m, x, classify),
                train,
                &mut hooks,
            );
            if let Some(e) = sim.take_error() {
                return Err(e);
            }
            if quantizer.learnable().any() {
                sim.read_learned(&trained)?;
            }
            trained.valid()
        }
        _ => sim.simulate(&inference)?,
    };
    sim.set_phase(SimPhase::Eval);
    Ok(Quantized {
        model: simulated,
        sim,
        mixed,
    })
}
