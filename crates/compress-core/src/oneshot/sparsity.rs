//! What the one-shot pruners (`sparsegpt`, `wanda`, `magnitude`) share: their options, with
//! llm-compressor's keys, and the selection rules that turn scores into a pruning mask.
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `sparsity` | 0.5 | fraction of weights zeroed, in `[0, 1)` (unstructured; implied by an N:M `mask_structure`) |
//! | `mask_structure` | `"0:0"` | `"0:0"` unstructured, `"n:m"` = **n kept** of every m consecutive inputs of a row (NVIDIA's meaning) |
//! | `sparsity_profile` | `"uniform"` | `"uniform"`, or `"owl"`: outlier-weighted layerwise ratios (unstructured only) |
//! | `owl_m` | 5 | OWL's outlier threshold multiple (only with `"owl"`) |
//! | `owl_lmbda` | 0.08 | OWL's ratio spread (only with `"owl"`) |
//! | `block_size` | 128 | SparseGPT's column block, a multiple of m under N:M (the default rounds down to one) |
//! | `dampening_frac` | 0.01 | SparseGPT's damping, a fraction of `mean(diag H)` |
//!
//! The selection rules break ties deterministically: among equal scores the lower index is
//! zeroed first (Wanda's `torch.sort(..., stable=True)`; the reference's `topk` leaves ties
//! unspecified). A rule that asks for `k` weights zeroes exactly `k`: the reference's
//! whole-layer threshold (`W_metric <= sort(W_metric)[int(numel * s)]`, SparseGPT's block
//! threshold and `prune_magnitude`) zeroes the weight at the quantile index too, one more than
//! `int(numel * s)` (so a sparsity of 0 still zeroes one weight per block).

use std::fmt;

use rayon::prelude::*;

use super::{LinearSlot, SparsityProfile, SparsitySpec};
use crate::{CompressError, Result};

/// The keys of Wanda and magnitude pruning.
pub const PRUNER_KEYS: &[&str] = &[
    "sparsity",
    "mask_structure",
    "sparsity_profile",
    "owl_m",
    "owl_lmbda",
];

/// The keys of SparseGPT: [`PRUNER_KEYS`] plus `block_size` and `dampening_frac`.
pub const SPARSEGPT_KEYS: &[&str] = &[
    "sparsity",
    "mask_structure",
    "sparsity_profile",
    "owl_m",
    "owl_lmbda",
    "block_size",
    "dampening_frac",
];

/// Which weights compete for pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskStructure {
    /// `"0:0"`: a fraction of the weights, by the method's own comparison group.
    Unstructured,
    /// `"n:m"`: in every row, `keep` of every `m` consecutive (aligned) inputs are kept.
    NofM {
        /// Weights kept per group (`n`).
        keep: usize,
        /// Group length (`m`).
        m: usize,
    },
}

impl MaskStructure {
    /// Parse `"0:0"` or `"n:m"` (`n` kept, `1 <= n <= m`).
    ///
    /// # Errors
    /// [`CompressError::InvalidValue`] naming `mask_structure` for anything else.
    pub fn parse(text: &str, context: &str) -> Result<Self> {
        let invalid = |reason: &str| CompressError::InvalidValue {
            key: "mask_structure".into(),
            context: context.into(),
            value: text.into(),
            reason: reason.into(),
        };
        let (n, m) = text
            .split_once(':')
            .and_then(|(n, m)| {
                Some((
                    n.trim().parse::<usize>().ok()?,
                    m.trim().parse::<usize>().ok()?,
                ))
            })
            .ok_or_else(|| {
                invalid("expected \"n:m\" (n kept of every m) or \"0:0\" (unstructured)")
            })?;
        match (n, m) {
            (0, 0) => Ok(Self::Unstructured),
            (n, m) if n > m => Err(invalid(&format!(
                "it keeps {n} of every {m}: n must not exceed m"
            ))),
            (0, _) => Err(invalid("it keeps 0 of every m: n must be at least 1")),
            (keep, m) => Ok(Self::NofM { keep, m }),
        }
    }

    /// The sparsity the structure implies (`(m - n) / m`), `None` when unstructured.
    pub fn implied_sparsity(&self) -> Option<f64> {
        match *self {
            Self::Unstructured => None,
            Self::NofM { keep, m } => Some((m - keep) as f64 / m as f64),
        }
    }
}

impl fmt::Display for MaskStructure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unstructured => write!(f, "0:0"),
            Self::NofM { keep, m } => write!(f, "{keep}:{m}"),
        }
    }
}

/// The parsed options of a one-shot pruner (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneOptions {
    /// Target sparsity in `[0, 1)` (the N:M structure's when one is given).
    pub sparsity: f64,
    /// Unstructured or N:M.
    pub structure: MaskStructure,
    /// Uniform or OWL.
    pub profile: SparsityProfile,
    /// SparseGPT's column block (128, or the multiple of m below it under N:M).
    pub block_size: usize,
    /// SparseGPT's relative damping (0.01).
    pub dampening_frac: f64,
}

impl PruneOptions {
    /// Read and check the options of `algorithm` (unknown keys were already refused by the
    /// registry against [`PRUNER_KEYS`] / [`SPARSEGPT_KEYS`]).
    ///
    /// # Errors
    /// [`CompressError::OutOfRange`] for a `sparsity` outside `[0, 1)`, an `owl_m` not above 0,
    /// an `owl_lmbda` below 0 or a `dampening_frac` below 0;
    /// [`CompressError::InvalidValue`] for a malformed `mask_structure` or `sparsity_profile`, a
    /// `sparsity` that contradicts an N:M structure, OWL with N:M, `owl_m` / `owl_lmbda` without
    /// OWL, or a `block_size` that is not a multiple of m; [`CompressError::WrongType`] for a
    /// value of the wrong type. Every error names the key.
    pub fn parse(algorithm: &str, table: &toml::Table) -> Result<Self> {
        let context = format!("[algorithm] of '{algorithm}'");
        let number = |key: &str| -> Result<Option<f64>> {
            match table.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .map(Some)
                    .ok_or_else(|| CompressError::WrongType {
                        key: key.into(),
                        context: context.clone(),
                        expected: "a number".into(),
                        found: v.type_str().into(),
                    }),
            }
        };
        let text = |key: &str| -> Result<Option<&str>> {
            match table.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_str()
                    .map(Some)
                    .ok_or_else(|| CompressError::WrongType {
                        key: key.into(),
                        context: context.clone(),
                        expected: "a string".into(),
                        found: v.type_str().into(),
                    }),
            }
        };
        let out_of_range = |key: &str, value: f64, range: &str| CompressError::OutOfRange {
            key: key.into(),
            context: context.clone(),
            value,
            range: range.into(),
        };
        let invalid = |key: &str, value: String, reason: String| CompressError::InvalidValue {
            key: key.into(),
            context: context.clone(),
            value,
            reason,
        };

        let structure = match text("mask_structure")? {
            None => MaskStructure::Unstructured,
            Some(s) => MaskStructure::parse(s, &context)?,
        };
        let given = number("sparsity")?;
        if let Some(s) = given
            && !(s.is_finite() && (0.0..1.0).contains(&s))
        {
            return Err(out_of_range("sparsity", s, "[0, 1)"));
        }
        let sparsity = match (structure.implied_sparsity(), given) {
            (None, s) => s.unwrap_or(0.5),
            (Some(implied), None) => implied,
            (Some(implied), Some(s)) if (s - implied).abs() < 1e-12 => implied,
            (Some(implied), Some(s)) => {
                return Err(invalid(
                    "sparsity",
                    s.to_string(),
                    format!("mask_structure \"{structure}\" zeroes {implied} of every layer"),
                ));
            }
        };

        let owl_m = number("owl_m")?;
        let owl_lmbda = number("owl_lmbda")?;
        let profile = match text("sparsity_profile")?.unwrap_or("uniform") {
            "uniform" => {
                for (key, v) in [("owl_m", owl_m), ("owl_lmbda", owl_lmbda)] {
                    if let Some(v) = v {
                        return Err(invalid(
                            key,
                            v.to_string(),
                            "it is read only with sparsity_profile = \"owl\"".into(),
                        ));
                    }
                }
                SparsityProfile::Uniform
            }
            "owl" => {
                if structure != MaskStructure::Unstructured {
                    return Err(invalid(
                        "sparsity_profile",
                        "owl".into(),
                        format!(
                            "OWL spreads an unstructured sparsity over layers; mask_structure \"{structure}\" fixes every layer's"
                        ),
                    ));
                }
                let m = owl_m.unwrap_or(5.0);
                if !(m.is_finite() && m > 0.0) {
                    return Err(out_of_range("owl_m", m, "(0, inf)"));
                }
                let lambda = owl_lmbda.unwrap_or(0.08);
                if !(lambda.is_finite() && lambda >= 0.0) {
                    return Err(out_of_range("owl_lmbda", lambda, "[0, inf)"));
                }
                SparsityProfile::Owl { m, lambda }
            }
            other => {
                return Err(invalid(
                    "sparsity_profile",
                    other.into(),
                    "expected \"uniform\" or \"owl\"".into(),
                ));
            }
        };

        let group = match structure {
            MaskStructure::NofM { m, .. } => m,
            MaskStructure::Unstructured => 1,
        };
        let block_size = match table.get("block_size") {
            // The default, 128, rounded down to a multiple of m (at least m).
            None => (128 / group).max(1) * group,
            Some(v) => v
                .as_integer()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n >= 1)
                .ok_or_else(|| {
                    invalid(
                        "block_size",
                        v.to_string(),
                        "expected an integer >= 1".into(),
                    )
                })?,
        };
        if let MaskStructure::NofM { m, .. } = structure
            && block_size % m != 0
        {
            return Err(invalid(
                "block_size",
                block_size.to_string(),
                format!("mask_structure \"{structure}\" needs a multiple of {m}"),
            ));
        }
        let dampening_frac = number("dampening_frac")?.unwrap_or(0.01);
        if !(dampening_frac.is_finite() && dampening_frac >= 0.0) {
            return Err(out_of_range("dampening_frac", dampening_frac, "[0, inf)"));
        }
        Ok(Self {
            sparsity,
            structure,
            profile,
            block_size,
            dampening_frac,
        })
    }

    /// What [`OneShot::sparsity`](super::OneShot::sparsity) returns.
    pub fn spec(&self) -> SparsitySpec {
        SparsitySpec {
            sparsity: self.sparsity,
            profile: self.profile,
        }
    }

    /// Check that `slot` can be pruned: a 2-D weight, an N:M `m` dividing its input width, a
    /// layer sparsity in `[0, 1)`. Returns the weight's `(rows, columns)` (`[out, in]`).
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] naming `algorithm` and the layer path.
    pub fn check_layer(&self, algorithm: &str, slot: &LinearSlot<'_>) -> Result<(usize, usize)> {
        let fail = |message: String| CompressError::Algorithm {
            algorithm: algorithm.into(),
            message: format!("layer '{}': {message}", slot.path),
        };
        let (rows, cols) = match *slot.weight.shape() {
            [rows, cols] => (rows, cols),
            ref other => {
                return Err(fail(format!(
                    "expected a 2-D [out, in] weight, found {other:?}"
                )));
            }
        };
        if let MaskStructure::NofM { m, .. } = self.structure
            && cols % m != 0
        {
            return Err(fail(format!(
                "mask_structure \"{}\" needs an input width divisible by {m}, found {cols}",
                self.structure
            )));
        }
        if !(slot.sparsity.is_finite() && (0.0..1.0).contains(&slot.sparsity)) {
            return Err(fail(format!(
                "sparsity {} is outside [0, 1)",
                slot.sparsity
            )));
        }
        Ok((rows, cols))
    }
}

/// Total order of `(score, index)`: lower scores first, ties to the lower index (`NaN` last).
fn lower(scores: &[f32], a: usize, b: usize) -> std::cmp::Ordering {
    scores[a].total_cmp(&scores[b]).then(a.cmp(&b))
}

/// Mark (`true` = zero) the `k` lowest of `scores`, ties to the lower index: the whole-layer
/// (or whole-block) threshold.
///
/// # Panics
/// If `prune` and `scores` differ in length or `k` exceeds it (programmer errors).
pub fn prune_lowest(scores: &[f32], k: usize, prune: &mut [bool]) {
    assert_eq!(scores.len(), prune.len(), "prune_lowest: lengths differ");
    assert!(k <= scores.len(), "prune_lowest: k {k} > {}", scores.len());
    prune.fill(false);
    if k == 0 {
        return;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, |&a, &b| lower(scores, a, b));
    }
    for &i in &order[..k] {
        prune[i] = true;
    }
}

/// Mark the `k` lowest of each row of `scores` (`[rows, cols]` row-major), ties to the lower
/// column: Wanda's per-output comparison group. Rows run in parallel.
///
/// # Panics
/// If the lengths differ, are not a multiple of `cols`, or `k > cols` (programmer errors).
pub fn prune_lowest_per_row(scores: &[f32], cols: usize, k: usize, prune: &mut [bool]) {
    assert_eq!(
        scores.len(),
        prune.len(),
        "prune_lowest_per_row: lengths differ"
    );
    assert!(
        cols > 0 && scores.len().is_multiple_of(cols),
        "prune_lowest_per_row: ragged rows"
    );
    prune
        .par_chunks_mut(cols)
        .zip(scores.par_chunks(cols))
        .for_each(|(p, s)| prune_lowest(s, k, p));
}

/// Zero all but `keep` of one group (`scores.len()` = m), ties to the lower index. No allocation:
/// `O(m * (m - keep))`, for the small m of N:M patterns.
///
/// # Panics
/// If the lengths differ or `keep > m` (programmer errors).
pub fn prune_group(scores: &[f32], keep: usize, prune: &mut [bool]) {
    assert_eq!(scores.len(), prune.len(), "prune_group: lengths differ");
    let m = scores.len();
    assert!(keep <= m, "prune_group: keep {keep} > {m}");
    prune.fill(false);
    for _ in keep..m {
        let best = (0..m)
            .filter(|&i| !prune[i])
            .min_by(|&a, &b| lower(scores, a, b));
        if let Some(b) = best {
            prune[b] = true;
        }
    }
}

/// N:M within rows: in each row of `scores` (`[rows, cols]`), every aligned group of `m`
/// columns keeps its `keep` highest and zeroes the rest, ties to the lower column. Rows run in
/// parallel.
///
/// # Panics
/// If the lengths differ or `cols` is not a multiple of `m` (the caller checks the layer
/// first: [`PruneOptions::check_layer`]).
pub fn prune_n_of_m(scores: &[f32], cols: usize, keep: usize, m: usize, prune: &mut [bool]) {
    assert_eq!(scores.len(), prune.len(), "prune_n_of_m: lengths differ");
    assert!(
        m > 0 && cols.is_multiple_of(m) && scores.len().is_multiple_of(cols),
        "prune_n_of_m: {cols} columns in groups of {m}"
    );
    prune
        .par_chunks_mut(cols)
        .zip(scores.par_chunks(cols))
        .for_each(|(p, s)| {
            for (pg, sg) in p.chunks_mut(m).zip(s.chunks(m)) {
                prune_group(sg, keep, pg);
            }
        });
}

/// Zero the weights `prune` marks; returns how many weights are zero afterwards.
///
/// # Panics
/// If the lengths differ (a programmer error).
pub fn apply_mask(weight: &mut [f32], prune: &[bool]) -> usize {
    assert_eq!(weight.len(), prune.len(), "apply_mask: lengths differ");
    for (w, &p) in weight.iter_mut().zip(prune) {
        if p {
            *w = 0.0;
        }
    }
    weight.iter().filter(|&&w| w == 0.0).count()
}

/// Magnitude pruning of a `[rows, cols]` weight in place (the Wanda repository's
/// `prune_magnitude`): unstructured, the `floor(sparsity * numel)` lowest `|w|` over the whole
/// layer; N:M, within rows. Also SparseGPT's fallback when its Hessian stays indefinite. Returns
/// the zero count afterwards.
///
/// # Panics
/// If `weight.len()` is not a multiple of `cols`, or `cols` of m under N:M (the caller checks
/// the layer first: [`PruneOptions::check_layer`]).
pub fn prune_magnitude(
    weight: &mut [f32],
    cols: usize,
    structure: MaskStructure,
    sparsity: f64,
) -> usize {
    let scores: Vec<f32> = weight.iter().map(|w| w.abs()).collect();
    let mut prune = vec![false; weight.len()];
    match structure {
        MaskStructure::Unstructured => {
            prune_lowest(&scores, count_to_prune(weight.len(), sparsity), &mut prune)
        }
        MaskStructure::NofM { keep, m } => prune_n_of_m(&scores, cols, keep, m, &mut prune),
    }
    apply_mask(weight, &prune)
}

/// How many of `n` weights a `sparsity` zeroes: `int(n * sparsity)`, as the reference computes
/// it (Python's `int` truncates).
pub fn count_to_prune(n: usize, sparsity: f64) -> usize {
    ((n as f64 * sparsity) as usize).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dense;
    use crate::oneshot::InputStats;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    fn parse(text: &str) -> Result<PruneOptions> {
        PruneOptions::parse("wanda", &table(text))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_llm_compressors() {
        let o = parse("").unwrap();
        assert_eq!(
            o,
            PruneOptions {
                sparsity: 0.5,
                structure: MaskStructure::Unstructured,
                profile: SparsityProfile::Uniform,
                block_size: 128,
                dampening_frac: 0.01,
            }
        );
        let o = parse("mask_structure = \"2:4\"").unwrap();
        assert_eq!(o.structure, MaskStructure::NofM { keep: 2, m: 4 });
        assert_eq!(o.sparsity, 0.5);
        let o = parse("mask_structure = \"1:4\"\nsparsity = 0.75").unwrap();
        assert_eq!(o.spec().sparsity, 0.75);
        let o = parse("sparsity = 0.7\nsparsity_profile = \"owl\"").unwrap();
        assert_eq!(
            o.profile,
            SparsityProfile::Owl {
                m: 5.0,
                lambda: 0.08
            }
        );
        let o = parse("sparsity_profile = \"owl\"\nowl_m = 7\nowl_lmbda = 0.1").unwrap();
        assert_eq!(
            o.profile,
            SparsityProfile::Owl {
                m: 7.0,
                lambda: 0.1
            }
        );
        assert_eq!(
            parse("mask_structure = \"0:0\"").unwrap().structure,
            MaskStructure::Unstructured
        );
        assert_eq!(parse("mask_structure = \"4:4\"").unwrap().sparsity, 0.0);
        assert_eq!(parse("mask_structure = \"2:3\"").unwrap().block_size, 126);
        assert_eq!(parse("mask_structure = \"1:200\"").unwrap().block_size, 200);
    }

    #[test]
    fn a_sparsity_outside_zero_to_one_is_out_of_range() {
        for bad in ["1.0", "-0.1", "1.5", "nan"] {
            assert_eq!(
                err(&format!("sparsity = {bad}")),
                format!(
                    "key 'sparsity' in [algorithm] of 'wanda': {} is outside [0, 1)",
                    bad.parse::<f64>().unwrap()
                )
            );
        }
        assert_eq!(
            err("sparsity = \"half\""),
            "key 'sparsity' in [algorithm] of 'wanda': expected a number, found string"
        );
    }

    #[test]
    fn a_bad_mask_structure_is_an_invalid_value_naming_the_key() {
        assert_eq!(
            err("mask_structure = \"4:2\""),
            "key 'mask_structure' in [algorithm] of 'wanda': invalid value '4:2' (it keeps 4 of every 2: n must not exceed m)"
        );
        assert_eq!(
            err("mask_structure = \"0:4\""),
            "key 'mask_structure' in [algorithm] of 'wanda': invalid value '0:4' (it keeps 0 of every m: n must be at least 1)"
        );
        assert_eq!(
            err("mask_structure = \"3:0\""),
            "key 'mask_structure' in [algorithm] of 'wanda': invalid value '3:0' (it keeps 3 of every 0: n must not exceed m)"
        );
        for garbage in ["2-4", "two:four", "2:4:8", "", "-2:4"] {
            assert_eq!(
                err(&format!("mask_structure = \"{garbage}\"")),
                format!(
                    "key 'mask_structure' in [algorithm] of 'wanda': invalid value '{garbage}' (expected \"n:m\" (n kept of every m) or \"0:0\" (unstructured))"
                )
            );
        }
    }

    #[test]
    fn contradicting_or_misplaced_options_are_refused_by_key() {
        assert_eq!(
            err("mask_structure = \"2:4\"\nsparsity = 0.6"),
            "key 'sparsity' in [algorithm] of 'wanda': invalid value '0.6' (mask_structure \"2:4\" zeroes 0.5 of every layer)"
        );
        assert_eq!(
            err("mask_structure = \"2:4\"\nsparsity_profile = \"owl\""),
            "key 'sparsity_profile' in [algorithm] of 'wanda': invalid value 'owl' (OWL spreads an unstructured sparsity over layers; mask_structure \"2:4\" fixes every layer's)"
        );
        assert_eq!(
            err("sparsity_profile = \"layerwise\""),
            "key 'sparsity_profile' in [algorithm] of 'wanda': invalid value 'layerwise' (expected \"uniform\" or \"owl\")"
        );
        assert_eq!(
            err("owl_m = 3"),
            "key 'owl_m' in [algorithm] of 'wanda': invalid value '3' (it is read only with sparsity_profile = \"owl\")"
        );
        assert_eq!(
            err("sparsity_profile = \"owl\"\nowl_m = 0"),
            "key 'owl_m' in [algorithm] of 'wanda': 0 is outside (0, inf)"
        );
        assert_eq!(
            err("sparsity_profile = \"owl\"\nowl_lmbda = -0.1"),
            "key 'owl_lmbda' in [algorithm] of 'wanda': -0.1 is outside [0, inf)"
        );
        assert_eq!(
            err("mask_structure = \"2:4\"\nblock_size = 6"),
            "key 'block_size' in [algorithm] of 'wanda': invalid value '6' (mask_structure \"2:4\" needs a multiple of 4)"
        );
        assert_eq!(
            err("block_size = 0"),
            "key 'block_size' in [algorithm] of 'wanda': invalid value '0' (expected an integer >= 1)"
        );
        assert_eq!(
            err("dampening_frac = -1"),
            "key 'dampening_frac' in [algorithm] of 'wanda': -1 is outside [0, inf)"
        );
    }

    #[test]
    fn a_layer_whose_width_m_does_not_divide_is_named() {
        let o = parse("mask_structure = \"2:4\"").unwrap();
        let stats = InputStats::default();
        let mut w = Dense::new(vec![2, 6], vec![0.0; 12]);
        let slot = LinearSlot {
            path: "model.layers.0.mlp.down_proj",
            weight: &mut w,
            bias: None,
            stats: &stats,
            sparsity: 0.5,
        };
        assert_eq!(
            o.check_layer("wanda", &slot).unwrap_err().to_string(),
            "algorithm 'wanda': layer 'model.layers.0.mlp.down_proj': mask_structure \"2:4\" needs an input width divisible by 4, found 6"
        );
        let o = parse("").unwrap();
        assert_eq!(o.check_layer("wanda", &slot).unwrap(), (2, 6));
        let slot = LinearSlot {
            sparsity: 1.0,
            ..slot
        };
        assert_eq!(
            o.check_layer("wanda", &slot).unwrap_err().to_string(),
            "algorithm 'wanda': layer 'model.layers.0.mlp.down_proj': sparsity 1 is outside [0, 1)"
        );
    }

    #[test]
    fn selection_zeroes_exactly_k_with_ties_to_the_lower_index() {
        let s = [3.0, 1.0, 2.0, 1.0, 0.5, 2.0];
        let mut p = [false; 6];
        prune_lowest(&s, 3, &mut p);
        assert_eq!(p, [false, true, false, true, true, false]);
        prune_lowest(&s, 4, &mut p);
        assert_eq!(p, [false, true, true, true, true, false]);
        prune_lowest(&s, 0, &mut p);
        assert_eq!(p, [false; 6]);
        // Per row: row 0 zeroes its two lowest, row 1 its two lowest (ties to the lower column).
        let s = [4.0, 1.0, 3.0, 2.0, /**/ 5.0, 5.0, 5.0, 6.0];
        let mut p = [false; 8];
        prune_lowest_per_row(&s, 4, 2, &mut p);
        assert_eq!(p, [false, true, false, true, true, true, false, false]);
        // 2:4 keeps the two highest of each aligned group; 1:2 keeps one of each pair.
        let s = [0.1, 0.4, 0.3, 0.2, /**/ 1.0, 1.0, 1.0, 1.0];
        prune_n_of_m(&s, 4, 2, 4, &mut p);
        assert_eq!(p, [true, false, false, true, true, true, false, false]);
        prune_n_of_m(&s, 4, 1, 2, &mut p);
        assert_eq!(p, [true, false, false, true, true, false, true, false]);
    }
}
