//! One-shot post-training compression from `prune` and `quantize`: when the algorithm (`--algorithm`
//! or the config's `[algorithm] name`) is a one-shot pruner (magnitude, wanda, sparsegpt) or
//! quantizer (rtn, gptq, awq, smoothquant), the command calibrates a pretrained transformer
//! (smollm2-135m from its `.gguf`, minilm-l6 from its model directory) on a text and compresses
//! it block by block, or a zoo image model (lenet5, resnet18, ...) on images and compresses its
//! Linears and convolutions layer by layer ([`burn_compress::oneshot`]); it prints a summary per
//! Linear kind (per layer for image models) and, with `--save-model`, writes the model and its
//! sidecar for `eval` and `export`.
//!
//! The options come from the config's `[algorithm]` table, read as plain TOML: a one-shot config
//! needs no `[[config_list]]` (and one with rules is refused: the methods compress every block
//! Linear and would not honour them); its `ignore = ["mlp.down_proj", "conv1"]` (llm-compressor's
//! key) leaves layers dense.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::prelude::*;
use burn_compress::core::dataset::DatasetSplit;
use burn_compress::core::oneshot::{ActivationQuant, BlockModel};
use burn_compress::core::toml;
use burn_compress::oneshot::{self, OneShotMeta, SequentialOptions, SequentialReport};
use burn_compress::quant::rtn::{Scheme, Strategy};
use burn_compress::zoo::gguf::GgufFile;
use burn_compress::zoo::{
    AnyModel, Arch, ImageClassifier, Llama, LlamaTokenizer, MiniLm, dispatch,
};
use burn_compress::{AlgorithmEntry, AlgorithmKind};
use serde_json::json;

use crate::cli::{ModelArgs, ModelConfigArgs};
use crate::commands::eval::labelled_images;
use crate::table::{percent, table};

/// The CLI name of SmolLM2-135M.
pub const SMOLLM2: &str = "smollm2-135m";
/// The CLI name of all-MiniLM-L6-v2.
pub const MINILM: &str = "minilm-l6";

/// The flags of one-shot methods, shared by `prune` and `quantize`.
#[derive(clap::Args, Debug, Default)]
pub struct OneShotArgs {
    /// One-shot methods: the calibration data. For smollm2-135m and minilm-l6 a text (UTF-8;
    /// tokenized with the model's tokenizer, windows drawn at random offsets with seed 0); for
    /// image models an image folder, a safetensors image set, `mnist.pkl.gz`, a Fashion-MNIST
    /// folder or `*-images-idx3-ubyte.gz` (the training split of sets that have one; images
    /// drawn with seed 0).
    #[arg(long, value_name = "PATH")]
    pub calib: Option<PathBuf>,
    /// One-shot methods: calibration windows (text; default 32) or images (default 128).
    #[arg(long)]
    pub calib_samples: Option<usize>,
    /// One-shot methods on image models: the file-name prefix of the images to read from an
    /// image folder --calib (default `mnist` for the LeNets, `imagenet` for 1000-class models).
    #[arg(long)]
    pub calib_prefix: Option<String>,
    /// One-shot methods: tokens per calibration window (default 256 for smollm2-135m, 128 for
    /// minilm-l6, which takes at most 512).
    #[arg(long)]
    pub calib_seqlen: Option<usize>,
    /// One-shot methods: re-observe each later group of a block's Linears (q,k,v -> o ->
    /// gate,up -> down) after the earlier groups are compressed.
    #[arg(long)]
    pub true_sequential: bool,
    /// One-shot methods: feed each block the full-precision outputs of the previous one
    /// instead of the compressed ones.
    #[arg(long)]
    pub no_propagate_error: bool,
    /// One-shot methods: write the compressed model (burnpack `.bpk`) and its sidecar
    /// `<model>.oneshot.json` (algorithm, options, activation bits) for `eval --model`.
    #[arg(long, value_name = "PATH")]
    pub save_model: Option<PathBuf>,
}

impl OneShotArgs {
    /// The one-shot flags that were given, for refusing them on other algorithms.
    pub fn given(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.calib.is_some() {
            v.push("--calib");
        }
        if self.calib_samples.is_some() {
            v.push("--calib-samples");
        }
        if self.calib_seqlen.is_some() {
            v.push("--calib-seqlen");
        }
        if self.calib_prefix.is_some() {
            v.push("--calib-prefix");
        }
        if self.true_sequential {
            v.push("--true-sequential");
        }
        if self.no_propagate_error {
            v.push("--no-propagate-error");
        }
        if self.save_model.is_some() {
            v.push("--save-model");
        }
        v
    }

    /// Refuse one-shot flags for an algorithm `name` that is not one-shot.
    ///
    /// # Errors
    /// Naming the first such flag.
    pub fn refuse_for(&self, name: &str) -> anyhow::Result<()> {
        if let Some(flag) = self.given().first() {
            let hint = if *flag == "--calib" {
                " (image quantizers take --calib-batches N)"
            } else {
                ""
            };
            bail!(
                "{flag} is for one-shot methods (magnitude, wanda, sparsegpt, rtn, gptq, awq, \
                 smoothquant); '{name}' is not one{hint}"
            );
        }
        Ok(())
    }
}

/// A one-shot method named by the command line or the config: its name and options.
#[derive(Debug, Clone)]
pub struct Method {
    /// Registry name.
    pub name: String,
    /// The `[algorithm]` keys other than `name`.
    pub options: toml::Table,
    /// Pruner or quantizer.
    pub kind: AlgorithmKind,
}

/// The one-shot method `--algorithm` (else the config's `[algorithm] name`) names, or `None`
/// when the algorithm is not a one-shot one (or cannot be resolved: the command's own route
/// then reports why).
///
/// # Errors
/// A one-shot config with `[[config_list]]` rules; `--algorithm` and the config naming two
/// different methods.
pub fn resolve(cli_name: Option<&str>, input: &ModelConfigArgs) -> anyhow::Result<Option<Method>> {
    // A config that cannot be read is reported by the command's own route, with its messages,
    // unless the method turns out to be a one-shot one (below).
    let read = input.algorithm_table();
    let Some(name) = cli_name.map(str::to_string).or_else(|| {
        read.as_ref()
            .ok()
            .and_then(|t| t.as_ref().and_then(|t| t.name.clone()))
    }) else {
        return Ok(None);
    };
    let Ok(entry) = AlgorithmEntry::find(&name) else {
        return Ok(None);
    };
    if !matches!(
        entry.kind,
        AlgorithmKind::OneShotPruner | AlgorithmKind::OneShotQuantizer
    ) {
        return Ok(None);
    }
    let mut options = toml::Table::new();
    if let Some(t) = read? {
        let config = input.config.as_deref().unwrap_or(Path::new(""));
        if t.has_rules {
            bail!(
                "the config '{}' has [[config_list]] rules, which one-shot methods ('{name}') do \
                 not read: they compress every Linear of the transformer's blocks; keep only \
                 the [algorithm] table",
                config.display()
            );
        }
        if let Some(other) = t.name.as_deref().filter(|n| *n != name) {
            bail!(
                "--algorithm '{name}' but the config '{}' names [algorithm] '{other}': its \
                 options would not fit; drop one of them",
                config.display()
            );
        }
        options = t.options;
    }
    Ok(Some(Method {
        name,
        options,
        kind: entry.kind,
    }))
}

/// The transformers one-shot methods compress block by block, calibrated on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transformer {
    SmolLm2,
    MiniLm,
}

/// What a one-shot method runs on: a transformer, block by block on text, or a zoo image
/// model, layer by layer on images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Text(Transformer),
    Images(Arch),
}

impl Target {
    fn parse(arch: &str, method: &str) -> anyhow::Result<Self> {
        match arch {
            SMOLLM2 => Ok(Self::Text(Transformer::SmolLm2)),
            MINILM => Ok(Self::Text(Transformer::MiniLm)),
            other => match other.parse::<Arch>() {
                Ok(Arch::MiniLmL6) => Ok(Self::Text(Transformer::MiniLm)),
                Ok(a) if !a.takes_tokens() => Ok(Self::Images(a)),
                Ok(a) => bail!(
                    "'{a}' takes token ids and has no pretrained weights or calibration text: \
                     one-shot methods ('{method}') apply to {SMOLLM2}, {MINILM} and the image \
                     models"
                ),
                Err(_) => {
                    let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
                    bail!(
                        "unknown architecture '{other}' (one-shot methods take {SMOLLM2}, \
                         {MINILM} or an image model; the zoo has {})",
                        names.join(", ")
                    )
                }
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Text(Transformer::SmolLm2) => SMOLLM2,
            Self::Text(Transformer::MiniLm) => MINILM,
            Self::Images(a) => a.name(),
        }
    }

    fn default_samples(self) -> usize {
        match self {
            Self::Text(_) => 32,
            Self::Images(_) => 128,
        }
    }

    fn images(self) -> bool {
        matches!(self, Self::Images(_))
    }
}

impl Transformer {
    fn default_seq_len(self) -> usize {
        match self {
            Self::SmolLm2 => 256,
            Self::MiniLm => 128,
        }
    }
}

/// What a run computed, for the report.
struct Outcome {
    report: SequentialReport,
    tokens: usize,
    activations: Option<ActivationQuant>,
    saved: Option<(PathBuf, PathBuf)>,
}

/// Run `method` on `model` as `prune` / `quantize` do for one-shot methods.
///
/// # Errors
/// Bad options (naming the key), an arch one-shot methods do not take (named), a missing or
/// short calibration text or data set (named), a method that needs a transformer's blocks on an
/// image model, the engine's errors, unwritable files.
pub fn run(
    model: &ModelArgs,
    method: &Method,
    args: &OneShotArgs,
    json: bool,
) -> anyhow::Result<()> {
    let target = Target::parse(&model.arch, &method.name)?;
    // Options first: a bad key fails before minutes of loading.
    let (method_options, ignore) = split_ignore(&method.options)?;
    let built = oneshot::method(&method.name, &method_options)?;
    let options = SequentialOptions {
        propagate_error: !args.no_propagate_error,
        true_sequential: args.true_sequential,
        ignore,
        ..Default::default()
    };
    let samples = args.calib_samples.unwrap_or(target.default_samples());
    let transformer = match target {
        Target::Text(t) => t,
        Target::Images(arch) => {
            let run = ImageRun {
                arch,
                model,
                method,
                built: built.as_ref(),
                options,
                samples,
            };
            return run.run(args, json);
        }
    };
    let device = Device::flex();
    let activations = built.activation_quant();
    let meta_for = |report: &SequentialReport| oneshot::meta(report, &method.options, activations);
    if args.calib_prefix.is_some() {
        bail!(
            "--calib-prefix selects images of a folder; '{}' calibrates on text",
            target.name()
        );
    }
    let Some(calib) = &args.calib else {
        bail!(
            "'{}' calibrates on text: give --calib PATH (e.g. data/external/austen/emma.txt)",
            method.name
        );
    };
    let text = std::fs::read_to_string(calib)
        .with_context(|| format!("reading the calibration text --calib '{}'", calib.display()))?;
    let seq_len = args.calib_seqlen.unwrap_or(transformer.default_seq_len());
    let short = || format!("the calibration text --calib '{}'", calib.display());
    let outcome = match transformer {
        Transformer::SmolLm2 => {
            if !model.weights.is_file() {
                // Llama::load's message names the fetch command.
                Llama::load(&model.weights, &device)?;
            }
            let gguf = GgufFile::open(&model.weights)?;
            let tokenizer = LlamaTokenizer::from_gguf(&gguf)?;
            let ids = tokenizer.encode(&text)?;
            let windows =
                oneshot::calibration_windows(&ids, samples, seq_len, 0).with_context(short)?;
            let llama = Llama::from_gguf(&gguf, &device)?;
            compress_and_save(
                llama,
                &windows,
                built.as_ref(),
                &options,
                &device,
                args,
                meta_for,
            )?
            .with_tokens(ids.len(), activations)
        }
        Transformer::MiniLm => {
            let minilm = MiniLm::load(&model.weights, &device)?;
            if seq_len > minilm.max_len() {
                bail!(
                    "--calib-seqlen {seq_len}: {MINILM} takes at most {} positions",
                    minilm.max_len()
                );
            }
            let tokenizer = MiniLm::tokenizer(&model.weights)?;
            let ids = tokenizer.encode(&text)?;
            let windows =
                oneshot::calibration_windows(&ids, samples, seq_len, 0).with_context(short)?;
            compress_and_save(
                minilm,
                &windows,
                built.as_ref(),
                &options,
                &device,
                args,
                meta_for,
            )?
            .with_tokens(ids.len(), activations)
        }
    };
    print_report(target, method, args, &options, &outcome, json)
}

/// The `ignore` key of a one-shot `[algorithm]` table (llm-compressor's): layers to leave
/// dense, as full paths (`conv1`, `model.layers.0.mlp.down_proj`), relative to a transformer
/// block (`mlp.down_proj`) or `re:PATTERN`; and the other options, which are the method's.
///
/// # Errors
/// `ignore` that is not an array of strings.
fn split_ignore(options: &toml::Table) -> anyhow::Result<(toml::Table, Vec<String>)> {
    let mut rest = options.clone();
    let Some(value) = rest.remove("ignore") else {
        return Ok((rest, Vec::new()));
    };
    let bad =
        || anyhow::anyhow!("[algorithm] ignore: expected an array of layer paths, got {value}");
    let list = value.as_array().ok_or_else(bad)?;
    let ignore = list
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((rest, ignore))
}

/// [`run`] for an image model: layer by layer on calibration images (the training split of a
/// data set that has one; 16 per forward pass).
struct ImageRun<'a> {
    arch: Arch,
    model: &'a ModelArgs,
    method: &'a Method,
    built: &'a dyn burn_compress::core::oneshot::OneShot,
    options: SequentialOptions,
    samples: usize,
}

impl ImageRun<'_> {
    fn run(self, args: &OneShotArgs, json: bool) -> anyhow::Result<()> {
        let Self {
            arch,
            model,
            method,
            built,
            options,
            samples,
        } = self;
        oneshot::check_layerwise(built)?;
        for (given, flag) in [
            (args.calib_seqlen.is_some(), "--calib-seqlen"),
            (args.true_sequential, "--true-sequential"),
        ] {
            if given {
                bail!(
                    "{flag} is for transformers' blocks; '{arch}' is compressed layer by layer \
                     on whole images"
                );
            }
        }
        let Some(calib) = &args.calib else {
            bail!(
                "'{}' calibrates on images: give --calib PATH (an image folder, a safetensors \
                 image set, mnist.pkl.gz or *-images-idx3-ubyte.gz; e.g. \
                 data/mnist5k.safetensors for lenet5)",
                method.name
            );
        };
        let device = Device::flex();
        let images = labelled_images(
            calib,
            "--calib",
            arch,
            args.calib_prefix.as_deref(),
            DatasetSplit::Train,
        )?;
        let batches = oneshot::calibration_images(&images, samples, 16, 0, &device)
            .with_context(|| format!("the calibration data --calib '{}'", calib.display()))?;
        let any = AnyModel::load(arch, &model.weights, &device)?;
        let outcome = dispatch!(images any, m => {
            let (compressed, report) = oneshot::compress_layerwise(
                m,
                &batches,
                |m, x| m.classify(x),
                built,
                &options,
            )?;
            let meta = oneshot::meta(&report, &method.options, None);
            let saved = save_model(&compressed, args, &meta)?;
            Outcome { report, tokens: images.len(), activations: None, saved }
        }, t => {
            let _ = t;
            bail!("'{arch}' takes token ids")
        });
        print_report(Target::Images(arch), method, args, &options, &outcome, json)
    }
}

impl Outcome {
    fn with_tokens(mut self, tokens: usize, activations: Option<ActivationQuant>) -> Self {
        self.tokens = tokens;
        self.activations = activations;
        self
    }
}

fn compress_and_save<M: BlockModel>(
    model: M,
    windows: &[Vec<u32>],
    method: &dyn burn_compress::core::oneshot::OneShot,
    options: &SequentialOptions,
    device: &Device,
    args: &OneShotArgs,
    meta: impl Fn(&SequentialReport) -> OneShotMeta,
) -> anyhow::Result<Outcome> {
    let (compressed, report) = oneshot::compress(model, windows, method, options, device)?;
    let saved = save_model(&compressed, args, &meta(&report))?;
    Ok(Outcome {
        report,
        tokens: 0,
        activations: None,
        saved,
    })
}

/// `--save-model`: the model and its sidecar.
fn save_model<M: Module>(
    model: &M,
    args: &OneShotArgs,
    meta: &OneShotMeta,
) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    let Some(path) = &args.save_model else {
        return Ok(None);
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(Some(oneshot::save(model, path, meta)?))
}

/// A Linear's kind: its path after the block index (`model.layers.3.self_attn.q_proj` ->
/// `self_attn.q_proj`).
fn linear_kind(path: &str) -> &str {
    let mut rest = path;
    while let Some((head, tail)) = rest.split_once('.') {
        if !head.is_empty() && head.bytes().all(|b| b.is_ascii_digit()) {
            return tail;
        }
        rest = tail;
    }
    path
}

/// The weight grid of a quantizer's options (each method's default scheme when `scheme` is not
/// given: AWQ `W4A16_ASYM`, SmoothQuant `W8A8`, the others `W4A16`), described.
fn weight_grid(method: &Method) -> Option<String> {
    let default = match method.name.as_str() {
        "awq" => "W4A16_ASYM",
        "smoothquant" => "W8A8",
        _ => "W4A16",
    };
    let mut table = method.options.clone();
    table
        .entry("scheme")
        .or_insert_with(|| toml::Value::String(default.into()));
    let scheme = Scheme::from_table(&method.name, &table).ok()?;
    let q = scheme.weights.quantizer;
    let strategy = match scheme.weights.strategy {
        Strategy::Tensor => "per tensor".to_string(),
        Strategy::Channel => "per channel".to_string(),
        Strategy::Group(g) => format!("groups of {g}"),
    };
    Some(format!(
        "int{} {}, {strategy}",
        q.bits,
        if q.symmetric {
            "symmetric"
        } else {
            "asymmetric"
        }
    ))
}

/// Activation quantization in words.
fn activations_text(a: Option<ActivationQuant>) -> String {
    match a {
        Some(ActivationQuant::PerTokenDynamic { bits }) => format!("int{bits} per token"),
        None => "float".into(),
    }
}

fn print_report(
    target: Target,
    method: &Method,
    args: &OneShotArgs,
    options: &SequentialOptions,
    outcome: &Outcome,
    json: bool,
) -> anyhow::Result<()> {
    let report = &outcome.report;
    let pruner = method.kind == AlgorithmKind::OneShotPruner;
    let grid = (!pruner).then(|| weight_grid(method)).flatten();
    // Per Linear kind, in first-seen order (per layer for image models, whose layers differ).
    let mut order: Vec<&str> = Vec::new();
    let mut kinds: BTreeMap<&str, Vec<&oneshot::LinearOutcome>> = BTreeMap::new();
    for l in &report.linears {
        let k = if target.images() {
            l.path.as_str()
        } else {
            linear_kind(&l.path)
        };
        if !kinds.contains_key(k) {
            order.push(k);
        }
        kinds.entry(k).or_default().push(l);
    }
    let size = |l: &oneshot::LinearOutcome| l.shape[0] * l.shape[1];
    let (zeros, total) = report
        .linears
        .iter()
        .fold((0, 0), |(z, t), l| (z + l.report.zeros, t + size(l)));
    let sparsity = zeros as f64 / total.max(1) as f64;
    let fallbacks = report.fallbacks();
    if json {
        let linears: Vec<_> = report
            .linears
            .iter()
            .map(|l| {
                json!({
                    "path": l.path, "shape": l.shape, "target_sparsity": l.sparsity,
                    "zeros": l.report.zeros, "sparsity": l.report.zeros as f64 / size(l).max(1) as f64,
                    "dead_columns": l.report.dead_columns, "damping_retries": l.report.damping_retries,
                    "fallback": l.report.fallback, "loss": l.report.loss, "seconds": l.seconds,
                })
            })
            .collect();
        let by_kind: Vec<_> = order
            .iter()
            .map(|k| {
                let ls = &kinds[k];
                let z: usize = ls.iter().map(|l| l.report.zeros).sum();
                let t: usize = ls.iter().map(|l| size(l)).sum();
                json!({
                    "kind": k, "count": ls.len(), "shape": ls[0].shape,
                    "sparsity": z as f64 / t.max(1) as f64,
                    "dead_columns": ls.iter().map(|l| l.report.dead_columns).sum::<usize>(),
                    "fallbacks": ls.iter().filter(|l| l.report.fallback.is_some()).count(),
                    "seconds": ls.iter().map(|l| l.seconds).sum::<f64>(),
                })
            })
            .collect();
        let calibration = if target.images() {
            json!({
                "data": args.calib, "data_images": outcome.tokens,
                "samples": report.samples, "seed": 0,
            })
        } else {
            json!({
                "text": args.calib, "text_tokens": outcome.tokens,
                "samples": report.samples, "seq_len": report.seq_len, "seed": 0,
            })
        };
        let out = json!({
            "arch": target.name(), "algorithm": method.name,
            "kind": if pruner { "one-shot pruner" } else { "one-shot quantizer" },
            "options": method.options.to_string(),
            "weights": grid, "activations": activations_text(outcome.activations),
            "activation_bits": outcome.activations.map(|ActivationQuant::PerTokenDynamic { bits }| bits),
            "calibration": calibration,
            "engine": {
                "propagate_error": options.propagate_error,
                "true_sequential": options.true_sequential,
                "peak_bytes": report.peak_bytes,
            },
            "linears": linears, "kinds": by_kind,
            "zeros": zeros, "total": total, "sparsity": sparsity,
            "block_sparsity": report.block_sparsity,
            "dead_columns": report.dead_columns(),
            "fallbacks": fallbacks.iter().map(|(p, why)| format!("{p}: {why}")).collect::<Vec<_>>(),
            "notes": report.notes,
            "seconds": report.seconds,
            "model": outcome.saved.as_ref().map(|s| &s.0),
            "sidecar": outcome.saved.as_ref().map(|s| &s.1),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let what = if pruner { "sparsity" } else { "weights" };
    let mut t = table(&[
        if target.images() { "layer" } else { "Linear" },
        "count",
        "shape",
        what,
        "dead columns",
        "fallbacks",
        "seconds",
    ]);
    for k in &order {
        let ls = &kinds[k];
        let z: usize = ls.iter().map(|l| l.report.zeros).sum();
        let n: usize = ls.iter().map(|l| size(l)).sum();
        t.add_row(vec![
            k.to_string(),
            ls.len().to_string(),
            format!("{:?}", ls[0].shape),
            if pruner {
                percent(z as f64 / n.max(1) as f64)
            } else {
                grid.clone().unwrap_or_default()
            },
            ls.iter()
                .map(|l| l.report.dead_columns)
                .sum::<usize>()
                .to_string(),
            ls.iter()
                .filter(|l| l.report.fallback.is_some())
                .count()
                .to_string(),
            format!("{:.2}", ls.iter().map(|l| l.seconds).sum::<f64>()),
        ]);
    }
    let calib = args.calib.as_deref().unwrap_or(Path::new("")).display();
    if target.images() {
        println!(
            "{} on {}: {} layers (Linear, Conv2d), calibration {} images of {calib}",
            method.name,
            target.name(),
            report.linears.len(),
            report.samples,
        );
    } else {
        println!(
            "{} on {}: {} Linears, calibration {} x {} tokens of {calib}",
            method.name,
            target.name(),
            report.linears.len(),
            report.samples,
            report.seq_len,
        );
    }
    println!("{t}");
    if pruner {
        println!(
            "{}: {} of {total} weights zero ({})",
            if target.images() {
                "compressed layers"
            } else {
                "block Linears"
            },
            zeros,
            percent(sparsity)
        );
    }
    // An image model's notes name the layers left dense (a transformer's are per block).
    if target.images() {
        for note in &report.notes {
            println!("note: {note}");
        }
    }
    println!(
        "activations: {}; dead columns {}; fallbacks {}; {:.1} s; engine peak {:.1} MiB",
        activations_text(outcome.activations),
        report.dead_columns(),
        fallbacks.len(),
        report.seconds,
        report.peak_bytes as f64 / f64::from(1 << 20)
    );
    for (p, why) in &fallbacks {
        println!("fallback {p}: {why}");
    }
    if let Some((weights, sidecar)) = &outcome.saved {
        println!("wrote {} and {}", weights.display(), sidecar.display());
    }
    Ok(())
}
