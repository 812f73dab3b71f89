//! The algorithm traits and the registry every algorithm crate submits itself to.
//!
//! Burn 0.22's tensors carry no backend type, so the traits are object safe: an algorithm is a
//! `Box<dyn Pruner>` (or `Quantizer`, `Distiller`, [`Search`]) built from its TOML table by the constructor
//! in its [`AlgorithmEntry`]. A crate registers with one `inventory::submit!`; a crate is only
//! linked (and its entry only present) when something names it, which is why the facade says
//! `use algo as _;` for each algorithm crate.

use std::fmt;

use burn::tensor::Tensor;

use crate::allocate::Metric;
use crate::distill::Distiller;
use crate::error::did_you_mean;
use crate::granularity::{Granularity, Scaling};
use crate::oneshot::OneShot;
use crate::quantizer::Quantizer;
use crate::search::Search;
use crate::targets::Target;
use crate::{CompressError, Dense, Result};

/// What an algorithm does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlgorithmKind {
    /// Computes importance metrics; compress-core turns them into masks.
    Pruner,
    /// Observes ranges and produces quantization parameters.
    Quantizer,
    /// Adds a loss that pulls a student towards a teacher.
    Distiller,
    /// Searches per-layer pruning ratios under a budget ([`Search`]).
    Search,
    /// Prunes a pretrained model in one shot from calibration statistics, block by block
    /// ([`OneShot`]: Wanda, SparseGPT).
    OneShotPruner,
    /// Quantizes a pretrained model in one shot from calibration statistics, block by block
    /// ([`OneShot`]: GPTQ, AWQ, SmoothQuant).
    OneShotQuantizer,
}

impl fmt::Display for AlgorithmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlgorithmKind::Pruner => "pruner",
            AlgorithmKind::Quantizer => "quantizer",
            AlgorithmKind::Distiller => "distiller",
            AlgorithmKind::Search => "search",
            AlgorithmKind::OneShotPruner => "one-shot pruner",
            AlgorithmKind::OneShotQuantizer => "one-shot quantizer",
        })
    }
}

/// Everything a pruner gets for one target.
#[derive(Debug, Clone, Copy)]
pub struct MetricInput<'a> {
    /// The target (path, layer type, axes, settings).
    pub target: &'a Target,
    /// The parameter's current value, Burn layout.
    pub weight: &'a Dense<f32>,
    /// Its gradient (or an accumulated gradient statistic), when the algorithm asked for one;
    /// for [`MetricNeeds::LearnedScores`], the learned scores in the kept-dim block shape; for
    /// [`MetricNeeds::Activations`], the per-channel statistic of the target layer's output
    /// (`[channels]`, see [`Pruner::activation_statistic`]; read it with
    /// [`observed`](Self::observed)).
    pub grad: Option<&'a Dense<f32>>,
    /// The granularity to reduce to: one metric per block.
    pub scaling: &'a Scaling,
}

impl<'a> MetricInput<'a> {
    /// [`grad`](Self::grad), which training supplies: without it, [`CompressError::Algorithm`]
    /// for `algorithm` saying "no `what` for 'path': train with `remedy` first".
    ///
    /// # Errors
    /// That error when `grad` is `None`.
    pub fn trained(&self, algorithm: &str, what: &str, remedy: &str) -> Result<&'a Dense<f32>> {
        self.grad.ok_or_else(|| CompressError::Algorithm {
            algorithm: algorithm.into(),
            message: format!(
                "no {what} for '{}': train with {remedy} first",
                self.target.path
            ),
        })
    }

    /// The activation statistic of [`MetricNeeds::Activations`] (in [`grad`](Self::grad)):
    /// without it, [`CompressError::Algorithm`] for `algorithm` saying that layer outputs must
    /// be collected over data first.
    ///
    /// # Errors
    /// That error when `grad` is `None`.
    pub fn observed(&self, algorithm: &str) -> Result<&'a Dense<f32>> {
        self.grad.ok_or_else(|| CompressError::Algorithm {
            algorithm: algorithm.into(),
            message: format!(
                "no activation statistic for '{}': collect the layer's outputs over data batches \
                 first (compress_core::driver::prune_model_with and a LayerOutputs source, or \
                 burn_compress::pruning::prune_captured with training data)",
                self.target.path
            ),
        })
    }
}

/// What a pruner needs to compute its metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricNeeds {
    /// Only the weights (one-shot pruners).
    Weights,
    /// Weights and gradients gathered by training.
    Gradients,
    /// Scores learned during training ([`Pruner::learned_scores`]); [`MetricInput::grad`]
    /// then holds the target's scores in the kept-dim block shape.
    LearnedScores,
    /// Statistics of each target layer's output over data batches, collected without training
    /// (APoZ, mean activation): [`Pruner::activation_statistic`] per batch, averaged over
    /// [`Pruner::training_steps`] batches into [`MetricInput::grad`] (`[channels]`). The caller
    /// supplies the outputs ([`LayerOutputs`](crate::activations::LayerOutputs)).
    Activations,
}

/// A pruning criterion.
///
/// An opinionated trait, like Burn's `Optimizer`: an implementor writes **one pure metric
/// function** (one value per granularity block; smaller is pruned first). It does not handle
/// module traversal, config and targeting, granularity resolution, sparsity allocation,
/// dependency or global groups, biases, masks or persistence: compress-core does all of that,
/// identically for every pruner (see [`prune()`](crate::prune())).
pub trait Pruner: Send + Sync {
    /// The granularity used when the config says `"default"`.
    fn default_granularity(&self) -> Granularity {
        Granularity::OutChannel
    }

    /// What the metric needs; by default [`MetricNeeds::LearnedScores`] for a pruner with
    /// [`learned_scores`](Self::learned_scores), else [`MetricNeeds::Weights`].
    fn needs(&self) -> MetricNeeds {
        if self.learned_scores().is_some() {
            MetricNeeds::LearnedScores
        } else {
            MetricNeeds::Weights
        }
    }

    /// For [`MetricNeeds::Gradients`]: training steps to accumulate the gradient statistic over;
    /// for [`MetricNeeds::Activations`]: data batches to collect layer outputs over (no
    /// training). By default the
    /// [`ScoreSpec::total_steps`](crate::scores::ScoreSpec::total_steps) of
    /// [`learned_scores`](Self::learned_scores), else 0.
    fn training_steps(&self) -> usize {
        self.learned_scores().map_or(0, |spec| spec.total_steps())
    }

    /// For [`MetricNeeds::Gradients`]: the per-element statistic of (weight, gradient), both
    /// flattened, that training accumulates (and averages) into [`MetricInput::grad`].
    fn gradient_statistic(&self, _weight: Tensor<1>, grad: Tensor<1>) -> Tensor<1> {
        grad
    }

    /// For [`MetricNeeds::LearnedScores`]: how the scores are attached, trained and turned into
    /// masks (see [`LearnedScores`](crate::scores::LearnedScores)).
    fn learned_scores(&self) -> Option<crate::scores::ScoreSpec> {
        None
    }

    /// For [`MetricNeeds::Activations`]: one batch's per-channel statistic of a target layer's
    /// output, given as `[batch, channels, rest]` (a Linear's `[batch, features]` arrives as
    /// `[batch, features, 1]`); returns `[channels]`. The driver averages it over the batches
    /// (every batch weighs the same, as NNI's collector does). By default the mean over batch
    /// and space.
    fn activation_statistic(&self, output: Tensor<3>) -> Tensor<1> {
        let [_, channels, _] = output.dims();
        output.mean_dim(2).mean_dim(0).reshape([channels])
    }

    /// ADMM pruning ([`AdmmSpec`](crate::admm::AdmmSpec)): when `Some`, the driver alternates
    /// penalised training with projections scored by [`metric`](Self::metric) (see
    /// [`admm`](crate::admm::admm)). `None` by default.
    fn admm(&self) -> Option<crate::admm::AdmmSpec> {
        None
    }

    /// The metric of one target, in the kept-dim shape of `input.scaling`.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] when the target cannot be scored (e.g. FPGM on a
    /// fine-grained granularity), or a granularity error from `Scaling`.
    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>>;
}

/// A constructed algorithm.
pub enum Algorithm {
    /// A pruner.
    Pruner(Box<dyn Pruner>),
    /// A quantizer.
    Quantizer(Box<dyn Quantizer>),
    /// A distiller.
    Distiller(Box<dyn Distiller>),
    /// A budget-driven search for per-layer ratios.
    Search(Box<dyn Search>),
    /// A one-shot method run block by block on calibration data.
    OneShot(Box<dyn OneShot>),
}

impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Pruner(_) => "Algorithm::Pruner",
            Algorithm::Quantizer(_) => "Algorithm::Quantizer",
            Algorithm::Distiller(_) => "Algorithm::Distiller",
            Algorithm::Search(_) => "Algorithm::Search",
            Algorithm::OneShot(_) => "Algorithm::OneShot",
        })
    }
}

/// A registry entry. Submit one per algorithm crate:
///
/// ```
/// use compress_core::{AlgorithmEntry, AlgorithmKind, Algorithm, Dense, MetricInput, Pruner, Result};
///
/// struct Ones;
/// impl Pruner for Ones {
///     fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
///         let shape = input.scaling.shrunk_shape(input.weight.shape(), true, &input.target.path)?;
///         Ok(Dense::full(shape, 1.0))
///     }
/// }
///
/// inventory::submit! {
///     AlgorithmEntry {
///         name: "ones",
///         kind: AlgorithmKind::Pruner,
///         summary: "every block scores 1",
///         config_keys: &[],
///         build: |_options| Ok(Algorithm::Pruner(Box::new(Ones))),
///     }
/// }
/// assert!(AlgorithmEntry::find("ones").is_ok());
/// ```
#[derive(Debug)]
pub struct AlgorithmEntry {
    /// Registry name, lowercase kebab-case, NNI's where one exists (`l1-norm`).
    pub name: &'static str,
    /// What it is.
    pub kind: AlgorithmKind,
    /// One line for `burn-compress list`.
    pub summary: &'static str,
    /// The keys its `[algorithm]` table accepts (besides `name`).
    pub config_keys: &'static [&'static str],
    /// Build it from its `[algorithm]` table (without `name`).
    pub build: fn(&toml::Table) -> Result<Algorithm>,
}

inventory::collect!(AlgorithmEntry);

impl AlgorithmEntry {
    /// Every linked entry, sorted by name (inventory's own order is not stable).
    pub fn all() -> Vec<&'static AlgorithmEntry> {
        let mut entries: Vec<&'static AlgorithmEntry> =
            inventory::iter::<AlgorithmEntry>.into_iter().collect();
        entries.sort_by_key(|e| e.name);
        entries
    }

    /// An entry by name.
    ///
    /// # Errors
    /// [`CompressError::UnknownAlgorithm`] with the registered names and a did-you-mean.
    pub fn find(name: &str) -> Result<&'static AlgorithmEntry> {
        let all = Self::all();
        all.iter().find(|e| e.name == name).copied().ok_or_else(|| {
            CompressError::UnknownAlgorithm {
                name: name.to_string(),
                suggestion: did_you_mean(name, all.iter().map(|e| e.name)),
                registered: all.iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
            }
        })
    }

    /// Build the algorithm, checking `options` against [`config_keys`](Self::config_keys) first.
    ///
    /// # Errors
    /// [`CompressError::UnknownKey`] for an option it does not accept, or the constructor's error.
    pub fn build(&self, options: &toml::Table) -> Result<Algorithm> {
        for key in options.keys() {
            if !self.config_keys.contains(&key.as_str()) {
                return Err(CompressError::UnknownKey {
                    key: key.clone(),
                    context: format!("[algorithm] of '{}'", self.name),
                    suggestion: did_you_mean(key, self.config_keys.iter().copied()),
                });
            }
        }
        (self.build)(options)
    }

    /// Build it as a pruner.
    ///
    /// # Errors
    /// As [`build`](Self::build), or [`CompressError::WrongAlgorithmKind`].
    pub fn build_pruner(&self, options: &toml::Table) -> Result<Box<dyn Pruner>> {
        self.build_kind(options, AlgorithmKind::Pruner, |a| match a {
            Algorithm::Pruner(p) => Some(p),
            _ => None,
        })
    }

    /// [`build`](Self::build), requiring a distiller.
    ///
    /// # Errors
    /// As [`build`](Self::build); [`CompressError::WrongAlgorithmKind`] for other kinds.
    pub fn build_distiller(&self, options: &toml::Table) -> Result<Box<dyn Distiller>> {
        match self.build(options)? {
            Algorithm::Distiller(d) => Ok(d),
            _ => Err(CompressError::WrongAlgorithmKind {
                name: self.name.to_string(),
                kind: self.kind.to_string(),
                wanted: AlgorithmKind::Distiller.to_string(),
            }),
        }
    }

    /// [`build`](Self::build), requiring a quantizer.
    ///
    /// # Errors
    /// As [`build`](Self::build); [`CompressError::WrongAlgorithmKind`] for other kinds.
    pub fn build_quantizer(&self, options: &toml::Table) -> Result<Box<dyn Quantizer>> {
        self.build_kind(options, AlgorithmKind::Quantizer, |a| match a {
            Algorithm::Quantizer(q) => Some(q),
            _ => None,
        })
    }

    /// [`build`](Self::build), requiring a search algorithm.
    ///
    /// # Errors
    /// As [`build`](Self::build); [`CompressError::WrongAlgorithmKind`] for other kinds.
    pub fn build_search(&self, options: &toml::Table) -> Result<Box<dyn Search>> {
        self.build_kind(options, AlgorithmKind::Search, |a| match a {
            Algorithm::Search(s) => Some(s),
            _ => None,
        })
    }

    /// [`build`](Self::build), requiring a one-shot method (pruner or quantizer).
    ///
    /// # Errors
    /// As [`build`](Self::build); [`CompressError::WrongAlgorithmKind`] for other kinds.
    pub fn build_oneshot(&self, options: &toml::Table) -> Result<Box<dyn OneShot>> {
        let wanted = if self.kind == AlgorithmKind::OneShotQuantizer {
            AlgorithmKind::OneShotQuantizer
        } else {
            AlgorithmKind::OneShotPruner
        };
        self.build_kind(options, wanted, |a| match a {
            Algorithm::OneShot(o) => Some(o),
            _ => None,
        })
    }

    /// [`build`](Self::build), requiring the `wanted` kind, which `pick` takes out.
    fn build_kind<T>(
        &self,
        options: &toml::Table,
        wanted: AlgorithmKind,
        pick: impl FnOnce(Algorithm) -> Option<T>,
    ) -> Result<T> {
        pick(self.build(options)?).ok_or_else(|| CompressError::WrongAlgorithmKind {
            name: self.name.to_string(),
            kind: self.kind.to_string(),
            wanted: wanted.to_string(),
        })
    }
}

/// Metrics keyed by target path, ready for [`allocate`](crate::allocate::allocate).
pub type MetricMap = std::collections::BTreeMap<String, Metric>;

/// Typed reads of an algorithm's `[algorithm]` table, with errors that name the algorithm, the
/// key and the value found.
#[derive(Debug, Clone, Copy)]
pub struct AlgorithmOptions<'a> {
    algorithm: &'a str,
    table: &'a toml::Table,
}

impl<'a> AlgorithmOptions<'a> {
    /// Read `table` for `algorithm`.
    pub fn new(algorithm: &'a str, table: &'a toml::Table) -> Self {
        Self { algorithm, table }
    }

    fn invalid(&self, key: &str, expected: &str, found: &toml::Value) -> CompressError {
        CompressError::Algorithm {
            algorithm: self.algorithm.into(),
            message: format!("'{key}' must be {expected}, found {found}"),
        }
    }

    /// An integer `>= min`, `default` when absent.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] naming the key when the value is not such an integer.
    pub fn usize(&self, key: &str, default: usize, min: usize) -> Result<usize> {
        match self.table.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_integer()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n >= min)
                .ok_or_else(|| self.invalid(key, &format!("an integer >= {min}"), v)),
        }
    }

    /// A number accepted by `valid` (described by `expected`), `default` when absent.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] naming the key when the value is not such a number.
    pub fn f64(
        &self,
        key: &str,
        default: f64,
        valid: impl Fn(f64) -> bool,
        expected: &str,
    ) -> Result<f64> {
        match self.table.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .filter(|&x| x.is_finite() && valid(x))
                .ok_or_else(|| self.invalid(key, expected, v)),
        }
    }
}
