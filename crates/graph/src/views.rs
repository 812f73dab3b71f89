//! Parameters seen through view ops, and layer calls: the one place that decides which op
//! inputs are parameters and which ops (or op pairs, a Linear's matmul and bias add) are a call
//! of a layer. Channel rules, replay taps, counting and BatchNorm folding all read this.

use std::collections::HashMap;

use burn_ir::{OperationIr, TensorId, TensorIr};

use crate::capture::Graph;
use crate::ops::{Op, OpRule};

/// The layer path of a parameter path (`layer1.0.conv1.weight` -> `layer1.0.conv1`).
pub(crate) fn layer_of(param: &str) -> &str {
    param.rsplit_once('.').map_or("", |(l, _)| l)
}

/// A parameter seen through reshapes, expands and axis permutations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParamView {
    /// The parameter's dotted path.
    pub path: String,
    /// For each axis of the viewed tensor, the parameter axis it is (`None`: a unit or
    /// broadcast axis, or an axis that mixes parameter axes).
    pub axes: Vec<Option<usize>>,
}

/// Every tensor that is a parameter or a view of one, built op by op.
#[derive(Debug, Default, Clone)]
pub(crate) struct ParamViews {
    views: HashMap<TensorId, ParamView>,
}

impl ParamViews {
    /// Record what `op` produces, if it is a parameter or a view of one.
    pub fn step(&mut self, op: &OperationIr, graph: &Graph) {
        match op {
            OperationIr::Init(init) => {
                if let Some(path) = graph.params.get(&init.out.id) {
                    let axes = (0..init.out.shape.num_dims()).map(Some).collect();
                    let path = path.clone();
                    self.views.insert(init.out.id, ParamView { path, axes });
                }
            }
            _ => {
                if let Some(o) = Op::of(op)
                    && let Some((out, view)) = o.param_view(self)
                {
                    self.views.insert(out, view);
                }
            }
        }
    }

    /// The parameter `t` views, if any.
    pub fn get(&self, t: &TensorIr) -> Option<&ParamView> {
        self.views.get(&t.id)
    }

    /// The path of the parameter `t` views, if any.
    pub fn path(&self, t: &TensorIr) -> Option<&str> {
        self.get(t).map(|v| v.path.as_str())
    }
}

/// What kind of layer a [`LayerCall`] calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LayerKind {
    /// `ModuleOperationIr::Conv1d`.
    Conv1d,
    /// `ModuleOperationIr::Conv2d`.
    Conv2d,
    /// `ModuleOperationIr::Conv3d`.
    Conv3d,
    /// `ModuleOperationIr::ConvTranspose1d`.
    ConvTranspose1d,
    /// `ModuleOperationIr::ConvTranspose2d`.
    ConvTranspose2d,
    /// `ModuleOperationIr::ConvTranspose3d`.
    ConvTranspose3d,
    /// `ModuleOperationIr::Linear`, or a matmul with a parameter weight (and its bias add).
    Linear,
    /// `ModuleOperationIr::BatchNorm`.
    BatchNorm,
    /// `ModuleOperationIr::LayerNorm`.
    LayerNorm,
    /// `ModuleOperationIr::Embedding`.
    Embedding,
}

impl LayerKind {
    /// The layer's name (`Conv2d`), as NNI's `module_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conv1d => "Conv1d",
            Self::Conv2d => "Conv2d",
            Self::Conv3d => "Conv3d",
            Self::ConvTranspose1d => "ConvTranspose1d",
            Self::ConvTranspose2d => "ConvTranspose2d",
            Self::ConvTranspose3d => "ConvTranspose3d",
            Self::Linear => "Linear",
            Self::BatchNorm => "BatchNorm",
            Self::LayerNorm => "LayerNorm",
            Self::Embedding => "Embedding",
        }
    }
}

/// One call of a layer in a captured graph.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerCall {
    /// Layer path (`conv1`), from its weight's parameter path.
    pub layer: String,
    /// What the layer is.
    pub kind: LayerKind,
    /// Index of the op that computes it (a Linear's matmul).
    pub op: usize,
    /// The input activation (token ids for an embedding).
    pub input: TensorIr,
    /// The output activation (after the bias add of a Linear written as matmul + add).
    pub output: TensorIr,
    /// The weight as the op reads it (a norm's gamma).
    pub weight: TensorIr,
    /// The bias as the op (or the absorbed bias add) reads it (a norm's beta).
    pub bias: Option<TensorIr>,
    /// Index of the absorbed bias add, for a Linear written as matmul + add.
    pub bias_add: Option<usize>,
}

impl LayerCall {
    /// Parameters of the call as NNI counts them: weight and bias elements.
    pub fn params(&self) -> u64 {
        let n = |t: &TensorIr| t.shape.num_elements() as u64;
        n(&self.weight) + self.bias.as_ref().map_or(0, n)
    }
}

/// Every layer call of `graph`, in execution order: each op family says whether it is a layer
/// call, and a matmul's call extends over the bias add that reads its output together with a
/// parameter of the same layer (burn-nn's Linear is captured as `matmul` then `add`).
pub fn layer_calls(graph: &Graph) -> Vec<LayerCall> {
    let mut views = ParamViews::default();
    let mut calls: Vec<LayerCall> = Vec::new();
    // Output of a matmul-Linear -> index in `calls`, to extend it over the bias add.
    let mut pending: HashMap<TensorId, usize> = HashMap::new();
    for (i, op) in graph.ops.iter().enumerate() {
        views.step(op, graph);
        let Some(o) = Op::of(op) else { continue };
        if let Some(mut call) = o.layer_call(&views) {
            call.op = i;
            if call.kind == LayerKind::Linear && call.bias.is_none() {
                pending.insert(call.output.id, calls.len());
            }
            calls.push(call);
        } else if let Some((lhs, rhs, out)) = o.bias_add() {
            let hit = [(lhs, rhs), (rhs, lhs)].into_iter().find_map(|(a, b)| {
                let c = *pending.get(&a.id)?;
                let bias = views.path(b)?;
                (layer_of(bias) == calls[c].layer).then_some((c, b))
            });
            if let Some((c, b)) = hit {
                pending.remove(&calls[c].output.id);
                calls[c].output = out.clone();
                calls[c].bias = Some(b.clone());
                calls[c].bias_add = Some(i);
            }
        }
    }
    calls
}
