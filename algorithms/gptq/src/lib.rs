//! # quant-gptq: GPTQ one-shot weight quantization
//!
//! GPTQ (Frantar et al., 2023; `gptq.py` of IST-DASLab/gptq, llm-compressor's `GPTQModifier`):
//! each Linear's weight is quantized column by column, the rounding error of each column pushed
//! onto the columns not yet quantized through the inverse Hessian of the layer's calibration
//! inputs ([`fasterquant`]). Registry name `gptq`, kind
//! [`OneShotQuantizer`](compress_core::AlgorithmKind::OneShotQuantizer); the layer-sequential
//! calibration engine supplies each Linear's Hessian.
//!
//! | key | meaning |
//! | --- | --- |
//! | `scheme` | `"W4A16"` (default: int4 symmetric, groups of 128), `"W4A16_ASYM"`, `"W8A16"`, `"W8A8"` (int8 per-channel weights + dynamic per-token int8 activations) |
//! | `weights` | overrides of the scheme's weights: `{ num_bits, type = "int", symmetric, strategy = "tensor" \| "channel" \| "group", group_size, observer = "minmax" \| "mse" }` |
//! | `block_size` | columns per lazy-update block (128) |
//! | `dampening_frac` | damping as a fraction of `mean(diag H)` (0.01); retried x10 up to 3 times |
//! | `actorder` | `"static"` / `"weight"` (default): columns by `diag(H)` descending, static groups; `"group"` / `"dynamic"` / `true`: columns by `diag(H)` descending, groups of the permuted order fitted dynamically; `false` / `"none"`: natural order |
//! | `static_groups` | with natural order: fit group parameters on the original weight up front (false: when the loop reaches the group, on the error-updated weight, the reference's default) |
//!
//! A Hessian that stays indefinite after the damping retries falls back to round-to-nearest
//! for that layer and the report says so; dead input columns (`diag(H) = 0`) are zeroed and
//! counted.
#![warn(missing_docs)]

mod fasterquant;

pub use fasterquant::{ActOrder, GptqConfig, TILE_ROWS, fasterquant};

use compress_core::oneshot::{ActivationQuant, LinearReport, LinearSlot, OneShot, StatNeeds};
use compress_core::registry::AlgorithmOptions;
use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Result, toml};
use compress_quant::rtn::Scheme;

/// The registry name.
pub const NAME: &str = "gptq";

/// The `[algorithm]` keys.
pub const KEYS: &[&str] = &[
    "scheme",
    "weights",
    "block_size",
    "dampening_frac",
    "actorder",
    "static_groups",
];

/// The GPTQ one-shot quantizer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gptq {
    /// The column loop's options.
    pub config: GptqConfig,
    /// The activation quantization the scheme asks for (`W8A8`).
    pub activations: Option<ActivationQuant>,
}

impl Gptq {
    /// Read the `[algorithm]` table (unknown keys were refused by the registry).
    ///
    /// # Errors
    /// The scheme's typed errors ([`Scheme::from_table`]); [`CompressError::Algorithm`] naming
    /// `block_size`, `dampening_frac` or `actorder` for a bad value;
    /// [`CompressError::ConflictingKeys`] for `static_groups = true` with
    /// `actorder = "group"`.
    pub fn from_table(table: &toml::Table) -> Result<Self> {
        let scheme = Scheme::from_table(NAME, table)?;
        let opts = AlgorithmOptions::new(NAME, table);
        let block_size = opts.usize("block_size", 128, 1)?;
        let dampening_frac = opts.f64("dampening_frac", 0.01, |x| x >= 0.0, "a number >= 0")?;
        let bad_actorder = |v: &toml::Value| CompressError::Algorithm {
            algorithm: NAME.into(),
            message: format!(
                "'actorder' must be \"static\", \"weight\", \"group\", \"dynamic\", \"none\", \
                 true or false, found {v}"
            ),
        };
        let actorder = match table.get("actorder") {
            None => ActOrder::Weight,
            Some(toml::Value::Boolean(true)) => ActOrder::Group,
            Some(toml::Value::Boolean(false)) => ActOrder::Off,
            Some(v @ toml::Value::String(s)) => match s.as_str() {
                "static" | "weight" => ActOrder::Weight,
                "group" | "dynamic" => ActOrder::Group,
                "none" => ActOrder::Off,
                _ => return Err(bad_actorder(v)),
            },
            Some(v) => return Err(bad_actorder(v)),
        };
        let static_key = match table.get("static_groups") {
            None => None,
            Some(toml::Value::Boolean(b)) => Some(*b),
            Some(v) => {
                return Err(CompressError::Algorithm {
                    algorithm: NAME.into(),
                    message: format!("'static_groups' must be true or false, found {v}"),
                });
            }
        };
        let static_groups = match (actorder, static_key) {
            (ActOrder::Group, Some(true)) => {
                return Err(CompressError::ConflictingKeys {
                    first: "static_groups = true".into(),
                    second: "actorder = \"group\"".into(),
                    context: format!("[algorithm] of '{NAME}'"),
                });
            }
            (ActOrder::Weight, _) => true,
            (_, s) => s.unwrap_or(false),
        };
        Ok(Self {
            config: GptqConfig {
                weights: scheme.weights,
                block_size,
                dampening_frac,
                actorder,
                static_groups,
            },
            activations: scheme.activations,
        })
    }
}

impl OneShot for Gptq {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> StatNeeds {
        StatNeeds {
            hessian: true,
            ..StatNeeds::default()
        }
    }

    fn activation_quant(&self) -> Option<ActivationQuant> {
        self.activations
    }

    fn compress_linear(&self, linear: &mut LinearSlot<'_>) -> Result<LinearReport> {
        let h = linear
            .stats
            .hessian
            .as_ref()
            .ok_or_else(|| CompressError::Algorithm {
                algorithm: NAME.into(),
                message: format!("'{}': no Hessian was collected for this layer", linear.path),
            })?;
        fasterquant(linear.weight, h, &self.config, linear.path)
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "gptq",
        kind: AlgorithmKind::OneShotQuantizer,
        summary: "GPTQ: column-wise quantization with inverse-Hessian error feedback (act_order, static/dynamic groups)",
        config_keys: KEYS,
        build: |table| Ok(Algorithm::OneShot(Box::new(Gptq::from_table(table)?))),
    }
}

#[cfg(test)]
mod tests;
