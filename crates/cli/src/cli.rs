//! Parsing and dispatch; the subcommands live in `commands/`, one file each.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::prelude::Device;
use burn_compress::zoo::{AnyModel, Arch, ZooError};
use burn_compress::{CompressConfig, CompressError};
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
    /// tiny-transformer, minilm-l6 (its weights: the model directory as shipped).
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
    /// quant_dtype, quant_scheme, granularity, target_names for quantize).
    #[arg(long)]
    pub config: PathBuf,
}

impl ModelConfigArgs {
    /// The config file, parsed and validated.
    pub fn config(&self) -> Result<CompressConfig, CompressError> {
        CompressConfig::from_file(&self.config)
    }
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
