//! Counting a captured forward pass: MACs, parameters, and NNI-style per-layer FLOPs rows.

use std::collections::HashMap;

use burn_ir::{
    ActivationOperationIr, FloatOperationIr, ModuleOperationIr, NumericOperationIr, OperationIr,
    TensorIr,
};
use serde::Serialize;

use crate::capture::Graph;

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

fn numel(t: &TensorIr) -> u64 {
    t.shape.num_elements() as u64
}

fn layer_of(path: &str) -> &str {
    path.rsplit_once('.').map_or("", |(l, _)| l)
}

/// Count a captured forward pass per layer, like NNI's `count_flops_params`.
///
/// Convs count `out_elements x (in / groups x kernel)`, a Linear `out_elements x in_features` (NNI
/// leaves biases out of FLOPs and in parameters). Parameter-free ops count only in
/// [`CountMode::Full`].
pub fn count_flops_params(graph: &Graph, mode: CountMode) -> FlopsReport {
    let path = |t: &TensorIr| graph.params.get(&t.id).cloned();
    // Values of reshaped parameters (a Linear's bias reshaped to [1, out]) point back to the param.
    let mut views: HashMap<burn_ir::TensorId, String> = HashMap::new();
    let mut rows: Vec<FlopsRow> = Vec::new();
    let push = |row: FlopsRow, rows: &mut Vec<FlopsRow>| rows.push(row);
    for op in &graph.ops {
        match op {
            OperationIr::BaseFloat(burn_ir::BaseOperationIr::Reshape(r)) => {
                if let Some(p) = path(&r.input).or_else(|| views.get(&r.input.id).cloned()) {
                    views.insert(r.out.id, p);
                }
            }
            OperationIr::Module(m) => {
                let conv = |x: &TensorIr,
                            w: &TensorIr,
                            b: Option<&TensorIr>,
                            out: &TensorIr,
                            kind: &str,
                            flops: u64| {
                    let wp = path(w).unwrap_or_default();
                    FlopsRow {
                        name: layer_of(&wp).to_string(),
                        module_type: kind.to_string(),
                        weight_shape: w.shape.to_vec(),
                        input_size: x.shape.to_vec(),
                        output_size: out.shape.to_vec(),
                        flops,
                        params: numel(w) + b.map_or(0, numel),
                    }
                };
                let per_out =
                    |w: &TensorIr| w.shape.as_slice()[1..].iter().product::<usize>() as u64;
                let row = match m {
                    ModuleOperationIr::Conv1d(c) => Some(conv(
                        &c.x,
                        &c.weight,
                        c.bias.as_ref(),
                        &c.out,
                        "Conv1d",
                        numel(&c.out) * per_out(&c.weight),
                    )),
                    ModuleOperationIr::Conv2d(c) => Some(conv(
                        &c.x,
                        &c.weight,
                        c.bias.as_ref(),
                        &c.out,
                        "Conv2d",
                        numel(&c.out) * per_out(&c.weight),
                    )),
                    ModuleOperationIr::Conv3d(c) => Some(conv(
                        &c.x,
                        &c.weight,
                        c.bias.as_ref(),
                        &c.out,
                        "Conv3d",
                        numel(&c.out) * per_out(&c.weight),
                    )),
                    ModuleOperationIr::ConvTranspose1d(c) => Some(conv(
                        &c.x,
                        &c.weight,
                        c.bias.as_ref(),
                        &c.out,
                        "ConvTranspose1d",
                        numel(&c.x) * per_out(&c.weight),
                    )),
                    ModuleOperationIr::ConvTranspose2d(c) => Some(conv(
                        &c.x,
                        &c.weight,
                        c.bias.as_ref(),
                        &c.out,
                        "ConvTranspose2d",
                        numel(&c.x) * per_out(&c.weight),
                    )),
                    ModuleOperationIr::ConvTranspose3d(c) => Some(conv(
                        &c.x,
                        &c.weight,
                        c.bias.as_ref(),
                        &c.out,
                        "ConvTranspose3d",
                        numel(&c.x) * per_out(&c.weight),
                    )),
                    _ if mode == CountMode::Default => None,
                    ModuleOperationIr::BatchNorm(b) => Some(FlopsRow {
                        name: layer_of(&path(&b.gamma).unwrap_or_default()).to_string(),
                        module_type: "BatchNorm".into(),
                        weight_shape: b.gamma.shape.to_vec(),
                        input_size: b.x.shape.to_vec(),
                        output_size: b.out.shape.to_vec(),
                        flops: 2 * numel(&b.out),
                        params: numel(&b.gamma) + numel(&b.beta),
                    }),
                    ModuleOperationIr::LayerNorm(l) => Some(FlopsRow {
                        name: layer_of(&path(&l.gamma).unwrap_or_default()).to_string(),
                        module_type: "LayerNorm".into(),
                        weight_shape: l.gamma.shape.to_vec(),
                        input_size: l.input.shape.to_vec(),
                        output_size: l.out.shape.to_vec(),
                        flops: 2 * numel(&l.out),
                        params: numel(&l.gamma) + l.beta.as_ref().map_or(0, numel),
                    }),
                    ModuleOperationIr::MaxPool2d(p) => Some(pool(
                        "MaxPool2d",
                        &p.x,
                        &p.out,
                        (p.kernel_size[0] * p.kernel_size[1]) as u64,
                    )),
                    ModuleOperationIr::AvgPool2d(p) => Some(pool(
                        "AvgPool2d",
                        &p.x,
                        &p.out,
                        (p.kernel_size[0] * p.kernel_size[1]) as u64,
                    )),
                    ModuleOperationIr::AdaptiveAvgPool2d(p) => Some(pool(
                        "AdaptiveAvgPool2d",
                        &p.x,
                        &p.out,
                        numel(&p.x) / numel(&p.out).max(1),
                    )),
                    _ => None,
                };
                if let Some(r) = row {
                    push(r, &mut rows);
                }
            }
            OperationIr::Float(_, FloatOperationIr::Matmul(mm)) => {
                // A Linear: matmul with a weight operand (its bias is added next).
                if let Some(w) = path(&mm.rhs).or_else(|| views.get(&mm.rhs.id).cloned()) {
                    let k = *mm.lhs.shape.as_slice().last().unwrap_or(&1) as u64;
                    push(
                        FlopsRow {
                            name: layer_of(&w).to_string(),
                            module_type: "Linear".into(),
                            weight_shape: mm.rhs.shape.to_vec(),
                            input_size: mm.lhs.shape.to_vec(),
                            output_size: mm.out.shape.to_vec(),
                            flops: numel(&mm.out) * k,
                            params: numel(&mm.rhs),
                        },
                        &mut rows,
                    );
                } else if mode == CountMode::Full {
                    let k = *mm.lhs.shape.as_slice().last().unwrap_or(&1) as u64;
                    push(
                        plain("Matmul", &mm.lhs, &mm.out, numel(&mm.out) * k),
                        &mut rows,
                    );
                }
            }
            OperationIr::NumericFloat(_, NumericOperationIr::Add(b)) => {
                // The bias add right after a Linear's matmul belongs to that Linear.
                if let Some(bias) = path(&b.rhs).or_else(|| views.get(&b.rhs.id).cloned())
                    && let Some(i) = rows.iter().rposition(|r| r.name == layer_of(&bias))
                {
                    rows[i].params += graph_param_numel(graph, &bias);
                    continue;
                }
                if mode == CountMode::Full {
                    push(plain("Add", &b.lhs, &b.out, numel(&b.out)), &mut rows);
                }
            }
            OperationIr::Activation(a) if mode == CountMode::Full => {
                let (kind, x, out) = match a {
                    ActivationOperationIr::Relu(u) => ("Relu", &u.input, &u.out),
                    ActivationOperationIr::Gelu(u) => ("Gelu", &u.input, &u.out),
                    ActivationOperationIr::Sigmoid(u) => ("Sigmoid", &u.input, &u.out),
                    ActivationOperationIr::Softmax(d) => ("Softmax", &d.input, &d.out),
                    _ => continue,
                };
                push(plain(kind, x, out, numel(out)), &mut rows);
            }
            _ => {}
        }
    }
    FlopsReport {
        flops: rows.iter().map(|r| r.flops).sum(),
        params: rows.iter().map(|r| r.params).sum(),
        rows,
    }
}

fn graph_param_numel(graph: &Graph, path: &str) -> u64 {
    graph
        .ops
        .iter()
        .find_map(|op| match op {
            OperationIr::Init(i)
                if graph.params.get(&i.out.id).map(String::as_str) == Some(path) =>
            {
                Some(numel(&i.out))
            }
            _ => None,
        })
        .unwrap_or(0)
}

fn pool(kind: &str, x: &TensorIr, out: &TensorIr, window: u64) -> FlopsRow {
    plain(kind, x, out, numel(out) * window)
}

fn plain(kind: &str, x: &TensorIr, out: &TensorIr, flops: u64) -> FlopsRow {
    FlopsRow {
        name: kind.to_string(),
        module_type: kind.to_string(),
        weight_shape: Vec::new(),
        input_size: x.shape.to_vec(),
        output_size: out.shape.to_vec(),
        flops,
        params: 0,
    }
}

/// Count a captured forward pass: MACs of convs and matmuls, and every learnable parameter the
/// pass reads (running statistics excluded).
pub fn count(graph: &Graph) -> Cost {
    let mut macs = 0u64;
    for op in &graph.ops {
        match op {
            OperationIr::Module(m) => {
                let per_out =
                    |w: &TensorIr| w.shape.as_slice()[1..].iter().product::<usize>() as u64;
                macs += match m {
                    ModuleOperationIr::Conv1d(c) => numel(&c.out) * per_out(&c.weight),
                    ModuleOperationIr::Conv2d(c) => numel(&c.out) * per_out(&c.weight),
                    ModuleOperationIr::Conv3d(c) => numel(&c.out) * per_out(&c.weight),
                    ModuleOperationIr::ConvTranspose1d(c) => numel(&c.x) * per_out(&c.weight),
                    ModuleOperationIr::ConvTranspose2d(c) => numel(&c.x) * per_out(&c.weight),
                    ModuleOperationIr::ConvTranspose3d(c) => numel(&c.x) * per_out(&c.weight),
                    _ => 0,
                };
            }
            OperationIr::Float(_, FloatOperationIr::Matmul(m)) => {
                macs += numel(&m.out) * *m.lhs.shape.as_slice().last().unwrap_or(&1) as u64;
            }
            _ => {}
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
