//! The config file: TOML with NNI's `config_list` keys, parsed and validated before any model
//! is seen (stage one of two; [`targets`](crate::targets) resolves it against a model).
//!
//! ```toml
//! [algorithm]            # optional: which registered algorithm, and its own options
//! name = "l1-norm"
//!
//! [[config_list]]        # one table per NNI config dict
//! op_types = ["Conv2d", "Linear"]
//! exclude_op_names = ["fc3"]
//! sparse_ratio = 0.5
//! ```
//!
//! Every key NNI's v3 schema knows is accepted under its NNI name; unknown keys are errors with a
//! did-you-mean. Any non-selection key given at the top of a rule is a *shortcut*: it reaches each
//! target whose template has that key (so `sparse_ratio` reaches `weight` but not `bias`), and
//! `target_settings` overrides per target.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use regex::Regex;
use toml::Value;

use crate::error::did_you_mean;
use crate::granularity::{Granularity, KernelPadding, Scaling};
use crate::{CompressError, Result};

/// A whole config file.
#[derive(Debug, Clone)]
pub struct CompressConfig {
    /// The `[algorithm]` table: `name` plus the algorithm's own options (validated by the
    /// algorithm's constructor, not here).
    pub algorithm: Option<AlgorithmSection>,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
}

/// The `[algorithm]` table.
#[derive(Debug, Clone)]
pub struct AlgorithmSection {
    /// Registry name (`l1-norm`).
    pub name: String,
    /// Every other key, for the algorithm's constructor.
    pub options: toml::Table,
}

/// Which kind of compression a rule configures, inferred from its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `sparse_ratio`, `sparse_threshold`, ...
    Pruning,
    /// `quant_dtype`, `quant_scheme`, `fuse_names`.
    Quantization,
    /// `lambda`, `link`.
    Distillation,
}

/// One `[[config_list]]` table.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Position in `config_list` (0-based), used in messages as `config_list[i]`.
    pub index: usize,
    /// The mode its keys imply.
    pub mode: Mode,
    /// Which layers it selects.
    pub selection: Selection,
    /// Explicit target names (`weight`, `bias`, `_input_`, ...); `None` means the template's.
    pub target_names: Option<Vec<String>>,
    /// Shortcut settings, copied to each target whose template has the key.
    pub shortcut: TargetSetting,
    /// Full per-target settings, merged over the shortcut.
    pub target_settings: BTreeMap<String, TargetSetting>,
    /// Module fusion groups (quantization), first name is the host.
    pub fuse_names: Vec<Vec<String>>,
}

impl Rule {
    /// `config_list[i]`, for messages.
    pub fn context(&self) -> String {
        format!("config_list[{}]", self.index)
    }
}

/// Layer selection keys.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `op_types`: layer type names (aliases such as `BatchNorm2d` accepted).
    pub op_types: Vec<String>,
    /// `op_names`: layer paths.
    pub op_names: Vec<String>,
    /// `op_names_re`: patterns anchored at the start, like Python's `re.match`.
    pub op_names_re: Vec<Regex>,
    /// `exclude_op_names`.
    pub exclude_op_names: Vec<String>,
    /// `exclude_op_names_re`.
    pub exclude_op_names_re: Vec<Regex>,
    /// `exclude_op_types`.
    pub exclude_op_types: Vec<String>,
}

/// A group id (`global_group_id`, `dependency_group_id`): NNI allows int or str.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub String);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a mask is applied (`apply_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMethod {
    /// Multiply by the 0/1 mask.
    Mul,
    /// Add -1000 where masked (pre-softmax activations).
    Add,
    /// Leave the target alone.
    Bypass,
    /// Quantize-dequantize.
    ClampRound,
    /// Quantize-dequantize with QAT's clipped gradient.
    QatClampRound,
    /// Distillation: mean squared error.
    Mse,
    /// Distillation: KL divergence of the softened outputs.
    Kl,
}

/// Signed or unsigned integer quantization type with NNI's ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantDtype {
    /// `true` for `int<b>`, `false` for `uint<b>`.
    pub signed: bool,
    /// Bits, 2..=8.
    pub bits: u32,
}

impl QuantDtype {
    /// Parse `int2`..`int8` / `uint2`..`uint8`.
    pub fn parse(s: &str) -> Option<Self> {
        let (signed, digits) = match s.strip_prefix("uint") {
            Some(d) => (false, d),
            None => (true, s.strip_prefix("int")?),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let bits: u32 = digits.parse().ok()?;
        (2..=8).contains(&bits).then_some(Self { signed, bits })
    }

    /// NNI's range: `int<b>` is the narrow symmetric `[-(2^(b-1) - 1), 2^(b-1) - 1]`,
    /// `uint<b>` is `[0, 2^b - 1]`.
    pub fn range(&self) -> (i32, i32) {
        if self.signed {
            let m = (1i32 << (self.bits - 1)) - 1;
            (-m, m)
        } else {
            (0, (1i32 << self.bits) - 1)
        }
    }
}

impl fmt::Display for QuantDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}int{}", if self.signed { "" } else { "u" }, self.bits)
    }
}

/// `quant_scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantScheme {
    /// Zero point at the middle of the range.
    Symmetric,
    /// Zero point from the tracked minimum.
    Affine,
}

/// `align`: derive a mask from another target instead of computing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Align {
    /// Layer path of the source target; `None` means the same layer.
    pub module_name: Option<String>,
    /// Target name of the source (`weight`).
    pub target_name: String,
    /// Dims of the source (Burn's layout) kept when summing; `None` means the source's output
    /// axis.
    pub dims: Option<Vec<usize>>,
}

/// Settings of one target, every key optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetSetting {
    /// `sparse_ratio` in [0, 1].
    pub sparse_ratio: Option<f64>,
    /// `sparse_threshold`: keep where metric >= threshold.
    pub sparse_threshold: Option<f64>,
    /// `max_sparse_ratio` in (0, 1].
    pub max_sparse_ratio: Option<f64>,
    /// `min_sparse_ratio` in [0, 1).
    pub min_sparse_ratio: Option<f64>,
    /// `global_group_id`.
    pub global_group_id: Option<GroupId>,
    /// `dependency_group_id`.
    pub dependency_group_id: Option<GroupId>,
    /// `internal_metric_block` >= 1.
    pub internal_metric_block: Option<usize>,
    /// `granularity`.
    pub granularity: Option<Granularity>,
    /// `align`.
    pub align: Option<Align>,
    /// `apply_method`.
    pub apply_method: Option<ApplyMethod>,
    /// `quant_dtype`.
    pub quant_dtype: Option<QuantDtype>,
    /// `quant_scheme`.
    pub quant_scheme: Option<QuantScheme>,
    /// `lambda` (distillation).
    pub lambda: Option<f64>,
    /// `link` (distillation): teacher module names.
    pub link: Option<Vec<String>>,
}

/// Keys a rule may hold besides settings.
const SELECTION_KEYS: &[&str] = &[
    "op_types",
    "op_names",
    "op_names_re",
    "exclude_op_names",
    "exclude_op_names_re",
    "exclude_op_types",
    "target_names",
    "target_settings",
    "fuse_names",
];
const PRUNING_KEYS: &[&str] = &[
    "sparse_ratio",
    "sparse_threshold",
    "max_sparse_ratio",
    "min_sparse_ratio",
    "global_group_id",
    "dependency_group_id",
    "internal_metric_block",
    "align",
];
const QUANT_KEYS: &[&str] = &["quant_dtype", "quant_scheme"];
const DISTILL_KEYS: &[&str] = &["lambda", "link"];
const SHARED_KEYS: &[&str] = &["granularity", "apply_method"];
const TOP_KEYS: &[&str] = &["config_list", "algorithm"];

/// Every setting key, for did-you-mean.
fn setting_keys() -> impl Iterator<Item = &'static str> {
    PRUNING_KEYS
        .iter()
        .chain(QUANT_KEYS)
        .chain(DISTILL_KEYS)
        .chain(SHARED_KEYS)
        .copied()
}

impl CompressConfig {
    /// Read and validate a config file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::error::fs::read_to_string(path)?;
        Self::from_toml(&text)
    }

    /// This config with every pruning goal scaled by `fraction` (a schedule's progress in
    /// `[0, 1]`): `sparse_ratio`, `sparse_threshold`, `max_sparse_ratio` and `min_sparse_ratio`
    /// together, as NNI's scheduled pruners rescale them.
    pub fn scaled(&self, fraction: f64) -> Self {
        fn scale(s: &mut TargetSetting, f: f64) {
            for x in [
                &mut s.sparse_ratio,
                &mut s.sparse_threshold,
                &mut s.max_sparse_ratio,
                &mut s.min_sparse_ratio,
            ]
            .into_iter()
            .flatten()
            {
                *x *= f;
            }
        }
        let mut c = self.clone();
        for rule in &mut c.rules {
            scale(&mut rule.shortcut, fraction);
            for s in rule.target_settings.values_mut() {
                scale(s, fraction);
            }
        }
        c
    }

    /// Parse and validate TOML text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let (line, column) = e
                .span()
                .map(|s| line_column(text, s.start))
                .unwrap_or((1, 1));
            CompressError::TomlSyntax {
                line,
                column,
                message: toml_message(&e),
            }
        })?;
        Self::from_table(&table)
    }

    /// Validate an already-parsed TOML table.
    pub fn from_table(table: &toml::Table) -> Result<Self> {
        for key in table.keys() {
            if !TOP_KEYS.contains(&key.as_str()) {
                return Err(unknown_key(key, "the top level", TOP_KEYS.iter().copied()));
            }
        }
        let algorithm = match table.get("algorithm") {
            None => None,
            Some(Value::Table(t)) => {
                let name = match t.get("name") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => return Err(wrong_type("name", "[algorithm]", "a string", v)),
                    None => {
                        return Err(CompressError::InvalidValue {
                            key: "name".into(),
                            context: "[algorithm]".into(),
                            value: String::new(),
                            reason: "the [algorithm] table needs a 'name'".into(),
                        });
                    }
                };
                let mut options = t.clone();
                options.remove("name");
                Some(AlgorithmSection { name, options })
            }
            Some(v) => return Err(wrong_type("algorithm", "the top level", "a table", v)),
        };
        let list = match table.get("config_list") {
            None => return Err(CompressError::EmptyConfig),
            Some(Value::Array(a)) => a,
            Some(v) => {
                return Err(wrong_type(
                    "config_list",
                    "the top level",
                    "an array of tables ([[config_list]])",
                    v,
                ));
            }
        };
        if list.is_empty() {
            return Err(CompressError::EmptyConfig);
        }
        let rules = list
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Table(t) => parse_rule(i, t),
                other => Err(wrong_type(
                    "config_list",
                    &format!("config_list[{i}]"),
                    "a table",
                    other,
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { algorithm, rules })
    }
}

/// The TOML parser's message, never empty (it is for some syntax errors, e.g. a cut-off value).
pub(crate) fn toml_message(e: &toml::de::Error) -> String {
    match e.message().trim() {
        "" => "invalid TOML".to_string(),
        m => m.to_string(),
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn type_name(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string \"{s}\""),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(f) => format!("float {f}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "an array".into(),
        Value::Table(_) => "a table".into(),
    }
}

fn wrong_type(key: &str, context: &str, expected: &str, found: &Value) -> CompressError {
    CompressError::WrongType {
        key: key.to_string(),
        context: context.to_string(),
        expected: expected.to_string(),
        found: type_name(found),
    }
}

fn unknown_key<'a>(
    key: &str,
    context: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> CompressError {
    CompressError::UnknownKey {
        key: key.to_string(),
        context: context.to_string(),
        suggestion: did_you_mean(key, known),
    }
}

fn string_list(key: &str, ctx: &str, v: &Value) -> Result<Vec<String>> {
    let expected = "an array of strings";
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong_type(key, ctx, expected, other)),
            })
            .collect(),
        other => Err(wrong_type(key, ctx, expected, other)),
    }
}

fn regex_list(key: &str, ctx: &str, v: &Value) -> Result<Vec<Regex>> {
    string_list(key, ctx, v)?
        .into_iter()
        .map(|p| {
            // Python's re.match anchors at the start only.
            Regex::new(&format!("^(?:{p})")).map_err(|e| CompressError::InvalidRegex {
                pattern: p.clone(),
                context: format!("{ctx}.{key}"),
                message: e.to_string(),
            })
        })
        .collect()
}

fn float(key: &str, ctx: &str, v: &Value) -> Result<f64> {
    let x = match v {
        Value::Float(f) => *f,
        Value::Integer(i) => *i as f64,
        other => return Err(wrong_type(key, ctx, "a number", other)),
    };
    if !x.is_finite() {
        return Err(CompressError::OutOfRange {
            key: key.into(),
            context: ctx.into(),
            value: x,
            range: "the finite numbers".into(),
        });
    }
    Ok(x)
}

fn ranged(key: &str, ctx: &str, v: &Value, lo: (f64, bool), hi: (f64, bool)) -> Result<f64> {
    let x = float(key, ctx, v)?;
    let above = if lo.1 { x >= lo.0 } else { x > lo.0 };
    let below = if hi.1 { x <= hi.0 } else { x < hi.0 };
    if above && below {
        Ok(x)
    } else {
        Err(CompressError::OutOfRange {
            key: key.into(),
            context: ctx.into(),
            value: x,
            range: format!(
                "{}{}, {}{}",
                if lo.1 { "[" } else { "(" },
                lo.0,
                hi.0,
                if hi.1 { "]" } else { ")" }
            ),
        })
    }
}

fn group_id(key: &str, ctx: &str, v: &Value) -> Result<GroupId> {
    match v {
        Value::String(s) => Ok(GroupId(s.clone())),
        Value::Integer(i) => Ok(GroupId(i.to_string())),
        other => Err(wrong_type(key, ctx, "a string or an integer", other)),
    }
}

fn choice<T: Copy>(key: &str, ctx: &str, v: &Value, choices: &[(&str, T)]) -> Result<T> {
    let s = match v {
        Value::String(s) => s,
        other => return Err(wrong_type(key, ctx, "a string", other)),
    };
    choices
        .iter()
        .find(|(name, _)| name == s)
        .map(|(_, t)| *t)
        .ok_or_else(|| CompressError::InvalidValue {
            key: key.into(),
            context: ctx.into(),
            value: s.clone(),
            reason: format!(
                "expected one of {}",
                choices
                    .iter()
                    .map(|(n, _)| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// Parse a granularity value: a name, a kernel array, a `[kernel, padding, value]` tuple, or an
/// inline table `{ kernel = [..], padding = "front" | "back", padding_value = n }`.
pub(crate) fn parse_granularity(v: &Value, ctx: &str) -> Result<Granularity> {
    let bad = |reason: &str| CompressError::InvalidGranularity {
        value: v.to_string(),
        context: ctx.to_string(),
        reason: reason.to_string(),
    };
    let kernel_of = |v: &Value| -> Result<Vec<i64>> {
        let Value::Array(items) = v else {
            return Err(bad("the kernel must be an array of integers"));
        };
        items
            .iter()
            .map(|x| match x {
                Value::Integer(k) if *k > 0 || *k == -1 => Ok(*k),
                Value::Integer(_) => Err(bad("kernel entries must be positive or -1")),
                _ => Err(bad("the kernel must be an array of integers")),
            })
            .collect()
    };
    let padding_of = |v: &Value| -> Result<KernelPadding> {
        match v.as_str() {
            Some("front") => Ok(KernelPadding::Front),
            Some("back") => Ok(KernelPadding::Back),
            _ => Err(bad("padding must be \"front\" or \"back\"")),
        }
    };
    let default_value = |p: KernelPadding| if p == KernelPadding::Front { 1 } else { -1 };
    match v {
        Value::String(s) => match s.as_str() {
            "default" => Ok(Granularity::Default),
            "fine" | "fine-grained" | "element" => Ok(Granularity::Fine),
            "out_channel" => Ok(Granularity::OutChannel),
            "in_channel" => Ok(Granularity::InChannel),
            "per_channel" => Ok(Granularity::PerChannel),
            _ => Err(bad(
                "expected \"default\", \"fine\", \"out_channel\", \"in_channel\", \"per_channel\", or a block kernel",
            )),
        },
        Value::Array(items) if items.first().is_some_and(Value::is_array) => {
            let kernel = kernel_of(&items[0])?;
            let padding = match items.get(1) {
                Some(p) => padding_of(p)?,
                None => KernelPadding::Front,
            };
            let value = match items.get(2) {
                Some(Value::Integer(x)) => *x,
                Some(_) => return Err(bad("the padding value must be an integer")),
                None => default_value(padding),
            };
            if items.len() > 3 {
                return Err(bad(
                    "a granularity tuple is [kernel, padding, padding_value]",
                ));
            }
            Ok(Granularity::Block(Scaling::new(kernel, padding, value)))
        }
        Value::Array(_) => Ok(Granularity::Block(Scaling::new(
            kernel_of(v)?,
            KernelPadding::Front,
            1,
        ))),
        Value::Table(t) => {
            for k in t.keys() {
                if !["kernel", "padding", "padding_value"].contains(&k.as_str()) {
                    return Err(unknown_key(
                        k,
                        &format!("{ctx}.granularity"),
                        ["kernel", "padding", "padding_value"],
                    ));
                }
            }
            let kernel = kernel_of(t.get("kernel").ok_or_else(|| bad("missing 'kernel'"))?)?;
            let padding = t
                .get("padding")
                .map(padding_of)
                .transpose()?
                .unwrap_or(KernelPadding::Front);
            let value = match t.get("padding_value") {
                Some(Value::Integer(x)) => *x,
                Some(_) => return Err(bad("the padding value must be an integer")),
                None => default_value(padding),
            };
            Ok(Granularity::Block(Scaling::new(kernel, padding, value)))
        }
        _ => Err(bad("expected a string, a kernel array or a table")),
    }
}

fn parse_align(v: &Value, ctx: &str) -> Result<Align> {
    let Value::Table(t) = v else {
        return Err(wrong_type(
            "align",
            ctx,
            "a table { module_name, target_name, dims }",
            v,
        ));
    };
    let actx = format!("{ctx}.align");
    let mut align = Align {
        module_name: None,
        target_name: "weight".into(),
        dims: None,
    };
    for (k, v) in t {
        match k.as_str() {
            "module_name" => align.module_name = Some(string_list(k, &actx, v)?.concat()),
            "target_name" => match v {
                Value::String(s) => align.target_name = s.clone(),
                other => return Err(wrong_type(k, &actx, "a string", other)),
            },
            "dims" => {
                let Value::Array(items) = v else {
                    return Err(wrong_type(k, &actx, "an array of integers", v));
                };
                align.dims = Some(
                    items
                        .iter()
                        .map(|x| match x {
                            Value::Integer(d) if *d >= 0 => Ok(*d as usize),
                            other => Err(wrong_type(
                                k,
                                &actx,
                                "an array of non-negative integers",
                                other,
                            )),
                        })
                        .collect::<Result<_>>()?,
                );
            }
            other => {
                return Err(unknown_key(
                    other,
                    &actx,
                    ["module_name", "target_name", "dims"],
                ));
            }
        }
    }
    Ok(align)
}

/// Parse the setting keys of `t` (skipping selection keys), validating each.
fn parse_setting(t: &toml::Table, ctx: &str, allow_selection: bool) -> Result<TargetSetting> {
    let mut s = TargetSetting::default();
    for (key, v) in t {
        let k = key.as_str();
        match k {
            "sparse_ratio" => s.sparse_ratio = Some(ranged(k, ctx, v, (0.0, true), (1.0, true))?),
            "sparse_threshold" => s.sparse_threshold = Some(float(k, ctx, v)?),
            "max_sparse_ratio" => {
                s.max_sparse_ratio = Some(ranged(k, ctx, v, (0.0, false), (1.0, true))?)
            }
            "min_sparse_ratio" => {
                s.min_sparse_ratio = Some(ranged(k, ctx, v, (0.0, true), (1.0, false))?)
            }
            "global_group_id" => s.global_group_id = Some(group_id(k, ctx, v)?),
            "dependency_group_id" => s.dependency_group_id = Some(group_id(k, ctx, v)?),
            "internal_metric_block" => match v {
                Value::Integer(n) if *n >= 1 => s.internal_metric_block = Some(*n as usize),
                Value::Integer(n) => {
                    return Err(CompressError::OutOfRange {
                        key: k.into(),
                        context: ctx.into(),
                        value: *n as f64,
                        range: "the integers >= 1".into(),
                    });
                }
                other => return Err(wrong_type(k, ctx, "an integer", other)),
            },
            "granularity" => s.granularity = Some(parse_granularity(v, ctx)?),
            "align" => s.align = Some(parse_align(v, ctx)?),
            "apply_method" => {
                s.apply_method = Some(choice(
                    k,
                    ctx,
                    v,
                    &[
                        ("mul", ApplyMethod::Mul),
                        ("add", ApplyMethod::Add),
                        ("bypass", ApplyMethod::Bypass),
                        ("clamp_round", ApplyMethod::ClampRound),
                        ("qat_clamp_round", ApplyMethod::QatClampRound),
                        ("mse", ApplyMethod::Mse),
                        ("kl", ApplyMethod::Kl),
                    ],
                )?)
            }
            "quant_dtype" => match v {
                Value::String(d) => {
                    s.quant_dtype = Some(QuantDtype::parse(d).ok_or_else(|| {
                        CompressError::UnknownQuantDtype {
                            value: d.clone(),
                            context: ctx.into(),
                        }
                    })?)
                }
                other => return Err(wrong_type(k, ctx, "a string such as \"int8\"", other)),
            },
            "quant_scheme" => {
                s.quant_scheme = Some(choice(
                    k,
                    ctx,
                    v,
                    &[
                        ("symmetric", QuantScheme::Symmetric),
                        ("affine", QuantScheme::Affine),
                    ],
                )?)
            }
            "lambda" => s.lambda = Some(float(k, ctx, v)?),
            "link" => s.link = Some(string_list(k, ctx, v)?),
            _ if allow_selection && SELECTION_KEYS.contains(&k) => {}
            _ => {
                let known: Vec<&str> = if allow_selection {
                    setting_keys()
                        .chain(SELECTION_KEYS.iter().copied())
                        .collect()
                } else {
                    setting_keys().collect()
                };
                return Err(unknown_key(k, ctx, known));
            }
        }
    }
    if s.sparse_ratio.is_some() && s.sparse_threshold.is_some() {
        return Err(CompressError::ConflictingKeys {
            first: "sparse_ratio".into(),
            second: "sparse_threshold".into(),
            context: ctx.into(),
        });
    }
    if let (Some(min), Some(max)) = (s.min_sparse_ratio, s.max_sparse_ratio)
        && min > max
    {
        return Err(CompressError::MinAboveMax {
            context: ctx.into(),
            min,
            max,
        });
    }
    if s.global_group_id.is_some() && s.dependency_group_id.is_some() {
        return Err(CompressError::ConflictingKeys {
            first: "global_group_id".into(),
            second: "dependency_group_id".into(),
            context: ctx.into(),
        });
    }
    Ok(s)
}

impl TargetSetting {
    /// The modes whose keys are set.
    fn modes(&self) -> Vec<Mode> {
        let mut modes = Vec::new();
        if self.sparse_ratio.is_some()
            || self.sparse_threshold.is_some()
            || self.max_sparse_ratio.is_some()
            || self.min_sparse_ratio.is_some()
            || self.global_group_id.is_some()
            || self.dependency_group_id.is_some()
            || self.internal_metric_block.is_some()
            || self.align.is_some()
        {
            modes.push(Mode::Pruning);
        }
        if self.quant_dtype.is_some() || self.quant_scheme.is_some() {
            modes.push(Mode::Quantization);
        }
        if self.lambda.is_some() || self.link.is_some() {
            modes.push(Mode::Distillation);
        }
        modes
    }

    /// `other`'s keys where set, else `self`'s.
    pub fn merged(&self, other: &TargetSetting) -> TargetSetting {
        macro_rules! pick {
            ($($f:ident),*) => { TargetSetting { $($f: other.$f.clone().or_else(|| self.$f.clone())),* } };
        }
        pick!(
            sparse_ratio,
            sparse_threshold,
            max_sparse_ratio,
            min_sparse_ratio,
            global_group_id,
            dependency_group_id,
            internal_metric_block,
            granularity,
            align,
            apply_method,
            quant_dtype,
            quant_scheme,
            lambda,
            link
        )
    }
}

fn parse_rule(index: usize, t: &toml::Table) -> Result<Rule> {
    let ctx = format!("config_list[{index}]");
    let shortcut = parse_setting(t, &ctx, true)?;
    let mut selection = Selection::default();
    let mut target_names = None;
    let mut target_settings = BTreeMap::new();
    let mut fuse_names = Vec::new();
    for (key, v) in t {
        let k = key.as_str();
        match k {
            "op_types" => selection.op_types = string_list(k, &ctx, v)?,
            "op_names" => selection.op_names = string_list(k, &ctx, v)?,
            "op_names_re" => selection.op_names_re = regex_list(k, &ctx, v)?,
            "exclude_op_names" => selection.exclude_op_names = string_list(k, &ctx, v)?,
            "exclude_op_names_re" => selection.exclude_op_names_re = regex_list(k, &ctx, v)?,
            "exclude_op_types" => selection.exclude_op_types = string_list(k, &ctx, v)?,
            "target_names" => target_names = Some(string_list(k, &ctx, v)?),
            "target_settings" => {
                let Value::Table(targets) = v else {
                    return Err(wrong_type(k, &ctx, "a table of target tables", v));
                };
                for (target, setting) in targets {
                    let tctx = format!("{ctx}.target_settings.{target}");
                    let Value::Table(st) = setting else {
                        return Err(wrong_type(
                            target,
                            &format!("{ctx}.target_settings"),
                            "a table",
                            setting,
                        ));
                    };
                    target_settings.insert(target.clone(), parse_setting(st, &tctx, false)?);
                }
            }
            "fuse_names" => {
                let Value::Array(groups) = v else {
                    return Err(wrong_type(k, &ctx, "an array of arrays of layer names", v));
                };
                for g in groups {
                    let names = match g {
                        Value::Array(_) => string_list(k, &ctx, g)?,
                        other => {
                            return Err(wrong_type(
                                k,
                                &ctx,
                                "an array of arrays of layer names",
                                other,
                            ));
                        }
                    };
                    if names.len() < 2 {
                        return Err(CompressError::InvalidValue {
                            key: k.into(),
                            context: ctx.clone(),
                            value: format!("{names:?}"),
                            reason: "a fusion group names at least two layers".into(),
                        });
                    }
                    fuse_names.push(names);
                }
            }
            _ => {}
        }
    }
    if selection.op_types.is_empty()
        && selection.op_names.is_empty()
        && selection.op_names_re.is_empty()
    {
        return Err(CompressError::MissingSelector { context: ctx });
    }
    let mut modes = shortcut.modes();
    for s in target_settings.values() {
        modes.extend(s.modes());
    }
    if !fuse_names.is_empty() {
        modes.push(Mode::Quantization);
    }
    modes.dedup();
    modes.sort_by_key(|m| *m as u8);
    modes.dedup();
    let mode = match modes.as_slice() {
        [] => Mode::Pruning,
        [m] => *m,
        [a, b, ..] => {
            let key_of = |m: &Mode| match m {
                Mode::Pruning => "sparse_ratio/sparse_threshold",
                Mode::Quantization => "quant_dtype/quant_scheme/fuse_names",
                Mode::Distillation => "lambda/link",
            };
            return Err(CompressError::ConflictingKeys {
                first: key_of(a).into(),
                second: key_of(b).into(),
                context: format!("{ctx} (one rule configures one kind of compression)"),
            });
        }
    };
    if mode != Mode::Quantization && !fuse_names.is_empty() {
        return Err(CompressError::InvalidValue {
            key: "fuse_names".into(),
            context: ctx,
            value: format!("{fuse_names:?}"),
            reason: "module fusion is for quantization only".into(),
        });
    }
    Ok(Rule {
        index,
        mode,
        selection,
        target_names,
        shortcut,
        target_settings,
        fuse_names,
    })
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Pruning => "pruning",
            Mode::Quantization => "quantization",
            Mode::Distillation => "distillation",
        })
    }
}

impl Rule {
    /// The rule's meaning in one paragraph, for `burn-compress check`.
    pub fn describe(&self) -> String {
        let s = &self.selection;
        let mut parts = Vec::new();
        let types = || s.op_types.join(", ");
        let mut picked = Vec::new();
        if !s.op_names.is_empty() {
            picked.push(format!("the layers {}", s.op_names.join(", ")));
        }
        if !s.op_names_re.is_empty() {
            let pats: Vec<String> = s
                .op_names_re
                .iter()
                .map(|r| {
                    r.as_str()
                        .trim_start_matches("^(?:")
                        .trim_end_matches(')')
                        .to_string()
                })
                .collect();
            picked.push(format!("layers whose path matches {}", pats.join(" or ")));
        }
        let selection = match (picked.is_empty(), s.op_types.is_empty()) {
            (true, _) => format!("every layer of type {}", types()),
            (false, true) => picked.join(" and "),
            (false, false) => format!("{} that are of type {}", picked.join(" and "), types()),
        };
        parts.push(format!("{} of {selection}", self.mode));
        let mut excluded = s.exclude_op_names.clone();
        excluded.extend(
            s.exclude_op_names_re
                .iter()
                .map(|r| format!("/{}/", r.as_str())),
        );
        excluded.extend(s.exclude_op_types.iter().map(|t| format!("type {t}")));
        if !excluded.is_empty() {
            parts.push(format!("excluding {}", excluded.join(", ")));
        }
        if let Some(t) = &self.target_names {
            parts.push(format!("targets {}", t.join(", ")));
        }
        let setting = describe_setting(&self.shortcut);
        if !setting.is_empty() {
            parts.push(setting);
        }
        for (t, st) in &self.target_settings {
            parts.push(format!("for {t}: {}", describe_setting(st)));
        }
        for group in &self.fuse_names {
            parts.push(format!("fuse ({})", group.join(", ")));
        }
        parts.join("; ")
    }
}

fn describe_setting(s: &TargetSetting) -> String {
    let mut out = Vec::new();
    if let Some(r) = s.sparse_ratio {
        out.push(format!("mask {}% of each target", r * 100.0));
    }
    if let Some(t) = s.sparse_threshold {
        out.push(format!("mask where the metric is below {t}"));
    }
    if let Some(m) = s.min_sparse_ratio {
        out.push(format!("at least {}% masked", m * 100.0));
    }
    if let Some(m) = s.max_sparse_ratio {
        out.push(format!("at most {}% masked", m * 100.0));
    }
    if let Some(g) = &s.global_group_id {
        out.push(format!("ranked globally in group '{g}'"));
    }
    if let Some(g) = &s.dependency_group_id {
        out.push(format!("identical masks across dependency group '{g}'"));
    }
    if let Some(b) = s.internal_metric_block {
        out.push(format!("in {b} equal blocks"));
    }
    if let Some(g) = &s.granularity {
        out.push(format!("granularity {g}"));
    }
    if let Some(a) = &s.align {
        out.push(format!(
            "mask follows {}{}",
            a.module_name
                .as_ref()
                .map(|m| format!("{m}."))
                .unwrap_or_default(),
            a.target_name
        ));
    }
    if let Some(a) = s.apply_method {
        out.push(format!("applied by {a:?}"));
    }
    if let Some(d) = s.quant_dtype {
        let (lo, hi) = d.range();
        out.push(format!("quantize to {d} [{lo}, {hi}]"));
    }
    if let Some(q) = s.quant_scheme {
        out.push(format!("{q:?} scheme"));
    }
    if let Some(l) = s.lambda {
        out.push(format!("distillation weight {l}"));
    }
    if let Some(l) = &s.link {
        out.push(format!("linked to teacher {}", l.join(", ")));
    }
    out.join(", ")
}
