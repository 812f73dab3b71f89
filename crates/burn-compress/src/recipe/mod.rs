//! Recipes: a whole compression pipeline in one TOML file, run by `burn-compress run`.
//!
//! ```toml
//! seed = 1                              # optional, default 0
//!
//! [model]
//! arch = "lenet5"                       # a zoo name
//! # weights = "data/lenet5-mnist5k.safetensors"   # start from PyTorch-named weights
//!
//! [data]
//! path = "data/mnist5k.safetensors"     # images u8 + labels; split: test = index % 5 == 4
//! # pixel_max = 255                     # pixel scale
//!
//! [[step]]
//! kind = "train"        # train | prune | speedup | finetune | quantize | evaluate | report | auto
//! epochs = 20
//! ```
//!
//! Each step kind is one typed struct in its own module ([`TrainStep`], [`PruneStep`],
//! [`SpeedupStep`], [`QuantizeStep`], [`EvaluateStep`], [`ReportStep`], [`AutoStep`]); its fields are the keys
//! the step accepts. Every table is checked before anything runs: an unknown key is refused with
//! a did-you-mean (`unknown key 'epoch' (did you mean 'epochs'?)`), as are values of the wrong
//! type or range, unknown kinds, a missing weights or data file, a `speedup` with no `prune`
//! before it, and a pruner or quantizer that is not registered. Each step that changes the model
//! records a [`Stage`] (params, MACs, file bytes, latency at batch 64, accuracy).

mod auto;
mod evaluate;
mod prune;
mod quantize;
mod report;
mod run;
mod speedup;
mod train;

use std::path::{Path, PathBuf};

use compress_core::toml::{Table, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use auto::{Auto, AutoStep};
pub use evaluate::EvaluateStep;
pub use prune::{Prune, PruneStep};
pub use quantize::{Quantize, QuantizeStep};
pub use report::{ReportStep, STAGE_COLUMNS};
pub(crate) use run::latency_ms;
pub use run::{RunOptions, RunReport, Stage, run};
pub use speedup::SpeedupStep;
pub use train::{Blocks, DistillBlock, TeacherSource, TrainStep};

/// A recipe error: the step or key at fault, in words.
#[derive(Debug, thiserror::Error)]
#[error("recipe {context}: {message}")]
pub struct RecipeError {
    /// `[model]`, `step[2] (prune)`, ...
    pub context: String,
    /// What is wrong.
    pub message: String,
}

pub(crate) fn err(context: impl Into<String>, message: impl ToString) -> RecipeError {
    RecipeError {
        context: context.into(),
        message: message.to_string(),
    }
}

/// The `[model]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Zoo architecture name (an image classifier).
    pub arch: String,
    /// Initial weights with PyTorch names (safetensors), if any.
    #[serde(default)]
    pub weights: Option<PathBuf>,
}

/// The `[data]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Image dataset (safetensors `images` u8 + `labels`).
    pub path: PathBuf,
    /// Pixel scale (255 for MNIST, 16 for the UCI digits).
    #[serde(default = "default_pixel_max")]
    pub pixel_max: f64,
}

fn default_pixel_max() -> f64 {
    255.0
}

/// The top level of a recipe file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    model: Table,
    data: Table,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    step: Vec<Table>,
}

/// One step of a recipe, checked.
#[derive(Debug, Clone)]
pub enum Step {
    /// Train, or fine-tune (after a prune; masks stay in force), with cross-entropy.
    Train(Box<TrainStep>),
    /// Compute masks with a registered pruner and a config file.
    Prune(Box<Prune>),
    /// Make the masked model physically smaller.
    Speedup(SpeedupStep),
    /// Quantize, then export the weights to Burn's native quantized tensors.
    Quantize(Box<Quantize>),
    /// Measure test accuracy.
    Evaluate(EvaluateStep),
    /// Write the stages so far as a table and/or JSON.
    Report(ReportStep),
    /// Search per-layer ratios under a budget, prune iteratively, fine-tune, and measure a
    /// uniform baseline ([`crate::auto`]).
    Auto(Box<Auto>),
}

/// A parsed, checked recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Zoo architecture name.
    pub arch: String,
    /// Initial weights (PyTorch names), if any.
    pub weights: Option<PathBuf>,
    /// Dataset file.
    pub data: PathBuf,
    /// Pixel scale (255 for MNIST).
    pub pixel_max: f32,
    /// Seed.
    pub seed: u64,
    /// Steps, in order.
    pub steps: Vec<Step>,
}

/// The step kinds, for messages.
const KINDS: &str = "train, prune, speedup, finetune, quantize, evaluate, report, auto";

const KIND_LIST: [&str; 8] = [
    "train", "prune", "speedup", "finetune", "quantize", "evaluate", "report", "auto",
];

/// ` (did you mean 'x'?)` when a candidate is close to `word`, through compress-core's key check.
fn suggest(word: &str, candidates: &[&str]) -> String {
    let mut one = Table::new();
    one.insert(word.to_string(), Value::Boolean(true));
    match compress_core::error::check_keys(&one, candidates, "") {
        Err(compress_core::CompressError::UnknownKey {
            suggestion: Some(s),
            ..
        }) => format!(" (did you mean '{s}'?)"),
        _ => String::new(),
    }
}

/// What the steps before the one being checked did.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub(crate) trained: bool,
    pub(crate) pruned: bool,
    pub(crate) quantized: bool,
    pub(crate) seed: u64,
}

/// The keys a serde struct accepts: its field names, read from its `Deserialize` impl (so the
/// key check and the struct can never disagree).
pub(crate) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Fields(&'static [&'static str]);
    impl<'de> de::Deserializer<'de> for &mut Fields {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(de::Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields = Fields(&[]);
    let _ = T::deserialize(&mut fields);
    fields.0
}

/// `table` (minus the keys in `skip`) as a `T`: every key checked against `T`'s fields with a
/// did-you-mean, then each value's type.
pub(crate) fn typed<T: DeserializeOwned>(
    table: &Table,
    skip: &[&str],
    ctx: &str,
) -> Result<T, RecipeError> {
    let mut table = table.clone();
    for key in skip {
        table.remove(*key);
    }
    let fields = fields_of::<T>();
    if let Err(e) = compress_core::error::check_keys(&table, fields, ctx) {
        let message = match e {
            compress_core::CompressError::UnknownKey {
                key, suggestion, ..
            } => {
                let mut allowed: Vec<&str> = skip.iter().chain(fields).copied().collect();
                allowed.sort_unstable();
                format!(
                    "unknown key '{key}'{} (allowed: {})",
                    suggestion
                        .map(|s| format!(" (did you mean '{s}'?)"))
                        .unwrap_or_default(),
                    allowed.join(", ")
                )
            }
            other => other.to_string(),
        };
        return Err(err(ctx, message));
    }
    let parse = |t: &Table| -> Result<T, String> {
        Value::Table(t.clone())
            .try_into()
            .map_err(
                |e: compress_core::toml::de::Error| match e.message().trim() {
                    "" => "invalid value".to_string(),
                    m => m.to_string(),
                },
            )
    };
    parse(&table).map_err(|message| {
        // serde stops at the first value of the wrong type without naming its key: the key is
        // the one whose removal makes that error go away.
        let culprit = table.keys().find(|k| {
            let mut without = table.clone();
            without.remove(*k);
            parse(&without).err().as_ref() != Some(&message)
        });
        match culprit {
            Some(key) => err(ctx, format!("key '{key}': {message}")),
            None => err(ctx, message),
        }
    })
}

/// `'key' must be an integer >= 1, found 0` unless `value >= 1`.
pub(crate) fn at_least_one(value: usize, key: &str, ctx: &str) -> Result<usize, RecipeError> {
    if value >= 1 {
        Ok(value)
    } else {
        Err(err(
            ctx,
            format!("'{key}' must be an integer >= 1, found {value}"),
        ))
    }
}

/// `'key' must be a non-negative number, found x` unless `value` is finite and `>= 0`.
pub(crate) fn non_negative(value: f64, key: &str, ctx: &str) -> Result<f64, RecipeError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(err(
            ctx,
            format!("'{key}' must be a non-negative number, found {value}"),
        ))
    }
}

impl Recipe {
    /// Read and check a recipe; relative paths are relative to the current directory.
    ///
    /// # Errors
    /// [`RecipeError`] naming the file, step or key at fault.
    pub fn from_file(path: &Path) -> Result<Self, RecipeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(path.display().to_string(), e.to_string()))?;
        Self::from_toml(&text)
    }

    /// Parse and check recipe text.
    ///
    /// # Errors
    /// [`RecipeError`]: a TOML syntax error (context `TOML`), or as [`Recipe::from_table`].
    pub fn from_toml(text: &str) -> Result<Self, RecipeError> {
        // The config's parser words TOML syntax errors (line, column, message); reuse it.
        let table: Table = match text.parse() {
            Ok(t) => t,
            Err(_) => {
                return Err(match compress_core::CompressConfig::from_toml(text) {
                    Err(e @ compress_core::CompressError::TomlSyntax { .. }) => err("TOML", e),
                    _ => err("TOML", "invalid TOML"),
                });
            }
        };
        Self::from_table(&table)
    }

    /// Check a parsed recipe.
    ///
    /// # Errors
    /// [`RecipeError`] naming the step or key at fault.
    pub fn from_table(table: &Table) -> Result<Self, RecipeError> {
        for (key, what) in [("model", "[model]"), ("data", "[data]")] {
            match table.get(key) {
                None => return Err(err(what, "missing")),
                Some(Value::Table(_)) => {}
                Some(other) => {
                    return Err(err(
                        what,
                        format!("must be a table, found {}", other.type_str()),
                    ));
                }
            }
        }
        if let Some(steps) = table.get("step")
            && !matches!(steps, Value::Array(_))
        {
            return Err(err(
                "[[step]]",
                format!("must be an array of tables, found {}", steps.type_str()),
            ));
        }
        if let Some(Value::Array(steps)) = table.get("step")
            && let Some(i) = steps.iter().position(|s| !s.is_table())
        {
            return Err(err(format!("step[{i}]"), "must be a table"));
        }
        let file: RecipeFile = typed(table, &[], "top level")?;
        let model: ModelSection = typed(&file.model, &[], "[model]")?;
        let arch: compress_zoo::Arch = model
            .arch
            .parse()
            .map_err(|e: compress_zoo::ZooError| err("[model]", e))?;
        if arch.takes_tokens() {
            return Err(err(
                "[model]",
                format!("'{arch}' takes token ids; recipes train image classifiers"),
            ));
        }
        if let Some(w) = &model.weights
            && !w.is_file()
        {
            return Err(err(
                "[model]",
                format!("weights '{}' do not exist", w.display()),
            ));
        }
        let data: DataSection = typed(&file.data, &[], "[data]")?;
        if !data.path.is_file() {
            return Err(err(
                "[data]",
                format!("'{}' does not exist", data.path.display()),
            ));
        }
        let pixel_max = non_negative(data.pixel_max, "pixel_max", "[data]")?;
        if pixel_max == 0.0 {
            return Err(err("[data]", "'pixel_max' must be greater than 0"));
        }
        if file.step.is_empty() {
            return Err(err("[[step]]", "a recipe needs steps"));
        }
        let mut progress = Progress {
            trained: model.weights.is_some(),
            seed: file.seed,
            ..Progress::default()
        };
        let mut steps = Vec::new();
        for (i, t) in file.step.iter().enumerate() {
            let kind = match t.get("kind") {
                Some(Value::String(k)) => k.as_str(),
                Some(other) => {
                    return Err(err(
                        format!("step[{i}]"),
                        format!("'kind' must be a string, found {}", other.type_str()),
                    ));
                }
                None => {
                    return Err(err(
                        format!("step[{i}]"),
                        format!("'kind' is required ({KINDS})"),
                    ));
                }
            };
            let ctx = format!("step[{i}] ({kind})");
            if progress.quantized && !matches!(kind, "evaluate" | "report") {
                return Err(err(
                    ctx,
                    "quantize is the last step that changes the model (only evaluate and report may follow)",
                ));
            }
            let step = match kind {
                "train" | "finetune" => Step::Train(Box::new(train::parse(
                    t,
                    kind == "finetune",
                    &ctx,
                    &mut progress,
                )?)),
                "prune" => Step::Prune(Box::new(prune::parse(t, &ctx, &mut progress)?)),
                "speedup" => Step::Speedup(speedup::parse(t, &ctx, &progress)?),
                "quantize" => Step::Quantize(Box::new(quantize::parse(t, &ctx, &mut progress)?)),
                "evaluate" => Step::Evaluate(typed(t, &["kind"], &ctx)?),
                "report" => Step::Report(typed(t, &["kind"], &ctx)?),
                "auto" => Step::Auto(Box::new(auto::parse(t, &ctx, &mut progress)?)),
                other => {
                    let suggestion = suggest(other, &KIND_LIST);
                    return Err(err(
                        format!("step[{i}]"),
                        format!("unknown kind '{other}'{suggestion} ({KINDS})"),
                    ));
                }
            };
            steps.push(step);
        }
        Ok(Self {
            arch: arch.name().to_string(),
            weights: model.weights,
            data: data.path,
            pixel_max: pixel_max as f32,
            seed: file.seed,
            steps,
        })
    }
}
