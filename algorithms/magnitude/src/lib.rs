//! # prune-magnitude: one-shot magnitude pruning, unstructured or N:M
//!
//! The baseline of the Wanda and SparseGPT papers (`prune_magnitude` of locuslab/wanda's
//! `lib/prune.py`), as a one-shot method on the calibration engine: the score is `|W_ij|`;
//! unstructured pruning zeroes the `int(sparsity * numel)` lowest over the **whole layer** (one
//! threshold per Linear, not per row); N:M zeroes, in every row and every aligned group of m
//! inputs, the `m - n` lowest. No calibration statistics (except OWL's input norms) and no
//! weight update. Ties go to the lower index; the reference's threshold
//! `W_metric <= sort(W_metric)[int(numel * s)]` also zeroes the weight at the quantile index,
//! one more than `int(numel * s)`.
//!
//! NNI's `level` pruner is the training-pipeline counterpart (masks through `config_list`); this
//! one runs layer by layer on the one-shot engine beside `wanda` and `sparsegpt`, with the same
//! options.
//!
//! Registry name `magnitude`, kind [`AlgorithmKind::OneShotPruner`]; options (llm-compressor's
//! keys, [`compress_core::oneshot::sparsity`]):
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `sparsity` | 0.5 | in `[0, 1)` |
//! | `mask_structure` | `"0:0"` | `"n:m"`: n kept of every m |
//! | `sparsity_profile` | `"uniform"` | or `"owl"` (with `owl_m` 5, `owl_lmbda` 0.08) |
//!
//! ```
//! use compress_core::AlgorithmEntry;
//! use compress_core::oneshot::{InputStats, LinearSlot};
//! use compress_core::Dense;
//! use prune_magnitude as _; // link the crate so it registers
//!
//! let magnitude = AlgorithmEntry::find("magnitude")?.build_oneshot(&"mask_structure = \"2:4\"".parse()?)?;
//! let mut weight = Dense::new(vec![1, 8], vec![1.0, -4.0, 3.0, 2.0, 0.5, 0.1, -0.2, 0.3]);
//! let stats = InputStats::default();
//! let mut slot = LinearSlot { path: "fc", weight: &mut weight, bias: None, stats: &stats, sparsity: 0.5 };
//! magnitude.compress_linear(&mut slot)?;
//! assert_eq!(weight.data(), &[0.0, -4.0, 3.0, 0.0, 0.5, 0.0, 0.0, 0.3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

use compress_core::oneshot::sparsity::{PRUNER_KEYS, PruneOptions, prune_magnitude};
use compress_core::oneshot::{
    LinearReport, LinearSlot, OneShot, SparsityProfile, SparsitySpec, StatNeeds,
};
use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, Result};

/// The registry name.
pub const NAME: &str = "magnitude";

/// One-shot magnitude pruning, configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Magnitude {
    options: PruneOptions,
}

impl Magnitude {
    /// Magnitude pruning with parsed options.
    pub fn new(options: PruneOptions) -> Self {
        Self { options }
    }

    /// Its options.
    pub fn options(&self) -> &PruneOptions {
        &self.options
    }
}

impl OneShot for Magnitude {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> StatNeeds {
        StatNeeds {
            // OWL's outlier fractions are Wanda scores; magnitude itself needs nothing.
            sq_norm: matches!(self.options.profile, SparsityProfile::Owl { .. }),
            ..StatNeeds::default()
        }
    }

    fn sparsity(&self) -> Option<SparsitySpec> {
        Some(self.options.spec())
    }

    fn compress_linear(&self, slot: &mut LinearSlot<'_>) -> Result<LinearReport> {
        let (_, cols) = self.options.check_layer(NAME, slot)?;
        let zeros = prune_magnitude(
            slot.weight.data_mut(),
            cols,
            self.options.structure,
            slot.sparsity,
        );
        Ok(LinearReport {
            zeros,
            ..LinearReport::default()
        })
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "magnitude",
        kind: AlgorithmKind::OneShotPruner,
        summary: "one-shot |w| pruning, unstructured (one threshold per layer) or N:M within rows",
        config_keys: PRUNER_KEYS,
        build: |table| Ok(Algorithm::OneShot(Box::new(Magnitude::new(PruneOptions::parse(NAME, table)?)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compress_core::Dense;
    use compress_core::oneshot::InputStats;

    fn run(options: &str, weight: &mut Dense<f32>, sparsity: f64) -> Result<LinearReport> {
        let pruner = AlgorithmEntry::find(NAME)
            .unwrap()
            .build_oneshot(&options.parse().unwrap())?;
        pruner.compress_linear(&mut LinearSlot {
            path: "model.layers.5.mlp.gate_proj",
            weight,
            bias: None,
            stats: &InputStats::default(),
            sparsity,
        })
    }

    fn mask(w: &Dense<f32>) -> String {
        w.data()
            .chunks(w.shape()[1])
            .map(|r| {
                r.iter()
                    .map(|&v| if v == 0.0 { '1' } else { '0' })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `scripts/reference/wanda.py`, the 3 x 8 case.
    fn case() -> Dense<f32> {
        Dense::new(
            vec![3, 8],
            vec![
                0.35, 0.82, 0.33, -1.3, 0.91, 0.45, -0.54, 0.58, 0.36, 0.29, 0.03, 0.55, -0.74,
                -0.16, -0.48, 0.6, 0.04, -0.29, -0.78, -0.26, 0.01, -0.28, 1.29, 1.01,
            ],
        )
    }

    /// `scripts/reference/wanda.py`: one threshold over the whole layer, so row 0 keeps all its
    /// weights at 25 % and row 2 loses four.
    #[test]
    fn unstructured_pruning_thresholds_the_whole_layer() {
        let mut w = case();
        let report = run("sparsity = 0.25", &mut w, 0.25).unwrap();
        assert_eq!(mask(&w), "00000000 00100100 10011100");
        assert_eq!(
            report,
            LinearReport {
                zeros: 6,
                ..LinearReport::default()
            }
        );
        // The first case of the script: the small row goes entirely.
        let mut w = Dense::new(vec![2, 4], vec![4.0, 0.5, 3.0, 5.0, 0.2, 0.1, 0.4, 0.3]);
        run("", &mut w, 0.5).unwrap();
        assert_eq!(mask(&w), "0000 1111");
    }

    #[test]
    fn two_of_four_keeps_the_two_largest_of_every_aligned_four() {
        let mut w = case();
        let report = run("mask_structure = \"2:4\"", &mut w, 0.5).unwrap();
        assert_eq!(mask(&w), "10100110 01100110 10011100");
        assert_eq!(report.zeros, 12);
        for group in w.data().chunks(4) {
            assert_eq!(group.iter().filter(|&&v| v == 0.0).count(), 2);
        }
        // The kept weights are untouched.
        let original = case();
        for (k, o) in w.data().iter().zip(original.data()) {
            assert!(*k == 0.0 || k == o);
        }
    }

    #[test]
    fn bad_layers_and_options_are_named() {
        let mut w = case();
        let err = run("mask_structure = \"2:3\"", &mut w, 0.5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "algorithm 'magnitude': layer 'model.layers.5.mlp.gate_proj': mask_structure \"2:3\" needs an input width divisible by 3, found 8"
        );
        let err = run("sparsity = -0.5", &mut w, 0.5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key 'sparsity' in [algorithm] of 'magnitude': -0.5 is outside [0, 1)"
        );
        let err = run("mask_structure = \"24\"", &mut w, 0.5).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "key 'mask_structure' in [algorithm] of 'magnitude': invalid value '24'"
            ),
            "{err}"
        );
        let err = run("", &mut w, 1.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "algorithm 'magnitude': layer 'model.layers.5.mlp.gate_proj': sparsity 1 is outside [0, 1)"
        );
    }

    #[test]
    fn it_needs_no_statistics_unless_owl_spreads_the_sparsity() {
        let entry = AlgorithmEntry::find(NAME).unwrap();
        assert_eq!(entry.kind, AlgorithmKind::OneShotPruner);
        let p = entry.build_oneshot(&Default::default()).unwrap();
        assert_eq!(p.needs(), StatNeeds::default());
        let p = entry
            .build_oneshot(&"sparsity_profile = \"owl\"".parse().unwrap())
            .unwrap();
        assert!(p.needs().sq_norm);
    }
}
