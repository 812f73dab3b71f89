//! Recipes: a whole compression pipeline in one TOML file, run by `burn-compress run`.
//!
//! ```toml
//! [model]
//! arch = "lenet5"                       # a zoo name
//! # weights = "data/lenet5-mnist5k.safetensors"   # start from PyTorch-named weights
//!
//! [data]
//! path = "data/mnist5k.safetensors"     # images u8 + labels; split: test = index % 5 == 4
//!
//! [[step]]
//! kind = "train"        # train | prune | speedup | finetune | quantize | evaluate | report
//! epochs = 20
//! ```
//!
//! Every step is checked before anything runs: unknown kinds or keys, a missing weights or data
//! file, a `speedup` with no `prune` before it, a pruner that is not registered. Each step that
//! changes the model records a stage (params, MACs, file bytes, latency at batch 64, accuracy).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use compress_core::toml::{Table, Value};
use compress_core::{CompressConfig, ImageDataset, MaskSet, OptimizerKind, TrainConfig};
use serde::Serialize;

/// A recipe error: the step or key at fault, in words.
#[derive(Debug, thiserror::Error)]
#[error("recipe {context}: {message}")]
pub struct RecipeError {
    /// `[model]`, `step[2] (prune)`, ...
    pub context: String,
    /// What is wrong.
    pub message: String,
}

fn err(context: impl Into<String>, message: impl Into<String>) -> RecipeError {
    RecipeError {
        context: context.into(),
        message: message.into(),
    }
}

/// One step of a recipe.
#[derive(Debug, Clone)]
pub enum Step {
    /// Train (or fine-tune) with cross-entropy.
    Train {
        /// Step name in the report (`train` or `finetune`).
        name: String,
        /// Epochs.
        epochs: usize,
        /// Learning rate.
        lr: f64,
        /// Batch size.
        batch_size: usize,
        /// Stop after this many steps.
        max_steps: Option<usize>,
    },
    /// Compute masks with a registered pruner and a config file.
    Prune {
        /// Registry name.
        algorithm: String,
        /// The config (its `[algorithm]` options are used).
        config: CompressConfig,
        /// Options for the algorithm.
        options: Table,
        /// Prune gradually while training (AGP or Linear), instead of in one shot.
        schedule: Option<ScheduleSpec>,
    },
    /// Make the masked model physically smaller.
    Speedup,
    /// Quantize (calibrate, and train for the training-aware quantizers), then export the
    /// weights to Burn's native quantized tensors.
    Quantize {
        /// What to quantize and how.
        job: Box<crate::quantize::QuantizeJob>,
        /// Affine weight calibrations: refuse or requantize symmetric.
        affine: compress_quant::AffinePolicy,
    },
    /// Measure test accuracy.
    Evaluate,
    /// Print the stage table.
    Report,
}

/// Gradual pruning while training: `total_times` mask updates `interval_steps` apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScheduleSpec {
    /// The schedule (`schedule = "agp"` or `"linear"`).
    pub schedule: compress_core::Schedule,
    /// Mask updates in all.
    pub total_times: usize,
    /// Steps between mask updates.
    pub interval_steps: usize,
    /// Training epochs of the pruning phase.
    pub epochs: usize,
    /// Learning rate.
    pub lr: f64,
    /// Batch size.
    pub batch_size: usize,
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

fn get_usize(t: &Table, key: &str, ctx: &str, default: usize) -> Result<usize, RecipeError> {
    match t.get(key) {
        None => Ok(default),
        Some(Value::Integer(n)) if *n >= 1 => Ok(*n as usize),
        Some(v) => Err(err(
            ctx,
            format!("'{key}' must be an integer >= 1, found {v}"),
        )),
    }
}

fn get_f64(t: &Table, key: &str, ctx: &str, default: f64) -> Result<f64, RecipeError> {
    match t.get(key) {
        None => Ok(default),
        Some(Value::Float(x)) if x.is_finite() && *x >= 0.0 => Ok(*x),
        Some(Value::Integer(n)) if *n >= 0 => Ok(*n as f64),
        Some(v) => Err(err(
            ctx,
            format!("'{key}' must be a non-negative number, found {v}"),
        )),
    }
}

fn check_keys(t: &Table, allowed: &[&str], ctx: &str) -> Result<(), RecipeError> {
    for k in t.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(err(
                ctx,
                format!("unknown key '{k}' (allowed: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// The step's config file (key `config`, required) and its algorithm: the step's `algorithm`
/// key, else the config's `[algorithm]` name (with its options), else `default`.
fn config_and_algorithm(
    t: &Table,
    ctx: &str,
    default: Option<&str>,
) -> Result<(CompressConfig, String, Table), RecipeError> {
    let path = t
        .get("config")
        .and_then(Value::as_str)
        .ok_or_else(|| err(ctx, "'config' (a config file) is required"))?;
    let config = CompressConfig::from_file(path).map_err(|e| err(ctx, e.to_string()))?;
    let (algorithm, options) = match (
        t.get("algorithm").and_then(Value::as_str),
        &config.algorithm,
    ) {
        (Some(a), Some(s)) if a == s.name => (a.to_string(), s.options.clone()),
        (Some(a), _) => (a.to_string(), Table::new()),
        (None, Some(s)) => (s.name.clone(), s.options.clone()),
        (None, None) => default
            .map(|d| (d.to_string(), Table::new()))
            .ok_or_else(|| {
                err(
                    ctx,
                    "name an 'algorithm' or give the config an [algorithm] table",
                )
            })?,
    };
    Ok((config, algorithm, options))
}

impl Recipe {
    /// Read and check a recipe; relative paths are relative to the current directory.
    ///
    /// # Errors
    /// [`RecipeError`] naming the step or key at fault.
    pub fn from_file(path: &Path) -> Result<Self, RecipeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(path.display().to_string(), e.to_string()))?;
        let table: Table = text.parse().map_err(|e: compress_core::toml::de::Error| {
            err(path.display().to_string(), e.to_string())
        })?;
        Self::from_table(&table)
    }

    /// Check a parsed recipe.
    ///
    /// # Errors
    /// [`RecipeError`] naming the step or key at fault.
    pub fn from_table(table: &Table) -> Result<Self, RecipeError> {
        check_keys(table, &["model", "data", "step", "seed"], "top level")?;
        let model = table
            .get("model")
            .and_then(Value::as_table)
            .ok_or_else(|| err("[model]", "missing"))?;
        check_keys(model, &["arch", "weights"], "[model]")?;
        let arch = model
            .get("arch")
            .and_then(Value::as_str)
            .ok_or_else(|| err("[model]", "'arch' (a zoo name) is required"))?;
        let parsed: compress_zoo::Arch = arch
            .parse()
            .map_err(|e: compress_zoo::ZooError| err("[model]", e.to_string()))?;
        if parsed.takes_tokens() {
            return Err(err(
                "[model]",
                format!("'{arch}' takes token ids; recipes train image classifiers"),
            ));
        }
        let weights = model
            .get("weights")
            .and_then(Value::as_str)
            .map(PathBuf::from);
        if let Some(w) = &weights
            && !w.is_file()
        {
            return Err(err(
                "[model]",
                format!("weights '{}' do not exist", w.display()),
            ));
        }
        let data = table
            .get("data")
            .and_then(Value::as_table)
            .ok_or_else(|| err("[data]", "missing"))?;
        check_keys(data, &["path", "pixel_max"], "[data]")?;
        let data_path = PathBuf::from(
            data.get("path")
                .and_then(Value::as_str)
                .ok_or_else(|| err("[data]", "'path' is required"))?,
        );
        if !data_path.is_file() {
            return Err(err(
                "[data]",
                format!("'{}' does not exist", data_path.display()),
            ));
        }
        let pixel_max = get_f64(data, "pixel_max", "[data]", 255.0)? as f32;
        let seed = match table.get("seed") {
            None => 0,
            Some(Value::Integer(s)) if *s >= 0 => *s as u64,
            Some(v) => {
                return Err(err(
                    "top level",
                    format!("'seed' must be a non-negative integer, found {v}"),
                ));
            }
        };
        let raw = table
            .get("step")
            .and_then(Value::as_array)
            .ok_or_else(|| err("[[step]]", "a recipe needs steps"))?;
        let mut steps = Vec::new();
        let mut pruned = false;
        let mut trained = weights.is_some();
        let mut quantized = false;
        for (i, s) in raw.iter().enumerate() {
            let t = s
                .as_table()
                .ok_or_else(|| err(format!("step[{i}]"), "must be a table"))?;
            let kind = t.get("kind").and_then(Value::as_str).unwrap_or("");
            let ctx = format!("step[{i}] ({kind})");
            if quantized && !matches!(kind, "evaluate" | "report") {
                return Err(err(
                    ctx,
                    "quantize is the last step that changes the model (only evaluate and report may follow)",
                ));
            }
            let step = match kind {
                "train" | "finetune" => {
                    check_keys(
                        t,
                        &["kind", "epochs", "lr", "batch_size", "max_steps"],
                        &ctx,
                    )?;
                    if kind == "finetune" && !pruned {
                        return Err(err(ctx, "finetune comes after a prune step"));
                    }
                    trained = true;
                    Step::Train {
                        name: kind.to_string(),
                        epochs: get_usize(t, "epochs", &ctx, 1)?,
                        lr: get_f64(t, "lr", &ctx, 1e-3)?,
                        batch_size: get_usize(t, "batch_size", &ctx, 64)?,
                        max_steps: t
                            .get("max_steps")
                            .map(|_| get_usize(t, "max_steps", &ctx, 1))
                            .transpose()?,
                    }
                }
                "prune" => {
                    check_keys(
                        t,
                        &[
                            "kind",
                            "algorithm",
                            "config",
                            "schedule",
                            "interval_steps",
                            "total_times",
                            "epochs",
                            "lr",
                            "batch_size",
                        ],
                        &ctx,
                    )?;
                    if !trained {
                        return Err(err(
                            ctx,
                            "prune needs trained weights: add a train step or [model] weights",
                        ));
                    }
                    let (config, algorithm, options) = config_and_algorithm(t, &ctx, None)?;
                    let entry = compress_core::AlgorithmEntry::find(&algorithm)
                        .map_err(|e| err(&ctx, e.to_string()))?;
                    entry
                        .build_pruner(&options)
                        .map_err(|e| err(&ctx, e.to_string()))?;
                    let schedule = match t.get("schedule").map(|v| v.as_str()) {
                        None => None,
                        Some(kind) => {
                            let total_times = get_usize(t, "total_times", &ctx, 10)?;
                            let schedule = match kind {
                                Some("agp") => compress_core::Schedule::Agp { total_times },
                                Some("linear") => compress_core::Schedule::Linear { total_times },
                                _ => {
                                    return Err(err(
                                        ctx,
                                        "'schedule' must be \"agp\" or \"linear\"",
                                    ));
                                }
                            };
                            Some(ScheduleSpec {
                                schedule,
                                total_times,
                                interval_steps: get_usize(t, "interval_steps", &ctx, 20)?,
                                epochs: get_usize(t, "epochs", &ctx, 1)?,
                                lr: get_f64(t, "lr", &ctx, 1e-3)?,
                                batch_size: get_usize(t, "batch_size", &ctx, 64)?,
                            })
                        }
                    };
                    pruned = true;
                    Step::Prune {
                        algorithm,
                        config,
                        options,
                        schedule,
                    }
                }
                "speedup" => {
                    check_keys(t, &["kind"], &ctx)?;
                    if !pruned {
                        return Err(err(ctx, "speedup needs masks: put a prune step before it"));
                    }
                    Step::Speedup
                }
                "quantize" => {
                    check_keys(
                        t,
                        &[
                            "kind",
                            "algorithm",
                            "config",
                            "calib",
                            "epochs",
                            "lr",
                            "batch_size",
                            "affine",
                        ],
                        &ctx,
                    )?;
                    if !trained {
                        return Err(err(
                            ctx,
                            "quantize needs trained weights: add a train step or [model] weights",
                        ));
                    }
                    let (config, algorithm, options) = config_and_algorithm(t, &ctx, Some("ptq"))?;
                    compress_core::AlgorithmEntry::find(&algorithm)
                        .and_then(|e| e.build_quantizer(&options))
                        .map_err(|e| err(&ctx, e.to_string()))?;
                    let mut job = crate::quantize::QuantizeJob::new(&algorithm, config);
                    job.options = options;
                    job.calib_batches = get_usize(t, "calib", &ctx, 8)?;
                    job.batch_size = get_usize(t, "batch_size", &ctx, 64)?;
                    if t.contains_key("epochs") {
                        job.train = Some(train_config(
                            get_usize(t, "epochs", &ctx, 1)?,
                            get_f64(t, "lr", &ctx, 1e-4)?,
                            job.batch_size,
                            None,
                            seed,
                        ));
                    }
                    let affine = match t.get("affine").and_then(Value::as_str) {
                        None | Some("error") => compress_quant::AffinePolicy::Error,
                        Some("requantize") => compress_quant::AffinePolicy::Requantize,
                        Some(other) => {
                            return Err(err(
                                ctx,
                                format!(
                                    "'affine' must be \"error\" or \"requantize\", found \"{other}\""
                                ),
                            ));
                        }
                    };
                    quantized = true;
                    Step::Quantize {
                        job: Box::new(job),
                        affine,
                    }
                }
                "evaluate" => Step::Evaluate,
                "report" => Step::Report,
                other => {
                    return Err(err(
                        format!("step[{i}]"),
                        format!(
                            "unknown kind '{other}' (train, prune, speedup, finetune, quantize, evaluate, report)"
                        ),
                    ));
                }
            };
            steps.push(step);
        }
        Ok(Self {
            arch: arch.to_string(),
            weights,
            data: data_path,
            pixel_max,
            seed,
            steps,
        })
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// The step that produced it.
    pub name: String,
    /// Learnable parameters.
    pub params: u64,
    /// Multiply-accumulates of one image.
    pub macs: u64,
    /// Size of the saved weights (burnpack), bytes.
    pub bytes: u64,
    /// Median CPU latency of a batch of 64, milliseconds.
    pub latency_ms: f64,
    /// Test accuracy.
    pub accuracy: f64,
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Stages in order.
    pub stages: Vec<Stage>,
    /// Wall time of the whole run.
    pub seconds: f64,
}

pub(crate) fn train_config(
    epochs: usize,
    lr: f64,
    batch_size: usize,
    max_steps: Option<usize>,
    seed: u64,
) -> TrainConfig {
    TrainConfig {
        epochs,
        max_steps,
        batch_size,
        lr,
        optimizer: OptimizerKind::Adam,
        seed,
        progress: true,
    }
}

pub(crate) fn load_data(recipe: &Recipe) -> Result<(ImageDataset, ImageDataset), RecipeError> {
    let all = ImageDataset::load(&recipe.data, recipe.pixel_max)
        .map_err(|e| err("[data]", e.to_string()))?;
    Ok(all.split())
}

use burn::module::Module;
use compress_core::{
    GradientStatistics, MetricNeeds, ModuleIndex, ScheduledPruning, accuracy, prune,
    prune_with_grads, train_classifier,
};
use compress_graph::{capture, count};
use compress_speedup::{ConflictPolicy, DependencyGraph, FixStructure, Plan, apply, save_pruned};
use compress_zoo::{AnyModel, ImageClassifier};

/// Where a run writes its model, and whether to print progress.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Base path of the final model (`<out>.bpk`, plus `<out>.plan.json` after a speedup).
    pub out: Option<PathBuf>,
    /// Print each stage as it completes.
    pub verbose: bool,
}

/// Run a checked recipe.
///
/// # Errors
/// [`RecipeError`] naming the step that failed.
pub fn run(recipe: &Recipe, options: &RunOptions) -> Result<RunReport, RecipeError> {
    let arch: compress_zoo::Arch = recipe
        .arch
        .parse()
        .map_err(|e: compress_zoo::ZooError| err("[model]", e.to_string()))?;
    let device = Device::flex().autodiff();
    device.seed(recipe.seed);
    let model = match &recipe.weights {
        Some(w) => AnyModel::load(arch, w, &device).map_err(|e| err("[model]", e.to_string()))?,
        None => AnyModel::init(arch, &device),
    };
    let image = arch.input_shape(1);
    match model {
        AnyModel::SmallCnn(m) => run_model(m, recipe, options, image),
        AnyModel::Mlp(m) => run_model(m, recipe, options, image),
        AnyModel::LeNet5(m) => run_model(m, recipe, options, image),
        AnyModel::LeNet300100(m) => run_model(m, recipe, options, image),
        AnyModel::ResNet18(m) => run_model(m, recipe, options, image),
        AnyModel::ResNet50(m) => run_model(m, recipe, options, image),
        AnyModel::MobileNetV2(m) => run_model(m, recipe, options, image),
        AnyModel::TinyTransformer(_) => Err(err(
            "[model]",
            "tiny-transformer takes token ids; recipes train image classifiers",
        )),
    }
}

fn stage<M: Module + ImageClassifier + 'static>(
    name: &str,
    model: &M,
    test: &ImageDataset,
    image: [usize; 4],
) -> Result<Stage, RecipeError> {
    let device = Device::flex();
    let graph = capture(model, |m, d| m.classify(Tensor::zeros(image, d)))
        .map_err(|e| err(name, e.to_string()))?;
    let cost = count(&graph);
    let file = std::env::temp_dir().join(format!(
        "burn-compress-stage-{}-{name}.bpk",
        std::process::id()
    ));
    model
        .clone()
        .save_file(&file)
        .map_err(|e| err(name, e.to_string()))?;
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&file);
    Ok(Stage {
        name: name.to_string(),
        params: cost.params,
        macs: cost.macs,
        bytes,
        latency_ms: latency_ms(model, image),
        accuracy: accuracy(model, test, |m, x| m.classify(x), &device),
    })
}

/// Median CPU latency of a batch of 64, milliseconds.
fn latency_ms<M: ImageClassifier>(model: &M, image: [usize; 4]) -> f64 {
    let x = Tensor::<4>::ones([64, image[1], image[2], image[3]], &Device::flex());
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            let _ = model.classify(x.clone()).into_data();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn run_model<M>(
    model: M,
    recipe: &Recipe,
    options: &RunOptions,
    image: [usize; 4],
) -> Result<RunReport, RecipeError>
where
    M: Module + FixStructure + ImageClassifier + 'static,
{
    let started = Instant::now();
    let (train, test) = load_data(recipe)?;
    let mut model = model; // lives on an autodiff device
    let mut masks: Option<MaskSet> = None;
    let mut plan: Option<Plan> = None;
    let mut stages = Vec::new();
    let mut native: Option<M> = None;
    let record = |stages: &mut Vec<Stage>, s: Stage| {
        if options.verbose {
            eprintln!(
                "{:>9}: {} params, {} MACs, {} bytes, {:.2} ms/64 images, accuracy {:.2}%",
                s.name,
                s.params,
                s.macs,
                s.bytes,
                s.latency_ms,
                s.accuracy * 100.0
            );
        }
        stages.push(s);
    };
    for (i, step) in recipe.steps.iter().enumerate() {
        let ctx = format!("step[{i}]");
        match step {
            Step::Train {
                name,
                epochs,
                lr,
                batch_size,
                max_steps,
            } => {
                let config = train_config(
                    *epochs,
                    *lr,
                    *batch_size,
                    *max_steps,
                    recipe.seed.wrapping_add(i as u64),
                );
                let trained = match masks.as_ref() {
                    // Masks stay in force while fine-tuning: pruned weights never come back.
                    Some(m) => {
                        let soft = m.apply_soft(&model).map_err(|e| err(&ctx, e.to_string()))?;
                        let (t, _) = train_classifier(
                            soft,
                            &train,
                            |m, x| m.classify(x),
                            &config,
                            &mut compress_core::NoHooks,
                        );
                        t.valid().materialize().train()
                    }
                    None => {
                        train_classifier(
                            model,
                            &train,
                            |m, x| m.classify(x),
                            &config,
                            &mut compress_core::NoHooks,
                        )
                        .0
                    }
                };
                model = trained;
                record(&mut stages, stage(name, &model.valid(), &test, image)?);
            }
            Step::Prune {
                algorithm,
                config,
                options: algo_options,
                schedule,
            } => {
                let pruner = compress_core::AlgorithmEntry::find(algorithm)
                    .and_then(|e| e.build_pruner(algo_options))
                    .map_err(|e| err(&ctx, e.to_string()))?;
                let inference = model.valid();
                // Coupled layers get one dependency group, so their masks agree up front.
                let graph = capture(&inference, |m, d| m.classify(Tensor::zeros(image, d)))
                    .map_err(|e| err(&ctx, e.to_string()))?;
                let deps = DependencyGraph::build(&graph).map_err(|e| err(&ctx, e.to_string()))?;
                let index = ModuleIndex::from_module(&inference);
                let config = deps
                    .auto_dependency_groups(config, &index)
                    .map_err(|e| err(&ctx, e.to_string()))?;
                if let Some(spec) = schedule {
                    let mut hook = ScheduledPruning::new(
                        std::sync::Arc::from(pruner),
                        config,
                        &index,
                        spec.schedule,
                        spec.interval_steps,
                        spec.total_times,
                    )
                    .map_err(|e| err(&ctx, e.to_string()))?;
                    let cfg = train_config(
                        spec.epochs,
                        spec.lr,
                        spec.batch_size,
                        None,
                        recipe.seed.wrapping_add(i as u64),
                    );
                    let (m, _) =
                        train_classifier(model, &train, |m, x| m.classify(x), &cfg, &mut hook);
                    if let Some(e) = hook.take_error() {
                        return Err(err(&ctx, e.to_string()));
                    }
                    if hook.updates() < spec.total_times {
                        return Err(err(
                            &ctx,
                            format!(
                                "only {} of {} mask updates fit in the training: raise epochs or lower interval_steps",
                                hook.updates(),
                                spec.total_times
                            ),
                        ));
                    }
                    let final_masks = hook
                        .masks()
                        .cloned()
                        .ok_or_else(|| err(&ctx, "the schedule produced no masks"))?;
                    model = m;
                    let masked = final_masks
                        .apply_hard(&model.valid())
                        .map_err(|e| err(&ctx, e.to_string()))?;
                    masks = Some(final_masks);
                    record(&mut stages, stage("prune", &masked, &test, image)?);
                    continue;
                }
                if pruner.needs() == MetricNeeds::LearnedScores {
                    // Slim factors / movement scores train on their own Adam; a zero learning
                    // rate keeps the weights as trained (fine-tune in a later step).
                    let mut hook = compress_core::LearnedScores::new(
                        std::sync::Arc::from(pruner),
                        config,
                        &index,
                    )
                    .map_err(|e| err(&ctx, e.to_string()))?;
                    let steps = hook.spec().total_steps();
                    let cfg = train_config(steps, 0.0, 64, Some(steps), recipe.seed);
                    let (m, _) = train_classifier(
                        hook.attach(&model),
                        &train,
                        |m, x| m.classify(x),
                        &cfg,
                        &mut hook,
                    );
                    let (m, learned) = hook.finish(m).map_err(|e| err(&ctx, e.to_string()))?;
                    model = m;
                    let masked = learned
                        .apply_hard(&model.valid())
                        .map_err(|e| err(&ctx, e.to_string()))?;
                    masks = Some(learned);
                    record(&mut stages, stage("prune", &masked, &test, image)?);
                    continue;
                }
                let outcome = if pruner.needs() == MetricNeeds::Gradients {
                    let targets: Vec<String> = config
                        .resolve(&index)
                        .map_err(|e| err(&ctx, e.to_string()))?
                        .targets
                        .iter()
                        .filter(|t| t.is_active())
                        .map(|t| t.path.clone())
                        .collect();
                    let p = compress_core::AlgorithmEntry::find(algorithm)
                        .and_then(|e| e.build_pruner(algo_options))
                        .map_err(|e| err(&ctx, e.to_string()))?;
                    let steps = pruner.training_steps().max(1);
                    let mut stats =
                        GradientStatistics::new(targets, move |w, g| p.gradient_statistic(w, g));
                    // Statistics only: a zero learning rate leaves the weights as trained.
                    let cfg = train_config(1, 0.0, 64, Some(steps), recipe.seed);
                    let (m, _) = train_classifier(
                        model.clone(),
                        &train,
                        |m, x| m.classify(x),
                        &cfg,
                        &mut stats,
                    );
                    model = m;
                    let grads = stats.mean().map_err(|e| err(&ctx, e.to_string()))?;
                    prune_with_grads(&inference, &config, pruner.as_ref(), &grads)
                } else {
                    prune(&inference, &config, pruner.as_ref())
                }
                .map_err(|e| err(&ctx, e.to_string()))?;
                let masked = outcome
                    .masks
                    .apply_hard(&inference)
                    .map_err(|e| err(&ctx, e.to_string()))?;
                masks = Some(outcome.masks);
                record(&mut stages, stage("prune", &masked, &test, image)?);
            }
            Step::Speedup => {
                let m = masks
                    .take()
                    .ok_or_else(|| err(&ctx, "no masks: put a prune step before speedup"))?;
                let inference = model.valid();
                let graph = capture(&inference, |m, d| m.classify(Tensor::zeros(image, d)))
                    .map_err(|e| err(&ctx, e.to_string()))?;
                let deps = DependencyGraph::build(&graph).map_err(|e| err(&ctx, e.to_string()))?;
                let report = deps
                    .plan(
                        &m,
                        &ModuleIndex::from_module(&inference),
                        ConflictPolicy::Union,
                    )
                    .map_err(|e| err(&ctx, e.to_string()))?;
                let small =
                    apply(&inference, &report.plan).map_err(|e| err(&ctx, e.to_string()))?;
                record(&mut stages, stage("speedup", &small, &test, image)?);
                model = small.train();
                plan = Some(report.plan);
            }
            Step::Quantize { job, affine } => {
                // Pending masks (a prune without speedup) are folded in first.
                let float = match masks.as_ref() {
                    Some(m) => m
                        .apply_hard(&model.valid())
                        .map_err(|e| err(&ctx, e.to_string()))?,
                    None => model.valid(),
                };
                let source = if job.train.is_some() {
                    float.clone().train()
                } else {
                    float.clone()
                };
                let quantized = crate::quantize::quantize_classifier(&source, &train, job)
                    .map_err(|e| err(&ctx, e.to_string()))?;
                let exported = quantized
                    .export(*affine)
                    .map_err(|e| err(&ctx, e.to_string()))?;
                let mut row = stage("quantize", &float, &test, image)?;
                let file = std::env::temp_dir().join(format!(
                    "burn-compress-stage-{}-quantize.bpk",
                    std::process::id()
                ));
                row.bytes = compress_quant::save_quantized(&exported, &file)
                    .ok()
                    .and_then(|f| std::fs::metadata(f).ok())
                    .map_or(0, |m| m.len());
                let _ = std::fs::remove_file(&file);
                row.latency_ms = latency_ms(&exported, image);
                row.accuracy = quantized
                    .accuracy(&test)
                    .map_err(|e| err(&ctx, e.to_string()))?;
                record(&mut stages, row);
                native = Some(exported);
            }
            Step::Evaluate => {
                let inference = match &masks {
                    Some(m) => m
                        .apply_hard(&model.valid())
                        .map_err(|e| err(&ctx, e.to_string()))?,
                    None => model.valid(),
                };
                record(&mut stages, stage("evaluate", &inference, &test, image)?);
            }
            Step::Report => {}
        }
    }
    if let Some(out) = &options.out {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| err("--out", e.to_string()))?;
        }
        let plan = plan.unwrap_or_default();
        match &native {
            // The quantized weights (burnpack, 4/2-bit packed) and the plan: load with
            // `apply(template, plan)` then `load_quantized`.
            Some(q) => {
                plan.save(out.with_extension("plan.json"))
                    .map_err(|e| err("--out", e.to_string()))?;
                compress_quant::save_quantized(q, out.with_extension("bpk"))
                    .map_err(|e| err("--out", e.to_string()))?;
            }
            None => {
                save_pruned(&model.valid(), &plan, out).map_err(|e| err("--out", e.to_string()))?;
            }
        }
    }
    Ok(RunReport {
        stages,
        seconds: started.elapsed().as_secs_f64(),
    })
}
