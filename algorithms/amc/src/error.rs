//! The crate's errors: bad input ([`AmcError`]) and what a search can add ([`SearchError`]).

/// Bad input to AMC: a config key, a layer, or a budget. Every variant names what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AmcError {
    /// A config key holds a value outside its range.
    #[error("AMC config key `{key}` = {value} is invalid: expected {expected}")]
    InvalidConfig {
        /// The key, as spelled in a config file.
        key: &'static str,
        /// The value given.
        value: String,
        /// The valid range.
        expected: &'static str,
    },
    /// No layer to search over.
    #[error("AMC needs at least one layer to prune: the search space is empty")]
    EmptySearchSpace,
    /// Two layers share a name.
    #[error("AMC layer `{0}` is listed twice")]
    DuplicateLayer(String),
    /// A layer field is invalid.
    #[error("AMC layer `{layer}`: {reason}")]
    InvalidLayer {
        /// The layer's name.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// A layer's `input_from` does not name an earlier layer.
    #[error(
        "AMC layer `{layer}` takes its input from `{input}`, which is not a layer listed before it"
    )]
    UnknownInput {
        /// The consuming layer.
        layer: String,
        /// The name it gave.
        input: String,
    },
    /// The budget fraction is not in `(0, 1)`.
    #[error(
        "AMC budget fraction {0} is invalid: expected the fraction of the prunable {1} to remove, in (0, 1)"
    )]
    InvalidBudget(f64, &'static str),
    /// The per-layer maximum ratios cannot remove as much as asked.
    #[error(
        "AMC cannot remove {requested} of the prunable {measure}: with these per-layer maximum ratios at most {achievable:.6} can be removed"
    )]
    BudgetUnreachable {
        /// The fraction asked for.
        requested: f64,
        /// The closest achievable fraction: `sum(cost_i * max_ratio_i) / sum(cost_i)`.
        achievable: f64,
        /// `"FLOPs"` or `"parameters"`.
        measure: &'static str,
    },
}

/// Why a search stopped: bad input, or the caller's evaluation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError<E> {
    /// Bad input (config, layers, budget).
    #[error(transparent)]
    Invalid(#[from] AmcError),
    /// The evaluation callback failed on an episode's ratios.
    #[error("AMC episode {episode}: evaluating its ratios failed: {source}")]
    Evaluate {
        /// The episode (0-based).
        episode: usize,
        /// The callback's error.
        #[source]
        source: E,
    },
    /// The evaluation callback returned NaN or an infinity.
    #[error("AMC episode {episode}: the evaluation returned {score}, expected a finite score")]
    NonFiniteScore {
        /// The episode (0-based).
        episode: usize,
        /// The score returned.
        score: f64,
    },
}
