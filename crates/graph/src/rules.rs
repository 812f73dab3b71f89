//! Channel dependency rules: how channel indices flow through each op (DepGraph-style).
//!
//! Every prunable channel is a *slot* in a union-find. A producer (conv output channels, Linear
//! output features, embedding dims) creates fresh slots; each op says how its input slots map to
//! its output slots (pass-through, concatenation, flatten strides, slicing), which slots are
//! coupled (residual add, depthwise conv), and which parameter slices (`param`, axis, index) hang
//! on each slot. A class of coupled slots is removed together or not at all.
//!
//! Ops with no rule are errors that name the op and where it sits, never silently treated as
//! pass-through (the known failure of Torch-Pruning's and NNI's tracers). Known ops whose channel
//! pattern cannot be pruned safely (a reshape that splits a channel axis, a softmax over channels,
//! the input of a grouped conv) *pin* their slots with a reason: pinned channels are kept, and the
//! plan reports why.

use std::collections::{BTreeMap, HashMap};

use burn_ir::{
    ActivationOperationIr, BaseOperationIr, BinaryOpIr, FloatOperationIr, ModuleOperationIr,
    NumericOperationIr, OperationIr, TensorId, TensorIr,
};

use crate::capture::Graph;
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

/// How a custom op (`OperationIr::Custom`, by its id) treats channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Elementwise: every output has the channels of the first input.
    PassThrough,
    /// Mixes channels: its inputs' channels are pinned (kept), its outputs have none.
    Opaque,
}

/// A channel rule for a custom op, registered with `inventory::submit!`.
#[derive(Debug)]
pub struct CustomOpRule {
    /// The custom op's id (`CustomOpIr::id`).
    pub id: &'static str,
    /// What it does to channels.
    pub kind: RuleKind,
}

inventory::collect!(CustomOpRule);

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

#[derive(Debug, Clone)]
struct Map {
    axis: usize,
    slots: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Value {
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

/// The result of running every op's channel rule over a graph: a union-find of channel slots,
/// the parameter slices that hang on each class, and the reasons a class is pinned.
#[derive(Debug, Default)]
pub struct Analysis {
    parent: Vec<usize>,
    members: Vec<Vec<Member>>,
    pins: Vec<Vec<String>>,
    values: HashMap<TensorId, Value>,
    last_layer: Option<String>,
    /// Grouped (not depthwise) convs met on the way.
    pub grouped_convs: Vec<GroupedConv>,
}

fn layer_of(param: &str) -> &str {
    param.rsplit_once('.').map_or("", |(l, _)| l)
}

impl Analysis {
    /// Run every op's rule.
    ///
    /// # Errors
    /// [`GraphError::UnsupportedOp`] for an op without a rule that touches channels.
    pub fn run(graph: &Graph) -> Result<Self> {
        let mut a = Analysis::default();
        for (i, op) in graph.ops.iter().enumerate() {
            a.op(i, op, graph)?;
        }
        Ok(a)
    }

    fn new_slot(&mut self) -> usize {
        self.parent.push(self.parent.len());
        self.members.push(Vec::new());
        self.pins.push(Vec::new());
        self.parent.len() - 1
    }

    /// The class (root slot) of slot `s`.
    pub fn find(&mut self, mut s: usize) -> usize {
        while self.parent[s] != s {
            self.parent[s] = self.parent[self.parent[s]];
            s = self.parent[s];
        }
        s
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[rb] = ra;
            let m = std::mem::take(&mut self.members[rb]);
            self.members[ra].extend(m);
            let p = std::mem::take(&mut self.pins[rb]);
            self.pins[ra].extend(p);
        }
    }

    fn attach(&mut self, slot: usize, param: &str, axis: usize, index: usize) {
        let r = self.find(slot);
        self.members[r].push(Member {
            param: param.to_string(),
            axis,
            index,
        });
    }

    fn pin_map(&mut self, map: &Option<Map>, reason: String) {
        if let Some(m) = map {
            for &s in &m.slots {
                let r = self.find(s);
                self.pins[r].push(reason.clone());
            }
        }
    }

    /// Classes of coupled slots: (members, pin reasons), by root, in creation order.
    pub fn classes(&mut self) -> Vec<(usize, Vec<Member>, Vec<String>)> {
        let mut out = BTreeMap::new();
        for s in 0..self.parent.len() {
            let r = self.find(s);
            out.entry(r).or_insert(());
        }
        out.into_keys()
            .map(|r| {
                // Order-preserving dedup: the first member is the producer (a conv's weight).
                let mut seen = std::collections::HashSet::new();
                let m: Vec<Member> = self.members[r]
                    .iter()
                    .filter(|x| seen.insert((*x).clone()))
                    .cloned()
                    .collect();
                let mut p = self.pins[r].clone();
                p.sort();
                p.dedup();
                (r, m, p)
            })
            .collect()
    }

    fn value(&self, t: &TensorIr) -> Value {
        self.values.get(&t.id).cloned().unwrap_or(Value::Const)
    }

    fn map(&self, t: &TensorIr) -> Option<Map> {
        match self.value(t) {
            Value::Act(m) => m,
            _ => None,
        }
    }

    fn set(&mut self, t: &TensorIr, v: Value) {
        self.values.insert(t.id, v);
    }

    fn param(&self, t: &TensorIr) -> Option<String> {
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

    fn unsupported(&self, index: usize, op: &OperationIr) -> GraphError {
        GraphError::UnsupportedOp {
            op: op_name(op),
            index,
            location: self.location(),
        }
    }

    /// Whether any input of the op carries channels or parameters (an op on constants only
    /// needs no rule).
    fn touches_channels(&self, op: &OperationIr) -> bool {
        op.inputs().any(|t| !matches!(self.value(t), Value::Const))
    }

    fn pass(&mut self, input: &TensorIr, out: &TensorIr) {
        let v = match self.value(input) {
            Value::Act(m) => Value::Act(m),
            _ => Value::Const,
        };
        self.set(out, v);
    }

    fn op(&mut self, i: usize, op: &OperationIr, graph: &Graph) -> Result<()> {
        use OperationIr as O;
        match op {
            O::Init(init) => {
                let v = match graph.params.get(&init.out.id) {
                    Some(path) => Value::Param {
                        path: path.clone(),
                        axes: (0..init.out.shape.num_dims()).map(Some).collect(),
                    },
                    None => Value::Const,
                };
                self.set(&init.out, v);
            }
            O::Drop(_) => {}
            O::Module(m) => self.module(i, op, m)?,
            O::Activation(a) => self.activation(a),
            O::NumericFloat(_, n) => self.numeric(i, op, n)?,
            O::Float(_, f) => self.float(i, op, f)?,
            O::BaseFloat(b) => self.base(i, op, b)?,
            O::Custom(c) => {
                let rule = inventory::iter::<CustomOpRule>
                    .into_iter()
                    .find(|r| r.id == c.id);
                match (rule.map(|r| r.kind), c.inputs.first()) {
                    (Some(RuleKind::PassThrough), Some(first)) => {
                        let first = first.clone();
                        for out in &c.outputs {
                            self.pass(&first, out);
                        }
                    }
                    (Some(_), _) => {
                        for t in &c.inputs {
                            let m = self.map(t);
                            self.pin_map(&m, format!("custom op '{}' mixes channels", c.id));
                        }
                        for out in &c.outputs {
                            self.set(out, Value::Const);
                        }
                    }
                    (None, _) if self.touches_channels(op) => return Err(self.unsupported(i, op)),
                    (None, _) => c.outputs.iter().for_each(|o| self.set(o, Value::Const)),
                }
            }
            _ if !self.touches_channels(op) => {
                for out in op.outputs() {
                    self.values.insert(out.id, Value::Const);
                }
            }
            _ => return Err(self.unsupported(i, op)),
        }
        Ok(())
    }

    /// A conv-like op: `weight` has output channels on `w_out` and input channels on `w_in`.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        x: &TensorIr,
        weight: &TensorIr,
        bias: Option<&TensorIr>,
        groups: usize,
        w_out: usize,
        w_in: usize,
        out: &TensorIr,
    ) -> Result<()> {
        let Some(w) = self.param(weight) else {
            // A functional conv with a computed weight: its channels cannot be pruned.
            let m = self.map(x);
            self.pin_map(&m, "conv with a computed (non-parameter) weight".into());
            self.set(out, Value::Act(None));
            return Ok(());
        };
        let b = bias.and_then(|b| self.param(b));
        self.last_layer = Some(layer_of(&w).to_string());
        let out_c = out.shape[1];
        let in_c = x.shape[1];
        let input = self.map(x).filter(|m| m.axis == 1);
        let depthwise = groups > 1 && groups == in_c && out_c == in_c;
        let slots: Vec<usize> = match (&input, depthwise) {
            // Depthwise: output channel c is computed from input channel c alone.
            (Some(m), true) => m.slots.clone(),
            _ => (0..out_c).map(|_| self.new_slot()).collect(),
        };
        for (o, &s) in slots.iter().enumerate() {
            self.attach(s, &w, w_out, o);
            if let Some(b) = &b {
                self.attach(s, b, 0, o);
            }
        }
        if let Some(m) = &input {
            if groups == 1 {
                for (c, &s) in m.slots.iter().enumerate() {
                    self.attach(s, &w, w_in, c);
                }
            } else if !depthwise {
                self.pin_map(
                    &input,
                    format!("input channels of grouped conv '{}'", layer_of(&w)),
                );
            }
        }
        if groups > 1 && !depthwise {
            self.grouped_convs.push(GroupedConv {
                layer: layer_of(&w).to_string(),
                groups,
                out_slots: slots.clone(),
            });
        }
        self.set(out, Value::Act(Some(Map { axis: 1, slots })));
        Ok(())
    }

    /// Per-channel parameters (norms) on the channel axis of `x`.
    fn per_channel(&mut self, x: &TensorIr, axis: usize, params: &[&TensorIr], out: &TensorIr) {
        let map = self.map(x).filter(|m| m.axis == axis);
        let paths: Vec<String> = params.iter().filter_map(|p| self.param(p)).collect();
        if let Some(p) = paths.first() {
            self.last_layer = Some(layer_of(p).to_string());
        }
        if let Some(m) = &map {
            for (c, &s) in m.slots.iter().enumerate() {
                for p in &paths {
                    self.attach(s, p, 0, c);
                }
            }
        }
        self.pass(x, out);
    }

    fn module(&mut self, i: usize, op: &OperationIr, m: &ModuleOperationIr) -> Result<()> {
        use ModuleOperationIr as M;
        match m {
            M::Conv1d(c) => self.conv(
                &c.x,
                &c.weight,
                c.bias.as_ref(),
                c.options.groups,
                0,
                1,
                &c.out,
            )?,
            M::Conv2d(c) => self.conv(
                &c.x,
                &c.weight,
                c.bias.as_ref(),
                c.options.groups,
                0,
                1,
                &c.out,
            )?,
            M::Conv3d(c) => self.conv(
                &c.x,
                &c.weight,
                c.bias.as_ref(),
                c.options.groups,
                0,
                1,
                &c.out,
            )?,
            M::ConvTranspose1d(c) if c.options.groups == 1 => {
                self.conv(&c.x, &c.weight, c.bias.as_ref(), 1, 1, 0, &c.out)?
            }
            M::ConvTranspose2d(c) if c.options.groups == 1 => {
                self.conv(&c.x, &c.weight, c.bias.as_ref(), 1, 1, 0, &c.out)?
            }
            M::ConvTranspose3d(c) if c.options.groups == 1 => {
                self.conv(&c.x, &c.weight, c.bias.as_ref(), 1, 1, 0, &c.out)?
            }
            M::BatchNorm(b) => {
                let params = [&b.gamma, &b.beta, &b.mean, &b.variance];
                self.per_channel(&b.x, 1, &params, &b.out);
            }
            M::LayerNorm(l) => {
                let last = l.input.shape.num_dims() - 1;
                let mut params = vec![&l.gamma];
                params.extend(l.beta.as_ref());
                match self.map(&l.input) {
                    // The norm's statistics mix the channels it normalizes.
                    Some(m) if m.axis == last => {
                        self.pin_map(&Some(m), "normalized by a LayerNorm".into());
                        self.pass(&l.input, &l.out);
                    }
                    _ => self.per_channel(&l.input, usize::MAX, &params, &l.out),
                }
            }
            M::Embedding(e) => {
                let Some(w) = self.param(&e.weights) else {
                    return Err(self.unsupported(i, op));
                };
                self.last_layer = Some(layer_of(&w).to_string());
                let d = e.weights.shape[1];
                let slots: Vec<usize> = (0..d).map(|_| self.new_slot()).collect();
                for (j, &s) in slots.iter().enumerate() {
                    self.attach(s, &w, 1, j);
                }
                let axis = e.out.shape.num_dims() - 1;
                self.set(&e.out, Value::Act(Some(Map { axis, slots })));
            }
            M::MaxPool1d(p) => self.pass(&p.x, &p.out),
            M::MaxPool2d(p) => self.pass(&p.x, &p.out),
            M::AvgPool1d(p) => self.pass(&p.x, &p.out),
            M::AvgPool2d(p) => self.pass(&p.x, &p.out),
            M::AdaptiveAvgPool1d(p) => self.pass(&p.x, &p.out),
            M::AdaptiveAvgPool2d(p) => self.pass(&p.x, &p.out),
            M::AdaptiveAvgPool3d(p) => self.pass(&p.x, &p.out),
            M::Interpolate(p) => self.pass(&p.x, &p.out),
            _ if !self.touches_channels(op) => op.outputs().for_each(|o| {
                self.values.insert(o.id, Value::Const);
            }),
            _ => return Err(self.unsupported(i, op)),
        }
        Ok(())
    }

    fn activation(&mut self, a: &ActivationOperationIr) {
        use ActivationOperationIr as A;
        match a {
            A::Relu(u) | A::Gelu(u) | A::Sigmoid(u) | A::LogSigmoid(u) => {
                self.pass(&u.input, &u.out)
            }
            A::LeakyRelu(s) => self.pass(&s.lhs, &s.out),
            A::HardSigmoid(h) => self.pass(&h.tensor, &h.out),
            A::PRelu(b) => self.binary(b),
            A::Softmax(d) | A::LogSoftmax(d) | A::Softmin(d) => {
                let m = self.map(&d.input);
                if m.as_ref().is_some_and(|m| m.axis == d.axis) {
                    self.pin_map(&m, "normalized by a softmax over channels".into());
                }
                self.pass(&d.input, &d.out);
            }
            // Backward ops never appear in an inference capture.
            _ => {}
        }
    }

    /// Elementwise binary op with broadcasting.
    fn binary(&mut self, b: &BinaryOpIr) {
        let (l, r) = (self.value(&b.lhs), self.value(&b.rhs));
        let channel_len =
            |t: &TensorIr, m: &Map| t.shape.get(m.axis).copied().unwrap_or(1) == m.slots.len();
        let out = match (l, r) {
            (Value::Act(Some(lm)), Value::Act(Some(rm)))
                if lm.axis == rm.axis && lm.slots.len() == rm.slots.len() =>
            {
                for (&a, &c) in lm.slots.iter().zip(&rm.slots) {
                    self.union(a, c);
                }
                Some(lm)
            }
            (Value::Act(Some(m)), Value::Act(Some(other))) => {
                self.pin_map(
                    &Some(other.clone()),
                    "combined with a tensor whose channels sit elsewhere".into(),
                );
                self.pin_map(
                    &Some(m.clone()),
                    "combined with a tensor whose channels sit elsewhere".into(),
                );
                None
            }
            (Value::Act(Some(m)), Value::Param { path, axes })
            | (Value::Param { path, axes }, Value::Act(Some(m))) => {
                let param_tensor = if matches!(self.value(&b.lhs), Value::Param { .. }) {
                    &b.lhs
                } else {
                    &b.rhs
                };
                match axes.get(m.axis).copied().flatten() {
                    Some(pa) if channel_len(param_tensor, &m) => {
                        for (c, &s) in m.slots.iter().enumerate() {
                            self.attach(s, &path, pa, c);
                        }
                    }
                    _ if param_tensor.shape.get(m.axis).copied().unwrap_or(1) == 1 => {}
                    _ => self.pin_map(
                        &Some(m.clone()),
                        format!("combined with parameter '{path}' on another axis"),
                    ),
                }
                Some(m)
            }
            (Value::Act(Some(m)), _) | (_, Value::Act(Some(m))) => {
                let other = if self.map(&b.lhs).is_some() {
                    &b.rhs
                } else {
                    &b.lhs
                };
                if other.shape.get(m.axis).copied().unwrap_or(1) != 1 {
                    self.pin_map(
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
            || matches!(self.value(&b.lhs), Value::Act(_))
            || matches!(self.value(&b.rhs), Value::Act(_))
        {
            Value::Act(out)
        } else {
            Value::Const
        };
        self.set(&b.out, v);
    }

    fn reduce_dim(
        &mut self,
        input: &TensorIr,
        out: &TensorIr,
        axis: usize,
        sum_like: bool,
        what: &str,
    ) {
        let m = self.map(input);
        match m {
            Some(map) if map.axis == axis => {
                // Summing over channels is unaffected by removing channels that are zero.
                if !sum_like {
                    self.pin_map(&Some(map), format!("reduced by {what} over channels"));
                }
                self.set(out, Value::Act(None));
            }
            _ => self.pass(input, out),
        }
    }

    fn numeric(&mut self, i: usize, op: &OperationIr, n: &NumericOperationIr) -> Result<()> {
        use NumericOperationIr as N;
        match n {
            N::Add(b) | N::Sub(b) | N::Mul(b) | N::Div(b) => self.binary(b),
            N::AddScalar(s)
            | N::SubScalar(s)
            | N::MulScalar(s)
            | N::DivScalar(s)
            | N::ClampMin(s)
            | N::ClampMax(s)
            | N::PowiScalar(s) => self.pass(&s.lhs, &s.out),
            N::Abs(u) | N::Neg(u) | N::Sign(u) => self.pass(&u.input, &u.out),
            N::Clamp(c) => self.pass(&c.tensor, &c.out),
            N::SumDim(r) => self.reduce_dim(&r.input, &r.out, r.axis, true, "a sum"),
            N::MeanDim(r) => self.reduce_dim(&r.input, &r.out, r.axis, false, "a mean"),
            N::MaxDim(r) | N::MinDim(r) => {
                self.reduce_dim(&r.input, &r.out, r.axis, false, "a max/min")
            }
            N::Sum(r) => {
                self.set(&r.out, Value::Act(None));
            }
            N::Mean(r) | N::Max(r) | N::Min(r) => {
                let m = self.map(&r.input);
                self.pin_map(&m, "reduced over the whole tensor".into());
                self.set(&r.out, Value::Act(None));
            }
            N::Full(f) => self.set(&f.out, Value::Const),
            _ if !self.touches_channels(op) => op.outputs().for_each(|o| {
                self.values.insert(o.id, Value::Const);
            }),
            _ => return Err(self.unsupported(i, op)),
        }
        Ok(())
    }

    fn float(&mut self, i: usize, op: &OperationIr, f: &FloatOperationIr) -> Result<()> {
        use FloatOperationIr as F;
        match f {
            F::Matmul(m) => self.matmul(i, op, &m.lhs, &m.rhs, &m.out)?,
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
            | F::Ceil(u) => self.pass(&u.input, &u.out),
            F::PowfScalar(s) => self.pass(&s.lhs, &s.out),
            _ if !self.touches_channels(op) => op.outputs().for_each(|o| {
                self.values.insert(o.id, Value::Const);
            }),
            _ => return Err(self.unsupported(i, op)),
        }
        Ok(())
    }

    fn matmul(
        &mut self,
        i: usize,
        op: &OperationIr,
        lhs: &TensorIr,
        rhs: &TensorIr,
        out: &TensorIr,
    ) -> Result<()> {
        let rank = out.shape.num_dims();
        match (self.value(lhs), self.value(rhs)) {
            // `x @ W` with W a Linear weight `[in, out]` (unsqueezed to the input's rank for
            // 3-D inputs).
            (lv, Value::Param { path, axes })
                if rhs.shape.as_slice()[..rhs.shape.num_dims() - 2]
                    .iter()
                    .all(|&d| d == 1) =>
            {
                self.last_layer = Some(layer_of(&path).to_string());
                let r = axes.len();
                let (Some(w_in), Some(w_out)) = (axes[r - 2], axes[r - 1]) else {
                    return Err(self.unsupported(i, op));
                };
                if let Value::Act(Some(m)) = lv {
                    if m.axis == lhs.shape.num_dims() - 1 {
                        for (c, &s) in m.slots.iter().enumerate() {
                            self.attach(s, &path, w_in, c);
                        }
                    } else {
                        self.pin_map(
                            &Some(m),
                            format!("fed to '{path}' on an axis it does not contract"),
                        );
                    }
                }
                let slots: Vec<usize> = (0..rhs.shape[r - 1]).map(|_| self.new_slot()).collect();
                for (j, &s) in slots.iter().enumerate() {
                    self.attach(s, &path, w_out, j);
                }
                self.set(
                    out,
                    Value::Act(Some(Map {
                        axis: rank - 1,
                        slots,
                    })),
                );
            }
            (Value::Act(lm), Value::Act(rm)) => {
                // Two activations (attention scores): contracted channels cannot be removed
                // safely from one side only; batch/row/column channels carry over.
                let mut out_map = None;
                if let Some(m) = lm {
                    if m.axis == rank - 1 {
                        self.pin_map(&Some(m), "contracted by a matmul of two activations".into());
                    } else {
                        out_map = Some(m);
                    }
                }
                if let Some(m) = rm {
                    if m.axis == rank - 2 {
                        self.pin_map(&Some(m), "contracted by a matmul of two activations".into());
                    } else if out_map.is_none() {
                        out_map = Some(m);
                    } else {
                        self.pin_map(&Some(m), "second channel axis of a matmul output".into());
                    }
                }
                self.set(out, Value::Act(out_map));
            }
            (Value::Const, Value::Const) => self.set(out, Value::Const),
            _ => return Err(self.unsupported(i, op)),
        }
        Ok(())
    }

    fn base(&mut self, i: usize, op: &OperationIr, b: &BaseOperationIr) -> Result<()> {
        use BaseOperationIr as B;
        match b {
            B::Reshape(s) => self.reshape(&s.input, &s.out),
            B::SwapDims(s) => {
                let mut axes: Vec<usize> = (0..s.input.shape.num_dims()).collect();
                axes.swap(s.dim1, s.dim2);
                self.permute(&s.input, &s.out, &axes);
            }
            B::Permute(p) => self.permute(&p.input, &p.out, &p.axes),
            B::Expand(s) => {
                let m = self.map(&s.input);
                let shift = s.out.shape.num_dims() - s.input.shape.num_dims();
                let v = m.map(|m| Map {
                    axis: m.axis + shift,
                    slots: m.slots,
                });
                self.set(&s.out, Value::Act(v));
            }
            B::Slice(s) => self.slice(s),
            B::Cat(c) => self.cat(c),
            B::Zeros(c) | B::Ones(c) | B::Empty(c) => self.set(&c.out, Value::Const),
            B::Cast(c) => self.pass(&c.input, &c.out),
            _ if !self.touches_channels(op) => op.outputs().for_each(|o| {
                self.values.insert(o.id, Value::Const);
            }),
            _ => return Err(self.unsupported(i, op)),
        }
        Ok(())
    }

    fn permute(&mut self, input: &TensorIr, out: &TensorIr, axes: &[usize]) {
        let v = match self.value(input) {
            Value::Act(Some(m)) => {
                let axis = axes.iter().position(|&a| a == m.axis).unwrap_or(m.axis);
                Value::Act(Some(Map {
                    axis,
                    slots: m.slots,
                }))
            }
            Value::Param { path, axes: pa } => Value::Param {
                path,
                axes: axes.iter().map(|&a| pa.get(a).copied().flatten()).collect(),
            },
            other => other,
        };
        self.set(out, v);
    }

    fn reshape(&mut self, input: &TensorIr, out: &TensorIr) {
        let (ins, outs) = (input.shape.to_vec(), out.shape.to_vec());
        match self.value(input) {
            Value::Param { path, axes } => {
                // Reshapes of parameters only add or drop unit dims (Linear's bias to `[1, out]`).
                let real_in: Vec<(usize, Option<usize>)> = ins
                    .iter()
                    .zip(&axes)
                    .filter(|(d, _)| **d != 1)
                    .map(|(d, a)| (*d, *a))
                    .collect();
                let real_out: Vec<usize> = outs.iter().copied().filter(|&d| d != 1).collect();
                let v = if real_in.iter().map(|(d, _)| *d).eq(real_out.iter().copied()) {
                    let mut it = real_in.into_iter();
                    Value::Param {
                        path,
                        axes: outs
                            .iter()
                            .map(|&d| {
                                if d == 1 {
                                    None
                                } else {
                                    it.next().and_then(|(_, a)| a)
                                }
                            })
                            .collect(),
                    }
                } else {
                    Value::Param {
                        path,
                        axes: vec![None; outs.len()],
                    }
                };
                self.set(out, v);
            }
            Value::Act(Some(m)) => {
                let prefix: usize = ins[..m.axis].iter().product();
                let len = ins[m.axis];
                // Output axes whose leading product equals the channel axis' prefix are the
                // candidates; unit dims (a batch of 1) are skipped unless the axis has one channel.
                let mut acc = 1usize;
                let mut mapped = None;
                for (b, &ob) in outs.iter().enumerate() {
                    if acc == prefix && (ob != 1 || len == 1) {
                        let merged = (m.axis + 1..=ins.len())
                            .any(|k| ins[m.axis..k].iter().product::<usize>() == ob);
                        if merged {
                            // Merged with trailing dims (flatten): `ob / len` consecutive entries per channel.
                            let per = ob / len;
                            mapped = Some(Map {
                                axis: b,
                                slots: (0..ob).map(|j| m.slots[j / per]).collect(),
                            });
                        } else if len % ob == 0 {
                            // Split: the leading factor must hold whole channels.
                            let per = len / ob;
                            let uniform = m.slots.chunks(per).all(|c| c.iter().all(|&s| s == c[0]));
                            if uniform {
                                mapped = Some(Map {
                                    axis: b,
                                    slots: m.slots.iter().step_by(per).copied().collect(),
                                });
                            }
                        }
                        break;
                    }
                    acc *= ob;
                    if acc > prefix {
                        break;
                    }
                }
                if mapped.is_none() {
                    self.pin_map(&Some(m), "a reshape splits the channel axis".into());
                }
                self.set(out, Value::Act(mapped));
            }
            other => self.set(out, other),
        }
    }

    fn slice(&mut self, s: &burn_ir::SliceOpIr) {
        let v = match self.map(&s.tensor) {
            Some(m) => match s.ranges.get(m.axis) {
                Some(r) if r.step == 1 => {
                    let len = m.slots.len() as isize;
                    let start =
                        if r.start < 0 { len + r.start } else { r.start }.clamp(0, len) as usize;
                    let end = match r.end {
                        Some(e) if e < 0 => (len + e).max(0) as usize,
                        Some(e) => e.min(len) as usize,
                        None => len as usize,
                    };
                    Some(Map {
                        axis: m.axis,
                        slots: m.slots[start..end.max(start)].to_vec(),
                    })
                }
                Some(_) => {
                    self.pin_map(&Some(m), "a strided slice of the channel axis".into());
                    None
                }
                None => Some(m),
            },
            None => None,
        };
        let is_act = matches!(self.value(&s.tensor), Value::Act(_));
        self.set(&s.out, if is_act { Value::Act(v) } else { Value::Const });
    }

    fn cat(&mut self, c: &burn_ir::CatOpIr) {
        let maps: Vec<Option<Map>> = c.tensors.iter().map(|t| self.map(t)).collect();
        if maps.iter().all(Option::is_none) {
            let act = c
                .tensors
                .iter()
                .any(|t| matches!(self.value(t), Value::Act(_)));
            self.set(&c.out, if act { Value::Act(None) } else { Value::Const });
            return;
        }
        let on_dim = maps.iter().flatten().all(|m| m.axis == c.dim);
        let v = if on_dim {
            // Offsets: the output's channels are the inputs' channels in order; inputs without
            // prunable channels contribute pinned slots.
            let mut slots = Vec::new();
            for (t, m) in c.tensors.iter().zip(&maps) {
                match m {
                    Some(m) => slots.extend(&m.slots),
                    None => {
                        let fresh: Vec<usize> =
                            (0..t.shape[c.dim]).map(|_| self.new_slot()).collect();
                        let map = Some(Map {
                            axis: c.dim,
                            slots: fresh.clone(),
                        });
                        self.pin_map(&map, "concatenated constant channels".into());
                        slots.extend(fresh);
                    }
                }
            }
            Some(Map { axis: c.dim, slots })
        } else {
            // Concatenating along another axis couples the inputs' channels.
            let present: Vec<Map> = maps.into_iter().flatten().collect();
            let first = present[0].clone();
            for m in &present[1..] {
                if m.axis == first.axis && m.slots.len() == first.slots.len() {
                    for (&a, &b) in first.slots.iter().zip(&m.slots) {
                        self.union(a, b);
                    }
                } else {
                    self.pin_map(
                        &Some(m.clone()),
                        "concatenated with channels on another axis".into(),
                    );
                }
            }
            Some(first)
        };
        self.set(&c.out, Value::Act(v));
    }
}
