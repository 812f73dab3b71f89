//! Pruning a model whose forward pass can be captured: the route the `burn-compress` command
//! line and recipes share.
//!
//! [`prune_captured`] couples the config's targets into the dependency groups found in the
//! captured graph (so coupled layers, such as the two sides of a residual add, get identical
//! masks up front: NNI's `auto_set_denpendency_group_ids`), then runs compress-core's one pruning
//! driver, [`prune_model`], which picks one-shot, gradient, learned-score or scheduled pruning
//! from what the pruner declares.

use std::sync::Arc;

use burn::module::Module;
use compress_core::{
    CompressConfig, CompressError, ModuleIndex, Pruner,
    driver::{PruneSchedule, Pruned, Training},
    prune_model,
};
use compress_graph::Graph;
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
/// [`prune_model`]. Pruners that train (Taylor, Slim, Movement, any pruner on a `schedule`) need
/// `training` and a model on an autodiff device.
///
/// # Errors
/// As [`coupled_config`] and [`prune_model`].
pub fn prune_captured<M: Module + 'static>(
    model: M,
    graph: &Graph,
    config: &CompressConfig,
    pruner: Arc<dyn Pruner>,
    schedule: Option<&PruneSchedule>,
    training: Option<&Training<'_, M>>,
) -> Result<Pruned<M>, PruneError> {
    let config = coupled_config(&model, graph, config)?;
    Ok(prune_model(model, &config, pruner, schedule, training)?)
}
