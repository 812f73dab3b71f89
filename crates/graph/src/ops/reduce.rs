//! Reductions: `sum/mean/max/min` over one axis or the whole tensor. Summing over the channel
//! axis tolerates removed (zero) channels; any other reduction over channels pins them.

use burn_backend::ops::FloatTensorOps;
use burn_dispatch::{Dispatch, DispatchTensor};
use burn_ir::{NumericOperationIr as N, OperationIr, TensorIr};

use super::{Exec, OpRule};
use crate::Result;
use crate::onnx::{Attr, OnnxWriter};
use crate::rules::{Analysis, Value};

type B = Dispatch;

/// A reduction.
pub(crate) struct Reduce<'a> {
    input: &'a TensorIr,
    out: &'a TensorIr,
    /// The reduced axis (`None`: the whole tensor).
    axis: Option<usize>,
    ir: &'a N,
}

impl<'a> Reduce<'a> {
    pub fn of(op: &'a OperationIr) -> Option<Self> {
        let OperationIr::NumericFloat(_, n) = op else {
            return None;
        };
        let (input, out, axis) = match n {
            N::SumDim(r) | N::MeanDim(r) | N::MaxDim(r) | N::MinDim(r) => {
                (&r.input, &r.out, Some(r.axis))
            }
            N::Sum(r) | N::Mean(r) | N::Max(r) | N::Min(r) => (&r.input, &r.out, None),
            _ => return None,
        };
        Some(Self {
            input,
            out,
            axis,
            ir: n,
        })
    }
}

impl OpRule for Reduce<'_> {
    fn channels(&self, a: &mut Analysis, _: usize, _: &OperationIr) -> Result<()> {
        let (input, out) = (self.input, self.out);
        match (self.ir, self.axis) {
            (N::SumDim(_), Some(axis)) => reduce_dim(a, input, out, axis, true, "a sum"),
            (N::MeanDim(_), Some(axis)) => reduce_dim(a, input, out, axis, false, "a mean"),
            (_, Some(axis)) => reduce_dim(a, input, out, axis, false, "a max/min"),
            (N::Sum(_), None) => a.set(out, Value::Act(None)),
            (_, None) => {
                let m = a.map(input);
                a.pin_map(&m, "reduced over the whole tensor".into());
                a.set(out, Value::Act(None));
            }
        }
        Ok(())
    }

    fn execute(&self, e: &Exec<'_>) -> Result<DispatchTensor> {
        let x = e.get(self.input)?;
        Ok(match self.ir {
            N::SumDim(d) => B::float_sum_dim(x, d.axis),
            N::MeanDim(d) => B::float_mean_dim(x, d.axis),
            N::MaxDim(d) => B::float_max_dim(x, d.axis),
            N::MinDim(d) => B::float_min_dim(x, d.axis),
            N::Sum(_) => B::float_sum(x),
            N::Mean(_) => B::float_mean(x),
            N::Max(_) => B::float_max(x),
            N::Min(_) => B::float_min(x),
            _ => return Err(e.refuse()),
        })
    }

    /// `ReduceSum` (axes as an input, opset 13+), `ReduceMean`/`ReduceMax`/`ReduceMin` (axes as
    /// an attribute in opset 17), keeping dims as Burn does; a whole-tensor reduction is
    /// reshaped to Burn's `[1]`.
    fn onnx(&self, w: &mut OnnxWriter<'_>) -> Result<()> {
        let op = match self.ir {
            N::SumDim(_) | N::Sum(_) => "ReduceSum",
            N::MeanDim(_) | N::Mean(_) => "ReduceMean",
            N::MaxDim(_) | N::Max(_) => "ReduceMax",
            N::MinDim(_) | N::Min(_) => "ReduceMin",
            _ => return Err(w.unmapped()),
        };
        let axes: Vec<i64> = match self.axis {
            Some(a) => vec![a as i64],
            None => (0..self.input.shape.num_dims() as i64).collect(),
        };
        let x = w.input(self.input)?;
        let out = w.output(self.out);
        let reduced = if self.axis.is_some() {
            out.clone()
        } else {
            format!("{out}_kept")
        };
        if op == "ReduceSum" {
            let axes = w.const_i64(&axes);
            w.node(
                op,
                vec![x, axes],
                vec![reduced.clone()],
                vec![("keepdims", Attr::Int(1))],
            );
        } else {
            w.node(
                op,
                vec![x],
                vec![reduced.clone()],
                vec![("axes", Attr::Ints(axes)), ("keepdims", Attr::Int(1))],
            );
        }
        if self.axis.is_none() {
            let shape = w.const_i64(&[1]);
            w.node("Reshape", vec![reduced, shape], vec![out], vec![]);
        }
        Ok(())
    }
}

fn reduce_dim(
    a: &mut Analysis,
    input: &TensorIr,
    out: &TensorIr,
    axis: usize,
    sum_like: bool,
    what: &str,
) {
    let m = a.map(input);
    match m {
        Some(map) if map.axis == axis => {
            // Summing over channels is unaffected by removing channels that are zero.
            if !sum_like {
                a.pin_map(&Some(map), format!("reduced by {what} over channels"));
            }
            a.set(out, Value::Act(None));
        }
        _ => a.pass(input, out),
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::prelude::*;

    use crate::ops::testing::{groups_of, macs, pins_of};

    #[test]
    fn a_sum_over_channels_keeps_them_prunable_and_a_mean_pins_them() {
        let d = Device::flex();
        let fc = LinearConfig::new(3, 4).init(&d);
        let sum =
            |m: &burn::nn::Linear, d: &Device| m.forward(Tensor::<2>::zeros([2, 3], d)).sum_dim(1);
        assert!(pins_of(&fc, sum).is_empty());
        assert_eq!(groups_of(&fc, sum).len(), 1);
        assert_eq!(macs(&fc, sum), 24);
        let mean =
            |m: &burn::nn::Linear, d: &Device| m.forward(Tensor::<2>::zeros([2, 3], d)).mean_dim(1);
        assert!(pins_of(&fc, mean).contains("reduced by a mean over channels"));
    }
}
