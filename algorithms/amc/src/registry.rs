//! AMC as a registered search algorithm (`amc`): compress-core's search vocabulary in
//! ([`SearchSpace`], [`Budget`], an [`Evaluator`]), every episode out as a [`Trial`](compress_core::search::Trial).

use std::collections::BTreeMap;

use compress_core::search::{
    Budget, Candidate, Evaluator, Measure, Objective, Search, SearchLayer, SearchOutcome,
    SearchSpace, TrialLog,
};
use compress_core::{Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Result};

use crate::{Amc, AmcConfig, AmcLayer, SearchError};

/// The registry name.
pub const NAME: &str = "amc";

/// [`Amc`] behind compress-core's [`Search`] trait.
///
/// - The episode budget is the share of the layers' size the budget needs removed
///   ([`SearchSpace::reachable_share`]; NNI's `total_sparsity` when the layers are the whole
///   model), on MACs for [`Measure::Macs`] and [`Measure::Latency`] (AMC's FLOPs budget), on
///   parameters for [`Measure::Params`] and [`Measure::FileBytes`].
/// - Every episode's ratios are evaluated once through the [`Evaluator`] (real cost after
///   speedup); the agent's reward is the metric, negated for [`Objective::Minimize`].
/// - A layer's input channels are not linked to an earlier layer (a [`SearchLayer`] does not say
///   which layer feeds it), so the cost model treats layers as independent; the evaluator's
///   measured cost decides what is within budget.
/// - Pre-existing masks ([`SearchLayer::current_ratio`] above 0) are refused: AMC starts from
///   the dense model.
#[derive(Debug, Clone)]
pub struct AmcSearch {
    amc: Amc,
}

impl AmcSearch {
    /// AMC with `config`.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] naming the bad key when the config is invalid.
    pub fn new(config: AmcConfig) -> Result<Self> {
        let amc = Amc::new(config).map_err(|e| algorithm_error(e.to_string()))?;
        Ok(Self { amc })
    }
}

fn algorithm_error(message: String) -> CompressError {
    CompressError::Algorithm {
        algorithm: NAME.into(),
        message,
    }
}

fn amc_layer(l: &SearchLayer) -> AmcLayer {
    AmcLayer {
        layer: l.clone(),
        input_from: None,
    }
}

impl Search for AmcSearch {
    fn search(
        &self,
        space: &SearchSpace,
        budget: &Budget,
        objective: Objective,
        evaluator: &mut dyn Evaluator,
    ) -> Result<SearchOutcome> {
        if let Some(l) = space.layers.iter().find(|l| l.current_ratio > 0.0) {
            return Err(algorithm_error(format!(
                "layer '{}' is already pruned ({}): AMC searches from the dense model",
                l.name, l.current_ratio
            )));
        }
        let mut log = TrialLog::new(space, budget, objective, evaluator);
        let share = space.reachable_share(budget, log.dense())?;
        let flops = matches!(budget.measure, Measure::Macs | Measure::Latency);
        let layers: Vec<AmcLayer> = space.layers.iter().map(amc_layer).collect();
        let sign = match objective {
            Objective::Maximize => 1.0,
            Objective::Minimize => -1.0,
        };
        let mut evaluate = |ratios: &BTreeMap<String, f64>| -> Result<f64> {
            let trial = log.evaluate(Candidate::new(ratios.clone()))?;
            Ok(sign * trial.evaluation.metric)
        };
        match self.amc.search(&layers, share, flops, &mut evaluate) {
            Ok(_) => {}
            Err(SearchError::Evaluate { source, .. }) => return Err(source),
            Err(other) => return Err(algorithm_error(other.to_string())),
        }
        log.finish(NAME)
    }
}

fn build(options: &compress_core::toml::Table) -> Result<Algorithm> {
    let config: AmcConfig = compress_core::toml::Value::Table(options.clone())
        .try_into()
        .map_err(|e: compress_core::toml::de::Error| {
            algorithm_error(format!("[algorithm] table: {}", e.message()))
        })?;
    Ok(Algorithm::Search(Box::new(AmcSearch::new(config)?)))
}

inventory::submit! {
    AlgorithmEntry {
        name: "amc",
        kind: AlgorithmKind::Search,
        summary: "AMC: a DDPG agent picks per-layer ratios under a MACs or parameter budget (NNI v2.10's AMCPruner)",
        config_keys: &[
            "episodes", "warmup", "hidden1", "hidden2", "lr_actor", "lr_critic", "batch_size",
            "replay_per_layer", "tau", "discount", "init_delta", "delta_decay", "moving_alpha",
            "seed",
        ],
        build,
    }
}

#[cfg(test)]
mod tests {
    use compress_core::search::{Cost, Evaluation};

    use super::*;

    /// Cost: MACs of the layers scaled by (1 - ratio); metric: 1 - sum(ratio * weight).
    struct Toy {
        dense: Cost,
        macs: Vec<(String, u64, f64)>,
        calls: usize,
    }

    impl Evaluator for Toy {
        fn dense(&self) -> &Cost {
            &self.dense
        }
        fn evaluate(&mut self, c: &Candidate) -> Result<Evaluation> {
            self.calls += 1;
            let mut macs = 0.0;
            let mut metric = 1.0;
            for (name, m, w) in &self.macs {
                let r = c.ratio(name).unwrap_or(0.0);
                macs += *m as f64 * (1.0 - r);
                metric -= r * w;
            }
            Ok(Evaluation {
                metric,
                cost: Cost {
                    macs: macs.round() as u64,
                    ..self.dense.clone()
                },
            })
        }
    }

    fn space() -> SearchSpace {
        let layer = |name: &str, macs: u64| SearchLayer {
            name: name.into(),
            op_type: "Conv2d".into(),
            params: macs / 10,
            macs,
            in_channels: 8,
            out_channels: 8,
            kernel: 3,
            stride: 1,
            input_size: 64,
            max_ratio: 0.8,
            current_ratio: 0.0,
        };
        SearchSpace::new(vec![layer("a", 100), layer("b", 200), layer("c", 300)])
    }

    fn toy() -> Toy {
        Toy {
            dense: Cost {
                macs: 600,
                params: 60,
                file_bytes: 240,
                latency_ms: None,
            },
            macs: vec![
                ("a".into(), 100, 0.5),
                ("b".into(), 200, 0.1),
                ("c".into(), 300, 0.2),
            ],
            calls: 0,
        }
    }

    #[test]
    fn amc_is_registered_and_every_episode_is_a_trial_within_the_macs_budget() {
        let entry = AlgorithmEntry::find(NAME).unwrap();
        assert_eq!(entry.kind, AlgorithmKind::Search);
        let options: compress_core::toml::Table =
            compress_core::toml::from_str("episodes = 12\nwarmup = 4\nhidden1 = 16\nhidden2 = 16")
                .unwrap();
        let search = entry.build_search(&options).unwrap();
        let mut eval = toy();
        let budget = Budget::parse("macs/2").unwrap();
        let outcome = search
            .search(&space(), &budget, Objective::Maximize, &mut eval)
            .unwrap();
        assert_eq!(eval.calls, 12);
        assert_eq!(outcome.trials.len(), 12);
        for t in &outcome.trials {
            assert!(t.within_budget, "{:?}", t.evaluation.cost);
            assert!(t.evaluation.cost.macs <= 301, "{:?}", t.evaluation.cost);
        }
        let best = outcome.best.unwrap();
        assert!(
            outcome
                .trials
                .iter()
                .all(|t| t.evaluation.metric <= outcome.trials[best].evaluation.metric)
        );
    }

    #[test]
    fn bad_keys_pre_pruned_layers_and_unreachable_budgets_are_typed_errors() {
        let entry = AlgorithmEntry::find(NAME).unwrap();
        let options: compress_core::toml::Table =
            compress_core::toml::from_str("episodez = 3").unwrap();
        let Err(err) = entry.build_search(&options) else {
            panic!("an unknown key is refused")
        };
        let err = err.to_string();
        assert!(err.contains("episodez"), "{err}");
        let search = AmcSearch::new(AmcConfig {
            episodes: 2,
            ..Default::default()
        })
        .unwrap();
        let mut pruned = space();
        pruned.layers[1].current_ratio = 0.3;
        let err = search
            .search(
                &pruned,
                &Budget::parse("macs/2").unwrap(),
                Objective::Maximize,
                &mut toy(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer 'b' is already pruned"), "{err}");
        // Every layer at 0.8 leaves 0.2 of the MACs: ten times fewer is out of reach.
        let err = search
            .search(
                &space(),
                &Budget::parse("macs/10").unwrap(),
                Objective::Maximize,
                &mut toy(),
            )
            .unwrap_err();
        assert!(
            matches!(err, CompressError::BudgetUnreachable { .. }),
            "{err}"
        );
    }
}
