//! # quant-smoothquant: SmoothQuant, then W8A8
//!
//! SmoothQuant ([Xiao et al., 2023](https://arxiv.org/abs/2211.10438)), as
//! mit-han-lab/smoothquant implements it (`smoothquant/smooth.py`): activation outliers are
//! migrated into the weights by a per-channel scale folded into the norm before them, so that
//! per-token int8 activations lose less. Registry name: `smoothquant`
//! ([`AlgorithmKind::OneShotQuantizer`]).
//!
//! Per block, for every [`SmoothMapping`] of kind [`SmoothKind::Norm`] (the reference smooths
//! norm -> Linear pairs only: `input_layernorm -> q, k, v`, `post_attention_layernorm -> gate,
//! up`): [`smooth_scales`] `s_j = max|X_j|^alpha / max_i |W_ij|^(1 - alpha)` (the weight maximum
//! over all balance Linears, clamped to 1e-5; the scale clamped to 1e-5), folded with
//! [`BlockOps::fold_scales`] (`gamma / s`, `W[:, j] * s_j`: the float output is unchanged).
//! Then every Linear is quantized round-to-nearest under the scheme (W8A8: int8 symmetric per
//! output channel, [`compress_quant::rtn::rtn_quantize`]) and runs with dynamic per-token int8
//! activations ([`OneShot::activation_quant`]).
//!
//! | key | meaning |
//! | --- | --- |
//! | `smoothing_strength` | `alpha`, the share of the outliers moved into the weights, in `[0, 1]` (default 0.5) |
//! | `scheme`, `weights` | the grid ([`compress_quant::rtn::Scheme::from_table`]); default `"W8A8"` |
//!
//! ```
//! use compress_core::AlgorithmEntry;
//! use compress_core::oneshot::ActivationQuant;
//! # use quant_smoothquant as _;
//!
//! let options: compress_core::toml::Table = "smoothing_strength = 0.8".parse().unwrap();
//! let sq = AlgorithmEntry::find("smoothquant").unwrap().build_oneshot(&options).unwrap();
//! assert_eq!(sq.activation_quant(), Some(ActivationQuant::PerTokenDynamic { bits: 8 }));
//! assert!(sq.needs().abs_max);
//! ```
#![warn(missing_docs)]

use compress_core::oneshot::{
    ActivationQuant, BlockOps, BlockReport, LinearReport, LinearSlot, MappingInputs, OneShot,
    SmoothKind, SmoothMapping, StatNeeds,
};
use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Dense, Result, toml};
use compress_quant::rtn::{Scheme, rtn_quantize};

/// Registry name.
pub const NAME: &str = "smoothquant";

/// The reference's floor for the weight maxima and the scales (`clamp(min=1e-5)`).
const FLOOR: f64 = 1e-5;

/// The options of the `[algorithm]` table, checked in [`SmoothQuantConfig::from_table`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothQuantConfig {
    /// `alpha` (`smoothing_strength`, default 0.5, in `[0, 1]`).
    pub smoothing_strength: f64,
    /// The grid (default `W8A8`).
    pub scheme: Scheme,
}

impl Default for SmoothQuantConfig {
    fn default() -> Self {
        Self {
            smoothing_strength: 0.5,
            scheme: Scheme::preset("W8A8").expect("a known preset"),
        }
    }
}

/// The `[algorithm]` keys [`SmoothQuantConfig::from_table`] reads.
pub const CONFIG_KEYS: &[&str] = &["smoothing_strength", "scheme", "weights"];

impl SmoothQuantConfig {
    /// Read and check the options (unknown keys were already refused by the registry).
    ///
    /// # Errors
    /// [`CompressError::WrongType`] for a `smoothing_strength` that is not a number,
    /// [`CompressError::OutOfRange`] for one outside `[0, 1]`; the scheme's typed errors
    /// ([`Scheme::from_table`]).
    pub fn from_table(table: &toml::Table) -> Result<Self> {
        let context = format!("[algorithm] of '{NAME}'");
        let smoothing_strength = match table.get("smoothing_strength") {
            None => 0.5,
            Some(v) => {
                let alpha = v
                    .as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .ok_or_else(|| CompressError::WrongType {
                        key: "smoothing_strength".into(),
                        context: context.clone(),
                        expected: "a number".into(),
                        found: format!("{} {v}", v.type_str()),
                    })?;
                if !(0.0..=1.0).contains(&alpha) {
                    return Err(CompressError::OutOfRange {
                        key: "smoothing_strength".into(),
                        context,
                        value: alpha,
                        range: "[0, 1]".into(),
                    });
                }
                alpha
            }
        };
        let scheme = if table.contains_key("scheme") {
            Scheme::from_table(NAME, table)?
        } else {
            let mut with_default = table.clone();
            with_default.insert("scheme".into(), "W8A8".into());
            Scheme::from_table(NAME, &with_default)?
        };
        Ok(Self {
            smoothing_strength,
            scheme,
        })
    }
}

/// SmoothQuant's scales (`smooth_ln_fcs`): `clamp(act_max_j^alpha / w_max_j^(1 - alpha), 1e-5)`
/// with `w_max_j = clamp(max over weights and rows |W_ij|, 1e-5)`, in f64 and rounded to f32.
///
/// # Shapes
/// `act_max` `[d_in]`, each weight `[out, d_in]`; the result `[d_in]`.
///
/// # Panics
/// When a weight's width differs from `act_max`'s length (the caller checks it).
pub fn smooth_scales(act_max: &[f32], weights: &[Dense<f32>], alpha: f64) -> Vec<f32> {
    let d_in = act_max.len();
    let mut w_max = vec![0.0f32; d_in];
    for w in weights {
        assert_eq!(w.shape()[1], d_in, "weight width differs from act_max");
        for row in w.data().chunks(d_in) {
            for (m, v) in w_max.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
    }
    act_max
        .iter()
        .zip(&w_max)
        .map(|(&a, &w)| {
            let w = f64::from(w).max(FLOOR);
            let s = f64::from(a).powf(alpha) / w.powf(1.0 - alpha);
            s.max(FLOOR) as f32
        })
        .collect()
}

/// The SmoothQuant one-shot quantizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmoothQuantQuantizer {
    /// Its options.
    pub config: SmoothQuantConfig,
}

impl SmoothQuantQuantizer {
    /// Smooth one norm -> Linears mapping; returns the scales folded.
    fn smooth(&self, block: &mut dyn BlockOps, mapping: &SmoothMapping) -> Result<Vec<f32>> {
        let inputs = MappingInputs::read(NAME, block, mapping, "abs_max", |s| {
            s.abs_max.as_ref().map(Vec::len)
        })?;
        let act_max = inputs.stats.abs_max.clone().unwrap_or_default();
        let weights = inputs.weights;
        let scales = smooth_scales(&act_max, &weights, self.config.smoothing_strength);
        block.fold_scales(mapping, &scales)?;
        Ok(scales)
    }
}

impl OneShot for SmoothQuantQuantizer {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> StatNeeds {
        StatNeeds {
            abs_max: true,
            ..StatNeeds::default()
        }
    }

    fn activation_quant(&self) -> Option<ActivationQuant> {
        self.config.scheme.activations
    }

    fn transform_block(&self, block: &mut dyn BlockOps) -> Result<BlockReport> {
        let mappings = block.mappings().to_vec();
        let mut notes = Vec::new();
        for mapping in mappings.iter().filter(|m| m.kind == SmoothKind::Norm) {
            let scales = self.smooth(block, mapping)?;
            let (lo, hi) = scales.iter().fold((f32::INFINITY, 0.0f32), |(lo, hi), &s| {
                (lo.min(s), hi.max(s))
            });
            notes.push(format!(
                "{} -> {}: scales in [{lo:.3e}, {hi:.3e}]",
                mapping.smooth,
                mapping.balance.join(", ")
            ));
        }
        Ok(BlockReport { notes })
    }

    fn compress_linear(&self, linear: &mut LinearSlot<'_>) -> Result<LinearReport> {
        rtn_quantize(linear.weight, &self.config.scheme.weights, linear.path)?;
        Ok(LinearReport::default())
    }
}

fn build(options: &toml::Table) -> Result<Algorithm> {
    Ok(Algorithm::OneShot(Box::new(SmoothQuantQuantizer {
        config: SmoothQuantConfig::from_table(options)?,
    })))
}

inventory::submit! {
    AlgorithmEntry {
        name: "smoothquant",
        kind: AlgorithmKind::OneShotQuantizer,
        summary: "SmoothQuant: migrate activation outliers into the weights (norm folding), then W8A8",
        config_keys: CONFIG_KEYS,
        build,
    }
}

#[cfg(test)]
mod tests;
