//! Matmul and Linear: `ModuleOperationIr::Linear` (weight `[in, out]`, bias `[out]`) and
//! `Float(Matmul)`, which is a Linear when its right operand views a parameter (burn-nn's
//! Linear is captured as `x @ W` then `+ b`; [`layer_calls`](crate::layer_calls) joins the two).

use burn_backend::ops::{FloatTensorOps, ModuleOps};
use burn_dispatch::{Dispatch, DispatchTensor};
use burn_ir::{FloatOperationIr, ModuleOperationIr, OperationIr, TensorIr};

use super::{Exec, OpCost, OpRule, Row, call, numel};
use crate::Result;
use crate::onnx::OnnxWriter;
use crate::rules::{Analysis, Map, Value};
use crate::views::{LayerCall, LayerKind, ParamViews, layer_of};

/// `x @ rhs` (a Linear without its bias when `rhs` views a parameter), or the Linear module op.
pub(crate) struct Linear<'a> {
    x: &'a TensorIr,
    weight: &'a TensorIr,
    bias: Option<&'a TensorIr>,
    out: &'a TensorIr,
    /// `ModuleOperationIr::Linear` (else a matmul).
    module: bool,
}

impl<'a> Linear<'a> {
    pub fn of(op: &'a OperationIr) -> Option<Self> {
        match op {
            OperationIr::Module(ModuleOperationIr::Linear(l)) => Some(Self {
                x: &l.x,
                weight: &l.weight,
                bias: l.bias.as_ref(),
                out: &l.out,
                module: true,
            }),
            OperationIr::Float(_, FloatOperationIr::Matmul(m)) => Some(Self {
                x: &m.lhs,
                weight: &m.rhs,
                bias: None,
                out: &m.out,
                module: false,
            }),
            _ => None,
        }
    }

    /// The weight's path when this is a Linear: a parameter `[in, out]`, for a matmul possibly
    /// unsqueezed to the input's rank (leading unit dims) and not a parameter on the left.
    fn weight_path<'v>(&self, views: &'v ParamViews) -> Option<&'v str> {
        let r = self.weight.shape.num_dims();
        let leading_units = self.weight.shape.as_slice()[..r.saturating_sub(2)]
            .iter()
            .all(|&d| d == 1);
        (leading_units && views.get(self.x).is_none())
            .then(|| views.path(self.weight))
            .flatten()
    }

    fn contraction(&self) -> u64 {
        *self.x.shape.as_slice().last().unwrap_or(&1) as u64
    }
}

impl OpRule for Linear<'_> {
    fn channels(&self, a: &mut Analysis, index: usize, op: &OperationIr) -> Result<()> {
        let (lhs, rhs, out) = (self.x, self.weight, self.out);
        let rank = out.shape.num_dims();
        let rhs_units = rhs.shape.as_slice()[..rhs.shape.num_dims() - 2]
            .iter()
            .all(|&d| d == 1);
        match (a.value(lhs), a.value(rhs)) {
            // `x @ W` with W a Linear weight `[in, out]` (unsqueezed to the input's rank).
            (lv, Value::Param { path, axes }) if rhs_units => {
                a.last_layer = Some(layer_of(&path).to_string());
                let r = axes.len();
                let (Some(w_in), Some(w_out)) = (axes[r - 2], axes[r - 1]) else {
                    return Err(a.unsupported(index, op));
                };
                if let Value::Act(Some(m)) = lv {
                    if m.axis == lhs.shape.num_dims() - 1 {
                        for (c, &s) in m.slots.iter().enumerate() {
                            a.attach(s, &path, w_in, c);
                        }
                    } else {
                        a.pin_map(
                            &Some(m),
                            format!("fed to '{path}' on an axis it does not contract"),
                        );
                    }
                }
                let bias = self.bias.and_then(|b| a.param(b));
                let slots: Vec<usize> = (0..rhs.shape[r - 1]).map(|_| a.new_slot()).collect();
                for (j, &s) in slots.iter().enumerate() {
                    a.attach(s, &path, w_out, j);
                    if let Some(b) = &bias {
                        a.attach(s, b, 0, j);
                    }
                }
                a.set(
                    out,
                    Value::Act(Some(Map {
                        axis: rank - 1,
                        slots,
                    })),
                );
            }
            (Value::Const, Value::Const) => a.set(out, Value::Const),
            (lv, rv)
                if !self.module
                    && !matches!(lv, Value::Param { .. })
                    && !matches!(rv, Value::Param { .. }) =>
            {
                // Two activations (attention scores), or an activation and a constant:
                // contracted channels cannot be removed safely from one side only; batch, row
                // and column channels carry over, and channels on the same batch axis of both
                // sides (attention heads: q with k, the scores with v) are coupled.
                let (lm, rm) = (a.map(lhs), a.map(rhs));
                let mut out_map = None;
                if let Some(m) = lm {
                    if m.axis == rank - 1 {
                        a.pin_map(&Some(m), "contracted by a matmul of two activations".into());
                    } else {
                        out_map = Some(m);
                    }
                }
                if let Some(m) = rm {
                    let batch_pair = out_map.as_ref().is_some_and(|o: &Map| {
                        o.axis == m.axis && m.axis + 2 < rank && o.slots.len() == m.slots.len()
                    });
                    if m.axis == rank - 2 {
                        a.pin_map(&Some(m), "contracted by a matmul of two activations".into());
                    } else if batch_pair {
                        let o = out_map.clone().expect("checked by batch_pair");
                        for (&l, &r) in o.slots.iter().zip(&m.slots) {
                            a.union(l, r);
                        }
                    } else if out_map.is_none() {
                        out_map = Some(m);
                    } else {
                        a.pin_map(&Some(m), "second channel axis of a matmul output".into());
                    }
                }
                a.set(out, Value::Act(out_map));
            }
            _ => return Err(a.unsupported(index, op)),
        }
        Ok(())
    }

    fn execute(&self, e: &Exec<'_>) -> Result<DispatchTensor> {
        let (x, w) = (e.get(self.x)?, e.get(self.weight)?);
        Ok(if self.module {
            Dispatch::linear(x, w, e.opt(self.bias)?)
        } else {
            Dispatch::float_matmul(x, w)
        })
    }

    /// `out_elements x in_features` MACs; NNI counts a Linear by default, other matmuls only
    /// in full mode.
    fn cost(&self, views: &ParamViews) -> OpCost {
        let macs = numel(self.out) * self.contraction();
        let linear = self.module || self.weight_path(views).is_some();
        let (kind, row) = if linear {
            ("Linear", Row::Default)
        } else {
            ("Matmul", Row::Full)
        };
        OpCost {
            macs,
            ..OpCost::row(kind, row, self.x, self.out, macs)
        }
    }

    /// Linear as `Gemm` (rank-2 input with a bias: a matmul and its bias add become one node),
    /// else `MatMul` (and the bias add stays an `Add`). Burn's `[in, out]` weight is Gemm's B
    /// without a transpose.
    fn onnx(&self, w: &mut OnnxWriter<'_>) -> Result<()> {
        let rank2 = self.x.shape.num_dims() == 2 && self.weight.shape.num_dims() == 2;
        if self.module {
            return match (self.bias, rank2) {
                (Some(b), true) => w.simple("Gemm", &[self.x, self.weight, b], self.out, vec![]),
                (None, _) => w.simple("MatMul", &[self.x, self.weight], self.out, vec![]),
                (Some(b), false) => {
                    let (x, wt) = (w.input(self.x)?, w.input(self.weight)?);
                    let mm = format!("{}_matmul", w.output(self.out));
                    w.node("MatMul", vec![x, wt], vec![mm.clone()], vec![]);
                    let b = w.input(b)?;
                    let out = w.output(self.out);
                    w.node("Add", vec![mm, b], vec![out], vec![]);
                    Ok(())
                }
            };
        }
        let fused = w
            .call()
            .filter(|c| rank2 && c.kind == LayerKind::Linear)
            .and_then(|c| Some((c.bias_add?, c.bias.clone()?, c.output.clone())));
        match fused {
            Some((add, bias, out)) if bias.shape.num_dims() <= 2 => {
                let inputs = vec![w.input(self.x)?, w.input(self.weight)?, w.input(&bias)?];
                let name = w.output(&out);
                w.node("Gemm", inputs, vec![name.clone()], vec![]);
                w.absorb(add, &out, name);
                Ok(())
            }
            _ => w.simple("MatMul", &[self.x, self.weight], self.out, vec![]),
        }
    }

    fn layer_call(&self, views: &ParamViews) -> Option<LayerCall> {
        let w = if self.module {
            views.path(self.weight)?
        } else {
            self.weight_path(views)?
        };
        Some(call(
            LayerKind::Linear,
            w,
            self.x,
            self.out,
            self.weight,
            self.bias,
        ))
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::prelude::*;

    use crate::ops::testing::{full_rows, groups_of, macs, pins_of};

    #[derive(Module, Debug)]
    struct Mlp {
        a: burn::nn::Linear,
        b: burn::nn::Linear,
    }

    fn mlp(d: &Device) -> Mlp {
        Mlp {
            a: LinearConfig::new(3, 4).init(d),
            b: LinearConfig::new(4, 2).init(d),
        }
    }

    #[test]
    fn a_linear_couples_its_output_features_with_its_bias_and_the_next_linears_input() {
        let d = Device::flex();
        let groups = groups_of(&mlp(&d), |m, d| {
            m.b.forward(m.a.forward(Tensor::<2>::zeros([2, 3], d)))
        });
        assert_eq!(
            groups[0],
            vec![
                ("a.bias".into(), 0),
                ("a.weight".into(), 1),
                ("b.weight".into(), 0)
            ]
        );
    }

    #[test]
    fn linear_macs_are_output_elements_times_input_features_and_a_3d_input_counts_every_row() {
        let d = Device::flex();
        let m = mlp(&d);
        assert_eq!(
            macs(&m, |m, d| m.a.forward(Tensor::<2>::zeros([2, 3], d))),
            2 * 4 * 3
        );
        assert_eq!(
            macs(&m, |m, d| m.a.forward(Tensor::<3>::zeros([2, 5, 3], d))),
            10 * 4 * 3
        );
    }

    #[test]
    fn a_batched_matmul_couples_the_head_axes_of_both_sides() {
        let d = Device::flex();
        let m = mlp(&d);
        // Two heads of `a` (4 features = 2 heads of 2) against two heads of `b`'s input side:
        // q = a(x) split into heads, k = the same split of another call; q @ k^T.
        let graph = crate::capture(&m, |m, d| {
            let split = |t: Tensor<3>| t.reshape([1, 5, 2, 2]).swap_dims(1, 2);
            let q = split(m.a.forward(Tensor::<3>::zeros([1, 5, 3], d)));
            let k = split(m.a.forward(Tensor::<3>::ones([1, 5, 3], d)));
            q.matmul(k.swap_dims(2, 3))
        })
        .unwrap();
        let mut a = crate::Analysis::run(&graph).unwrap();
        assert_eq!(a.head_splits.len(), 2);
        let (h0, h1) = (
            a.head_splits[0].slots.clone(),
            a.head_splits[1].slots.clone(),
        );
        for (q, k) in h0.into_iter().zip(h1) {
            assert_eq!(a.find(q), a.find(k), "head of q and k in one class");
        }
        assert!(a.classes().iter().all(|c| c.pins.is_empty()));
    }

    #[test]
    fn a_matmul_of_two_activations_pins_the_contracted_channels_and_is_a_full_mode_row() {
        let d = Device::flex();
        let m = mlp(&d);
        let f = |m: &Mlp, d: &Device| {
            let h = m.a.forward(Tensor::<2>::zeros([5, 3], d));
            h.clone().matmul(h.transpose())
        };
        assert!(pins_of(&m, f).contains("contracted by a matmul of two activations"));
        let rows = full_rows(&m, f);
        let mm = rows.iter().find(|r| r.module_type == "Matmul").unwrap();
        assert_eq!(mm.flops, 25 * 4);
    }
}
