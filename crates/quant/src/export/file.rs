//! File I/O: burnpack files of quantized models.

use compress_core::error::FileError;

use super::*;

/// Write `model` (quantized or not) to `path` (used as given) as a burnpack file. 4- and 2-bit
/// tensors are packed into `u32`s (`QuantStore::PackedU32`); 8-bit ones take one byte per value;
/// float tensors are stored as they are. An existing file is replaced.
///
/// # Errors
/// [`QuantError::Io`] when the file cannot be written.
pub fn save_quantized<M: Module>(model: &M, path: impl AsRef<Path>) -> Result<PathBuf> {
    let path = path.as_ref().to_path_buf();
    let mut store = BurnpackStore::from_file(&path)
        .auto_extension(false)
        .overwrite(true)
        // As `Module::save_file`: no metadata entries (they can push the header across a
        // 256-byte boundary, which costs a small model 0.4%).
        .clear_metadata()
        .with_to_adapter(PackSubByte);
    model
        .save_into(&mut store)
        .map_err(|e| FileError::new(&path, e))?;
    Ok(path)
}

/// The exact size in bytes of the file [`save_quantized`] writes for `model` (quantized or not),
/// counted by writing the same burnpack container into memory: the same header, alignment and
/// packed 4- and 2-bit words, no file touched. For a float model this is the size of
/// `Module::save_file`'s file (neither writes metadata).
///
/// # Errors
/// [`QuantError::UnsupportedQuant`] when burn-store refuses a tensor of the model.
pub fn burnpack_size<M: Module>(model: &M) -> Result<u64> {
    let mut store = BurnpackStore::from_bytes(None)
        .clear_metadata()
        .with_to_adapter(PackSubByte);
    let unsupported = |e: String| QuantError::UnsupportedQuant {
        path: "<model>".into(),
        reason: format!("burn-store cannot write it: {e}"),
    };
    model
        .save_into(&mut store)
        .map_err(|e| unsupported(e.to_string()))?;
    let bytes = store.get_bytes().map_err(|e| unsupported(e.to_string()))?;
    Ok(bytes.len() as u64)
}

/// Load what [`save_quantized`] wrote into `template`, a fresh model of the same type: every
/// parameter takes the file's dtype (quantized or float) and values. The file must hold exactly
/// the template's parameters, with the same shapes.
///
/// # Errors
/// [`QuantError::Io`] when the file cannot be read, [`QuantError::ModelFileMismatch`] when
/// it is not a burnpack file, lacks a parameter of the template, holds one the template does not
/// have, has another shape, or holds a quantized format this crate does not read (float-point
/// quantization, two-level scales, lookup tables).
pub fn load_quantized<M: Module>(template: M, path: impl AsRef<Path>) -> Result<M> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let mismatch = |message: String| QuantError::ModelFileMismatch {
        file: file.clone(),
        message,
    };
    std::fs::metadata(path).map_err(|e| FileError::new(path, e))?;
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    let stored: Vec<PackTensor> = store
        .get_all_tensors()
        .map_err(|e| mismatch(format!("not a readable burnpack file: {e}")))?
        .values()
        .cloned()
        .collect();
    let index = ModuleIndex::from_module(&template);
    let names: BTreeSet<&str> = stored.iter().map(|t| t.name.as_str()).collect();
    if let Some(p) = index.params().find(|p| !names.contains(p.path.as_str())) {
        return Err(mismatch(format!("it has no tensor '{}'", p.path)));
    }
    let mut tensors = Vec::with_capacity(stored.len());
    for t in stored {
        let Some(info) = index.param(&t.name) else {
            return Err(mismatch(format!(
                "it holds '{}', which the model does not have",
                t.name
            )));
        };
        if t.shape.as_slice() != info.shape.as_slice() {
            return Err(mismatch(format!(
                "'{}' has shape {:?} in the file, {:?} in the model",
                t.name,
                t.shape.as_slice(),
                info.shape
            )));
        }
        tensors.push(decode(t).map_err(&mismatch)?);
    }
    let mut model = template;
    let result = model.apply(tensors, None, None, false);
    if let Some(e) = result.errors.first() {
        return Err(mismatch(e.to_string()));
    }
    if let Some((name, _)) = result.missing.first() {
        return Err(mismatch(format!("it has no tensor '{name}'")));
    }
    if let Some(name) = result.unused.first() {
        return Err(mismatch(format!(
            "it holds '{name}', which the model does not have"
        )));
    }
    Ok(model)
}
