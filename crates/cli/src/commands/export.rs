//! `burn-compress export`: a zoo model (dense weights, a sped-up `<base>.bpk` + `<base>.plan.json`,
//! a quantized model from `quantize` or a one-shot compressed one from `prune` / `quantize
//! --save-model`) as an ONNX file (opset 17), f32 or QDQ int8; also smollm2-135m (its `.gguf`, or
//! a saved model with `--gguf` for the architecture), whose output is the logits.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::prelude::*;
use burn_compress::core::oneshot::ActivationQuant;
use burn_compress::core::{FixStructure, ModuleIndex};
use burn_compress::graph::capture;
use burn_compress::graph::onnx::{OnnxOptions, export};
use burn_compress::oneshot::{self, OneShotMeta};
use burn_compress::quant::{CalibrationConfig, export_qdq, load_quantized};
use burn_compress::speedup::load_pruned;
use burn_compress::zoo::gguf::GgufFile;
use burn_compress::zoo::{AnyModel, Llama, dispatch};
use burn_compress::zoo_capture::capture_zoo;

/// Arguments of `export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Zoo architecture (`burn-compress list` names them; e.g. lenet5, resnet18), or
    /// smollm2-135m.
    #[arg(long)]
    arch: String,
    /// Dense weights with PyTorch state_dict names (safetensors).
    #[arg(long, conflicts_with = "model", required_unless_present = "model")]
    weights: Option<PathBuf>,
    /// A model file this tool wrote: a sped-up model (`<base>.bpk` next to `<base>.plan.json`,
    /// from `speedup` or `run`), a quantized model (from `quantize --out`) or a one-shot
    /// compressed model (`prune` / `quantize --save-model`; a W8A8 one, whose sidecar says its
    /// activations are quantized per token, is written with that quantization as ONNX ops).
    #[arg(long)]
    model: Option<PathBuf>,
    /// smollm2-135m with --model: the `.gguf` whose metadata gives the architecture (the saved
    /// model holds only the weights).
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// Example input shape, comma-separated (`1,1,28,28`; token ids `batch,seq`); the first
    /// dimension is written as the symbol `batch`.
    #[arg(long, value_delimiter = ',', required = true)]
    input_shape: Vec<usize>,
    /// Output format (only `onnx`).
    #[arg(long, default_value = "onnx")]
    format: String,
    /// Calibration config (`quantize --calibration-out`, NNI JSON): writes a QDQ int8 model.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Write a fixed batch dimension instead of the symbol `batch`.
    #[arg(long)]
    fixed_batch: bool,
    /// Where to write the model.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.format != "onnx" {
        bail!("--format '{}': only 'onnx' is supported", args.format);
    }
    let device = Device::flex();
    if args.arch != SMOLLM2 && args.gguf.is_some() {
        bail!(
            "--gguf gives smollm2-135m's architecture; '{}' does not take it",
            args.arch
        );
    }
    let arch = if args.arch == SMOLLM2 {
        None
    } else {
        Some(args.arch.parse::<burn_compress::zoo::Arch>()?)
    };
    // A one-shot W8A8 model runs with per-token int8 activations (its sidecar says so): the
    // ONNX graph quantizes every block Linear's input the same way.
    let activations = match &args.model {
        Some(path) => OneShotMeta::read(path)?.and_then(|m| m.activations()),
        None => None,
    };
    if let (Some(_), Some(cal)) = (activations, &args.calibration) {
        bail!(
            "--calibration '{}': the model's activations are quantized per token at run time \
             (its one-shot sidecar); a QDQ export would quantize them again per tensor",
            cal.display()
        );
    }
    let mut options = OnnxOptions::default();
    if args.fixed_batch {
        options = options.with_fixed_batch();
    }
    let Some(arch) = arch else {
        let bytes = export_smollm2(&args, options, activations, &device)?;
        return write(&args, &bytes, activations);
    };
    let model = match (&args.weights, &args.model) {
        (Some(w), _) => AnyModel::load(arch, w, &device)?,
        (None, Some(path)) => load_model_file(AnyModel::init(arch, &device), path)?,
        (None, None) => bail!("give --weights or --model"),
    };
    let graph = capture_zoo(&model, &args.input_shape)?;
    if let Some(a) = activations {
        let AnyModel::MiniLm(m) = &model else {
            bail!("'{arch}' has no transformer blocks whose activations a sidecar could quantize");
        };
        options = oneshot::onnx_options_with_activations(m, &graph, a, options)?;
    }
    let bytes = match &args.calibration {
        None => dispatch!(&model, m => export(&graph, m, &options))?,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            dispatch!(&model, m => {
                let cal = CalibrationConfig::from_nni_json(&text, &ModuleIndex::from_module(m))?;
                export_qdq(&graph, m, &cal, options.clone())
            })?
        }
    };
    write(&args, &bytes, activations)
}

/// The CLI name of SmolLM2-135M.
const SMOLLM2: &str = "smollm2-135m";

/// smollm2-135m's logits for token ids `[batch, seq]`: the shipped `.gguf` (`--weights`) or a
/// saved model (`--model`) shaped by `--gguf`.
fn export_smollm2(
    args: &Args,
    options: OnnxOptions,
    activations: Option<ActivationQuant>,
    device: &Device,
) -> anyhow::Result<Vec<u8>> {
    if let Some(path) = &args.calibration {
        bail!(
            "--calibration '{}': the QDQ int8 export is for the zoo's image models, not {SMOLLM2}",
            path.display()
        );
    }
    let &[batch, seq] = args.input_shape.as_slice() else {
        bail!(
            "--input-shape {:?}: {SMOLLM2} takes token ids [batch, seq]",
            args.input_shape
        );
    };
    let model = match (&args.weights, &args.model) {
        (Some(w), _) => Llama::load(w, device)?,
        (None, Some(path)) => {
            let Some(gguf) = &args.gguf else {
                bail!(
                    "--model '{}': give --gguf PATH, the {SMOLLM2} .gguf that gives its \
                     architecture",
                    path.display()
                );
            };
            let template = Llama::from_gguf(&GgufFile::open(gguf)?, device)?;
            load_compressed(template, path)?
        }
        (None, None) => bail!("give --weights or --model"),
    };
    let graph = capture(&model, |m, d| {
        m.forward(Tensor::<2, Int>::zeros([batch, seq], d))
    })?;
    let options = match activations {
        Some(a) => oneshot::onnx_options_with_activations(&model, &graph, a, options)?,
        None => options,
    };
    Ok(export(&graph, &model, &options)?)
}

fn write(args: &Args, bytes: &[u8], activations: Option<ActivationQuant>) -> anyhow::Result<()> {
    std::fs::write(&args.out, bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({} bytes, opset {}, input 'input' {:?} with a {} batch, output 'output'{})",
        args.out.display(),
        bytes.len(),
        burn_compress::graph::onnx::OPSET,
        args.input_shape,
        if args.fixed_batch { "fixed" } else { "dynamic" },
        match (&args.calibration, activations) {
            (Some(_), _) => ", QDQ int8".to_string(),
            (None, Some(ActivationQuant::PerTokenDynamic { bits })) =>
                format!(", every block Linear's input quantized per token to int{bits} at run time"),
            (None, None) => String::new(),
        }
    );
    Ok(())
}

/// A sped-up model when `<base>.plan.json` sits next to the file (its plan must fit the
/// architecture and the weights the plan), else a quantized model from `quantize`.
pub(crate) fn load_model_file(template: AnyModel, path: &Path) -> anyhow::Result<AnyModel> {
    dispatch!(map template, m => load_compressed(m, path))
}

/// [`load_model_file`] for one model type: `template` shaped by the plan next to `path` and
/// loaded, or loaded as a quantized model when there is no plan.
pub(crate) fn load_compressed<M: Module + FixStructure>(
    template: M,
    path: &Path,
) -> anyhow::Result<M> {
    let plan = path.with_extension("plan.json");
    if plan.exists() {
        return load_pruned(template, path)
            .with_context(|| format!("loading the sped-up model {}", path.display()));
    }
    load_quantized(template, path).with_context(|| {
        format!(
            "loading {} (no {} next to it)",
            path.display(),
            plan.display()
        )
    })
}
