//! One-shot post-training compression of pretrained transformers from calibration statistics:
//! the contract between the layer-sequential calibration engine
//! (`compress_graph::sequential`) and the algorithms (Wanda, SparseGPT, magnitude N:M, GPTQ,
//! AWQ, SmoothQuant; one crate each under `algorithms/`).
//!
//! The engine walks a [`BlockModel`] block by block: it caches block 0's inputs for every
//! calibration sample, replays one block on them with taps on every Linear input, streams the
//! statistics an algorithm asks for ([`StatNeeds`] -> [`InputStats`]), lets the algorithm
//! transform the whole block ([`OneShot::transform_block`] through [`BlockOps`]: AWQ's and
//! SmoothQuant's scales) and compress each Linear ([`OneShot::compress_linear`] on a
//! [`LinearSlot`]), then re-runs the block to feed the next one.
//!
//! Conventions every algorithm relies on:
//! - A Linear's weight is handed over in **PyTorch layout** `[out, in]` (one row per output),
//!   the layout the reference implementations and papers use; Burn stores `[in, out]` and the
//!   engine transposes on the way in and out.
//! - Statistics follow the reference code's scaling: `H = (2 / samples) * sum_tokens x x^T` in
//!   f64 (`sparsegpt.py`, `gptq.py`), `sq_norm_j = sum_tokens x_j^2 / samples` (Wanda's
//!   `scaler_row`), `abs_mean_j = mean_tokens |x_j|` (AWQ), `abs_max_j = max_tokens |x_j|`
//!   (SmoothQuant), where `samples` counts calibration sequences and `tokens` their tokens.
//! - "n:m" means **n kept of every m** (NVIDIA's meaning; the reference code's `prunen` is the
//!   number zeroed).

pub mod hessian;
pub mod sparsity;

use burn::module::Module;
use burn::prelude::*;

use crate::{Dense, Result};

/// What an algorithm needs of each Linear's input over the calibration tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatNeeds {
    /// `H = (2 / samples) * sum x x^T`, f64 (SparseGPT, GPTQ).
    pub hessian: bool,
    /// `sum_tokens x_j^2 / samples` (Wanda, OWL).
    pub sq_norm: bool,
    /// `mean_tokens |x_j|` (AWQ).
    pub abs_mean: bool,
    /// `max_tokens |x_j|` (SmoothQuant).
    pub abs_max: bool,
    /// The inputs themselves, kept for the block ([`BlockOps::inspect_error`],
    /// [`BlockOps::input_tokens`]: AWQ's scale and clip search).
    pub inputs: bool,
}

/// The statistics of one Linear's input, as asked for by [`StatNeeds`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputStats {
    /// Calibration sequences seen.
    pub samples: usize,
    /// Tokens seen (all sequences).
    pub tokens: usize,
    /// `[d_in, d_in]`, `(2 / samples) * sum_tokens x x^T`.
    pub hessian: Option<Dense<f64>>,
    /// `[d_in]`, `sum_tokens x_j^2 / samples`.
    pub sq_norm: Option<Vec<f64>>,
    /// `[d_in]`, `mean_tokens |x_j|`.
    pub abs_mean: Option<Vec<f64>>,
    /// `[d_in]`, `max_tokens |x_j|`.
    pub abs_max: Option<Vec<f32>>,
}

/// One Linear handed to [`OneShot::compress_linear`].
#[derive(Debug)]
pub struct LinearSlot<'a> {
    /// Its full dotted path (`model.layers.3.self_attn.q_proj`).
    pub path: &'a str,
    /// Its weight, `[out, in]` (PyTorch layout), compressed in place.
    pub weight: &'a mut Dense<f32>,
    /// Its bias, `[out]`, if any (left to the algorithm; none of the reference methods change it).
    pub bias: Option<&'a mut Vec<f32>>,
    /// The statistics of its input.
    pub stats: &'a InputStats,
    /// The sparsity this layer gets: the configured one, or its block's OWL ratio
    /// ([`SparsityProfile::Owl`]). Quantizers ignore it.
    pub sparsity: f64,
}

/// What compressing one Linear did, for the run's report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinearReport {
    /// Input columns with `diag(H) = 0` (no calibration signal): zeroed.
    pub dead_columns: usize,
    /// Cholesky retries with ten times the damping.
    pub damping_retries: u32,
    /// Set when the Hessian stayed indefinite after the retries and the layer fell back to
    /// round-to-nearest / magnitude selection: why.
    pub fallback: Option<String>,
    /// Weights set to zero (after the step; pruners).
    pub zeros: usize,
    /// Reconstruction loss the algorithm tracked (SparseGPT's / GPTQ's `sum (w - q)^2 / d^2`),
    /// when it tracks one.
    pub loss: Option<f64>,
}

/// How the sparsity is spread over blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SparsityProfile {
    /// Every Linear gets the configured sparsity.
    Uniform,
    /// Outlier-weighted layerwise sparsity (OWL): block `l`'s density follows its share of
    /// Wanda scores above `m` times their mean ([`owl_densities`]).
    Owl {
        /// The outlier threshold multiple (`owl_m`, default 5).
        m: f64,
        /// The ratio spread (`owl_lmbda`, default 0.08).
        lambda: f64,
    },
}

/// The sparsity a pruner asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparsitySpec {
    /// The target sparsity in `[0, 1)` (mean over blocks under OWL).
    pub sparsity: f64,
    /// How it is spread.
    pub profile: SparsityProfile,
}

/// Activation quantization the compressed model runs with (W8A8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationQuant {
    /// Every Linear input quantized per token (row), symmetric, absmax, to `bits` bits, at run
    /// time (dynamic).
    PerTokenDynamic {
        /// Bits (8 for W8A8).
        bits: u32,
    },
}

/// A one-shot compression method (registered as
/// [`Algorithm::OneShot`](crate::Algorithm::OneShot)).
///
/// An implementor computes on host matrices only; the engine handles the model, the replay, the
/// statistics, the block order and the report.
pub trait OneShot: Send + Sync {
    /// Registry name.
    fn name(&self) -> &str;

    /// The statistics it needs.
    fn needs(&self) -> StatNeeds;

    /// For pruners: the sparsity and its profile (the engine computes OWL's block ratios before
    /// the first block).
    fn sparsity(&self) -> Option<SparsitySpec> {
        None
    }

    /// For W8A8: the activation quantization the compressed model runs with.
    fn activation_quant(&self) -> Option<ActivationQuant> {
        None
    }

    /// A block-level step before any Linear of the block is compressed (AWQ's scale and clip
    /// search, SmoothQuant's smoothing). Nothing by default.
    ///
    /// # Errors
    /// Whatever the step refuses (named layer).
    fn transform_block(&self, _block: &mut dyn BlockOps) -> Result<BlockReport> {
        Ok(BlockReport::default())
    }

    /// Compress one Linear in place.
    ///
    /// # Errors
    /// Input the method cannot take, naming the layer (an N:M pattern whose `m` does not divide
    /// the input width, a group size that does not divide it, ...).
    fn compress_linear(&self, linear: &mut LinearSlot<'_>) -> Result<LinearReport>;
}

/// What a block-level step did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockReport {
    /// One line per decision (`input_layernorm -> q,k,v: alpha 0.35, loss 1.2e-3`).
    pub notes: Vec<String>,
}

/// Which kind of layer a [`SmoothMapping`] divides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmoothKind {
    /// A LayerNorm / RMSNorm: gamma (and beta) divided by the scales.
    Norm,
    /// A Linear: its output rows (and bias) divided by the scales.
    Linear,
}

/// A scale that can be folded exactly: `smooth`'s output divided by `s`, the `balance` Linears'
/// input columns multiplied by `s`, the float output unchanged. Paths are relative to the
/// block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmoothMapping {
    /// The layer whose output is divided (`input_layernorm`, `mlp.up_proj`).
    pub smooth: String,
    /// Its kind.
    pub kind: SmoothKind,
    /// The Linears reading that output (`self_attn.q_proj`, ...).
    pub balance: Vec<String>,
    /// The sub-module whose output AWQ compares (`self_attn`, `mlp`, or a balance Linear).
    pub inspect: String,
}

/// The engine's view of the block being compressed, for [`OneShot::transform_block`]. Paths are
/// relative to the block (`self_attn.q_proj`).
pub trait BlockOps {
    /// The block's index.
    fn index(&self) -> usize;
    /// The block's path prefix (`model.layers.3`).
    fn path(&self) -> &str;
    /// The exact scale folds this block allows.
    fn mappings(&self) -> &[SmoothMapping];
    /// Every Linear of the block that is compressed, in order (relative paths).
    fn linears(&self) -> Vec<String>;
    /// The statistics of a Linear's input.
    ///
    /// # Errors
    /// An unknown Linear (named).
    fn stats(&self, linear: &str) -> Result<&InputStats>;
    /// A Linear's current weight, `[out, in]`.
    ///
    /// # Errors
    /// An unknown Linear (named).
    fn weight(&self, linear: &str) -> Result<Dense<f32>>;
    /// Replace a Linear's weight (`[out, in]`, same shape).
    ///
    /// # Errors
    /// An unknown Linear or a shape change (named).
    fn set_weight(&mut self, linear: &str, weight: Dense<f32>) -> Result<()>;
    /// Fold `scales` (`[d]`, positive) into `mapping`: `smooth`'s output divided by them, the
    /// balance Linears' input columns multiplied by them. The float function of the block is
    /// unchanged; the cached statistics of the balance Linears are rescaled to match.
    ///
    /// # Errors
    /// A scale count that does not fit, a non-finite or non-positive scale.
    fn fold_scales(&mut self, mapping: &SmoothMapping, scales: &[f32]) -> Result<()>;
    /// Mean squared error between the full-precision output of the sub-module `scope` (as
    /// captured before this block was changed) and its output with the Linears in `overrides`
    /// set to the given `[out, in]` weights, over the calibration inputs of the scope (needs
    /// [`StatNeeds::inputs`]).
    ///
    /// # Errors
    /// An unknown scope or Linear (named), missing inputs.
    fn inspect_error(&mut self, scope: &str, overrides: &[(String, Dense<f32>)]) -> Result<f64>;
    /// Up to `max_tokens` calibration input rows of a Linear, `[tokens, d_in]`, evenly strided
    /// over all cached tokens (needs [`StatNeeds::inputs`]).
    ///
    /// # Errors
    /// An unknown Linear (named), missing inputs.
    fn input_tokens(&self, linear: &str, max_tokens: usize) -> Result<Dense<f32>>;
}

/// What a scale-folding method reads of one [`SmoothMapping`]: the input statistics of its
/// balance Linears (they share one input) and their weights `[out, in]`, each checked to read
/// `stat` input columns.
#[derive(Debug, Clone)]
pub struct MappingInputs<'a> {
    /// `"<block>: <smooth> -> <balance, ...>"`, for messages.
    pub name: String,
    /// The balance Linears' input statistics.
    pub stats: &'a InputStats,
    /// The balance Linears' weights, in the mapping's order.
    pub weights: Vec<Dense<f32>>,
}

impl<'a> MappingInputs<'a> {
    /// Read `mapping` from `block`; `width` gives the statistic's length from the stats (the
    /// width every balance weight must read), `None` when the statistic is missing, which is
    /// then an error naming `what`.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] for `algorithm` naming the mapping: no balance Linear, the
    /// missing statistic, a balance weight of another width; the block's own errors.
    pub fn read(
        algorithm: &str,
        block: &'a dyn BlockOps,
        mapping: &SmoothMapping,
        what: &str,
        width: impl Fn(&InputStats) -> Option<usize>,
    ) -> Result<Self> {
        let name = format!(
            "{}: {} -> {}",
            block.path(),
            mapping.smooth,
            mapping.balance.join(", ")
        );
        let fail = |message: String| crate::CompressError::Algorithm {
            algorithm: algorithm.into(),
            message,
        };
        let first = mapping
            .balance
            .first()
            .ok_or_else(|| fail(format!("{name}: no balance Linear")))?;
        let stats = block.stats(first)?;
        let d = width(stats)
            .ok_or_else(|| fail(format!("{name}: no {what} statistic for '{first}'")))?;
        let weights = mapping
            .balance
            .iter()
            .map(|l| block.weight(l))
            .collect::<Result<Vec<_>>>()?;
        for (l, w) in mapping.balance.iter().zip(&weights) {
            if w.shape().len() != 2 || w.shape()[1] != d {
                return Err(fail(format!(
                    "{name}: '{l}' has shape {:?}, expected [_, {d}]",
                    w.shape()
                )));
            }
        }
        Ok(Self {
            name,
            stats,
            weights,
        })
    }
}

/// A model the calibration engine can walk block by block: an embedding stage producing block
/// 0's input `[batch, seq, hidden]`, then blocks mapping that shape to itself. Paths are the
/// model's dotted parameter paths.
pub trait BlockModel: Module {
    /// Number of blocks.
    fn num_blocks(&self) -> usize;
    /// Block `i`'s path prefix (`model.layers.3`).
    fn block_path(&self, i: usize) -> String;
    /// Block 0's input for token ids `[batch, seq]`.
    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3>;
    /// Block `i` on `x` `[batch, seq, hidden]` (full-length, unpadded sequences).
    fn block_forward(&self, i: usize, x: Tensor<3>) -> Tensor<3>;
    /// The stage after the last block on its output (a decoder's final norm and LM head: the
    /// logits; an encoder: the hidden states unchanged).
    fn head(&self, x: Tensor<3>) -> Tensor<3>;
    /// The Linears of block `i` (relative paths) in "true sequential" groups: a group's inputs
    /// depend only on earlier groups (`[q, k, v], [o], [gate, up], [down]`).
    fn linear_groups(&self, i: usize) -> Vec<Vec<String>>;
    /// The exact scale folds of block `i` ([`SmoothMapping`]).
    fn smooth_mappings(&self, i: usize) -> Vec<SmoothMapping>;
    /// Run the sub-module `scope` of block `i` (a mapping's `inspect`) on its input; `None` for
    /// a scope the model does not know.
    fn scope_forward(&self, i: usize, scope: &str, x: Tensor<3>) -> Option<Tensor<3>>;
}

/// OWL's block densities: `d'_l = (D_l - min) / (max - min) * 2 lambda`, then
/// `density_l = d'_l - mean(d') + (1 - sparsity)` (`lib/prune.py` of the OWL repository), where
/// `D_l` is block `l`'s outlier fraction ([`outlier_fraction`]). With all `D_l` equal every
/// block gets `1 - sparsity`.
pub fn owl_densities(outliers: &[f64], lambda: f64, sparsity: f64) -> Vec<f64> {
    let min = outliers.iter().copied().fold(f64::INFINITY, f64::min);
    let max = outliers.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if outliers.is_empty() || max - min <= 0.0 {
        return vec![1.0 - sparsity; outliers.len()];
    }
    let spread: Vec<f64> = outliers
        .iter()
        .map(|d| (d - min) / (max - min) * 2.0 * lambda)
        .collect();
    let mean = spread.iter().sum::<f64>() / spread.len() as f64;
    spread.iter().map(|d| d - mean + (1.0 - sparsity)).collect()
}

/// OWL's outlier fraction of one block: the share of its Wanda scores (all its Linears' scores
/// pooled) above `m` times their mean.
pub fn outlier_fraction(scores: &[f32], m: f64) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    let mean = scores.iter().map(|&s| f64::from(s)).sum::<f64>() / scores.len() as f64;
    let above = scores.iter().filter(|&&s| f64::from(s) > m * mean).count();
    above as f64 / scores.len() as f64
}

/// Wanda's score `|W_ij| * sqrt(sq_norm_j)` of a `[out, in]` weight.
pub fn wanda_scores(weight: &Dense<f32>, sq_norm: &[f64]) -> Dense<f32> {
    let d_in = sq_norm.len();
    let norms: Vec<f32> = sq_norm.iter().map(|v| v.sqrt() as f32).collect();
    let data = weight
        .data()
        .iter()
        .enumerate()
        .map(|(i, w)| w.abs() * norms[i % d_in])
        .collect();
    Dense::new(weight.shape().to_vec(), data)
}

/// One `ignore` entry, llm-compressor's convention: a layer's path (full, or in a transformer
/// relative to its block: `mlp.down_proj`), or `re:PATTERN`, a regular expression matched from
/// the start of the full path (Python's `re.match`; `re:.*_depthwise_conv` matches every
/// EfficientNet depthwise convolution).
#[derive(Debug, Clone)]
pub enum IgnoreRule {
    /// A path.
    Path(String),
    /// `re:PATTERN` as written, and the pattern anchored at the start.
    Pattern(String, regex::Regex),
}

impl IgnoreRule {
    /// Read one entry.
    ///
    /// # Errors
    /// [`CompressError::InvalidValue`] for an empty entry or a pattern that is not a regular
    /// expression (naming the key `ignore` and the entry).
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: String| crate::CompressError::InvalidValue {
            key: "ignore".into(),
            context: "[algorithm]".into(),
            value: text.into(),
            reason,
        };
        match text.strip_prefix("re:") {
            Some(pattern) => regex::Regex::new(&format!("^(?:{pattern})"))
                .map(|re| Self::Pattern(text.to_string(), re))
                .map_err(|e| invalid(format!("not a regular expression: {e}"))),
            None if text.is_empty() => Err(invalid("an empty layer path".into())),
            None => Ok(Self::Path(text.to_string())),
        }
    }

    /// Every entry of a list ([`IgnoreRule::parse`]).
    ///
    /// # Errors
    /// The first entry that does not parse.
    pub fn parse_all(list: &[String]) -> Result<Vec<Self>> {
        list.iter().map(|t| Self::parse(t)).collect()
    }

    /// Whether the layer at `full` (`relative` to its block, in a transformer) is ignored.
    pub fn matches(&self, full: &str, relative: Option<&str>) -> bool {
        match self {
            Self::Path(p) => p == full || relative == Some(p.as_str()),
            Self::Pattern(_, re) => re.is_match(full),
        }
    }

    /// The entry as written.
    pub fn text(&self) -> &str {
        match self {
            Self::Path(p) | Self::Pattern(p, _) => p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By hand: min 0.01, max 0.05, spread (d - 0.01) / 0.04 * 0.16 = [0, 0.08, 0.04, 0.16], mean
    /// 0.07, density = spread - 0.07 + 0.5.
    #[test]
    fn ignore_rules_match_paths_and_anchored_patterns() {
        let rules = IgnoreRule::parse_all(&["mlp.down_proj".into(), "re:.*_depthwise_conv".into()])
            .unwrap();
        assert!(rules[0].matches("model.layers.3.mlp.down_proj", Some("mlp.down_proj")));
        assert!(!rules[0].matches("model.layers.3.mlp.up_proj", Some("mlp.up_proj")));
        assert!(rules[1].matches("_blocks.3._depthwise_conv", None));
        assert!(
            rules[1].matches("_blocks.3._depthwise_conv_x", None),
            "re.match: a prefix"
        );
        assert!(
            !IgnoreRule::parse("re:_depthwise")
                .unwrap()
                .matches("_blocks.3._depthwise_conv", None)
        );
        let err = IgnoreRule::parse("re:conv(").unwrap_err().to_string();
        assert!(err.contains("ignore") && err.contains("re:conv("), "{err}");
        assert!(IgnoreRule::parse("").is_err());
    }

    #[test]
    fn owl_densities_follow_the_reference_formula() {
        let d = owl_densities(&[0.01, 0.03, 0.02, 0.05], 0.08, 0.5);
        let expected = [0.43, 0.51, 0.47, 0.59];
        for (got, want) in d.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{d:?}");
        }
        assert!((d.iter().sum::<f64>() / 4.0 - 0.5).abs() < 1e-12);
        assert_eq!(owl_densities(&[0.2, 0.2], 0.08, 0.3), [0.7, 0.7]);
    }

    #[test]
    fn outlier_fraction_counts_scores_above_m_times_the_mean() {
        // mean 1.0: only 9.0 exceeds 5 * mean.
        let s = [0.0, 0.0, 0.5, 0.5, 9.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert!((outlier_fraction(&s, 5.0) - 0.1).abs() < 1e-12);
        assert_eq!(outlier_fraction(&[], 5.0), 0.0);
    }

    #[test]
    fn wanda_scores_weight_columns_by_input_norms() {
        let w = Dense::new(vec![2, 2], vec![1.0, -2.0, -3.0, 4.0]);
        let s = wanda_scores(&w, &[4.0, 0.25]);
        assert_eq!(s.data(), &[2.0, 1.0, 6.0, 2.0]);
    }
}
