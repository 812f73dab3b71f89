//! Loading PyTorch-named safetensors into zoo models.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use safetensors::tensor::Metadata;

/// What can go wrong when building or loading a zoo model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZooError {
    /// A model name the zoo does not have.
    #[error("unknown architecture '{name}' (available: {available})")]
    UnknownArch {
        /// The name as given.
        name: String,
        /// The zoo's names.
        available: String,
    },
    /// The weights file could not be read.
    #[error("cannot read weights '{}': {message}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the store said.
        message: String,
    },
    /// The weights do not fit the architecture.
    #[error("weights '{}' do not fit '{arch}': {message}", .path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The architecture.
        arch: String,
        /// What does not fit (shape mismatches name the tensor, missing tensors are listed).
        message: String,
    },
    /// An input shape the architecture does not take.
    #[error("input shape {shape:?} does not fit '{arch}': {expected}")]
    InputShape {
        /// The architecture.
        arch: String,
        /// The shape given.
        shape: Vec<usize>,
        /// What the architecture takes, in words.
        expected: String,
    },
}

/// Load PyTorch-named safetensors (`conv1.weight [out, in, k, k]`, `fc.weight [out, in]`,
/// `bn1.weight`) into `model`, checking every shape. Extra tensors PyTorch keeps but Burn does not
/// (`num_batches_tracked`) are ignored; a missing tensor is an error.
///
/// # Errors
/// [`ZooError::Read`] when the file cannot be read, [`ZooError::Mismatch`] when a tensor is
/// missing or has another shape.
pub fn load_pytorch_safetensors<M: Module>(
    model: M,
    path: &Path,
    arch: &str,
) -> Result<M, ZooError> {
    let mut model = model;
    if !path.is_file() {
        return Err(ZooError::Read {
            path: path.to_path_buf(),
            message: "no such file".into(),
        });
    }
    let mut store = SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter);
    let result = model
        .load_from(&mut store)
        .map_err(|e| ZooError::Mismatch {
            path: path.to_path_buf(),
            arch: arch.to_string(),
            message: e.to_string(),
        })?;
    let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    problems.extend(
        result
            .missing
            .iter()
            .map(|(p, _)| format!("missing tensor '{p}'")),
    );
    if !problems.is_empty() {
        return Err(ZooError::Mismatch {
            path: path.to_path_buf(),
            arch: arch.to_string(),
            message: problems.join("; "),
        });
    }
    Ok(model)
}

/// The shape of tensor `name` in the safetensors file at `path`, or `None` when the file has no
/// such tensor. Only the file's header is read.
///
/// # Errors
/// [`ZooError::Read`] when the file cannot be opened or its header is not safetensors.
pub fn safetensors_shape(path: &Path, name: &str) -> Result<Option<Vec<usize>>, ZooError> {
    // safetensors' own limit on the JSON header.
    const MAX_HEADER: u64 = 100_000_000;
    let read_error = |message: String| ZooError::Read {
        path: path.to_path_buf(),
        message,
    };
    let mut file = File::open(path).map_err(|e| {
        read_error(match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".into(),
            _ => e.to_string(),
        })
    })?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| read_error(format!("not a safetensors file (header length: {e})")))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(read_error(format!(
            "not a safetensors file (header of {len} bytes)"
        )));
    }
    let mut header = Vec::new();
    file.take(len)
        .read_to_end(&mut header)
        .map_err(|e| read_error(e.to_string()))?;
    if header.len() as u64 != len {
        return Err(read_error(format!(
            "not a safetensors file (header of {len} bytes, file ends after {})",
            header.len()
        )));
    }
    let metadata: Metadata = serde_json::from_slice(&header)
        .map_err(|e| read_error(format!("not a safetensors file (header: {e})")))?;
    Ok(metadata.info(name).map(|info| info.shape.clone()))
}
