//! The one error type of compress-speedup.

/// Result alias of this crate.
pub type Result<T, E = SpeedupError> = std::result::Result<T, E>;

/// Everything that can go wrong while capturing, planning or applying a speedup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpeedupError {
    /// Burn refused the capture.
    #[error("graph capture failed: {0}")]
    Capture(String),
    /// An op that has no dependency rule touches a tensor whose channels can be pruned.
    #[error(
        "unsupported op '{op}' (op #{index}, {location}): it has no channel rule; register one for custom ops, or exclude the layers that feed it"
    )]
    UnsupportedOp {
        /// The op's kind.
        op: String,
        /// Its position in the captured graph.
        index: usize,
        /// The last layer before it (`after layer 'fc1'`).
        location: String,
    },
    /// A mask or plan entry for a parameter the model does not have.
    #[error("'{path}' is not a parameter of the model")]
    UnknownParam {
        /// The path as given.
        path: String,
    },
    /// A mask or plan whose shape does not fit the parameter.
    #[error("shape mismatch for '{path}': expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// The parameter path.
        path: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// What was given.
        found: Vec<usize>,
    },
    /// Pruning would remove every channel of a layer.
    #[error(
        "pruning would leave '{layer}' with no channels (every index of {param} axis {axis} is pruned); lower its ratio or exclude it"
    )]
    EmptyLayer {
        /// The layer path.
        layer: String,
        /// The parameter that would be empty.
        param: String,
        /// Its axis.
        axis: usize,
    },
    /// A grouped conv whose groups would keep different channel counts.
    #[error(
        "grouped conv '{layer}' would keep {counts:?} output channels per group; groups must stay equal (set internal_metric_block = {groups} in its dependency group)"
    )]
    UnbalancedGroups {
        /// The conv's path.
        layer: String,
        /// Its group count.
        groups: usize,
        /// Kept channels per group.
        counts: Vec<usize>,
    },
    /// A plan that does not fit the model it is applied to.
    #[error("the plan does not fit the model: {0}")]
    PlanMismatch(String),
    /// A plan file that cannot be read.
    #[error("plan file '{path}' is invalid: {message}")]
    InvalidPlan {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A file that cannot be read or written.
    #[error("cannot access '{path}': {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// A captured graph that cannot be replayed (input shape, missing parameter, an op without
    /// a replay rule, named).
    #[error("graph replay: {0}")]
    Replay(String),
    /// An error from compress-core (masks, indexing).
    #[error(transparent)]
    Core(#[from] compress_core::CompressError),
    /// A quantization request Burn's quantized tensors cannot represent (affine calibration,
    /// a block Burn cannot express, a bad scale, a parameter already quantized).
    #[error("cannot quantize '{path}': {reason}")]
    UnsupportedQuant {
        /// The parameter (or layer) path.
        path: String,
        /// Why.
        reason: String,
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
}
