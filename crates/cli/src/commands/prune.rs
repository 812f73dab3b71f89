//! `burn-compress prune`: masks for a zoo model, a per-layer sparsity table, optional accuracy.
//!
//! The pruner runs the way it declares, through compress-core's one driver (the same route
//! recipes take): one-shot pruners read the weights only; Taylor gathers gradients, Slim and
//! Movement learn scores, and any pruner given `--schedule` prunes while training, all on the
//! training split of `--data`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use burn::module::Module;
use burn::prelude::*;
use burn_compress::core::{
    dataset::ImageDataset,
    schedule::Schedule,
    train::{OptimizerKind, TrainConfig, accuracy},
};
use burn_compress::pruning::prune_captured;
use burn_compress::zoo::{AnyModel, Arch, ImageClassifier, dispatch};
use burn_compress::zoo_capture::capture_zoo;
use burn_compress::{
    AlgorithmEntry, AlgorithmKind, CompressConfig, MaskSet, PruneMode, PruneSchedule, Pruned,
    Pruner, Training,
};

use crate::cli::ModelConfigArgs;
use crate::commands::oneshot::{self, OneShotArgs};
use crate::table::{percent, table};

/// Arguments of `prune`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    input: ModelConfigArgs,
    /// Where to write the masks (safetensors, keys = Burn parameter paths, u8 1 = keep). One-shot
    /// pruners write the pruned model instead (--save-model).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Registry name of the pruner; default: the config's [algorithm] name. One-shot pruners
    /// (magnitude, wanda, sparsegpt) prune smollm2-135m or minilm-l6 calibrated on --calib.
    #[arg(long)]
    algorithm: Option<String>,
    #[command(flatten)]
    oneshot: OneShotArgs,
    /// Training data (safetensors `images` u8 + `labels`; its training split, index % 5 != 4)
    /// for pruners that train: taylor (gradients), slim and movement (learned scores), and any
    /// pruner with --schedule.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Prune gradually while training: `agp` or `linear` (needs --data).
    #[arg(long)]
    schedule: Option<String>,
    /// Mask updates of the schedule.
    #[arg(long, default_value_t = 10)]
    total_times: usize,
    /// Optimizer steps between mask updates.
    #[arg(long, default_value_t = 20)]
    interval_steps: usize,
    /// Training epochs of the scheduled pruning.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Learning rate of the scheduled pruning (Adam).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Images per training step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seed of the training (shuffling and the device's RNG); a recipe's `seed`.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also measure test accuracy (split: index % 5 == 4) before and after masking on this
    /// image dataset (safetensors `images` u8 + `labels`).
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The pixel scale of an image dataset for `arch`: the 8x8 UCI digits go to 16, MNIST to 255.
fn pixel_max(arch: Arch) -> f32 {
    match arch.takes_tokens() {
        false if arch.input_shape(1)[2] == 8 => 16.0,
        _ => 255.0,
    }
}

/// The dataset at `path`, split, checked against the image size `arch` takes.
pub(crate) fn load_images(path: &Path, arch: Arch) -> anyhow::Result<(ImageDataset, ImageDataset)> {
    if arch.takes_tokens() {
        bail!(
            "'{arch}' takes token ids; '{}' holds images",
            path.display()
        );
    }
    let size = arch.input_shape(1)[2];
    let (train, test) = ImageDataset::load(path, pixel_max(arch))
        .with_context(|| format!("loading {}", path.display()))?
        .split();
    if (test.height, test.width) != (size, size) {
        bail!(
            "'{}' holds {}x{} images, '{arch}' takes {size}x{size}",
            path.display(),
            test.height,
            test.width
        );
    }
    Ok((train, test))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(method) = oneshot::resolve(args.algorithm.as_deref(), &args.input)? {
        if method.kind != AlgorithmKind::OneShotPruner {
            bail!(
                "'{}' is a one-shot quantizer: run it with `burn-compress quantize`",
                method.name
            );
        }
        if let Some(out) = &args.out {
            bail!(
                "--out '{}': one-shot pruners write the pruned model, not masks: give \
                 --save-model PATH",
                out.display()
            );
        }
        return oneshot::run(&args.input.model, &method, &args.oneshot, args.json);
    }
    let arch = args.input.model.arch()?;
    let config = args.input.config()?;
    let (name, options) = match (&args.algorithm, &config.algorithm) {
        (Some(name), Some(section)) if *name == section.name => {
            (name.clone(), section.options.clone())
        }
        (Some(name), _) => (name.clone(), Default::default()),
        (None, Some(section)) => (section.name.clone(), section.options.clone()),
        (None, None) => {
            bail!("no pruner: pass --algorithm NAME or give the config an [algorithm] table")
        }
    };
    let pruner: Arc<dyn Pruner> = Arc::from(AlgorithmEntry::find(&name)?.build_pruner(&options)?);
    args.oneshot.refuse_for(&name)?;
    let Some(out) = args.out.clone() else {
        bail!("give --out PATH: where to write the masks");
    };
    let schedule = match args.schedule.as_deref() {
        None => None,
        Some(kind) => {
            let total_times = args.total_times;
            let schedule = match kind {
                "agp" => Schedule::Agp { total_times },
                "linear" => Schedule::Linear { total_times },
                other => bail!("--schedule '{other}': expected 'agp' or 'linear'"),
            };
            Some(PruneSchedule {
                schedule,
                total_times,
                interval_steps: args.interval_steps,
            })
        }
    };
    let mode = PruneMode::choose(pruner.as_ref(), schedule.as_ref())?;
    let train = match (&args.data, mode.needs_training()) {
        (Some(path), true) => Some(load_images(path, arch)?.0),
        (None, true) => bail!(
            "'{name}' runs {} pruning, which trains: pass --data PATH (an image dataset, e.g. data/mnist5k.safetensors)",
            mode.name()
        ),
        (_, false) => None,
    };
    // Training needs an autodiff device; masks and accuracy are computed without it.
    let device = if mode.needs_training() {
        Device::flex().autodiff()
    } else {
        Device::flex()
    };
    device.seed(args.seed);
    let model = args.input.model.load(arch, &device)?;
    let example = arch.input_kind().example_shape(1);
    let graph = capture_zoo(&model, &example)?;
    let config_train = TrainConfig {
        epochs: args.epochs,
        max_steps: None,
        batch_size: args.batch_size,
        // Scheduled pruning and ADMM train with the given rate; pruners that only gather
        // gradients or learn scores run their own steps at rate 0.
        lr: if schedule.is_some() || matches!(mode, PruneMode::Admm) {
            args.lr
        } else {
            0.0
        },
        optimizer: OptimizerKind::Adam,
        seed: args.seed,
        progress: !args.json,
    };
    let schedule = schedule.as_ref();
    // Every image classifier goes through `image`, each as its own type.
    let (masks, pruned_model) = dispatch!(images model,
        m => image(m, &graph, &config, &pruner, schedule, &train, config_train)?,
        // No token dataset: only one-shot pruners run on it (checked above: `train` is None for
        // a token model only when no training is needed).
        m => {
            let pruned = prune_captured(m, &graph, &config, pruner.clone(), schedule, None)?;
            report_warnings(&pruned);
            (pruned.masks, AnyModel::from(pruned.model))
        }
    );
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    masks.save(&out)?;

    let accuracies = match &args.eval {
        Some(path) => {
            let (_, test) = load_images(path, arch)?;
            // The model as pruning left it (trained, for scheduled pruning), off autodiff.
            let device = Device::flex();
            let model = dispatch!(map &pruned_model, m => Ok::<_, anyhow::Error>(m.valid()))?;
            let masked = dispatch!(map &model, m => masks.apply_hard(m))?;
            Some((
                accuracy(&model, &test, |m: &AnyModel, x| m.forward(x), &device),
                accuracy(&masked, &test, |m: &AnyModel, x| m.forward(x), &device),
            ))
        }
        None => None,
    };
    print_report(&args, &name, mode, &masks, accuracies)
}

fn report_warnings<M>(pruned: &Pruned<M>) {
    for w in &pruned.warnings {
        eprintln!("warning: {w}");
    }
}

/// Prune an image classifier, training on `train` when the pruner needs it.
#[allow(clippy::too_many_arguments)]
fn image<M: Module + ImageClassifier + 'static>(
    model: M,
    graph: &burn_compress::speedup::Graph,
    config: &CompressConfig,
    pruner: &Arc<dyn Pruner>,
    schedule: Option<&PruneSchedule>,
    train: &Option<ImageDataset>,
    train_config: TrainConfig,
) -> anyhow::Result<(MaskSet, AnyModel)>
where
    AnyModel: From<M>,
{
    let forward = |m: &M, x: Tensor<4>| m.classify(x);
    let training = train.as_ref().map(|data| Training {
        data,
        forward: &forward,
        config: train_config,
    });
    let pruned = prune_captured(
        model,
        graph,
        config,
        pruner.clone(),
        schedule,
        training.as_ref(),
    )?;
    report_warnings(&pruned);
    Ok((pruned.masks, AnyModel::from(pruned.model)))
}

fn print_report(
    args: &Args,
    algorithm: &str,
    mode: PruneMode,
    masks: &MaskSet,
    accuracies: Option<(f64, f64)>,
) -> anyhow::Result<()> {
    let stats = masks.stats();
    if args.json {
        let targets: Vec<serde_json::Value> = stats
            .targets
            .iter()
            .map(|t| {
                serde_json::json!({
                    "path": t.path, "shape": t.shape, "kept": t.kept, "total": t.total, "sparsity": t.sparsity(),
                })
            })
            .collect();
        let mut report = serde_json::json!({
            "arch": args.input.model.arch, "algorithm": algorithm, "mode": mode.name(), "masks": args.out,
            "targets": targets, "kept": stats.kept, "total": stats.total, "sparsity": stats.sparsity(),
        });
        if let Some((dense, masked)) = accuracies {
            report["accuracy_dense"] = dense.into();
            report["accuracy_masked"] = masked.into();
        }
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut t = table(&["parameter", "shape", "kept", "total", "sparsity"]);
    for s in &stats.targets {
        t.add_row(vec![
            s.path.clone(),
            format!("{:?}", s.shape),
            s.kept.to_string(),
            s.total.to_string(),
            percent(s.sparsity()),
        ]);
    }
    t.add_row(vec![
        "total".to_string(),
        String::new(),
        stats.kept.to_string(),
        stats.total.to_string(),
        percent(stats.sparsity()),
    ]);
    println!(
        "{algorithm} ({} pruning) on {}: masks written to {}",
        mode.name(),
        args.input.model.arch,
        args.out.as_deref().unwrap_or(Path::new("")).display()
    );
    println!("{t}");
    if let Some((dense, masked)) = accuracies {
        println!(
            "test accuracy: dense {} -> masked {}",
            percent(dense),
            percent(masked)
        );
    }
    Ok(())
}
