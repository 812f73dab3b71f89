//! # quant-awq: activation-aware weight quantization
//!
//! AWQ ([Lin et al., 2024](https://arxiv.org/abs/2306.00978)), as llm-awq implements it
//! (`awq/quantize/auto_scale.py`, `auto_clip.py`): a one-shot, weight-only quantizer that
//! protects the input channels with large activations by scaling them up before quantization
//! and folding the inverse scale into the layer before. Registry name: `awq`
//! ([`AlgorithmKind::OneShotQuantizer`]).
//!
//! Per block (driven by the calibration engine, `compress_graph::sequential`):
//! 1. **Scale search** ([`search_scales`]), for each of the block's [`SmoothMapping`]s
//!    (`input_layernorm -> q, k, v`, `post_attention_layernorm -> gate, up`, `up -> down`, ...):
//!    with `s_X` the mean `|x|` of the balance Linears' input, for `alpha = k / n_grid`,
//!    `s = clamp(s_X^alpha, 1e-4)` normalised by `sqrt(max(s) min(s))` ([`grid_scales`]); the
//!    balance weights become `Q(W diag(s)) diag(s)^-1` ([`quantize_scaled`]) and the loss is the
//!    inspected module's output MSE against full precision ([`BlockOps::inspect_error`]). The
//!    best `alpha` (non-finite losses skipped; none finite is an error naming the mapping) is
//!    folded ([`BlockOps::fold_scales`]): the smooth layer's output divided by `s`, the balance
//!    columns multiplied by it, the float function unchanged.
//! 2. **Clip search** ([`clip_search`]), for every balance Linear but the query and key
//!    projections (the reference skips them: their error passes through `q k^T`): per row and
//!    group, the clamp `max|w| (1 - i / 20)`, `i = 0..10`, with the least output MSE on up to
//!    512 input tokens ([`BlockOps::input_tokens`], which after the fold are the scaled inputs
//!    `x / s`, as llm-awq divides its cached features before clipping), applied to the weight
//!    ([`apply_clip`]). Every Linear of the block is clipped but the query and key (`BlockOps::linears`).
//! 3. [`OneShot::compress_linear`]: round-to-nearest under the scheme
//!    ([`compress_quant::rtn::rtn_quantize`]).
//!
//! | key | meaning |
//! | --- | --- |
//! | `n_grid` | scale-search grid points, `alpha = k / n_grid`, `k = 0 .. n_grid - 1` (default 20, >= 1) |
//! | `duo_scaling` | llm-compressor's `s = s_X^alpha / (w_mean^(1 - alpha) + 1e-4)`, `w_mean` the group-normalised mean `|W|` (default false: llm-awq's activation-only scales) |
//! | `clip` | run the clip search (default true) |
//! | `scheme`, `weights` | the weight grid ([`compress_quant::rtn::Scheme::from_table`]); default `"W4A16_ASYM"`: int4, asymmetric, groups of 128, as llm-awq |
//!
//! The grid `Q` is GPTQ's quantizer ([`compress_quant::rtn`]): its asymmetric range is widened
//! to include 0, where llm-awq's `pseudo_quantize_tensor` fits `[min, max]` as is; for int4
//! groups of 128 the two differ only on groups of one sign.
//!
//! ```
//! use compress_core::{AlgorithmEntry, AlgorithmKind};
//! # use quant_awq as _;
//!
//! let options: compress_core::toml::Table = "n_grid = 10".parse().unwrap();
//! let awq = AlgorithmEntry::find("awq").unwrap().build_oneshot(&options).unwrap();
//! assert_eq!(awq.name(), "awq");
//! assert!(awq.needs().abs_mean && awq.needs().inputs);
//! ```
#![warn(missing_docs)]

mod clip;
mod scale;

pub use clip::{CLIP_GRID, CLIP_STEPS, CLIP_TOKENS, apply_clip, clip_search};
pub use scale::{ScaleChoice, grid_scales, quantize_scaled, search_scales, weight_means};

use compress_core::oneshot::{
    ActivationQuant, BlockOps, BlockReport, LinearReport, LinearSlot, OneShot, StatNeeds,
};
use compress_core::registry::AlgorithmOptions;
use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Result, toml};
use compress_quant::rtn::{Scheme, Strategy, rtn_quantize};

/// Registry name.
pub const NAME: &str = "awq";

/// The options of the `[algorithm]` table, checked in [`AwqConfig::from_table`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AwqConfig {
    /// Scale-search grid points (`n_grid`, default 20, >= 1).
    pub n_grid: usize,
    /// llm-compressor's duo scaling (`duo_scaling`, default false).
    pub duo_scaling: bool,
    /// Run the clip search (`clip`, default true).
    pub clip: bool,
    /// The weight grid and activation quantization (default `W4A16_ASYM`).
    pub scheme: Scheme,
}

impl Default for AwqConfig {
    fn default() -> Self {
        Self {
            n_grid: 20,
            duo_scaling: false,
            clip: true,
            scheme: Scheme::preset("W4A16_ASYM").expect("a known preset"),
        }
    }
}

/// The `[algorithm]` keys [`AwqConfig::from_table`] reads.
pub const CONFIG_KEYS: &[&str] = &["n_grid", "duo_scaling", "clip", "scheme", "weights"];

impl AwqConfig {
    /// Read and check the options (unknown keys were already refused by the registry).
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] naming the key for `n_grid` below 1, a `duo_scaling` or
    /// `clip` that is not a boolean, or `duo_scaling` with per-tensor weights (llm-compressor
    /// refuses it too); the scheme's typed errors ([`Scheme::from_table`]).
    pub fn from_table(table: &toml::Table) -> Result<Self> {
        let options = AlgorithmOptions::new(NAME, table);
        let n_grid = options.usize("n_grid", 20, 1)?;
        let duo_scaling = boolean(table, "duo_scaling", false)?;
        let clip = boolean(table, "clip", true)?;
        let scheme = if table.contains_key("scheme") {
            Scheme::from_table(NAME, table)?
        } else {
            let mut with_default = table.clone();
            with_default.insert("scheme".into(), "W4A16_ASYM".into());
            Scheme::from_table(NAME, &with_default)?
        };
        if duo_scaling && scheme.weights.strategy == Strategy::Tensor {
            return Err(CompressError::Algorithm {
                algorithm: NAME.into(),
                message: "'duo_scaling' needs per-channel or group weights, not strategy \
                          \"tensor\""
                    .into(),
            });
        }
        Ok(Self {
            n_grid,
            duo_scaling,
            clip,
            scheme,
        })
    }
}

fn boolean(table: &toml::Table, key: &str, default: bool) -> Result<bool> {
    match table.get(key) {
        None => Ok(default),
        Some(v) => v.as_bool().ok_or_else(|| CompressError::Algorithm {
            algorithm: NAME.into(),
            message: format!("'{key}' must be true or false, found {v}"),
        }),
    }
}

/// Whether the clip search skips a Linear: llm-awq's name test (`"q_"`, `"k_"`, `"query"`,
/// `"key"`, `"Wqkv"` in the name), applied to the last path segment.
pub fn skips_clip(linear: &str) -> bool {
    let last = linear.rsplit('.').next().unwrap_or(linear);
    ["q_", "k_", "query", "key", "Wqkv"]
        .iter()
        .any(|s| last.contains(s))
}

/// The AWQ one-shot quantizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwqQuantizer {
    /// Its options.
    pub config: AwqConfig,
}

impl AwqQuantizer {
    /// The clip search of every Linear of the block that [`skips_clip`] keeps (llm-awq's
    /// `auto_clip_block`: all but the query and key); returns one note per Linear.
    fn clip_block(&self, block: &mut dyn BlockOps) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        for linear in block.linears() {
            let linear = linear.as_str();
            if skips_clip(linear) {
                continue;
            }
            let path = format!("{}.{linear}", block.path());
            let x = block.input_tokens(linear, CLIP_TOKENS)?;
            let mut weight = block.weight(linear)?;
            let max_val = clip_search(&weight, &x, &self.config.scheme.weights, &path)?;
            let groups = max_val.numel();
            let before = weight.clone();
            apply_clip(&mut weight, &max_val);
            let clipped = before
                .data()
                .chunks(weight.numel() / groups.max(1))
                .zip(max_val.data())
                .filter(|(g, m)| g.iter().any(|v| v.abs() > **m))
                .count();
            block.set_weight(linear, weight)?;
            notes.push(format!("{linear}: clipped {clipped} of {groups} groups"));
        }
        Ok(notes)
    }
}

impl OneShot for AwqQuantizer {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> StatNeeds {
        StatNeeds {
            abs_mean: true,
            inputs: true,
            ..StatNeeds::default()
        }
    }

    fn activation_quant(&self) -> Option<ActivationQuant> {
        self.config.scheme.activations
    }

    fn transform_block(&self, block: &mut dyn BlockOps) -> Result<BlockReport> {
        let mappings = block.mappings().to_vec();
        let mut notes = Vec::new();
        let weights = &self.config.scheme.weights;
        for mapping in &mappings {
            let choice = search_scales(
                block,
                mapping,
                weights,
                self.config.n_grid,
                self.config.duo_scaling,
            )?;
            block.fold_scales(mapping, &choice.scales)?;
            notes.push(format!(
                "{} -> {}: alpha {:.2}, loss {:.3e}",
                mapping.smooth,
                mapping.balance.join(", "),
                choice.alpha,
                choice.loss
            ));
        }
        if self.config.clip && weights.strategy != Strategy::Tensor {
            notes.extend(self.clip_block(block)?);
        }
        Ok(BlockReport { notes })
    }

    fn compress_linear(&self, linear: &mut LinearSlot<'_>) -> Result<LinearReport> {
        rtn_quantize(linear.weight, &self.config.scheme.weights, linear.path)?;
        Ok(LinearReport::default())
    }
}

fn build(options: &toml::Table) -> Result<Algorithm> {
    Ok(Algorithm::OneShot(Box::new(AwqQuantizer {
        config: AwqConfig::from_table(options)?,
    })))
}

inventory::submit! {
    AlgorithmEntry {
        name: "awq",
        kind: AlgorithmKind::OneShotQuantizer,
        summary: "activation-aware weight quantization: scale and clip search, then round-to-nearest (llm-awq)",
        config_keys: CONFIG_KEYS,
        build,
    }
}

#[cfg(test)]
mod tests;
