//! Training integration: a small trainer for supervised classification, with the hooks that
//! training-aware compression needs (NNI's Evaluator, §5.5 of the behavioural spec).
//!
//! Algorithms see the training loop only through [`TrainHooks`]: a loss patch (regularisers,
//! distillation), the gradients after each backward (Taylor importance, movement scores), and the
//! model after each optimizer step (mask regeneration, clipping). Masks stay in force while
//! training when they are applied with [`MaskSet::apply_soft`](crate::MaskSet::apply_soft).

use std::io::IsTerminal;
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::Gradients;

use crate::dataset::ImageDataset;

/// Which optimizer the trainer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    /// Adam with Burn's defaults.
    Adam,
    /// Plain SGD.
    Sgd,
}

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Passes over the training data.
    pub epochs: usize,
    /// Stop after this many optimizer steps, if set.
    pub max_steps: Option<usize>,
    /// Images per step.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Seed of the shuffling order (and of the device's RNG).
    pub seed: u64,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            max_steps: None,
            batch_size: 64,
            lr: 1e-3,
            optimizer: OptimizerKind::Adam,
            seed: 0,
            progress: true,
        }
    }
}

/// What one training step's forward saw: the batch and the model's logits (for loss patches
/// that need them, such as distillation).
#[derive(Debug, Clone, Copy)]
pub struct StepBatch<'a> {
    /// The images `[batch, channels, height, width]`.
    pub images: &'a Tensor<4>,
    /// The labels `[batch]`.
    pub labels: &'a Tensor<1, Int>,
    /// The model's logits for `images` (tracked: gradients flow through them).
    pub logits: &'a Tensor<2>,
    /// The optimizer step this batch is for (0-based).
    pub step: usize,
}

/// Callbacks around each training step; every method has a no-op default.
pub trait TrainHooks<M> {
    /// Change the loss before backward (a regulariser).
    fn patch_loss(&mut self, _model: &M, loss: Tensor<1>) -> Tensor<1> {
        loss
    }
    /// Change the loss before backward, seeing the batch and the logits (NNI's
    /// `patch_loss(f(loss, batch))`: distillation). The default calls
    /// [`patch_loss`](Self::patch_loss), so hooks written against it keep working.
    fn patch_loss_with(&mut self, model: &M, loss: Tensor<1>, _batch: &StepBatch<'_>) -> Tensor<1> {
        self.patch_loss(model, loss)
    }
    /// Train parameters that live outside the model (NNI's `patch_optim_param_group`: a
    /// distiller's adapters) with the training loop's own `optimizer` and learning rate: take
    /// their gradients out of `grads` (the backward's, the model's own already taken out) and
    /// step them, e.g. `optimizer.step(lr, adapters, GradientsParams::from_module(grads,
    /// &adapters))`. Called after the model's optimizer step.
    fn step_extra(&mut self, _optimizer: &mut ModuleOptimizer, _lr: f64, _grads: &mut Gradients) {}
    /// See the gradients of a step before the optimizer uses them.
    fn after_backward(&mut self, _model: &M, _grads: &GradientsParams, _step: usize) {}
    /// Just before the optimizer step: change the model or take gradients out of `grads` (an
    /// algorithm's private optimizer, e.g. learned pruning scores, steps its own parameters
    /// here so the user's optimizer never sees them).
    fn before_step(&mut self, model: M, _grads: &mut GradientsParams, _step: usize) -> M {
        model
    }
    /// Change the model after the optimizer step (mask updates, clipping).
    fn after_step(&mut self, model: M, _step: usize) -> M {
        model
    }
}

/// Hooks that do nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl<M> TrainHooks<M> for NoHooks {}

/// Several hooks as one, called in order (fusion: a scheduled pruner, a quantization
/// simulation and a distiller in one training run). Each loss patch sees the loss the previous
/// one returned.
pub struct HookChain<'a, M> {
    hooks: Vec<&'a mut dyn TrainHooks<M>>,
}

impl<'a, M> HookChain<'a, M> {
    /// The hooks, called in this order.
    pub fn new(hooks: Vec<&'a mut dyn TrainHooks<M>>) -> Self {
        Self { hooks }
    }
}

impl<M> TrainHooks<M> for HookChain<'_, M> {
    fn patch_loss(&mut self, model: &M, loss: Tensor<1>) -> Tensor<1> {
        self.hooks
            .iter_mut()
            .fold(loss, |loss, h| h.patch_loss(model, loss))
    }
    fn patch_loss_with(&mut self, model: &M, loss: Tensor<1>, batch: &StepBatch<'_>) -> Tensor<1> {
        self.hooks
            .iter_mut()
            .fold(loss, |loss, h| h.patch_loss_with(model, loss, batch))
    }
    fn after_backward(&mut self, model: &M, grads: &GradientsParams, step: usize) {
        for h in &mut self.hooks {
            h.after_backward(model, grads, step);
        }
    }
    fn before_step(&mut self, model: M, grads: &mut GradientsParams, step: usize) -> M {
        self.hooks
            .iter_mut()
            .fold(model, |m, h| h.before_step(m, grads, step))
    }
    fn step_extra(&mut self, optimizer: &mut ModuleOptimizer, lr: f64, grads: &mut Gradients) {
        for h in &mut self.hooks {
            h.step_extra(optimizer, lr, grads);
        }
    }
    fn after_step(&mut self, model: M, step: usize) -> M {
        self.hooks
            .iter_mut()
            .fold(model, |m, h| h.after_step(m, step))
    }
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Optimizer steps taken.
    pub steps: usize,
    /// Mean loss of the last epoch.
    pub final_loss: f64,
    /// Wall time.
    pub seconds: f64,
}

/// A deterministic permutation of `0..n` (SplitMix64-driven Fisher-Yates): the order
/// [`train_classifier`] visits the data in epoch `e` is `shuffled(n, seed + e)`.
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Train a classifier with cross-entropy. `model` must live on an autodiff device; `forward`
/// maps an image batch `[B, 1, H, W]` to logits `[B, classes]`.
pub fn train_classifier<M: Module>(
    model: M,
    data: &ImageDataset,
    forward: impl Fn(&M, Tensor<4>) -> Tensor<2>,
    config: &TrainConfig,
    hooks: &mut dyn TrainHooks<M>,
) -> (M, TrainReport) {
    let device = model
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(Device::flex);
    device.seed(config.seed);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optim = match config.optimizer {
        OptimizerKind::Adam => AdamConfig::new().init(),
        OptimizerKind::Sgd => SgdConfig::new().init(),
    };
    let per_epoch = data.len().div_ceil(config.batch_size.max(1));
    let total = config
        .max_steps
        .unwrap_or(usize::MAX)
        .min(per_epoch * config.epochs);
    let bar = if config.progress && std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut model = model;
    let mut step = 0;
    let mut final_loss = 0.0;
    'epochs: for epoch in 0..config.epochs {
        let order = shuffled(data.len(), config.seed.wrapping_add(epoch as u64));
        let shuffled_data = data.filter_ordered(&order);
        let (mut sum, mut count) = (0.0, 0usize);
        for start in (0..data.len()).step_by(config.batch_size.max(1)) {
            if step >= total {
                break 'epochs;
            }
            let end = (start + config.batch_size).min(data.len());
            let (x, y) = shuffled_data.batch(start, end, &device);
            let logits = forward(&model, x.clone());
            let loss = loss_fn.forward(logits.clone(), y.clone());
            let batch = StepBatch {
                images: &x,
                labels: &y,
                logits: &logits,
                step,
            };
            let loss = hooks.patch_loss_with(&model, loss, &batch);
            sum += loss.clone().into_scalar::<f32>() as f64;
            count += 1;
            let mut raw = loss.backward();
            let mut grads = GradientsParams::from_module(&mut raw, &model);
            hooks.after_backward(&model, &grads, step);
            model = hooks.before_step(model, &mut grads, step);
            model = optim.step(config.lr, model, grads);
            hooks.step_extra(&mut optim, config.lr, &mut raw);
            model = hooks.after_step(model, step);
            step += 1;
            bar.set_position(step as u64);
            bar.set_message(format!(
                "epoch {} loss {:.4}",
                epoch + 1,
                sum / count as f64
            ));
        }
        final_loss = sum / count.max(1) as f64;
    }
    bar.finish_and_clear();
    (
        model,
        TrainReport {
            steps: step,
            final_loss,
            seconds: started.elapsed().as_secs_f64(),
        },
    )
}

/// Top-1 accuracy of a classifier on `data`, in batches of 256 on `device`.
pub fn accuracy<M>(
    model: &M,
    data: &ImageDataset,
    forward: impl Fn(&M, Tensor<4>) -> Tensor<2>,
    device: &Device,
) -> f64 {
    let mut correct = 0usize;
    for start in (0..data.len()).step_by(256) {
        let end = (start + 256).min(data.len());
        let (x, y) = data.batch(start, end, device);
        let predicted = forward(model, x).argmax(1).flatten::<1>(0, 1);
        correct += predicted.equal(y).int().sum().into_scalar::<i64>() as usize;
    }
    correct as f64 / data.len().max(1) as f64
}

/// A statistic of (weight, gradient) accumulated per parameter over training steps (Taylor's
/// `(w * g)^2`, movement's `-w * g`): a [`TrainHooks`] that pruners needing gradients use.
pub struct GradientStatistics {
    wanted: std::collections::BTreeSet<String>,
    statistic: Box<dyn Fn(Tensor<1>, Tensor<1>) -> Tensor<1>>,
    sums: std::collections::BTreeMap<String, (Tensor<1>, Vec<usize>)>,
    steps: usize,
}

impl GradientStatistics {
    /// Accumulate `statistic(weight, grad)` (both flattened) for the parameters at `paths`.
    pub fn new(
        paths: impl IntoIterator<Item = String>,
        statistic: impl Fn(Tensor<1>, Tensor<1>) -> Tensor<1> + 'static,
    ) -> Self {
        Self {
            wanted: paths.into_iter().collect(),
            statistic: Box::new(statistic),
            sums: Default::default(),
            steps: 0,
        }
    }

    /// Steps accumulated so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The mean statistic per parameter path, in each parameter's shape.
    ///
    /// # Errors
    /// When a statistic cannot be read back as `f32`.
    pub fn mean(&self) -> crate::Result<std::collections::BTreeMap<String, crate::Dense<f32>>> {
        self.sums
            .iter()
            .map(|(path, (sum, shape))| {
                let mean = sum.clone().div_scalar(self.steps.max(1) as f64);
                crate::Dense::from_tensor(mean, path)
                    .map(|d| (path.clone(), d.reshape(shape.clone())))
            })
            .collect()
    }
}

impl<M: Module> TrainHooks<M> for GradientStatistics {
    fn after_backward(&mut self, model: &M, grads: &GradientsParams, _step: usize) {
        struct Visit<'a> {
            stats: &'a mut GradientStatistics,
            grads: &'a GradientsParams,
        }
        impl crate::paths::PathVisitor for Visit<'_> {
            fn visit<const D: usize>(
                &mut self,
                path: &str,
                param: &burn::module::Param<Tensor<D>>,
            ) {
                if !self.stats.wanted.contains(path) {
                    return;
                }
                let Some(grad) = self.grads.get::<D>(param.id) else {
                    return;
                };
                let weight = param.val().detach();
                let shape = weight.shape().to_vec();
                let n = shape.iter().product::<usize>();
                let device = grad.device();
                let value = (self.stats.statistic)(
                    weight.reshape([n]).to_device(&device),
                    grad.reshape([n]),
                );
                let entry = self
                    .stats
                    .sums
                    .entry(path.to_string())
                    .or_insert_with(|| (Tensor::zeros([n], &device), shape));
                entry.0 = entry.0.clone() + value;
            }
        }
        crate::paths::visit_params(model, &mut Visit { stats: self, grads });
        self.steps += 1;
    }
}
