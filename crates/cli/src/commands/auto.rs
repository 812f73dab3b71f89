//! `burn-compress auto`: automatic compression of a zoo model under a cost budget. Per-layer
//! ratios come from a search on each iteration's compact model, an iterative schedule prunes,
//! speeds up and fine-tunes, and a uniform baseline at the same cost is measured in the same run.

use std::path::PathBuf;

use anyhow::{Context, bail};
use burn::prelude::*;
use burn_compress::CompressConfig;
use burn_compress::auto::{AutoEvent, AutoSettings, KeepBest, Metric, auto_compress, check_labels};
use burn_compress::core::schedule::IterativeSchedule;
use burn_compress::core::search::Budget;
use burn_compress::speedup::save_pruned;
use burn_compress::zoo::dispatch;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ModelArgs;
use crate::commands::prune::load_images;
use crate::table::{percent, table};

/// Arguments of `auto`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Image dataset (safetensors `images` u8 + `labels`); fine-tuning uses its train split,
    /// the metric its test split (index % 5 == 4).
    #[arg(long)]
    data: PathBuf,
    /// The budget, measured after speedup: `<measure>/<k>` (k times fewer, e.g. macs/6) or
    /// `<measure><=<fraction>` (e.g. params<=0.25); measures: macs, params, file-bytes, latency.
    #[arg(long)]
    budget: String,
    /// Search algorithm (a registered search: simulated-annealing, sensitivity-guided), or
    /// `uniform`.
    #[arg(long, default_value = "simulated-annealing")]
    search: String,
    /// Registry name of the pruner.
    #[arg(long, default_value = "l1-norm")]
    pruner: String,
    /// Restrict the search to the config's pruning targets (their ratios are not used).
    /// Default: every Conv2d and Linear but the classifier.
    #[arg(long)]
    config: Option<PathBuf>,
    /// accuracy (maximize) or loss (cross-entropy, minimize), on the test split.
    #[arg(long, default_value = "accuracy")]
    metric: String,
    /// How the budget is reached: linear, agp or lottery.
    #[arg(long, default_value = "linear")]
    schedule: String,
    /// Iterations of the schedule.
    #[arg(long, default_value_t = 1)]
    iterations: usize,
    /// Which iteration within the budget is kept: latest, maximize or minimize.
    #[arg(long, default_value = "latest")]
    keep: String,
    /// Lottery ticket: reload the starting weights after each iteration's pruning.
    #[arg(long)]
    reset_weights: bool,
    /// The largest ratio per layer and iteration, in [0, 1).
    #[arg(long, default_value_t = 0.9)]
    max_ratio: f64,
    /// Fine-tuning epochs of each candidate before it is judged.
    #[arg(long, default_value_t = 0)]
    candidate_epochs: usize,
    /// Fine-tuning epochs after each iteration.
    #[arg(long, default_value_t = 1)]
    iteration_epochs: usize,
    /// Fine-tuning epochs of the kept model (and of the uniform baseline).
    #[arg(long, default_value_t = 5)]
    finetune_epochs: usize,
    /// Learning rate of every fine-tune (Adam).
    #[arg(long, default_value_t = 5e-4)]
    lr: f64,
    /// Seed of fine-tuning orders and of the search.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Skip the uniform baseline.
    #[arg(long)]
    no_uniform: bool,
    /// Write the report (every candidate, the chosen model, the uniform baseline) as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the SVG of the search (metric against MACs, chosen and uniform marked).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Base path of the compressed model (`<out>.bpk` + `<out>.plan.json`).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl Args {
    /// Every setting, checked before the model is loaded.
    fn settings(&self) -> anyhow::Result<AutoSettings> {
        let mut s = AutoSettings::new(Budget::parse(&self.budget)?);
        s.search = self.search.clone();
        s.pruner = self.pruner.clone();
        s.config = self
            .config
            .as_ref()
            .map(CompressConfig::from_file)
            .transpose()?;
        s.metric = self.metric.parse::<Metric>()?;
        s.schedule = self.schedule.parse::<IterativeSchedule>()?;
        s.iterations = self.iterations;
        s.keep = self.keep.parse::<KeepBest>()?;
        s.reset_weights = self.reset_weights;
        s.max_ratio = self.max_ratio;
        s.candidate_epochs = self.candidate_epochs;
        s.finetune_epochs = self.iteration_epochs;
        s.final_epochs = self.finetune_epochs;
        s.lr = self.lr;
        s.seed = self.seed;
        s.uniform_baseline = !self.no_uniform;
        s.validate()?;
        Ok(s)
    }
}

/// A spinner that shows the phase, the candidates evaluated and the last iteration.
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {prefix}: {pos} candidates  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let arch = args.model.arch()?;
    let settings = args.settings()?;
    check_labels(&args.data, settings.metric)?;
    let (train, test) = load_images(&args.data, arch)?;
    let model = args.model.load(arch, &Device::flex())?;
    let image = arch.input_shape(1);
    let bar = progress_bar();
    let observe = |e: AutoEvent<'_>| match e {
        AutoEvent::Phase(p) => bar.set_prefix(p.to_string()),
        AutoEvent::Candidate(_) => bar.inc(1),
        AutoEvent::Iteration(r) => bar.set_message(format!(
            "iteration {}: {} MACs, {} {:.4}",
            r.iteration, r.macs, settings.metric, r.metric
        )),
    };
    let (report, saved) = dispatch!(images &model,
        m => {
            let outcome = auto_compress(m, &train, &test, image, &settings, observe)?;
            if let Some(out) = &args.out {
                if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)?;
                }
                save_pruned(&outcome.model, &outcome.plan, out)?;
            }
            (outcome.report, args.out.is_some())
        },
        _t => bail!("'{arch}' takes token ids: automatic compression measures accuracy on images")
    );
    bar.finish_and_clear();

    let mut t = table(&[
        "model",
        "MACs",
        "x of dense",
        "params",
        "file bytes",
        "accuracy",
    ]);
    let mut row = |name: &str, r: &burn_compress::auto::ModelRecord| {
        t.add_row(vec![
            name.to_string(),
            r.macs.to_string(),
            format!("{:.4} ({:.2}x fewer)", r.macs_of_dense, r.macs_times_fewer),
            r.params.to_string(),
            r.file_bytes.to_string(),
            percent(r.accuracy),
        ]);
    };
    row("dense", &report.dense);
    row("chosen", &report.chosen);
    if let Some(u) = &report.uniform {
        row("uniform", u);
    }
    println!(
        "{arch}: {} with {} + {}, {} candidates in {:.1} s",
        report.budget,
        report.search,
        report.pruner,
        report.candidates.len(),
        report.seconds
    );
    println!("{t}");
    let ratios: Vec<String> = report
        .chosen
        .ratios
        .iter()
        .map(|(k, v)| format!("{k} {v:.3}"))
        .collect();
    println!("chosen per-layer ratios: {}", ratios.join(", "));
    if let Some(path) = &args.report {
        write(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{arch}: {} ({}, {})",
            report.budget, report.search, report.pruner
        );
        write(
            path,
            burn_compress::auto::plot_svg(&report, &title)?.as_bytes(),
        )?;
    }
    if saved && let Some(out) = &args.out {
        println!("model written to {}.bpk", out.display());
    }
    Ok(())
}

/// Write `bytes` to `path`, creating its folder.
fn write(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
