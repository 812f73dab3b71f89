//! The one error type of compress-speedup.

/// Result alias of this crate.
pub type Result<T, E = SpeedupError> = std::result::Result<T, E>;

/// Everything that can go wrong while capturing, planning or applying a speedup. A parameter
/// the model does not have, or a mask of the wrong shape, is compress-core's
/// [`CompressError::UnknownParam`](compress_core::CompressError::UnknownParam) or
/// [`CompressError::ShapeMismatch`](compress_core::CompressError::ShapeMismatch) in [`SpeedupError::Core`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpeedupError {
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
    /// An RMS norm lost channels but the model's `FixStructure` never rescaled its epsilon.
    #[error(
        "RMS norm '{layer}' lost channels but its epsilon was not rescaled: the model's FixStructure does not reach it (forward fix_structure to the RmsNorm, or call compress_core::structure::epsilon_factor in your own norm's impl)"
    )]
    UnfixedNorm {
        /// The norm's layer path.
        layer: String,
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
    #[error(transparent)]
    Io(#[from] compress_core::error::FileError),
    /// An error from compress-core (masks, indexing).
    #[error(transparent)]
    Core(#[from] compress_core::CompressError),
    /// An error from compress-graph (capture, an op without a channel rule).
    #[error(transparent)]
    Graph(#[from] compress_graph::GraphError),
}
