//! Applying a plan: a copy of the model with smaller tensors, of the same Rust type.

use std::collections::HashMap;

use burn::module::{Module, Param, ParamId};
use burn::prelude::*;
use compress_core::ModuleIndex;
use compress_core::structure::with_epsilon_factors;

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

/// Per gamma path of a burn-nn `RmsNorm` that loses channels, `d / d'` (`d'` kept of `d`).
fn rms_ratios(plan: &Plan, index: &ModuleIndex) -> HashMap<String, f64> {
    index
        .layers()
        .iter()
        .filter(|l| l.type_name == "RmsNorm")
        .filter_map(|l| {
            let gamma = l.param("gamma")?;
            let keep = plan.params.get(&gamma.path)?.iter().find(|k| k.axis == 0)?;
            let d = *plan.original_shapes.get(&gamma.path)?.first()?;
            Some((gamma.path.clone(), d as f64 / keep.kept.len() as f64))
        })
        .collect()
}

/// A copy of `model` with the plan's tensors shrunk and its structure fixed. The input model is
/// never changed (BatchNorm running statistics included).
///
/// An RMS norm (burn-nn `RmsNorm`) that keeps `d'` of its `d` channels is rescaled so that it
/// computes what the masked model's norm computed with the removed channels at zero: gamma times
/// `sqrt(d / d')`, epsilon times `d / d'` (the epsilon through its
/// [`FixStructure`], see [`compress_core::structure::with_epsilon_factors`]).
///
/// # Errors
/// As [`check_plan`], before anything is touched; [`SpeedupError::UnfixedNorm`] when the
/// model's `FixStructure` never reaches an RMS norm that lost channels.
pub fn apply<M: Module + FixStructure>(model: &M, plan: &Plan) -> Result<M> {
    let index = ModuleIndex::from_module(model);
    check_plan(plan, &index)?;
    let ratios = rms_ratios(plan, &index);
    let mut mapper = Shrinker {
        plan,
        ratios: &ratios,
    };
    let mut out =
        compress_core::paths::map_params(compress_core::mask::deep_copy(model), &mut mapper);
    let out_index = ModuleIndex::from_module(&out);
    let factors: HashMap<ParamId, f64> = ratios
        .iter()
        .filter_map(|(path, r)| Some((out_index.param(path)?.id, *r)))
        .collect();
    let ((), left) = with_epsilon_factors(factors, || out.fix_structure());
    if let Some(id) = left.first() {
        let gamma = out_index
            .params()
            .find(|p| p.id == *id)
            .map_or_else(|| id.to_string(), |p| p.path.clone());
        let layer = gamma.rsplit_once('.').map_or(gamma.as_str(), |(l, _)| l);
        return Err(SpeedupError::UnfixedNorm {
            layer: layer.to_string(),
        });
    }
    Ok(out)
}

struct Shrinker<'a> {
    plan: &'a Plan,
    /// RMS norm gammas to multiply by `sqrt` of their ratio after shrinking.
    ratios: &'a HashMap<String, f64>,
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
            match self.ratios.get(&path) {
                Some(r) => t.mul_scalar(r.sqrt()),
                None => t,
            }
        })
    }
}
