//! # prune-wanda: Wanda
//!
//! Sun et al., "A Simple and Effective Pruning Approach for Large Language Models" (2023);
//! `prune_wanda` of locuslab/wanda's `lib/prune.py`. Each weight scores
//! `S_ij = |W_ij| * sqrt(sq_norm_j)`, where `sq_norm_j = sum_tokens x_j^2 / samples` is the
//! reference's `scaler_row` of the Linear's input ([`wanda_scores`]). **Each output row is its
//! own comparison group**: unstructured pruning zeroes the `int(sparsity * d_in)` lowest scores
//! of every row (ties to the lower column, as the reference's stable sort); N:M zeroes, in every
//! row and every aligned group of m inputs, the `m - n` lowest. No weight update.
//!
//! Registry name `wanda`, kind [`AlgorithmKind::OneShotPruner`]; options (llm-compressor's
//! keys, [`compress_core::oneshot::sparsity`]):
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `sparsity` | 0.5 | in `[0, 1)` |
//! | `mask_structure` | `"0:0"` | `"n:m"`: n kept of every m |
//! | `sparsity_profile` | `"uniform"` | or `"owl"` (with `owl_m` 5, `owl_lmbda` 0.08) |
//! | `prune_granularity` | `"row"` | `"layer"`: the whole layer is one comparison group (the reference's `image_classifiers` option; unstructured only) |
//!
//! ```
//! use compress_core::AlgorithmEntry;
//! use compress_core::oneshot::{InputStats, LinearSlot};
//! use compress_core::Dense;
//! use prune_wanda as _; // link the crate so it registers
//!
//! let wanda = AlgorithmEntry::find("wanda")?.build_oneshot(&"sparsity = 0.5".parse()?)?;
//! let mut weight = Dense::new(vec![1, 4], vec![4.0, 0.5, 3.0, 5.0]);
//! let stats = InputStats { sq_norm: Some(vec![2.0, 32.0, 2.0, 2.0]), ..InputStats::default() };
//! let mut slot = LinearSlot { path: "fc", weight: &mut weight, bias: None, stats: &stats, sparsity: 0.5 };
//! wanda.compress_linear(&mut slot)?;
//! // Scores 5.66, 2.83, 4.24, 7.07: the two lowest go.
//! assert_eq!(weight.data(), &[4.0, 0.0, 0.0, 5.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

use compress_core::oneshot::sparsity::{
    MaskStructure, PruneOptions, apply_mask, count_to_prune, prune_lowest, prune_lowest_per_row,
    prune_n_of_m,
};
use compress_core::oneshot::{
    LinearReport, LinearSlot, OneShot, SparsitySpec, StatNeeds, wanda_scores,
};
use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Result};

/// The registry name.
pub const NAME: &str = "wanda";

/// Wanda's keys: the pruners' ([`compress_core::oneshot::sparsity::PRUNER_KEYS`]) and
/// `prune_granularity`.
pub const KEYS: &[&str] = &[
    "sparsity",
    "mask_structure",
    "sparsity_profile",
    "owl_m",
    "owl_lmbda",
    "prune_granularity",
];

/// Which weights compete: each output row (the LLM default) or the whole layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Granularity {
    /// `"row"`: the `int(sparsity * d_in)` lowest scores of every row.
    #[default]
    Row,
    /// `"layer"`: the `int(sparsity * rows * d_in)` lowest scores of the layer.
    Layer,
}

/// Wanda, configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wanda {
    options: PruneOptions,
    granularity: Granularity,
}

impl Wanda {
    /// Wanda with parsed options, each output row its own comparison group.
    pub fn new(options: PruneOptions) -> Self {
        Self {
            options,
            granularity: Granularity::Row,
        }
    }

    /// Wanda from its `[algorithm]` table.
    ///
    /// # Errors
    /// The pruners' option errors; a `prune_granularity` other than `"row"` or `"layer"`, or
    /// `"layer"` with an N:M structure (naming the key).
    pub fn from_table(table: &compress_core::toml::Table) -> Result<Self> {
        let options = PruneOptions::parse(NAME, table)?;
        let context = format!("[algorithm] of '{NAME}'");
        let granularity = match table.get("prune_granularity") {
            None => Granularity::Row,
            Some(v) => match v.as_str() {
                Some("row") => Granularity::Row,
                Some("layer") => Granularity::Layer,
                Some(other) => {
                    return Err(CompressError::InvalidValue {
                        key: "prune_granularity".into(),
                        context,
                        value: other.into(),
                        reason: "expected \"row\" or \"layer\"".into(),
                    });
                }
                None => {
                    return Err(CompressError::WrongType {
                        key: "prune_granularity".into(),
                        context,
                        expected: "a string".into(),
                        found: v.type_str().into(),
                    });
                }
            },
        };
        if granularity == Granularity::Layer && options.structure != MaskStructure::Unstructured {
            return Err(CompressError::InvalidValue {
                key: "prune_granularity".into(),
                context,
                value: "layer".into(),
                reason: format!(
                    "an N:M structure ({}) compares within each row's groups of m",
                    options.structure
                ),
            });
        }
        Ok(Self {
            options,
            granularity,
        })
    }

    /// Its comparison group.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// Its options.
    pub fn options(&self) -> &PruneOptions {
        &self.options
    }
}

impl OneShot for Wanda {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> StatNeeds {
        StatNeeds {
            sq_norm: true,
            ..StatNeeds::default()
        }
    }

    fn sparsity(&self) -> Option<SparsitySpec> {
        Some(self.options.spec())
    }

    fn compress_linear(&self, slot: &mut LinearSlot<'_>) -> Result<LinearReport> {
        let (_, cols) = self.options.check_layer(NAME, slot)?;
        let fail = |message: String| CompressError::Algorithm {
            algorithm: NAME.into(),
            message: format!("layer '{}': {message}", slot.path),
        };
        let sq_norm = slot
            .stats
            .sq_norm
            .as_ref()
            .ok_or_else(|| fail("no input norms were collected (StatNeeds::sq_norm)".into()))?;
        if sq_norm.len() != cols {
            return Err(fail(format!(
                "{} input norms for {cols} inputs",
                sq_norm.len()
            )));
        }
        if let Some(bad) = sq_norm.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return Err(fail(format!("an input norm is {bad}")));
        }
        let scores = wanda_scores(slot.weight, sq_norm);
        let mut prune = vec![false; scores.numel()];
        match self.options.structure {
            MaskStructure::Unstructured if self.granularity == Granularity::Layer => prune_lowest(
                scores.data(),
                count_to_prune(scores.numel(), slot.sparsity),
                &mut prune,
            ),
            MaskStructure::Unstructured => prune_lowest_per_row(
                scores.data(),
                cols,
                count_to_prune(cols, slot.sparsity),
                &mut prune,
            ),
            MaskStructure::NofM { keep, m } => {
                prune_n_of_m(scores.data(), cols, keep, m, &mut prune)
            }
        }
        Ok(LinearReport {
            zeros: apply_mask(slot.weight.data_mut(), &prune),
            ..LinearReport::default()
        })
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "wanda",
        kind: AlgorithmKind::OneShotPruner,
        summary: "Wanda: one-shot unstructured or N:M pruning by |W| x input norm, each output row (or the layer) its own group",
        config_keys: KEYS,
        build: |table| Ok(Algorithm::OneShot(Box::new(Wanda::from_table(table)?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compress_core::Dense;
    use compress_core::oneshot::InputStats;

    fn run(
        options: &str,
        weight: &mut Dense<f32>,
        sq_norm: Option<Vec<f64>>,
        sparsity: f64,
    ) -> Result<LinearReport> {
        let pruner = AlgorithmEntry::find(NAME)
            .unwrap()
            .build_oneshot(&options.parse().unwrap())?;
        let stats = InputStats {
            samples: 1,
            sq_norm,
            ..InputStats::default()
        };
        pruner.compress_linear(&mut LinearSlot {
            path: "model.layers.2.self_attn.o_proj",
            weight,
            bias: None,
            stats: &stats,
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

    /// `scripts/reference/wanda.py`, first case: row 0 has large weights, row 1 small ones, and
    /// input 1 is loud (`sq_norm` 32). Wanda zeroes half of each row (`0110 1001`); a whole-layer
    /// threshold on the same scores would empty row 1 (`0000 1111`).
    #[test]
    fn each_output_row_is_its_own_comparison_group() {
        let original = vec![4.0, 0.5, 3.0, 5.0, 0.2, 0.1, 0.4, 0.3];
        let mut w = Dense::new(vec![2, 4], original.clone());
        let report = run("", &mut w, Some(vec![2.0, 32.0, 2.0, 2.0]), 0.5).unwrap();
        assert_eq!(mask(&w), "0110 1001");
        assert_eq!(w.data(), &[4.0, 0.0, 0.0, 5.0, 0.0, 0.1, 0.4, 0.0]);
        assert_eq!(
            report,
            LinearReport {
                zeros: 4,
                ..LinearReport::default()
            }
        );
        // The norms matter: with equal norms row 1 would lose columns 0 and 1 instead.
        let mut w = Dense::new(vec![2, 4], original);
        run("", &mut w, Some(vec![1.0; 4]), 0.5).unwrap();
        assert_eq!(mask(&w), "0110 1100");
    }

    /// `prune_granularity = "layer"` (the reference's image-classifier option): the threshold
    /// of the whole layer on the same scores empties row 1 (`0000 1111`, the comment above).
    #[test]
    fn layer_granularity_compares_the_whole_layer() {
        let mut w = Dense::new(vec![2, 4], vec![4.0, 0.5, 3.0, 5.0, 0.2, 0.1, 0.4, 0.3]);
        let report = run(
            "prune_granularity = \"layer\"",
            &mut w,
            Some(vec![2.0, 32.0, 2.0, 2.0]),
            0.5,
        )
        .unwrap();
        assert_eq!(mask(&w), "0000 1111");
        assert_eq!(report.zeros, 4);
        let err = run(
            "prune_granularity = \"column\"",
            &mut w,
            Some(vec![1.0; 4]),
            0.5,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("prune_granularity") && err.contains("column"),
            "{err}"
        );
        let err = run(
            "prune_granularity = \"layer\"\nmask_structure = \"2:4\"",
            &mut w,
            Some(vec![1.0; 4]),
            0.5,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("an N:M structure (2:4)"), "{err}");
    }

    /// `scripts/reference/wanda.py`, the 3 x 8 case.
    fn case() -> (Dense<f32>, Vec<f64>) {
        let w = vec![
            0.35, 0.82, 0.33, -1.3, 0.91, 0.45, -0.54, 0.58, 0.36, 0.29, 0.03, 0.55, -0.74, -0.16,
            -0.48, 0.6, 0.04, -0.29, -0.78, -0.26, 0.01, -0.28, 1.29, 1.01,
        ];
        let sq_norm = vec![
            10.177600000000002,
            8.9886,
            2.1212,
            2.2641,
            0.8495999999999999,
            3.1037999999999997,
            6.2597000000000005,
            3.8813000000000004,
        ];
        (Dense::new(vec![3, 8], w), sq_norm)
    }

    #[test]
    fn n_of_m_and_unstructured_masks_match_the_reference_port() {
        let (mut w, s) = case();
        let report = run("mask_structure = \"2:4\"", &mut w, Some(s.clone()), 0.5).unwrap();
        assert_eq!(mask(&w), "10101100 00111100 10011100");
        assert_eq!(report.zeros, 12);
        for group in w.data().chunks(4) {
            assert_eq!(group.iter().filter(|&&v| v == 0.0).count(), 2);
        }
        let (mut w, _) = case();
        run("mask_structure = \"1:4\"", &mut w, Some(s.clone()), 0.75).unwrap();
        assert_eq!(mask(&w), "10111101 01111101 11011101");
        let (mut w, _) = case();
        run("sparsity = 0.25", &mut w, Some(s), 0.25).unwrap();
        assert_eq!(mask(&w), "00100100 00100100 10001000");
    }

    #[test]
    fn the_layer_sparsity_comes_from_the_slot() {
        // Under OWL the engine hands each layer its own ratio: 0.75 of 8 inputs is 6 per row.
        let (mut w, s) = case();
        let report = run("sparsity_profile = \"owl\"", &mut w, Some(s), 0.75).unwrap();
        assert_eq!(report.zeros, 18);
    }

    #[test]
    fn bad_layers_and_options_are_named() {
        let (mut w, s) = case();
        let err = run("", &mut w, None, 0.5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "algorithm 'wanda': layer 'model.layers.2.self_attn.o_proj': no input norms were collected (StatNeeds::sq_norm)"
        );
        let err = run("", &mut w, Some(vec![1.0; 3]), 0.5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "algorithm 'wanda': layer 'model.layers.2.self_attn.o_proj': 3 input norms for 8 inputs"
        );
        let err = run("", &mut w, Some(vec![f64::NAN; 8]), 0.5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "algorithm 'wanda': layer 'model.layers.2.self_attn.o_proj': an input norm is NaN"
        );
        let err = run("mask_structure = \"2:16\"", &mut w, Some(s.clone()), 0.5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "algorithm 'wanda': layer 'model.layers.2.self_attn.o_proj': mask_structure \"2:16\" needs an input width divisible by 16, found 8"
        );
        let err = run("block_size = 64", &mut w, Some(s.clone()), 0.5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown key 'block_size' in [algorithm] of 'wanda'"
        );
        let err = run("mask_structure = \"5:4\"", &mut w, Some(s), 0.5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key 'mask_structure' in [algorithm] of 'wanda': invalid value '5:4' (it keeps 5 of every 4: n must not exceed m)"
        );
    }

    #[test]
    fn it_registers_as_a_one_shot_pruner_asking_for_input_norms() {
        let entry = AlgorithmEntry::find(NAME).unwrap();
        assert_eq!(entry.kind, AlgorithmKind::OneShotPruner);
        let p = entry.build_oneshot(&Default::default()).unwrap();
        assert_eq!(
            p.needs(),
            StatNeeds {
                sq_norm: true,
                ..StatNeeds::default()
            }
        );
        assert_eq!(p.sparsity().unwrap().sparsity, 0.5);
    }
}
