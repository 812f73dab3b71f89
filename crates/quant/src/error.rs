//! The one error type of compress-quant.

/// Result alias of this crate.
pub type Result<T, E = QuantError> = std::result::Result<T, E>;

/// Everything that can go wrong while simulating, folding or exporting a quantized model.
/// (The math and calibration functions report compress-core's [`CompressError`](compress_core::CompressError).)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// A quantization request Burn's quantized tensors cannot represent (affine calibration,
    /// a block Burn cannot express, a bad scale, a parameter already quantized).
    #[error("cannot quantize '{path}': {reason}")]
    UnsupportedQuant {
        /// The parameter (or layer) path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A calibration without an entry a layer needs (the int8 deploy layers).
    #[error("the calibration has no '{target}' entry for '{module}'")]
    MissingCalibration {
        /// The layer path.
        module: String,
        /// The target name (`weight`, `_input_`).
        target: String,
    },
    /// A saved model file that does not fit the model it is loaded into.
    #[error("'{file}' does not match the model: {message}")]
    ModelFileMismatch {
        /// The file.
        file: String,
        /// What does not fit.
        message: String,
    },
    /// A module path the model does not have.
    #[error("'{path}' is not a module of the model")]
    UnknownModule {
        /// The path as given.
        path: String,
    },
    /// A parameter path the model does not have.
    #[error("'{path}' is not a parameter of the model")]
    UnknownParam {
        /// The path as given.
        path: String,
    },
    /// A value whose shape does not fit the parameter.
    #[error("shape mismatch for '{path}': expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// The parameter path.
        path: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// What was given.
        found: Vec<usize>,
    },
    /// A layer and a BatchNorm named for folding whose forward does not connect them directly.
    #[error("cannot fold '{bn}' into '{layer}': they are not adjacent ({reason})")]
    NotAdjacent {
        /// The conv or Linear layer.
        layer: String,
        /// The BatchNorm.
        bn: String,
        /// What the captured graph shows instead.
        reason: String,
    },
    /// A fusion group that cannot be folded (wrong layer types, sizes, a layer named twice).
    #[error("cannot fuse {group:?}: {reason}")]
    UnsupportedFusion {
        /// The group as given.
        group: Vec<String>,
        /// Why.
        reason: String,
    },
    /// A model-size budget that mixed precision cannot meet even with every weight at its
    /// fewest bits; `closest` is the smallest file it can write.
    #[error(
        "the size budget of {budget} bytes cannot be met: with every quantized weight at \
         {bits} bits the file is {closest} bytes ({closest_ratio:.2}x smaller than the f32 \
         file of {f32_bytes} bytes), the closest achievable"
    )]
    BudgetUnreachable {
        /// The budget in bytes.
        budget: u64,
        /// The smallest achievable file, in bytes.
        closest: u64,
        /// How many times smaller than the f32 file that is.
        closest_ratio: f64,
        /// The fewest bits tried.
        bits: u32,
        /// The f32 file's size in bytes.
        f32_bytes: u64,
    },
    /// A malformed mixed-precision request (a size budget, a bit width, a config with no
    /// weight to choose bits for).
    #[error("invalid {key} '{value}': {reason}")]
    InvalidMixedPrecision {
        /// The option (`size_budget`, `bits`, `config`).
        key: &'static str,
        /// The value as given.
        value: String,
        /// Why.
        reason: String,
    },
    /// A file that cannot be read or written.
    #[error(transparent)]
    Io(#[from] compress_core::error::FileError),
    /// An error from compress-core (config, calibration, masks, indexing).
    #[error(transparent)]
    Core(#[from] compress_core::CompressError),
    /// An error from compress-graph (capture, replay); boxed, as it is large and rare.
    #[error(transparent)]
    Graph(Box<compress_graph::GraphError>),
}

/// The layer at `path` of `index`, or [`QuantError::UnknownModule`].
pub(crate) fn find_module<'a>(
    index: &'a compress_core::ModuleIndex,
    path: &str,
) -> Result<&'a compress_core::index::LayerInfo> {
    index.layer(path).ok_or_else(|| QuantError::UnknownModule {
        path: path.to_string(),
    })
}

impl From<compress_graph::GraphError> for QuantError {
    fn from(e: compress_graph::GraphError) -> Self {
        QuantError::Graph(Box::new(e))
    }
}
