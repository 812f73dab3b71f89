//! Learned per-block scores: NNI's `SlimPruner` scaling factors and `MovementPruner` scores.
//!
//! A pruner whose [`Pruner::learned_scores`] returns a [`ScoreSpec`] is driven by
//! [`LearnedScores`], a [`TrainHooks`] that
//! 1. attaches one score per granularity block to every active target through a Burn
//!    [`Reparameterization`] ([`ScoreReparam`]): `Param::val()` returns `w * s` (Slim) or
//!    `w * mask(s)` with a straight-through estimator (Movement), so the user's model type and
//!    forward are untouched and gradients reach the scores;
//! 2. adds the spec's regulariser to the loss;
//! 3. trains the scores with a private Adam (NNI: lr 1e-2, default betas), stepping before the
//!    user's optimizer, which never sees them;
//! 4. turns the scores into masks through the pruner's [`Pruner::metric`] and compress-core's
//!    shared allocation: once after `training_steps` (Slim), or after every step past warm-up
//!    with the goal following [`Schedule::Movement`] (Movement).
//!
//! [`LearnedScores::finish`] returns the trained model without the scores (its weights exactly as
//! trained, not multiplied by anything) and the masks.

use std::collections::BTreeMap;

use burn::module::{Module, Param, Reparameterization, Reparameterizer};
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::mask::{deep_copy, map_param_leaf};
use crate::paths::{PathMapper, map_params, params_of_rank, set_param_values};
use crate::prune::target_scaling;
use crate::registry::Pruner;
use crate::train::TrainHooks;
use crate::{
    CompressConfig, CompressError, Dense, MaskSet, ModuleIndex, Result, prune::prune_with_grads,
    schedule::Schedule,
};

/// How a score enters the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreForward {
    /// `w * s` (NNI `slim_mul`).
    Scale,
    /// `w * mask`, with the gradient of the mask passed straight through to `s`, so
    /// `dL/ds = sum over the block of dL/dw_eff * w` (NNI `movement_mul`).
    StraightThroughMask,
}

/// The regulariser added to the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScorePenalty {
    /// None.
    None,
    /// `regular_scale * mean over targets of ||s||_1` (Slim).
    L1Mean,
    /// For targets with `sparse_threshold`: `regular_scale * cubic_ratio * mean over those
    /// targets of mean(sigmoid(s))` (Movement).
    SigmoidMean,
}

/// When masks are generated from the scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreTrigger {
    /// Once, after `training_steps` optimizer steps.
    Once {
        /// Steps before the masks are generated.
        training_steps: usize,
    },
    /// After every step past `warmup_step`, towards the config's ratios along
    /// [`Schedule::Movement`], reaching them at `cooldown_begin_step`.
    Movement {
        /// Steps without pruning.
        warmup_step: usize,
        /// Step from which the final ratio holds.
        cooldown_begin_step: usize,
    },
}

/// What a learned-score pruner needs from [`LearnedScores`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSpec {
    /// Initial value of every score (Slim 1, Movement 0).
    pub init: f32,
    /// How the score enters the forward pass.
    pub forward: ScoreForward,
    /// Learning rate of the scores' private Adam.
    pub lr: f64,
    /// Weight of the regulariser.
    pub regular_scale: f64,
    /// The regulariser.
    pub penalty: ScorePenalty,
    /// When masks are generated.
    pub trigger: ScoreTrigger,
}

impl ScoreSpec {
    /// Optimizer steps the scores need before their final masks exist.
    pub fn total_steps(&self) -> usize {
        match self.trigger {
            ScoreTrigger::Once { training_steps } => training_steps,
            ScoreTrigger::Movement {
                cooldown_begin_step,
                ..
            } => cooldown_begin_step,
        }
    }
}

/// The reparameterization that carries a target's scores. Both tensors hold the kept-dim block
/// shape of the target padded with trailing 1s to rank 4 (parameters of rank up to 4).
#[derive(Module, Debug)]
pub struct ScoreReparam {
    /// The learned scores (trainable).
    pub score: Param<Tensor<4>>,
    /// The block mask in force (0/1, never trained); all ones until masks exist.
    pub mask: Param<Tensor<4>>,
    /// 1: [`ScoreForward::Scale`]; 0: [`ScoreForward::StraightThroughMask`].
    pub scale_mode: usize,
}

impl Reparameterization for ScoreReparam {
    const NAME: &'static str = "scores";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let score = self.score.val();
        let factor = if self.scale_mode == 1 {
            score
        } else {
            // Forward: the mask. Backward: identity to the score.
            self.mask.val().detach() + score.clone() - score.detach()
        };
        expand_blocks(base, factor)
    }
}

/// `base * factor`, the factor holding one value per block of `base`.
fn expand_blocks<const D: usize>(base: Tensor<D>, factor: Tensor<4>) -> Tensor<D> {
    let dims = base.dims();
    base * block_expand(factor, dims)
}

/// Repeat a per-block tensor (kept-dim block shape padded with trailing 1s to rank 4, every dim
/// dividing the matching one of `dims`) over its blocks, to shape `dims`.
pub fn block_expand<const D: usize>(factor: Tensor<4>, dims: [usize; D]) -> Tensor<D> {
    let mut d = [1usize; 4];
    d[..D].copy_from_slice(&dims);
    let k = factor.dims();
    if k == d {
        return factor.reshape(dims);
    }
    let b: Vec<usize> = (0..4).map(|i| d[i] / k[i].max(1)).collect();
    factor
        .reshape([k[0], 1, k[1], 1, k[2], 1, k[3], 1])
        .expand([k[0], b[0], k[1], b[1], k[2], b[2], k[3], b[3]])
        .reshape(dims)
}

/// A kept-dim block shape padded with trailing 1s to rank 4.
pub fn pad4(keep: &[usize]) -> [usize; 4] {
    let mut padded = [1usize; 4];
    padded[..keep.len()].copy_from_slice(keep);
    padded
}

/// One target's score state.
#[derive(Debug, Clone)]
struct TargetScores {
    /// Kept-dim block shape (the parameter's rank).
    keep: Vec<usize>,
    /// Rank-4 padded shape of the reparameterization's tensors.
    padded: [usize; 4],
    values: Vec<f32>,
    adam_m: Vec<f32>,
    adam_v: Vec<f32>,
    threshold_mode: bool,
    scaling: crate::granularity::Scaling,
}

/// The [`TrainHooks`] that trains a learned-score pruner's scores and generates its masks.
pub struct LearnedScores {
    pruner: std::sync::Arc<dyn Pruner>,
    spec: ScoreSpec,
    config: CompressConfig,
    targets: BTreeMap<String, TargetScores>,
    adam_steps: i32,
    steps_done: usize,
    masks: Option<MaskSet>,
    error: Option<CompressError>,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

impl LearnedScores {
    /// Scores for every active target of `config` in `index`'s model.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] when the pruner has no [`ScoreSpec`] or a target has rank
    /// above 4; config resolution and granularity errors.
    pub fn new(
        pruner: std::sync::Arc<dyn Pruner>,
        config: CompressConfig,
        index: &ModuleIndex,
    ) -> Result<Self> {
        let spec = pruner
            .learned_scores()
            .ok_or_else(|| CompressError::Algorithm {
                algorithm: "learned scores".into(),
                message: "this pruner does not learn scores (Pruner::learned_scores is None)"
                    .into(),
            })?;
        if spec.total_steps() == 0 {
            return Err(CompressError::Algorithm {
                algorithm: "learned scores".into(),
                message: "the scores need at least one training step".into(),
            });
        }
        let mut targets = BTreeMap::new();
        for t in config
            .resolve(index)?
            .targets
            .iter()
            .filter(|t| t.is_active())
        {
            if t.shape.len() > 4 {
                return Err(CompressError::Algorithm {
                    algorithm: "learned scores".into(),
                    message: format!("'{}' has rank {} (at most 4)", t.path, t.shape.len()),
                });
            }
            let scaling = target_scaling(t, pruner.as_ref())?;
            let keep = scaling.shrunk_shape(&t.shape, true, &t.path)?;
            let padded = pad4(&keep);
            let n = keep.iter().product();
            targets.insert(
                t.path.clone(),
                TargetScores {
                    keep,
                    padded,
                    values: vec![spec.init; n],
                    adam_m: vec![0.0; n],
                    adam_v: vec![0.0; n],
                    threshold_mode: t.setting.sparse_threshold.is_some(),
                    scaling,
                },
            );
        }
        Ok(Self {
            pruner,
            spec,
            config,
            targets,
            adam_steps: 0,
            steps_done: 0,
            masks: None,
            error: None,
        })
    }

    /// The spec in use.
    pub fn spec(&self) -> ScoreSpec {
        self.spec
    }

    /// A deep copy of `model` with scores attached to every target; train this copy.
    pub fn attach<M: Module>(&self, model: &M) -> M {
        struct Attach<'a>(&'a LearnedScores);
        impl Reparameterizer for Attach<'_> {
            type Reparam = ScoreReparam;
            fn reparameterize<const D: usize>(
                &mut self,
                path: &str,
                param: Param<Tensor<D>>,
            ) -> (Param<Tensor<D>>, Option<ScoreReparam>) {
                let Some(t) = self.0.targets.get(path) else {
                    return (param, None);
                };
                let device = param.lazy_device();
                let score = Tensor::<1>::from_data(
                    TensorData::new(t.values.clone(), [t.values.len()]),
                    &device,
                )
                .reshape(t.padded);
                let mask = Tensor::<4>::ones(t.padded, &device);
                let reparam = ScoreReparam {
                    score: Param::from_tensor(score),
                    mask: Param::from_tensor(mask).set_require_grad(false),
                    scale_mode: usize::from(self.0.spec.forward == ScoreForward::Scale),
                };
                (param, Some(reparam))
            }
        }
        deep_copy(model).apply_reparameterization(Attach(self))
    }

    /// The current scores by target path, in each target's kept-dim block shape.
    pub fn scores(&self) -> BTreeMap<String, Dense<f32>> {
        self.targets
            .iter()
            .map(|(p, t)| (p.clone(), Dense::new(t.keep.clone(), t.values.clone())))
            .collect()
    }

    /// The masks generated so far (none before the first trigger).
    pub fn masks(&self) -> Option<&MaskSet> {
        self.masks.as_ref()
    }

    /// Optimizer steps seen.
    pub fn steps(&self) -> usize {
        self.steps_done
    }

    /// The first error a mask update hit (training goes on with the previous masks).
    pub fn take_error(&mut self) -> Option<CompressError> {
        self.error.take()
    }

    /// The trained model without its scores (weights exactly as trained), and the final masks,
    /// generated now from the current scores if no trigger has fired yet.
    ///
    /// # Errors
    /// Mask generation errors.
    pub fn finish<M: Module>(&mut self, model: M) -> Result<(M, MaskSet)> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let masks = match self.masks.take() {
            Some(m) => m,
            None => self.generate(&model, 1.0)?,
        };
        // Neutral reparameterizations (factor 1, mask 1) materialize to the base exactly.
        struct Neutral;
        impl PathMapper for Neutral {
            fn map<const D: usize>(
                &mut self,
                path: &str,
                param: Param<Tensor<D>>,
            ) -> Param<Tensor<D>> {
                if path.split('.').any(|s| s == ScoreReparam::NAME) {
                    map_param_leaf(param, |t| t.ones_like())
                } else {
                    param
                }
            }
        }
        let model = map_params(model, &mut Neutral).materialize();
        Ok((model, masks))
    }

    /// Masks from the current scores, every ratio (and threshold) scaled by `fraction`.
    fn generate<M: Module>(&self, model: &M, fraction: f64) -> Result<MaskSet> {
        let config = self.config.scaled(fraction);
        let scores = self.scores();
        let inference = model.valid();
        Ok(prune_with_grads(&inference, &config, self.pruner.as_ref(), &scores)?.masks)
    }

    /// Write the current scores and, when `masks` is given, the block masks into the model.
    fn write_back<M: Module>(&self, model: M, masks: Option<&MaskSet>) -> Result<M> {
        // `<target>.scores.score` and `<target>.scores.mask`, flat, in the padded block shape.
        let mut values = BTreeMap::new();
        for (path, t) in &self.targets {
            values.insert(
                format!("{path}.{}.score", ScoreReparam::NAME),
                t.values.clone(),
            );
            let Some(full) = masks.and_then(|m| m.get(path)) else {
                continue;
            };
            let full = Dense::new(
                full.shape().to_vec(),
                full.data().iter().map(|&m| f32::from(m)).collect(),
            );
            let block = t
                .scaling
                .shrink_with(&full, true, path, 0.0f32, f32::max, |a, _| a)?;
            values.insert(
                format!("{path}.{}.mask", ScoreReparam::NAME),
                block.into_data(),
            );
        }
        Ok(set_param_values(model, &values))
    }

    /// The score parameters of `model` by target path.
    fn score_params<M: Module>(model: &M) -> BTreeMap<String, (burn::module::ParamId, Tensor<4>)> {
        let suffix = format!(".{}.score", ScoreReparam::NAME);
        params_of_rank::<4, M>(model, |p| p.ends_with(&suffix))
            .into_iter()
            .map(|(p, v)| (p[..p.len() - suffix.len()].to_string(), v))
            .collect()
    }
}

impl<M: Module> TrainHooks<M> for LearnedScores {
    fn patch_loss(&mut self, model: &M, loss: Tensor<1>) -> Tensor<1> {
        let params = Self::score_params(model);
        let mut terms = Vec::new();
        for (path, (_, s)) in params {
            let Some(t) = self.targets.get(&path) else {
                continue;
            };
            match self.spec.penalty {
                ScorePenalty::None => {}
                ScorePenalty::L1Mean => terms.push(s.abs().sum()),
                ScorePenalty::SigmoidMean if t.threshold_mode => {
                    let n = t.values.len() as f64;
                    terms.push(burn::tensor::activation::sigmoid(s).sum().div_scalar(n));
                }
                ScorePenalty::SigmoidMean => {}
            }
        }
        if terms.is_empty() {
            return loss;
        }
        let count = terms.len() as f64;
        let ratio = match (self.spec.penalty, self.spec.trigger) {
            (
                ScorePenalty::SigmoidMean,
                ScoreTrigger::Movement {
                    warmup_step,
                    cooldown_begin_step,
                },
            ) => Schedule::Movement {
                warmup_step,
                cooldown_begin_step,
            }
            .ratio(1.0, self.steps_done),
            _ => 1.0,
        };
        let sum = terms
            .into_iter()
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| loss.zeros_like());
        loss + sum.mul_scalar(self.spec.regular_scale * ratio / count)
    }

    fn before_step(&mut self, model: M, grads: &mut GradientsParams, _step: usize) -> M {
        // The scores' private Adam (torch.optim.Adam semantics); the user's optimizer never
        // sees their gradients.
        self.adam_steps += 1;
        let bc1 = 1.0 - BETA1.powi(self.adam_steps);
        let bc2 = 1.0 - BETA2.powi(self.adam_steps);
        let lr = self.spec.lr;
        for (path, (id, _)) in Self::score_params(&model) {
            let Some(grad) = grads.remove::<4>(id) else {
                continue;
            };
            let Some(t) = self.targets.get_mut(&path) else {
                continue;
            };
            let Ok(g) = grad.into_data().try_to_vec::<f32>() else {
                continue;
            };
            let state = t.values.iter_mut().zip(&mut t.adam_m).zip(&mut t.adam_v);
            for (((value, m), v), &g) in state.zip(&g) {
                let g = g as f64;
                let m1 = BETA1 * *m as f64 + (1.0 - BETA1) * g;
                let v1 = BETA2 * *v as f64 + (1.0 - BETA2) * g * g;
                *m = m1 as f32;
                *v = v1 as f32;
                let denom = (v1.sqrt() / bc2.sqrt()) + ADAM_EPS;
                *value = (*value as f64 - lr / bc1 * m1 / denom) as f32;
            }
        }
        match self.write_back(model.clone(), None) {
            Ok(m) => m,
            Err(e) => {
                self.error.get_or_insert(e);
                model
            }
        }
    }

    fn after_step(&mut self, model: M, _step: usize) -> M {
        self.steps_done += 1;
        let current = self.steps_done;
        let fraction = match self.spec.trigger {
            ScoreTrigger::Once { training_steps } if current == training_steps => Some(1.0),
            ScoreTrigger::Once { .. } => None,
            ScoreTrigger::Movement {
                warmup_step,
                cooldown_begin_step,
            } if current > warmup_step => Some(
                Schedule::Movement {
                    warmup_step,
                    cooldown_begin_step,
                }
                .ratio(1.0, current),
            ),
            ScoreTrigger::Movement { .. } => None,
        };
        let Some(fraction) = fraction else {
            return model;
        };
        let result = self.generate(&model, fraction).and_then(|masks| {
            let m = self.write_back(model.clone(), Some(&masks))?;
            self.masks = Some(masks);
            Ok(m)
        });
        match result {
            Ok(m) => m,
            Err(e) => {
                self.error.get_or_insert(e);
                model
            }
        }
    }
}
