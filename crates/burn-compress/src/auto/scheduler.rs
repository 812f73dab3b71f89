//! The iterative scheduler: prune -> speedup -> fine-tune -> evaluate per iteration, per-layer
//! ratios from the search on the compact model, keep-best, weight reset, the uniform baseline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use compress_core::dataset::ImageDataset;
use compress_core::search::{Budget, Candidate, Cost, Search, SearchSpace};
use compress_core::sensitivity::SensitivityAnalysis;
use compress_core::{AlgorithmEntry, CompressConfig, CompressError, Pruner};
use compress_speedup::{FixStructure, Plan, apply};
use compress_zoo::ImageClassifier;

use super::evaluator::{Judge, PruneEvaluator};
use super::report::{AutoReport, CandidateRecord, IterationRecord, ModelRecord};
use super::{AutoError, AutoSettings, KeepBest, UNIFORM, search_space};

/// The registry name of the sensitivity-guided allocator, whose curves the scheduler computes
/// when the options do not give a file.
pub(crate) const SENSITIVITY_GUIDED: &str = "sensitivity-guided";

/// Bisection steps of the uniform ratio (a resolution of `max_ratio / 2^14`).
const BISECT_STEPS: usize = 14;

/// What [`auto_compress`] reports while it runs (for progress bars).
#[derive(Debug, Clone, Copy)]
pub enum AutoEvent<'a> {
    /// A phase starts: `search`, `uniform`, `final fine-tune`.
    Phase(&'a str),
    /// A candidate was evaluated.
    Candidate(&'a CandidateRecord),
    /// An iteration finished.
    Iteration(&'a IterationRecord),
}

/// The result of [`auto_compress`].
#[derive(Debug, Clone)]
pub struct AutoOutcome<M> {
    /// The chosen model, sped up and fine-tuned (inference mode).
    pub model: M,
    /// The plan from the input model to `model` (every iteration's plan composed), for
    /// [`save_pruned`](compress_speedup::save_pruned).
    pub plan: Plan,
    /// The uniform baseline's model, when it ran.
    pub uniform_model: Option<M>,
    /// Everything measured.
    pub report: AutoReport,
}

/// One schedule's result.
struct Scheduled<M> {
    model: M,
    plan: Plan,
    cost: Cost,
    iteration: usize,
}

/// Compose two plans: `second` was computed on the model `first` produced.
pub fn compose_plans(first: &Plan, second: &Plan) -> Plan {
    let mut out = first.clone();
    for (path, shape) in &second.original_shapes {
        out.original_shapes
            .entry(path.clone())
            .or_insert_with(|| shape.clone());
    }
    for (path, axes) in &second.params {
        let entry = out.params.entry(path.clone()).or_default();
        for keep in axes {
            match entry.iter_mut().find(|a| a.axis == keep.axis) {
                Some(prev) => prev.kept = keep.kept.iter().map(|&j| prev.kept[j]).collect(),
                None => entry.push(keep.clone()),
            }
        }
        entry.sort_by_key(|a| a.axis);
    }
    out
}

/// Per layer of `space` (the dense model's), the ratio of output channels `plan` removed.
fn dense_ratios(space: &SearchSpace, plan: &Plan) -> BTreeMap<String, f64> {
    space
        .layers
        .iter()
        .map(|l| {
            let out_axis = if l.op_type == "Linear" { 1 } else { 0 };
            let kept = plan
                .params
                .get(&format!("{}.weight", l.name))
                .and_then(|axes| axes.iter().find(|a| a.axis == out_axis))
                .map_or(l.out_channels, |a| a.kept.len());
            (
                l.name.clone(),
                1.0 - kept as f64 / l.out_channels.max(1) as f64,
            )
        })
        .collect()
}

/// Compress `model` (an inference model) under `settings.budget`: see the [module
/// docs](super). `image` is the input shape of one sample (`[1, C, H, W]`).
///
/// # Errors
/// [`AutoError`]: an invalid setting, an empty search space
/// ([`CompressError::EmptySearchSpace`]), a budget that cannot be met
/// ([`CompressError::BudgetUnreachable`] with the closest achievable cost), pruning, speedup
/// and capture errors.
pub fn auto_compress<M>(
    model: &M,
    train: &ImageDataset,
    test: &ImageDataset,
    image: [usize; 4],
    settings: &AutoSettings,
    mut observe: impl FnMut(AutoEvent<'_>),
) -> Result<AutoOutcome<M>, AutoError>
where
    M: Module + FixStructure + ImageClassifier + 'static,
{
    settings.validate()?;
    let started = Instant::now();
    let budget = settings.budget;
    let measure = budget.measure;
    let latency = measure == compress_core::search::Measure::Latency;
    let judge = Judge {
        train,
        test,
        metric: settings.metric,
        image,
        lr: settings.lr,
        batch_size: settings.batch_size,
    };
    let pruner: Arc<dyn Pruner> =
        Arc::from(AlgorithmEntry::find(&settings.pruner)?.build_pruner(&settings.pruner_options)?);
    let dense_cost = judge.cost(model, latency)?;
    let graph = judge.graph(model)?;
    let space = search_space(model, &graph, settings.config.as_ref(), settings.max_ratio)?;
    // The most the schedule can prune: `max_ratio` of what is left, every iteration.
    let mut reach = space.clone();
    let cumulative = 1.0 - (1.0 - settings.max_ratio).powi(settings.iterations as i32);
    for l in &mut reach.layers {
        l.max_ratio = cumulative.min(0.999);
    }
    reach.reachable_share(&budget, &dense_cost)?;
    if settings.iterations == 1 {
        // Measured, not only predicted: every layer at its max ratio after speedup.
        let mut ev = PruneEvaluator::new(
            model.clone(),
            pruner.clone(),
            judge,
            dense_cost.clone(),
            measure,
            0,
            settings.seed,
        )?;
        let most = ev.cost_of(&Candidate::uniform(&space, settings.max_ratio))?;
        if !budget.allows(&most, &dense_cost) {
            return Err(CompressError::BudgetUnreachable {
                budget: budget.to_string(),
                closest: most.ratio_to(&dense_cost, measure).unwrap_or(f64::NAN),
                context: format!(
                    "measured after speedup with every layer at max_ratio = {}",
                    settings.max_ratio
                ),
            }
            .into());
        }
    }
    let dense_metric = judge.metric(model);
    let dense_accuracy = judge.accuracy(model);

    let mut candidates = Vec::new();
    let mut run = Runner {
        settings,
        judge,
        pruner,
        dense_cost: &dense_cost,
        space: &space,
        latency,
        candidates: &mut candidates,
        observe: &mut observe,
    };
    let mut schedule_log = Vec::new();
    let searched = run.schedule(model, &budget, settings.search.as_str(), &mut schedule_log)?;
    (run.observe)(AutoEvent::Phase("final fine-tune"));
    let final_seed = settings.seed.wrapping_add(0x5eed);
    let chosen_model = judge.finetune(&searched.model, settings.final_epochs, final_seed);
    let chosen = ModelRecord::new(
        dense_ratios(&space, &searched.plan),
        &judge.cost(&chosen_model, latency)?,
        &dense_cost,
        judge.metric(&chosen_model),
        judge.accuracy(&chosen_model),
    );

    let mut uniform_log = Vec::new();
    let (uniform, uniform_model) = if settings.uniform_baseline {
        let value = searched.cost.value(measure).unwrap_or(f64::NAN);
        let dense_value = dense_cost.value(measure).unwrap_or(f64::NAN);
        let same = Budget::new(measure, (value / dense_value).min(1.0))?;
        let base = run.schedule(model, &same, UNIFORM, &mut uniform_log)?;
        (run.observe)(AutoEvent::Phase("uniform fine-tune"));
        let tuned = judge.finetune(&base.model, settings.final_epochs, final_seed);
        let record = ModelRecord::new(
            dense_ratios(&space, &base.plan),
            &judge.cost(&tuned, latency)?,
            &dense_cost,
            judge.metric(&tuned),
            judge.accuracy(&tuned),
        );
        (Some(record), Some(tuned))
    } else {
        (None, None)
    };
    let report = AutoReport {
        budget: budget.to_string(),
        measure,
        fraction: budget.fraction,
        metric: settings.metric,
        search: settings.search.clone(),
        pruner: settings.pruner.clone(),
        schedule: settings.schedule.to_string(),
        iterations: settings.iterations,
        keep: settings.keep,
        reset_weights: settings.reset_weights,
        candidate_epochs: settings.candidate_epochs,
        finetune_epochs: settings.finetune_epochs,
        final_epochs: settings.final_epochs,
        dense: ModelRecord::new(
            space.layers.iter().map(|l| (l.name.clone(), 0.0)).collect(),
            &dense_cost,
            &dense_cost,
            dense_metric,
            dense_accuracy,
        ),
        candidates,
        schedule_log,
        chosen,
        chosen_iteration: searched.iteration,
        uniform,
        uniform_log,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(AutoOutcome {
        model: chosen_model,
        plan: searched.plan,
        uniform_model,
        report,
    })
}

struct Runner<'r, 'a, F> {
    settings: &'r AutoSettings,
    judge: Judge<'a>,
    pruner: Arc<dyn Pruner>,
    dense_cost: &'r Cost,
    space: &'r SearchSpace,
    latency: bool,
    candidates: &'r mut Vec<CandidateRecord>,
    observe: &'r mut F,
}

impl<F: FnMut(AutoEvent<'_>)> Runner<'_, '_, F> {
    /// Run the schedule towards `budget` with `search` (a registry name or `uniform`).
    fn schedule<M>(
        &mut self,
        model: &M,
        budget: &Budget,
        search: &str,
        log: &mut Vec<IterationRecord>,
    ) -> Result<Scheduled<M>, AutoError>
    where
        M: Module + FixStructure + ImageClassifier + 'static,
    {
        let s = self.settings;
        let measure = budget.measure;
        let phase = if search == UNIFORM {
            "uniform"
        } else {
            "search"
        };
        (self.observe)(AutoEvent::Phase(phase));
        let dense_value = self.dense_cost.value(measure).unwrap_or(f64::NAN);
        let targets = s.schedule.targets(1.0 - budget.fraction, s.iterations);
        let first = s.schedule.first_iteration();
        let origin = model.clone();
        let mut current = model.clone();
        let mut plan = Plan::default();
        let mut kept: Vec<Scheduled<M>> = Vec::new();
        let mut metrics = Vec::new();
        for (k, share) in targets.iter().enumerate() {
            let i = first + k;
            let seed = s.seed.wrapping_add(1000 * i as u64);
            if s.reset_weights {
                // Lottery ticket (NNI's reset-weight step): fine-tune, prune, then reload the
                // weights the task started from.
                current = self.judge.finetune(&current, s.finetune_epochs, seed);
            }
            let target = 1.0 - share;
            let cur_cost = self.judge.cost(&current, self.latency)?;
            let cur_value = cur_cost.value(measure).unwrap_or(f64::NAN);
            let relative = target * dense_value / cur_value;
            let mut evaluator = PruneEvaluator::new(
                current.clone(),
                self.pruner.clone(),
                self.judge,
                cur_cost.clone(),
                measure,
                s.candidate_epochs,
                seed,
            )?;
            let current_ratios = dense_ratios(self.space, &plan);
            let candidate = if relative >= 1.0 {
                Candidate::default()
            } else {
                let step_budget = Budget::new(measure, relative.max(f64::MIN_POSITIVE))?;
                let graph = self.judge.graph(&current)?;
                let space = search_space(&current, &graph, s.config.as_ref(), s.max_ratio)?;
                let before = self.candidates.len();
                let chosen = if search == UNIFORM {
                    self.bisect(&mut evaluator, &space, &step_budget, i, &current_ratios)?
                } else {
                    let algorithm = self.search(&current, &space, i)?;
                    evaluator.set_fill(Some(step_budget));
                    let outcome = algorithm.search(
                        &space,
                        &step_budget,
                        s.metric.objective(),
                        &mut evaluator,
                    )?;
                    for trial in &outcome.trials {
                        let measured = evaluator.filled(&trial.candidate);
                        let record = CandidateRecord {
                            phase: phase.into(),
                            iteration: i,
                            ratios: measured.ratios.clone(),
                            ratios_of_dense: of_dense(&measured, &current_ratios),
                            macs: trial.evaluation.cost.macs,
                            params: trial.evaluation.cost.params,
                            file_bytes: trial.evaluation.cost.file_bytes,
                            latency_ms: trial.evaluation.cost.latency_ms,
                            metric: trial.evaluation.metric,
                            within_budget: trial.within_budget,
                        };
                        self.candidates.push(record);
                    }
                    outcome
                        .best_trial()
                        .map(|t| evaluator.filled(&t.candidate))
                        .unwrap_or_default()
                };
                for record in &self.candidates[before..] {
                    (self.observe)(AutoEvent::Candidate(record));
                }
                chosen
            };
            let (small, step) = evaluator.prune(&candidate)?;
            plan = compose_plans(&plan, &step);
            current = if s.reset_weights {
                apply(&origin, &plan)?
            } else {
                self.judge.finetune(&small, s.finetune_epochs, seed)
            };
            let cost = self.judge.cost(&current, self.latency)?;
            let metric = self.judge.metric(&current);
            let record = IterationRecord {
                phase: phase.into(),
                iteration: i,
                target,
                ratios: candidate.ratios.clone(),
                macs: cost.macs,
                params: cost.params,
                metric,
                within_budget: budget.allows(&cost, self.dense_cost),
            };
            (self.observe)(AutoEvent::Iteration(&record));
            if record.within_budget {
                metrics.push(metric);
                kept.push(Scheduled {
                    model: current.clone(),
                    plan: plan.clone(),
                    cost,
                    iteration: i,
                });
            }
            log.push(record);
        }
        let pick = match s.keep {
            KeepBest::Latest => kept.len().checked_sub(1),
            KeepBest::Maximize | KeepBest::Minimize => {
                let better = |a: f64, b: f64| {
                    if s.keep == KeepBest::Maximize {
                        a > b
                    } else {
                        a < b
                    }
                };
                (0..metrics.len()).fold(None, |best: Option<usize>, j| match best {
                    Some(b) if !better(metrics[j], metrics[b]) => Some(b),
                    _ => Some(j),
                })
            }
        };
        match pick {
            Some(j) => Ok(kept.swap_remove(j)),
            None => {
                let closest = log
                    .iter()
                    .filter_map(|r| {
                        let cost = Cost {
                            macs: r.macs,
                            params: r.params,
                            ..Cost::default()
                        };
                        cost.ratio_to(self.dense_cost, measure)
                    })
                    .min_by(f64::total_cmp)
                    .unwrap_or(f64::NAN);
                Err(CompressError::BudgetUnreachable {
                    budget: budget.to_string(),
                    closest,
                    context: format!("measured, smallest of {} iteration(s)", log.len()),
                }
                .into())
            }
        }
    }

    /// The registered search, built for this iteration: the seed is the settings' unless the
    /// options set one, and `sensitivity-guided` without a curves file gets curves computed on
    /// `model` with the pruner.
    fn search<M>(
        &self,
        model: &M,
        space: &SearchSpace,
        iteration: usize,
    ) -> Result<Box<dyn Search>, AutoError>
    where
        M: Module + ImageClassifier + 'static,
    {
        let s = self.settings;
        let entry = AlgorithmEntry::find(&s.search)?;
        let mut options = s.search_options.clone();
        if entry.config_keys.contains(&"seed") && !options.contains_key("seed") {
            options.insert(
                "seed".into(),
                compress_core::toml::Value::Integer(
                    (s.seed.wrapping_add(iteration as u64) & 0x7fff_ffff) as i64,
                ),
            );
        }
        if entry.name == SENSITIVITY_GUIDED && !options.contains_key("sensitivity") {
            let rules: String = space
                .layers
                .iter()
                .map(|l| {
                    format!(
                        "[[config_list]]\nop_names = [{:?}]\nsparse_ratio = 0.5\n",
                        l.name
                    )
                })
                .collect();
            let config = CompressConfig::from_toml(&rules)?;
            let table = SensitivityAnalysis::new(self.pruner.as_ref())
                .with_config(config)
                .with_metric_name(s.metric.to_string())
                .run(model, |m| Ok(self.judge.metric(m)))?;
            let path = std::env::temp_dir().join(format!(
                "burn-compress-auto-sensitivity-{}-{iteration}.json",
                std::process::id()
            ));
            std::fs::write(&path, table.to_json()).map_err(|e| AutoError::Io {
                path: path.clone(),
                message: e.to_string(),
            })?;
            options.insert(
                "sensitivity".into(),
                compress_core::toml::Value::String(path.display().to_string()),
            );
            // The search reads the table when it is built; the file is not needed after.
            let built = entry.build_search(&options);
            let _ = std::fs::remove_file(&path);
            return Ok(built?);
        }
        Ok(entry.build_search(&options)?)
    }

    /// The smallest uniform ratio whose measured cost meets `budget` (bisection; the cost only
    /// falls as the ratio grows, in channel-sized steps).
    fn bisect<M>(
        &mut self,
        evaluator: &mut PruneEvaluator<'_, M>,
        space: &SearchSpace,
        budget: &Budget,
        iteration: usize,
        current_ratios: &BTreeMap<String, f64>,
    ) -> Result<Candidate, AutoError>
    where
        M: Module + FixStructure + ImageClassifier + 'static,
    {
        let reference = compress_core::search::Evaluator::dense(evaluator).clone();
        let mut probe = |this: &mut Self, ratio: f64| -> Result<(Candidate, bool), AutoError> {
            let candidate = Candidate::uniform(space, ratio);
            let (small, _) = evaluator.prune(&candidate)?;
            let cost = this.judge.cost(&small, this.latency)?;
            let ok = budget.allows(&cost, &reference);
            this.candidates.push(CandidateRecord {
                phase: "uniform".into(),
                iteration,
                ratios: candidate.ratios.clone(),
                ratios_of_dense: of_dense(&candidate, current_ratios),
                macs: cost.macs,
                params: cost.params,
                file_bytes: cost.file_bytes,
                latency_ms: cost.latency_ms,
                metric: this.judge.metric(&small),
                within_budget: ok,
            });
            Ok((candidate, ok))
        };
        let max = self.settings.max_ratio;
        let (mut best, ok) = probe(self, max)?;
        if !ok {
            let last = self.candidates.last().expect("a probe was recorded");
            let cost = Cost {
                macs: last.macs,
                params: last.params,
                file_bytes: last.file_bytes,
                latency_ms: last.latency_ms,
            };
            return Err(CompressError::BudgetUnreachable {
                budget: budget.to_string(),
                closest: cost
                    .ratio_to(&reference, budget.measure)
                    .unwrap_or(f64::NAN),
                context: format!("uniform ratio {max} on every layer, measured after speedup"),
            }
            .into());
        }
        let (mut lo, mut hi) = (0.0, max);
        for _ in 0..BISECT_STEPS {
            let mid = 0.5 * (lo + hi);
            let (candidate, ok) = probe(self, mid)?;
            if ok {
                hi = mid;
                best = candidate;
            } else {
                lo = mid;
            }
        }
        Ok(best)
    }
}

/// A candidate's ratios relative to the dense model, given each layer's ratio so far.
fn of_dense(candidate: &Candidate, current: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    candidate
        .ratios
        .iter()
        .map(|(name, r)| {
            let cur = current.get(name).copied().unwrap_or(0.0);
            (name.clone(), 1.0 - (1.0 - cur) * (1.0 - r))
        })
        .collect()
}
