//! The one pruning driver: how a pruner runs is chosen from what it declares.
//!
//! | the pruner declares | and a schedule is | the driver runs |
//! | --- | --- | --- |
//! | [`MetricNeeds::Weights`] | absent | [`PruneMode::OneShot`]: [`prune()`] on the weights, no data |
//! | [`MetricNeeds::Gradients`] (Taylor) | absent | [`PruneMode::Gradients`]: [`GradientStatistics`] over [`Pruner::training_steps`] steps, then [`prune_with_grads`] |
//! | [`Pruner::learned_scores`] (Slim, Movement) | absent | [`PruneMode::LearnedScores`]: [`LearnedScores`] over [`ScoreSpec::total_steps`](crate::scores::ScoreSpec::total_steps) steps |
//! | [`MetricNeeds::Activations`] (APoZ, mean activation) | absent | [`PruneMode::Activations`]: [`activation_statistics`] over [`Pruner::training_steps`] batches of a caller's [`LayerOutputs`] (no training), then [`prune_with_grads`] |
//! | [`Pruner::admm`] (ADMM) | absent | [`PruneMode::Admm`]: [`admm`](crate::admm::admm): penalised training and projections, masks from the trained weights |
//! | anything but learned scores, activations or ADMM | given | [`PruneMode::Scheduled`]: [`ScheduledPruning`] (AGP, Linear) while training |
//!
//! The library, the `burn-compress` command line and recipes all call [`prune_model`] (or
//! [`prune_model_with`], which also takes a layer-output source), so one config, pruner, seed
//! and data give the same masks on every route.
//!
//! How data reaches activation pruners: [`Training`] carries the data for the modes that train;
//! activation pruners need layer outputs, which compress-core cannot produce (Burn has no
//! forward hooks, and graph capture lives in compress-graph), so the caller passes a
//! [`LayerOutputs`] to [`prune_model_with`]. The facade's `pruning::prune_captured` builds one
//! from its `Training` (the replay of the captured graph over the training data, in the order
//! the first training epoch would see it).

use std::sync::Arc;

use burn::module::Module;
use burn::prelude::*;

use crate::activations::{LayerOutputs, activation_statistics};
use crate::registry::{MetricNeeds, Pruner};
use crate::scheduled::ScheduledPruning;
use crate::scores::LearnedScores;
use crate::targets::ConfigWarning;
use crate::train::{GradientStatistics, TrainConfig, train_classifier};
use crate::{
    CompressConfig, CompressError, MaskSet, ModuleIndex, Result, dataset::ImageDataset, prune,
    prune::prune_with_grads, schedule::Schedule,
};

/// Gradual pruning while training (NNI's `AGPPruner` / `LinearPruner`): `total_times` mask
/// updates `interval_steps` optimizer steps apart, towards the config's ratios along `schedule`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneSchedule {
    /// The schedule ([`Schedule::Agp`] or [`Schedule::Linear`]).
    pub schedule: Schedule,
    /// Mask updates in all.
    pub total_times: usize,
    /// Optimizer steps between mask updates.
    pub interval_steps: usize,
}

/// How [`prune_model`] ran a pruner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneMode {
    /// Masks from the weights alone.
    OneShot,
    /// A gradient statistic gathered while training, then masks (Taylor).
    Gradients,
    /// Learned per-block scores trained, then masks (Slim, Movement).
    LearnedScores,
    /// Masks regenerated on a schedule while training (AGP, Linear).
    Scheduled,
    /// Statistics of layer outputs over data batches, no training, then masks (APoZ, mean
    /// activation).
    Activations,
    /// Penalised training alternating with projections onto the sparse set, then masks from
    /// the trained weights (ADMM).
    Admm,
}

impl PruneMode {
    /// The mode [`prune_model`] uses for `pruner` with or without a schedule.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] for a learned-score pruner with a schedule: its scores follow
    /// their own schedule (Movement's warm-up and cool-down).
    pub fn choose(pruner: &dyn Pruner, schedule: Option<&PruneSchedule>) -> Result<Self> {
        let learned = pruner.learned_scores().is_some();
        let admm = pruner.admm().is_some();
        let needs = pruner.needs();
        let refuse = |message: &str| CompressError::Algorithm {
            algorithm: "schedule".into(),
            message: message.into(),
        };
        if schedule.is_some() {
            if learned {
                return Err(refuse(
                    "a learned-score pruner (slim, movement) follows its own schedule: \
                     drop the schedule",
                ));
            }
            if admm {
                return Err(refuse(
                    "an ADMM pruner runs its own iterations: drop the schedule",
                ));
            }
            if needs == MetricNeeds::Activations {
                return Err(refuse(
                    "an activation pruner (apoz, mean-activation) scores once from collected \
                     layer outputs: drop the schedule",
                ));
            }
            return Ok(PruneMode::Scheduled);
        }
        Ok(match needs {
            _ if learned => PruneMode::LearnedScores,
            MetricNeeds::LearnedScores => PruneMode::LearnedScores,
            _ if admm => PruneMode::Admm,
            MetricNeeds::Gradients => PruneMode::Gradients,
            MetricNeeds::Activations => PruneMode::Activations,
            MetricNeeds::Weights => PruneMode::OneShot,
        })
    }

    /// Whether this mode needs data, and so [`Training`]: every mode but one-shot.
    /// [`PruneMode::Activations`] only runs inference on the data (through a [`LayerOutputs`]
    /// built from it); the others train.
    pub fn needs_training(self) -> bool {
        self != PruneMode::OneShot
    }

    /// `one-shot`, `gradients`, `learned-scores`, `scheduled`, `activations` or `admm`.
    pub fn name(self) -> &'static str {
        match self {
            PruneMode::OneShot => "one-shot",
            PruneMode::Gradients => "gradients",
            PruneMode::LearnedScores => "learned-scores",
            PruneMode::Scheduled => "scheduled",
            PruneMode::Activations => "activations",
            PruneMode::Admm => "admm",
        }
    }
}

/// The training a pruner that needs one runs on: supervised image classification, as
/// [`train_classifier`] does it.
pub struct Training<'a, M> {
    /// The training images.
    pub data: &'a ImageDataset,
    /// Logits `[batch, classes]` for an image batch.
    pub forward: &'a dyn Fn(&M, Tensor<4>) -> Tensor<2>,
    /// How to train. [`PruneMode::Scheduled`] uses it as given. [`PruneMode::Gradients`] and
    /// [`PruneMode::LearnedScores`] use its batch size, seed, optimizer and progress flag but run
    /// exactly the steps the pruner asks for at learning rate 0, so the weights stay as trained
    /// (fine-tune afterwards). [`PruneMode::Admm`] trains each iteration with it, `epochs`
    /// replaced by the pruner's `training_epochs`.
    pub config: TrainConfig,
}

/// What [`prune_model`] produced.
#[derive(Debug, Clone)]
pub struct Pruned<M> {
    /// The model after the pruning phase: the input unchanged for one-shot and activation
    /// pruning, else the model as it left training (on the input's device; scores removed).
    pub model: M,
    /// The final masks (weights, and the biases that follow them).
    pub masks: MaskSet,
    /// How the pruner ran.
    pub mode: PruneMode,
    /// The config's warnings against this model.
    pub warnings: Vec<ConfigWarning>,
}

/// Prune `model` with `pruner` as `config` says, running the pruner the way it declares
/// ([`PruneMode::choose`]): [`prune_model_with`] without a layer-output source, so activation
/// pruners are refused (use `burn_compress::pruning::prune_captured`, which supplies one).
///
/// # Errors
/// As [`prune_model_with`].
pub fn prune_model<M: Module + 'static>(
    model: M,
    config: &CompressConfig,
    pruner: Arc<dyn Pruner>,
    schedule: Option<&PruneSchedule>,
    training: Option<&Training<'_, M>>,
) -> Result<Pruned<M>> {
    prune_model_with(model, config, pruner, schedule, training, None)
}

/// Prune `model` with `pruner` as `config` says, running the pruner the way it declares
/// ([`PruneMode::choose`]); `outputs` shows layer outputs to activation pruners.
///
/// One-shot and activation pruning only read the model. The other modes train, so `model`
/// must then live on an autodiff device and `training` must be given.
///
/// # Errors
/// [`CompressError::Algorithm`] when training is needed and none is given, when an activation
/// pruner has no `outputs`, when a schedule does not fit in the training (fewer mask updates
/// than `total_times`), or when a learned-score, activation or ADMM pruner is given a schedule;
/// config resolution, metric and allocation errors.
pub fn prune_model_with<M: Module + 'static>(
    model: M,
    config: &CompressConfig,
    pruner: Arc<dyn Pruner>,
    schedule: Option<&PruneSchedule>,
    training: Option<&Training<'_, M>>,
    outputs: Option<&dyn LayerOutputs<M>>,
) -> Result<Pruned<M>> {
    let mode = PruneMode::choose(pruner.as_ref(), schedule)?;
    let index = ModuleIndex::from_module(&model);
    let warnings = config.resolve(&index)?.warnings;
    let needs_training = || CompressError::Algorithm {
        algorithm: "pruner".into(),
        message: format!(
            "{} pruning trains the model: give it training data",
            mode.name()
        ),
    };
    let (model, masks) = match mode {
        PruneMode::OneShot => {
            let masks = prune(&model.valid(), config, pruner.as_ref())?.masks;
            (model, masks)
        }
        PruneMode::Gradients => {
            let training = training.ok_or_else(needs_training)?;
            let targets: Vec<String> = config
                .resolve(&index)?
                .targets
                .iter()
                .filter(|t| t.is_active())
                .map(|t| t.path.clone())
                .collect();
            let p = pruner.clone();
            let mut stats =
                GradientStatistics::new(targets, move |w, g| p.gradient_statistic(w, g));
            let steps = pruner.training_steps().max(1);
            let inference = model.valid();
            let (trained, _) = train_classifier(
                model,
                training.data,
                training.forward,
                &statistics_only(&training.config, steps),
                &mut stats,
            );
            let grads = stats.mean()?;
            let masks = prune_with_grads(&inference, config, pruner.as_ref(), &grads)?.masks;
            (trained, masks)
        }
        PruneMode::LearnedScores => {
            let training = training.ok_or_else(needs_training)?;
            let mut hook = LearnedScores::new(pruner.clone(), config.clone(), &index)?;
            let steps = hook.spec().total_steps();
            let (trained, _) = train_classifier(
                hook.attach(&model),
                training.data,
                training.forward,
                &statistics_only(&training.config, steps),
                &mut hook,
            );
            hook.finish(trained)?
        }
        PruneMode::Activations => {
            let outputs = outputs.ok_or_else(|| CompressError::Algorithm {
                algorithm: "pruner".into(),
                message: "activation pruning reads layer outputs over data batches: give it data \
                          (a LayerOutputs source; burn_compress::pruning::prune_captured builds \
                          one from its training data)"
                    .into(),
            })?;
            let inference = model.valid();
            let stats = activation_statistics(&inference, config, pruner.as_ref(), outputs)?;
            let masks = prune_with_grads(&inference, config, pruner.as_ref(), &stats)?.masks;
            (model, masks)
        }
        PruneMode::Admm => {
            let training = training.ok_or_else(needs_training)?;
            let spec = pruner.admm().ok_or_else(|| CompressError::Algorithm {
                algorithm: "admm".into(),
                message: "the pruner declares no ADMM settings".into(),
            })?;
            let outcome = crate::admm::admm(model, config, pruner.as_ref(), &spec, training)?;
            (outcome.model, outcome.masks)
        }
        PruneMode::Scheduled => {
            let training = training.ok_or_else(needs_training)?;
            let spec = schedule.ok_or_else(|| CompressError::Algorithm {
                algorithm: "schedule".into(),
                message: "scheduled pruning needs a schedule".into(),
            })?;
            let mut hook = ScheduledPruning::new(
                pruner.clone(),
                config.clone(),
                &index,
                spec.schedule,
                spec.interval_steps,
                spec.total_times,
            )?;
            let (trained, _) = train_classifier(
                model,
                training.data,
                training.forward,
                &training.config,
                &mut hook,
            );
            if let Some(e) = hook.take_error() {
                return Err(e);
            }
            if hook.updates() < spec.total_times {
                return Err(CompressError::Algorithm {
                    algorithm: "schedule".into(),
                    message: format!(
                        "only {} of {} mask updates fit in the training: raise epochs or lower interval_steps",
                        hook.updates(),
                        spec.total_times
                    ),
                });
            }
            let masks = hook
                .masks()
                .cloned()
                .ok_or_else(|| CompressError::Algorithm {
                    algorithm: "schedule".into(),
                    message: "the schedule produced no masks".into(),
                })?;
            (trained, masks)
        }
    };
    Ok(Pruned {
        model,
        masks,
        mode,
        warnings,
    })
}

/// `config` for exactly `steps` steps at learning rate 0: enough epochs that the data never
/// runs out first.
fn statistics_only(config: &TrainConfig, steps: usize) -> TrainConfig {
    TrainConfig {
        epochs: steps.max(1),
        max_steps: Some(steps),
        lr: 0.0,
        ..config.clone()
    }
}
