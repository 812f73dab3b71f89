//! Evaluation by task, shared by `burn-compress eval`, recipes and examples.
//!
//! | task | model | data | metrics |
//! | --- | --- | --- | --- |
//! | [`EvalTask::Classification`] | any image classifier (a forward closure) | [`LabelledImages`] (an [`ImageFolder`] or an [`ImageDataset`]) | `top1`, `top5`, `images`; with a reference: `top1_agreement`, `mean_kl` |
//! | [`EvalTask::SentenceSimilarity`] | [`MiniLm`] + its [`TextTokenizer`] | [`SentencePair`]s (a TSV, [`read_sentence_pairs`]) | `mean_cosine`, `pairs`; with a reference: `reference_cosine` |
//! | [`EvalTask::Perplexity`] | [`Llama`] + its [`LlamaTokenizer`] | a text | `perplexity`, `mean_nll`, `tokens`, `scored_tokens`, `windows`; with a reference: `reference_perplexity`, `perplexity_ratio` |
//!
//! Every function returns an [`EvalReport`], which serializes as
//! `{"task": "classification", "metrics": {...}, "per_item": [...]}`.
//!
//! Definitions:
//! - *top-k*: the label is among the k largest logits (k = 5, or the class count when smaller);
//!   ties go to the lower class index.
//! - *top-1 agreement*: the share of items whose top-1 class equals the reference model's.
//! - *mean KL*: the mean over items of `KL(reference || model)` of the softmax of the logits,
//!   `sum_c p_ref(c) (log p_ref(c) - log p_model(c))`, in nats, computed in f64.
//! - *cosine*: `a.b / (|a| |b|)` of two embeddings (MiniLM's are unit-length already).
//! - *reference cosine*: the mean over every distinct sentence of the data of the cosine between
//!   the model's and the reference's embedding of it.
//! - *perplexity*: [`compress_zoo::perplexity`]: `exp` of the mean NLL of tokens 2..=window of
//!   each non-overlapping window (the text tokenized without a BOS token).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use compress_core::oneshot::ActivationQuant;
use serde::{Deserialize, Serialize};
use serde_json::json;

use compress_core::dataset::ImageDataset;
use compress_zoo::{
    ImageFolder, Llama, LlamaError, LlamaTokenizer, MiniLm, TextTokenizer, ZooError, perplexity,
};

/// What an evaluation measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalTask {
    /// Top-1 / top-5 accuracy of an image classifier (`classification`).
    Classification,
    /// Cosine similarity of sentence embeddings (`sentence-similarity`).
    SentenceSimilarity,
    /// Perplexity of a causal language model (`perplexity`).
    Perplexity,
}

impl EvalTask {
    /// The name the report serializes: `classification`, `sentence-similarity`, `perplexity`.
    pub fn name(self) -> &'static str {
        match self {
            EvalTask::Classification => "classification",
            EvalTask::SentenceSimilarity => "sentence-similarity",
            EvalTask::Perplexity => "perplexity",
        }
    }
}

/// The result of an evaluation: the task, its metrics by name and one JSON object per item
/// (image, sentence pair, window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The task.
    pub task: EvalTask,
    /// The metrics by name (see the [module docs](self) for each task's names).
    pub metrics: BTreeMap<String, f64>,
    /// One object per item, in the data's order.
    pub per_item: Vec<serde_json::Value>,
}

impl EvalReport {
    /// The metric `name`, if the report has it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }
}

/// What can go wrong evaluating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Loading a zoo model, a tokenizer or an image failed.
    #[error(transparent)]
    Zoo(#[from] ZooError),
    /// Loading or running a Llama model failed (a text shorter than one window among them).
    #[error(transparent)]
    Llama(#[from] LlamaError),
    /// A line of a sentence-pair TSV is not `sentence<TAB>sentence`.
    #[error("'{}' line {line}: {message}", .path.display())]
    PairLine {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A data file that cannot be read or holds nothing to evaluate.
    #[error("'{}': {message}", .path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The data or the reference model does not fit the model (class counts, image shapes).
    #[error("{0}")]
    Mismatch(String),
    /// Running a model with quantized activations (W8A8) failed.
    #[error(transparent)]
    OneShot(#[from] crate::oneshot::OneShotError),
}

/// Labelled images as an image classifier takes them: `[N, C, H, W]` in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImages {
    /// A name per image (the file name, or `#index` for a data set file).
    pub names: Vec<String>,
    /// The label of each image.
    pub labels: Vec<usize>,
    /// `[C, H, W]` of every image.
    pub shape: [usize; 3],
    /// `[N, C, H, W]` row-major.
    pub pixels: Vec<f32>,
}

impl LabelledImages {
    /// The images of a folder (RGB, `[N, 3, size, size]`) with their file names.
    pub fn from_folder(folder: &ImageFolder) -> Self {
        Self {
            names: folder.names.clone(),
            labels: folder.labels.clone(),
            shape: [3, folder.size, folder.size],
            pixels: folder.pixels().to_vec(),
        }
    }

    /// The images of a grayscale data set (`[N, 1, H, W]`), named `#0`, `#1`, ...
    pub fn from_dataset(data: &ImageDataset) -> Self {
        Self {
            names: (0..data.len()).map(|i| format!("#{i}")).collect(),
            labels: data.labels.iter().map(|&l| usize::from(l)).collect(),
            shape: [1, data.height, data.width],
            pixels: data.pixels.clone(),
        }
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The same images with `channels` channels: RGB to gray is the mean of the three (exact for
    /// gray pictures stored as RGB, such as foolbox's MNIST samples), gray to RGB repeats it.
    ///
    /// # Errors
    /// [`EvalError::Mismatch`] for any other conversion.
    pub fn with_channels(self, channels: usize) -> Result<Self, EvalError> {
        let [c, h, w] = self.shape;
        let plane = h * w;
        let pixels = match (c, channels) {
            (a, b) if a == b => return Ok(self),
            (3, 1) => self
                .pixels
                .chunks_exact(3 * plane)
                .flat_map(|img| {
                    (0..plane).map(move |i| (img[i] + img[plane + i] + img[2 * plane + i]) / 3.0)
                })
                .collect(),
            (1, 3) => self
                .pixels
                .chunks_exact(plane)
                .flat_map(|img| img.iter().chain(img).chain(img).copied())
                .collect(),
            (a, b) => {
                return Err(EvalError::Mismatch(format!(
                    "the images have {a} channels, the model takes {b}"
                )));
            }
        };
        Ok(Self {
            shape: [channels, h, w],
            pixels,
            ..self
        })
    }

    /// Images `[start, end)` as a tensor `[end - start, C, H, W]`.
    fn batch(&self, start: usize, end: usize, device: &Device) -> Tensor<4> {
        let [c, h, w] = self.shape;
        let size = c * h * w;
        Tensor::from_data(
            TensorData::new(
                self.pixels[start * size..end * size].to_vec(),
                [end - start, c, h, w],
            ),
            device,
        )
    }
}

/// A model's logits over a set of items, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassLogits {
    /// The number of classes.
    pub classes: usize,
    /// `[items, classes]` row-major.
    pub values: Vec<f32>,
}

impl ClassLogits {
    /// Run `forward` (images `[B, C, H, W]` in `[0, 1]` -> logits `[B, classes]`) over `images`
    /// in batches of `batch` on `device`.
    ///
    /// # Panics
    /// If `batch` is 0, or `forward` returns a batch of another size (programmer errors).
    pub fn compute(
        forward: impl Fn(Tensor<4>) -> Tensor<2>,
        images: &LabelledImages,
        batch: usize,
        device: &Device,
    ) -> Self {
        assert!(batch > 0, "batch size must be positive");
        let mut values = Vec::new();
        let mut classes = 0;
        let mut start = 0;
        while start < images.len() {
            let end = (start + batch).min(images.len());
            let logits = forward(images.batch(start, end, device));
            let [rows, c] = logits.dims();
            assert_eq!(rows, end - start, "the forward returned {rows} rows");
            classes = c;
            values.extend(logits.into_data().iter::<f32>());
            start = end;
        }
        Self { classes, values }
    }

    fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.values.chunks_exact(self.classes.max(1))
    }
}

/// The indices of the `k` largest values, largest first (ties: the lower index first).
fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// `log_softmax` of one row, in f64.
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max
        + row
            .iter()
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln();
    row.iter().map(|&v| v as f64 - lse).collect()
}

/// `KL(p || q)` from log-probabilities, in nats.
fn kl(log_p: &[f64], log_q: &[f64]) -> f64 {
    log_p
        .iter()
        .zip(log_q)
        .map(|(&lp, &lq)| lp.exp() * (lp - lq))
        .sum()
}

/// Top-1 / top-5 accuracy of `logits` on `images`, and with `reference` (another model's logits
/// on the same images) the top-1 agreement and mean `KL(reference || model)`.
///
/// Per item: `name`, `label`, `top1` (the predicted class), `top5` (classes), `correct`; with a
/// reference also `reference_top1` and `kl`.
///
/// # Errors
/// [`EvalError::Mismatch`] when the logits do not have one row per image, the reference has
/// another class count or item count, a label is not below the class count, or there are no
/// images at all.
pub fn classification(
    images: &LabelledImages,
    logits: &ClassLogits,
    reference: Option<&ClassLogits>,
) -> Result<EvalReport, EvalError> {
    let n = images.len();
    if n == 0 {
        return Err(EvalError::Mismatch("no images to evaluate".into()));
    }
    let rows = |l: &ClassLogits| l.values.len() / l.classes.max(1);
    if logits.classes == 0 || rows(logits) != n {
        return Err(EvalError::Mismatch(format!(
            "{} rows of {} logits for {n} images",
            rows(logits),
            logits.classes
        )));
    }
    if let Some(r) = reference
        && (r.classes != logits.classes || rows(r) != n)
    {
        return Err(EvalError::Mismatch(format!(
            "the reference gives {} rows of {} classes, the model {n} rows of {}",
            rows(r),
            r.classes,
            logits.classes
        )));
    }
    if let Some((i, &label)) = images
        .labels
        .iter()
        .enumerate()
        .find(|(_, l)| **l >= logits.classes)
    {
        return Err(EvalError::Mismatch(format!(
            "label {label} of '{}' is not below the model's {} classes",
            images.names[i], logits.classes
        )));
    }
    let k = 5.min(logits.classes);
    let (mut top1, mut top5, mut agree, mut kl_sum) = (0usize, 0usize, 0usize, 0f64);
    let mut per_item = Vec::with_capacity(n);
    let reference_rows: Vec<Option<&[f32]>> = match reference {
        Some(r) => r.rows().map(Some).collect(),
        None => vec![None; n],
    };
    for (i, (row, reference_row)) in logits.rows().zip(reference_rows).enumerate() {
        let label = images.labels[i];
        let best = top_k(row, k);
        let correct = best[0] == label;
        top1 += usize::from(correct);
        top5 += usize::from(best.contains(&label));
        let mut item = json!({
            "name": images.names[i], "label": label, "top1": best[0], "top5": best,
            "correct": correct,
        });
        if let Some(r) = reference_row {
            let reference_top1 = top_k(r, 1)[0];
            agree += usize::from(reference_top1 == best[0]);
            let d = kl(&log_softmax(r), &log_softmax(row));
            kl_sum += d;
            item["reference_top1"] = json!(reference_top1);
            item["kl"] = json!(d);
        }
        per_item.push(item);
    }
    let share = |count: usize| count as f64 / n as f64;
    let mut metrics = BTreeMap::from([
        ("top1".to_string(), share(top1)),
        ("top5".to_string(), share(top5)),
        ("images".to_string(), n as f64),
    ]);
    if reference.is_some() {
        metrics.insert("top1_agreement".into(), share(agree));
        metrics.insert("mean_kl".into(), kl_sum / n as f64);
    }
    Ok(EvalReport {
        task: EvalTask::Classification,
        metrics,
        per_item,
    })
}

/// One line of a sentence-pair TSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentencePair {
    /// The line number in the file, from 1.
    pub line: usize,
    /// The first sentence.
    pub a: String,
    /// The second sentence.
    pub b: String,
}

/// Read a TSV of sentence pairs, one `a<TAB>b` per line (blank lines are skipped; a trailing
/// `\r` is dropped).
///
/// # Errors
/// [`EvalError::Data`] when the file cannot be read or holds no pair, and
/// [`EvalError::PairLine`] naming the line number of a line that is not exactly two
/// tab-separated, non-empty sentences.
pub fn read_sentence_pairs(path: &Path) -> Result<Vec<SentencePair>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::Data {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse_sentence_pairs(&text, path)
}

/// Parse the text of a sentence-pair TSV; `path` names it in errors. See
/// [`read_sentence_pairs`].
///
/// # Errors
/// As [`read_sentence_pairs`].
pub fn parse_sentence_pairs(text: &str, path: &Path) -> Result<Vec<SentencePair>, EvalError> {
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| EvalError::PairLine {
            path: path.to_path_buf(),
            line: line_no,
            message,
        };
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            [a, b] if !a.trim().is_empty() && !b.trim().is_empty() => pairs.push(SentencePair {
                line: line_no,
                a: a.to_string(),
                b: b.to_string(),
            }),
            [_] => return Err(bad("no tab: expected 'sentence<TAB>sentence'".into())),
            [_, _] => return Err(bad("an empty sentence".into())),
            more => {
                return Err(bad(format!(
                    "{} tab-separated fields, expected 2 ('sentence<TAB>sentence')",
                    more.len()
                )));
            }
        }
    }
    if pairs.is_empty() {
        return Err(EvalError::Data {
            path: path.to_path_buf(),
            message: "no sentence pair in the file".into(),
        });
    }
    Ok(pairs)
}

/// Embeddings of `sentences` on the host, one row each; with `activations`, every block
/// Linear's input quantized at run time ([`crate::oneshot::minilm_embeddings`]).
fn embed_rows(
    model: &MiniLm,
    tokenizer: &TextTokenizer,
    sentences: &[&str],
    activations: Option<ActivationQuant>,
) -> Result<Vec<Vec<f64>>, EvalError> {
    if activations.is_some() {
        let rows = crate::oneshot::minilm_embeddings(model, tokenizer, sentences, activations)?;
        return Ok(rows
            .into_iter()
            .map(|r| r.into_iter().map(f64::from).collect())
            .collect());
    }
    let e = model.embed(tokenizer, sentences)?;
    let d = e.dims()[1];
    let flat: Vec<f64> = e.into_data().iter::<f32>().map(f64::from).collect();
    Ok(flat.chunks_exact(d.max(1)).map(<[f64]>::to_vec).collect())
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-12)
}

/// The cosine of each pair's embeddings and their mean; with `reference` (another encoder and
/// its tokenizer), the mean cosine between the model's and the reference's embedding over every
/// distinct sentence.
///
/// Per item: `line`, `a`, `b`, `cosine`; with a reference also `reference_pair_cosine` (the
/// reference's cosine of the pair).
///
/// # Errors
/// The tokenizers' and [`MiniLm::embed`]'s errors; [`EvalError::Mismatch`] for no pairs or a
/// reference whose embedding width differs.
pub fn sentence_similarity(
    model: &MiniLm,
    tokenizer: &TextTokenizer,
    pairs: &[SentencePair],
    reference: Option<(&MiniLm, &TextTokenizer)>,
) -> Result<EvalReport, EvalError> {
    sentence_similarity_quantized(
        (model, None),
        tokenizer,
        pairs,
        reference.map(|(m, t)| (m, t, None)),
    )
}

/// [`sentence_similarity`] of models that run with quantized activations: each model comes
/// with the [`ActivationQuant`] of its one-shot sidecar (W8A8: per-token int8 on every block
/// Linear's input, [`crate::oneshot::OneShotMeta::activations`]), `None` for float.
///
/// # Errors
/// As [`sentence_similarity`]; [`EvalError::OneShot`] for the quantized replay.
pub fn sentence_similarity_quantized(
    (model, activations): (&MiniLm, Option<ActivationQuant>),
    tokenizer: &TextTokenizer,
    pairs: &[SentencePair],
    reference: Option<(&MiniLm, &TextTokenizer, Option<ActivationQuant>)>,
) -> Result<EvalReport, EvalError> {
    if pairs.is_empty() {
        return Err(EvalError::Mismatch("no sentence pairs to evaluate".into()));
    }
    // Each distinct sentence is embedded once.
    let mut sentences: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for p in pairs {
        for s in [p.a.as_str(), p.b.as_str()] {
            index.entry(s).or_insert_with(|| {
                sentences.push(s);
                sentences.len() - 1
            });
        }
    }
    let rows = embed_rows(model, tokenizer, &sentences, activations)?;
    let reference_rows = match reference {
        Some((m, t, a)) => {
            let r = embed_rows(m, t, &sentences, a)?;
            if r[0].len() != rows[0].len() {
                return Err(EvalError::Mismatch(format!(
                    "the reference embeds into {} dimensions, the model into {}",
                    r[0].len(),
                    rows[0].len()
                )));
            }
            Some(r)
        }
        None => None,
    };
    let mut per_item = Vec::with_capacity(pairs.len());
    let mut sum = 0.0;
    for p in pairs {
        let (i, j) = (index[p.a.as_str()], index[p.b.as_str()]);
        let c = cosine(&rows[i], &rows[j]);
        sum += c;
        let mut item = json!({"line": p.line, "a": p.a, "b": p.b, "cosine": c});
        if let Some(r) = &reference_rows {
            item["reference_pair_cosine"] = json!(cosine(&r[i], &r[j]));
        }
        per_item.push(item);
    }
    let mut metrics = BTreeMap::from([
        ("mean_cosine".to_string(), sum / pairs.len() as f64),
        ("pairs".to_string(), pairs.len() as f64),
    ]);
    if let Some(r) = &reference_rows {
        let fidelity = rows.iter().zip(r).map(|(a, b)| cosine(a, b)).sum::<f64>();
        metrics.insert("reference_cosine".into(), fidelity / rows.len() as f64);
        metrics.insert("sentences".into(), rows.len() as f64);
    }
    Ok(EvalReport {
        task: EvalTask::SentenceSimilarity,
        metrics,
        per_item,
    })
}

/// Read a UTF-8 text file to evaluate perplexity on.
///
/// # Errors
/// [`EvalError::Data`] naming the file when it cannot be read or is not UTF-8.
pub fn read_text(path: &Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|e| EvalError::Data {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Perplexity of `model` on `text` (tokenized by `tokenizer`, no BOS) over non-overlapping
/// windows of `window` tokens among the first `max_tokens`; with `reference`, its perplexity on
/// the same tokens and the ratio model / reference.
///
/// Per item, one per window: `window` (its index), `start` (its first token), `mean_nll`,
/// `perplexity`.
///
/// # Errors
/// The tokenizer's errors, and [`compress_zoo::perplexity`]'s: [`LlamaError::TooShort`] for a
/// text shorter than one window ("text of N tokens is shorter than one window of W tokens"),
/// [`LlamaError::Argument`] for a window under 2 or ids outside the vocabulary.
pub fn perplexity_report(
    model: &Llama,
    tokenizer: &LlamaTokenizer,
    text: &str,
    window: usize,
    max_tokens: Option<usize>,
    reference: Option<&Llama>,
) -> Result<EvalReport, EvalError> {
    perplexity_report_quantized(
        (model, None),
        tokenizer,
        text,
        window,
        max_tokens,
        reference.map(|r| (r, None)),
    )
}

/// [`perplexity_report`] of models that run with quantized activations: each model comes with
/// the [`ActivationQuant`] of its one-shot sidecar (W8A8: per-token int8 on every block
/// Linear's input, [`crate::oneshot::llama_perplexity`]), `None` for float.
///
/// # Errors
/// As [`perplexity_report`]; [`EvalError::OneShot`] wraps the same errors on the quantized
/// route.
pub fn perplexity_report_quantized(
    (model, activations): (&Llama, Option<ActivationQuant>),
    tokenizer: &LlamaTokenizer,
    text: &str,
    window: usize,
    max_tokens: Option<usize>,
    reference: Option<(&Llama, Option<ActivationQuant>)>,
) -> Result<EvalReport, EvalError> {
    let ids = tokenizer.encode(text)?;
    let ppl = |m: &Llama, a: Option<ActivationQuant>| -> Result<_, EvalError> {
        Ok(match a {
            None => perplexity(m, &ids, window, max_tokens)?,
            a => crate::oneshot::llama_perplexity(m, &ids, window, max_tokens, a)?,
        })
    };
    let p = ppl(model, activations)?;
    let per_item = p
        .window_nll
        .iter()
        .enumerate()
        .map(|(i, &nll)| {
            json!({"window": i, "start": i * window, "mean_nll": nll, "perplexity": nll.exp()})
        })
        .collect();
    let mut metrics = BTreeMap::from([
        ("perplexity".to_string(), p.perplexity),
        ("mean_nll".to_string(), p.mean_nll),
        ("tokens".to_string(), ids.len() as f64),
        ("scored_tokens".to_string(), p.scored as f64),
        ("windows".to_string(), p.window_nll.len() as f64),
    ]);
    if let Some((r, a)) = reference {
        let q = ppl(r, a)?;
        metrics.insert("reference_perplexity".into(), q.perplexity);
        metrics.insert("perplexity_ratio".into(), p.perplexity / q.perplexity);
    }
    Ok(EvalReport {
        task: EvalTask::Perplexity,
        metrics,
        per_item,
    })
}
