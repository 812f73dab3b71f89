//! The one error type of compress-graph.

/// Result alias of this crate.
pub type Result<T, E = GraphError> = std::result::Result<T, E>;

/// Everything that can go wrong while capturing, analysing or replaying a graph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
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
    /// A captured graph that cannot be replayed (input shape, missing parameter, an op without
    /// a replay rule, named).
    #[error("graph replay: {0}")]
    Replay(String),
    /// An op the replay cannot execute: the op table has no execution for it.
    #[error("op #{index} ({op}) cannot be replayed: the op table has no execution for it")]
    NotExecutable {
        /// The op's kind.
        op: String,
        /// Its position in the captured graph.
        index: usize,
    },
    /// An op whose family has no ONNX mapping for it.
    #[error("op #{index} ({op}) has no ONNX mapping")]
    Unmapped {
        /// The op's kind.
        op: String,
        /// Its position in the captured graph.
        index: usize,
    },
    /// An ONNX export that cannot be written (no input, a missing parameter, bad quantization
    /// parameters).
    #[error("ONNX export: {0}")]
    Export(String),
    /// An error from compress-core (indexing, a tap's error); boxed so that errors which wrap
    /// this one stay small.
    #[error(transparent)]
    Core(Box<compress_core::CompressError>),
}

impl From<compress_core::CompressError> for GraphError {
    fn from(e: compress_core::CompressError) -> Self {
        GraphError::Core(Box::new(e))
    }
}
