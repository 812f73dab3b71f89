//! `burn-compress export`: a zoo model (dense weights, a sped-up `<base>.bpk` + `<base>.plan.json`,
//! or a quantized model from `quantize`) as an ONNX file (opset 17), f32 or QDQ int8.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::prelude::*;
use burn_compress::core::{FixStructure, ModuleIndex};
use burn_compress::graph::onnx::{OnnxOptions, export};
use burn_compress::oneshot::OneShotMeta;
use burn_compress::quant::{CalibrationConfig, export_qdq, load_quantized};
use burn_compress::speedup::load_pruned;
use burn_compress::zoo::{AnyModel, dispatch};
use burn_compress::zoo_capture::capture_zoo;

/// Arguments of `export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Zoo architecture (`burn-compress list` names them; e.g. lenet5, resnet18).
    #[arg(long)]
    arch: String,
    /// Dense weights with PyTorch state_dict names (safetensors).
    #[arg(long, conflicts_with = "model", required_unless_present = "model")]
    weights: Option<PathBuf>,
    /// A model file this tool wrote: a sped-up model (`<base>.bpk` next to `<base>.plan.json`,
    /// from `speedup` or `run`) or a quantized model (from `quantize --out`).
    #[arg(long)]
    model: Option<PathBuf>,
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
    let arch: burn_compress::zoo::Arch = args.arch.parse()?;
    if let Some(path) = &args.model
        && let Some(meta) = OneShotMeta::read(path)?
        && let Some(bits) = meta.activation_bits
    {
        bail!(
            "'{}' runs with int{bits} per-token activations ({} {}, its sidecar {}): the ONNX \
             export cannot quantize activations per token, and writing float activations would \
             not be the model that was evaluated; export refuses it",
            path.display(),
            meta.algorithm,
            meta.options.trim().replace('\n', ", "),
            OneShotMeta::path_for(path).display()
        );
    }
    let model = match (&args.weights, &args.model) {
        (Some(w), _) => AnyModel::load(arch, w, &device)?,
        (None, Some(path)) => load_model_file(AnyModel::init(arch, &device), path)?,
        (None, None) => bail!("give --weights or --model"),
    };
    let graph = capture_zoo(&model, &args.input_shape)?;
    let mut options = OnnxOptions::default();
    if args.fixed_batch {
        options = options.with_fixed_batch();
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
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({} bytes, opset {}, input 'input' {:?} with a {} batch, output 'output'{})",
        args.out.display(),
        bytes.len(),
        burn_compress::graph::onnx::OPSET,
        args.input_shape,
        if args.fixed_batch { "fixed" } else { "dynamic" },
        if args.calibration.is_some() {
            ", QDQ int8"
        } else {
            ""
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
