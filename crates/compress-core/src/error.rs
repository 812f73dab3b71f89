//! The one error type of compress-core.

use std::path::PathBuf;

/// Result alias used across compress-core.
pub type Result<T, E = CompressError> = std::result::Result<T, E>;

/// Everything that can go wrong in compress-core.
///
/// Every variant names its culprit: the config key, the layer or parameter path, the shape or
/// the file. Messages are meant to be shown to users as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// The config file is not valid TOML.
    #[error("TOML syntax error at line {line}, column {column}: {message}")]
    TomlSyntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// A key that this config location does not know.
    #[error("unknown key '{key}' in {context}{}", suggestion_text(.suggestion))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it was found (e.g. `config_list[0]`).
        context: String,
        /// The closest known key, if one is close.
        suggestion: Option<String>,
    },
    /// A key has a value of the wrong type.
    #[error("key '{key}' in {context}: expected {expected}, found {found}")]
    WrongType {
        /// The key.
        key: String,
        /// Where it was found.
        context: String,
        /// The type we wanted.
        expected: String,
        /// The type that was given.
        found: String,
    },
    /// A numeric value outside its allowed range.
    #[error("key '{key}' in {context}: {value} is outside {range}")]
    OutOfRange {
        /// The key.
        key: String,
        /// Where it was found.
        context: String,
        /// The value given.
        value: f64,
        /// The allowed range, in words (e.g. `[0, 1]`).
        range: String,
    },
    /// Two keys that may not be given together.
    #[error("keys '{first}' and '{second}' in {context} cannot be set together")]
    ConflictingKeys {
        /// First key.
        first: String,
        /// Second key.
        second: String,
        /// Where they were found.
        context: String,
    },
    /// `min_sparse_ratio` above `max_sparse_ratio`.
    #[error("{context}: min_sparse_ratio ({min}) is greater than max_sparse_ratio ({max})")]
    MinAboveMax {
        /// Where it was found.
        context: String,
        /// The lower bound.
        min: f64,
        /// The upper bound.
        max: f64,
    },
    /// The config has no `[[config_list]]` entries.
    #[error("the config is empty: it needs at least one [[config_list]] table")]
    EmptyConfig,
    /// A rule that selects no module kind at all.
    #[error("{context}: a rule needs at least one of 'op_types', 'op_names' or 'op_names_re'")]
    MissingSelector {
        /// Where it was found.
        context: String,
    },
    /// A value that is not one of the allowed choices.
    #[error("key '{key}' in {context}: invalid value '{value}' ({reason})")]
    InvalidValue {
        /// The key.
        key: String,
        /// Where it was found.
        context: String,
        /// The value as written.
        value: String,
        /// Why it is refused, or the allowed choices.
        reason: String,
    },
    /// A quantization dtype that is not `int2`..`int8` or `uint2`..`uint8`.
    #[error("unknown quant_dtype '{value}' in {context}: expected int2..int8 or uint2..uint8")]
    UnknownQuantDtype {
        /// The value as written.
        value: String,
        /// Where it was found.
        context: String,
    },
    /// A granularity that cannot be parsed.
    #[error("invalid granularity {value} in {context}: {reason}")]
    InvalidGranularity {
        /// The value as written.
        value: String,
        /// Where it was found.
        context: String,
        /// Why it is refused.
        reason: String,
    },
    /// A regular expression that does not compile.
    #[error("regex '{pattern}' in {context} does not compile: {message}")]
    InvalidRegex {
        /// The pattern.
        pattern: String,
        /// Where it was found.
        context: String,
        /// The regex engine's message.
        message: String,
    },
    /// An `op_names` entry that is not a layer of the model.
    #[error("{context}: op name '{name}' is not a layer of the model{}", suggestion_text(.suggestion))]
    UnknownOpName {
        /// The name as written.
        name: String,
        /// Where it was found.
        context: String,
        /// The closest layer path, if one is close.
        suggestion: Option<String>,
    },
    /// A target name that the layer does not have.
    #[error(
        "{context}: layer '{layer}' ({layer_type}) has no target '{target}' (it has: {available})"
    )]
    UnknownTarget {
        /// The target name as written.
        target: String,
        /// The layer path.
        layer: String,
        /// The layer type.
        layer_type: String,
        /// The targets it has.
        available: String,
        /// Where it was found.
        context: String,
    },
    /// A selected layer whose type has no [`LayerSpec`](crate::layers::LayerSpec).
    #[error(
        "layer '{path}' has type '{type_name}', which has no LayerSpec: register one with inventory::submit!(LayerSpec {{ .. }})"
    )]
    UnsupportedLayer {
        /// The layer path.
        path: String,
        /// Its type name.
        type_name: String,
    },
    /// A block kernel that does not fit a tensor.
    #[error("granularity kernel {kernel:?} does not fit '{path}' of shape {shape:?}: {reason}")]
    KernelMismatch {
        /// The parameter path.
        path: String,
        /// The tensor shape.
        shape: Vec<usize>,
        /// The full (padded) kernel.
        kernel: Vec<i64>,
        /// What is wrong.
        reason: String,
    },
    /// Members of a dependency or global group that cannot be ranked together.
    #[error("{kind} group '{group}': {reason}")]
    GroupMismatch {
        /// `dependency` or `global`.
        kind: &'static str,
        /// The group id.
        group: String,
        /// What differs.
        reason: String,
    },
    /// A metric whose shape is not the shape the granularity asks for.
    #[error("metric for '{path}' has shape {found:?}, expected {expected:?}")]
    MetricShape {
        /// The parameter path.
        path: String,
        /// The shape the granularity asks for.
        expected: Vec<usize>,
        /// The shape the algorithm returned.
        found: Vec<usize>,
    },
    /// A metric with NaN or infinite values: ranking it would be meaningless.
    #[error("metric for '{path}' contains a non-finite value ({value})")]
    NonFiniteMetric {
        /// The parameter path.
        path: String,
        /// The offending value.
        value: f32,
    },
    /// A mask that is not in the shape of its parameter.
    #[error("shape mismatch for '{path}': expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// The parameter path.
        path: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The mask's shape.
        found: Vec<usize>,
    },
    /// A mask or setting for a parameter path the model does not have.
    #[error("'{path}' is not a parameter of the model{}", suggestion_text(.suggestion))]
    UnknownParam {
        /// The path as given.
        path: String,
        /// The closest parameter path, if one is close.
        suggestion: Option<String>,
    },
    /// A mask file that cannot be read as masks.
    #[error("mask file '{}' is invalid: {message}", .path.display())]
    InvalidMaskFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A dataset file that cannot be read.
    #[error("dataset '{}' is invalid: {message}", .path.display())]
    InvalidDataset {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file that cannot be read or written.
    #[error("cannot access '{}': {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An algorithm name that is not registered.
    #[error("unknown algorithm '{name}'{} (registered: {registered})", suggestion_text(.suggestion))]
    UnknownAlgorithm {
        /// The name as given.
        name: String,
        /// The closest registered name, if one is close.
        suggestion: Option<String>,
        /// All registered names.
        registered: String,
    },
    /// An algorithm used in a role it does not have (e.g. a quantizer asked to prune).
    #[error("algorithm '{name}' is a {kind}, not a {wanted}")]
    WrongAlgorithmKind {
        /// The algorithm.
        name: String,
        /// What it is.
        kind: String,
        /// What was asked for.
        wanted: String,
    },
    /// An algorithm refused its input.
    #[error("algorithm '{algorithm}': {message}")]
    Algorithm {
        /// The algorithm's registry name.
        algorithm: String,
        /// What it said.
        message: String,
    },
    /// A distillation link to a teacher layer that does not exist.
    #[error(
        "distillation target '{student}' links to teacher layer '{teacher}', which the teacher does not have{} (teacher layers: {available})",
        suggestion_text(.suggestion)
    )]
    UnknownLink {
        /// The student layer.
        student: String,
        /// The missing teacher layer.
        teacher: String,
        /// The closest teacher layer, if one is close.
        suggestion: Option<String>,
        /// The teacher's layers.
        available: String,
    },
    /// A distillation link between outputs of different shapes (never broadcast).
    #[error(
        "distillation link '{link}' compares outputs of different shapes: student {student:?}, teacher {teacher:?}"
    )]
    LinkShapeMismatch {
        /// The link (`student fc2 -> teacher fc2`).
        link: String,
        /// The student's shape.
        student: Vec<usize>,
        /// The teacher's shape.
        teacher: Vec<usize>,
    },
    /// A negative (or non-finite) distillation weight.
    #[error("{context}: 'lambda' must be a non-negative number, found {value}")]
    NegativeLambda {
        /// Where (`config_list[0]`, `[algorithm] of 'kd'`).
        context: String,
        /// The value.
        value: f64,
    },
    /// A teacher that takes inputs of another shape than the student.
    #[error(
        "the teacher takes inputs of shape {teacher:?} per example, the student {student:?}: distillation feeds both the same batch"
    )]
    TeacherInput {
        /// The teacher's input shape (without the batch).
        teacher: Vec<usize>,
        /// The student's input shape (without the batch).
        student: Vec<usize>,
    },
    /// Burn could not convert tensor data.
    #[error("tensor data of '{path}': {message}")]
    TensorData {
        /// The parameter path.
        path: String,
        /// Burn's message.
        message: String,
    },
    /// Quantization parameters that do not fit a tensor's shape.
    #[error(
        "quantization {key} of '{path}' has shape {found:?}, which does not fit the tensor shape {tensor:?}: {reason}"
    )]
    QuantShape {
        /// The target path (`fc.weight`, `fc._input_`), or `<tensor>`.
        path: String,
        /// Which value: `scale` or `zero_point`.
        key: &'static str,
        /// Its shape.
        found: Vec<usize>,
        /// The shape of the tensor it should fit.
        tensor: Vec<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A value an observer cannot track: empty, or with blocks of another shape than earlier
    /// observations'.
    #[error("observation of '{path}' with shape {shape:?}: {reason}")]
    InvalidObservation {
        /// The target path.
        path: String,
        /// The observed value's shape.
        shape: Vec<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A calibration entry for a module path the model does not have.
    #[error("calibration config: module '{module}' is not a layer of the model{}", suggestion_text(.suggestion))]
    UnknownCalibrationModule {
        /// The module path as given.
        module: String,
        /// The closest layer path, if one is close.
        suggestion: Option<String>,
    },
    /// A calibration entry for a target its module does not have.
    #[error(
        "calibration config: module '{module}' ({layer_type}) has no quantization target '{target}' (it has: {available})"
    )]
    UnknownCalibrationTarget {
        /// The module path.
        module: String,
        /// The module's type.
        layer_type: String,
        /// The target name as given.
        target: String,
        /// The targets it has.
        available: String,
    },
    /// A calibration value whose shape does not fit the parameter it quantizes.
    #[error(
        "calibration config: '{key}' of '{param}' has shape {found:?}, which is not a block shape of the parameter's {param_shape:?}"
    )]
    CalibrationShape {
        /// The parameter path: module path and target name (`fc.weight`).
        param: String,
        /// The key: `scale`, `zero_point`, `tracked_min` or `tracked_max`.
        key: &'static str,
        /// The value's shape (Burn layout).
        found: Vec<usize>,
        /// The parameter's shape (Burn layout).
        param_shape: Vec<usize>,
    },
    /// A calibration value that is missing, of the wrong type or out of range.
    #[error("calibration config: '{key}' of '{module}' / '{target}': {message}")]
    InvalidCalibration {
        /// The module path.
        module: String,
        /// The target name.
        target: String,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A search space without layers: there is nothing to allocate ratios to.
    #[error(
        "the search space is empty: no layer to allocate pruning ratios to (check the config's op_types / op_names)"
    )]
    EmptySearchSpace,
    /// A measure name that is not `macs`, `params`, `file-bytes` or `latency`.
    #[error("unknown measure '{value}'{}: expected one of macs, params, file-bytes, latency", suggestion_text(.suggestion))]
    UnknownMeasure {
        /// The name as written.
        value: String,
        /// The closest measure name, if one is close.
        suggestion: Option<String>,
    },
    /// A budget that cannot be parsed or is out of range.
    #[error(
        "invalid budget '{value}': {reason} (write '<measure><=<fraction>' for at most a fraction of dense, e.g. 'macs<=0.25', or '<measure>/<k>' for k times fewer, e.g. 'macs/6')"
    )]
    InvalidBudget {
        /// The budget as written.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A budget that no candidate the search may propose meets.
    #[error(
        "budget {budget} cannot be met: the closest achievable is {closest:.4} of dense ({}) ({context})",
        times_text(*.closest)
    )]
    BudgetUnreachable {
        /// The budget, both ways (`macs <= 0.1667 of dense (6.00x fewer)`).
        budget: String,
        /// The closest achievable cost, as a fraction of dense.
        closest: f64,
        /// Where the closest value comes from (predicted from layer sizes, or measured).
        context: String,
    },
    /// A calibration file (JSON or safetensors) that cannot be parsed at all.
    #[error("calibration file '{origin}' is invalid: {message}")]
    InvalidCalibrationFile {
        /// The file path, or a description of the source (`<json text>`).
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// A file that cannot be read or written, its reason as text (what Burn's recorders and stores
/// report): the `Io` error of compress-quant and compress-speedup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot access '{path}': {message}")]
pub struct FileError {
    /// The file.
    pub path: String,
    /// The OS (or recorder) error.
    pub message: String,
}

impl FileError {
    /// The error `e` met on `path`.
    pub fn new(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// `k` as "k.kkx fewer" for a cost that is `fraction` of dense.
fn times_text(fraction: f64) -> String {
    if fraction > 0.0 {
        format!("{:.2}x fewer", 1.0 / fraction)
    } else {
        "nothing left".to_string()
    }
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean '{s}'?)"),
        None => String::new(),
    }
}

/// The closest candidate to `word` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

/// Check that every key of a TOML table is one of `known`, as config files, `[algorithm]`
/// tables and recipes do: the first unknown key is [`CompressError::UnknownKey`] with the
/// closest known key as a did-you-mean (`unknown key 'sparse_ration' in config_list[0] (did you
/// mean 'sparse_ratio'?)`).
///
/// ```
/// let table: compress_core::toml::Table = "epoch = 3".parse().unwrap();
/// let err = compress_core::error::check_keys(&table, &["kind", "epochs"], "step[0]").unwrap_err();
/// assert_eq!(err.to_string(), "unknown key 'epoch' in step[0] (did you mean 'epochs'?)");
/// ```
///
/// # Errors
/// [`CompressError::UnknownKey`] for the first key (in the table's order) that is not known.
pub fn check_keys(table: &toml::Table, known: &[&str], context: &str) -> Result<()> {
    match table.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(CompressError::UnknownKey {
            key: key.clone(),
            context: context.to_string(),
            suggestion: did_you_mean(key, known.iter().copied()),
        }),
    }
}

/// File reads and writes whose errors name the path ([`CompressError::Io`]).
/// File reads and writes whose errors name the path ([`CompressError::Io`]).
pub mod fs {
    use std::path::Path;

    use super::{CompressError, Result};

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CompressError + '_ {
        move |source| CompressError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// `std::fs::read`.
    ///
    /// # Errors
    /// [`CompressError::Io`] naming the path.
    pub fn read(path: &Path) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(io(path))
    }

    /// `std::fs::read_to_string`.
    ///
    /// # Errors
    /// [`CompressError::Io`] naming the path.
    pub fn read_to_string(path: &Path) -> Result<String> {
        std::fs::read_to_string(path).map_err(io(path))
    }

    /// `std::fs::write`.
    ///
    /// # Errors
    /// [`CompressError::Io`] naming the path.
    pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
        std::fs::write(path, contents).map_err(io(path))
    }
}
