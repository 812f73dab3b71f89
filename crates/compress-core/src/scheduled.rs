//! Scheduled pruning during training (NNI's `LinearPruner` / `AGPPruner`): any registered pruner
//! regenerates its masks every `interval_steps` steps, towards the config's ratios along a
//! [`Schedule`], and the current masks are re-applied after every optimizer step, so pruned
//! weights stay zero. Gradient pruners (Taylor) get the statistic accumulated since the last update.

use burn::module::Module;
use burn::optim::GradientsParams;

use crate::registry::{MetricNeeds, Pruner};
use crate::train::{GradientStatistics, TrainHooks};
use crate::{
    CompressConfig, CompressError, MaskSet, ModuleIndex, Result, prune, prune::prune_with_grads,
    schedule::Schedule,
};

/// A [`TrainHooks`] that prunes on a schedule.
pub struct ScheduledPruning {
    pruner: std::sync::Arc<dyn Pruner>,
    config: CompressConfig,
    schedule: Schedule,
    interval_steps: usize,
    total_times: usize,
    updates: usize,
    targets: Vec<String>,
    stats: Option<GradientStatistics>,
    masks: Option<MaskSet>,
    error: Option<CompressError>,
}

impl ScheduledPruning {
    /// Prune `index`'s model with `pruner` as `config` says, reaching its ratios after
    /// `total_times` updates `interval_steps` steps apart.
    ///
    /// # Errors
    /// Config resolution errors; `interval_steps` or `total_times` of zero.
    pub fn new(
        pruner: std::sync::Arc<dyn Pruner>,
        config: CompressConfig,
        index: &ModuleIndex,
        schedule: Schedule,
        interval_steps: usize,
        total_times: usize,
    ) -> Result<Self> {
        if interval_steps == 0 || total_times == 0 {
            return Err(CompressError::Algorithm {
                algorithm: "schedule".into(),
                message: "interval_steps and total_times must be at least 1".into(),
            });
        }
        let targets = config
            .resolve(index)?
            .targets
            .iter()
            .filter(|t| t.is_active())
            .map(|t| t.path.clone())
            .collect();
        let mut s = Self {
            pruner,
            config,
            schedule,
            interval_steps,
            total_times,
            updates: 0,
            targets,
            stats: None,
            masks: None,
            error: None,
        };
        s.stats = s.fresh_stats();
        Ok(s)
    }

    fn fresh_stats(&self) -> Option<GradientStatistics> {
        (self.pruner.needs() == MetricNeeds::Gradients).then(|| {
            let p = self.pruner.clone();
            GradientStatistics::new(self.targets.clone(), move |w, g| p.gradient_statistic(w, g))
        })
    }

    /// The config at update `t`: every ratio scaled along the schedule.
    fn config_at(&self, t: usize) -> CompressConfig {
        self.config.scaled(self.schedule.ratio(1.0, t))
    }

    /// The masks in force (after the last update).
    pub fn masks(&self) -> Option<&MaskSet> {
        self.masks.as_ref()
    }

    /// Updates done so far.
    pub fn updates(&self) -> usize {
        self.updates
    }

    /// The first error an update hit (training goes on with the previous masks).
    pub fn take_error(&mut self) -> Option<CompressError> {
        self.error.take()
    }

    fn update<M: Module>(&mut self, model: &M) -> Result<()> {
        self.updates += 1;
        let config = self.config_at(self.updates);
        let inference = model.valid();
        let outcome = match self.stats.take() {
            Some(stats) => {
                let grads = stats.mean()?;
                self.stats = self.fresh_stats();
                prune_with_grads(&inference, &config, self.pruner.as_ref(), &grads)?
            }
            None => prune(&inference, &config, self.pruner.as_ref())?,
        };
        self.masks = Some(outcome.masks);
        Ok(())
    }
}

impl<M: Module> TrainHooks<M> for ScheduledPruning {
    fn after_backward(&mut self, model: &M, grads: &GradientsParams, step: usize) {
        if let Some(stats) = &mut self.stats {
            stats.after_backward(model, grads, step);
        }
    }

    fn after_step(&mut self, model: M, step: usize) -> M {
        if (step + 1).is_multiple_of(self.interval_steps)
            && self.updates < self.total_times
            && let Err(e) = self.update(&model)
        {
            self.error.get_or_insert(e);
        }
        match &self.masks {
            Some(m) => m.apply_hard(&model).unwrap_or(model),
            None => model,
        }
    }
}
