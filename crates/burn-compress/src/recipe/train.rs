//! `kind = "train"` and `kind = "finetune"`: cross-entropy training with Adam.

use std::path::PathBuf;

use compress_core::toml::{Table, Value};
use compress_core::{AlgorithmEntry, CompressConfig};
use serde::{Deserialize, Serialize};

use super::prune::Prune;
use super::quantize::Quantize;

use super::{Progress, RecipeError, at_least_one, err, non_negative, typed};

/// A train (or fine-tune) step. Fine-tuning comes after a prune step, and the masks stay in
/// force while it runs, so pruned weights never come back.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainStep {
    /// Passes over the training data (default 1).
    pub epochs: usize,
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Images per step (default 64).
    pub batch_size: usize,
    /// Stop after this many steps, if set.
    pub max_steps: Option<usize>,
    /// `finetune` (after a prune) rather than `train`.
    #[serde(skip)]
    pub finetune: bool,
    /// `[step.distill]`: distil a teacher while training (see [`DistillBlock`]).
    pub distill: Option<Table>,
    /// `[step.prune]`: prune on a schedule in this same training run (fusion; keys of a prune
    /// step, `schedule` required).
    pub prune: Option<Table>,
    /// `[step.quantize]`: quantization-aware training in this same run (fusion; keys of a
    /// quantize step).
    pub quantize: Option<Table>,
    /// The checked blocks.
    #[serde(skip)]
    pub blocks: Blocks,
}

/// The checked `[step.distill]`, `[step.prune]`, `[step.quantize]` blocks of a training step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Blocks {
    /// Distillation.
    pub distill: Option<DistillBlock>,
    /// Scheduled pruning in the same run.
    pub prune: Option<Box<Prune>>,
    /// Quantization in the same run.
    pub quantize: Option<Box<Quantize>>,
}

/// Where the teacher comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TeacherSource {
    /// The model as the last `train` step left it (the dense model).
    Dense,
    /// A weights file (PyTorch names) of a zoo architecture.
    Weights {
        /// The architecture.
        arch: String,
        /// The file.
        path: PathBuf,
    },
}

/// `[step.distill]`: `algorithm` (a registered distiller, default `kd`), `teacher` (`"dense"`,
/// default, or a weights file), `teacher_arch` (default the recipe's), `config` (a config file
/// with distillation rules, for the layerwise distillers); every other key goes to the
/// distiller (`temperature`, `alpha`, `origin_lambda`).
#[derive(Debug, Clone)]
pub struct DistillBlock {
    /// Registry name.
    pub algorithm: String,
    /// The distiller's options.
    pub options: Table,
    /// The distillation rules (empty without `config`).
    pub config: CompressConfig,
    /// The teacher.
    pub teacher: TeacherSource,
}

impl PartialEq for DistillBlock {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm
            && self.options == other.options
            && self.teacher == other.teacher
    }
}

impl PartialEq for Prune {
    fn eq(&self, other: &Self) -> bool {
        self.step == other.step
    }
}

impl PartialEq for Quantize {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Default for TrainStep {
    fn default() -> Self {
        Self {
            epochs: 1,
            lr: 1e-3,
            batch_size: 64,
            max_steps: None,
            finetune: false,
            distill: None,
            prune: None,
            quantize: None,
            blocks: Blocks::default(),
        }
    }
}

impl TrainStep {
    /// The training run this step asks for, with `seed`.
    pub(crate) fn config(&self, seed: u64) -> compress_core::train::TrainConfig {
        super::run::train_config(self.epochs, self.lr, self.batch_size, self.max_steps, seed)
    }

    /// `train` or `finetune`: the stage's name in the report.
    pub fn name(&self) -> &'static str {
        if self.finetune { "finetune" } else { "train" }
    }
}

pub(super) fn parse(
    t: &compress_core::toml::Table,
    finetune: bool,
    ctx: &str,
    progress: &mut Progress,
) -> Result<TrainStep, RecipeError> {
    let mut step: TrainStep = typed(t, &["kind"], ctx)?;
    if finetune && !progress.pruned {
        return Err(err(ctx, "finetune comes after a prune step"));
    }
    at_least_one(step.epochs, "epochs", ctx)?;
    at_least_one(step.batch_size, "batch_size", ctx)?;
    if let Some(n) = step.max_steps {
        at_least_one(n, "max_steps", ctx)?;
    }
    non_negative(step.lr, "lr", ctx)?;
    step.finetune = finetune;
    if let Some(d) = &step.distill {
        step.blocks.distill = Some(parse_distill(d, &format!("{ctx} [distill]"), progress)?);
    }
    if let Some(p) = &step.prune {
        let pctx = format!("{ctx} [prune]");
        let was = progress.trained;
        progress.trained = true;
        let prune = super::prune::parse(p, &pctx, progress)?;
        progress.trained = was;
        if prune.schedule.is_none() {
            return Err(err(
                pctx,
                "pruning inside a training step needs a 'schedule' (\"agp\" or \"linear\")",
            ));
        }
        for key in ["epochs", "lr", "batch_size"] {
            if p.contains_key(key) {
                return Err(err(
                    &pctx,
                    format!("'{key}' is the training step's: set it there"),
                ));
            }
        }
        step.blocks.prune = Some(Box::new(prune));
    }
    if let Some(q) = &step.quantize {
        let qctx = format!("{ctx} [quantize]");
        let was = progress.trained;
        progress.trained = true;
        let quantize = super::quantize::parse(q, &qctx, progress)?;
        progress.trained = was;
        if quantize.job.mixed.is_some() {
            return Err(err(
                &qctx,
                "'bits = \"auto\"' (mixed precision) belongs to a quantize step, not to a training step's block",
            ));
        }
        // The fused run quantizes in simulation; later steps (speedup, an exporting quantize
        // step) may still follow.
        progress.quantized = false;
        step.blocks.quantize = Some(Box::new(quantize));
    }
    progress.trained = true;
    Ok(step)
}

fn parse_distill(t: &Table, ctx: &str, progress: &Progress) -> Result<DistillBlock, RecipeError> {
    let string = |key: &str| -> Result<Option<String>, RecipeError> {
        match t.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(err(
                ctx,
                format!("'{key}' must be a string, found {}", other.type_str()),
            )),
        }
    };
    let algorithm = string("algorithm")?.unwrap_or_else(|| "kd".to_string());
    let mut options = t.clone();
    for key in ["algorithm", "teacher", "teacher_arch", "config"] {
        options.remove(key);
    }
    AlgorithmEntry::find(&algorithm)
        .and_then(|e| e.build_distiller(&options))
        .map_err(|e| err(ctx, e))?;
    let config = match string("config")? {
        Some(path) => {
            CompressConfig::from_file(std::path::Path::new(&path)).map_err(|e| err(ctx, e))?
        }
        None => CompressConfig {
            algorithm: None,
            rules: Vec::new(),
        },
    };
    let teacher = match string("teacher")?.as_deref() {
        None | Some("dense") => {
            if !progress.trained {
                return Err(err(
                    ctx,
                    "the dense teacher is the model of an earlier train step: add one, or give a teacher weights file",
                ));
            }
            if let Some(a) = string("teacher_arch")? {
                return Err(err(
                    ctx,
                    format!("'teacher_arch' ({a}) needs a teacher weights file"),
                ));
            }
            TeacherSource::Dense
        }
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(err(
                    ctx,
                    format!("teacher weights '{}' do not exist", path.display()),
                ));
            }
            TeacherSource::Weights {
                arch: string("teacher_arch")?.unwrap_or_default(),
                path,
            }
        }
    };
    Ok(DistillBlock {
        algorithm,
        options,
        config,
        teacher,
    })
}
