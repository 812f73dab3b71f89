//! One-shot post-training compression of the zoo's pretrained transformers (SmolLM2's Llama,
//! MiniLM): Wanda, SparseGPT, magnitude (unstructured, N:M, OWL), round-to-nearest, GPTQ, AWQ
//! and SmoothQuant, calibrated on text; and of models without blocks (the zoo's CNNs), layer by
//! layer on calibration images ([`calibration_images`], [`compress_layerwise`]; the methods
//! that need blocks, AWQ and SmoothQuant, are refused there).
//!
//! The pieces: the algorithms are registered crates ([`AlgorithmKind::OneShotPruner`],
//! [`AlgorithmKind::OneShotQuantizer`]); the engine is
//! [`compress_graph::sequential::compress_sequential`] (block by block, statistics from replay
//! taps); this module adds calibration windows drawn from a text, evaluation with quantized
//! activations (W8A8's per-token int8 on every block Linear's input), and saving a compressed
//! model with the sidecar that says how it must run.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use burn::prelude::*;
//! use burn_compress::oneshot::{self, SequentialOptions};
//! use burn_compress::zoo::{Llama, LlamaTokenizer, gguf::GgufFile};
//!
//! let device = Device::flex();
//! let gguf = GgufFile::open(std::path::Path::new(
//!     "data/external/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf",
//! ))?;
//! let model = Llama::from_gguf(&gguf, &device)?;
//! let tokenizer = LlamaTokenizer::from_gguf(&gguf)?;
//! let text = std::fs::read_to_string("data/external/austen/emma.txt")?;
//! let calib = oneshot::calibration_windows(&tokenizer.encode(&text)?, 32, 256, 0)?;
//! let method = oneshot::method("sparsegpt", &"sparsity = 0.5".parse()?)?;
//! let (pruned, report) = oneshot::compress(
//!     model,
//!     &calib,
//!     method.as_ref(),
//!     &SequentialOptions::default(),
//!     &device,
//! )?;
//! println!("{} Linears in {:.0} s", report.linears.len(), report.seconds);
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use compress_core::oneshot::{ActivationQuant, BlockModel, OneShot};
use compress_core::{AlgorithmEntry, AlgorithmKind, CompressError};
use compress_graph::onnx::OnnxOptions;
use compress_graph::{GraphError, Site, Tap};

use crate::eval::LabelledImages;
use compress_quant::rtn::quantize_per_token;
use compress_zoo::{Llama, LlamaError, MiniLm, Perplexity, TextTokenizer, ZooError, perplexity_by};
use serde::{Deserialize, Serialize};

pub use compress_graph::sequential::{
    BlockReplays, LinearOutcome, SequentialOptions, SequentialReport, check_layerwise,
    compress_layerwise, compress_sequential, forward_tapped,
};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum OneShotError {
    /// The calibration text is shorter than one sample.
    #[error(
        "the calibration text has {tokens} tokens, shorter than one sample of {needed} (--calib-seqlen {seq_len} plus one)"
    )]
    TooShort {
        /// Tokens in the text.
        tokens: usize,
        /// Tokens one sample needs.
        needed: usize,
        /// The sample length asked for.
        seq_len: usize,
    },
    /// Zero samples or a zero sample length.
    #[error("calibration needs at least one sample of at least one token ({samples} x {seq_len})")]
    Empty {
        /// Samples asked for.
        samples: usize,
        /// Tokens per sample asked for.
        seq_len: usize,
    },
    /// More calibration images asked for than the data set holds.
    #[error(
        "{asked} calibration images asked for (--calib-samples), the data set holds {available}"
    )]
    TooFewImages {
        /// Images asked for.
        asked: usize,
        /// Images in the data set.
        available: usize,
    },
    /// The algorithm or its options.
    #[error(transparent)]
    Compress(#[from] CompressError),
    /// The engine.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// Running the Llama model.
    #[error(transparent)]
    Llama(#[from] LlamaError),
    /// Running MiniLM.
    #[error(transparent)]
    Zoo(#[from] ZooError),
    /// Reading or writing a compressed model or its sidecar.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// This module's result.
pub type Result<T> = std::result::Result<T, OneShotError>;

/// `samples` calibration windows of `seq_len` tokens from `ids`, at random offsets drawn with
/// `seed` (the reference loaders draw `randint(0, len - seq_len - 1)` per sample; windows may
/// overlap).
///
/// # Errors
/// [`OneShotError::Empty`] for zero samples or length, [`OneShotError::TooShort`] when the text
/// has fewer than `seq_len + 1` tokens.
pub fn calibration_windows(
    ids: &[u32],
    samples: usize,
    seq_len: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>> {
    if samples == 0 || seq_len == 0 {
        return Err(OneShotError::Empty { samples, seq_len });
    }
    if ids.len() < seq_len + 1 {
        return Err(OneShotError::TooShort {
            tokens: ids.len(),
            needed: seq_len + 1,
            seq_len,
        });
    }
    Ok(calibration_offsets(ids.len(), samples, seq_len, seed)
        .into_iter()
        .map(|start| ids[start..start + seq_len].to_vec())
        .collect())
}

/// The start offsets [`calibration_windows`] takes from a text of `len` tokens (ChaCha8 seeded
/// with `seed`; each uniform in `0..len - seq_len`), so another implementation can be run on
/// the same calibration tokens.
pub fn calibration_offsets(len: usize, samples: usize, seq_len: usize, seed: u64) -> Vec<usize> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..samples)
        .map(|_| rng.random_range(0..len.saturating_sub(seq_len).max(1)))
        .collect()
}

/// `samples` calibration images drawn without replacement from `images` with `seed` (ChaCha8,
/// in ascending index order), as `[n, C, H, W]` batches of at most `batch` images for
/// [`compress_layerwise`].
///
/// # Errors
/// [`OneShotError::Empty`] for zero samples, [`OneShotError::TooFewImages`] when the data set
/// holds fewer than `samples` images.
pub fn calibration_images(
    images: &LabelledImages,
    samples: usize,
    batch: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<Tensor<4>>> {
    use rand::SeedableRng;
    if samples == 0 {
        return Err(OneShotError::Empty {
            samples,
            seq_len: 1,
        });
    }
    if images.len() < samples {
        return Err(OneShotError::TooFewImages {
            asked: samples,
            available: images.len(),
        });
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut picked = rand::seq::index::sample(&mut rng, images.len(), samples).into_vec();
    picked.sort_unstable();
    let [c, h, w] = images.shape;
    let per = c * h * w;
    Ok(picked
        .chunks(batch.max(1))
        .map(|chunk| {
            let mut pixels = Vec::with_capacity(chunk.len() * per);
            for &i in chunk {
                pixels.extend_from_slice(&images.pixels[i * per..(i + 1) * per]);
            }
            Tensor::from_data(TensorData::new(pixels, [chunk.len(), c, h, w]), device)
        })
        .collect())
}

/// Windows of equal length as token ids `[samples, seq_len]`.
pub fn ids_tensor(windows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let seq = windows.first().map_or(0, Vec::len);
    let v: Vec<i64> = windows
        .iter()
        .flat_map(|w| w.iter().map(|&i| i64::from(i)))
        .collect();
    Tensor::from_data(TensorData::new(v, [windows.len(), seq]), device)
}

/// A registered one-shot method by name, built from its options.
///
/// # Errors
/// An unknown name (with a did-you-mean), an algorithm that is not one-shot, bad options
/// (naming the key).
pub fn method(name: &str, options: &compress_core::toml::Table) -> Result<Box<dyn OneShot>> {
    let entry = AlgorithmEntry::find(name)?;
    if !matches!(
        entry.kind,
        AlgorithmKind::OneShotPruner | AlgorithmKind::OneShotQuantizer
    ) {
        return Err(CompressError::WrongAlgorithmKind {
            name: name.to_string(),
            kind: entry.kind.to_string(),
            wanted: "one-shot pruner or one-shot quantizer".into(),
        }
        .into());
    }
    Ok(entry.build_oneshot(options)?)
}

/// Compress `model` with `method` on the calibration windows (all of one length).
///
/// # Errors
/// The engine's and the method's errors.
pub fn compress<M: BlockModel>(
    model: M,
    windows: &[Vec<u32>],
    method: &dyn OneShot,
    options: &SequentialOptions,
    device: &Device,
) -> Result<(M, SequentialReport)> {
    Ok(compress_sequential(
        model,
        ids_tensor(windows, device),
        method,
        options,
    )?)
}

/// Quantizes the input of every block Linear per token (row), symmetric absmax, at run time:
/// W8A8's activation side ([`quantize_per_token`], the one formula).
#[derive(Debug, Clone)]
pub struct ActivationQuantTap {
    linears: BTreeSet<String>,
    bits: u32,
}

impl ActivationQuantTap {
    /// The tap for every Linear of `model`'s blocks.
    pub fn new<M: BlockModel>(model: &M, quant: ActivationQuant) -> Self {
        let ActivationQuant::PerTokenDynamic { bits } = quant;
        Self {
            linears: block_linears(model),
            bits,
        }
    }
}

/// The full paths of every Linear of `model`'s blocks: the layers whose inputs W8A8 quantizes.
fn block_linears<M: BlockModel>(model: &M) -> BTreeSet<String> {
    (0..model.num_blocks())
        .flat_map(|i| {
            let prefix = model.block_path(i);
            model
                .linear_groups(i)
                .into_iter()
                .flatten()
                .map(move |l| format!("{prefix}.{l}"))
        })
        .collect()
}

/// `options` for exporting `graph` (a capture of `model`'s forward) with `quant`'s activations:
/// the input of every block Linear quantized per token at run time in the ONNX graph, as
/// [`ActivationQuantTap`] does in Burn.
///
/// # Errors
/// [`OneShotError::Graph`] when a block Linear has no call in `graph` (named).
pub fn onnx_options_with_activations<M: BlockModel>(
    model: &M,
    graph: &compress_graph::Graph,
    quant: ActivationQuant,
    options: OnnxOptions,
) -> Result<OnnxOptions> {
    let ActivationQuant::PerTokenDynamic { bits } = quant;
    let linears = block_linears(model);
    let calls = compress_graph::layer_calls(graph);
    let mut per_token = std::collections::HashMap::new();
    for linear in &linears {
        let mut found = false;
        for call in calls.iter().filter(|c| &c.layer == linear) {
            per_token.insert(call.input.id, bits);
            found = true;
        }
        if !found {
            return Err(GraphError::Export(format!(
                "the captured forward has no call of the block Linear '{linear}'"
            ))
            .into());
        }
    }
    Ok(options.with_per_token(per_token))
}

impl Tap for ActivationQuantTap {
    fn wants(&self, layer: &str, site: Site) -> bool {
        site == Site::Input && self.linears.contains(layer)
    }

    fn tap(
        &mut self,
        _layer: &str,
        _site: Site,
        rank: usize,
        value: Tensor<3>,
    ) -> compress_graph::Result<Tensor<3>> {
        let dims = value.dims();
        let device = value.device();
        // A token's features: the last axis of `[batch, seq, d]`; a rank-2 `[tokens, d]`
        // (Burn's Linear flattens its input) arrives as `[tokens, d, 1]`.
        let row = if rank == 2 { dims[1] } else { dims[2] };
        let mut v: Vec<f32> = value.into_data().iter::<f32>().collect();
        quantize_per_token(&mut v, row, self.bits);
        Ok(Tensor::from_data(TensorData::new(v, dims), &device))
    }
}

/// Perplexity of `model` (as [`compress_zoo::perplexity`]), with `activations` quantized at
/// run time when given.
///
/// # Errors
/// As [`compress_zoo::perplexity`]; replay errors.
pub fn llama_perplexity(
    model: &Llama,
    ids: &[u32],
    window: usize,
    max_tokens: Option<usize>,
    activations: Option<ActivationQuant>,
) -> Result<Perplexity> {
    let device = model.model.embed_tokens.weight.device();
    let Some(quant) = activations else {
        return Ok(compress_zoo::perplexity(model, ids, window, max_tokens)?);
    };
    let mut tap = ActivationQuantTap::new(model, quant);
    let mut replays = BlockReplays::default();
    let mut failure = None;
    let p = perplexity_by(
        |x| match replays.forward(model, x.clone(), &mut tap) {
            Ok(logits) => logits,
            Err(e) => {
                failure.get_or_insert(e);
                model.forward(x)
            }
        },
        model.vocab_size(),
        &device,
        ids,
        window,
        max_tokens,
    )?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(p),
    }
}

/// Unit-length sentence embeddings of `model` (as [`MiniLm::embed`]), with `activations`
/// quantized at run time when given (one sentence per pass, no padding).
///
/// # Errors
/// Tokenizer and replay errors.
pub fn minilm_embeddings(
    model: &MiniLm,
    tokenizer: &TextTokenizer,
    sentences: &[&str],
    activations: Option<ActivationQuant>,
) -> Result<Vec<Vec<f32>>> {
    let rows = |t: Tensor<2>| -> Vec<Vec<f32>> {
        let [n, d] = t.dims();
        let v: Vec<f32> = t.into_data().iter::<f32>().collect();
        (0..n).map(|i| v[i * d..(i + 1) * d].to_vec()).collect()
    };
    let Some(quant) = activations else {
        return Ok(rows(model.embed(tokenizer, sentences)?));
    };
    let device = model.embeddings.word_embeddings.weight.device();
    let mut tap = ActivationQuantTap::new(model, quant);
    let mut replays = BlockReplays::default();
    let mut out = Vec::with_capacity(sentences.len());
    for s in sentences {
        let ids = tokenizer.encode(s)?;
        let hidden = replays.forward(model, ids_tensor(&[ids], &device), &mut tap)?;
        let [_, seq, _] = hidden.dims();
        let mask = Tensor::ones([1, seq], &device);
        out.extend(rows(MiniLm::pool(hidden, mask)));
    }
    Ok(out)
}

/// How a compressed model was made and how it must run: the JSON sidecar
/// `<model>.oneshot.json` next to the saved weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneShotMeta {
    /// The algorithm's registry name.
    pub algorithm: String,
    /// Its options, as TOML.
    pub options: String,
    /// Bits of the per-token dynamic activation quantization every block Linear's input gets
    /// at run time (W8A8: 8), if any.
    pub activation_bits: Option<u32>,
    /// Calibration sequences and their length.
    pub calibration: [usize; 2],
    /// Dead input columns found; Linears that fell back to round-to-nearest / magnitude.
    pub dead_columns: usize,
    /// Fallbacks by Linear path.
    pub fallbacks: Vec<String>,
}

impl OneShotMeta {
    /// The activation quantization to run with.
    pub fn activations(&self) -> Option<ActivationQuant> {
        self.activation_bits
            .map(|bits| ActivationQuant::PerTokenDynamic { bits })
    }

    /// The sidecar path of a saved model.
    pub fn path_for(model: &Path) -> PathBuf {
        model.with_extension("oneshot.json")
    }

    /// The sidecar of `model`, if there is one.
    ///
    /// # Errors
    /// [`OneShotError::File`] for a sidecar that cannot be read or parsed.
    pub fn read(model: &Path) -> Result<Option<Self>> {
        let path = Self::path_for(model);
        if !path.exists() {
            return Ok(None);
        }
        let fail = |message: String| OneShotError::File {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| fail(format!("not a one-shot sidecar: {e}")))
    }
}

/// Save a one-shot compressed model: its weights (Burn's burnpack, `<path>` with the `.bpk`
/// extension) and the sidecar [`OneShotMeta`]. Pruned weights are saved as they are (zeros
/// in place); quantized weights as their values on the quantization grid (f32).
///
/// # Errors
/// [`OneShotError::File`] when a file cannot be written.
pub fn save<M: Module>(model: &M, path: &Path, meta: &OneShotMeta) -> Result<(PathBuf, PathBuf)> {
    let weights = path.with_extension("bpk");
    model
        .clone()
        .save_file(&weights)
        .map_err(|e| OneShotError::File {
            path: weights.clone(),
            message: e.to_string(),
        })?;
    let sidecar = OneShotMeta::path_for(&weights);
    let json = serde_json::to_string_pretty(meta).map_err(|e| OneShotError::File {
        path: sidecar.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&sidecar, json).map_err(|e| OneShotError::File {
        path: sidecar.clone(),
        message: e.to_string(),
    })?;
    Ok((weights, sidecar))
}

/// The sidecar for a run.
pub fn meta(
    report: &SequentialReport,
    options: &compress_core::toml::Table,
    activations: Option<ActivationQuant>,
) -> OneShotMeta {
    OneShotMeta {
        algorithm: report.method.clone(),
        options: options.to_string(),
        activation_bits: activations.map(|ActivationQuant::PerTokenDynamic { bits }| bits),
        calibration: [report.samples, report.seq_len],
        dead_columns: report.dead_columns(),
        fallbacks: report
            .fallbacks()
            .into_iter()
            .map(|(p, why)| format!("{p}: {why}"))
            .collect(),
    }
}
