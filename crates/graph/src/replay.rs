//! Graph replay: run a captured forward pass op by op on a real device, with taps at the inputs
//! and outputs of layers.
//!
//! Burn has no forward hooks, and quantizing or observing activations must not require editing
//! the user's model. [`Replay`] captures the forward once (per input shape) on
//! `Device::capture()`, then executes the recorded ops through Burn's dispatch backend on any
//! device, autodiff included: parameters are read live from the model (`Param::val()`, so weight
//! reparameterizations such as fake quantization apply and gradients reach the model's
//! parameters), constants come from the capture, and a [`Tap`] sees (and may replace) the input
//! and output of every layer.
//!
//! The capture records the inference graph: BatchNorm runs on its running statistics.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn_backend::Shape as BShape;
use burn_backend::ops::{BoolTensorOps, FloatTensorOps, IntTensorOps};
use burn_dispatch::{Dispatch, DispatchTensor};
use burn_ir::{OperationIr as O, TensorId, TensorIr};

use crate::ops::{Exec, Op, OpRule, not_executable};
use crate::views::LayerKind;
use crate::{Graph, GraphError, Result};

type B = Dispatch;

/// Where a tap sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    /// The layer's input (NNI's `_input_`).
    Input,
    /// The layer's output (NNI's `_output_`).
    Output,
}

impl Site {
    /// NNI's target name.
    pub fn target_name(self) -> &'static str {
        match self {
            Site::Input => "_input_",
            Site::Output => "_output_",
        }
    }
}

/// Sees every layer input and output during [`Replay::run`].
pub trait Tap {
    /// Whether `(layer, site)` is tapped (untapped values are not converted).
    fn wants(&self, layer: &str, site: Site) -> bool;

    /// The value at `(layer, site)`, of rank `rank`, as `[dim0, dim1, rest]` (a rank-2
    /// `[batch, features]` value is `[batch, features, 1]`, so dim 1 is always the channel);
    /// return the value the graph continues with (the same shape).
    ///
    /// # Errors
    /// Whatever the tap reports; the run stops.
    fn tap(&mut self, layer: &str, site: Site, rank: usize, value: Tensor<3>) -> Result<Tensor<3>>;
}

/// A tap that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTap;

impl Tap for NoTap {
    fn wants(&self, _: &str, _: Site) -> bool {
        false
    }
    fn tap(&mut self, _: &str, _: Site, _: usize, value: Tensor<3>) -> Result<Tensor<3>> {
        Ok(value)
    }
}

/// The input and output tensors of one layer call in the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerIo {
    /// Layer path (`conv1`).
    pub layer: String,
    /// What the layer is.
    pub kind: LayerKind,
    /// The input activation.
    pub input: TensorId,
    /// The output activation (after the bias add of a Linear).
    pub output: TensorId,
    /// How a 2-D convolution slides over its input (`None` for other layers).
    pub window: Option<ConvWindow>,
}

/// How a 2-D convolution reads its input: what `im2col` ([`burn::tensor::module::unfold4d`])
/// needs to turn the input into the rows the flattened weight `[out, in / groups * kh * kw]`
/// multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvWindow {
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// `[(top, bottom), (left, right)]`.
    pub padding: [(usize, usize); 2],
    /// `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
    /// The input `[channels, height, width]`.
    pub input: [usize; 3],
}

impl ConvWindow {
    /// The window of a captured `conv2d` op.
    fn of(op: &O) -> Option<Self> {
        let O::Module(burn_ir::ModuleOperationIr::Conv2d(c)) = op else {
            return None;
        };
        let (w, x) = (c.weight.shape.as_slice(), c.x.shape.as_slice());
        Some(Self {
            kernel: [*w.get(2)?, *w.get(3)?],
            stride: c.options.stride,
            padding: c.options.padding,
            dilation: c.options.dilation,
            groups: c.options.groups,
            input: [*x.get(1)?, *x.get(2)?, *x.get(3)?],
        })
    }
}

/// A captured forward pass, ready to run on real devices.
#[derive(Debug, Clone)]
pub struct Replay {
    graph: Graph,
    input: TensorId,
    input_shape: Vec<usize>,
    output: TensorId,
    layers: Vec<LayerIo>,
    taps: HashMap<TensorId, Vec<(String, Site)>>,
}

impl Replay {
    /// Capture `forward` of `model` for inputs of `input_shape`.
    ///
    /// # Errors
    /// [`GraphError::Capture`] when Burn refuses the capture.
    pub fn capture<M: Module, const DI: usize, const DO: usize>(
        model: &M,
        input_shape: [usize; DI],
        forward: impl Fn(&M, Tensor<DI>) -> Tensor<DO>,
    ) -> Result<Self> {
        let input = std::cell::Cell::new(None);
        // Reparameterizations (fake quantization, soft masks) would record their own ops on
        // every `val()`: capture the folded values. The replay reads `val()` live.
        let plain = compress_core::mask::deep_copy(model).materialize();
        let mut graph = crate::capture::capture(&plain, |m, device| {
            let x = Tensor::<DI>::zeros(input_shape, device);
            input.set(
                x.clone()
                    .try_into_primitive::<burn::backend::Capture>()
                    .ok()
                    .map(|p| p.id()),
            );
            forward(m, x)
        })?;
        // The capture holds the value of every tensor it saw created, the whole model's
        // parameters included; the replay reads parameters from the model it runs, so keeping
        // them would cost a model copy per capture (per input shape, per block).
        let params = std::mem::take(&mut graph.params);
        graph.values.retain(|id, _| !params.contains_key(id));
        graph.params = params;
        let input = input
            .get()
            .ok_or_else(|| GraphError::Capture("the input is not a capture tensor".into()))?;
        let output = graph
            .outputs
            .first()
            .copied()
            .ok_or_else(|| GraphError::Capture("the forward has no output".into()))?;
        // Layer calls on float inputs (an embedding's ids are not an activation to tap).
        let layers: Vec<LayerIo> = crate::layer_calls(&graph)
            .into_iter()
            .filter(|c| c.input.dtype.is_float())
            .map(|c| LayerIo {
                window: graph.ops.get(c.op).and_then(ConvWindow::of),
                layer: c.layer,
                kind: c.kind,
                input: c.input.id,
                output: c.output.id,
            })
            .collect();
        let mut taps: HashMap<TensorId, Vec<(String, Site)>> = HashMap::new();
        for l in &layers {
            taps.entry(l.input)
                .or_default()
                .push((l.layer.clone(), Site::Input));
            taps.entry(l.output)
                .or_default()
                .push((l.layer.clone(), Site::Output));
        }
        Ok(Self {
            graph,
            input,
            input_shape: input_shape.to_vec(),
            output,
            layers,
            taps,
        })
    }

    /// The layer calls found in the graph, in execution order.
    pub fn layers(&self) -> &[LayerIo] {
        &self.layers
    }

    /// The input shape the graph was captured for.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Bytes of the captured constants the replay keeps (tensors the forward creates: masks,
    /// position tables). Parameters are not among them: the replay reads them from the model.
    pub fn constant_bytes(&self) -> usize {
        self.graph.values.values().map(|v| v.as_bytes().len()).sum()
    }

    /// Run the graph on `input`'s device with `model`'s current parameters.
    ///
    /// # Errors
    /// [`GraphError::Replay`] when the input shape differs from the captured one or a parameter
    /// is missing; [`GraphError::NotExecutable`] for an op the table cannot execute (named);
    /// the tap's errors.
    pub fn run<M: Module, const DI: usize, const DO: usize>(
        &self,
        model: &M,
        input: Tensor<DI>,
        tap: &mut dyn Tap,
    ) -> Result<Tensor<DO>> {
        if input.dims().as_slice() != self.input_shape.as_slice() {
            return Err(GraphError::Replay(format!(
                "input shape {:?} differs from the captured {:?}",
                input.dims(),
                self.input_shape
            )));
        }
        let device = input.device();
        let params = live_params(model)?;
        let mut env: HashMap<TensorId, DispatchTensor> = HashMap::new();
        let mut x = input.into_dispatch();
        for (layer, site) in self.taps.get(&self.input).into_iter().flatten() {
            if tap.wants(layer, *site) {
                x = apply_tap(tap, layer, *site, x)?;
            }
        }
        env.insert(self.input, x);
        for (i, op) in self.graph.ops.iter().enumerate() {
            // The op that created the capture's placeholder input.
            if op.outputs().any(|t| t.id == self.input) {
                continue;
            }
            if let O::Init(init) = op {
                let id = init.out.id;
                if id == self.input {
                    continue;
                }
                let value = match self.graph.params.get(&id) {
                    Some(path) => params.get(path).cloned().ok_or_else(|| {
                        GraphError::Replay(format!("the model has no parameter '{path}'"))
                    })?,
                    None => constant(&self.graph, &init.out, &device)?,
                };
                env.insert(id, value);
                continue;
            }
            if let O::Drop(t) = op {
                env.remove(&t.id);
                continue;
            }
            let (id, value) = self.exec(i, op, &mut env, &device)?;
            let value = match self.taps.get(&id) {
                Some(points) => {
                    let mut v = value;
                    for (layer, site) in points {
                        if tap.wants(layer, *site) {
                            v = apply_tap(tap, layer, *site, v)?;
                        }
                    }
                    v
                }
                None => value,
            };
            env.insert(id, value);
        }
        let out = env
            .remove(&self.output)
            .ok_or_else(|| GraphError::Replay("the graph did not produce its output".into()))?;
        Ok(Tensor::from_dispatch(out))
    }

    fn exec(
        &self,
        i: usize,
        op: &O,
        env: &mut HashMap<TensorId, DispatchTensor>,
        device: &Device,
    ) -> Result<(TensorId, DispatchTensor)> {
        // A tapped layer input is some earlier op's output (or the graph input), already tapped
        // when it was produced.
        let (Some(rule), Some(out)) = (Op::of(op), op.outputs().next()) else {
            return Err(not_executable(i, op));
        };
        let exec = Exec {
            env,
            device,
            index: i,
            op,
        };
        Ok((out.id, rule.execute(&exec)?))
    }
}

/// Reshape to `[d0, d1, rest]`, tap, reshape back.
fn apply_tap(
    tap: &mut dyn Tap,
    layer: &str,
    site: Site,
    value: DispatchTensor,
) -> Result<DispatchTensor> {
    use burn_backend::TensorMetadata;
    let shape = value.shape();
    let dims = shape.as_slice().to_vec();
    let three = match dims.len() {
        0 => [1, 1, 1],
        1 => [1, dims[0], 1],
        _ => [dims[0], dims[1], dims[2..].iter().product()],
    };
    let t: Tensor<3> = Tensor::from_dispatch(B::float_reshape(value, BShape::from(three.to_vec())));
    let out = tap.tap(layer, site, dims.len(), t)?;
    if out.dims() != three {
        return Err(GraphError::Replay(format!(
            "the tap at {layer} {} changed the shape {three:?} to {:?}",
            site.target_name(),
            out.dims()
        )));
    }
    Ok(B::float_reshape(out.into_dispatch(), shape))
}

/// A constant of the capture (a tensor created inside the forward) on `device`.
fn constant(graph: &Graph, t: &TensorIr, device: &Device) -> Result<DispatchTensor> {
    let data = graph.values.get(&t.id).cloned().ok_or_else(|| {
        GraphError::Replay(format!("no captured value for constant tensor {:?}", t.id))
    })?;
    let device = device.as_dispatch();
    Ok(if t.dtype.is_float() {
        B::float_from_data(data, device)
    } else if t.dtype.is_bool() {
        B::bool_from_data(data, device)
    } else {
        B::int_from_data(data, device)
    })
}

/// How the replay rebuilds a parameter that carries a Burn `Reparameterization`: a visitor sees
/// the base value and the reparameterization's own parameters separately, so the effective value
/// (`Param::val()`) is recomputed from them. Crates that define a reparameterization the replay
/// must apply (compress-quant's fake quantization) submit one with `inventory::submit!`.
///
/// A reparameterization without a registered rebuild is an error naming the parameter (the
/// replay never silently runs on the base value).
#[derive(Debug)]
pub struct ReparamRebuild {
    /// The reparameterization's `NAME`.
    pub name: &'static str,
    /// The effective value from the base (of rank `rank`) and the reparameterization's
    /// parameters by field name; an error message on failure.
    pub rebuild: fn(
        base: DispatchTensor,
        rank: usize,
        parts: &ReparamParts,
    ) -> std::result::Result<DispatchTensor, String>,
}

/// A reparameterization's own parameters by field name (`scale`, `zero_point`, ...).
pub type ReparamParts = BTreeMap<String, DispatchTensor>;

inventory::collect!(ReparamRebuild);

fn rebuild_for(name: &str) -> Option<&'static ReparamRebuild> {
    inventory::iter::<ReparamRebuild>
        .into_iter()
        .find(|r| r.name == name)
}

/// Every parameter's current value by path: `Param::val()`, reparameterizations applied
/// through their registered [`ReparamRebuild`]. Other reparameterizations are an error naming
/// the parameter.
fn live_params<M: Module>(model: &M) -> Result<BTreeMap<String, DispatchTensor>> {
    #[derive(Default)]
    struct Collect {
        stack: Vec<String>,
        found: BTreeMap<String, DispatchTensor>,
        /// The last base visited: path, value, rank.
        base: Option<(String, DispatchTensor, usize)>,
        /// Inside a registered reparameterization: its rebuild and parameters by field name.
        parts: Option<(&'static ReparamRebuild, BTreeMap<String, DispatchTensor>)>,
        unsupported: Option<String>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, container: &str) {
            if container == "Reparameterization" {
                if let Some(rebuild) = rebuild_for(name) {
                    self.parts = Some((rebuild, BTreeMap::new()));
                } else if self.unsupported.is_none() {
                    let path = self.base.as_ref().map_or("?", |b| b.0.as_str());
                    self.unsupported = Some(format!(
                        "parameter '{path}' carries a '{name}' reparameterization the replay cannot \
                         apply: materialize() the model first"
                    ));
                }
            }
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, name: &str, container: &str) {
            self.stack.pop();
            if container != "Reparameterization" || rebuild_for(name).is_none() {
                return;
            }
            let (Some((rebuild, parts)), Some((path, base, rank))) =
                (self.parts.take(), self.base.take())
            else {
                return;
            };
            match (rebuild.rebuild)(base, rank, &parts) {
                Ok(value) => {
                    self.found.insert(path, value);
                }
                Err(message) => {
                    self.unsupported
                        .get_or_insert(format!("'{path}' ({name}): {message}"));
                }
            }
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val().into_dispatch();
            match &mut self.parts {
                Some((_, parts)) => {
                    let field = self.stack.last().cloned().unwrap_or_default();
                    parts.insert(field, value);
                }
                None => {
                    let path = self.stack.join(".");
                    self.found.insert(path.clone(), value.clone());
                    self.base = Some((path, value, D));
                }
            }
        }
    }
    let mut c = Collect::default();
    model.visit(&mut c);
    match c.unsupported {
        Some(message) => Err(GraphError::Replay(message)),
        None => Ok(c.found),
    }
}
