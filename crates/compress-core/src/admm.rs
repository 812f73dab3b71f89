//! ADMM pruning (Zhang et al., "A Systematic DNN Weight Pruning Framework using Alternating
//! Direction Method of Multipliers", ECCV 2018; NNI's `ADMMPruner`).
//!
//! Pruning as constrained training: minimise `loss(W)` subject to `W` lying in the sparse set.
//! ADMM splits it with an auxiliary `Z` (in the sparse set) and a scaled dual `U`:
//!
//! 1. `Z = W`, `U = 0` for every active pruning target.
//! 2. Each of [`AdmmSpec::iterations`] iterations:
//!    - train [`AdmmSpec::training_epochs`] epochs on `loss + sum over targets of
//!      rho/2 * ||W - Z + U||_F^2` ([`AdmmPenalty`], a [`TrainHooks::patch_loss`]);
//!    - `Z = W + U`, then project: mask `Z` with the pruner's own metric computed on `Z`
//!      (the base pruner's, e.g. `|z|` or each output channel's L1 norm) and the config's
//!      allocation;
//!    - `U = U + W - Z`.
//! 3. The final masks come from the trained `W` (the same metric and allocation).
//!
//! The penalty is the paper's square of the Frobenius norm. NNI's code adds
//! `rho/2 * sqrt(||W - Z + U||_F)` (the square root of the norm), whose gradient grows as the
//! residual shrinks; we follow the paper.

use std::collections::{BTreeMap, BTreeSet};

use burn::module::{Module, Param};
use burn::prelude::*;

use crate::driver::Training;
use crate::index::param_handles;
use crate::paths::{PathVisitor, visit_params};
use crate::prune::{prune_values, pruning_targets, read_handle};
use crate::registry::Pruner;
use crate::train::{TrainConfig, TrainHooks, train_classifier};
use crate::{CompressConfig, CompressError, Dense, MaskSet, ModuleIndex, Result, prune};

/// How a pruner runs ADMM ([`Pruner::admm`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmmSpec {
    /// The penalty weight `rho` (NNI's default 1e-4).
    pub rho: f64,
    /// ADMM iterations (train, project, update the dual).
    pub iterations: usize,
    /// Training epochs per iteration.
    pub training_epochs: usize,
}

/// The loss patch of one ADMM iteration: `sum over targets of rho/2 * ||W - (Z - U)||_F^2`,
/// with `Z - U` fixed for the iteration.
pub struct AdmmPenalty {
    rho: f64,
    /// `Z - U` per target path, flattened, on the model's device.
    anchors: BTreeMap<String, Tensor<1>>,
}

impl AdmmPenalty {
    /// The penalty pulling each parameter at a path of `anchors` towards its anchor (`Z - U`,
    /// any shape with the parameter's element count), with weight `rho`, on `device`.
    pub fn new(rho: f64, anchors: &BTreeMap<String, Dense<f32>>, device: &Device) -> Self {
        Self {
            rho,
            anchors: anchors
                .iter()
                .map(|(path, a)| {
                    let flat = Dense::new(vec![a.numel()], a.data().to_vec());
                    (path.clone(), flat.to_tensor::<1>(device))
                })
                .collect(),
        }
    }

    /// The penalty of `model`'s current parameters (tracked: its gradient reaches them).
    ///
    /// # Errors
    /// [`CompressError::UnknownParam`] for an anchor path the model lacks;
    /// [`CompressError::ShapeMismatch`] for an anchor of another element count.
    pub fn penalty<M: Module>(&self, model: &M) -> Result<Option<Tensor<1>>> {
        struct Sum<'a> {
            penalty: &'a AdmmPenalty,
            total: Option<Tensor<1>>,
            seen: BTreeSet<String>,
            error: Option<CompressError>,
        }
        impl PathVisitor for Sum<'_> {
            fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
                let Some(anchor) = self.penalty.anchors.get(path) else {
                    return;
                };
                let w = param.val();
                let n = w.shape().num_elements();
                if n != anchor.dims()[0] {
                    self.error.get_or_insert(CompressError::ShapeMismatch {
                        path: path.to_string(),
                        expected: w.dims().to_vec(),
                        found: anchor.dims().to_vec(),
                    });
                    return;
                }
                let term = (w.reshape([n]) - anchor.clone())
                    .powf_scalar(2.0)
                    .sum()
                    .mul_scalar(self.penalty.rho / 2.0);
                self.total = Some(match self.total.take() {
                    Some(t) => t + term,
                    None => term,
                });
                self.seen.insert(path.to_string());
            }
        }
        let mut sum = Sum {
            penalty: self,
            total: None,
            seen: BTreeSet::new(),
            error: None,
        };
        visit_params(model, &mut sum);
        if let Some(e) = sum.error {
            return Err(e);
        }
        if let Some(missing) = self.anchors.keys().find(|p| !sum.seen.contains(*p)) {
            return Err(CompressError::UnknownParam {
                path: missing.clone(),
                suggestion: None,
            });
        }
        Ok(sum.total)
    }
}

/// The hook state: the penalty and the first error it met (a hook cannot return one).
struct PenaltyHook {
    penalty: AdmmPenalty,
    error: Option<CompressError>,
}

impl<M: Module> TrainHooks<M> for PenaltyHook {
    fn patch_loss(&mut self, model: &M, loss: Tensor<1>) -> Tensor<1> {
        match self.penalty.penalty(model) {
            Ok(Some(p)) => loss + p,
            Ok(None) => loss,
            Err(e) => {
                self.error.get_or_insert(e);
                loss
            }
        }
    }
}

/// What [`admm`] produced.
#[derive(Debug, Clone)]
pub struct AdmmOutcome<M> {
    /// The model as the last iteration's training left it (unmasked `W`).
    pub model: M,
    /// The final masks, from `W`.
    pub masks: MaskSet,
    /// Per iteration, the primal residual `||W - Z||_F` over all targets after the projection:
    /// how far the weights are from the sparse set. The penalty drives it down.
    pub residuals: Vec<f64>,
}

/// Run ADMM pruning on `model` (on an autodiff device) with `pruner`'s metric, as `config`
/// says: see the [module docs](self). Each iteration trains with `training.config`, its
/// `epochs` replaced by `spec.training_epochs` and its seed offset by the iteration (its
/// `max_steps`, if set, caps each iteration).
///
/// # Errors
/// [`CompressError::Algorithm`] for zero iterations or epochs, a negative or non-finite `rho`,
/// or a learning rate of 0 (ADMM must train the weights); config resolution, metric and
/// allocation errors.
pub fn admm<M: Module + 'static>(
    model: M,
    config: &CompressConfig,
    pruner: &dyn Pruner,
    spec: &AdmmSpec,
    training: &Training<'_, M>,
) -> Result<AdmmOutcome<M>> {
    let refuse = |message: String| CompressError::Algorithm {
        algorithm: "admm".into(),
        message,
    };
    if spec.iterations == 0 || spec.training_epochs == 0 {
        return Err(refuse(
            "iterations and training_epochs must be at least 1".into(),
        ));
    }
    if !(spec.rho.is_finite() && spec.rho >= 0.0) {
        return Err(refuse(format!(
            "rho must be a finite number >= 0, found {}",
            spec.rho
        )));
    }
    if training.config.lr <= 0.0 {
        return Err(refuse(format!(
            "ADMM trains the weights between projections: the learning rate must be > 0, found {}",
            training.config.lr
        )));
    }
    let device = model
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(Device::flex);
    let (_, active) = pruning_targets(config, &ModuleIndex::from_module(&model))?;
    let paths: BTreeSet<String> = active.iter().map(|t| t.path.clone()).collect();
    let read = |model: &M| -> Result<BTreeMap<String, Dense<f32>>> {
        let handles = param_handles(model, |p| paths.contains(p));
        paths
            .iter()
            .map(|p| Ok((p.clone(), read_handle(&handles, p)?)))
            .collect()
    };
    let mut z = read(&model)?;
    let mut u: BTreeMap<String, Dense<f32>> = z
        .iter()
        .map(|(p, w)| (p.clone(), Dense::full(w.shape().to_vec(), 0.0)))
        .collect();
    let mut model = model;
    let mut residuals = Vec::with_capacity(spec.iterations);
    for iteration in 0..spec.iterations {
        let anchors: BTreeMap<String, Dense<f32>> = z
            .iter()
            .map(|(p, zp)| (p.clone(), zip(zp, &u[p], |z, u| z - u)))
            .collect();
        let mut hook = PenaltyHook {
            penalty: AdmmPenalty::new(spec.rho, &anchors, &device),
            error: None,
        };
        let train = TrainConfig {
            epochs: spec.training_epochs,
            seed: training.config.seed.wrapping_add(iteration as u64),
            ..training.config.clone()
        };
        let (trained, _) =
            train_classifier(model, training.data, training.forward, &train, &mut hook);
        if let Some(e) = hook.error {
            return Err(e);
        }
        model = trained;
        let w = read(&model)?;
        // Z = W + U, projected onto the sparse set by the pruner's metric on Z.
        let w_plus_u: BTreeMap<String, Dense<f32>> = w
            .iter()
            .map(|(p, wp)| (p.clone(), zip(wp, &u[p], |w, u| w + u)))
            .collect();
        let masks = prune_values(&model, config, pruner, &BTreeMap::new(), &w_plus_u)?.masks;
        let mut residual = 0.0f64;
        for (p, wu) in w_plus_u {
            let projected = match masks.get(&p) {
                Some(mask) => Dense::new(
                    wu.shape().to_vec(),
                    wu.data()
                        .iter()
                        .zip(mask.data())
                        .map(|(&x, &m)| if m == 0 { 0.0 } else { x })
                        .collect(),
                ),
                None => wu,
            };
            let wp = &w[&p];
            u.insert(
                p.clone(),
                zip(&u[&p], &zip(wp, &projected, |w, z| w - z), |u, d| u + d),
            );
            residual += wp
                .data()
                .iter()
                .zip(projected.data())
                .map(|(&a, &b)| ((a - b) as f64).powi(2))
                .sum::<f64>();
            z.insert(p, projected);
        }
        residuals.push(residual.sqrt());
    }
    let masks = prune(&model.valid(), config, pruner)?.masks;
    Ok(AdmmOutcome {
        model,
        masks,
        residuals,
    })
}

/// `f` of two same-shaped host tensors, element by element.
fn zip(a: &Dense<f32>, b: &Dense<f32>, f: impl Fn(f32, f32) -> f32) -> Dense<f32> {
    Dense::new(
        a.shape().to_vec(),
        a.data()
            .iter()
            .zip(b.data())
            .map(|(&x, &y)| f(x, y))
            .collect(),
    )
}
