//! Running a checked recipe: one model, the steps in order, a stage per step that changes it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use compress_core::{
    AlgorithmEntry, MaskSet,
    dataset::ImageDataset,
    driver::Training,
    train::{NoHooks, OptimizerKind, TrainConfig, accuracy, train_classifier},
};
use compress_graph::{capture, count};
use compress_speedup::{ConflictPolicy, DependencyGraph, FixStructure, Plan, apply, save_pruned};
use compress_zoo::{AnyModel, ImageClassifier};
use serde::Serialize;

use super::{Recipe, RecipeError, Step, err};
use crate::pruning::prune_captured;

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
    /// The uniform baseline of the last `auto` step: `{"macs", "params", "accuracy"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uniform: Option<crate::auto::UniformSummary>,
    /// The full report of the last `auto` step (every candidate, the chosen model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto: Option<crate::auto::AutoReport>,
}

impl RunReport {
    /// The stages as an aligned text table (what a `report` step's `table` file holds).
    pub fn table(&self) -> String {
        super::report::stage_table(&self.stages)
    }
}

/// Where a run writes its model, and whether to print progress.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Base path of the final model (`<out>.bpk`, plus `<out>.plan.json` after a speedup).
    pub out: Option<PathBuf>,
    /// Print each stage as it completes.
    pub verbose: bool,
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

/// Run a checked recipe.
///
/// # Errors
/// [`RecipeError`] naming the step that failed.
pub fn run(recipe: &Recipe, options: &RunOptions) -> Result<RunReport, RecipeError> {
    let arch: compress_zoo::Arch = recipe
        .arch
        .parse()
        .map_err(|e: compress_zoo::ZooError| err("[model]", e))?;
    let device = Device::flex().autodiff();
    device.seed(recipe.seed);
    let model = match &recipe.weights {
        Some(w) => AnyModel::load(arch, w, &device).map_err(|e| err("[model]", e))?,
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
        AnyModel::EfficientNetLite0(m) => run_model(m, recipe, options, image),
        AnyModel::TinyTransformer(_) => Err(err(
            "[model]",
            "tiny-transformer takes token ids; recipes train image classifiers",
        )),
        AnyModel::MiniLm(_) => Err(err(
            "[model]",
            "minilm-l6 takes token ids; recipes train image classifiers",
        )),
    }
}

/// The size of `model` saved as a burnpack; a failed save is an error.
fn saved_bytes<M: Module>(model: &M, ctx: &str) -> Result<u64, RecipeError> {
    let file = std::env::temp_dir()
        .join(format!(
            "burn-compress-stage-{}-{ctx}.bpk",
            std::process::id()
        ))
        .with_extension("bpk");
    model
        .clone()
        .save_file(&file)
        .map_err(|e| err(ctx, format!("saving the model to measure it: {e}")))?;
    let bytes = file_bytes(&file, ctx);
    let _ = std::fs::remove_file(&file);
    bytes
}

fn file_bytes(file: &std::path::Path, ctx: &str) -> Result<u64, RecipeError> {
    std::fs::metadata(file).map(|m| m.len()).map_err(|e| {
        err(
            ctx,
            format!("reading the size of '{}': {e}", file.display()),
        )
    })
}

/// One forward of `model` on a zero batch of `image`, captured (`ctx` names the step on error).
fn classifier_graph<M: Module + ImageClassifier>(
    model: &M,
    image: [usize; 4],
    ctx: &str,
) -> Result<compress_graph::Graph, RecipeError> {
    capture(model, |m, d| m.classify(Tensor::zeros(image, d))).map_err(|e| err(ctx, e))
}

fn stage<M: Module + ImageClassifier + 'static>(
    name: &str,
    model: &M,
    test: &ImageDataset,
    image: [usize; 4],
) -> Result<Stage, RecipeError> {
    let device = Device::flex();
    let graph = classifier_graph(model, image, name)?;
    let cost = count(&graph);
    Ok(Stage {
        name: name.to_string(),
        params: cost.params,
        macs: cost.macs,
        bytes: saved_bytes(model, name)?,
        latency_ms: latency_ms(model, image),
        accuracy: accuracy(model, test, |m, x| m.classify(x), &device),
    })
}

/// Median CPU latency of a batch of 64, milliseconds (the stage table's and `auto`'s).
pub(crate) fn latency_ms<M: ImageClassifier>(model: &M, image: [usize; 4]) -> f64 {
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
    let (train, test) = ImageDataset::load(&recipe.data, recipe.pixel_max)
        .map_err(|e| err("[data]", e))?
        .split();
    let mut model = model; // lives on an autodiff device
    let mut masks: Option<MaskSet> = None;
    let mut plan: Option<Plan> = None;
    let mut report = RunReport {
        stages: Vec::new(),
        seconds: 0.0,
        uniform: None,
        auto: None,
    };
    let mut native: Option<M> = None;
    // The model as the last plain train step left it: the "dense" teacher.
    let mut dense: Option<M> = None;
    let record = |report: &mut RunReport, s: Stage| {
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
        report.stages.push(s);
    };
    for (i, step) in recipe.steps.iter().enumerate() {
        let ctx = format!("step[{i}]");
        match step {
            Step::Train(t)
                if t.blocks.distill.is_some()
                    || t.blocks.prune.is_some()
                    || t.blocks.quantize.is_some() =>
            {
                let config = t.config(recipe.seed.wrapping_add(i as u64));
                let mut distill = match &t.blocks.distill {
                    Some(d) => Some(distillation(
                        d,
                        &model,
                        dense.as_ref(),
                        &recipe.arch,
                        image,
                        &ctx,
                    )?),
                    None => None,
                };
                let prune = match &t.blocks.prune {
                    Some(p) => {
                        let pruner = p.pruner(&ctx)?;
                        let inference = model.valid();
                        let graph = classifier_graph(&inference, image, &ctx)?;
                        let coupled = crate::pruning::coupled_config(&inference, &graph, &p.config)
                            .map_err(|e| err(&ctx, e))?;
                        Some(crate::fusion::FusedPrune {
                            config: coupled,
                            pruner: Arc::from(pruner),
                            schedule: p
                                .schedule
                                .ok_or_else(|| err(&ctx, "a schedule is required"))?,
                        })
                    }
                    None => None,
                };
                // Masks of an earlier prune stay in force (soft) unless this run prunes itself.
                let start = match (masks.as_ref(), &prune) {
                    (Some(m), None) => m.apply_soft(&model).map_err(|e| err(&ctx, e))?,
                    _ => model,
                };
                let fused = crate::fusion::train_fused(
                    start,
                    &train,
                    &config,
                    prune,
                    t.blocks.quantize.as_ref().map(|q| &q.job),
                    distill.as_mut(),
                )
                .map_err(|e| err(&ctx, e))?;
                let name = if t.blocks.prune.is_some() || t.blocks.quantize.is_some() {
                    "fuse"
                } else {
                    t.name()
                };
                let mut row = stage(name, &fused.model, &test, image)?;
                if let Some(sim) = fused.sim {
                    let q = crate::quantize::Quantized {
                        model: fused.model.clone(),
                        sim,
                        mixed: None,
                    };
                    row.accuracy = q.accuracy(&test).map_err(|e| err(&ctx, e))?;
                }
                record(&mut report, row);
                if let Some(m) = fused.masks {
                    masks = Some(m);
                }
                model = fused.model.train();
                if t.blocks.prune.is_none()
                    && t.blocks.quantize.is_none()
                    && !t.finetune
                    && masks.is_none()
                {
                    dense = Some(model.valid());
                }
            }
            Step::Train(t) => {
                let config = t.config(recipe.seed.wrapping_add(i as u64));
                let forward = |m: &M, x: Tensor<4>| m.classify(x);
                model = match masks.as_ref() {
                    // Masks stay in force while fine-tuning: pruned weights never come back.
                    Some(m) => {
                        let soft = m.apply_soft(&model).map_err(|e| err(&ctx, e))?;
                        let (t, _) = train_classifier(soft, &train, forward, &config, &mut NoHooks);
                        t.valid().materialize().train()
                    }
                    None => train_classifier(model, &train, forward, &config, &mut NoHooks).0,
                };
                if !t.finetune && masks.is_none() {
                    dense = Some(model.valid());
                }
                record(&mut report, stage(t.name(), &model.valid(), &test, image)?);
            }
            Step::Prune(p) => {
                let pruner = p.pruner(&ctx)?;
                let inference = model.valid();
                // Coupled layers get one dependency group, so their masks agree up front.
                let graph = classifier_graph(&inference, image, &ctx)?;
                // Scheduled pruning and ADMM train as the step says; pruners that gather
                // gradients or learn scores run exactly their own steps at learning rate 0.
                let config = match (&p.schedule, pruner.admm()) {
                    (Some(_), _) | (None, Some(_)) => train_config(
                        p.step.epochs,
                        p.step.lr,
                        p.step.batch_size,
                        None,
                        recipe.seed.wrapping_add(i as u64),
                    ),
                    (None, None) => train_config(1, 0.0, 64, None, recipe.seed),
                };
                let training = Training {
                    data: &train,
                    forward: &|m: &M, x: Tensor<4>| m.classify(x),
                    config,
                };
                let pruned = prune_captured(
                    model,
                    &graph,
                    &p.config,
                    Arc::from(pruner),
                    p.schedule.as_ref(),
                    Some(&training),
                )
                .map_err(|e| err(&ctx, e))?;
                model = pruned.model;
                if let Some(path) = &p.step.masks {
                    if let Some(parent) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(parent).map_err(|e| {
                            err(&ctx, format!("creating '{}': {e}", parent.display()))
                        })?;
                    }
                    pruned.masks.save(path).map_err(|e| err(&ctx, e))?;
                }
                let masked = pruned
                    .masks
                    .apply_hard(&model.valid())
                    .map_err(|e| err(&ctx, e))?;
                masks = Some(pruned.masks);
                record(&mut report, stage("prune", &masked, &test, image)?);
            }
            Step::Speedup(_) => {
                let m = masks
                    .take()
                    .ok_or_else(|| err(&ctx, "no masks: put a prune step before speedup"))?;
                let inference = model.valid();
                let graph = classifier_graph(&inference, image, &ctx)?;
                let deps = DependencyGraph::build(&graph).map_err(|e| err(&ctx, e))?;
                let planned = deps
                    .plan(
                        &m,
                        &compress_core::ModuleIndex::from_module(&inference),
                        ConflictPolicy::Union,
                    )
                    .map_err(|e| err(&ctx, e))?;
                let small = apply(&inference, &planned.plan).map_err(|e| err(&ctx, e))?;
                record(&mut report, stage("speedup", &small, &test, image)?);
                model = small.train();
                plan = Some(planned.plan);
            }
            Step::Quantize(q) => {
                // Pending masks (a prune without speedup) are folded in first.
                let float = match masks.as_ref() {
                    Some(m) => m.apply_hard(&model.valid()).map_err(|e| err(&ctx, e))?,
                    None => model.valid(),
                };
                let source = if q.job.train.is_some() {
                    float.clone().train()
                } else {
                    float.clone()
                };
                let quantized = crate::quantize::quantize_classifier(&source, &train, &q.job)
                    .map_err(|e| err(&ctx, e))?;
                let exported = quantized.export(q.affine).map_err(|e| err(&ctx, e))?;
                let mut row = stage("quantize", &float, &test, image)?;
                let file = std::env::temp_dir().join(format!(
                    "burn-compress-stage-{}-quantize.bpk",
                    std::process::id()
                ));
                let written = compress_quant::save_quantized(&exported, &file)
                    .map_err(|e| err(&ctx, format!("saving the quantized model: {e}")))?;
                let bytes = file_bytes(&written, &ctx);
                let _ = std::fs::remove_file(&written);
                row.bytes = bytes?;
                row.latency_ms = latency_ms(&exported, image);
                row.accuracy = quantized.accuracy(&test).map_err(|e| err(&ctx, e))?;
                record(&mut report, row);
                native = Some(exported);
            }
            Step::Evaluate(_) => {
                let inference = match &masks {
                    Some(m) => m.apply_hard(&model.valid()).map_err(|e| err(&ctx, e))?,
                    None => model.valid(),
                };
                record(&mut report, stage("evaluate", &inference, &test, image)?);
            }
            Step::Auto(a) => {
                // Pending masks (a prune without speedup) are folded in first.
                let inference = match masks.take() {
                    Some(m) => m.apply_hard(&model.valid()).map_err(|e| err(&ctx, e))?,
                    None => model.valid(),
                };
                let mut settings = a.settings.clone();
                settings.seed = recipe.seed.wrapping_add(i as u64);
                let verbose = options.verbose;
                let outcome =
                    crate::auto::auto_compress(&inference, &train, &test, image, &settings, |e| {
                        if verbose {
                            super::auto::print_event(&e);
                        }
                    })
                    .map_err(|e| err(&ctx, e))?;
                record(&mut report, stage("auto", &outcome.model, &test, image)?);
                a.write(&outcome.report, &ctx)?;
                plan = Some(crate::auto::compose_plans(
                    &plan.take().unwrap_or_default(),
                    &outcome.plan,
                ));
                model = outcome.model.train();
                report.uniform = outcome.report.uniform_summary();
                report.auto = Some(outcome.report);
            }
            Step::Report(r) => {
                report.seconds = started.elapsed().as_secs_f64();
                r.write(&report, &ctx)?;
            }
        }
    }
    if let Some(out) = &options.out {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| err("--out", e))?;
        }
        let plan = plan.unwrap_or_default();
        match &native {
            // The quantized weights (burnpack, 4/2-bit packed) and the plan: load with
            // `apply(template, plan)` then `load_quantized`.
            Some(q) => {
                plan.save(out.with_extension("plan.json"))
                    .map_err(|e| err("--out", e))?;
                compress_quant::save_quantized(q, out.with_extension("bpk"))
                    .map_err(|e| err("--out", e))?;
            }
            None => {
                save_pruned(&model.valid(), &plan, out).map_err(|e| err("--out", e))?;
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The distillation hook of a `[step.distill]` block for `student`.
fn distillation<M>(
    block: &super::DistillBlock,
    student: &M,
    dense: Option<&M>,
    arch: &str,
    image: [usize; 4],
    ctx: &str,
) -> Result<crate::distill::Distillation<M>, RecipeError>
where
    M: Module + ImageClassifier + 'static,
{
    use crate::distill::{Distillation, Teacher};
    let distiller = AlgorithmEntry::find(&block.algorithm)
        .and_then(|e| e.build_distiller(&block.options))
        .map_err(|e| err(ctx, e))?;
    let teacher = match &block.teacher {
        super::TeacherSource::Dense => {
            let dense =
                dense.ok_or_else(|| err(ctx, "no dense model: a train step must come before"))?;
            Teacher::new(dense.valid(), [image[1], image[2], image[3]], |m: &M, x| {
                m.classify(x)
            })
        }
        super::TeacherSource::Weights { arch: a, path } => {
            let name = if a.is_empty() { arch } else { a.as_str() };
            let arch: compress_zoo::Arch = name
                .parse()
                .map_err(|e: compress_zoo::ZooError| err(ctx, e))?;
            let shape = arch.input_shape(1);
            let input = [shape[1], shape[2], shape[3]];
            let loaded = AnyModel::load(arch, path, &Device::flex()).map_err(|e| err(ctx, e))?;
            match loaded {
                AnyModel::SmallCnn(m) => Teacher::new(m, input, |m, x| m.classify(x)),
                AnyModel::Mlp(m) => Teacher::new(m, input, |m, x| m.classify(x)),
                AnyModel::LeNet5(m) => Teacher::new(m, input, |m, x| m.classify(x)),
                AnyModel::LeNet300100(m) => Teacher::new(m, input, |m, x| m.classify(x)),
                AnyModel::ResNet18(m) => Teacher::new(m, input, |m, x| m.classify(x)),
                AnyModel::ResNet50(m) => Teacher::new(m, input, |m, x| m.classify(x)),
                AnyModel::MobileNetV2(m) => Teacher::new(m, input, |m, x| m.classify(x)),
                AnyModel::EfficientNetLite0(m) => Teacher::new(m, input, |m, x| m.classify(x)),
                AnyModel::TinyTransformer(_) => {
                    return Err(err(
                        ctx,
                        "tiny-transformer takes token ids; it cannot teach an image classifier",
                    ));
                }
                AnyModel::MiniLm(_) => {
                    return Err(err(
                        ctx,
                        "minilm-l6 takes token ids; it cannot teach an image classifier",
                    ));
                }
            }
        }
    }
    .map_err(|e| err(ctx, e))?;
    Distillation::new(
        Arc::from(distiller),
        &block.config,
        teacher,
        student,
        [image[1], image[2], image[3]],
        |m: &M, x| m.classify(x),
    )
    .map_err(|e| err(ctx, e))
}
