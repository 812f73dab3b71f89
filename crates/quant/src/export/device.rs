//! Device transfer: quantized parameters in the storage each backend reads.

use super::*;

/// A copy of a quantized model on `device`, each quantized parameter in the storage that device
/// reads. CPU backends take [`save_quantized`]'s one-byte `Native` values as they are; GPU
/// (CubeCL) backends read packed `u32` words (`QuantStore::PackedU32`), and some Vulkan drivers
/// (lavapipe) cannot convert native `i8` at all, so there every quantized parameter is re-packed
/// with its own scales: the integer values are unchanged. Packing needs an innermost extent that is
/// a multiple of the values per word (4 at 8 bits, 8 at 4 bits, 16 at 2 bits; Burn's CubeCL
/// `new_quantized` refuses anything else, and reads outer packing axes back wrongly): a parameter
/// without one (LeNet-5's convs, `[.., 5, 5]`) is moved dequantized, as float;
/// [`quantized_params`] on the result tells which stayed quantized. Float parameters are moved as
/// they are.
///
/// # Errors
/// [`QuantError::UnsupportedQuant`] for a quantized parameter whose data cannot be read back.
pub fn quantized_to_device<M: Module>(model: &M, device: &Device) -> Result<M> {
    struct Move<'a> {
        device: &'a Device,
        packed: bool,
        error: Option<QuantError>,
    }
    impl compress_core::paths::PathMapper for Move<'_> {
        fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let device = self.device.clone();
            let packed = self.packed;
            let path = path.to_string();
            let mut failure = None;
            let moved = param.map(|t| {
                let DType::QFloat(scheme) = t.dtype() else {
                    return t.to_device(&device);
                };
                if !packed || matches!(scheme.store, QuantStore::PackedU32(_)) {
                    return t.to_device(&device);
                }
                // Native values are followed by the f32 scales in the data's bytes.
                let numel = t.shape().num_elements();
                let values = t.clone().dequantize().to_device(&device);
                let bytes = t.into_data().into_bytes();
                let scales: Vec<f32> = bytes
                    .get(numel..)
                    .unwrap_or_default()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                if scales.is_empty() {
                    failure = Some(QuantError::UnsupportedQuant {
                        path: path.clone(),
                        reason: "its quantized data has no scales to re-pack with".into(),
                    });
                    return values;
                }
                // Packed along the innermost dimension, which must divide evenly. (Burn 0.22's
                // CubeCL backend also accepts an outer packing axis, but dequantizes such tensors
                // wrongly: measured on lavapipe, LeNet-5's conv2 packed on its outer axis read back
                // values up to 0.47 off.)
                let per_word = 32 / scheme.value.size_bits();
                if !values.dims()[D - 1].is_multiple_of(per_word) {
                    return values;
                }
                let axis = 0;
                let n = scales.len();
                let params = burn::tensor::quantization::QuantizationParameters {
                    scales: Tensor::<1>::from_data(TensorData::new(scales, [n]), &device),
                    global: None,
                };
                values.quantize(&scheme.with_store(QuantStore::PackedU32(axis)), params)
            });
            if let Some(e) = failure {
                self.error.get_or_insert(e);
            }
            moved
        }
    }
    // CPU backends read native values; every other (CubeCL) device gets packed words.
    let name = format!("{device:?}");
    let packed = !(name.contains("Flex") || name.contains("NdArray"));
    let mut mover = Move {
        device,
        packed,
        error: None,
    };
    let moved = compress_core::paths::map_params(compress_core::mask::deep_copy(model), &mut mover);
    match mover.error {
        Some(e) => Err(e),
        None => Ok(moved),
    }
}
