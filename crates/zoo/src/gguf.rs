//! Reading GGUF files (llama.cpp's model format, version 3): metadata, tensor infos, and
//! dequantization of the tensor types small models ship in.
//!
//! Layout (all little-endian): magic `GGUF`, `u32` version, `u64` tensor count, `u64` metadata
//! count; the metadata (`string key`, `u32 type`, value); the tensor infos (`string name`,
//! `u32` rank, `u64` dims *innermost first*, `u32 type`, `u64` offset into the data section);
//! padding to `general.alignment` (default 32); the data section. Strings are a `u64` length
//! and UTF-8 bytes.
//!
//! A tensor with GGUF dims `[ne0, ne1]` is stored row-major with `ne0` contiguous, so its
//! row-major (PyTorch) shape is `[ne1, ne0]`: [`GgufTensorInfo::shape`] reverses the dims.
//!
//! Dequantized types (block layouts from ggml's `ggml-common.h`):
//!
//! | type | block | value |
//! | --- | --- | --- |
//! | `F32`, `F16`, `BF16` | 1 | as stored |
//! | `Q4_0` | 32 values: f16 `d`, 16 bytes of nibbles | `(q - 8) * d` |
//! | `Q4_1` | 32 values: f16 `d`, f16 `m`, 16 bytes of nibbles | `q * d + m` |
//! | `Q8_0` | 32 values: f16 `d`, 32 `i8` | `q * d` |
//! | `Q6_K` | 256 values: 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 `i8` scales, f16 `d` | `d * scale * (q - 32)` |
//!
//! In the 32-value nibble blocks the low nibble of byte `j` is element `j` and the high nibble
//! element `j + 16`. Any other type is refused with [`GgufError::UnsupportedType`], naming the
//! tensor.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

mod dequant;
pub mod write;

pub use dequant::dequantize;

/// What can go wrong reading a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be read.
    #[error("cannot read GGUF '{}': {message}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        message: String,
    },
    /// The bytes are not a GGUF file this reader understands.
    #[error("'{}' is not a valid GGUF v3 file: {message} (at byte {offset})", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Where reading stopped.
        offset: usize,
        /// What was wrong.
        message: String,
    },
    /// A tensor whose type this reader does not dequantize.
    #[error("tensor '{tensor}' has GGML type {ty}, which is not supported (supported: {})", GgmlType::SUPPORTED.map(|t| t.to_string()).join(", "))]
    UnsupportedType {
        /// The tensor's name.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// A tensor the caller asked for is not in the file.
    #[error("GGUF '{}' has no tensor '{tensor}'", .path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
    },
    /// A metadata key the caller needs is absent or of another type.
    #[error("GGUF '{}': metadata '{key}' {message}", .path.display())]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// "is missing", or the type it has.
        message: String,
    },
}

/// A GGML tensor type, by its numeric id in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// `F32`.
    pub const F32: GgmlType = GgmlType(0);
    /// `F16`.
    pub const F16: GgmlType = GgmlType(1);
    /// `Q4_0`.
    pub const Q4_0: GgmlType = GgmlType(2);
    /// `Q4_1`.
    pub const Q4_1: GgmlType = GgmlType(3);
    /// `Q8_0`.
    pub const Q8_0: GgmlType = GgmlType(8);
    /// `Q6_K`.
    pub const Q6_K: GgmlType = GgmlType(14);
    /// `BF16`.
    pub const BF16: GgmlType = GgmlType(30);
    /// The types [`GgufFile::tensor_f32`] dequantizes.
    pub const SUPPORTED: [GgmlType; 7] = [
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q8_0,
        Self::Q6_K,
    ];

    /// ggml's name (`Q4_1`), or `type N` for an id without one.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 31] = [
            "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
            "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
            "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
            "BF16",
        ];
        NAMES.get(self.0 as usize).copied()
    }

    /// `(values per block, bytes per block)` for the supported types.
    fn block(self) -> Option<(usize, usize)> {
        Some(match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
            Self::Q6_K => (256, 210),
            _ => return None,
        })
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "type {}", self.0),
        }
    }
}

/// A metadata value, of any GGUF value type.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7.
    Bool(bool),
    /// Type 8.
    String(String),
    /// Type 9: an element type and the elements (all of that type).
    Array(Vec<GgufValue>),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
}

impl GgufValue {
    /// The value as an unsigned integer, for any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, for the float types.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The string, for a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, for an array.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The GGUF type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            GgufValue::U8(_) => "u8",
            GgufValue::I8(_) => "i8",
            GgufValue::U16(_) => "u16",
            GgufValue::I16(_) => "i16",
            GgufValue::U32(_) => "u32",
            GgufValue::I32(_) => "i32",
            GgufValue::F32(_) => "f32",
            GgufValue::Bool(_) => "bool",
            GgufValue::String(_) => "string",
            GgufValue::Array(_) => "array",
            GgufValue::U64(_) => "u64",
            GgufValue::I64(_) => "i64",
            GgufValue::F64(_) => "f64",
        }
    }
}

/// One tensor's entry in the file's tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    /// The name (`blk.0.attn_q.weight`).
    pub name: String,
    /// The dims as stored: innermost (contiguous) first.
    pub dims: Vec<u64>,
    /// The element type.
    pub ty: GgmlType,
    /// Byte offset into the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    /// The row-major shape (the dims reversed): `[ne1, ne0]` for a matrix, i.e. PyTorch's
    /// `[out, in]` for a weight.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }
}

/// A GGUF file read into memory: metadata, tensor table and the bytes.
#[derive(Debug, Clone)]
pub struct GgufFile {
    path: PathBuf,
    /// The format version (3).
    pub version: u32,
    /// Every metadata entry, by key.
    pub metadata: BTreeMap<String, GgufValue>,
    /// The tensor table, in file order.
    pub tensors: Vec<GgufTensorInfo>,
    /// The data section's alignment (`general.alignment`, default 32).
    pub alignment: usize,
    data_start: usize,
    bytes: Vec<u8>,
}

/// A little-endian cursor that reports where it stopped.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Cursor<'_> {
    fn error(&self, message: impl Into<String>) -> GgufError {
        GgufError::Format {
            path: self.path.to_path_buf(),
            offset: self.pos,
            message: message.into(),
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| self.error(format!("file ends inside a {N}-byte value")))?;
        let out = self.bytes[self.pos..end]
            .try_into()
            .expect("slice of N bytes");
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        self.take().map(u64::from_le_bytes)
    }

    /// A count that must fit in what is left of the file (`min_bytes` per item), so a corrupt
    /// length fails here rather than in an allocation.
    fn count(&mut self, min_bytes: usize, what: &str) -> Result<usize, GgufError> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_bytes as u64) > left {
            return Err(self.error(format!("{what} count {n} exceeds the file")));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.count(1, "string length")?;
        let s = std::str::from_utf8(&self.bytes[self.pos..self.pos + n])
            .map_err(|e| self.error(format!("string is not UTF-8: {e}")))?
            .to_string();
        self.pos += n;
        Ok(s)
    }

    fn value(&mut self, ty: u32) -> Result<GgufValue, GgufError> {
        Ok(match ty {
            0 => GgufValue::U8(u8::from_le_bytes(self.take()?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.take()?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.take()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.take()?)),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(i32::from_le_bytes(self.take()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.take()?)),
            7 => match u8::from_le_bytes(self.take()?) {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(self.error(format!("bool byte {b}"))),
            },
            8 => GgufValue::String(self.string()?),
            9 => {
                let elem = self.u32()?;
                let n = self.count(1, "array length")?;
                let items = (0..n).map(|_| self.value(elem)).collect::<Result<_, _>>()?;
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(i64::from_le_bytes(self.take()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.take()?)),
            t => return Err(self.error(format!("unknown metadata value type {t}"))),
        })
    }
}

impl GgufFile {
    /// Read the file at `path` whole and parse its header.
    ///
    /// # Errors
    /// [`GgufError::Read`] when the file cannot be read, [`GgufError::Format`] when its header
    /// is not GGUF v2/v3 (wrong magic, truncated, a tensor past the end of the file).
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let bytes = std::fs::read(path).map_err(|e| GgufError::Read {
            path: path.to_path_buf(),
            message: match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".into(),
                _ => e.to_string(),
            },
        })?;
        Self::parse(path, bytes)
    }

    /// Parse GGUF `bytes`; `path` only names the source in errors.
    ///
    /// # Errors
    /// As [`GgufFile::open`].
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, GgufError> {
        let mut c = Cursor {
            bytes: &bytes,
            pos: 0,
            path,
        };
        if c.take::<4>()? != *b"GGUF" {
            c.pos = 0;
            return Err(c.error("magic is not 'GGUF'"));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(c.error(format!("version {version} (this reader knows 2 and 3)")));
        }
        // A tensor info is at least 8 (name) + 4 + 4 + 8 bytes, a metadata entry 8 + 4 + 1.
        let n_tensors = c.count(24, "tensor")?;
        let n_kv = c.count(13, "metadata")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            metadata.insert(key, c.value(ty)?);
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a as usize,
                _ => return Err(c.error(format!("general.alignment {v:?} is not a power of 2"))),
            },
        };
        let mut tensors = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let rank = c.u32()?;
            if rank > 4 {
                return Err(c.error(format!("tensor '{name}' has rank {rank} (at most 4)")));
            }
            let dims = (0..rank).map(|_| c.u64()).collect::<Result<Vec<_>, _>>()?;
            let ty = GgmlType(c.u32()?);
            let offset = c.u64()?;
            tensors.push(GgufTensorInfo {
                name,
                dims,
                ty,
                offset,
            });
        }
        let data_start = c.pos.div_ceil(alignment) * alignment;
        let file = Self {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_start,
            bytes,
        };
        for t in &file.tensors {
            if let Some(range) = file.byte_range(t)
                && range.end > file.bytes.len()
            {
                return Err(GgufError::Format {
                    path: path.to_path_buf(),
                    offset: file.bytes.len(),
                    message: format!(
                        "tensor '{}' ({} {:?}) ends at byte {}, past the end of the file",
                        t.name, t.ty, t.dims, range.end
                    ),
                });
            }
        }
        Ok(file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor named `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Metadata entry `key`.
    ///
    /// # Errors
    /// [`GgufError::Metadata`] when it is missing.
    pub fn get(&self, key: &str) -> Result<&GgufValue, GgufError> {
        self.metadata
            .get(key)
            .ok_or_else(|| self.metadata_error(key, "is missing".into()))
    }

    /// Metadata entry `key` as an unsigned integer.
    ///
    /// # Errors
    /// [`GgufError::Metadata`] when it is missing or not a non-negative integer.
    pub fn get_usize(&self, key: &str) -> Result<usize, GgufError> {
        let v = self.get(key)?;
        v.as_u64().map(|v| v as usize).ok_or_else(|| {
            self.metadata_error(
                key,
                format!("is {} {v:?}, expected an unsigned integer", v.type_name()),
            )
        })
    }

    /// Metadata entry `key` as a float (`f32` or `f64`).
    ///
    /// # Errors
    /// [`GgufError::Metadata`] when it is missing or not a float.
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.get(key)?;
        v.as_f64().ok_or_else(|| {
            self.metadata_error(key, format!("is {} {v:?}, expected a float", v.type_name()))
        })
    }

    /// Metadata entry `key` as an array of strings.
    ///
    /// # Errors
    /// [`GgufError::Metadata`] when it is missing or not an array of strings.
    pub fn get_strings(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let v = self.get(key)?;
        v.as_array()
            .and_then(|a| a.iter().map(GgufValue::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                self.metadata_error(
                    key,
                    format!("is {}, expected an array of strings", v.type_name()),
                )
            })
    }

    fn metadata_error(&self, key: &str, message: String) -> GgufError {
        GgufError::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            message,
        }
    }

    /// Where a tensor's bytes lie, or `None` for an unsupported type.
    fn byte_range(&self, t: &GgufTensorInfo) -> Option<std::ops::Range<usize>> {
        let (per_block, block_bytes) = t.ty.block()?;
        let start = self
            .data_start
            .checked_add(usize::try_from(t.offset).ok()?)?;
        let len = t.numel().div_ceil(per_block).checked_mul(block_bytes)?;
        Some(start..start.checked_add(len)?)
    }

    /// Tensor `name` dequantized to `f32`, in row-major order of [`GgufTensorInfo::shape`].
    ///
    /// # Errors
    /// [`GgufError::MissingTensor`] when there is no such tensor, [`GgufError::UnsupportedType`]
    /// (naming the tensor and its type) when its type is not one of [`GgmlType::SUPPORTED`], and
    /// [`GgufError::Format`] when a block-quantized tensor's innermost dim is not a whole number
    /// of blocks.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), GgufError> {
        let t = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })?;
        let unsupported = || GgufError::UnsupportedType {
            tensor: t.name.clone(),
            ty: t.ty,
        };
        let (per_block, _) = t.ty.block().ok_or_else(unsupported)?;
        if t.dims
            .first()
            .is_some_and(|&d| !(d as usize).is_multiple_of(per_block))
        {
            return Err(GgufError::Format {
                path: self.path.clone(),
                offset: self.data_start + t.offset as usize,
                message: format!(
                    "tensor '{}' ({}) has innermost dim {}, not a multiple of its block of {per_block}",
                    t.name, t.ty, t.dims[0]
                ),
            });
        }
        let range = self.byte_range(t).ok_or_else(unsupported)?;
        let values = dequantize(t.ty, &self.bytes[range], t.numel()).ok_or_else(unsupported)?;
        Ok((t.shape(), values))
    }
}

#[cfg(test)]
mod tests {
    use super::write::{RawTensor, gguf_bytes};
    use super::*;
    use burn::tensor::f16;

    fn f16_bytes(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    #[test]
    fn q4_1_block_dequantizes_low_nibbles_first_then_high_nibbles() {
        // d = 0.5, m = -1: value = q * 0.5 - 1. Byte j holds element j (low) and j + 16 (high).
        let mut block = Vec::new();
        block.extend(f16_bytes(0.5));
        block.extend(f16_bytes(-1.0));
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let v = dequantize(GgmlType::Q4_1, &block, 32).unwrap();
        let expected: Vec<f32> = (0..16)
            .map(|j| j as f32 * 0.5 - 1.0)
            .chain((0..16).map(|j| (15 - j) as f32 * 0.5 - 1.0))
            .collect();
        assert_eq!(v, expected);
        assert_eq!(v[0], -1.0);
        assert_eq!(v[15], 6.5);
        assert_eq!(v[16], 6.5);
        assert_eq!(v[31], -1.0);
    }

    #[test]
    fn q8_0_block_is_signed_bytes_times_the_scale() {
        let mut block = f16_bytes(0.25).to_vec();
        block.extend((0..32i8).map(|i| (i - 16) as u8));
        let v = dequantize(GgmlType::Q8_0, &block, 32).unwrap();
        assert_eq!(v[0], -4.0);
        assert_eq!(v[16], 0.0);
        assert_eq!(v[31], 3.75);
    }

    #[test]
    fn q4_0_block_centres_nibbles_on_8() {
        let mut block = f16_bytes(2.0).to_vec();
        block.extend([0x80u8; 16]); // low nibble 0 -> -16, high nibble 8 -> 0
        let v = dequantize(GgmlType::Q4_0, &block, 32).unwrap();
        assert_eq!(&v[..16], &[-16.0; 16]);
        assert_eq!(&v[16..], &[0.0; 16]);
    }

    #[test]
    fn q6_k_block_combines_low_and_high_bits_with_per_16_scales() {
        // All low nibbles 5, all high pairs 1 (bits 01 in every 2-bit slot: 0b0101_0101):
        // q = 5 | 1 << 4 = 21, minus 32 = -11. Scale of group i is i + 1, d = 0.5.
        let mut block = vec![0x55u8; 128];
        block.extend([0x55u8; 64]);
        block.extend((1..=16i8).map(|s| s as u8));
        block.extend(f16_bytes(0.5));
        let v = dequantize(GgmlType::Q6_K, &block, 256).unwrap();
        // Element 16*g + r of the first 128 comes from scale index: y[l + 32k] uses sc[l/16 + 2k].
        for (i, &x) in v.iter().enumerate() {
            let (half, rem) = (i / 128, i % 128);
            let (k, l) = (rem / 32, rem % 32);
            let scale = (8 * half + l / 16 + 2 * k + 1) as f32;
            assert_eq!(x, 0.5 * scale * -11.0, "element {i}");
        }
    }

    fn tiny() -> Vec<u8> {
        let mut q4 = f16_bytes(1.0).to_vec();
        q4.extend(f16_bytes(0.0));
        q4.extend((0..16u8).map(|j| j | (j << 4)));
        gguf_bytes(
            &[
                ("general.architecture", GgufValue::String("llama".into())),
                ("general.alignment", GgufValue::U32(32)),
                ("a.u8", GgufValue::U8(7)),
                ("a.i8", GgufValue::I8(-7)),
                ("a.u16", GgufValue::U16(700)),
                ("a.i16", GgufValue::I16(-700)),
                ("a.i32", GgufValue::I32(-70000)),
                ("a.f32", GgufValue::F32(1.5)),
                ("a.bool", GgufValue::Bool(true)),
                ("a.u64", GgufValue::U64(1 << 40)),
                ("a.i64", GgufValue::I64(-(1 << 40))),
                ("a.f64", GgufValue::F64(-2.25)),
                (
                    "a.strings",
                    GgufValue::Array(vec![
                        GgufValue::String("x".into()),
                        GgufValue::String("yz".into()),
                    ]),
                ),
            ],
            &[
                RawTensor::f32("w", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
                RawTensor {
                    name: "q".into(),
                    dims: vec![32],
                    ty: GgmlType::Q4_1,
                    data: q4,
                },
                RawTensor {
                    name: "blk.0.ffn_up.weight".into(),
                    dims: vec![256],
                    ty: GgmlType(12), // Q4_K
                    data: vec![0; 144],
                },
            ],
        )
    }

    #[test]
    fn a_written_gguf_round_trips_metadata_and_tensors() {
        let f = GgufFile::parse(Path::new("tiny.gguf"), tiny()).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.metadata.len(), 13);
        assert_eq!(
            f.get("general.architecture").unwrap().as_str(),
            Some("llama")
        );
        assert_eq!(f.get("a.u8").unwrap(), &GgufValue::U8(7));
        assert_eq!(f.get("a.i8").unwrap(), &GgufValue::I8(-7));
        assert_eq!(f.get("a.u16").unwrap(), &GgufValue::U16(700));
        assert_eq!(f.get("a.i16").unwrap(), &GgufValue::I16(-700));
        assert_eq!(f.get("a.i32").unwrap(), &GgufValue::I32(-70000));
        assert_eq!(f.get_f64("a.f32").unwrap(), 1.5);
        assert_eq!(f.get("a.bool").unwrap(), &GgufValue::Bool(true));
        assert_eq!(f.get_usize("a.u64").unwrap(), 1 << 40);
        assert_eq!(f.get("a.i64").unwrap(), &GgufValue::I64(-(1 << 40)));
        assert_eq!(f.get_f64("a.f64").unwrap(), -2.25);
        assert_eq!(f.get_strings("a.strings").unwrap(), ["x", "yz"]);
        let w = f.tensor_info("w").unwrap();
        assert_eq!((w.dims.as_slice(), w.shape()), (&[3u64, 2][..], vec![2, 3]));
        assert_eq!(
            f.tensor_f32("w").unwrap(),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        let (shape, q) = f.tensor_f32("q").unwrap();
        assert_eq!(shape, [32]);
        assert_eq!(q[..16], q[16..]);
        assert_eq!(q[15], 15.0);
    }

    #[test]
    fn an_unsupported_tensor_type_is_refused_with_the_tensor_name() {
        let f = GgufFile::parse(Path::new("tiny.gguf"), tiny()).unwrap();
        let err = f.tensor_f32("blk.0.ffn_up.weight").unwrap_err();
        assert!(matches!(
            err,
            GgufError::UnsupportedType {
                ty: GgmlType(12),
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "tensor 'blk.0.ffn_up.weight' has GGML type Q4_K, which is not supported \
             (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q6_K)"
        );
    }

    #[test]
    fn metadata_of_the_wrong_type_names_the_key() {
        let f = GgufFile::parse(Path::new("tiny.gguf"), tiny()).unwrap();
        assert_eq!(
            f.get_usize("a.f32").unwrap_err().to_string(),
            "GGUF 'tiny.gguf': metadata 'a.f32' is f32 F32(1.5), expected an unsigned integer"
        );
        assert_eq!(
            f.get_usize("llama.block_count").unwrap_err().to_string(),
            "GGUF 'tiny.gguf': metadata 'llama.block_count' is missing"
        );
    }

    #[test]
    fn truncated_or_foreign_bytes_are_format_errors() {
        let bytes = tiny();
        let cut = GgufFile::parse(Path::new("t.gguf"), bytes[..bytes.len() - 160].to_vec());
        let msg = cut.unwrap_err().to_string();
        assert!(msg.contains("tensor 'q' (Q4_1 [32]) ends at byte"), "{msg}");
        let err = GgufFile::parse(Path::new("t.gguf"), b"GGML\x03\0\0\0".to_vec()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "'t.gguf' is not a valid GGUF v3 file: magic is not 'GGUF' (at byte 0)"
        );
        let err = GgufFile::parse(Path::new("t.gguf"), bytes[..30].to_vec()).unwrap_err();
        assert!(matches!(err, GgufError::Format { .. }), "{err}");
    }
}
