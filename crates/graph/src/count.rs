//! Counting a captured forward pass: MACs, parameters, and NNI-style per-layer FLOPs rows.

use std::collections::{BTreeSet, HashMap};

use burn_ir::OperationIr;
use serde::Serialize;

use crate::capture::Graph;
use crate::ops::{Op, OpRule, Row, numel};
use crate::views::{LayerCall, ParamViews, layer_calls};

/// The cost of one forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Multiply-accumulates of convs, transposed convs and matmuls.
    pub macs: u64,
    /// Parameters used by the pass (running statistics excluded).
    pub params: u64,
}

/// What [`count_flops_params`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CountMode {
    /// Convs, transposed convs and Linear layers only (NNI's `mode="default"`).
    #[default]
    Default,
    /// Also BatchNorm/LayerNorm (2 per element), activations (1 per element), pooling (one per
    /// window element) and elementwise adds of two activations (1 per element), like NNI's `full`.
    Full,
}

/// One counted layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlopsRow {
    /// Layer path (`layer1.0.conv1`); for parameter-free ops, the op's kind (`Activation::Relu`).
    pub name: String,
    /// Op kind (`Conv2d`, `Linear`, `BatchNorm`, `Relu`, ...).
    pub module_type: String,
    /// Weight shape, Burn's layout (empty for ops without a weight).
    pub weight_shape: Vec<usize>,
    /// Input shape.
    pub input_size: Vec<usize>,
    /// Output shape.
    pub output_size: Vec<usize>,
    /// FLOPs as NNI counts them (one per multiply-accumulate for convs and Linear).
    pub flops: u64,
    /// Parameters of the layer (weight and bias; running statistics excluded).
    pub params: u64,
}

/// Per-layer rows and totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlopsReport {
    /// Rows in execution order.
    pub rows: Vec<FlopsRow>,
    /// Sum of the rows' FLOPs.
    pub flops: u64,
    /// Sum of the rows' parameters.
    pub params: u64,
}

/// Count a captured forward pass per layer, like NNI's `count_flops_params`.
///
/// Convs count `out_elements x (in / groups x kernel)`, a Linear `out_elements x in_features` (NNI
/// leaves biases out of FLOPs and in parameters). Parameter-free ops count only in
/// [`CountMode::Full`]. Each op's numbers come from the op table; a layer call (a Linear's
/// matmul and bias add together) is one row named by its layer.
pub fn count_flops_params(graph: &Graph, mode: CountMode) -> FlopsReport {
    let calls: HashMap<usize, LayerCall> =
        layer_calls(graph).into_iter().map(|c| (c.op, c)).collect();
    let absorbed: BTreeSet<usize> = calls.values().filter_map(|c| c.bias_add).collect();
    let mut views = ParamViews::default();
    let mut rows: Vec<FlopsRow> = Vec::new();
    for (i, op) in graph.ops.iter().enumerate() {
        views.step(op, graph);
        let Some(o) = Op::of(op) else { continue };
        let cost = o.cost(&views);
        let shown = match cost.row {
            Row::None => false,
            Row::Default => true,
            Row::Full => mode == CountMode::Full,
        };
        if !shown || absorbed.contains(&i) {
            continue;
        }
        let (input_size, output_size) = cost.io;
        rows.push(match calls.get(&i) {
            Some(call) => FlopsRow {
                name: call.layer.clone(),
                module_type: cost.kind.to_string(),
                weight_shape: call.weight.shape.to_vec(),
                input_size,
                output_size,
                flops: cost.flops,
                params: call.params(),
            },
            None => FlopsRow {
                name: cost.kind.to_string(),
                module_type: cost.kind.to_string(),
                weight_shape: Vec::new(),
                input_size,
                output_size,
                flops: cost.flops,
                params: 0,
            },
        });
    }
    FlopsReport {
        flops: rows.iter().map(|r| r.flops).sum(),
        params: rows.iter().map(|r| r.params).sum(),
        rows,
    }
}

/// Count a captured forward pass: MACs of every op the table costs (convs, transposed convs,
/// Linear layers and matmuls), and every learnable parameter the pass reads (running statistics
/// excluded).
pub fn count(graph: &Graph) -> Cost {
    let mut views = ParamViews::default();
    let mut macs = 0u64;
    for op in &graph.ops {
        views.step(op, graph);
        if let Some(o) = Op::of(op) {
            macs += o.cost(&views).macs;
        }
    }
    let params = graph
        .ops
        .iter()
        .filter_map(|op| match op {
            OperationIr::Init(i) => graph.params.get(&i.out.id).map(|p| (p, numel(&i.out))),
            _ => None,
        })
        .filter(|(p, _)| !p.ends_with("running_mean") && !p.ends_with("running_var"))
        .map(|(_, n)| n)
        .sum();
    Cost { macs, params }
}
