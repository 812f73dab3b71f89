//! The evaluator of candidates: prune, speed up, measure the real cost, optionally fine-tune,
//! measure the metric.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::module::Module;
use burn::prelude::*;
use compress_core::dataset::ImageDataset;
use compress_core::driver::Training;
use compress_core::search::{Budget, Candidate, Cost, Evaluation, Evaluator, Measure};
use compress_core::train::{NoHooks, OptimizerKind, TrainConfig, accuracy, train_classifier};
use compress_core::{CompressConfig, CompressError, ModuleIndex, Pruner};
use compress_graph::{Graph, capture, count};
use compress_speedup::{ConflictPolicy, DependencyGraph, FixStructure, Plan, apply};
use compress_zoo::ImageClassifier;

use super::{AutoError, Metric};
use crate::pruning::prune_captured;
use crate::recipe::latency_ms;

/// Bisection steps of the budget fill (a factor resolution of 2^-10).
const FILL_STEPS: usize = 10;
/// At most this many channels are given back by the fill's top-up.
const TOP_UP_STEPS: usize = 64;

/// How candidates are fine-tuned and judged: shared by the evaluator and the scheduler.
#[derive(Clone, Copy)]
pub(crate) struct Judge<'a> {
    pub(crate) train: &'a ImageDataset,
    pub(crate) test: &'a ImageDataset,
    pub(crate) metric: Metric,
    pub(crate) image: [usize; 4],
    pub(crate) lr: f64,
    pub(crate) batch_size: usize,
}

impl Judge<'_> {
    /// Fine-tune an inference model for `epochs` (Adam) and return it in inference mode.
    pub(crate) fn finetune<M: Module + ImageClassifier + 'static>(
        &self,
        model: &M,
        epochs: usize,
        seed: u64,
    ) -> M {
        if epochs == 0 {
            return model.clone();
        }
        let config = TrainConfig {
            epochs,
            max_steps: None,
            batch_size: self.batch_size,
            lr: self.lr,
            optimizer: OptimizerKind::Adam,
            seed,
            progress: false,
        };
        let trainable = compress_core::mask::deep_copy(model).train();
        let forward = |m: &M, x: Tensor<4>| m.classify(x);
        train_classifier(trainable, self.train, forward, &config, &mut NoHooks)
            .0
            .valid()
    }

    /// The metric of an inference model on the test split.
    pub(crate) fn metric<M: ImageClassifier>(&self, model: &M) -> f64 {
        match self.metric {
            Metric::Accuracy => self.accuracy(model),
            Metric::Loss => {
                let device = Device::flex();
                let mut total = 0.0;
                for start in (0..self.test.len()).step_by(256) {
                    let end = (start + 256).min(self.test.len());
                    let (x, y) = self.test.batch(start, end, &device);
                    let n = end - start;
                    let logp = burn::tensor::activation::log_softmax(model.classify(x), 1);
                    let picked = logp.gather(1, y.reshape([n, 1]));
                    total -= picked.sum().into_scalar::<f32>() as f64;
                }
                total / self.test.len().max(1) as f64
            }
        }
    }

    /// Top-1 accuracy on the test split (reported whatever the metric).
    pub(crate) fn accuracy<M: ImageClassifier>(&self, model: &M) -> f64 {
        accuracy(model, self.test, |m, x| m.classify(x), &Device::flex())
    }

    /// The real cost of an inference model: MACs and params from its captured graph, the bytes
    /// of its saved burnpack, and (when asked) the median latency of a batch of 64 on the CPU.
    pub(crate) fn cost<M: Module + ImageClassifier>(
        &self,
        model: &M,
        latency: bool,
    ) -> Result<Cost, AutoError> {
        let graph = self.graph(model)?;
        let counted = count(&graph);
        Ok(Cost {
            macs: counted.macs,
            params: counted.params,
            file_bytes: saved_bytes(model)?,
            latency_ms: latency.then(|| latency_ms(model, self.image)),
        })
    }

    pub(crate) fn graph<M: Module + ImageClassifier>(&self, model: &M) -> Result<Graph, AutoError> {
        let image = self.image;
        Ok(capture(model, |m, d| m.classify(Tensor::zeros(image, d)))?)
    }
}

/// The size of `model` saved as a burnpack (a failed save is an error, never 0 bytes).
fn saved_bytes<M: Module>(model: &M) -> Result<u64, AutoError> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let file = std::env::temp_dir().join(format!(
        "burn-compress-auto-{}-{}.bpk",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let io = |e: String| AutoError::Io {
        path: file.clone(),
        message: e,
    };
    model
        .clone()
        .save_file(&file)
        .map_err(|e| io(e.to_string()))?;
    let bytes = std::fs::metadata(&file)
        .map(|m| m.len())
        .map_err(|e| io(e.to_string()));
    let _ = std::fs::remove_file(&file);
    bytes
}

/// A config with one pruning rule per layer whose ratio is above 0 (`op_names = [layer]`,
/// `sparse_ratio = r`); `None` when no layer is pruned.
pub(crate) fn ratio_config(
    ratios: &BTreeMap<String, f64>,
) -> Result<Option<CompressConfig>, AutoError> {
    let mut text = String::new();
    for (layer, ratio) in ratios.iter().filter(|(_, r)| **r > 0.0) {
        let _ = write!(
            text,
            "[[config_list]]\nop_names = [{:?}]\nsparse_ratio = {ratio:?}\n\n",
            layer
        );
    }
    if text.is_empty() {
        return Ok(None);
    }
    Ok(Some(CompressConfig::from_toml(&text)?))
}

/// Evaluates candidates on one model: prune with the chosen pruner, speed up (real shapes),
/// measure the cost after speedup, fine-tune `candidate_epochs` (0: none), measure the metric.
///
/// Its [`dense`](Evaluator::dense) cost is the `reference` it was built with: the scheduler
/// passes the model's own cost, so a budget is relative to the model the iteration starts from.
pub struct PruneEvaluator<'a, M> {
    model: M,
    graph: Graph,
    deps: DependencyGraph,
    index: ModuleIndex,
    pruner: Arc<dyn Pruner>,
    judge: Judge<'a>,
    reference: Cost,
    latency: bool,
    candidate_epochs: usize,
    seed: u64,
    evaluations: usize,
    last: Option<(Candidate, M, Plan)>,
    fill: Option<Budget>,
    filled: Vec<(Candidate, Candidate)>,
    /// Output channels per searched layer of `model`, read once for the fill's top-up.
    channels: Option<BTreeMap<String, usize>>,
}

impl<'a, M> PruneEvaluator<'a, M>
where
    M: Module + FixStructure + ImageClassifier + 'static,
{
    /// An evaluator of candidates on `model` (an inference model), pruned with `pruner`.
    /// `reference` is the cost a budget is relative to; `measure` says whether latency must be
    /// measured.
    ///
    /// # Errors
    /// Capture errors; [`AutoError::Speedup`] when the graph has an op without a channel rule.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        model: M,
        pruner: Arc<dyn Pruner>,
        judge: Judge<'a>,
        reference: Cost,
        measure: Measure,
        candidate_epochs: usize,
        seed: u64,
    ) -> Result<Self, AutoError> {
        let graph = judge.graph(&model)?;
        let deps = DependencyGraph::build(&graph)?;
        let index = ModuleIndex::from_module(&model);
        Ok(Self {
            model,
            graph,
            deps,
            index,
            pruner,
            judge,
            reference,
            latency: measure == Measure::Latency,
            candidate_epochs,
            seed,
            evaluations: 0,
            last: None,
            fill: None,
            filled: Vec::new(),
            channels: None,
        })
    }

    /// Fill `budget` before measuring: a search predicts costs linearly from layer sizes, but
    /// pruning a layer's outputs also shrinks the next layer's inputs, so its candidates tend
    /// to land well under the budget. With a fill budget, every candidate's ratios are scaled
    /// by the smallest common factor in `[0, 1]` whose measured cost still meets it (a
    /// bisection), then channels are given back one at a time (at most 64) to the layer that
    /// keeps the smallest share of its output channels while the measured cost still meets
    /// it (the slack a common factor leaves is often worth several channels of a thin layer),
    /// and that candidate is the one pruned and judged ([`filled`](Self::filled) maps one to
    /// the other). A candidate over the budget is measured as it is.
    pub fn set_fill(&mut self, budget: Option<Budget>) {
        self.fill = budget;
        self.filled.clear();
    }

    /// The candidate actually measured for `candidate` (itself without a fill budget).
    pub fn filled(&self, candidate: &Candidate) -> Candidate {
        self.filled
            .iter()
            .find(|(c, _)| c == candidate)
            .map_or_else(|| candidate.clone(), |(_, f)| f.clone())
    }

    fn fill(&mut self, candidate: &Candidate) -> Result<Candidate, AutoError> {
        let Some(budget) = self.fill else {
            return Ok(candidate.clone());
        };
        if let Some((_, f)) = self.filled.iter().find(|(c, _)| c == candidate) {
            return Ok(f.clone());
        }
        let scaled = |a: f64| {
            Candidate::new(
                candidate
                    .ratios
                    .iter()
                    .map(|(k, r)| (k.clone(), r * a))
                    .collect(),
            )
        };
        let meets = |this: &mut Self, c: &Candidate| -> Result<bool, AutoError> {
            let cost = this.cost_of(c)?;
            Ok(budget.allows(&cost, &this.reference))
        };
        let mut best = candidate.clone();
        if meets(self, &best)? {
            let (mut lo, mut hi) = (0.0, 1.0);
            for _ in 0..FILL_STEPS {
                let mid = 0.5 * (lo + hi);
                let c = scaled(mid);
                if meets(self, &c)? {
                    hi = mid;
                    best = c;
                } else {
                    lo = mid;
                }
            }
            // Top-up: the common factor leaves what one layer's channel costs unspent; give
            // channels back one at a time to the layer that keeps the smallest share of its
            // channels, as long as the measured cost still meets the budget.
            let channels = match &self.channels {
                Some(c) => c.clone(),
                None => {
                    let c: BTreeMap<String, usize> =
                        super::search_space(&self.model, &self.graph, None, 1.0)?
                            .layers
                            .into_iter()
                            .map(|l| (l.name, l.out_channels))
                            .collect();
                    self.channels = Some(c.clone());
                    c
                }
            };
            for _ in 0..TOP_UP_STEPS {
                let mut order: Vec<(f64, &String, f64)> = best
                    .ratios
                    .iter()
                    .filter_map(|(name, &r)| {
                        let c = *channels.get(name)? as f64;
                        // The allocator prunes floor(c * r) channels.
                        let pruned = (c * r + 1e-9).floor();
                        (pruned >= 1.0).then(|| ((c - pruned) / c, name, (pruned - 0.5) / c))
                    })
                    .collect();
                order.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mut grown = None;
                for (_, name, ratio) in order {
                    let mut c = best.clone();
                    c.ratios.insert(name.clone(), ratio.max(0.0));
                    if meets(self, &c)? {
                        grown = Some(c);
                        break;
                    }
                }
                match grown {
                    Some(c) => best = c,
                    None => break,
                }
            }
        }
        self.filled.push((candidate.clone(), best.clone()));
        Ok(best)
    }

    /// The model candidates are applied to.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The model pruned by `candidate` and sped up, with the plan that did it (an empty plan
    /// when nothing is pruned). Pruners that gather a statistic (Taylor) get one pass over the
    /// training split at learning rate 0; pruners that train the weights (ADMM, learned scores)
    /// train at the run's learning rate for as long as their own options say.
    ///
    /// # Errors
    /// Config, pruning and speedup errors.
    pub fn prune(&mut self, candidate: &Candidate) -> Result<(M, Plan), AutoError> {
        if let Some((c, m, p)) = &self.last
            && c == candidate
        {
            return Ok((m.clone(), p.clone()));
        }
        let Some(config) = ratio_config(&candidate.ratios)? else {
            return Ok((self.model.clone(), Plan::default()));
        };
        let trainable = compress_core::mask::deep_copy(&self.model).train();
        // Pruners that train the weights (ADMM, learned scores) train at the run's learning
        // rate; statistic gatherers (Taylor) see the data at learning rate 0.
        let trains = self.pruner.admm().is_some() || self.pruner.learned_scores().is_some();
        let training = Training {
            data: self.judge.train,
            forward: &|m: &M, x: Tensor<4>| m.classify(x),
            config: TrainConfig {
                epochs: 1,
                max_steps: None,
                batch_size: self.judge.batch_size,
                lr: if trains { self.judge.lr } else { 0.0 },
                optimizer: OptimizerKind::Adam,
                seed: self.seed,
                progress: false,
            },
        };
        let pruned = prune_captured(
            trainable,
            &self.graph,
            &config,
            self.pruner.clone(),
            None,
            Some(&training),
        )?;
        let planned = self
            .deps
            .plan(&pruned.masks, &self.index, ConflictPolicy::Union)?;
        let small = apply(&pruned.model.valid(), &planned.plan)?;
        self.last = Some((candidate.clone(), small.clone(), planned.plan.clone()));
        Ok((small, planned.plan))
    }

    /// The cost of `candidate` after speedup, without fine-tuning or evaluating it.
    ///
    /// # Errors
    /// As [`prune`](Self::prune), and capture errors.
    pub fn cost_of(&mut self, candidate: &Candidate) -> Result<Cost, AutoError> {
        let (small, _) = self.prune(candidate)?;
        self.judge.cost(&small, self.latency)
    }

    /// How many candidates [`evaluate`](Evaluator::evaluate) measured.
    pub fn evaluations(&self) -> usize {
        self.evaluations
    }

    fn measure(&mut self, candidate: &Candidate) -> Result<Evaluation, AutoError> {
        let candidate = &self.fill(candidate)?;
        let (small, _) = self.prune(candidate)?;
        let cost = self.judge.cost(&small, self.latency)?;
        let tuned = self.judge.finetune(
            &small,
            self.candidate_epochs,
            self.seed.wrapping_add(self.evaluations as u64),
        );
        self.evaluations += 1;
        Ok(Evaluation {
            metric: self.judge.metric(&tuned),
            cost,
        })
    }
}

impl<M> Evaluator for PruneEvaluator<'_, M>
where
    M: Module + FixStructure + ImageClassifier + 'static,
{
    fn dense(&self) -> &Cost {
        &self.reference
    }

    fn evaluate(&mut self, candidate: &Candidate) -> compress_core::Result<Evaluation> {
        self.measure(candidate).map_err(|e| match e {
            AutoError::Compress(c) => *c,
            other => CompressError::Algorithm {
                algorithm: "auto evaluator".into(),
                message: other.to_string(),
            },
        })
    }
}
