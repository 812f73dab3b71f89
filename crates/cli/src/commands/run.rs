//! `burn-compress run RECIPE.toml`: a whole pipeline, with a stage table at the end.

use std::path::PathBuf;

use burn_compress::recipe::{Recipe, RunOptions, run as run_recipe};

use crate::table::{percent, table};

/// Arguments of `run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The recipe (TOML: [model], [data], [[step]]).
    recipe: PathBuf,
    /// Also write the stages as JSON: {"stages": [{name, params, macs, bytes, latency_ms, accuracy}], "seconds"}.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Base path of the compressed model (`<out>.bpk` + `<out>.plan.json`).
    #[arg(long, default_value = "out/model")]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let recipe = Recipe::from_file(&args.recipe)?;
    let report = run_recipe(
        &recipe,
        &RunOptions {
            out: Some(args.out.clone()),
            verbose: true,
        },
    )?;
    let mut t = table(&burn_compress::recipe::STAGE_COLUMNS);
    for s in &report.stages {
        t.add_row(vec![
            s.name.clone(),
            s.params.to_string(),
            s.macs.to_string(),
            s.bytes.to_string(),
            format!("{:.2} ms", s.latency_ms),
            percent(s.accuracy),
        ]);
    }
    println!("{t}");
    if let (Some(first), Some(last)) = (report.stages.first(), report.stages.last()) {
        println!(
            "{:.2}x fewer MACs, {:.2}x fewer params, accuracy {} -> {}, in {:.1} s; model written to {}.bpk",
            first.macs as f64 / last.macs.max(1) as f64,
            first.params as f64 / last.params.max(1) as f64,
            percent(first.accuracy),
            percent(last.accuracy),
            report.seconds,
            args.out.display()
        );
    }
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
