//! Fusion: pruning on a schedule, quantization-aware training and distillation in **one**
//! training run (NNI 3.0's `pqd_fuse`: compressors chained on the same model share one
//! `train`; each registers its hooks, then each finalises).
//!
//! [`train_fused`] calibrates the quantization simulation and attaches its fake quantization
//! (weights by reparameterization, activations through the replay), then trains once with a
//! [`HookChain`] of the scheduled pruner ([`ScheduledPruning`]: masks regenerated every
//! `interval_steps`, re-applied after every step), the simulation's hooks (QAT's range
//! updates) and the [`Distillation`] loss patch. Any part may be absent.

use std::sync::Arc;

use burn::module::Module;
use burn::prelude::*;
use compress_core::{
    AlgorithmEntry, CompressConfig, CompressError, MaskSet, ModuleIndex, Pruner, Quantizer,
    dataset::ImageDataset,
    driver::PruneSchedule,
    scheduled::ScheduledPruning,
    train::{HookChain, TrainConfig, TrainHooks, TrainReport, train_classifier},
};
use compress_quant::{QuantSim, SimPhase};
use compress_zoo::ImageClassifier;

use crate::distill::{DistillError, Distillation};
use crate::quantize::QuantizeJob;

/// Why a fused run failed.
#[derive(Debug, thiserror::Error)]
pub enum FusionError {
    /// Pruning (config, schedule, masks) failed.
    #[error("pruning: {0}")]
    Prune(#[from] Box<crate::pruning::PruneError>),
    /// Quantization (config, calibration, replay) failed.
    #[error("quantization: {0}")]
    Quant(#[from] compress_quant::QuantError),
    /// Distillation failed.
    #[error("distillation: {0}")]
    Distill(#[from] DistillError),
}

impl From<CompressError> for FusionError {
    fn from(e: CompressError) -> Self {
        FusionError::Prune(Box::new(e.into()))
    }
}

/// Scheduled pruning inside a fused run.
pub struct FusedPrune {
    /// The pruning config (coupled into dependency groups by the caller, see
    /// [`coupled_config`](crate::pruning::coupled_config)).
    pub config: CompressConfig,
    /// The pruner (Taylor gathers its gradients between updates).
    pub pruner: Arc<dyn Pruner>,
    /// The schedule.
    pub schedule: PruneSchedule,
}

/// What a fused run produced.
pub struct Fused<M> {
    /// The trained model (inference mode): fake-quantized weights folded in, masks applied.
    pub model: M,
    /// The final masks, when the run pruned.
    pub masks: Option<MaskSet>,
    /// The quantization simulation (activation taps and calibration), when the run quantized.
    pub sim: Option<QuantSim>,
    /// The training run.
    pub report: TrainReport,
}

/// One training run of `model` (on an autodiff device) on `data` that prunes, quantizes and
/// distils as given.
///
/// # Errors
/// A schedule that does not fit in the training, config and calibration errors, the first error
/// a hook recorded during training.
pub fn train_fused<M: Module + ImageClassifier + 'static>(
    model: M,
    data: &ImageDataset,
    config: &TrainConfig,
    prune: Option<FusedPrune>,
    quantize: Option<&QuantizeJob>,
    distill: Option<&mut Distillation<M>>,
) -> Result<Fused<M>, FusionError> {
    let classify = |m: &M, x: Tensor<4>| m.classify(x);
    let mut sim = None;
    let mut start = model;
    if let Some(job) = quantize {
        let quantizer: Arc<dyn Quantizer> = AlgorithmEntry::find(&job.algorithm)?
            .build_quantizer(&job.options)?
            .into();
        let inference = start.valid();
        let mut s = QuantSim::new(
            quantizer.clone(),
            &job.config,
            &ModuleIndex::from_module(&inference),
        )?;
        let device = Device::flex();
        let batch = job.batch_size.max(1);
        let batches: Vec<Tensor<4>> = (0..job.calib_batches)
            .map(|i| (i * batch, ((i + 1) * batch).min(data.len())))
            .take_while(|(a, b)| a < b)
            .map(|(a, b)| data.batch(a, b, &device).0)
            .collect();
        s.calibrate(&inference, batches, classify)?;
        start = s.attach(&inference)?.train();
        s.set_phase(if quantizer.tracks_ranges_in_training() {
            SimPhase::Train
        } else {
            SimPhase::Eval
        });
        sim = Some(s);
    }
    let mut scheduled = match &prune {
        Some(p) => Some(ScheduledPruning::new(
            p.pruner.clone(),
            p.config.clone(),
            &ModuleIndex::from_module(&start),
            p.schedule.schedule,
            p.schedule.interval_steps,
            p.schedule.total_times,
        )?),
        None => None,
    };
    let (trained, report) = {
        let mut sim_hooks = sim.as_ref();
        let mut hooks: Vec<&mut dyn TrainHooks<M>> = Vec::new();
        if let Some(s) = scheduled.as_mut() {
            hooks.push(s);
        }
        if let Some(s) = sim_hooks.as_mut() {
            hooks.push(s);
        }
        let mut distill = distill;
        if let Some(d) = distill.as_deref_mut() {
            hooks.push(d);
        }
        let mut chain = HookChain::new(hooks);
        let out = train_classifier(
            start,
            data,
            |m: &M, x| match &sim {
                Some(s) => s.forward_or_record(m, x, classify),
                None => classify(m, x),
            },
            config,
            &mut chain,
        );
        drop(chain);
        if let Some(d) = distill
            && let Some(e) = d.take_error()
        {
            return Err(e.into());
        }
        out
    };
    if let Some(s) = &sim
        && let Some(e) = s.take_error()
    {
        return Err(e.into());
    }
    let mut masks = None;
    if let (Some(s), Some(p)) = (scheduled.as_mut(), &prune) {
        if let Some(e) = s.take_error() {
            return Err(e.into());
        }
        if s.updates() < p.schedule.total_times {
            return Err(CompressError::Algorithm {
                algorithm: "schedule".into(),
                message: format!(
                    "only {} of {} mask updates fit in the training: raise epochs or lower interval_steps",
                    s.updates(),
                    p.schedule.total_times
                ),
            }
            .into());
        }
        masks = s.masks().cloned();
    }
    if let Some(s) = &sim {
        s.set_phase(SimPhase::Eval);
    }
    let mut model = trained.valid().materialize();
    if let Some(m) = &masks {
        model = m.apply_hard(&model)?;
    }
    Ok(Fused {
        model,
        masks,
        sim,
        report,
    })
}
