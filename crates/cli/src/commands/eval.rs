//! `burn-compress eval`: evaluate a model on real data, the task chosen by the model's kind:
//! image classifiers (top-1 / top-5), `minilm-l6` (sentence similarity), `smollm2-135m`
//! (perplexity). The logic is the facade's [`burn_compress::eval`]; this file loads models and
//! data and prints.
//!
//! `smollm2-135m` is not a zoo [`Arch`] (the zoo's `AnyModel` holds classifiers and encoders
//! that every command can capture and prune; a 30-layer decoder has no example input there), so
//! the command resolves it itself ([`EvalArch`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use burn::prelude::*;
use burn_compress::core::dataset::{DatasetSplit, ImageDataset};
use burn_compress::core::oneshot::ActivationQuant;
use burn_compress::eval::{
    ClassLogits, EvalReport, EvalTask, LabelledImages, classification, perplexity_report_quantized,
    read_sentence_pairs, read_text, sentence_similarity_quantized,
};
use burn_compress::oneshot::OneShotMeta;
use burn_compress::zoo::gguf::GgufFile;
use burn_compress::zoo::{
    AnyModel, Arch, ImageFolder, Llama, LlamaTokenizer, MiniLm, TextTokenizer,
};

use crate::commands::export::{load_compressed, load_model_file};
use crate::table::table;

/// The CLI name of SmolLM2-135M for `eval`.
const SMOLLM2: &str = "smollm2-135m";

/// Arguments of `eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Architecture: an image classifier of the zoo (efficientnet-lite0, resnet18, lenet5, ...:
    /// classification), minilm-l6 (sentence similarity) or smollm2-135m (perplexity).
    #[arg(long)]
    arch: String,
    /// The model as its package ships it: the `.pth` for efficientnet-lite0, the model
    /// directory for minilm-l6, the `.gguf` for smollm2-135m; safetensors with PyTorch names
    /// for the other zoo models.
    #[arg(long, conflicts_with = "model", required_unless_present = "model")]
    weights: Option<PathBuf>,
    /// A compressed model this tool wrote: sped-up (`<base>.bpk` next to `<base>.plan.json`,
    /// from `speedup` or `run`), quantized (`quantize --out`) or one-shot compressed
    /// (`prune` / `quantize --save-model`: its `<base>.oneshot.json` sidecar says how it runs;
    /// W8A8 models are evaluated with per-token int8 activations). minilm-l6 and smollm2-135m
    /// also need --tokenizer.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The data: an image folder (label from the file name, `imagenet_00_243.jpg`), a
    /// safetensors image set (its test split, index % 5 == 4), `mnist.pkl.gz` (test split) or a
    /// Fashion-MNIST folder / `*-images-idx3-ubyte.gz` (test split) for classifiers; a TSV of
    /// sentence pairs (`a<TAB>b` per line) for minilm-l6; a UTF-8 text for smollm2-135m.
    #[arg(long)]
    data: PathBuf,
    /// Compare with another model, given as --weights or --model are: top-1 agreement and mean
    /// KL(reference || model) for classifiers, the mean cosine between the two models'
    /// embeddings of every sentence for minilm-l6, its perplexity for smollm2-135m.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// The tokenizer: minilm-l6's `tokenizer.json` (or model directory), smollm2-135m's
    /// `.gguf` (whose metadata holds the tokenizer and the architecture). Default: the one that
    /// ships with --weights.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Image folder: the file-name prefix to select (`imagenet` for 1000-class models, `mnist`
    /// for the LeNets by default).
    #[arg(long)]
    prefix: Option<String>,
    /// Perplexity: tokens per non-overlapping window.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Perplexity: score only the first N tokens of the text (default: all).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Print `{"task", "metrics": {...}, "per_item": [...]}` instead of tables.
    #[arg(long)]
    json: bool,
}

/// What `--arch` names for `eval`: a zoo architecture or SmolLM2-135M.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EvalArch {
    Zoo(Arch),
    SmolLm2,
}

impl FromStr for EvalArch {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        if s == SMOLLM2 {
            return Ok(EvalArch::SmolLm2);
        }
        s.parse().map(EvalArch::Zoo).map_err(|_| {
            let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
            anyhow::anyhow!(
                "unknown architecture '{s}' (available: {}, {SMOLLM2})",
                names.join(", ")
            )
        })
    }
}

/// Where a model comes from: the file(s) its package ships, or a file this tool wrote.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Shipped(&'a Path),
    Compressed(&'a Path),
}

impl<'a> Source<'a> {
    /// `--reference`: compressed when `<base>.plan.json` sits next to it or it is a `.bpk`.
    fn guess(path: &'a Path) -> Self {
        let bpk = path.extension().is_some_and(|e| e == "bpk");
        if bpk || path.with_extension("plan.json").is_file() {
            Source::Compressed(path)
        } else {
            Source::Shipped(path)
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let arch: EvalArch = args.arch.parse()?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let source = match (&args.weights, &args.model) {
        (Some(w), _) => Source::Shipped(w),
        (None, Some(m)) => Source::Compressed(m),
        (None, None) => bail!("give --weights or --model"),
    };
    let device = Device::flex();
    // A model written by `prune` / `quantize --save-model` (one-shot methods) runs as its
    // sidecar says: W8A8 models with their per-token int8 activations.
    let activations = activations_of(source)?;
    let reference_activations = match &args.reference {
        Some(path) => activations_of(Source::guess(path))?,
        None => None,
    };
    if (activations.is_some() || reference_activations.is_some())
        && let EvalArch::Zoo(a) = arch
        && a != Arch::MiniLmL6
    {
        bail!(
            "'{a}': a model with quantized activations (a one-shot W8A8 sidecar) is evaluated \
             as {SMOLLM2} or minilm-l6 only"
        );
    }
    let acts = (activations, reference_activations);
    let report = match arch {
        EvalArch::SmolLm2 => eval_perplexity(&args, source, acts, &device)?,
        EvalArch::Zoo(Arch::MiniLmL6) => eval_similarity(&args, source, acts, &device)?,
        EvalArch::Zoo(arch) if arch.takes_tokens() => bail!(
            "'{arch}' has no evaluation task: eval classifies images, compares sentence \
             embeddings (minilm-l6) or measures perplexity ({SMOLLM2})"
        ),
        EvalArch::Zoo(arch) => eval_classification(&args, arch, source, &device)?,
    };
    let mut notes = Vec::new();
    if let Some(a) = activations {
        notes.push(("activations", activations_text(a)));
    }
    if let Some(a) = reference_activations {
        notes.push(("reference_activations", activations_text(a)));
    }
    print(&report, &notes, args.json)
}

/// The activation quantization of a model this tool wrote with a one-shot sidecar
/// (`<model>.oneshot.json`), if any.
fn activations_of(source: Source) -> anyhow::Result<Option<ActivationQuant>> {
    match source {
        Source::Shipped(_) => Ok(None),
        Source::Compressed(path) => Ok(OneShotMeta::read(path)?.and_then(|m| m.activations())),
    }
}

/// `int8 per token`.
fn activations_text(a: ActivationQuant) -> String {
    let ActivationQuant::PerTokenDynamic { bits } = a;
    format!("int{bits} per token")
}

/// A zoo model from either source.
fn load_zoo(arch: Arch, source: Source, device: &Device) -> anyhow::Result<AnyModel> {
    Ok(match source {
        Source::Shipped(path) => AnyModel::load(arch, path, device)?,
        Source::Compressed(path) => load_model_file(AnyModel::init(arch, device), path)?,
    })
}

/// The labelled images of `--data` in the size and channels `arch` takes (test split).
fn load_labelled(args: &Args, arch: Arch) -> anyhow::Result<LabelledImages> {
    labelled_images(
        &args.data,
        "--data",
        arch,
        args.prefix.as_deref(),
        DatasetSplit::Test,
    )
}

/// The labelled images at `path` (the value of the option `flag`) in the size and channels
/// `arch` takes: an image folder (all of it; `prefix` selects file names), a Fashion-MNIST
/// folder, `mnist.pkl.gz`, `*-images-idx3-ubyte.gz` or a safetensors image set (`split` of the
/// data sets that have splits).
///
/// # Errors
/// A missing or unknown path, images of the wrong size, naming `flag` and the path.
pub(crate) fn labelled_images(
    path: &Path,
    flag: &str,
    arch: Arch,
    prefix: Option<&str>,
    split: DatasetSplit,
) -> anyhow::Result<LabelledImages> {
    let [_, channels, size, _] = arch.input_shape(1);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let dataset = |d: ImageDataset| LabelledImages::from_dataset(&d);
    let images = if path.is_dir() {
        if path.join("t10k-images-idx3-ubyte.gz").is_file() {
            dataset(ImageDataset::fashion_mnist(path, split)?)
        } else {
            let prefix = match (prefix, arch) {
                (Some(p), _) => p,
                (None, Arch::LeNet5 | Arch::LeNet300100) => "mnist",
                (None, a) if a.default_num_classes() == 1000 => "imagenet",
                (None, a) => bail!(
                    "'{a}': give --prefix, the file-name prefix of the images to read from {}",
                    path.display()
                ),
            };
            LabelledImages::from_folder(&ImageFolder::load(path, size, prefix)?)
        }
    } else if name.ends_with(".pkl.gz") {
        dataset(ImageDataset::from_mnist_pkl_gz(path, split)?)
    } else if name.ends_with("-images-idx3-ubyte.gz") {
        let labels = path.with_file_name(name.replace("-images-idx3-", "-labels-idx1-"));
        dataset(ImageDataset::from_idx_gz(path, labels)?)
    } else if name.ends_with(".safetensors") {
        // The other commands' convention: index % 5 == 4 is the test split.
        let max = if size == 8 { 16.0 } else { 255.0 };
        let (train, test) = ImageDataset::load(path, max)
            .with_context(|| format!("loading {}", path.display()))?
            .split();
        dataset(match split {
            DatasetSplit::Train => train,
            DatasetSplit::Valid | DatasetSplit::Test => test,
        })
    } else if !path.exists() {
        bail!("{flag} '{}': no such file or folder", path.display());
    } else {
        bail!(
            "{flag} '{}': not an image folder, a safetensors image set, mnist.pkl.gz or \
             *-images-idx3-ubyte.gz",
            path.display()
        );
    };
    let [_, h, w] = images.shape;
    if (h, w) != (size, size) {
        bail!(
            "'{}' holds {h}x{w} images, '{arch}' takes {size}x{size}",
            path.display()
        );
    }
    Ok(images.with_channels(channels)?)
}

fn eval_classification(
    args: &Args,
    arch: Arch,
    source: Source,
    device: &Device,
) -> anyhow::Result<EvalReport> {
    let images = load_labelled(args, arch)?;
    let model = load_zoo(arch, source, device)?;
    let logits = ClassLogits::compute(|x| model.forward(x), &images, args.batch, device);
    let reference = match &args.reference {
        Some(path) => {
            let r = load_zoo(arch, Source::guess(path), device)
                .with_context(|| format!("loading the reference {}", path.display()))?;
            Some(ClassLogits::compute(
                |x| r.forward(x),
                &images,
                args.batch,
                device,
            ))
        }
        None => None,
    };
    Ok(classification(&images, &logits, reference.as_ref())?)
}

/// MiniLM from either source.
fn load_minilm(source: Source, device: &Device) -> anyhow::Result<MiniLm> {
    match load_zoo(Arch::MiniLmL6, source, device)? {
        AnyModel::MiniLm(m) => Ok(m),
        other => bail!("expected a minilm-l6 model, loaded '{}'", other.arch()),
    }
}

/// The tokenizer of `--tokenizer`, else of a shipped model; a compressed model carries none.
fn tokenizer_path<'a>(
    args: &'a Args,
    source: Source<'a>,
    example: &str,
) -> anyhow::Result<&'a Path> {
    match (&args.tokenizer, source) {
        (Some(t), _) => Ok(t),
        (None, Source::Shipped(p)) => Ok(p),
        (None, Source::Compressed(p)) => bail!(
            "'{}' is a compressed '{}' model without its tokenizer: give --tokenizer {example}",
            p.display(),
            args.arch
        ),
    }
}

/// The model's and the reference's activation quantization.
type Activations = (Option<ActivationQuant>, Option<ActivationQuant>);

fn eval_similarity(
    args: &Args,
    source: Source,
    (activations, reference_activations): Activations,
    device: &Device,
) -> anyhow::Result<EvalReport> {
    let pairs = read_sentence_pairs(&args.data)?;
    let tokenizer_at = tokenizer_path(args, source, "data/external/minilm-l6")?;
    let tokenizer = MiniLm::tokenizer(tokenizer_at)?;
    let model = load_minilm(source, device)?;
    let reference = match &args.reference {
        Some(path) => {
            let source = Source::guess(path);
            let r = load_minilm(source, device)
                .with_context(|| format!("loading the reference {}", path.display()))?;
            let t = match source {
                Source::Shipped(p) => MiniLm::tokenizer(p)?,
                Source::Compressed(_) => tokenizer.clone(),
            };
            Some((r, t))
        }
        None => None,
    };
    let reference: Option<(&MiniLm, &TextTokenizer, Option<ActivationQuant>)> = reference
        .as_ref()
        .map(|(m, t)| (m, t, reference_activations));
    Ok(sentence_similarity_quantized(
        (&model, activations),
        &tokenizer,
        &pairs,
        reference,
    )?)
}

/// SmolLM2 from its `.gguf`, or a compressed one shaped from the tokenizer's `.gguf`.
fn load_llama(source: Source, gguf: &GgufFile, device: &Device) -> anyhow::Result<Llama> {
    match source {
        Source::Shipped(path) => Ok(Llama::load(path, device)?),
        Source::Compressed(path) => load_compressed(Llama::from_gguf(gguf, device)?, path),
    }
}

fn eval_perplexity(
    args: &Args,
    source: Source,
    (activations, reference_activations): Activations,
    device: &Device,
) -> anyhow::Result<EvalReport> {
    let text = read_text(&args.data)?;
    let gguf_path = tokenizer_path(
        args,
        source,
        "data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf",
    )?;
    if !gguf_path.is_file() {
        // Llama::load's message names the fetch command.
        Llama::load(gguf_path, device)?;
    }
    let gguf = GgufFile::open(gguf_path)?;
    let tokenizer = LlamaTokenizer::from_gguf(&gguf)?;
    let model = load_llama(source, &gguf, device)?;
    let reference = match &args.reference {
        Some(path) => Some(
            load_llama(Source::guess(path), &gguf, device)
                .with_context(|| format!("loading the reference {}", path.display()))?,
        ),
        None => None,
    };
    Ok(perplexity_report_quantized(
        (&model, activations),
        &tokenizer,
        &text,
        args.window,
        args.max_tokens,
        reference.as_ref().map(|r| (r, reference_activations)),
    )?)
}

/// The per-item columns of each task: header and key.
fn columns(task: EvalTask) -> &'static [(&'static str, &'static str)] {
    match task {
        EvalTask::Classification => &[
            ("image", "name"),
            ("label", "label"),
            ("top-1", "top1"),
            ("top-5", "top5"),
            ("correct", "correct"),
            ("reference top-1", "reference_top1"),
            ("KL", "kl"),
        ],
        EvalTask::SentenceSimilarity => &[
            ("line", "line"),
            ("a", "a"),
            ("b", "b"),
            ("cosine", "cosine"),
            ("reference cosine", "reference_pair_cosine"),
        ],
        EvalTask::Perplexity => &[
            ("window", "window"),
            ("first token", "start"),
            ("mean NLL", "mean_nll"),
            ("perplexity", "perplexity"),
        ],
    }
}

/// Items listed in the human output; past that, `--json` lists them.
const MAX_ROWS: usize = 50;

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    }
}

/// Prints the report; `notes` are metrics in words (`activations: int8 per token`), listed
/// among the JSON `metrics` and under the table.
fn print(report: &EvalReport, notes: &[(&str, String)], json: bool) -> anyhow::Result<()> {
    if json {
        let mut value = serde_json::to_value(report)?;
        for (key, text) in notes {
            value["metrics"][*key] = serde_json::Value::String(text.clone());
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if report.per_item.len() <= MAX_ROWS {
        let first = report.per_item.first();
        let cols: Vec<_> = columns(report.task)
            .iter()
            .filter(|(_, key)| first.is_some_and(|f| f.get(key).is_some()))
            .collect();
        let mut t = table(&cols.iter().map(|(h, _)| *h).collect::<Vec<_>>());
        for item in &report.per_item {
            t.add_row(
                cols.iter()
                    .map(|(_, key)| cell(&item[*key]))
                    .collect::<Vec<_>>(),
            );
        }
        println!("{t}");
    } else {
        println!("{} items (--json lists each one)", report.per_item.len());
    }
    let mut t = table(&[report.task.name(), "value"]);
    for (name, value) in &report.metrics {
        // Counts print as integers, rates and losses with four decimals.
        let shown = if value.fract() == 0.0 && value.abs() >= 2.0 {
            format!("{value}")
        } else {
            format!("{value:.4}")
        };
        t.add_row(vec![name.clone(), shown]);
    }
    for (key, text) in notes {
        t.add_row(vec![key.to_string(), text.clone()]);
    }
    println!("{t}");
    Ok(())
}
