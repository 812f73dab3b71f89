//! Parsing and dispatch; the subcommands live in `commands/`, one file each.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::prelude::Device;
use burn_compress::CompressConfig;
use burn_compress::zoo::{AnyModel, Arch, ZooError};
use clap::{Parser, Subcommand};

use crate::commands::{
    auto, check, eval, export, list, prune, quantize, run, sensitivity, speedup,
};

// Links every algorithm crate, so the registry is complete.
use burn_compress as _;

/// Model compression for Burn: pruning, quantization, distillation and speedup.
#[derive(Parser, Debug)]
#[command(name = "burn-compress", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the registered algorithms.
    List(list::Args),
    /// Validate a config file and print what each rule means.
    Check(check::Args),
    /// Compute pruning masks for a zoo model.
    Prune(prune::Args),
    /// Make a masked zoo model physically smaller, and measure it.
    Speedup(speedup::Args),
    /// Quantize a zoo model (PTQ, QAT, LSQ, ...) and write Burn's native quantized tensors.
    Quantize(quantize::Args),
    /// Run a recipe: train, prune, speed up, fine-tune, evaluate, report.
    Run(run::Args),
    /// Export a zoo model (dense, sped-up or quantized) to ONNX (opset 17, f32 or QDQ int8).
    Export(export::Args),
    /// Sensitivity analysis: test accuracy with one layer at a time pruned to each sparsity.
    Sensitivity(sensitivity::Args),
    /// Automatic compression: per-layer ratios searched under a budget (macs/6, params<=0.25),
    /// iterative prune -> speedup -> fine-tune, and a uniform baseline at the same cost.
    Auto(auto::Args),
    /// Evaluate a model on real data: top-1 / top-5 of image classifiers, sentence similarity
    /// (minilm-l6), perplexity (smollm2-135m); --reference compares with another model.
    Eval(eval::Args),
}

/// The zoo model a command works on: `--arch` and `--weights`.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Zoo architecture: small-cnn, mlp, lenet5, lenet-300-100, resnet18, resnet50, mobilenet_v2,
    /// tiny-transformer, minilm-l6 (its weights: the model directory as shipped); for one-shot
    /// methods (prune / quantize with --calib) also smollm2-135m (its weights: the .gguf).
    #[arg(long)]
    pub arch: String,
    /// Weights with PyTorch state_dict names (safetensors).
    #[arg(long)]
    pub weights: PathBuf,
}

impl ModelArgs {
    /// The architecture; an unknown name is an error listing the available ones.
    pub fn arch(&self) -> Result<Arch, ZooError> {
        self.arch.parse()
    }

    /// The weights loaded into `arch` on `device`.
    pub fn load(&self, arch: Arch, device: &Device) -> Result<AnyModel, ZooError> {
        AnyModel::load(arch, &self.weights, device)
    }
}

/// What `prune` and `quantize` start from: the zoo model and the compression config applied to
/// it.
#[derive(clap::Args, Debug)]
pub struct ModelConfigArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The config file (TOML with NNI's config_list keys: sparse_ratio, op_types, ... for prune;
    /// quant_dtype, quant_scheme, granularity, target_names for quantize). One-shot methods
    /// (wanda, sparsegpt, magnitude, rtn, gptq, awq, smoothquant) read only its [algorithm]
    /// table, and need no config at all with --algorithm and their defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl ModelConfigArgs {
    /// The config file, parsed and validated (it must be given).
    pub fn config(&self) -> anyhow::Result<CompressConfig> {
        let Some(path) = &self.config else {
            anyhow::bail!(
                "give --config PATH (the [[config_list]] rules and the [algorithm] table)"
            );
        };
        Ok(CompressConfig::from_file(path)?)
    }

    /// The `[algorithm]` table of the config, if a config is given and has one, read as plain
    /// TOML (no `[[config_list]]` needed): the algorithm's `name` (if the table has one) and
    /// every other key.
    ///
    /// One-shot methods take this route: their options live in `[algorithm]` and they compress
    /// every block Linear, so a config without `[[config_list]]` is what they expect; a config
    /// that has rules is refused by [`crate::commands::oneshot`] rather than half-read.
    pub fn algorithm_table(&self) -> anyhow::Result<Option<AlgorithmTable>> {
        let Some(path) = &self.config else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the config '{}': {e}", path.display()))?;
        let table: burn_compress::core::toml::Table = text
            .parse()
            .map_err(|e| anyhow::anyhow!("the config '{}': {e}", path.display()))?;
        let has_rules = table.contains_key("config_list");
        let Some(section) = table.get("algorithm") else {
            return Ok(Some(AlgorithmTable {
                name: None,
                options: Default::default(),
                has_rules,
            }));
        };
        let Some(section) = section.as_table() else {
            anyhow::bail!(
                "the config '{}': 'algorithm' must be a table ([algorithm])",
                path.display()
            );
        };
        let mut options = section.clone();
        let name = match options.remove("name") {
            None => None,
            Some(burn_compress::core::toml::Value::String(s)) => Some(s),
            Some(v) => anyhow::bail!(
                "the config '{}': [algorithm] name must be a string, found {v}",
                path.display()
            ),
        };
        Ok(Some(AlgorithmTable {
            name,
            options,
            has_rules,
        }))
    }
}

/// A config's `[algorithm]` table read as plain TOML ([`ModelConfigArgs::algorithm_table`]).
#[derive(Debug, Clone)]
pub struct AlgorithmTable {
    /// Its `name`, when it has one.
    pub name: Option<String>,
    /// Every other key.
    pub options: burn_compress::core::toml::Table,
    /// Whether the config also has `[[config_list]]` rules.
    pub has_rules: bool,
}

/// Parse the command line, run, and turn errors into a message and exit code 2.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List(args) => list::run(args),
        Command::Check(args) => check::run(args),
        Command::Prune(args) => prune::run(args),
        Command::Speedup(args) => speedup::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Run(args) => run::run(args),
        Command::Export(args) => export::run(args),
        Command::Sensitivity(args) => sensitivity::run(args),
        Command::Auto(args) => auto::run(args),
        Command::Eval(args) => eval::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
