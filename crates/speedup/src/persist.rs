//! Saving a pruned model: its weights plus the plan that shaped them. Burn checks every shape on
//! load, so loading replays the plan on a fresh (unpruned) template first, then loads the weights.

use std::path::{Path, PathBuf};

use burn::module::Module;

use compress_core::FixStructure;
use compress_core::error::FileError;

use crate::Result;
use crate::apply::apply;
use crate::plan::Plan;

fn paths(base: &Path) -> (PathBuf, PathBuf) {
    (base.with_extension("bpk"), base.with_extension("plan.json"))
}

/// Write `<base>.bpk` (Burn's burnpack weights) and `<base>.plan.json`.
///
/// # Errors
/// [`SpeedupError::Io`](crate::SpeedupError::Io) when a file cannot be written.
pub fn save_pruned<M: Module>(
    model: &M,
    plan: &Plan,
    base: impl AsRef<Path>,
) -> Result<(PathBuf, PathBuf)> {
    let (weights, plan_file) = paths(base.as_ref());
    plan.save(&plan_file)?;
    model
        .clone()
        .save_file(&weights)
        .map_err(|e| FileError::new(&weights, e))?;
    Ok((weights, plan_file))
}

/// Load what [`save_pruned`] wrote into `template`, a fresh model of the unpruned architecture.
///
/// # Errors
/// A missing or corrupt plan, a plan that does not fit the template, or weights that do not fit
/// the planned shapes.
pub fn load_pruned<M: Module + FixStructure>(template: M, base: impl AsRef<Path>) -> Result<M> {
    let (weights, plan_file) = paths(base.as_ref());
    let plan = Plan::load(&plan_file)?;
    let shaped = apply(&template, &plan)?;
    Ok(shaped
        .try_load_file(&weights)
        .map_err(|e| FileError::new(&weights, e))?)
}
