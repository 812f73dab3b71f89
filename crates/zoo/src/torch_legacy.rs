//! A reader for PyTorch's legacy (pre-1.6, non-zip) `torch.save` format, enough for a
//! `state_dict` of float tensors.
//!
//! burn-store 0.22.1's `PytorchStore` delegates to the `pytorch-reader` crate (upstream's reader
//! documents legacy-format support; that crate's source is not in this workspace's registry), and
//! it sits behind burn's `pytorch` feature: enabling it changes the workspace's one burn feature
//! set (a rebuild of burn for every crate) and adds a crate the lock file does not have. This reader is the documented conversion instead: it turns the checkpoint into
//! PyTorch-named float tensors, which [`crate::load`] writes into an in-memory safetensors
//! buffer and loads through burn-store's `SafetensorsStore` with its `PyTorchToBurnAdapter`,
//! exactly as the zoo loads every other PyTorch checkpoint.
//!
//! The format is five pickles (protocol 2) followed by raw storages:
//! 1. the magic number `0x1950a86a20f9469cfc6c`;
//! 2. the protocol version (1001);
//! 3. system info (`little_endian`, type sizes);
//! 4. the object (an `OrderedDict` of tensors). Each tensor is a
//!    `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`
//!    call whose storage is a persistent id `('storage', torch.FloatStorage, key, location,
//!    numel)`;
//! 5. the storage keys, in the order their data follows;
//!
//! then, per storage, its element count (8 bytes, little endian) and its elements. Tensors are
//! views of their storages (offset and strides are honoured: checkpoints converted from
//! TensorFlow keep TF's memory order through transposed strides).

use std::collections::HashMap;

/// One float tensor of the checkpoint, contiguous in PyTorch's (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    /// The `state_dict` key.
    pub name: String,
    /// PyTorch's shape.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<f32>,
}

/// The legacy format's magic number (first pickle).
const MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// The protocol version `torch.save` wrote before the zip format (second pickle).
const PROTOCOL_VERSION: i128 = 1001;

/// Whether the file at `path` starts like a legacy `torch.save` file (a protocol-2 pickle of a
/// 10-byte long: the magic number). `false` for unreadable files.
pub fn is_legacy_file(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == [0x80, 2, 0x8a, 10]
}

/// A pickled value, as far as `torch.save`'s legacy `state_dict` pickles need.
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i128),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A persistent id (a storage reference).
    Persistent(Box<Value>),
    /// `_rebuild_tensor_v2(storage, offset, size, stride, ..)`.
    Tensor(View),
    /// A marker on the stack (`MARK`).
    Mark,
}

/// A tensor view: storage key, element offset, shape, strides.
#[derive(Debug, Clone)]
struct View {
    storage: String,
    dtype: StorageType,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// The storage element types this reader converts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StorageType {
    Float,
    Double,
    Long,
    Int,
}

impl StorageType {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::Float,
            "DoubleStorage" => Self::Double,
            "LongStorage" => Self::Long,
            "IntStorage" => Self::Int,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::Float | Self::Int => 4,
            Self::Double | Self::Long => 8,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Self::Float | Self::Double)
    }
}

/// A byte cursor over the file.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| {
            format!(
                "truncated: {n} bytes wanted at offset {}, file has {}",
                self.pos,
                self.bytes.len()
            )
        })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated GLOBAL line")?;
        let line = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.pos += len + 1;
        Ok(line)
    }
}

/// Read the float tensors of a legacy `torch.save` file (integer tensors such as BatchNorm's
/// `num_batches_tracked` are skipped), in the file's order.
///
/// # Errors
/// A message saying what is wrong (not the legacy format, an unsupported pickle opcode, global
/// or storage type, a truncated file); the caller adds the path.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<TorchTensor>, String> {
    let mut cursor = Cursor { bytes, pos: 0 };
    let not_legacy = || {
        "not a legacy (non-zip) torch.save file: the magic number is missing (zip checkpoints \
         start with 'PK'; save with _use_new_zipfile_serialization=False or convert to \
         safetensors)"
            .to_string()
    };
    match unpickle(&mut cursor) {
        Ok(Value::Int(MAGIC)) => {}
        _ => return Err(not_legacy()),
    }
    match unpickle(&mut cursor)? {
        Value::Int(PROTOCOL_VERSION) => {}
        other => return Err(format!("unsupported torch.save protocol version {other:?}")),
    }
    if let Value::Dict(info) = unpickle(&mut cursor)? {
        let big_endian = info.iter().any(
            |(k, v)| matches!((k, v), (Value::Str(k), Value::Bool(false)) if k == "little_endian"),
        );
        if big_endian {
            return Err("big-endian checkpoints are not supported".into());
        }
    }
    let entries = match unpickle(&mut cursor)? {
        Value::Dict(entries) => entries,
        other => return Err(format!("expected a state_dict, found {}", kind(&other))),
    };
    let keys = match unpickle(&mut cursor)? {
        Value::List(keys) => keys,
        other => return Err(format!("expected the storage keys, found {}", kind(&other))),
    };
    let views: Vec<(String, View)> = entries
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(name), Value::Tensor(view)) => Ok((name, view)),
            (k, v) => Err(format!(
                "state_dict entry {k:?} is a {}, not a tensor",
                kind(&v)
            )),
        })
        .collect::<Result<_, _>>()?;
    let types: HashMap<&str, StorageType> = views
        .iter()
        .map(|(_, v)| (v.storage.as_str(), v.dtype))
        .collect();
    let mut storages: HashMap<String, (StorageType, &[u8])> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err("a storage key is not a string".into());
        };
        let count = u64::from_le_bytes(cursor.take(8)?.try_into().expect("8 bytes"));
        let dtype = *types
            .get(key.as_str())
            .ok_or_else(|| format!("storage '{key}' is not used by any tensor"))?;
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(dtype.size()))
            .ok_or_else(|| format!("storage '{key}' has an impossible size {count}"))?;
        storages.insert(key, (dtype, cursor.take(len)?));
    }
    views
        .into_iter()
        .filter(|(_, view)| view.dtype.is_float())
        .map(|(name, view)| {
            let (dtype, raw) = storages
                .get(&view.storage)
                .ok_or_else(|| format!("tensor '{name}': storage '{}' is missing", view.storage))?;
            let data = gather(raw, *dtype, &view).map_err(|e| format!("tensor '{name}': {e}"))?;
            Ok(TorchTensor {
                name,
                shape: view.shape,
                data,
            })
        })
        .collect()
}

/// The view's elements in row-major order, read through its offset and strides.
fn gather(raw: &[u8], dtype: StorageType, view: &View) -> Result<Vec<f32>, String> {
    let numel = raw.len() / dtype.size();
    let count: usize = view.shape.iter().product();
    if count > 0 {
        let last = view.offset
            + view
                .shape
                .iter()
                .zip(&view.stride)
                .map(|(&d, &s)| (d - 1) * s)
                .sum::<usize>();
        if last >= numel {
            return Err(format!(
                "view {:?} / strides {:?} at offset {} reads past its storage of {numel}",
                view.shape, view.stride, view.offset
            ));
        }
    }
    let read = |i: usize| -> f32 {
        let b = &raw[i * dtype.size()..(i + 1) * dtype.size()];
        match dtype {
            StorageType::Float => f32::from_le_bytes(b.try_into().expect("4 bytes")),
            StorageType::Double => f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
            StorageType::Long => i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
            StorageType::Int => i32::from_le_bytes(b.try_into().expect("4 bytes")) as f32,
        }
    };
    let mut out = Vec::with_capacity(count);
    let mut index = vec![0usize; view.shape.len()];
    for _ in 0..count {
        let at = view.offset
            + index
                .iter()
                .zip(&view.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.push(read(at));
        // Next index, last axis fastest.
        for axis in (0..index.len()).rev() {
            index[axis] += 1;
            if index[axis] < view.shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Ok(out)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Str(_) => "str",
        Value::Tuple(_) => "tuple",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Global(..) => "global",
        Value::Persistent(_) => "persistent id",
        Value::Tensor(_) => "tensor",
        Value::Mark => "mark",
    }
}

fn as_usize(value: &Value, what: &str) -> Result<usize, String> {
    match value {
        Value::Int(i) => usize::try_from(*i).map_err(|_| format!("{what} {i} is negative")),
        other => Err(format!("{what} is a {}, not an int", kind(other))),
    }
}

fn as_usizes(value: &Value, what: &str) -> Result<Vec<usize>, String> {
    match value {
        Value::Tuple(items) => items.iter().map(|v| as_usize(v, what)).collect(),
        other => Err(format!("{what} is a {}, not a tuple", kind(other))),
    }
}

/// `callable(*args)` for the globals a `state_dict` pickle calls.
fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Tuple(args) = args else {
        return Err("REDUCE arguments are not a tuple".into());
    };
    match callable {
        Value::Global(m, n) if m == "collections" && n == "OrderedDict" => {
            Ok(Value::Dict(Vec::new()))
        }
        Value::Global(m, n) if m == "torch._utils" && n == "_rebuild_tensor_v2" => {
            if args.len() < 4 {
                return Err(format!("_rebuild_tensor_v2 with {} arguments", args.len()));
            }
            let Value::Persistent(pid) = &args[0] else {
                return Err("_rebuild_tensor_v2: the storage is not a persistent id".into());
            };
            let (dtype, storage) = match pid.as_ref() {
                Value::Tuple(p) if p.len() >= 3 => match (&p[1], &p[2]) {
                    (Value::Global(_, ty), Value::Str(key)) => {
                        let dtype = StorageType::from_name(ty)
                            .ok_or_else(|| format!("unsupported storage type torch.{ty}"))?;
                        (dtype, key.clone())
                    }
                    _ => return Err("malformed storage persistent id".into()),
                },
                _ => return Err("malformed storage persistent id".into()),
            };
            let shape = as_usizes(&args[2], "tensor size")?;
            let stride = as_usizes(&args[3], "tensor stride")?;
            if shape.len() != stride.len() {
                return Err(format!(
                    "size {shape:?} and stride {stride:?} differ in rank"
                ));
            }
            Ok(Value::Tensor(View {
                storage,
                dtype,
                offset: as_usize(&args[1], "storage offset")?,
                shape,
                stride,
            }))
        }
        Value::Global(m, n) => Err(format!("unsupported pickle global {m}.{n}")),
        other => Err(format!("REDUCE on a {}", kind(&other))),
    }
}

/// Unpickle one object (protocol 2 opcodes that `torch.save` emits for a `state_dict`).
fn unpickle(cursor: &mut Cursor) -> Result<Value, String> {
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let pop = |stack: &mut Vec<Value>| {
        stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".to_string())
    };
    let pop_mark = |stack: &mut Vec<Value>| -> Result<Vec<Value>, String> {
        let mark = stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("pickle MARK missing")?;
        let items = stack.split_off(mark + 1);
        stack.pop();
        Ok(items)
    };
    loop {
        let op = cursor.u8()?;
        match op {
            0x80 => {
                let proto = cursor.u8()?;
                if proto > 2 {
                    return Err(format!(
                        "pickle protocol {proto} (legacy torch.save uses 2)"
                    ));
                }
            }
            b'.' => return pop(&mut stack),
            b'(' => stack.push(Value::Mark),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'K' => stack.push(Value::Int(cursor.u8()?.into())),
            b'M' => stack.push(Value::Int(cursor.u16()?.into())),
            b'J' => stack.push(Value::Int((cursor.u32()? as i32).into())),
            0x8a => {
                let n = cursor.u8()? as usize;
                if n > 16 {
                    return Err(format!("LONG1 of {n} bytes"));
                }
                let bytes = cursor.take(n)?;
                let mut buf = [0u8; 16];
                buf[..n].copy_from_slice(bytes);
                if n > 0 && bytes[n - 1] & 0x80 != 0 {
                    buf[n..].fill(0xff);
                }
                stack.push(Value::Int(i128::from_le_bytes(buf)));
            }
            b'X' => {
                let len = cursor.u32()? as usize;
                let s = std::str::from_utf8(cursor.take(len)?).map_err(|e| e.to_string())?;
                stack.push(Value::Str(s.to_string()));
            }
            b'c' => {
                let module = cursor.line()?;
                let name = cursor.line()?;
                stack.push(Value::Global(module, name));
            }
            b'q' => {
                let key = cursor.u8()?.into();
                memo.insert(key, stack.last().ok_or("BINPUT on an empty stack")?.clone());
            }
            b'r' => {
                let key = cursor.u32()?;
                memo.insert(
                    key,
                    stack.last().ok_or("LONG_BINPUT on an empty stack")?.clone(),
                );
            }
            b'h' | b'j' => {
                let key = if op == b'h' {
                    cursor.u8()?.into()
                } else {
                    cursor.u32()?
                };
                let value = memo.get(&key).ok_or(format!("memo {key} unset"))?;
                stack.push(value.clone());
            }
            b')' => stack.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err("pickle stack underflow".into());
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b']' => stack.push(Value::List(Vec::new())),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b'a' | b'e' => {
                let items = if op == b'a' {
                    vec![pop(&mut stack)?]
                } else {
                    pop_mark(&mut stack)?
                };
                match stack.last_mut() {
                    Some(Value::List(list)) => list.extend(items),
                    _ => return Err("APPEND to a non-list".into()),
                }
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let value = pop(&mut stack)?;
                    vec![pop(&mut stack)?, value]
                } else {
                    pop_mark(&mut stack)?
                };
                if items.len() % 2 != 0 {
                    return Err("SETITEMS with an odd number of items".into());
                }
                match stack.last_mut() {
                    Some(Value::Dict(dict)) => {
                        let mut items = items.into_iter();
                        while let (Some(k), Some(v)) = (items.next(), items.next()) {
                            dict.push((k, v));
                        }
                    }
                    _ => return Err("SETITEM on a non-dict".into()),
                }
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(Value::Persistent(Box::new(pid)));
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(reduce(callable, args)?);
            }
            // BUILD: the state_dict's `_metadata` (module versions) set on the OrderedDict.
            b'b' => {
                pop(&mut stack)?;
            }
            other => {
                return Err(format!(
                    "unsupported pickle opcode 0x{other:02x} at offset {}",
                    cursor.pos - 1
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written legacy file: one 2x3 float tensor stored transposed (strides [1, 2]) and
    /// one long tensor, which is skipped.
    fn legacy_file() -> Vec<u8> {
        let mut f = Vec::new();
        // 1: magic (LONG1, 10 bytes).
        f.extend([0x80, 2, 0x8a, 10]);
        f.extend(&MAGIC.to_le_bytes()[..10]);
        f.push(b'.');
        // 2: protocol 1001 (BININT2).
        f.extend([0x80, 2, b'M']);
        f.extend(1001u16.to_le_bytes());
        f.push(b'.');
        // 3: system info {}.
        f.extend([0x80, 2, b'}', b'.']);
        // 4: OrderedDict([('w', tensor), ('n', long tensor)]).
        let s = |f: &mut Vec<u8>, s: &str| {
            f.push(b'X');
            f.extend((s.len() as u32).to_le_bytes());
            f.extend(s.as_bytes());
        };
        f.extend([0x80, 2]);
        f.extend(b"ccollections\nOrderedDict\n)R(");
        for (name, ty, key, shape, stride) in [
            ("w", "FloatStorage", "0", [2u8, 3], [1u8, 2]),
            ("n", "LongStorage", "1", [1, 1], [1, 1]),
        ] {
            s(&mut f, name);
            f.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
            f.push(b'(');
            s(&mut f, "storage");
            f.extend(format!("ctorch\n{ty}\n").as_bytes());
            s(&mut f, key);
            s(&mut f, "cpu");
            f.extend([b'K', 6, b't', b'Q', b'K', 0]);
            f.extend([b'K', shape[0], b'K', shape[1], 0x86]);
            f.extend([b'K', stride[0], b'K', stride[1], 0x86]);
            f.extend([0x89, b')', b't', b'R']);
        }
        f.extend([b'u', b'.']);
        // 5: storage keys.
        f.extend([0x80, 2, b']', b'(']);
        s(&mut f, "0");
        s(&mut f, "1");
        f.extend([b'e', b'.']);
        f.extend(6u64.to_le_bytes());
        for v in [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0] {
            f.extend(v.to_le_bytes());
        }
        f.extend(6u64.to_le_bytes());
        f.extend([0u8; 48]);
        f
    }

    #[test]
    fn a_transposed_view_is_read_in_row_major_order() {
        let tensors = read_state_dict(&legacy_file()).unwrap();
        assert_eq!(
            tensors,
            vec![TorchTensor {
                name: "w".into(),
                shape: vec![2, 3],
                // Element (i, j) sits at storage index i + 2 j.
                data: vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0],
            }]
        );
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_what_is_short() {
        let file = legacy_file();
        let err = read_state_dict(&file[..file.len() - 10]).unwrap_err();
        assert!(err.starts_with("truncated: 48 bytes wanted"), "{err}");
    }

    #[test]
    fn a_zip_checkpoint_is_refused_with_a_hint() {
        let err = read_state_dict(b"PK\x03\x04rest").unwrap_err();
        assert!(
            err.starts_with("not a legacy (non-zip) torch.save file"),
            "{err}"
        );
    }
}
