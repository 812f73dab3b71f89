//! Applying a plan: a copy of the model with smaller tensors, of the same Rust type.

use burn::module::{Module, Param};
use burn::prelude::*;
use compress_core::ModuleIndex;

use compress_core::FixStructure;

use crate::plan::Plan;
use crate::{Result, SpeedupError};

/// Check that a plan fits a model: every parameter exists with the plan's original shape, axes
/// exist, and kept indices are in range.
///
/// # Errors
/// [`SpeedupError::PlanMismatch`] naming the parameter.
pub fn check_plan(plan: &Plan, index: &ModuleIndex) -> Result<()> {
    for (path, axes) in &plan.params {
        let info = index.param(path).ok_or_else(|| {
            SpeedupError::PlanMismatch(format!("the model has no parameter '{path}'"))
        })?;
        if plan.original_shapes.get(path) != Some(&info.shape) {
            return Err(SpeedupError::PlanMismatch(format!(
                "'{path}' has shape {:?}, the plan was made for {:?}",
                info.shape,
                plan.original_shapes.get(path)
            )));
        }
        for k in axes {
            let n = *info.shape.get(k.axis).ok_or_else(|| {
                SpeedupError::PlanMismatch(format!("'{path}' has no axis {}", k.axis))
            })?;
            if k.kept.is_empty() {
                return Err(SpeedupError::PlanMismatch(format!(
                    "'{path}' axis {} keeps nothing",
                    k.axis
                )));
            }
            if let Some(bad) = k.kept.iter().find(|&&i| i >= n) {
                return Err(SpeedupError::PlanMismatch(format!(
                    "'{path}' axis {} has {n} entries, the plan keeps {bad}",
                    k.axis
                )));
            }
        }
    }
    Ok(())
}

/// A copy of `model` with the plan's tensors shrunk and its structure fixed. The input model is
/// never changed (BatchNorm running statistics included).
///
/// # Errors
/// As [`check_plan`], before anything is touched.
pub fn apply<M: Module + FixStructure>(model: &M, plan: &Plan) -> Result<M> {
    check_plan(plan, &ModuleIndex::from_module(model))?;
    let mut mapper = Shrinker { plan };
    let mut out =
        compress_core::paths::map_params(compress_core::mask::deep_copy(model), &mut mapper);
    out.fix_structure();
    Ok(out)
}

struct Shrinker<'a> {
    plan: &'a Plan,
}

impl compress_core::paths::PathMapper for Shrinker<'_> {
    fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = path.to_string();
        let Some(axes) = self.plan.params.get(&path) else {
            return param;
        };
        compress_core::mask::map_param_leaf(param, |mut t| {
            for k in axes {
                let kept: Vec<i64> = k.kept.iter().map(|&i| i as i64).collect();
                let idx =
                    Tensor::<1, Int>::from_data(TensorData::new(kept, [k.kept.len()]), &t.device());
                t = t.select(k.axis, idx);
            }
            t
        })
    }
}
