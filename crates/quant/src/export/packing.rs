//! Packed storage: 4- and 2-bit values in `u32` words, and reading them back.

use super::*;

/// Values per `u32` word and bits per value.
pub(crate) fn packing(value: QuantValue) -> (usize, usize) {
    let bits = value.size_bits();
    (32 / bits, bits)
}

/// The packed dimension (counted from the innermost, as `QuantStore::PackedU32` counts) that
/// stores the fewest words, preferring the innermost on ties, and the word count.
pub(crate) fn packed_dim(shape: &[usize], per_word: usize) -> (usize, usize) {
    let numel: usize = shape.iter().product();
    let words = |d: usize| {
        let axis = shape.len() - 1 - d;
        numel / shape[axis].max(1) * shape[axis].div_ceil(per_word)
    };
    (0..shape.len().max(1))
        .map(|d| (d, if shape.is_empty() { 1 } else { words(d) }))
        .min_by_key(|&(d, w)| (w, d))
        .unwrap_or((0, numel.div_ceil(per_word)))
}

/// The storage shape of a tensor packed on `dim` (from the innermost).
pub(super) fn storage_shape(shape: &[usize], dim: usize, per_word: usize) -> Vec<usize> {
    let mut storage = shape.to_vec();
    if let Some(axis) = shape.len().checked_sub(dim + 1) {
        storage[axis] = storage[axis].div_ceil(per_word);
    }
    storage
}

/// The packed word and slot of every element, in row-major element order.
pub(super) fn word_slots(
    shape: &[usize],
    dim: usize,
    per_word: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let storage = storage_shape(shape, dim, per_word);
    let axis = shape.len().checked_sub(dim + 1);
    let numel: usize = shape.iter().product();
    let shape = shape.to_vec();
    (0..numel).map(move |mut index| {
        let mut word = 0;
        let mut slot = 0;
        let mut stride = 1;
        for d in (0..shape.len()).rev() {
            let c = index % shape[d];
            index /= shape[d];
            let sc = if Some(d) == axis {
                slot = c % per_word;
                c / per_word
            } else {
                c
            };
            word += sc * stride;
            stride *= storage[d];
        }
        (word, slot)
    })
}

/// Saves 4- and 2-bit tensors packed into `u32`s.
#[derive(Clone)]
pub(super) struct PackSubByte;

impl ModuleAdapter for PackSubByte {
    fn adapt(&self, tensor: PackTensor, _: ModuleContext<'_>) -> PackTensor {
        let DType::QFloat(scheme) = tensor.dtype else {
            return tensor;
        };
        let packable = scheme.value.size_bits() < 8
            && QuantBits::from_value(scheme.value).is_some()
            && scheme.store == QuantStore::Native
            && scheme.mode == QuantMode::Symmetric
            && scheme.scale_dtype() == ScaleDtype::F32
            && burn::tensor::quantization::global_scale_dtype(&scheme).is_none();
        if !packable {
            return tensor;
        }
        let shape = tensor.shape.clone();
        let (per_word, bits) = packing(scheme.value);
        let (dim, _) = packed_dim(shape.as_slice(), per_word);
        let packed = scheme.with_store(QuantStore::PackedU32(dim));
        let name = tensor.name.clone();
        let dims = shape.as_slice().to_vec();
        burn::store::bridge::map_data(
            tensor,
            name,
            DType::QFloat(packed),
            shape.clone(),
            move |data| {
                let (values, scales) = QuantizedBytes {
                    bytes: data.into_bytes(),
                    scheme,
                    shape: shape.clone(),
                }
                .into_vec_i8();
                let storage: usize = storage_shape(&dims, dim, per_word).iter().product();
                let mut words = vec![0u32; storage];
                let mask = (1u32 << bits) - 1;
                for ((word, slot), v) in word_slots(&dims, dim, per_word).zip(values) {
                    words[word] |= (v as u8 as u32 & mask) << (slot * bits);
                }
                let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                bytes.extend(scales.block.iter().flat_map(|s| s.to_le_bytes()));
                TensorData::from_bytes_vec(bytes, shape.clone(), DType::QFloat(packed))
            },
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// A stored tensor as the backend takes it: packed values unpacked to one `i8` each
/// (`QuantStore::Native`); unsupported quantized formats refused before Burn could panic on
/// them.
pub(super) fn decode(tensor: PackTensor) -> std::result::Result<PackTensor, String> {
    let DType::QFloat(scheme) = tensor.dtype else {
        return Ok(tensor);
    };
    let name = tensor.name.clone();
    let param_id = tensor.param_id;
    let supported = QuantBits::from_value(scheme.value).is_some()
        && scheme.mode == QuantMode::Symmetric
        && scheme.scale_dtype() == ScaleDtype::F32
        && burn::tensor::quantization::global_scale_dtype(&scheme).is_none();
    if !supported {
        return Err(format!(
            "'{name}' uses a quantized format this crate does not read ({scheme:?})"
        ));
    }
    let shape = tensor.shape.clone();
    let dims = shape.as_slice().to_vec();
    let expected = quantized_data_len(&scheme, &shape);
    let data =
        burn::store::bridge::into_data(tensor).map_err(|e| format!("cannot read '{name}': {e}"))?;
    let bytes = data.into_bytes();
    if bytes.len() != expected {
        return Err(format!(
            "'{name}' holds {} bytes, its format needs {expected}",
            bytes.len()
        ));
    }
    let native = scheme.with_store(QuantStore::Native);
    // Values (one byte each, or packed words), then the f32 scales.
    let value_len = match scheme.store {
        QuantStore::Native => dims.iter().product::<usize>(),
        QuantStore::PackedU32(dim) => {
            let (per_word, _) = packing(scheme.value);
            storage_shape(&dims, dim, per_word)
                .iter()
                .product::<usize>()
                * 4
        }
        QuantStore::PackedNative(_) => {
            return Err(format!("'{name}' uses PackedNative storage, not read here"));
        }
    };
    let (value_bytes, scale_bytes) = bytes.split_at(value_len.min(bytes.len()));
    let scales: Vec<f32> = scale_bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let values: Vec<i8> = match scheme.store {
        QuantStore::PackedU32(dim) => {
            let (per_word, bits) = packing(scheme.value);
            let words: Vec<u32> = value_bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let mask = (1u32 << bits) - 1;
            let shift = 8 - bits as u32;
            word_slots(&dims, dim, per_word)
                .map(|(word, slot)| {
                    let raw = ((words[word] >> (slot * bits)) & mask) as u8;
                    ((raw << shift) as i8) >> shift
                })
                .collect()
        }
        _ => value_bytes.iter().map(|&b| b as i8).collect(),
    };
    let (qmin, qmax) = scheme.value.range();
    if values
        .iter()
        .any(|&v| (v as f32) < qmin || (v as f32) > qmax)
    {
        return Err(format!(
            "'{name}' holds values outside {:?}'s range",
            scheme.value
        ));
    }
    if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
        return Err(format!("'{name}' holds an invalid scale {bad}"));
    }
    let data = TensorData::quantized(values, shape, native, &scales, None);
    Ok(burn::store::bridge::from_data(data, name, param_id))
}
