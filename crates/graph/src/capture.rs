//! Graph capture: one forward pass recorded on `Device::capture()`, with every parameter's tensor
//! id mapped to its dotted path.

use std::collections::HashMap;

use burn::backend::Capture;
use burn::module::{Module, Param};
use burn::prelude::*;
use burn_ir::{OperationIr, TensorId};

use crate::{GraphError, Result};

/// A captured forward pass.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The recorded ops, in execution order.
    pub ops: Vec<OperationIr>,
    /// Parameter (and running-statistic) tensors by id: their dotted paths.
    pub params: HashMap<TensorId, String>,
    /// Values of the tensors created inside the forward (constants), by id.
    pub values: std::collections::BTreeMap<TensorId, burn::tensor::TensorData>,
    /// The forward's output.
    pub outputs: Vec<TensorId>,
}

/// `model` with Burn-native quantized (`QFloat`) parameters replaced by their dequantized f32
/// values: the capture device holds no quantized tensors, and the graph records the forward's
/// f32 computation (an ONNX export quantizes again on its calibration's grid).
fn dequantized<M: Module>(model: M) -> M {
    struct Dequantize;
    impl compress_core::paths::PathMapper for Dequantize {
        fn map<const D: usize>(
            &mut self,
            _path: &str,
            param: Param<Tensor<D>>,
        ) -> Param<Tensor<D>> {
            if matches!(param.val().dtype(), burn::tensor::DType::QFloat(_)) {
                compress_core::mask::map_param_leaf(param, |t| t.dequantize())
            } else {
                param
            }
        }
    }
    compress_core::paths::map_params(model, &mut Dequantize)
}

/// Record `forward` of `model` on a capture device.
///
/// Quantized parameters are captured as their dequantized values.
///
/// `forward` receives the model moved to the capture device (a deep copy: the caller's model and
/// its BatchNorm statistics are never touched) and the device, and returns the output. Capture
/// records one concrete execution: control flow is baked in for that input.
///
/// # Errors
/// [`GraphError::Capture`] when Burn refuses the capture.
pub fn capture<M: Module, const D: usize>(
    model: &M,
    forward: impl FnOnce(&M, &Device) -> Tensor<D>,
) -> Result<Graph> {
    let device = Device::capture();
    let mut params = HashMap::new();
    let mut failure = None;
    let captured = device
        .capture_scope(|scope| {
            // `valid()` rebuilds running statistics: moving a clone would move the original's.
            let copy = compress_core::mask::deep_copy(model).valid();
            let on_capture = dequantized(copy).to_device(&device);
            let mut collector = ParamIds {
                ids: &mut params,
                failure: &mut failure,
            };
            compress_core::paths::visit_params(&on_capture, &mut collector);
            let out = forward(&on_capture, &device);
            match out.try_into_primitive::<Capture>() {
                Ok(p) => scope.complete([], [p.id()]),
                Err(_) => {
                    failure = Some("the forward's output is not a capture tensor".to_string());
                    scope.complete([], [])
                }
            }
        })
        .map_err(|e| GraphError::Capture(e.to_string()))?;
    if let Some(f) = failure {
        return Err(GraphError::Capture(f));
    }
    Ok(Graph {
        ops: captured.graph.operations,
        params,
        values: captured.values,
        outputs: captured.graph.outputs.clone(),
    })
}

struct ParamIds<'a> {
    ids: &'a mut HashMap<TensorId, String>,
    failure: &'a mut Option<String>,
}

impl compress_core::paths::PathVisitor for ParamIds<'_> {
    fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
        match param.val().try_into_primitive::<Capture>() {
            Ok(p) => {
                self.ids.insert(p.id(), path.to_string());
            }
            Err(_) => {
                *self.failure = Some(format!("parameter '{path}' is not on the capture device"))
            }
        }
    }
}
