//! BatchNorm folding (NNI's module fusion, `fuse_names`): a BatchNorm that directly follows a
//! conv or Linear is folded into that layer's weight and bias, for inference.
//!
//! With `s = γ / √(σ² + ε)` per output channel (running statistics, f32 arithmetic, `ε` as the
//! BatchNorm's f32 epsilon):
//!
//! - `w_f = w · s` along the output axis (axis 0 of a conv weight, axis 1 of Burn's `[in, out]`
//!   Linear weight);
//! - `b_f = (b − μ) · s + β` (`b = 0` for a layer without a bias).
//!
//! The BatchNorm then becomes an exact identity in Burn's inference formula
//! `(x − μ) / √(σ² + ε) · γ + β`: `γ = 1`, `β = 0`, `μ = 0`, and `σ²` the f32 value for which
//! `σ² + ε` rounds to exactly `1.0` (about `1 − ε`), so every step is `x · 1` or `x + 0`.
//!
//! [`fuse_bn`] works on any model by parameter path, so it cannot add a parameter a layer does
//! not have (a `Option<Param>` is fixed by the struct): for a layer **without a bias** the folded
//! bias stays in the BatchNorm's `β`, which then is a pure per-channel bias add (`γ = 1`,
//! `μ = 0`). The typed [`FoldBatchNorm`] creates the missing bias instead.
//!
//! Folding uses the running statistics, so the folded model matches the original in inference
//! mode only (a training-mode BatchNorm normalizes with batch statistics).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use burn::module::{Module, Param};
use burn::nn::conv::{Conv1d, Conv2d, Conv3d};
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
use burn_ir::{ActivationOperationIr, ModuleOperationIr, OperationIr, TensorId, TensorIr};
use compress_core::{Dense, ModuleIndex};

use crate::export::read_float_params;
use crate::{QuantError, Result};
use compress_graph::{Graph, LayerCall, LayerKind, capture, layer_calls};

/// Fold each group's BatchNorm into the layer before it, on a deep copy of `model` (the input
/// model, running statistics included, is never changed).
///
/// A group is `[layer, bn]` or `[layer, bn, relu]`: `layer` a `Conv1d`, `Conv2d`, `Conv3d` or
/// `Linear` path, `bn` a `BatchNorm` path. A third element asserts that the BatchNorm's output
/// goes straight into a ReLU and nothing else (ReLU is usually a function call in Burn, so the
/// name is only a label); the ReLU stays where it is. `forward` runs the model once on the
/// capture device (as in [`capture`]) so that adjacency is checked on the real graph: the
/// BatchNorm must read the layer's output, and nothing else may read it.
///
/// ```
/// use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
/// use burn::prelude::*;
/// use compress_quant::fuse_bn;
///
/// #[derive(Module, Debug)]
/// struct Net { fc: Linear, bn: BatchNorm }
/// let device = Device::flex();
/// let net = Net { fc: LinearConfig::new(4, 3).init(&device), bn: BatchNormConfig::new(3).init(&device) };
/// let forward = |m: &Net, x: Tensor<2>| m.bn.forward(m.fc.forward(x));
/// let fused = fuse_bn(&net, &[["fc", "bn"]], |m, d| forward(m, Tensor::zeros([2, 4], d)))?;
/// let x = Tensor::<2>::ones([2, 4], &device);
/// let diff = (forward(&net, x.clone()) - forward(&fused, x)).abs().max().into_scalar::<f32>();
/// assert!(diff < 1e-6);
/// # Ok::<(), compress_quant::QuantError>(())
/// ```
///
/// # Errors
/// - [`QuantError::UnknownModule`]: a path that is not a module of the model;
/// - [`QuantError::UnsupportedFusion`]: a group of the wrong length or layer types, a layer
///   named twice or called more than once in the forward, channel counts that differ, a Linear
///   whose output is not `[batch, features]`, a missing ReLU, or an epsilon of 1 or more;
/// - [`QuantError::NotAdjacent`]: the BatchNorm does not read the layer's output, or
///   something else reads it too;
/// - [`QuantError::Graph`]: the capture itself failed.
pub fn fuse_bn<M, G, S, const D: usize>(
    model: &M,
    groups: &[G],
    forward: impl FnOnce(&M, &Device) -> Tensor<D>,
) -> Result<M>
where
    M: Module,
    G: AsRef<[S]>,
    S: AsRef<str>,
{
    let index = ModuleIndex::from_module(model);
    let groups = check_groups(groups, &index)?;
    let graph = capture(model, forward)?;
    let ops = GraphView::new(&graph);
    let mut folds = Vec::with_capacity(groups.len());
    for g in &groups {
        folds.push(ops.check(g)?);
    }

    let wanted: BTreeSet<String> = groups.iter().flat_map(Group::params).collect();
    let values = read_float_params(model, wanted)?;
    let get = |path: String| {
        values
            .get(&path)
            .cloned()
            .ok_or(QuantError::UnknownParam { path })
    };

    let mut new = BTreeMap::new();
    for (g, eps) in groups.iter().zip(folds) {
        let bn = BnStats {
            gamma: get(format!("{}.gamma", g.bn))?.into_data(),
            beta: get(format!("{}.beta", g.bn))?.into_data(),
            mean: get(format!("{}.running_mean", g.bn))?.into_data(),
            var: get(format!("{}.running_var", g.bn))?.into_data(),
            eps,
        };
        let weight = get(format!("{}.weight", g.layer))?;
        let bias = if g.has_bias {
            Some(get(format!("{}.bias", g.layer))?)
        } else {
            None
        };
        let (w, b) = fold(&weight, bias.as_ref(), g.axis, &bn);
        let identity_var = identity_variance(eps).ok_or_else(|| QuantError::UnsupportedFusion {
            group: g.names.clone(),
            reason: format!(
                "epsilon {eps} of '{}' is 1 or more: no variance makes it an identity",
                g.bn
            ),
        })?;
        let n = bn.gamma.len();
        new.insert(format!("{}.weight", g.layer), w);
        let beta = if g.has_bias {
            new.insert(format!("{}.bias", g.layer), Dense::new(vec![b.len()], b));
            vec![0.0; n]
        } else {
            b
        };
        new.insert(format!("{}.gamma", g.bn), Dense::full(vec![n], 1.0));
        new.insert(format!("{}.beta", g.bn), Dense::new(vec![n], beta));
        new.insert(format!("{}.running_mean", g.bn), Dense::full(vec![n], 0.0));
        new.insert(
            format!("{}.running_var", g.bn),
            Dense::full(vec![n], identity_var),
        );
    }
    let mut writer = Writer { values: new };
    Ok(compress_core::paths::map_params(
        compress_core::mask::deep_copy(model),
        &mut writer,
    ))
}

/// A layer that can absorb a following BatchNorm, creating its bias when it has none.
///
/// The typed counterpart of [`fuse_bn`] for code that owns the layer fields: replace the layer
/// by the folded one and drop the BatchNorm from the forward (or replace it by an identity).
/// Adjacency is the caller's responsibility here.
pub trait FoldBatchNorm: Sized {
    /// This layer with `bn` (running statistics) folded into its weight and bias.
    ///
    /// # Errors
    /// [`QuantError::UnsupportedFusion`] when the channel counts differ, and
    /// [`QuantError::Core`] when a tensor cannot be read.
    fn fold_batch_norm(&self, bn: &BatchNorm) -> Result<Self>;
}

macro_rules! fold_layer {
    ($($ty:ident),* $(,)?) => {$(
        impl FoldBatchNorm for $ty {
            fn fold_batch_norm(&self, bn: &BatchNorm) -> Result<Self> {
                let axis = weight_out_axis(stringify!($ty))?;
                let weight = Dense::from_tensor(self.weight.val(), "weight")?;
                let bias = match &self.bias {
                    Some(b) => Some(Dense::from_tensor(b.val(), "bias")?),
                    None => None,
                };
                let stats = BnStats::of(bn)?;
                let channels = weight.shape()[axis];
                if stats.gamma.len() != channels {
                    return Err(QuantError::UnsupportedFusion {
                        group: vec![stringify!($ty).to_string(), "BatchNorm".to_string()],
                        reason: format!(
                            "{channels} output channels, the BatchNorm has {}",
                            stats.gamma.len()
                        ),
                    });
                }
                let (w, b) = fold(&weight, bias.as_ref(), axis, &stats);
                let device = self.weight.val().device();
                let mut out = self.clone();
                out.weight = out.weight.map(|_| w.to_tensor(&device));
                let b = Dense::new(vec![b.len()], b).to_tensor::<1>(&device);
                out.bias = Some(match out.bias {
                    Some(p) => p.map(|_| b),
                    None => Param::from_tensor(b),
                });
                Ok(out)
            }
        }
    )*};
}

fold_layer!(Conv1d, Conv2d, Conv3d, Linear);

/// The output axis of a layer type's `weight`, from its `LayerSpec` (so a user-registered spec
/// overriding a built-in one is honoured).
fn weight_out_axis(type_name: &str) -> Result<usize> {
    compress_core::layers::LayerSpec::find(type_name)
        .and_then(|s| s.param("weight"))
        .and_then(|p| p.out_axis)
        .ok_or_else(|| QuantError::UnsupportedFusion {
            group: vec![type_name.to_string(), "BatchNorm".to_string()],
            reason: format!("the LayerSpec of {type_name} gives its weight no output axis"),
        })
}

// ---------------------------------------------------------------------------------------------

/// A BatchNorm's inference parameters.
struct BnStats {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    eps: f32,
}

impl BnStats {
    fn of(bn: &BatchNorm) -> Result<Self> {
        let read = |t: Tensor<1>, name: &str| -> Result<Vec<f32>> {
            Ok(Dense::from_tensor(t, name)?.into_data())
        };
        Ok(Self {
            gamma: read(bn.gamma.val(), "gamma")?,
            beta: read(bn.beta.val(), "beta")?,
            mean: read(bn.running_mean.value(), "running_mean")?,
            var: read(bn.running_var.value(), "running_var")?,
            eps: bn.epsilon as f32,
        })
    }
}

/// `w · s` along `axis` and `(b − μ) · s + β`, with `s = γ / √(σ² + ε)`.
fn fold(
    weight: &Dense<f32>,
    bias: Option<&Dense<f32>>,
    axis: usize,
    bn: &BnStats,
) -> (Dense<f32>, Vec<f32>) {
    let s: Vec<f32> = bn
        .gamma
        .iter()
        .zip(&bn.var)
        .map(|(g, v)| g / (v + bn.eps).sqrt())
        .collect();
    let shape = weight.shape();
    let inner: usize = shape[axis + 1..].iter().product();
    let channels = shape[axis];
    let data = weight
        .data()
        .iter()
        .enumerate()
        .map(|(i, w)| w * s[(i / inner) % channels])
        .collect();
    let b = (0..channels)
        .map(|c| {
            let b = bias.map_or(0.0, |b| b.data()[c]);
            (b - bn.mean[c]) * s[c] + bn.beta[c]
        })
        .collect();
    (Dense::new(shape.to_vec(), data), b)
}

/// The f32 variance `v >= 0` for which `v + eps` rounds to exactly 1, if any.
fn identity_variance(eps: f32) -> Option<f32> {
    if !(eps.is_finite() && eps >= 0.0) {
        return None;
    }
    let mut v = (1.0 - eps).max(0.0);
    for _ in 0..64 {
        let sum = v + eps;
        if sum == 1.0 {
            return Some(v);
        }
        v = if sum > 1.0 {
            if v == 0.0 {
                return None;
            }
            f32::from_bits(v.to_bits() - 1)
        } else {
            f32::from_bits(v.to_bits() + 1)
        };
    }
    None
}

/// A checked group.
struct Group {
    names: Vec<String>,
    layer: String,
    bn: String,
    relu: bool,
    has_bias: bool,
    /// The weight's output axis.
    axis: usize,
    /// `true` for a Linear.
    linear: bool,
    /// The layer's output channels.
    channels: usize,
    /// The BatchNorm's channels.
    features: usize,
}

impl Group {
    fn params(&self) -> Vec<String> {
        let mut p = vec![format!("{}.weight", self.layer)];
        if self.has_bias {
            p.push(format!("{}.bias", self.layer));
        }
        for n in ["gamma", "beta", "running_mean", "running_var"] {
            p.push(format!("{}.{n}", self.bn));
        }
        p
    }
}

fn check_groups<G: AsRef<[S]>, S: AsRef<str>>(
    groups: &[G],
    index: &ModuleIndex,
) -> Result<Vec<Group>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for g in groups {
        let names: Vec<String> = g.as_ref().iter().map(|s| s.as_ref().to_string()).collect();
        let bad = |reason: String| QuantError::UnsupportedFusion {
            group: names.clone(),
            reason,
        };
        if !(2..=3).contains(&names.len()) {
            return Err(bad(
                "a group is [layer, batchnorm] or [layer, batchnorm, relu]".into(),
            ));
        }
        let (layer, bn) = (&names[0], &names[1]);
        for p in [layer, bn] {
            if !seen.insert(p.clone()) {
                return Err(bad(format!("'{p}' is named in more than one group")));
            }
        }
        let l = crate::error::find_module(index, layer)?;
        let b = crate::error::find_module(index, bn)?;
        // The graph check recognises these layer calls; the axis comes from the LayerSpec.
        let linear = match l.type_name.as_str() {
            "Conv1d" | "Conv2d" | "Conv3d" => false,
            "Linear" => true,
            other => {
                return Err(bad(format!(
                    "'{layer}' is a {other}; only Conv1d/2d/3d and Linear take a BatchNorm"
                )));
            }
        };
        let axis = l.out_axis("weight").ok_or_else(|| {
            bad(format!(
                "the LayerSpec of {} gives '{layer}.weight' no output axis",
                l.type_name
            ))
        })?;
        if b.type_name != "BatchNorm" {
            return Err(bad(format!("'{bn}' is a {}, not a BatchNorm", b.type_name)));
        }
        let weight = l
            .param("weight")
            .ok_or_else(|| bad(format!("'{layer}' has no weight")))?;
        let channels = weight.shape[axis];
        let features = b.param("gamma").map_or(0, |p| p.shape[0]);
        for name in ["gamma", "beta", "running_mean", "running_var"] {
            if b.param(name).is_none() {
                return Err(bad(format!("'{bn}' has no {name}")));
            }
        }
        out.push(Group {
            layer: layer.clone(),
            bn: bn.clone(),
            relu: names.len() == 3,
            has_bias: l.param("bias").is_some(),
            axis,
            linear,
            channels,
            features,
            names,
        });
    }
    Ok(out)
}

/// The captured graph's layer calls (compress-graph's op table decides what a call is) and
/// tensor consumers.
struct GraphView<'a> {
    ops: &'a [OperationIr],
    calls: Vec<LayerCall>,
    /// Parameter tensors read by a layer call: the layer.
    param_layer: HashMap<TensorId, String>,
    consumers: HashMap<TensorId, Vec<usize>>,
}

impl<'a> GraphView<'a> {
    fn new(graph: &'a Graph) -> Self {
        let calls = layer_calls(graph);
        let param_layer = calls
            .iter()
            .flat_map(|c| {
                std::iter::once(&c.weight)
                    .chain(&c.bias)
                    .map(|t| (t.id, c.layer.clone()))
            })
            .collect();
        let mut consumers: HashMap<TensorId, Vec<usize>> = HashMap::new();
        for (i, op) in graph.ops.iter().enumerate() {
            if matches!(op, OperationIr::Drop(_)) {
                continue;
            }
            for input in op.inputs() {
                let c = consumers.entry(input.id).or_default();
                if c.last() != Some(&i) {
                    c.push(i);
                }
            }
        }
        Self {
            ops: &graph.ops,
            calls,
            param_layer,
            consumers,
        }
    }

    fn consumers(&self, id: TensorId) -> &[usize] {
        self.consumers.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Where the layer's output comes out (after a Linear's bias add), once per call.
    fn layer_outputs(&self, g: &Group) -> Vec<&TensorIr> {
        use LayerKind as K;
        self.calls
            .iter()
            .filter(|c| c.layer == g.layer)
            .filter(|c| matches!(c.kind, K::Conv1d | K::Conv2d | K::Conv3d | K::Linear))
            .map(|c| &c.output)
            .collect()
    }

    /// The BatchNorm's calls: (op index, input, output, epsilon).
    fn bn_calls(&self, g: &Group) -> Vec<(usize, &TensorIr, &TensorIr, f32)> {
        self.calls
            .iter()
            .filter(|c| c.layer == g.bn && c.kind == LayerKind::BatchNorm)
            .filter_map(|c| match &self.ops[c.op] {
                OperationIr::Module(ModuleOperationIr::BatchNorm(b)) => {
                    Some((c.op, &c.input, &c.output, b.epsilon.elem::<f64>() as f32))
                }
                _ => None,
            })
            .collect()
    }

    /// What produces `id`, in words.
    fn producer(&self, id: TensorId) -> String {
        let Some(op) = self.ops.iter().find(|op| op.outputs().any(|o| o.id == id)) else {
            return "a model input".into();
        };
        self.describe(op)
    }

    fn describe(&self, op: &OperationIr) -> String {
        let kind = format!("{op:?}");
        let kind: String = kind
            .split(|c: char| !c.is_alphanumeric())
            .filter(|s| !s.is_empty() && *s != "F32" && *s != "Float")
            .take(2)
            .collect::<Vec<_>>()
            .join("::");
        let layer = op.inputs().find_map(|t| self.param_layer.get(&t.id));
        match layer {
            Some(l) => format!("'{l}' ({kind})"),
            None => format!("an op {kind}"),
        }
    }

    /// Check one group on the graph; its BatchNorm's epsilon.
    fn check(&self, g: &Group) -> Result<f32> {
        let not_adjacent = |reason: String| QuantError::NotAdjacent {
            layer: g.layer.clone(),
            bn: g.bn.clone(),
            reason,
        };
        let unsupported = |reason: String| QuantError::UnsupportedFusion {
            group: g.names.clone(),
            reason,
        };
        let outs = self.layer_outputs(g);
        let bns = self.bn_calls(g);
        let out = one_call(&outs, &g.layer, &not_adjacent, &unsupported)?;
        let (bn_op, x, bn_out, eps) = one_call(&bns, &g.bn, &not_adjacent, &unsupported)?;
        if x.id != out.id {
            return Err(not_adjacent(format!(
                "'{}' reads the output of {}",
                g.bn,
                self.producer(x.id)
            )));
        }
        if let Some(&other) = self.consumers(out.id).iter().find(|&&j| j != bn_op) {
            return Err(not_adjacent(format!(
                "the output of '{}' is also read by {}",
                g.layer,
                self.describe(&self.ops[other])
            )));
        }
        if g.features != g.channels {
            return Err(unsupported(format!(
                "'{}' has {} output channels, '{}' normalizes {}",
                g.layer, g.channels, g.bn, g.features
            )));
        }
        let dims = out.shape.as_slice();
        if g.linear && dims.len() != 2 {
            return Err(unsupported(format!(
                "'{}' outputs {dims:?}: a BatchNorm normalizes axis 1, not the Linear's features \
                 (only [batch, features] folds)",
                g.layer
            )));
        }
        if dims.get(1) != Some(&g.channels) {
            return Err(unsupported(format!(
                "'{}' outputs {dims:?}, the BatchNorm expects {} channels on axis 1",
                g.layer, g.channels
            )));
        }
        if g.relu {
            let c = self.consumers(bn_out.id);
            let relu = matches!(
                c,
                [j] if matches!(self.ops[*j], OperationIr::Activation(ActivationOperationIr::Relu(_)))
            );
            if !relu {
                return Err(unsupported(format!(
                    "'{}' is not followed by a ReLU alone (its output is read by {})",
                    g.bn,
                    c.iter()
                        .map(|&j| self.describe(&self.ops[j]))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(eps)
    }
}

/// Writes new values.
struct Writer {
    values: BTreeMap<String, Dense<f32>>,
}

impl compress_core::paths::PathMapper for Writer {
    fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.values.remove(path) {
            Some(v) => compress_core::mask::map_param_leaf(param, |t| v.to_tensor(&t.device())),
            None => param,
        }
    }
}

/// The one call of the layer `name` in the forward: none means the pair is not adjacent, several
/// cannot be fused.
fn one_call<T: Copy>(
    calls: &[T],
    name: &str,
    not_adjacent: &dyn Fn(String) -> QuantError,
    unsupported: &dyn Fn(String) -> QuantError,
) -> Result<T> {
    match calls {
        [] => Err(not_adjacent(format!(
            "'{name}' is not called in the forward"
        ))),
        [one] => Ok(*one),
        many => Err(unsupported(format!(
            "'{name}' is called {} times in the forward",
            many.len()
        ))),
    }
}
