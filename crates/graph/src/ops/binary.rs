//! Elementwise binary ops with broadcasting: `Add`, `Sub`, `Mul`, `Div` and `PRelu`. Two
//! activations with channels on the same axis couple them (a residual add); a parameter on the
//! channel axis hangs on the channels (a bias add); anything else that has these channels pins
//! them.

use burn_backend::ops::{ActivationOps, FloatTensorOps};
use burn_dispatch::{Dispatch, DispatchTensor};
use burn_ir::{ActivationOperationIr, BinaryOpIr, NumericOperationIr as N, OperationIr, TensorIr};

use super::{Exec, OpCost, OpRule, Row, numel};
use crate::Result;
use crate::onnx::OnnxWriter;
use crate::rules::{Analysis, Map, Value};
use crate::views::ParamViews;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Sub,
    Mul,
    Div,
    PRelu,
}

/// An elementwise binary op.
pub(crate) struct Binary<'a> {
    kind: Kind,
    b: &'a BinaryOpIr,
}

impl<'a> Binary<'a> {
    pub fn of(op: &'a OperationIr) -> Option<Self> {
        let (kind, b) = match op {
            OperationIr::NumericFloat(_, N::Add(b)) => (Kind::Add, b),
            OperationIr::NumericFloat(_, N::Sub(b)) => (Kind::Sub, b),
            OperationIr::NumericFloat(_, N::Mul(b)) => (Kind::Mul, b),
            OperationIr::NumericFloat(_, N::Div(b)) => (Kind::Div, b),
            OperationIr::Activation(ActivationOperationIr::PRelu(b)) => (Kind::PRelu, b),
            _ => return None,
        };
        Some(Self { kind, b })
    }
}

impl OpRule for Binary<'_> {
    fn channels(&self, a: &mut Analysis, _: usize, _: &OperationIr) -> Result<()> {
        binary(a, self.b);
        Ok(())
    }

    fn execute(&self, e: &Exec<'_>) -> Result<DispatchTensor> {
        let (l, r) = (e.get(&self.b.lhs)?, e.get(&self.b.rhs)?);
        Ok(match self.kind {
            Kind::Add => Dispatch::float_add(l, r),
            Kind::Sub => Dispatch::float_sub(l, r),
            Kind::Mul => Dispatch::float_mul(l, r),
            Kind::Div => Dispatch::float_div(l, r),
            Kind::PRelu => Dispatch::prelu(l, r),
        })
    }

    /// NNI's full mode counts an add (not absorbed as a Linear's bias) as 1 per element.
    fn cost(&self, _: &ParamViews) -> OpCost {
        let row = if self.kind == Kind::Add {
            Row::Full
        } else {
            Row::None
        };
        OpCost::row("Add", row, &self.b.lhs, &self.b.out, numel(&self.b.out))
    }

    fn bias_add(&self) -> Option<(&TensorIr, &TensorIr, &TensorIr)> {
        (self.kind == Kind::Add).then_some((&self.b.lhs, &self.b.rhs, &self.b.out))
    }

    /// `Add`, `Sub`, `Mul`, `Div` (numpy broadcasting, as Burn's) and `PRelu`.
    fn onnx(&self, w: &mut OnnxWriter<'_>) -> Result<()> {
        let op = match self.kind {
            Kind::Add => "Add",
            Kind::Sub => "Sub",
            Kind::Mul => "Mul",
            Kind::Div => "Div",
            Kind::PRelu => "PRelu",
        };
        w.simple(op, &[&self.b.lhs, &self.b.rhs], &self.b.out, vec![])
    }
}

/// Elementwise binary op with broadcasting.
fn binary(a: &mut Analysis, b: &BinaryOpIr) {
    let (l, r) = (a.value(&b.lhs), a.value(&b.rhs));
    let channel_len =
        |t: &TensorIr, m: &Map| t.shape.get(m.axis).copied().unwrap_or(1) == m.slots.len();
    let out = match (l, r) {
        (Value::Act(Some(lm)), Value::Act(Some(rm)))
            if lm.axis == rm.axis && lm.slots.len() == rm.slots.len() =>
        {
            for (&l, &r) in lm.slots.iter().zip(&rm.slots) {
                a.union(l, r);
            }
            Some(lm)
        }
        (Value::Act(Some(m)), Value::Act(Some(other))) => {
            a.pin_map(
                &Some(other.clone()),
                "combined with a tensor whose channels sit elsewhere".into(),
            );
            a.pin_map(
                &Some(m.clone()),
                "combined with a tensor whose channels sit elsewhere".into(),
            );
            None
        }
        (Value::Act(Some(m)), Value::Param { path, axes })
        | (Value::Param { path, axes }, Value::Act(Some(m))) => {
            let param_tensor = if matches!(a.value(&b.lhs), Value::Param { .. }) {
                &b.lhs
            } else {
                &b.rhs
            };
            match axes.get(m.axis).copied().flatten() {
                Some(pa) if channel_len(param_tensor, &m) => {
                    for (c, &s) in m.slots.iter().enumerate() {
                        a.attach(s, &path, pa, c);
                    }
                }
                _ if param_tensor.shape.get(m.axis).copied().unwrap_or(1) == 1 => {}
                _ => a.pin_map(
                    &Some(m.clone()),
                    format!("combined with parameter '{path}' on another axis"),
                ),
            }
            Some(m)
        }
        (Value::Act(Some(m)), _) | (_, Value::Act(Some(m))) => {
            let other = if a.map(&b.lhs).is_some() {
                &b.rhs
            } else {
                &b.lhs
            };
            if other.shape.get(m.axis).copied().unwrap_or(1) != 1 {
                a.pin_map(
                    &Some(m.clone()),
                    "combined with a constant that has these channels".into(),
                );
            }
            Some(m)
        }
        (Value::Param { .. }, _) | (_, Value::Param { .. }) => None,
        _ => None,
    };
    let v = if out.is_some()
        || matches!(a.value(&b.lhs), Value::Act(_))
        || matches!(a.value(&b.rhs), Value::Act(_))
    {
        Value::Act(out)
    } else {
        Value::Const
    };
    a.set(&b.out, v);
}

#[cfg(test)]
mod tests {
    use burn::nn::conv::Conv2dConfig;
    use burn::prelude::*;

    use crate::ops::testing::{full_rows, groups_of, pins_of};

    #[derive(Module, Debug)]
    struct Two {
        a: burn::nn::conv::Conv2d,
        b: burn::nn::conv::Conv2d,
    }

    fn two(d: &Device) -> Two {
        Two {
            a: Conv2dConfig::new([1, 3], [1, 1]).init(d),
            b: Conv2dConfig::new([1, 3], [1, 1]).init(d),
        }
    }

    #[test]
    fn a_residual_add_couples_both_sides_and_is_one_flop_per_element_in_full_mode() {
        let d = Device::flex();
        let f = |m: &Two, d: &Device| {
            let x = Tensor::<4>::zeros([1, 1, 2, 2], d);
            m.a.forward(x.clone()) + m.b.forward(x)
        };
        let groups = groups_of(&two(&d), f);
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].len(), 4);
        let rows = full_rows(&two(&d), f);
        assert_eq!(
            rows.iter().find(|r| r.module_type == "Add").unwrap().flops,
            12
        );
    }

    #[test]
    fn adding_a_constant_that_has_the_channels_pins_them() {
        let d = Device::flex();
        let pins = pins_of(&two(&d), |m, d| {
            m.a.forward(Tensor::<4>::zeros([1, 1, 2, 2], d)) * Tensor::<4>::ones([1, 3, 1, 1], d)
        });
        assert!(
            pins.contains("combined with a constant that has these channels"),
            "{pins:?}"
        );
    }
}
