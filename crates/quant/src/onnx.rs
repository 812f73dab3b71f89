//! QDQ ONNX export: a captured graph written by [`compress_graph::onnx::export`] with our
//! calibrated scales and zero points as QuantizeLinear/DequantizeLinear pairs, on every
//! calibrated weight (stored as int8/uint8 behind a DequantizeLinear, per tensor or per output
//! channel) and after every calibrated activation (a layer's `_input_` and `_output_`), which
//! ONNX Runtime and TensorRT run in int8.

use burn::module::Module;
use compress_graph::onnx::{OnnxOptions, Qdq, QuantParam, export};
use compress_graph::{Graph, layer_calls};

use crate::{CalibrationConfig, CalibrationEntry, QuantError, Result};

/// The QDQ annotations of `graph` from `calibration` (NNI targets: `weight` on the parameter
/// `<module>.weight`, `_input_`/`_output_` on the layer call's input and output tensors).
///
/// # Errors
/// [`QuantError::UnsupportedQuant`] for a target ONNX opset 17 cannot express (fewer than 8
/// bits, block granularity, a per-channel activation) or a module that is no layer call of the
/// graph.
pub fn qdq_annotations(graph: &Graph, calibration: &CalibrationConfig) -> Result<Qdq> {
    let calls = layer_calls(graph);
    let mut qdq = Qdq::default();
    for (module, target, entry) in calibration.iter() {
        let unsupported = |reason: String| QuantError::UnsupportedQuant {
            path: format!("{module}.{target}"),
            reason,
        };
        if entry.quant_dtype.bits != 8 {
            return Err(unsupported(format!(
                "{} bits: ONNX opset 17 QDQ stores 8-bit integers",
                entry.quant_dtype.bits
            )));
        }
        let q = quant_param(entry).map_err(unsupported)?;
        match target {
            "weight" => {
                qdq.weights.insert(format!("{module}.weight"), q);
            }
            "_input_" | "_output_" => {
                if q.axis.is_some() {
                    return Err(unsupported("per-channel activation ranges".into()));
                }
                let call = calls
                    .iter()
                    .find(|c| c.layer == module)
                    .ok_or_else(|| unsupported("not a layer call of the graph".into()))?;
                let id = if target == "_input_" {
                    call.input.id
                } else {
                    call.output.id
                };
                qdq.activations.insert(id, q);
            }
            other => return Err(unsupported(format!("target '{other}' has no QDQ mapping"))),
        }
    }
    Ok(qdq)
}

/// Scales and zero points of one entry: per tensor, or per channel along the one axis whose
/// block shape is not 1.
fn quant_param(entry: &CalibrationEntry) -> std::result::Result<QuantParam, String> {
    let shape = entry.scale.shape();
    let scales = entry.scale.data().to_vec();
    let zero_points: Vec<i32> = entry
        .zero_point
        .data()
        .iter()
        .map(|z| z.round() as i32)
        .collect();
    let signed = entry.quant_dtype.signed;
    if scales.len() == 1 {
        return Ok(QuantParam::per_tensor(scales[0], zero_points[0], signed));
    }
    let axes: Vec<usize> = (0..shape.len()).filter(|&a| shape[a] != 1).collect();
    match axes.as_slice() {
        [axis] => Ok(QuantParam {
            scales,
            zero_points,
            axis: Some(*axis),
            signed,
        }),
        _ => Err(format!(
            "block scales of shape {shape:?}: ONNX QDQ is per tensor or per channel"
        )),
    }
}

/// Write `graph` (captured from `model`) as a QDQ ONNX model with `calibration`'s scales and
/// zero points.
///
/// # Errors
/// As [`qdq_annotations`] and [`compress_graph::onnx::export`].
pub fn export_qdq<M: Module>(
    graph: &Graph,
    model: &M,
    calibration: &CalibrationConfig,
    options: OnnxOptions,
) -> Result<Vec<u8>> {
    let qdq = qdq_annotations(graph, calibration)?;
    Ok(export(graph, model, &options.with_qdq(qdq))?)
}
