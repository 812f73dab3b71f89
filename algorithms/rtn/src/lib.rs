//! # quant-rtn: round-to-nearest one-shot weight quantization
//!
//! The baseline of the one-shot quantizers: every Linear's weight rounded to the nearest point
//! of its grid, parameters from each tensor / row / row group's own min and max
//! ([`compress_quant::rtn::rtn_quantize`]), no calibration statistics. `scheme = "W4A16"` is
//! "int4 group-128 round-to-nearest"; `scheme = "W8A8"` is W8A8 without SmoothQuant (the
//! engine quantizes every Linear input per token at run time). Registry name `rtn`, kind
//! [`OneShotQuantizer`](compress_core::AlgorithmKind::OneShotQuantizer).
//!
//! | key | meaning |
//! | --- | --- |
//! | `scheme` | `"W4A16"` (default: int4 symmetric, groups of 128), `"W4A16_ASYM"`, `"W8A16"`, `"W8A8"` |
//! | `weights` | overrides of the scheme's weights: `{ num_bits, type = "int", symmetric, strategy = "tensor" \| "channel" \| "group", group_size, observer = "minmax" \| "mse" }` |
#![warn(missing_docs)]

use compress_core::oneshot::{ActivationQuant, LinearReport, LinearSlot, OneShot, StatNeeds};
use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, Result, toml};
use compress_quant::rtn::{Scheme, rtn_quantize};

/// The registry name.
pub const NAME: &str = "rtn";

/// Round-to-nearest under a [`Scheme`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rtn {
    /// The weight grid and the activation quantization.
    pub scheme: Scheme,
}

impl Rtn {
    /// Read the `[algorithm]` table ([`Scheme::from_table`]).
    ///
    /// # Errors
    /// The scheme's typed errors, naming the key.
    pub fn from_table(table: &toml::Table) -> Result<Self> {
        Ok(Self {
            scheme: Scheme::from_table(NAME, table)?,
        })
    }
}

impl OneShot for Rtn {
    fn name(&self) -> &str {
        NAME
    }

    /// No statistics.
    fn needs(&self) -> StatNeeds {
        StatNeeds::default()
    }

    fn activation_quant(&self) -> Option<ActivationQuant> {
        self.scheme.activations
    }

    fn compress_linear(&self, linear: &mut LinearSlot<'_>) -> Result<LinearReport> {
        rtn_quantize(linear.weight, &self.scheme.weights, linear.path)?;
        Ok(LinearReport::default())
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "rtn",
        kind: AlgorithmKind::OneShotQuantizer,
        summary: "round-to-nearest weight quantization under a scheme (W4A16, W8A8, ...): the one-shot baseline",
        config_keys: Scheme::KEYS,
        build: |table| Ok(Algorithm::OneShot(Box::new(Rtn::from_table(table)?))),
    }
}

#[cfg(test)]
mod tests {
    use compress_core::oneshot::InputStats;
    use compress_core::{CompressError, Dense};

    use super::*;

    fn slot_run(algo: &dyn OneShot, path: &str, w: &mut Dense<f32>) -> Result<LinearReport> {
        let stats = InputStats::default();
        let mut slot = LinearSlot {
            path,
            weight: w,
            bias: None,
            stats: &stats,
            sparsity: 0.0,
        };
        algo.compress_linear(&mut slot)
    }

    /// By hand, W8A8's weights (int8 symmetric per channel): row [1.275, -0.5, 0.01] has scale
    /// 2 * 1.275 / 255 = 0.01, so -0.5 -> -50 steps and 0.01 -> 1 step are exact; 1.275 ->
    /// 127.5 -> round half to even 128 + 128 = 256 -> clamped to 255 -> 127 steps = 1.27.
    #[test]
    fn w8a8_rounds_each_row_on_its_own_int8_grid_and_quantizes_activations_per_token() {
        let entry = AlgorithmEntry::find("rtn").unwrap();
        assert_eq!(entry.kind, AlgorithmKind::OneShotQuantizer);
        let algo = entry
            .build_oneshot(&"scheme = \"W8A8\"".parse().unwrap())
            .unwrap();
        assert_eq!(algo.needs(), StatNeeds::default());
        assert_eq!(
            algo.activation_quant(),
            Some(ActivationQuant::PerTokenDynamic { bits: 8 })
        );
        let mut w = Dense::new(vec![2, 3], vec![1.275, -0.5, 0.01, 0.0, 0.0, 0.0]);
        let report = slot_run(algo.as_ref(), "fc", &mut w).unwrap();
        assert_eq!(report, LinearReport::default());
        let want = [1.27, -0.5, 0.01, 0.0, 0.0, 0.0];
        for (g, e) in w.data().iter().zip(want) {
            assert!((g - e).abs() < 1e-6, "{:?}", w.data());
        }
    }

    #[test]
    fn w4a16_needs_the_group_to_divide_the_input_width_of_the_named_layer() {
        let algo = Rtn::from_table(&toml::Table::new()).unwrap();
        assert_eq!(algo.activation_quant(), None);
        let mut w = Dense::new(vec![2, 192], vec![0.1; 384]);
        let err = slot_run(&algo, "model.layers.4.self_attn.k_proj", &mut w).unwrap_err();
        assert!(matches!(err, CompressError::KernelMismatch { .. }));
        assert_eq!(
            err.to_string(),
            "granularity kernel [1, 128] does not fit 'model.layers.4.self_attn.k_proj' of \
             shape [2, 192]: group_size 128 does not divide the input width 192 (64 does)"
        );
        let data: Vec<f32> = (0..512).map(|k| [7.5, 2.5, -1.0, -1.0][k % 4]).collect();
        let mut ok = Dense::new(vec![2, 256], data);
        slot_run(&algo, "fc", &mut ok).unwrap();
        // Two groups per row, max |w| 7.5: range [-7.5, 7.5], scale 15 / 15 = 1, zero 8; 7.5 ->
        // 8 (half to even) + 8 = 16 -> clamped to 15 -> 7; 2.5 -> 2 (half to even, not 3).
        assert_eq!(&ok.data()[..4], &[7.0, 2.0, -1.0, -1.0]);
        // The reference's symmetric grid for a group with no negative value: min stays 0, so
        // the range is [0, 7.5], scale 7.5 / 15 = 0.5, and 7.5 clips to 7 steps = 3.5.
        let data: Vec<f32> = (0..256).map(|k| [7.5, 2.5][k % 2]).collect();
        let mut pos = Dense::new(vec![1, 256], data);
        slot_run(&algo, "fc", &mut pos).unwrap();
        assert_eq!(&pos.data()[..2], &[3.5, 2.5]);
    }

    #[test]
    fn an_unknown_preset_is_refused_naming_the_key() {
        let err = Rtn::from_table(&"scheme = \"W3A16\"".parse().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key 'scheme' in [algorithm] of 'rtn': invalid value 'W3A16' (expected one of \
             W4A16, W4A16_ASYM, W8A16, W8A8)"
        );
    }
}
