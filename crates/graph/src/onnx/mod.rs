//! ONNX export of a captured graph: the engine walks the recorded ops and asks each op family
//! (`OpRule::onnx`, in `src/ops/<family>.rs`) which ONNX nodes it becomes.
//! An op whose family has no mapping is [`GraphError::Unmapped`], naming it.
//!
//! What is written (opset 17, IR version 8):
//! - one graph input named [`OnnxOptions::input_name`] (`input`; f32, or int64 token ids) and one
//!   output named [`OnnxOptions::output_name`] (`output`), with a symbolic first dimension
//!   (`batch`) when [`OnnxOptions::dynamic_batch`] is set: reshapes of batch-carrying tensors
//!   write `-1` for their first dimension, and a constant repeated to the capture's batch size
//!   is expanded to the input's batch at run time;
//! - every parameter as an initializer named by its dotted path (`layer1.0.conv1.weight`), in
//!   Burn's layout (a Linear weight is `[in, out]`, so Linear becomes `Gemm`/`MatMul` without a
//!   transpose); constants created inside the forward as initializers too;
//! - with [`OnnxOptions::qdq`], QuantizeLinear/DequantizeLinear pairs (QDQ): int8/uint8 weights
//!   stored quantized behind a DequantizeLinear (per tensor or per channel), and a Q/DQ pair
//!   after every calibrated activation, which ONNX Runtime and TensorRT run in int8;
//! - with [`OnnxOptions::per_token`], dynamic symmetric per-token quantization of the chosen
//!   activations (W8A8's): `s = max(max|x| over the last axis, 1e-5) / (2^(b-1) - 1)`,
//!   `x = round(x / s) * s` (ties to even), in standard ops (`Abs`, `ReduceMax`, `Max`, `Div`,
//!   `Round`, `Mul`), so any runtime computes what `compress_quant::rtn::quantize_per_token` does.

mod proto;
mod writer;

use std::collections::HashMap;

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn_ir::TensorId;
use prost::Message;

pub(crate) use writer::{Attr, OnnxWriter};

use crate::{Graph, GraphError, Result};

/// The opset the exporter writes.
pub const OPSET: i64 = 17;

/// Affine quantization parameters of one tensor: `q = clamp(round(x / scale) + zero_point)`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantParam {
    /// Scale (per tensor), or one per channel along [`QuantParam::axis`].
    pub scales: Vec<f32>,
    /// Zero points, as many as `scales`.
    pub zero_points: Vec<i32>,
    /// The channel axis of per-channel parameters (in Burn's layout, which the exporter keeps).
    pub axis: Option<usize>,
    /// int8 (`true`) or uint8 storage.
    pub signed: bool,
}

impl QuantParam {
    /// Per-tensor parameters.
    pub fn per_tensor(scale: f32, zero_point: i32, signed: bool) -> Self {
        Self {
            scales: vec![scale],
            zero_points: vec![zero_point],
            axis: None,
            signed,
        }
    }
}

/// What a QDQ export quantizes: weights by parameter path, activations by captured tensor id
/// (a layer call's input or output, see [`layer_calls`](crate::layer_calls)).
#[derive(Debug, Clone, Default)]
pub struct Qdq {
    /// Weights by dotted parameter path.
    pub weights: HashMap<String, QuantParam>,
    /// Activations by tensor id in the captured graph (per tensor).
    pub activations: HashMap<TensorId, QuantParam>,
}

/// Options of [`export`].
#[derive(Debug, Clone)]
pub struct OnnxOptions {
    /// Name of the graph input (`input`).
    pub input_name: String,
    /// Name of the graph output (`output`).
    pub output_name: String,
    /// Write the first dimension as the symbol `batch` (default `true`).
    pub dynamic_batch: bool,
    /// The tensor that is the graph input; default: the output of the first `zeros` op (the
    /// example input a capture closure creates first).
    pub input: Option<TensorId>,
    /// Quantize to QDQ (see [`Qdq`]).
    pub qdq: Option<Qdq>,
    /// Activations quantized per token at run time, by tensor id in the captured graph: their
    /// bits (2..=16).
    pub per_token: HashMap<TensorId, u32>,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        Self {
            input_name: "input".into(),
            output_name: "output".into(),
            dynamic_batch: true,
            input: None,
            qdq: None,
            per_token: HashMap::new(),
        }
    }
}

impl OnnxOptions {
    /// Set the QDQ annotations.
    pub fn with_qdq(mut self, qdq: Qdq) -> Self {
        self.qdq = Some(qdq);
        self
    }

    /// Quantize these activations (by captured tensor id) per token at run time, to their bits.
    pub fn with_per_token(mut self, per_token: HashMap<TensorId, u32>) -> Self {
        self.per_token = per_token;
        self
    }

    /// Write a fixed batch dimension instead of the symbol `batch`.
    pub fn with_fixed_batch(mut self) -> Self {
        self.dynamic_batch = false;
        self
    }
}

/// Write `graph` (captured from `model`) as an ONNX model (opset 17), parameter values read from
/// `model` (reparameterizations folded).
///
/// # Errors
/// [`GraphError::Unmapped`] for an op without an ONNX mapping (named, with its position);
/// [`GraphError::Export`] when the graph has no input or output, or a parameter it reads is not
/// in `model`.
pub fn export<M: Module>(graph: &Graph, model: &M, options: &OnnxOptions) -> Result<Vec<u8>> {
    let params = param_values(model);
    let model = writer::write(graph, &params, options)?;
    Ok(model.encode_to_vec())
}

/// Every parameter's value by dotted path (reparameterizations folded).
fn param_values<M: Module>(model: &M) -> HashMap<String, TensorData> {
    struct Values(HashMap<String, TensorData>);
    impl compress_core::paths::PathVisitor for Values {
        fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
            let t = param.val();
            // Burn-native quantized weights (from `quantize`) are written dequantized; a QDQ
            // export quantizes them again on its calibration's grid.
            let t = if matches!(t.dtype(), burn::tensor::DType::QFloat(_)) {
                t.dequantize()
            } else {
                t
            };
            self.0.insert(path.to_string(), t.into_data());
        }
    }
    let plain = compress_core::mask::deep_copy(model).materialize();
    let mut v = Values(HashMap::new());
    compress_core::paths::visit_params(&plain, &mut v);
    v.0
}

pub(crate) fn export_error(message: impl Into<String>) -> GraphError {
    GraphError::Export(message.into())
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::prelude::*;

    use super::{OnnxOptions, export};
    use crate::{GraphError, capture};

    #[test]
    fn an_op_without_an_onnx_mapping_is_an_error_naming_it() {
        let d = Device::flex();
        let fc: Linear = LinearConfig::new(4, 4).init(&d);
        let graph = capture(&fc, |m, d| {
            m.forward(Tensor::<2>::zeros([1, 4], d)).cumsum(1)
        })
        .unwrap();
        let err = export(&graph, &fc, &OnnxOptions::default()).unwrap_err();
        assert!(matches!(err, GraphError::Unmapped { .. }), "{err}");
        assert!(err.to_string().contains("CumSum"), "{err}");
    }

    #[test]
    fn a_linear_becomes_one_gemm_with_its_weight_as_an_initializer() {
        use prost::Message;
        let d = Device::flex();
        let fc: Linear = LinearConfig::new(4, 3).init(&d);
        let graph = capture(&fc, |m, d| m.forward(Tensor::<2>::zeros([1, 4], d))).unwrap();
        let bytes = export(&graph, &fc, &OnnxOptions::default()).unwrap();
        let model = super::proto::ModelProto::decode(&bytes[..]).unwrap();
        let g = model.graph.unwrap();
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert!(ops.contains(&"Gemm") && !ops.contains(&"Add"), "{ops:?}");
        assert!(
            g.initializer
                .iter()
                .any(|t| t.name == "weight" && t.dims == [4, 3])
        );
        assert_eq!(g.input[0].name, "input");
        assert_eq!(g.output[0].name, "output");
    }
}
