//! The one error type of compress-speedup.

/// Result alias of this crate.
pub type Result<T, E = SpeedupError> = std::result::Result<T, E>;

/// Everything that can go wrong while capturing, planning or applying a speedup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpeedupError {
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
    /// An error from compress-core (masks, indexing).
    #[error(transparent)]
    Core(#[from] compress_core::CompressError),
    /// An error from compress-graph (capture, an op without a channel rule).
    #[error(transparent)]
    Graph(#[from] compress_graph::GraphError),
}
