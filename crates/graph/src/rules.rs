//! The channel analysis engine (DepGraph-style): the union-find of channel slots that each op
//! family's rule (`ops::OpRule::channels`, in `src/ops/`) updates.
//!
//! Every prunable channel is a *slot* in a union-find. A producer (conv output channels, Linear
//! output features, embedding dims) creates fresh slots; each op says how its input slots map to
//! its output slots (pass-through, concatenation, flatten strides, slicing), which slots are
//! coupled (residual add, depthwise conv), and which parameter slices (`param`, axis, index) hang
//! on each slot. A class of coupled slots is removed together or not at all.
//!
//! Ops with no rule are errors that name the op and where it sits, never silently treated as
//! pass-through (the known failure of Torch-Pruning's and NNI's tracers). Known ops whose channel
//! pattern cannot be pruned safely (a softmax over channels, the input of a grouped conv, a mean
//! over channels that is not an RMS norm) *pin* their slots with a reason: pinned channels are
//! kept, and the plan reports why.
//!
//! Transformers: a reshape that splits a channel axis into `[heads, head_dim]` joins each head's
//! slots into one class ([`HeadSplit`]), so a head leaves whole or not at all; a batched matmul
//! couples the head axes of its operands (q with k through the scores, the scores with v); an
//! expand + reshape that repeats KV heads (GQA) joins each KV head with its query group. An RMS
//! norm over channels (burn-nn `RmsNorm`'s ops) is recognized (`norm_pattern.rs`) and listed in
//! [`Analysis::rms_norms`]: removing zero channels from it is exact once its gamma and epsilon are
//! rescaled. A LayerNorm over channels marks them ([`Class::layer_norms`]): the plan keeps them
//! unless asked to normalize over the kept channels.

use std::collections::{BTreeMap, HashMap};

use burn_ir::{OperationIr, TensorId, TensorIr};

use crate::capture::Graph;
use crate::ops::{Op, OpRule};
use crate::views::{ParamViews, layer_of};
use crate::{GraphError, Result};

/// One parameter slice hanging on a channel slot: `param[.., index, ..]` along `axis`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// Parameter path.
    pub param: String,
    /// Axis in Burn's layout.
    pub axis: usize,
    /// Index along the axis.
    pub index: usize,
}

/// `Family::Variant` of an op (`NumericFloat::Sort`), from its Debug form's leading identifiers.
pub fn op_name(op: &OperationIr) -> String {
    fn head(debug: String) -> String {
        debug
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .next()
            .unwrap_or("")
            .to_string()
    }
    let (family, inner) = match op {
        OperationIr::BaseFloat(o) | OperationIr::BaseInt(o) | OperationIr::BaseBool(o) => {
            ("Base", head(format!("{o:?}")))
        }
        OperationIr::NumericFloat(_, o) | OperationIr::NumericInt(_, o) => {
            ("Numeric", head(format!("{o:?}")))
        }
        OperationIr::Float(_, o) => ("Float", head(format!("{o:?}"))),
        OperationIr::Module(o) => ("Module", head(format!("{o:?}"))),
        OperationIr::Activation(o) => ("Activation", head(format!("{o:?}"))),
        OperationIr::Custom(c) => ("Custom", c.id.to_string()),
        other => ("Op", head(format!("{other:?}"))),
    };
    format!("{family}::{inner}")
}

/// The channel slots along one axis of an activation.
#[derive(Debug, Clone)]
pub(crate) struct Map {
    pub axis: usize,
    pub slots: Vec<usize>,
}

/// What the analysis knows about a tensor.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// Data with no prunable channels (inputs, constants).
    Const,
    /// A parameter viewed through reshapes: tensor axis -> parameter axis.
    Param {
        path: String,
        axes: Vec<Option<usize>>,
    },
    /// An activation, with the axis that carries prunable channels (if any).
    Act(Option<Map>),
}

/// A grouped (not depthwise) conv: its output channels must stay balanced across groups.
#[derive(Debug, Clone)]
pub struct GroupedConv {
    /// The conv's layer path.
    pub layer: String,
    /// Its group count.
    pub groups: usize,
    /// The channel slots of its outputs (see [`Analysis::find`]).
    pub out_slots: Vec<usize>,
}

/// A reshape that split a layer's output channels into `heads` runs of `head_dim` (attention
/// heads): each head's slots form one class, removed whole or kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSplit {
    /// The layer that produced the split channels (its first parameter's layer: `attn.query`).
    pub layer: String,
    /// Heads.
    pub heads: usize,
    /// Channels per head.
    pub head_dim: usize,
    /// One slot per head (see [`Analysis::find`]).
    pub slots: Vec<usize>,
}

/// One class of coupled channel slots, as [`Analysis::classes`] lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    /// The root slot.
    pub root: usize,
    /// The parameter slices that hang on it; the first is its producer's.
    pub members: Vec<Member>,
    /// Why it cannot be removed (sorted, deduplicated); empty when it can.
    pub pins: Vec<String>,
    /// The LayerNorm layers that normalize it (sorted): removing it changes their mean and
    /// variance, so it is removed only when the plan is asked to normalize over kept channels.
    pub layer_norms: Vec<String>,
}

/// The result of running every op's channel rule over a graph: a union-find of channel slots,
/// the parameter slices that hang on each class, and the reasons a class is pinned.
#[derive(Debug, Default)]
pub struct Analysis {
    parent: Vec<usize>,
    members: Vec<Vec<Member>>,
    pins: Vec<Vec<String>>,
    layer_norms: Vec<Vec<String>>,
    values: HashMap<TensorId, Value>,
    views: ParamViews,
    pub(crate) last_layer: Option<String>,
    /// Parameters whose rows an embedding gathers by id: their axis 0 is never removed.
    pub(crate) gathered: Vec<String>,
    pub(crate) rms: crate::norm_pattern::RmsPatterns,
    /// Grouped (not depthwise) convs met on the way.
    pub grouped_convs: Vec<GroupedConv>,
    /// Reshapes that split channels into heads.
    pub head_splits: Vec<HeadSplit>,
    /// The gammas (parameter paths) of the RMS norms over channels that were recognized: a
    /// channel removed from one must rescale its gamma by `sqrt(d / d')` and its epsilon by
    /// `d / d'` (`d'` kept of `d`) for the smaller norm to compute what the masked one did.
    pub rms_norms: Vec<String>,
}

impl Analysis {
    /// Run every op's rule.
    ///
    /// # Errors
    /// [`GraphError::UnsupportedOp`] for an op without a rule that touches channels.
    pub fn run(graph: &Graph) -> Result<Self> {
        let mut a = Analysis::default();
        for (i, op) in graph.ops.iter().enumerate() {
            a.views.step(op, graph);
            if a.rms_observe(op) {
                // The mean of an RMS norm: no pin, the plan rescales the norm instead.
                continue;
            }
            match (op, Op::of(op)) {
                (OperationIr::Init(init), _) => {
                    if a.views.get(&init.out).is_none() {
                        a.set(&init.out, Value::Const);
                    }
                }
                (OperationIr::Drop(_), _) => {}
                (_, Some(o)) => o.channels(&mut a, i, op)?,
                (_, None) => a.no_rule(i, op)?,
            }
        }
        a.rms_finish(&graph.outputs);
        Ok(a)
    }

    pub(crate) fn new_slot(&mut self) -> usize {
        self.parent.push(self.parent.len());
        self.members.push(Vec::new());
        self.pins.push(Vec::new());
        self.layer_norms.push(Vec::new());
        self.parent.len() - 1
    }

    /// The slots of `map` are normalized by the LayerNorm `layer`.
    pub(crate) fn mark_layer_norm(&mut self, map: &Map, layer: &str) {
        for &s in &map.slots {
            let r = self.find(s);
            self.layer_norms[r].push(layer.to_string());
        }
    }

    /// Join each run of `per` consecutive slots of `slots` into one class (a head); returns one
    /// slot per run.
    pub(crate) fn join_heads(&mut self, slots: &[usize], per: usize) -> Vec<usize> {
        let heads: Vec<usize> = slots.chunks(per).map(|c| c[0]).collect();
        let layer = heads
            .first()
            .and_then(|&s| {
                let r = self.find(s);
                self.members[r]
                    .first()
                    .map(|m| layer_of(&m.param).to_string())
            })
            .unwrap_or_default();
        for c in slots.chunks(per) {
            for &s in &c[1..] {
                self.union(c[0], s);
            }
        }
        self.head_splits.push(HeadSplit {
            layer,
            heads: heads.len(),
            head_dim: per,
            slots: heads.clone(),
        });
        heads
    }

    /// The class (root slot) of slot `s`.
    pub fn find(&mut self, mut s: usize) -> usize {
        while self.parent[s] != s {
            self.parent[s] = self.parent[self.parent[s]];
            s = self.parent[s];
        }
        s
    }

    pub(crate) fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[rb] = ra;
            let m = std::mem::take(&mut self.members[rb]);
            self.members[ra].extend(m);
            let p = std::mem::take(&mut self.pins[rb]);
            self.pins[ra].extend(p);
            let n = std::mem::take(&mut self.layer_norms[rb]);
            self.layer_norms[ra].extend(n);
        }
    }

    pub(crate) fn attach(&mut self, slot: usize, param: &str, axis: usize, index: usize) {
        let r = self.find(slot);
        self.members[r].push(Member {
            param: param.to_string(),
            axis,
            index,
        });
    }

    pub(crate) fn pin_map(&mut self, map: &Option<Map>, reason: String) {
        if let Some(m) = map {
            for &s in &m.slots {
                let r = self.find(s);
                self.pins[r].push(reason.clone());
            }
        }
    }

    /// Classes of coupled slots, by root, in creation order.
    pub fn classes(&mut self) -> Vec<Class> {
        let mut out = BTreeMap::new();
        for s in 0..self.parent.len() {
            let r = self.find(s);
            out.entry(r).or_insert(());
        }
        out.into_keys()
            .map(|r| {
                // Order-preserving dedup: the first member is the producer (a conv's weight).
                let mut seen = std::collections::HashSet::new();
                let members: Vec<Member> = self.members[r]
                    .iter()
                    .filter(|x| seen.insert((*x).clone()))
                    .cloned()
                    .collect();
                let mut pins = self.pins[r].clone();
                // An embedding gathers its weight's rows by id: they cannot be renumbered.
                for m in &members {
                    if m.axis == 0 && self.gathered.contains(&m.param) {
                        pins.push(format!("rows of '{}' gathered by an embedding", m.param));
                    }
                }
                pins.sort();
                pins.dedup();
                let mut layer_norms = self.layer_norms[r].clone();
                layer_norms.sort();
                layer_norms.dedup();
                Class {
                    root: r,
                    members,
                    pins,
                    layer_norms,
                }
            })
            .collect()
    }

    pub(crate) fn value(&self, t: &TensorIr) -> Value {
        if let Some(v) = self.views.get(t) {
            return Value::Param {
                path: v.path.clone(),
                axes: v.axes.clone(),
            };
        }
        self.values.get(&t.id).cloned().unwrap_or(Value::Const)
    }

    pub(crate) fn map(&self, t: &TensorIr) -> Option<Map> {
        match self.value(t) {
            Value::Act(m) => m,
            _ => None,
        }
    }

    pub(crate) fn set(&mut self, t: &TensorIr, v: Value) {
        self.values.insert(t.id, v);
    }

    pub(crate) fn param(&self, t: &TensorIr) -> Option<String> {
        match self.value(t) {
            Value::Param { path, .. } => Some(path),
            _ => None,
        }
    }

    fn location(&self) -> String {
        match &self.last_layer {
            Some(l) => format!("after layer '{l}'"),
            None => "before any layer".to_string(),
        }
    }

    pub(crate) fn unsupported(&self, index: usize, op: &OperationIr) -> GraphError {
        GraphError::UnsupportedOp {
            op: op_name(op),
            index,
            location: self.location(),
        }
    }

    /// Whether any input of the op carries channels or parameters (an op on constants only
    /// needs no rule).
    pub(crate) fn touches_channels(&self, op: &OperationIr) -> bool {
        op.inputs().any(|t| !matches!(self.value(t), Value::Const))
    }

    /// Every output of the op is data without channels.
    pub(crate) fn consts(&mut self, op: &OperationIr) {
        for out in op.outputs() {
            self.values.insert(out.id, Value::Const);
        }
    }

    /// An op no family claims, or a family member without a rule: fine on constants, an error
    /// naming the op when it touches channels or parameters.
    pub(crate) fn no_rule(&mut self, index: usize, op: &OperationIr) -> Result<()> {
        if self.touches_channels(op) {
            return Err(self.unsupported(index, op));
        }
        self.consts(op);
        Ok(())
    }

    /// The output has the channels of `input` (elementwise, pooling, casts).
    pub(crate) fn pass(&mut self, input: &TensorIr, out: &TensorIr) {
        let v = match self.value(input) {
            Value::Act(m) => Value::Act(m),
            _ => Value::Const,
        };
        self.set(out, v);
    }

    /// Pin the channels of `input` on `axis` with `reason` (a normalization over channels).
    pub(crate) fn pin_axis(&mut self, input: &TensorIr, axis: usize, reason: &str) {
        let m = self.map(input);
        if m.as_ref().is_some_and(|m| m.axis == axis) {
            self.pin_map(&m, reason.to_string());
        }
    }
}
