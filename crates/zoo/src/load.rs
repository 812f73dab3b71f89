//! Loading PyTorch-named safetensors into zoo models.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use safetensors::tensor::{Dtype, Metadata, TensorView};

use crate::torch_legacy::TorchTensor;

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
    /// A data file the project fetches (`data/external/NAME/...`) is not there.
    #[error("'{}' not found: run `cargo xtask fetch {fetch}`", .path.display())]
    MissingData {
        /// The file or folder looked for.
        path: PathBuf,
        /// The name to give `cargo xtask fetch`.
        fetch: String,
    },
    /// An image that does not decode, or whose file name carries no label.
    #[error("image '{}': {message}", .path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// What went wrong.
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

/// [`ZooError::MissingData`] when `path` lies under `data/external/NAME/` (the fetched data's
/// layout), so the message names `cargo xtask fetch NAME`; [`ZooError::Read`] otherwise.
pub(crate) fn missing(path: &Path) -> ZooError {
    let parts: Vec<_> = path.components().map(|c| c.as_os_str()).collect();
    let fetch = parts
        .windows(3)
        .find(|w| w[0] == "data" && w[1] == "external")
        .map(|w| w[2].to_string_lossy().into_owned());
    match fetch {
        Some(fetch) => ZooError::MissingData {
            path: path.to_path_buf(),
            fetch,
        },
        None => ZooError::Read {
            path: path.to_path_buf(),
            message: "no such file".into(),
        },
    }
}

/// Load PyTorch-named float tensors (read from a legacy `torch.save` file by
/// [`crate::torch_legacy`]) into `model`, through an in-memory safetensors buffer and
/// burn-store's `PyTorchToBurnAdapter`, as [`load_pytorch_safetensors`] does. Every shape is
/// checked; a tensor the model needs but the file lacks is an error naming its PyTorch key
/// (BatchNorm's `weight`/`bias`, not Burn's `gamma`/`beta`). Tensors the model does not have are
/// ignored.
///
/// # Errors
/// [`ZooError::Mismatch`] for missing tensors and shape mismatches.
pub(crate) fn load_torch_tensors<M: Module>(
    model: M,
    tensors: &[TorchTensor],
    path: &Path,
    arch: &str,
) -> Result<M, ZooError> {
    let mismatch = |message: String| ZooError::Mismatch {
        path: path.to_path_buf(),
        arch: arch.to_string(),
        message,
    };
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|view| (t.name.clone(), view))
                .map_err(|e| mismatch(format!("tensor '{}': {e}", t.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let buffer = safetensors::serialize(views, &None)
        .map_err(|e| mismatch(format!("cannot convert to safetensors: {e}")))?;
    let mut model = model;
    let mut store = SafetensorsStore::from_bytes(Some(buffer))
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true)
        .validate(false);
    let result = model
        .load_from(&mut store)
        .map_err(|e| mismatch(e.to_string()))?;
    let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    problems.extend(result.missing.iter().map(|(p, _)| {
        // Back to the PyTorch key the adapter renamed (norm `weight`/`bias` -> `gamma`/`beta`).
        let key = match p.rsplit_once('.') {
            Some((prefix, "gamma")) => format!("{prefix}.weight"),
            Some((prefix, "beta")) => format!("{prefix}.bias"),
            _ => p.clone(),
        };
        format!("missing tensor '{key}'")
    }));
    if problems.is_empty() {
        Ok(model)
    } else {
        Err(mismatch(problems.join("; ")))
    }
}
