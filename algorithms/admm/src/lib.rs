//! # prune-admm: ADMM pruning
//!
//! NNI's `ADMMPruner` (Zhang et al., "A Systematic DNN Weight Pruning Framework using
//! Alternating Direction Method of Multipliers", ECCV 2018): training with a penalty
//! `rho/2 * ||W - Z + U||_F^2` alternates with projecting `Z = W + U` onto the sparse set (the
//! base pruner's metric on `Z`, the config's allocation) and the dual update `U += W - Z`; the
//! final masks come from the trained weights. compress-core runs the iterations
//! ([`compress_core::admm`], chosen by `prune_model` from [`Pruner::admm`]); this crate holds
//! the settings and the metric.
//!
//! **The penalty is the paper's**, the square of the Frobenius norm. NNI's code adds
//! `rho/2 * sqrt(||W - Z + U||_F)` (the square root of the norm) instead.
//!
//! **`rho` is one value for every target** (an `[algorithm]` key); NNI reads it from each
//! `config_list` entry.
//!
//! Registry name: `admm`. Default granularity: fine-grained (`granularity = "coarse-grained"`:
//! output channel).
//!
//! | key | meaning |
//! | --- | --- |
//! | `rho` | penalty weight (number >= 0, default 1e-4) |
//! | `iterations` | ADMM iterations (integer >= 1, default 5) |
//! | `training_epochs` | training epochs per iteration (integer >= 1, default 1) |
//! | `granularity` | `"fine-grained"` (default) or `"coarse-grained"` (output channels), NNI's |
//! | `base` | the registered pruner whose metric projects `Z` and gives the final masks: default `level` (`|w|`) for fine-grained, `l1-norm` for coarse-grained, as NNI; it must score weights alone |
//!
//! A config's own `granularity` on a rule still wins over this default, as for every pruner.
#![warn(missing_docs)]

use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Dense, Granularity, MetricInput,
    Pruner, Result,
    admm::AdmmSpec,
    registry::{AlgorithmOptions, MetricNeeds},
};

/// The ADMM pruner: its iteration settings and the base pruner whose metric it uses.
pub struct AdmmPruner {
    /// Penalty weight, iterations, epochs per iteration.
    pub spec: AdmmSpec,
    /// Fine-grained (`Granularity::Fine`) or coarse-grained (`Granularity::OutChannel`).
    pub granularity: Granularity,
    /// The base pruner's registry name.
    pub base_name: String,
    /// The base pruner.
    pub base: Box<dyn Pruner>,
}

impl std::fmt::Debug for AdmmPruner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmmPruner")
            .field("spec", &self.spec)
            .field("granularity", &self.granularity)
            .field("base", &self.base_name)
            .finish()
    }
}

impl Pruner for AdmmPruner {
    fn default_granularity(&self) -> Granularity {
        self.granularity.clone()
    }

    fn needs(&self) -> MetricNeeds {
        MetricNeeds::Weights
    }

    fn admm(&self) -> Option<AdmmSpec> {
        Some(self.spec)
    }

    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        self.base.metric(input)
    }
}

fn string_option<'a>(
    options: &'a compress_core::toml::Table,
    key: &str,
    expected: &str,
) -> Result<Option<&'a str>> {
    match options.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| CompressError::Algorithm {
                algorithm: "admm".into(),
                message: format!("'{key}' must be {expected}, found {v}"),
            }),
    }
}

/// Build the ADMM pruner from its `[algorithm]` table (without `name`).
///
/// # Errors
/// [`CompressError::Algorithm`] naming the key for a bad value; the registry's
/// [`CompressError::UnknownAlgorithm`] for an unknown `base`, or [`CompressError::Algorithm`]
/// for a base that does not score weights alone (Taylor, Slim, APoZ, ADMM itself).
pub fn build(options: &compress_core::toml::Table) -> Result<AdmmPruner> {
    build_with(options, |name| {
        AlgorithmEntry::find(name)?.build_pruner(&Default::default())
    })
}

/// [`build`], constructing the base pruner by name with `base`.
fn build_with(
    options: &compress_core::toml::Table,
    base: impl Fn(&str) -> Result<Box<dyn Pruner>>,
) -> Result<AdmmPruner> {
    let o = AlgorithmOptions::new("admm", options);
    let rho = o.f64("rho", 1e-4, |x| x >= 0.0, "a number >= 0")?;
    let iterations = o.usize("iterations", 5, 1)?;
    let training_epochs = o.usize("training_epochs", 1, 1)?;
    let grained = "\"fine-grained\" or \"coarse-grained\"";
    let (granularity, default_base) =
        match string_option(options, "granularity", grained)?.unwrap_or("fine-grained") {
            "fine-grained" => (Granularity::Fine, "level"),
            "coarse-grained" => (Granularity::OutChannel, "l1-norm"),
            other => {
                return Err(CompressError::Algorithm {
                    algorithm: "admm".into(),
                    message: format!("'granularity' must be {grained}, found \"{other}\""),
                });
            }
        };
    let base_name = string_option(options, "base", "a pruner's registry name")?
        .unwrap_or(default_base)
        .to_string();
    let base = base(&base_name)?;
    if base.needs() != MetricNeeds::Weights || base.admm().is_some() {
        return Err(CompressError::Algorithm {
            algorithm: "admm".into(),
            message: format!(
                "'base' must be a pruner that scores weights alone (level, l1-norm, l2-norm, \
                 fpgm), found '{base_name}'"
            ),
        });
    }
    Ok(AdmmPruner {
        spec: AdmmSpec {
            rho,
            iterations,
            training_epochs,
        },
        granularity,
        base_name,
        base,
    })
}

inventory::submit! {
    AlgorithmEntry {
        name: "admm",
        kind: AlgorithmKind::Pruner,
        summary: "ADMM: training with rho/2 * ||W - Z + U||^2 alternates with projections onto the sparse set by a base metric; NNI ADMMPruner",
        config_keys: &["rho", "iterations", "training_epochs", "granularity", "base"],
        build: |o| Ok(Algorithm::Pruner(Box::new(build(o)?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::prelude::*;
    use compress_core::admm::AdmmPenalty;
    use std::collections::BTreeMap;

    /// A weights-only base for these tests (the real ones live in other crates).
    struct Abs;
    impl Pruner for Abs {
        fn default_granularity(&self) -> Granularity {
            Granularity::Fine
        }
        fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
            Ok(input.weight.map(|w| w.abs()))
        }
    }
    /// A base that needs gradients, which ADMM cannot give.
    struct Grads;
    impl Pruner for Grads {
        fn needs(&self) -> MetricNeeds {
            MetricNeeds::Gradients
        }
        fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
            Ok(input.weight.clone())
        }
    }
    /// The test bases by name; anything else is unknown.
    fn lookup(name: &str) -> Result<Box<dyn Pruner>> {
        match name {
            "abs" => Ok(Box::new(Abs)),
            "grads" => Ok(Box::new(Grads)),
            other => Err(CompressError::UnknownAlgorithm {
                name: other.into(),
                suggestion: None,
                registered: "abs, grads".into(),
            }),
        }
    }

    fn build(options: &compress_core::toml::Table) -> Result<AdmmPruner> {
        build_with(options, lookup)
    }

    fn table(text: &str) -> compress_core::toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn options_have_nni_defaults_and_the_base_scores_the_metric() {
        let p = build(&table("base = 'abs'")).unwrap();
        assert_eq!(
            p.spec,
            AdmmSpec {
                rho: 1e-4,
                iterations: 5,
                training_epochs: 1
            }
        );
        assert_eq!(p.default_granularity(), Granularity::Fine);
        assert_eq!(p.needs(), MetricNeeds::Weights);
        assert_eq!(p.admm(), Some(p.spec));
        let p = build(&table(
            "base = 'abs'\nrho = 2\niterations = 3\ntraining_epochs = 4\ngranularity = 'coarse-grained'",
        ))
        .unwrap();
        assert_eq!(
            p.spec,
            AdmmSpec {
                rho: 2.0,
                iterations: 3,
                training_epochs: 4
            }
        );
        assert_eq!(p.default_granularity(), Granularity::OutChannel);
        let target = compress_core::Target {
            layer: "fc".into(),
            layer_type: "Linear".into(),
            name: "weight".into(),
            path: "fc.weight".into(),
            shape: vec![2],
            out_axis: Some(0),
            in_axis: None,
            role: None,
            setting: Default::default(),
            rule: 0,
        };
        let w = Dense::new(vec![2], vec![-3.0, 0.5]);
        let m = p
            .metric(&MetricInput {
                target: &target,
                weight: &w,
                grad: None,
                scaling: &compress_core::granularity::Scaling::fine(),
            })
            .unwrap();
        assert_eq!(m.data(), &[3.0, 0.5]);
    }

    #[test]
    fn bad_options_and_bases_are_refused_by_name() {
        let err = |text: &str| build(&table(text)).unwrap_err().to_string();
        let e = err("base = 'abs'\nrho = -1");
        assert!(e.contains("'rho' must be a number >= 0, found -1"), "{e}");
        let e = err("base = 'abs'\ngranularity = 'medium'");
        assert!(
            e.contains(
                "'granularity' must be \"fine-grained\" or \"coarse-grained\", found \"medium\""
            ),
            "{e}"
        );
        let e = err("base = 'grads'");
        assert!(
            e.contains("'base' must be a pruner that scores weights alone (level, l1-norm, l2-norm, fpgm), found 'grads'"),
            "{e}"
        );
        let e = err("base = 'no-such-pruner'");
        assert!(e.contains("no-such-pruner"), "{e}");
        let e = err("base = 3");
        assert!(
            e.contains("'base' must be a pruner's registry name, found 3"),
            "{e}"
        );
    }

    #[test]
    fn the_penalty_is_half_rho_times_the_squared_frobenius_distance() {
        let device = Device::flex();
        let model: Linear = LinearConfig::new(2, 2).init(&device);
        let w = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
        let model = Linear {
            weight: burn::module::Param::from_tensor(w),
            ..model
        };
        let mut anchors = BTreeMap::new();
        // ||W - A||^2 = 1 + 0 + 4 + 9 = 14.
        anchors.insert(
            "weight".to_string(),
            Dense::new(vec![2, 2], vec![0.0, 2.0, 1.0, 1.0]),
        );
        let penalty = AdmmPenalty::new(0.5, &anchors, &device)
            .penalty(&model)
            .unwrap()
            .unwrap();
        assert_eq!(penalty.into_scalar::<f32>(), 0.25 * 14.0);
        anchors.insert("nope".to_string(), Dense::new(vec![1], vec![0.0]));
        let err = AdmmPenalty::new(0.5, &anchors, &device)
            .penalty(&model)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'nope' is not a parameter"), "{err}");
    }
}
