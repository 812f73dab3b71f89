//! The export engine and the writer the op families emit nodes into.

use std::collections::{HashMap, HashSet};

use burn::tensor::{DType, TensorData};
use burn_ir::{BaseOperationIr, OperationIr, TensorId, TensorIr};

use super::proto::*;
use super::{OPSET, OnnxOptions, Qdq, QuantParam, export_error};
use crate::ops::{Op, OpRule};
use crate::views::{LayerCall, ParamViews};
use crate::{Graph, GraphError, Result, layer_calls, op_name};

/// An ONNX attribute value.
pub(crate) enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

impl Attr {
    /// `Ints` of sizes.
    pub(crate) fn ints(v: &[usize]) -> Self {
        Self::Ints(v.iter().map(|&x| x as i64).collect())
    }

    /// ONNX `pads` of a per-axis `(begin, end)` padding: every axis's begin, then every end.
    pub(crate) fn pads(per_axis: &[(usize, usize)]) -> Self {
        let begins = per_axis.iter().map(|p| p.0);
        Self::ints(
            &begins
                .chain(per_axis.iter().map(|p| p.1))
                .collect::<Vec<_>>(),
        )
    }
}

/// Where op families write their ONNX nodes: names of values, initializers, constants, and
/// what the engine knows about the batch dimension and layer calls.
pub struct OnnxWriter<'a> {
    graph: &'a Graph,
    params: &'a HashMap<String, TensorData>,
    qdq: Option<&'a Qdq>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    emitted: HashSet<String>,
    alias: HashMap<TensorId, String>,
    batched: HashSet<TensorId>,
    dynamic: bool,
    input: TensorId,
    input_name: String,
    capture_batch: usize,
    batch_name: Option<String>,
    counter: usize,
    pub(crate) views: ParamViews,
    calls: HashMap<usize, LayerCall>,
    skip: HashSet<usize>,
    pub(crate) index: usize,
}

impl OnnxWriter<'_> {
    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// The name of a value an op reads: the graph input, a parameter (its initializer, written
    /// on first use, quantized behind a DequantizeLinear when the QDQ options say so), a
    /// constant of the capture, or an earlier op's output.
    pub(crate) fn input(&mut self, t: &TensorIr) -> Result<String> {
        if let Some(a) = self.alias.get(&t.id) {
            return Ok(a.clone());
        }
        if t.id == self.input {
            return Ok(self.input_name.clone());
        }
        if let Some(path) = self.graph.params.get(&t.id).cloned() {
            return self.param(&path, t);
        }
        if let Some(data) = self.graph.values.get(&t.id) {
            let name = format!("const_{}", t.id.value());
            if self.emitted.insert(name.clone()) {
                let tensor = tensor_proto(&name, t.dtype, data, t.shape.as_slice())?;
                self.inits.push(tensor);
            }
            return Ok(name);
        }
        Ok(value_name(t))
    }

    fn param(&mut self, path: &str, t: &TensorIr) -> Result<String> {
        let data = self
            .params
            .get(path)
            .ok_or_else(|| export_error(format!("the model has no parameter '{path}'")))?;
        let q = self.qdq.and_then(|q| q.weights.get(path)).cloned();
        let Some(q) = q else {
            if self.emitted.insert(path.to_string()) {
                let tensor = tensor_proto(path, t.dtype, data, t.shape.as_slice())?;
                self.inits.push(tensor);
            }
            return Ok(path.to_string());
        };
        let name = format!("{path}_dequantized");
        if self.emitted.insert(name.clone()) {
            let values = f32s(data)?;
            let dims = t.shape.as_slice();
            let codes = quantize_weight(&values, dims, &q, path)?;
            let (scale, zp) = self.quant_consts(path, &q)?;
            let qname = format!("{path}_quantized");
            self.inits.push(TensorProto {
                dims: dims.iter().map(|&d| d as i64).collect(),
                data_type: if q.signed {
                    DataType::Int8
                } else {
                    DataType::Uint8
                } as i32,
                name: qname.clone(),
                raw_data: codes,
            });
            let mut attrs = Vec::new();
            if let Some(axis) = q.axis {
                attrs.push(("axis", Attr::Int(axis as i64)));
            }
            self.node(
                "DequantizeLinear",
                vec![qname, scale, zp],
                vec![name.clone()],
                attrs,
            );
        }
        Ok(name)
    }

    /// The name of a value an op writes.
    pub(crate) fn output(&mut self, t: &TensorIr) -> String {
        value_name(t)
    }

    /// Append a node.
    pub(crate) fn node(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<(&str, Attr)>,
    ) {
        let name = format!("{op_type}_{}", self.nodes.len());
        let attribute = attrs
            .into_iter()
            .map(|(n, a)| {
                let mut p = AttributeProto {
                    name: n.to_string(),
                    ..Default::default()
                };
                match a {
                    Attr::Int(i) => (p.r#type, p.i) = (2, i),
                    Attr::Ints(v) => (p.r#type, p.ints) = (7, v),
                    Attr::Float(f) => (p.r#type, p.f) = (1, f),
                }
                p
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs,
            output: outputs,
            name,
            op_type: op_type.to_string(),
            attribute,
            domain: String::new(),
        });
    }

    /// A one-node op: `op_type(inputs) -> out`.
    pub(crate) fn simple(
        &mut self,
        op_type: &str,
        inputs: &[&TensorIr],
        out: &TensorIr,
        attrs: Vec<(&str, Attr)>,
    ) -> Result<()> {
        let inputs = inputs
            .iter()
            .map(|t| self.input(t))
            .collect::<Result<Vec<_>>>()?;
        let out = self.output(out);
        self.node(op_type, inputs, vec![out], attrs);
        Ok(())
    }

    /// An int64 initializer (shapes, axes, repeats).
    pub(crate) fn const_i64(&mut self, values: &[i64]) -> String {
        let name = self.fresh("shape");
        self.inits.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: DataType::Int64 as i32,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// A scalar initializer of the element type of `like` (a scalar operand).
    pub(crate) fn scalar(&mut self, value: f64, like: DType) -> Result<String> {
        let name = self.fresh("scalar");
        let data = if like.is_float() {
            TensorData::new(vec![value as f32], [0usize; 0])
        } else {
            TensorData::new(vec![value as i64], [0usize; 0])
        };
        self.inits.push(tensor_proto(&name, like, &data, &[])?);
        Ok(name)
    }

    /// A constant of `shape` filled with `value` (zeros, ones, full).
    pub(crate) fn filled(&mut self, t: &TensorIr, value: f64) -> Result<()> {
        let n = t.shape.num_elements();
        let data = if t.dtype.is_float() {
            TensorData::new(vec![value as f32; n], t.shape.as_slice().to_vec())
        } else {
            TensorData::new(vec![value as i64; n], t.shape.as_slice().to_vec())
        };
        let name = value_name(t);
        self.inits
            .push(tensor_proto(&name, t.dtype, &data, t.shape.as_slice())?);
        Ok(())
    }

    /// The typed refusal of the current op: its family has no ONNX mapping for it.
    pub(crate) fn unmapped(&self) -> GraphError {
        unmapped(self.index, &self.graph.ops[self.index])
    }

    /// Whether the batch dimension is symbolic.
    pub(crate) fn dynamic_batch(&self) -> bool {
        self.dynamic
    }

    /// Whether `t` depends on the graph input (its first axis is then the batch).
    pub(crate) fn is_batched(&self, t: &TensorIr) -> bool {
        self.batched.contains(&t.id)
    }

    /// Mark `t` as carrying the batch on its first axis.
    pub(crate) fn set_batched(&mut self, t: &TensorIr) {
        self.batched.insert(t.id);
    }

    /// The batch size the graph was captured with.
    pub(crate) fn capture_batch(&self) -> usize {
        self.capture_batch
    }

    /// An int64 `[1]` value holding the run-time batch size (`Shape(input)[0:1]`).
    pub(crate) fn batch_dim(&mut self) -> String {
        if let Some(b) = &self.batch_name {
            return b.clone();
        }
        let shape = self.fresh("input_shape");
        let name = "batch_size".to_string();
        self.node(
            "Shape",
            vec![self.input_name.clone()],
            vec![shape.clone()],
            vec![],
        );
        let (s, e) = (self.const_i64(&[0]), self.const_i64(&[1]));
        self.node("Slice", vec![shape, s, e], vec![name.clone()], vec![]);
        self.batch_name = Some(name.clone());
        name
    }

    /// The layer call computed by the current op, if any (a Linear's matmul).
    pub(crate) fn call(&self) -> Option<&LayerCall> {
        self.calls.get(&self.index)
    }

    /// Write nothing for op `index` (absorbed into an earlier node, a Linear's bias add into
    /// its Gemm); its output is `name`.
    pub(crate) fn absorb(&mut self, index: usize, out: &TensorIr, name: String) {
        self.skip.insert(index);
        self.alias.insert(out.id, name);
    }

    /// Dynamic symmetric per-token quantization of value `name` over its last axis (see
    /// [`OnnxOptions::per_token`](super::OnnxOptions::per_token)); returns the quantized name.
    fn per_token(&mut self, name: &str, bits: u32) -> Result<String> {
        if !(2..=16).contains(&bits) {
            return Err(export_error(format!(
                "per-token quantization of '{name}' to {bits} bits: bits must be within 2..=16"
            )));
        }
        let qmax = ((1u32 << (bits - 1)) - 1) as f64;
        let f32_scalar = |w: &mut Self, v: f64| w.scalar(v, DType::F32);
        let (floor, levels) = (f32_scalar(self, 1e-5)?, f32_scalar(self, qmax)?);
        let [abs, max, clamped, scale, scaled, rounded, out] = [
            "abs",
            "absmax",
            "absmax_floor",
            "scale",
            "scaled",
            "rounded",
            "q",
        ]
        .map(|s| format!("{name}_pt_{s}"));
        self.node("Abs", vec![name.to_string()], vec![abs.clone()], vec![]);
        self.node(
            "ReduceMax",
            vec![abs],
            vec![max.clone()],
            vec![("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))],
        );
        self.node("Max", vec![max, floor], vec![clamped.clone()], vec![]);
        self.node("Div", vec![clamped, levels], vec![scale.clone()], vec![]);
        self.node(
            "Div",
            vec![name.to_string(), scale.clone()],
            vec![scaled.clone()],
            vec![],
        );
        self.node("Round", vec![scaled], vec![rounded.clone()], vec![]);
        self.node("Mul", vec![rounded, scale], vec![out.clone()], vec![]);
        Ok(out)
    }

    /// A Q/DQ pair after value `name`; returns the dequantized name.
    fn qdq_pair(&mut self, name: &str, q: &QuantParam) -> Result<String> {
        let (scale, zp) = self.quant_consts(name, q)?;
        let qn = format!("{name}_q");
        let dq = format!("{name}_dq");
        self.node(
            "QuantizeLinear",
            vec![name.to_string(), scale.clone(), zp.clone()],
            vec![qn.clone()],
            vec![],
        );
        self.node(
            "DequantizeLinear",
            vec![qn, scale, zp],
            vec![dq.clone()],
            vec![],
        );
        Ok(dq)
    }

    fn quant_consts(&mut self, name: &str, q: &QuantParam) -> Result<(String, String)> {
        let (scale, zp) = (format!("{name}_scale"), format!("{name}_zero_point"));
        let dims = if q.axis.is_some() {
            vec![q.scales.len() as i64]
        } else {
            vec![]
        };
        self.inits.push(TensorProto {
            dims: dims.clone(),
            data_type: DataType::Float as i32,
            name: scale.clone(),
            raw_data: q.scales.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        let zps: Vec<u8> = if q.signed {
            q.zero_points
                .iter()
                .map(|&z| z.clamp(-128, 127) as i8 as u8)
                .collect()
        } else {
            q.zero_points
                .iter()
                .map(|&z| z.clamp(0, 255) as u8)
                .collect()
        };
        self.inits.push(TensorProto {
            dims,
            data_type: if q.signed {
                DataType::Int8
            } else {
                DataType::Uint8
            } as i32,
            name: zp.clone(),
            raw_data: zps,
        });
        Ok((scale, zp))
    }
}

/// The value name of an op output.
fn value_name(t: &TensorIr) -> String {
    format!("t{}", t.id.value())
}

fn f32s(data: &TensorData) -> Result<Vec<f32>> {
    data.clone()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| export_error(format!("tensor data: {e:?}")))
}

fn elem_type(dtype: DType) -> Result<DataType> {
    Ok(if dtype.is_float() {
        DataType::Float
    } else if dtype.is_bool() {
        DataType::Bool
    } else if dtype.is_int() || dtype.is_uint() {
        DataType::Int64
    } else {
        return Err(export_error(format!("no ONNX element type for {dtype:?}")));
    })
}

/// A tensor initializer; floats are written as f32, integers as int64.
fn tensor_proto(
    name: &str,
    dtype: DType,
    data: &TensorData,
    dims: &[usize],
) -> Result<TensorProto> {
    let ty = elem_type(dtype)?;
    let raw_data = match ty {
        DataType::Float => f32s(data)?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DataType::Bool => data
            .clone()
            .try_to_vec::<bool>()
            .map_err(|e| export_error(format!("tensor data: {e:?}")))?
            .into_iter()
            .map(u8::from)
            .collect(),
        _ => data
            .clone()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| export_error(format!("tensor data: {e:?}")))?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    };
    Ok(TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: ty as i32,
        name: name.to_string(),
        raw_data,
    })
}

/// Quantize a weight with `q` (round half to even, as QuantizeLinear does).
fn quantize_weight(values: &[f32], dims: &[usize], q: &QuantParam, path: &str) -> Result<Vec<u8>> {
    let channels = q.axis.map_or(1, |a| dims.get(a).copied().unwrap_or(0));
    if q.scales.len() != channels || q.zero_points.len() != channels {
        return Err(export_error(format!(
            "quantization of '{path}': {} scales for {channels} channels",
            q.scales.len()
        )));
    }
    let inner: usize = q.axis.map_or(1, |a| dims[a + 1..].iter().product());
    let (lo, hi) = if q.signed {
        (-128.0, 127.0)
    } else {
        (0.0, 255.0)
    };
    let codes = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = q.axis.map_or(0, |_| (i / inner) % channels);
            let s = q.scales[c];
            let x = if s > 0.0 {
                (v / s).round_ties_even()
            } else {
                0.0
            } + q.zero_points[c] as f32;
            let x = x.clamp(lo, hi);
            if q.signed { x as i8 as u8 } else { x as u8 }
        })
        .collect();
    Ok(codes)
}

fn value_info(name: &str, dtype: DType, dims: &[usize], dynamic: bool) -> Result<ValueInfoProto> {
    let dim = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| Dimension {
            value: Some(if i == 0 && dynamic {
                DimValue::DimParam("batch".into())
            } else {
                DimValue::DimValue(d as i64)
            }),
        })
        .collect();
    Ok(ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: elem_type(dtype)? as i32,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: String::new(),
    })
}

/// The graph input: the output of the first `zeros` op.
fn find_input(graph: &Graph) -> Option<&TensorIr> {
    graph.ops.iter().find_map(|op| match op {
        OperationIr::BaseFloat(BaseOperationIr::Zeros(c))
        | OperationIr::BaseInt(BaseOperationIr::Zeros(c)) => Some(&c.out),
        _ => None,
    })
}

/// Walk the graph and write the model.
pub(super) fn write(
    graph: &Graph,
    params: &HashMap<String, TensorData>,
    options: &OnnxOptions,
) -> Result<ModelProto> {
    let input_ir = match options.input {
        Some(id) => graph
            .ops
            .iter()
            .flat_map(|op| op.outputs())
            .find(|t| t.id == id),
        None => find_input(graph),
    }
    .cloned()
    .ok_or_else(|| export_error("the graph has no input (no `zeros` example input)"))?;
    let output_id = *graph
        .outputs
        .first()
        .ok_or_else(|| export_error("the graph has no output"))?;
    let calls = layer_calls(graph).into_iter().map(|c| (c.op, c)).collect();
    let mut w = OnnxWriter {
        graph,
        params,
        qdq: options.qdq.as_ref(),
        nodes: Vec::new(),
        inits: Vec::new(),
        emitted: HashSet::new(),
        alias: HashMap::new(),
        batched: HashSet::from([input_ir.id]),
        dynamic: options.dynamic_batch,
        input: input_ir.id,
        input_name: options.input_name.clone(),
        capture_batch: input_ir.shape.as_slice().first().copied().unwrap_or(1),
        batch_name: None,
        counter: 0,
        views: ParamViews::default(),
        calls,
        skip: HashSet::new(),
        index: 0,
    };
    if let Some(q) = options
        .qdq
        .as_ref()
        .and_then(|q| q.activations.get(&input_ir.id))
    {
        let dq = w.qdq_pair(&options.input_name, &q.clone())?;
        w.alias.insert(input_ir.id, dq);
    }
    let mut output_ir = None;
    for (i, op) in graph.ops.iter().enumerate() {
        w.views.step(op, graph);
        w.index = i;
        if op.outputs().any(|t| t.id == output_id) {
            output_ir = op.outputs().find(|t| t.id == output_id).cloned();
        }
        if matches!(op, OperationIr::Init(_) | OperationIr::Drop(_))
            || op.outputs().any(|t| t.id == input_ir.id)
            || w.skip.contains(&i)
        {
            continue;
        }
        let rule = Op::of(op).ok_or_else(|| unmapped(i, op))?;
        rule.onnx(&mut w)?;
        let batched = op.inputs().any(|t| w.batched.contains(&t.id));
        for out in op.outputs() {
            if batched {
                w.batched.insert(out.id);
            }
            let q = w.qdq.and_then(|q| q.activations.get(&out.id)).cloned();
            if let Some(q) = q {
                let name = w.input(out)?;
                let dq = w.qdq_pair(&name, &q)?;
                w.alias.insert(out.id, dq);
            }
            if let Some(&bits) = options.per_token.get(&out.id) {
                let name = w.input(out)?;
                let q = w.per_token(&name, bits)?;
                w.alias.insert(out.id, q);
            }
        }
    }
    let output_ir = output_ir.ok_or_else(|| export_error("no op computes the graph output"))?;
    let last = w.input(&output_ir)?;
    w.node(
        "Identity",
        vec![last],
        vec![options.output_name.clone()],
        vec![],
    );
    let dynamic = options.dynamic_batch;
    let graph_proto = GraphProto {
        node: w.nodes,
        name: "burn-compress".into(),
        initializer: w.inits,
        doc_string: String::new(),
        input: vec![value_info(
            &options.input_name,
            input_ir.dtype,
            input_ir.shape.as_slice(),
            dynamic,
        )?],
        output: vec![value_info(
            &options.output_name,
            output_ir.dtype,
            output_ir.shape.as_slice(),
            dynamic,
        )?],
    };
    Ok(ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "burn-compress".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: String::new(),
        graph: Some(graph_proto),
    })
}

/// The typed refusal of an op without an ONNX mapping.
pub(crate) fn unmapped(index: usize, op: &OperationIr) -> GraphError {
    GraphError::Unmapped {
        op: op_name(op),
        index,
    }
}
