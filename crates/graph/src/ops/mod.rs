//! The op table: every op family declared once, with everything the crate knows about it.
//!
//! [`Op::of`] turns a recorded `burn_ir::OperationIr` into a typed family value by matching
//! burn-ir's enums (never names); [`OpRule`] is the one trait a family implements, one method
//! per concern. Engines ([`Analysis`](crate::Analysis), [`Replay`](crate::Replay), the counters,
//! [`layer_calls`](crate::layer_calls)) only walk the graph and ask the table.

use std::collections::HashMap;

use burn::prelude::Device;
use burn_dispatch::DispatchTensor;
use burn_ir::{OperationIr, TensorId, TensorIr};

use crate::onnx::OnnxWriter;
use crate::rules::Analysis;
use crate::views::{LayerCall, ParamView, ParamViews};
use crate::{GraphError, Result};

mod binary;
mod conv;
mod custom;
mod embedding;
mod linear;
mod norm;
mod pool;
mod reduce;
mod shape;
mod unary;

pub use custom::{CustomOpRule, RuleKind};

/// What an op costs, for [`count`](crate::count) and [`count_flops_params`](crate::count_flops_params).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OpCost {
    /// Row and message name (`Conv2d`, `Relu`).
    pub kind: &'static str,
    /// Multiply-accumulates (convs, transposed convs, Linear, every matmul).
    pub macs: u64,
    /// FLOPs as NNI counts them for this op's row.
    pub flops: u64,
    /// Which counting mode shows the op as a row.
    pub row: Row,
    /// Input and output shapes of the row.
    pub io: (Vec<usize>, Vec<usize>),
}

/// Which counting mode shows an op as a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Row {
    /// No row.
    #[default]
    None,
    /// Both modes (convs and Linear layers, NNI's `default`).
    Default,
    /// Only [`CountMode::Full`](crate::CountMode::Full).
    Full,
}

impl OpCost {
    pub(crate) fn row(
        kind: &'static str,
        row: Row,
        x: &TensorIr,
        out: &TensorIr,
        flops: u64,
    ) -> Self {
        Self {
            kind,
            macs: 0,
            flops,
            row,
            io: (x.shape.to_vec(), out.shape.to_vec()),
        }
    }
}

/// Number of elements of a recorded tensor.
pub(crate) fn numel(t: &TensorIr) -> u64 {
    t.shape.num_elements() as u64
}

/// The values a replayed op reads, and where it runs.
pub(crate) struct Exec<'a> {
    pub env: &'a HashMap<TensorId, DispatchTensor>,
    pub device: &'a Device,
    pub index: usize,
    pub op: &'a OperationIr,
}

impl Exec<'_> {
    /// The computed value of `t`.
    pub fn get(&self, t: &TensorIr) -> Result<DispatchTensor> {
        self.env.get(&t.id).cloned().ok_or_else(|| {
            GraphError::Replay(format!(
                "op {} reads tensor {:?} that is not computed",
                self.index, t.id
            ))
        })
    }

    /// The typed refusal of this op: it has no execution.
    pub fn refuse(&self) -> GraphError {
        not_executable(self.index, self.op)
    }

    /// The computed value of an optional input.
    pub fn opt(&self, t: Option<&TensorIr>) -> Result<Option<DispatchTensor>> {
        t.map(|t| self.get(t)).transpose()
    }
}

/// One op family's knowledge, one method per concern (channels, execution, cost, layer
/// calls, ONNX); a new concern is one more method here, implemented once per family.
pub(crate) trait OpRule {
    /// (a) How channel indices flow through the op ([`Analysis`]'s rule).
    ///
    /// # Errors
    /// [`GraphError::UnsupportedOp`] when the op touches channels in a way it cannot follow.
    fn channels(&self, a: &mut Analysis, index: usize, op: &OperationIr) -> Result<()>;

    /// (b) Execute the op on dispatch tensors; its (single) output.
    ///
    /// # Errors
    /// A missing input, or [`GraphError::NotExecutable`] for a family member without execution.
    fn execute(&self, x: &Exec<'_>) -> Result<DispatchTensor>;

    /// (c) MACs and the NNI row of the op.
    fn cost(&self, _views: &ParamViews) -> OpCost {
        OpCost::default()
    }

    /// (d) The layer call this op is, if its weight is a parameter (`op` and `bias_add` of the
    /// result are filled in by [`layer_calls`](crate::layer_calls)).
    fn layer_call(&self, _views: &ParamViews) -> Option<LayerCall> {
        None
    }

    /// (d) An elementwise add that may be a Linear's bias add: `(lhs, rhs, out)`.
    fn bias_add(&self) -> Option<(&TensorIr, &TensorIr, &TensorIr)> {
        None
    }

    /// (d) The parameter view the op's output is, when it views a parameter (reshape, expand,
    /// swap_dims, permute).
    fn param_view(&self, _views: &ParamViews) -> Option<(TensorId, ParamView)> {
        None
    }

    /// (e) The ONNX nodes the op becomes (opset 17), written into `w`.
    ///
    /// # Errors
    /// [`GraphError::Unmapped`] (the default) for an op without a mapping.
    fn onnx(&self, w: &mut OnnxWriter<'_>) -> Result<()> {
        Err(w.unmapped())
    }
}

/// The typed op kind: one variant per family.
pub(crate) enum Op<'a> {
    Conv(conv::Conv<'a>),
    Linear(linear::Linear<'a>),
    Norm(norm::Norm<'a>),
    Pool(pool::Pool<'a>),
    Embedding(embedding::Embedding<'a>),
    Binary(binary::Binary<'a>),
    Unary(unary::Unary<'a>),
    Reduce(reduce::Reduce<'a>),
    Shape(shape::Shape<'a>),
    Custom(custom::Custom<'a>),
}

impl<'a> Op<'a> {
    /// The family of `op`, or `None` when no family knows it (Init and Drop are the engines').
    pub fn of(op: &'a OperationIr) -> Option<Self> {
        conv::Conv::of(op)
            .map(Op::Conv)
            .or_else(|| linear::Linear::of(op).map(Op::Linear))
            .or_else(|| norm::Norm::of(op).map(Op::Norm))
            .or_else(|| pool::Pool::of(op).map(Op::Pool))
            .or_else(|| embedding::Embedding::of(op).map(Op::Embedding))
            .or_else(|| binary::Binary::of(op).map(Op::Binary))
            .or_else(|| unary::Unary::of(op).map(Op::Unary))
            .or_else(|| reduce::Reduce::of(op).map(Op::Reduce))
            .or_else(|| shape::Shape::of(op).map(Op::Shape))
            .or_else(|| custom::Custom::of(op).map(Op::Custom))
    }

    fn rule(&self) -> &dyn OpRule {
        match self {
            Op::Conv(o) => o,
            Op::Linear(o) => o,
            Op::Norm(o) => o,
            Op::Pool(o) => o,
            Op::Embedding(o) => o,
            Op::Binary(o) => o,
            Op::Unary(o) => o,
            Op::Reduce(o) => o,
            Op::Shape(o) => o,
            Op::Custom(o) => o,
        }
    }
}

impl OpRule for Op<'_> {
    fn channels(&self, a: &mut Analysis, index: usize, op: &OperationIr) -> Result<()> {
        self.rule().channels(a, index, op)
    }
    fn execute(&self, x: &Exec<'_>) -> Result<DispatchTensor> {
        self.rule().execute(x)
    }
    fn cost(&self, views: &ParamViews) -> OpCost {
        self.rule().cost(views)
    }
    fn layer_call(&self, views: &ParamViews) -> Option<LayerCall> {
        self.rule().layer_call(views)
    }
    fn bias_add(&self) -> Option<(&TensorIr, &TensorIr, &TensorIr)> {
        self.rule().bias_add()
    }
    fn param_view(&self, views: &ParamViews) -> Option<(TensorId, ParamView)> {
        self.rule().param_view(views)
    }
    fn onnx(&self, w: &mut OnnxWriter<'_>) -> Result<()> {
        self.rule().onnx(w)
    }
}

/// The typed refusal of an op the replay cannot execute.
pub(crate) fn not_executable(index: usize, op: &OperationIr) -> GraphError {
    GraphError::NotExecutable {
        op: crate::rules::op_name(op),
        index,
    }
}

/// A layer call with the op indices left for [`layer_calls`](crate::layer_calls) to fill in.
pub(crate) fn call(
    layer_kind: crate::LayerKind,
    weight_path: &str,
    input: &TensorIr,
    output: &TensorIr,
    weight: &TensorIr,
    bias: Option<&TensorIr>,
) -> LayerCall {
    LayerCall {
        layer: crate::views::layer_of(weight_path).to_string(),
        kind: layer_kind,
        op: 0,
        input: input.clone(),
        output: output.clone(),
        weight: weight.clone(),
        bias: bias.cloned(),
        bias_add: None,
    }
}

#[cfg(test)]
pub(crate) mod testing;
