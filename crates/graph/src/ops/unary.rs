//! Elementwise unary ops: activations, ops with a scalar operand, and float math. Channels pass
//! through, except a softmax over the channel axis, which mixes them (pinned).

use burn_backend::ops::{ActivationOps, FloatTensorOps};
use burn_dispatch::{Dispatch, DispatchTensor};
use burn_ir::{
    ActivationOperationIr as A, FloatOperationIr as F, NumericOperationIr as N, OperationIr,
    TensorIr,
};

use super::{Exec, OpCost, OpRule, Row, numel};
use crate::Result;
use crate::rules::Analysis;
use crate::views::ParamViews;

type B = Dispatch;

/// An elementwise unary op.
pub(crate) struct Unary<'a> {
    /// Row name of activations NNI counts in full mode.
    counted: Option<&'static str>,
    input: &'a TensorIr,
    out: &'a TensorIr,
    /// The axis a softmax normalizes.
    softmax: Option<usize>,
    ir: &'a OperationIr,
}

impl<'a> Unary<'a> {
    pub fn of(op: &'a OperationIr) -> Option<Self> {
        let unary = |input, out| Unary {
            counted: None,
            input,
            out,
            softmax: None,
            ir: op,
        };
        let counted = |name, input, out| Unary {
            counted: Some(name),
            ..unary(input, out)
        };
        Some(match op {
            OperationIr::Activation(a) => match a {
                A::Relu(u) => counted("Relu", &u.input, &u.out),
                A::Gelu(u) => counted("Gelu", &u.input, &u.out),
                A::Sigmoid(u) => counted("Sigmoid", &u.input, &u.out),
                A::LogSigmoid(u) => unary(&u.input, &u.out),
                A::LeakyRelu(s) => unary(&s.lhs, &s.out),
                A::HardSigmoid(h) => unary(&h.tensor, &h.out),
                A::Softmax(d) => Unary {
                    softmax: Some(d.axis),
                    ..counted("Softmax", &d.input, &d.out)
                },
                A::LogSoftmax(d) | A::Softmin(d) => Unary {
                    softmax: Some(d.axis),
                    ..unary(&d.input, &d.out)
                },
                _ => return None,
            },
            OperationIr::NumericFloat(_, n) => match n {
                N::AddScalar(s)
                | N::SubScalar(s)
                | N::MulScalar(s)
                | N::DivScalar(s)
                | N::ClampMin(s)
                | N::ClampMax(s)
                | N::PowiScalar(s) => unary(&s.lhs, &s.out),
                N::Abs(u) | N::Neg(u) | N::Sign(u) => unary(&u.input, &u.out),
                N::Clamp(c) => unary(&c.tensor, &c.out),
                _ => return None,
            },
            OperationIr::Float(_, f) => match f {
                F::Exp(u)
                | F::Log(u)
                | F::Log1p(u)
                | F::Erf(u)
                | F::Sqrt(u)
                | F::Cos(u)
                | F::Sin(u)
                | F::Tanh(u)
                | F::Recip(u)
                | F::Round(u)
                | F::Floor(u)
                | F::Ceil(u) => unary(&u.input, &u.out),
                F::PowfScalar(s) => unary(&s.lhs, &s.out),
                _ => return None,
            },
            _ => return None,
        })
    }
}

impl OpRule for Unary<'_> {
    fn channels(&self, a: &mut Analysis, _: usize, _: &OperationIr) -> Result<()> {
        if let Some(axis) = self.softmax {
            a.pin_axis(self.input, axis, "normalized by a softmax over channels");
        }
        a.pass(self.input, self.out);
        Ok(())
    }

    fn execute(&self, e: &Exec<'_>) -> Result<DispatchTensor> {
        let x = e.get(self.input)?;
        Ok(match self.ir {
            OperationIr::Activation(a) => match a {
                A::Relu(_) => B::relu(x),
                A::Gelu(_) => B::gelu(x),
                A::Sigmoid(_) => B::sigmoid(x),
                A::LogSigmoid(_) => B::log_sigmoid(x),
                A::LeakyRelu(s) => B::leaky_relu(x, s.rhs.into()),
                A::HardSigmoid(h) => B::hard_sigmoid(x, h.alpha.into(), h.beta.into()),
                A::Softmax(d) => B::softmax(x, d.axis),
                A::LogSoftmax(d) => B::log_softmax(x, d.axis),
                A::Softmin(d) => B::softmin(x, d.axis),
                _ => return Err(e.refuse()),
            },
            OperationIr::NumericFloat(_, n) => match n {
                N::AddScalar(s) => B::float_add_scalar(x, s.rhs.into()),
                N::SubScalar(s) => B::float_sub_scalar(x, s.rhs.into()),
                N::MulScalar(s) => B::float_mul_scalar(x, s.rhs.into()),
                N::DivScalar(s) => B::float_div_scalar(x, s.rhs.into()),
                N::ClampMin(s) => B::float_clamp_min(x, s.rhs.into()),
                N::ClampMax(s) => B::float_clamp_max(x, s.rhs.into()),
                N::PowiScalar(s) => B::float_powi_scalar(x, s.rhs.into()),
                N::Abs(_) => B::float_abs(x),
                N::Neg(_) => B::float_neg(x),
                N::Sign(_) => B::float_sign(x),
                N::Clamp(c) => B::float_clamp(x, c.min.into(), c.max.into()),
                _ => return Err(e.refuse()),
            },
            OperationIr::Float(_, f) => match f {
                F::Exp(_) => B::float_exp(x),
                F::Log(_) => B::float_log(x),
                F::Log1p(_) => B::float_log1p(x),
                F::Erf(_) => B::float_erf(x),
                F::Sqrt(_) => B::float_sqrt(x),
                F::Cos(_) => B::float_cos(x),
                F::Sin(_) => B::float_sin(x),
                F::Tanh(_) => B::float_tanh(x),
                F::Recip(_) => B::float_recip(x),
                F::Round(_) => B::float_round(x),
                F::Floor(_) => B::float_floor(x),
                F::Ceil(_) => B::float_ceil(x),
                F::PowfScalar(s) => B::float_powf_scalar(x, s.rhs.into()),
                _ => return Err(e.refuse()),
            },
            _ => return Err(e.refuse()),
        })
    }

    /// NNI's full mode counts ReLU, GELU, sigmoid and softmax as 1 per element.
    fn cost(&self, _: &ParamViews) -> OpCost {
        match self.counted {
            Some(kind) => OpCost::row(kind, Row::Full, self.input, self.out, numel(self.out)),
            None => OpCost::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::prelude::*;

    use crate::ops::testing::{full_rows, groups_of, pins_of};

    #[test]
    fn activations_pass_channels_through_and_relu_is_one_flop_per_element_in_full_mode() {
        let d = Device::flex();
        let fc = LinearConfig::new(3, 4).init(&d);
        let f = |m: &burn::nn::Linear, d: &Device| {
            burn::tensor::activation::relu(
                m.forward(Tensor::<2>::zeros([2, 3], d))
                    .mul_scalar(2.0)
                    .exp(),
            )
        };
        assert_eq!(groups_of(&fc, f).len(), 1);
        let rows = full_rows(&fc, f);
        assert_eq!(
            rows.iter().find(|r| r.module_type == "Relu").unwrap().flops,
            8
        );
    }

    #[test]
    fn a_softmax_over_the_channels_pins_them() {
        let d = Device::flex();
        let fc = LinearConfig::new(3, 4).init(&d);
        let pins = pins_of(&fc, |m, d| {
            burn::tensor::activation::softmax(m.forward(Tensor::<2>::zeros([2, 3], d)), 1)
        });
        assert!(
            pins.contains("normalized by a softmax over channels"),
            "{pins:?}"
        );
    }
}
