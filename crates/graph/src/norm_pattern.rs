//! Recognizing an RMS norm over channels among the captured ops.
//!
//! burn-nn's `RmsNorm` records `x * x`, `mean_dim(last)`, `+ eps`, `sqrt`, `x / rms` and a
//! multiplication by its gamma (viewed `[1, .., d]`). A mean over channels pins them in general
//! (the mean over `d'` kept channels is not the mean over `d`), but for this pattern removing
//! channels that are exactly zero is exact once the norm is rescaled:
//!
//! `x / sqrt(S/d + eps) * g  =  x / sqrt(S/d' + eps') * g'` with `eps' = eps * d/d'` and
//! `g' = g * sqrt(d/d')` (`S` the sum of squares, unchanged by zero channels).
//!
//! The pattern is accepted only when every intermediate (mean, mean + eps, rms) is read exactly
//! once by the next step, the normalized tensor is read only by multiplications with a
//! per-channel parameter (the gamma the plan rescales), and none of them is a graph output.
//! Anything else pins the channels ("reduced by a mean over channels"), as before.

use std::collections::HashMap;

use burn_ir::{
    BaseOperationIr as Base, FloatOperationIr as F, NumericOperationIr as N, OperationIr, TensorId,
    TensorIr,
};

use crate::rules::{Analysis, Value};

/// The steps after the mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Mean,
    Eps,
    Rms,
    Normalized,
}

/// One candidate RMS norm.
#[derive(Debug)]
struct Instance {
    /// The normalized input.
    x: TensorId,
    /// Its channel slots.
    slots: Vec<usize>,
    /// Every tensor of the pattern: its stage and how many ops read it.
    uses: HashMap<TensorId, (Stage, usize)>,
    /// Read by an op that is not the next step.
    broken: bool,
    /// The parameters the normalized tensor is multiplied with.
    gammas: Vec<String>,
}

/// The RMS patterns being followed during an [`Analysis`] run.
#[derive(Debug, Default)]
pub(crate) struct RmsPatterns {
    /// `x * x` (or `x^2`) over channels on the last axis: the square's id -> x's id and slots.
    squares: HashMap<TensorId, (TensorId, Vec<usize>)>,
    /// Every pattern tensor: its instance.
    owner: HashMap<TensorId, usize>,
    instances: Vec<Instance>,
}

/// What reading a pattern tensor of `stage` in `op` continues to, if it is the next step.
enum Next<'a> {
    Stage(Stage, &'a TensorIr),
    Gamma(String),
}

fn is_two(s: &burn_ir::ScalarIr) -> bool {
    s.elem::<f64>() == 2.0
}

impl Analysis {
    /// The channel slots of `t` when they sit on its last axis.
    fn last_axis_slots(&self, t: &TensorIr) -> Option<Vec<usize>> {
        self.map(t)
            .filter(|m| m.axis + 1 == t.shape.num_dims())
            .map(|m| m.slots)
    }

    /// Follow the RMS patterns through `op` (before its channel rule runs). Returns `true` when
    /// `op` is the mean of a new pattern: its output is set here and its rule (which would pin
    /// the channels) is skipped.
    pub(crate) fn rms_observe(&mut self, op: &OperationIr) -> bool {
        self.rms_reads(op);
        match op {
            OperationIr::NumericFloat(_, N::Mul(b)) if b.lhs.id == b.rhs.id => {
                if let Some(slots) = self.last_axis_slots(&b.lhs) {
                    self.rms.squares.insert(b.out.id, (b.lhs.id, slots));
                }
                false
            }
            OperationIr::NumericFloat(_, N::PowiScalar(s))
            | OperationIr::Float(_, F::PowfScalar(s))
                if is_two(&s.rhs) =>
            {
                if let Some(slots) = self.last_axis_slots(&s.lhs) {
                    self.rms.squares.insert(s.out.id, (s.lhs.id, slots));
                }
                false
            }
            OperationIr::NumericFloat(_, N::MeanDim(r))
                if r.axis + 1 == r.input.shape.num_dims() =>
            {
                let Some((x, slots)) = self.rms.squares.get(&r.input.id).cloned() else {
                    return false;
                };
                if self.last_axis_slots(&r.input).as_ref() != Some(&slots) {
                    return false;
                }
                let k = self.rms.instances.len();
                self.rms.instances.push(Instance {
                    x,
                    slots,
                    uses: HashMap::from([(r.out.id, (Stage::Mean, 0))]),
                    broken: false,
                    gammas: Vec::new(),
                });
                self.rms.owner.insert(r.out.id, k);
                self.set(&r.out, Value::Act(None));
                true
            }
            _ => false,
        }
    }

    /// Count the reads of pattern tensors by `op`: the next step extends the pattern, anything
    /// else breaks it.
    fn rms_reads(&mut self, op: &OperationIr) {
        let mut read: Vec<TensorId> = op
            .inputs()
            .map(|t| t.id)
            .filter(|id| self.rms.owner.contains_key(id))
            .collect();
        read.dedup();
        for id in read {
            let k = self.rms.owner[&id];
            let stage = self.rms.instances[k].uses[&id].0;
            let next = self.rms_next(op, id, stage, k);
            let inst = &mut self.rms.instances[k];
            if let Some(u) = inst.uses.get_mut(&id) {
                u.1 += 1;
            }
            match next {
                Some(Next::Stage(s, out)) => {
                    inst.uses.insert(out.id, (s, 0));
                    self.rms.owner.insert(out.id, k);
                }
                Some(Next::Gamma(path)) => inst.gammas.push(path),
                None => inst.broken = true,
            }
        }
    }

    /// The step `op` makes from the pattern tensor `id` at `stage`, if it is the expected one.
    fn rms_next<'a>(
        &self,
        op: &'a OperationIr,
        id: TensorId,
        stage: Stage,
        k: usize,
    ) -> Option<Next<'a>> {
        let inst = &self.rms.instances[k];
        match (stage, op) {
            (_, OperationIr::BaseFloat(Base::Cast(c))) => Some(Next::Stage(stage, &c.out)),
            (Stage::Mean, OperationIr::NumericFloat(_, N::AddScalar(s))) => {
                Some(Next::Stage(Stage::Eps, &s.out))
            }
            (Stage::Eps, OperationIr::Float(_, F::Sqrt(u))) => {
                Some(Next::Stage(Stage::Rms, &u.out))
            }
            (Stage::Rms, OperationIr::NumericFloat(_, N::Div(b)))
                if b.rhs.id == id
                    && (b.lhs.id == inst.x
                        || self.last_axis_slots(&b.lhs).as_ref() == Some(&inst.slots)) =>
            {
                Some(Next::Stage(Stage::Normalized, &b.out))
            }
            (Stage::Normalized, OperationIr::NumericFloat(_, N::Mul(b))) => {
                let other = if b.lhs.id == id { &b.rhs } else { &b.lhs };
                let Value::Param { path, axes } = self.value(other) else {
                    return None;
                };
                let last = other.shape.num_dims().checked_sub(1)?;
                let per_channel = axes.get(last).copied().flatten().is_some()
                    && other.shape[last] == inst.slots.len()
                    && other.shape.num_elements() == inst.slots.len();
                per_channel.then_some(Next::Gamma(path))
            }
            _ => None,
        }
    }

    /// Accept the complete patterns (their gammas go to [`Analysis::rms_norms`]) and pin the
    /// channels of the others.
    pub(crate) fn rms_finish(&mut self, outputs: &[TensorId]) {
        for inst in std::mem::take(&mut self.rms.instances) {
            let complete = !inst.broken
                && !inst.gammas.is_empty()
                && inst.uses.values().any(|(s, _)| *s == Stage::Normalized)
                && inst.uses.iter().all(|(id, (stage, n))| {
                    let reads_ok = match stage {
                        Stage::Normalized => *n >= 1,
                        _ => *n == 1,
                    };
                    reads_ok && !outputs.contains(id)
                });
            if complete {
                for g in inst.gammas {
                    if !self.rms_norms.contains(&g) {
                        self.rms_norms.push(g);
                    }
                }
            } else {
                let map = Some(crate::rules::Map {
                    axis: 0,
                    slots: inst.slots,
                });
                self.pin_map(&map, "reduced by a mean over channels".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{LinearConfig, RmsNormConfig};
    use burn::prelude::*;

    #[derive(Module, Debug)]
    struct FcNorm {
        fc: burn::nn::Linear,
        norm: burn::nn::RmsNorm,
    }

    fn analysis(forward: impl FnOnce(&FcNorm, &Device) -> Tensor<2>) -> crate::Analysis {
        let d = Device::flex();
        let m = FcNorm {
            fc: LinearConfig::new(3, 4).init(&d),
            norm: RmsNormConfig::new(4).init(&d),
        };
        crate::Analysis::run(&crate::capture(&m, forward).unwrap()).unwrap()
    }

    #[test]
    fn burn_nns_rms_norm_is_recognized_and_its_channels_stay_prunable() {
        let mut a = analysis(|m, d| m.norm.forward(m.fc.forward(Tensor::zeros([2, 3], d))));
        assert_eq!(a.rms_norms, ["norm.gamma"]);
        let classes = a.classes();
        assert!(classes.iter().all(|c| c.pins.is_empty()));
        let norm_members = classes
            .iter()
            .filter(|c| c.members.iter().any(|m| m.param == "norm.gamma"))
            .count();
        assert_eq!(norm_members, 4);
    }

    #[test]
    fn an_rms_statistic_read_twice_or_left_without_a_gamma_pins_the_channels() {
        // The rms itself is also an output: a mean over channels leaks out.
        let mut a = analysis(|m, d| {
            let x = m.fc.forward(Tensor::zeros([2, 3], d));
            let rms = (x.clone().square().mean_dim(1) + 1e-5).sqrt();
            x / rms.clone() + rms
        });
        assert!(a.rms_norms.is_empty());
        let pins: Vec<String> = a.classes().into_iter().flat_map(|c| c.pins).collect();
        assert!(
            pins.contains(&"reduced by a mean over channels".to_string()),
            "{pins:?}"
        );
        // Normalized but never multiplied by a per-channel gamma.
        let mut a = analysis(|m, d| {
            let x = m.fc.forward(Tensor::zeros([2, 3], d));
            x.clone() / (x.square().mean_dim(1) + 1e-5).sqrt()
        });
        assert!(a.rms_norms.is_empty());
        assert!(a.classes().iter().any(|c| !c.pins.is_empty()));
    }
}
