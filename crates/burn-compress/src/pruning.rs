//! Pruning a model whose forward pass can be captured: the route the `burn-compress` command
//! line and recipes share.
//!
//! [`prune_captured`] couples the config's targets into the dependency groups found in the
//! captured graph (so coupled layers, such as the two sides of a residual add, get identical
//! masks up front: NNI's `auto_set_denpendency_group_ids`), then runs compress-core's one pruning
//! driver, [`prune_model_with`], which picks one-shot, gradient, learned-score, activation, ADMM
//! or scheduled pruning from what the pruner declares.
//!
//! Activation pruners (`apoz`, `mean-activation`) need layer outputs, which compress-core cannot
//! produce: [`ReplayOutputs`] supplies them from the training data through compress-graph's
//! replay taps (the model is never trained or changed for it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use burn::module::Module;
use burn::prelude::*;
use compress_core::{
    CompressConfig, CompressError, ModuleIndex, Pruner,
    activations::LayerOutputs,
    dataset::ImageDataset,
    driver::{PruneSchedule, Pruned, Training, prune_model_with},
    train::shuffled,
};
use compress_graph::{Graph, GraphError, Replay, Site, Tap};
use compress_speedup::{DependencyGraph, SpeedupError};

/// Why [`prune_captured`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The captured graph could not be analysed (an op without a channel rule).
    #[error(transparent)]
    Graph(#[from] SpeedupError),
    /// The config, the pruner or the training refused.
    #[error(transparent)]
    Prune(#[from] CompressError),
}

/// The config with coupled targets sharing a `dependency_group_id`, from `graph`, a capture of
/// `model`'s forward pass.
///
/// # Errors
/// [`PruneError::Graph`] when the graph has an op without a channel rule;
/// [`PruneError::Prune`] for config resolution errors.
pub fn coupled_config<M: Module>(
    model: &M,
    graph: &Graph,
    config: &CompressConfig,
) -> Result<CompressConfig, PruneError> {
    let deps = DependencyGraph::build(graph)?;
    Ok(deps.auto_dependency_groups(config, &ModuleIndex::from_module(&model.valid()))?)
}

/// Prune `model` (captured as `graph`) with `pruner` as `config` says: [`coupled_config`], then
/// [`prune_model_with`]. Pruners that train (Taylor, Slim, Movement, ADMM, any pruner on a
/// `schedule`) need `training` and a model on an autodiff device. Activation pruners (APoZ,
/// mean activation) need `training` for its data only: their layer outputs come from
/// [`ReplayOutputs::from_training`], on any device, and the model is returned unchanged.
///
/// # Errors
/// As [`coupled_config`] and [`prune_model_with`].
pub fn prune_captured<M: Module + 'static>(
    model: M,
    graph: &Graph,
    config: &CompressConfig,
    pruner: Arc<dyn Pruner>,
    schedule: Option<&PruneSchedule>,
    training: Option<&Training<'_, M>>,
) -> Result<Pruned<M>, PruneError> {
    let config = coupled_config(&model, graph, config)?;
    let outputs = training.map(ReplayOutputs::from_training);
    Ok(prune_model_with(
        model,
        &config,
        pruner,
        schedule,
        training,
        outputs.as_ref().map(|o| o as &dyn LayerOutputs<M>),
    )?)
}

/// Layer outputs of an image classifier over batches of a dataset, through compress-graph's
/// [`Replay`] taps: the [`LayerOutputs`] source of activation pruners.
///
/// Batches are taken in the order the first epoch of training with `seed` visits the data
/// ([`shuffled`]), `batch_size` images each (the last may be smaller). The model runs in
/// inference mode (`valid()`: no autodiff, BatchNorm on running statistics) through a replay of
/// its captured forward, one capture per batch shape; its parameters are only read.
pub struct ReplayOutputs<'a, M> {
    /// The images.
    pub data: &'a ImageDataset,
    /// Logits `[batch, classes]` for an image batch (what is captured and replayed).
    pub forward: &'a dyn Fn(&M, Tensor<4>) -> Tensor<2>,
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of the shuffling order.
    pub seed: u64,
}

impl<'a, M> ReplayOutputs<'a, M> {
    /// The training's data, forward, batch size and seed.
    pub fn from_training(training: &Training<'a, M>) -> Self {
        Self {
            data: training.data,
            forward: training.forward,
            batch_size: training.config.batch_size,
            seed: training.config.seed,
        }
    }
}

/// A replay error as compress-core sees it.
fn replay_error(e: GraphError) -> CompressError {
    CompressError::Algorithm {
        algorithm: "activation replay".into(),
        message: e.to_string(),
    }
}

/// Hands each wanted layer output to the visitor; keeps the visitor's first error.
struct Collect<'v> {
    layers: &'v BTreeSet<String>,
    visit: &'v mut dyn FnMut(&str, Tensor<3>) -> compress_core::Result<()>,
    error: Option<CompressError>,
}

impl Tap for Collect<'_> {
    fn wants(&self, layer: &str, site: Site) -> bool {
        site == Site::Output && self.layers.contains(layer)
    }

    fn tap(
        &mut self,
        layer: &str,
        _site: Site,
        _rank: usize,
        value: Tensor<3>,
    ) -> compress_graph::Result<Tensor<3>> {
        if let Err(e) = (self.visit)(layer, value.clone()) {
            let message = e.to_string();
            self.error = Some(e);
            return Err(GraphError::Replay(message));
        }
        Ok(value)
    }
}

impl<M: Module> LayerOutputs<M> for ReplayOutputs<'_, M> {
    fn for_each_output(
        &self,
        model: &M,
        layers: &BTreeSet<String>,
        batches: usize,
        visit: &mut dyn FnMut(&str, Tensor<3>) -> compress_core::Result<()>,
    ) -> compress_core::Result<usize> {
        let model = model.valid();
        let device = model
            .devices()
            .into_iter()
            .next()
            .unwrap_or_else(Device::flex);
        let batch_size = self.batch_size.max(1);
        let wanted = (batches * batch_size).min(self.data.len());
        let order: Vec<usize> = shuffled(self.data.len(), self.seed)
            .into_iter()
            .take(wanted)
            .collect();
        let data = self.data.filter_ordered(&order);
        let mut replays: BTreeMap<[usize; 4], Replay> = BTreeMap::new();
        let mut tap = Collect {
            layers,
            visit,
            error: None,
        };
        let mut ran = 0;
        for start in (0..data.len()).step_by(batch_size) {
            let end = (start + batch_size).min(data.len());
            let (x, _) = data.batch(start, end, &device);
            let shape = x.dims();
            let replay = match replays.entry(shape) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let replay =
                        Replay::capture(&model, shape, self.forward).map_err(replay_error)?;
                    if let Some(missing) = layers
                        .iter()
                        .find(|l| !replay.layers().iter().any(|io| &io.layer == *l))
                    {
                        return Err(CompressError::Algorithm {
                            algorithm: "activation replay".into(),
                            message: format!(
                                "layer '{missing}' is not called in the captured forward pass, \
                                 so its output cannot be observed"
                            ),
                        });
                    }
                    e.insert(replay)
                }
            };
            let run = replay.run::<M, 4, 2>(&model, x, &mut tap);
            if let Some(e) = tap.error.take() {
                return Err(e);
            }
            run.map_err(replay_error)?;
            ran += 1;
        }
        Ok(ran)
    }
}
