//! Elementwise unary ops: activations, ops with a scalar operand, float math, and `mask_fill`
//! with a constant mask (a causal attention mask). Channels pass through, except a softmax over
//! the channel axis, which mixes them, and a mask that varies along the channel axis (pinned).

use burn_backend::ops::{ActivationOps, FloatTensorOps};
use burn_dispatch::{Dispatch, DispatchTensor};
use burn_ir::{
    ActivationOperationIr as A, BaseOperationIr as Base, FloatOperationIr as F,
    NumericOperationIr as N, OperationIr, TensorIr,
};

use super::{Exec, OpCost, OpRule, Row, numel};
use crate::Result;
use crate::onnx::{Attr, OnnxWriter};
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
            OperationIr::BaseFloat(Base::MaskFill(m)) => unary(&m.tensor, &m.out),
            _ => return None,
        })
    }
}

impl OpRule for Unary<'_> {
    fn channels(&self, a: &mut Analysis, _: usize, _: &OperationIr) -> Result<()> {
        if let Some(axis) = self.softmax {
            a.pin_axis(self.input, axis, "normalized by a softmax over channels");
        }
        if let OperationIr::BaseFloat(Base::MaskFill(m)) = self.ir
            && let Some(map) = a.map(self.input)
        {
            // The mask broadcasts from the right; where it varies along the channel axis, a
            // removed (zero) channel would have been filled in the masked model.
            let shift = self.input.shape.num_dims() - m.mask.shape.num_dims();
            let varies = map
                .axis
                .checked_sub(shift)
                .is_some_and(|ax| m.mask.shape[ax] != 1);
            if varies {
                a.pin_map(
                    &Some(map),
                    "filled by a mask that has these channels".into(),
                );
            }
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
            OperationIr::BaseFloat(Base::MaskFill(m)) => {
                B::float_mask_fill(x, e.get(&m.mask)?, m.value.into())
            }
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

    /// One ONNX node per op, or a short chain: GELU as its erf form (ONNX has `Gelu` only from
    /// opset 20), scalar operands as scalar initializers, `log1p` as `Log(x + 1)`, softmin as
    /// `Softmax(-x)`, log-sigmoid as `Log(Sigmoid(x))`.
    fn onnx(&self, w: &mut OnnxWriter<'_>) -> Result<()> {
        let (x, out) = (w.input(self.input)?, w.output(self.out));
        let dtype = self.input.dtype;
        let one = |w: &mut OnnxWriter<'_>, op: &str, attrs| {
            w.node(op, vec![x.clone()], vec![out.clone()], attrs);
            Ok(())
        };
        let with_scalar = |w: &mut OnnxWriter<'_>, op: &str, v: f64| -> Result<()> {
            let c = w.scalar(v, dtype)?;
            w.node(op, vec![x.clone(), c], vec![out.clone()], vec![]);
            Ok(())
        };
        let chain = |w: &mut OnnxWriter<'_>, first: &str, then: &str| {
            let mid = format!("{out}_{}", first.to_lowercase());
            w.node(first, vec![x.clone()], vec![mid.clone()], vec![]);
            w.node(then, vec![mid], vec![out.clone()], vec![]);
            Ok(())
        };
        match self.ir {
            OperationIr::Activation(a) => match a {
                A::Relu(_) => one(w, "Relu", vec![]),
                A::Sigmoid(_) => one(w, "Sigmoid", vec![]),
                A::LogSigmoid(_) => chain(w, "Sigmoid", "Log"),
                A::LeakyRelu(s) => one(
                    w,
                    "LeakyRelu",
                    vec![("alpha", Attr::Float(s.rhs.elem::<f32>()))],
                ),
                A::HardSigmoid(h) => one(
                    w,
                    "HardSigmoid",
                    vec![
                        ("alpha", Attr::Float(h.alpha.elem::<f32>())),
                        ("beta", Attr::Float(h.beta.elem::<f32>())),
                    ],
                ),
                A::Softmax(d) => one(w, "Softmax", vec![("axis", Attr::Int(d.axis as i64))]),
                A::LogSoftmax(d) => one(w, "LogSoftmax", vec![("axis", Attr::Int(d.axis as i64))]),
                A::Softmin(d) => {
                    let neg = format!("{out}_neg");
                    w.node("Neg", vec![x.clone()], vec![neg.clone()], vec![]);
                    w.node(
                        "Softmax",
                        vec![neg],
                        vec![out.clone()],
                        vec![("axis", Attr::Int(d.axis as i64))],
                    );
                    Ok(())
                }
                A::Gelu(_) => {
                    let (s2, one_c, half) = (
                        w.scalar(std::f64::consts::SQRT_2, dtype)?,
                        w.scalar(1.0, dtype)?,
                        w.scalar(0.5, dtype)?,
                    );
                    let n = |s: &str| format!("{out}_gelu_{s}");
                    w.node("Div", vec![x.clone(), s2], vec![n("div")], vec![]);
                    w.node("Erf", vec![n("div")], vec![n("erf")], vec![]);
                    w.node("Add", vec![n("erf"), one_c], vec![n("add")], vec![]);
                    w.node("Mul", vec![x.clone(), n("add")], vec![n("mul")], vec![]);
                    w.node("Mul", vec![n("mul"), half], vec![out.clone()], vec![]);
                    Ok(())
                }
                _ => Err(w.unmapped()),
            },
            OperationIr::NumericFloat(_, n) => match n {
                N::AddScalar(s) => with_scalar(w, "Add", s.rhs.elem()),
                N::SubScalar(s) => with_scalar(w, "Sub", s.rhs.elem()),
                N::MulScalar(s) => with_scalar(w, "Mul", s.rhs.elem()),
                N::DivScalar(s) => with_scalar(w, "Div", s.rhs.elem()),
                N::ClampMin(s) => with_scalar(w, "Max", s.rhs.elem()),
                N::ClampMax(s) => with_scalar(w, "Min", s.rhs.elem()),
                N::PowiScalar(s) => with_scalar(w, "Pow", s.rhs.elem()),
                N::Abs(_) => one(w, "Abs", vec![]),
                N::Neg(_) => one(w, "Neg", vec![]),
                N::Sign(_) => one(w, "Sign", vec![]),
                N::Clamp(c) => {
                    let (lo, hi) = (
                        w.scalar(c.min.elem(), dtype)?,
                        w.scalar(c.max.elem(), dtype)?,
                    );
                    w.node("Clip", vec![x.clone(), lo, hi], vec![out.clone()], vec![]);
                    Ok(())
                }
                _ => Err(w.unmapped()),
            },
            OperationIr::Float(_, f) => match f {
                F::Exp(_) => one(w, "Exp", vec![]),
                F::Log(_) => one(w, "Log", vec![]),
                F::Log1p(_) => {
                    let c = w.scalar(1.0, dtype)?;
                    let mid = format!("{out}_plus1");
                    w.node("Add", vec![x.clone(), c], vec![mid.clone()], vec![]);
                    w.node("Log", vec![mid], vec![out.clone()], vec![]);
                    Ok(())
                }
                F::Erf(_) => one(w, "Erf", vec![]),
                F::Sqrt(_) => one(w, "Sqrt", vec![]),
                F::Cos(_) => one(w, "Cos", vec![]),
                F::Sin(_) => one(w, "Sin", vec![]),
                F::Tanh(_) => one(w, "Tanh", vec![]),
                F::Recip(_) => one(w, "Reciprocal", vec![]),
                F::Round(_) => one(w, "Round", vec![]),
                F::Floor(_) => one(w, "Floor", vec![]),
                F::Ceil(_) => one(w, "Ceil", vec![]),
                F::PowfScalar(s) => with_scalar(w, "Pow", s.rhs.elem()),
                _ => Err(w.unmapped()),
            },
            _ => Err(w.unmapped()),
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
    fn a_mask_fill_passes_channels_unless_its_mask_varies_along_them_and_replays() {
        let d = Device::flex();
        let fc = LinearConfig::new(3, 4).init(&d);
        // A mask over `[1, 4, 2, 1]` (channels on axis 1), constant along the channels or not.
        let fill = |per_channel: bool| {
            move |m: &burn::nn::Linear, x: Tensor<3>| {
                let dev = x.device();
                let h = m.forward(x).swap_dims(1, 2).reshape([1, 4, 2, 1]);
                let shape = if per_channel {
                    [1, 4, 2, 1]
                } else {
                    [1, 1, 2, 1]
                };
                let n = shape.iter().product::<usize>();
                let bits: Vec<bool> = (0..n).map(|i| i % 2 == 1).collect();
                let mask = Tensor::<4, Bool>::from_data(TensorData::new(bits, shape), &dev);
                h.mask_fill(mask, -1e9)
            }
        };
        let plain = fill(false);
        let pins = pins_of(&fc, |m, d| plain(m, Tensor::<3>::ones([1, 2, 3], d)));
        assert!(pins.is_empty(), "{pins:?}");
        let per = fill(true);
        let pins = pins_of(&fc, |m, d| per(m, Tensor::<3>::ones([1, 2, 3], d)));
        assert!(
            pins.contains("filled by a mask that has these channels"),
            "{pins:?}"
        );

        let x = Tensor::<3>::random([1, 2, 3], burn::tensor::Distribution::Default, &d);
        let replay = crate::Replay::capture(&fc, [1, 2, 3], |m, x| plain(m, x)).unwrap();
        let out: Tensor<4> = replay.run(&fc, x.clone(), &mut crate::NoTap).unwrap();
        let direct = plain(&fc, x);
        let diff = (out - direct).abs().max().into_scalar::<f32>();
        assert_eq!(diff, 0.0);
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
