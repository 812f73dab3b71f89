//! [`Amc`]: the search loop (NNI `AMCTaskGenerator`): warm-up episodes with random actions,
//! then episodes driven by the DDPG agent, each one evaluated by the caller.

use std::collections::BTreeMap;

use crate::agent::{Ddpg, Transition};
use crate::env::{AmcEnv, AmcLayer, Measure, STATE_DIM};
use crate::{AmcConfig, AmcError, SearchError};

/// The evaluation a search calls once per episode: ratios by layer name in, a score out
/// (higher is better).
pub type Evaluate<'a, E> = dyn FnMut(&BTreeMap<String, f64>) -> Result<f64, E> + 'a;

/// One episode: the per-layer ratios it chose and what they scored.
#[derive(Debug, Clone, PartialEq)]
pub struct AmcEpisode {
    /// Ratio per layer name: the fraction of its output channels to remove.
    pub ratios: BTreeMap<String, f64>,
    /// The evaluation's score (higher is better, e.g. accuracy as a fraction).
    pub score: f64,
    /// The layers' remaining cost under the modelled costs, as a fraction of their dense cost.
    pub remaining: f64,
    /// Whether the actions were warm-up random ones (else the agent's, with noise).
    pub warmup: bool,
}

/// What a search did: every episode in order, and which was best.
#[derive(Debug, Clone, PartialEq)]
pub struct AmcOutcome {
    /// Every episode, in order.
    pub episodes: Vec<AmcEpisode>,
    /// Index of the best-scoring episode (the first of equal scores).
    pub best: usize,
    /// How many of the first episodes were warm-up.
    pub warmup: usize,
    /// The layers' dense cost, summed (FLOPs or parameters).
    pub dense_cost: f64,
    /// The cost every episode had to remove.
    pub target_removal: f64,
    /// The ratios the final actor picks without exploration noise, corrected like every
    /// episode's (one more walk over the layers, not evaluated).
    pub policy: BTreeMap<String, f64>,
}

impl AmcOutcome {
    /// The best episode.
    pub fn best(&self) -> &AmcEpisode {
        &self.episodes[self.best]
    }
}

/// AMC (He et al., "AMC: AutoML for Model Compression and Acceleration on Mobile Devices",
/// ECCV 2018; NNI v2.10 `AMCPruner`): a DDPG agent walks the layers in order and picks each
/// layer's pruning ratio from its state; the action is corrected so the episode meets the
/// budget; the caller evaluates the episode's ratios; the score minus 1 is every step's reward.
#[derive(Debug, Clone, PartialEq)]
pub struct Amc {
    config: AmcConfig,
}

impl Amc {
    /// A search with these settings.
    ///
    /// # Errors
    /// [`AmcError::InvalidConfig`] naming the first key out of range.
    pub fn new(config: AmcConfig) -> Result<Self, AmcError> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The settings.
    pub fn config(&self) -> &AmcConfig {
        &self.config
    }

    /// Search per-layer ratios that remove `budget_fraction` of the layers' summed cost
    /// (NNI's `total_sparsity`: 0.5 keeps half), counted in MACs when `measure_is_flops`, else
    /// in parameters. `evaluate` scores one episode's ratios (higher is better); it is called
    /// once per episode, `config.episodes` times. The same config and inputs give the same
    /// outcome.
    ///
    /// # Errors
    /// [`SearchError::Invalid`] for bad layers or budget (see [`AmcEnv::new`]);
    /// [`SearchError::Evaluate`] with the episode when `evaluate` fails;
    /// [`SearchError::NonFiniteScore`] when it returns NaN or an infinity.
    pub fn search<E>(
        &self,
        layers: &[AmcLayer],
        budget_fraction: f64,
        measure_is_flops: bool,
        evaluate: &mut Evaluate<'_, E>,
    ) -> Result<AmcOutcome, SearchError<E>> {
        let measure = if measure_is_flops {
            Measure::Flops
        } else {
            Measure::Params
        };
        let mut env = AmcEnv::new(layers, budget_fraction, measure)?;
        let config = &self.config;
        let warmup = config.warmup_episodes();
        let mut agent = Ddpg::new(config, config.replay_per_layer * env.len());
        let mut episodes = Vec::with_capacity(config.episodes);
        let mut steps = Vec::with_capacity(env.len());
        for episode in 0..config.episodes {
            let exploring = episode < warmup;
            let mut state = env.reset();
            steps.clear();
            loop {
                let action = if exploring {
                    agent.random_action()
                } else {
                    agent.select_action(&state, episode - warmup)
                };
                let step = env.step(action);
                let done = step.next_state.is_none();
                let next_state = step.next_state.unwrap_or([0.0; STATE_DIM]);
                steps.push((state, step.ratio, next_state, done));
                if done {
                    break;
                }
                state = next_state;
            }
            let ratios = env.ratios();
            let score =
                evaluate(&ratios).map_err(|source| SearchError::Evaluate { episode, source })?;
            if !score.is_finite() {
                return Err(SearchError::NonFiniteScore { episode, score });
            }
            let reward = score - 1.0;
            for &(state, action, next_state, done) in &steps {
                agent.observe(Transition {
                    state,
                    action,
                    reward,
                    next_state,
                    done,
                });
                if !exploring {
                    agent.update_policy();
                }
            }
            episodes.push(AmcEpisode {
                ratios,
                score,
                remaining: env.remaining_fraction(),
                warmup: exploring,
            });
        }
        let best = episodes.iter().enumerate().fold(0, |best, (i, e)| {
            if e.score > episodes[best].score {
                i
            } else {
                best
            }
        });
        let mut state = env.reset();
        while let Some(next) = env.step(agent.policy(&state)).next_state {
            state = next;
        }
        Ok(AmcOutcome {
            policy: env.ratios(),
            episodes,
            best,
            warmup: warmup.min(config.episodes),
            dense_cost: env.dense_cost(),
            target_removal: env.target_removal(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// Four layers of equal FLOPs; removing a fraction `r_i` of layer `i` costs `r_i * w_i`.
    const WEIGHTS: [f64; 4] = [0.05, 0.6, 0.1, 0.4];

    fn toy_layers() -> Vec<AmcLayer> {
        (0..4)
            .map(|i| {
                AmcLayer::new(format!("layer{i}"), "Conv2d", 1000, 100)
                    .with_channels(16, 16)
                    .with_kernel(3, 1)
                    .with_input_size(64)
            })
            .collect()
    }

    fn toy_score(ratios: &BTreeMap<String, f64>) -> Result<f64, Infallible> {
        Ok(1.0
            - (0..4)
                .map(|i| ratios[&format!("layer{i}")] * WEIGHTS[i])
                .sum::<f64>())
    }

    #[test]
    fn the_agent_beats_its_random_warm_up() {
        // Remove half the FLOPs with at most 0.8 per layer: the optimum prunes layers 0 and 2 to
        // 0.8 and layer 3 to 0.4, scoring 1 - 0.04 - 0.08 - 0.16 = 0.72; pruning in layer order
        // as far as allowed (an actor stuck at 1) scores 0.44. NNI's networks and rates, 200
        // episodes of which 50 warm-up, three seeds: DDPG can get stuck on a seed, so the claims
        // are on the pool. Measured: warm-up means 0.42 0.44 0.41, last-20 means 0.64 0.69 0.44;
        // warm-up bests 0.641 0.662 0.613, agent bests 0.715 0.716 0.669.
        let best = |es: &[AmcEpisode]| es.iter().map(|e| e.score).fold(f64::MIN, f64::max);
        let mean = |es: &[AmcEpisode]| es.iter().map(|e| e.score).sum::<f64>() / es.len() as f64;
        let (mut warm_means, mut last_means, mut wins) = (0.0, 0.0, 0);
        let (mut warm_best, mut agent_best) = (f64::MIN, f64::MIN);
        for seed in 0..3 {
            let config = AmcConfig {
                episodes: 200,
                warmup: Some(50),
                seed,
                ..Default::default()
            };
            let outcome = Amc::new(config)
                .unwrap()
                .search(&toy_layers(), 0.5, true, &mut toy_score)
                .unwrap();
            let (warm, learned) = outcome.episodes.split_at(outcome.warmup);
            assert_eq!((warm.len(), learned.len()), (50, 150));
            assert!(warm.iter().all(|e| e.warmup) && learned.iter().all(|e| !e.warmup));
            let last = &learned[learned.len() - 20..];
            eprintln!(
                "seed {seed}: warm-up best {:.4} mean {:.4}; agent best {:.4}, last 20 mean {:.4}",
                best(warm),
                mean(warm),
                best(learned),
                mean(last)
            );
            warm_means += mean(warm) / 3.0;
            last_means += mean(last) / 3.0;
            wins += usize::from(best(learned) > best(warm));
            warm_best = warm_best.max(best(warm));
            agent_best = agent_best.max(best(learned));
            assert!(outcome.best().score <= 0.72 + 1e-9);
        }
        assert!(
            last_means > warm_means + 0.1,
            "last-20 mean {last_means}, warm-up mean {warm_means}"
        );
        assert!(
            wins >= 2,
            "the agent's best beat the warm-up's in {wins} of 3 seeds"
        );
        assert!(
            agent_best > warm_best,
            "agent best {agent_best}, warm-up best {warm_best}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_ratios() {
        let layers = toy_layers();
        let config = AmcConfig {
            episodes: 12,
            warmup: Some(4),
            hidden1: 32,
            hidden2: 32,
            batch_size: 8,
            seed: 11,
            ..Default::default()
        };
        let run = |config: &AmcConfig| {
            Amc::new(config.clone())
                .unwrap()
                .search(&layers, 0.4, false, &mut toy_score)
                .unwrap()
        };
        let (a, b) = (run(&config), run(&config));
        assert_eq!(a, b);
        let c = run(&AmcConfig { seed: 12, ..config });
        assert_ne!(a.episodes[0].ratios, c.episodes[0].ratios);
        assert_ne!(a.episodes[11].ratios, c.episodes[11].ratios);
    }

    #[test]
    fn every_episode_meets_the_budget_and_the_outcome_is_complete() {
        let config = AmcConfig {
            episodes: 10,
            warmup: Some(5),
            hidden1: 8,
            hidden2: 8,
            ..Default::default()
        };
        let mut calls = 0;
        let outcome = Amc::new(config)
            .unwrap()
            .search(&toy_layers(), 0.3, true, &mut |r: &BTreeMap<
                String,
                f64,
            >| {
                calls += 1;
                toy_score(r)
            })
            .unwrap();
        assert_eq!(calls, 10);
        assert_eq!(outcome.episodes.len(), 10);
        assert_eq!(outcome.episodes.iter().filter(|e| e.warmup).count(), 5);
        assert_eq!(
            (outcome.dense_cost, outcome.target_removal),
            (4000.0, 0.3 * 4000.0)
        );
        for e in &outcome.episodes {
            assert!((e.remaining - 0.7).abs() < 1e-9, "{e:?}");
            assert_eq!(e.ratios.len(), 4);
            assert_eq!(e.score, toy_score(&e.ratios).unwrap());
        }
        assert_eq!(outcome.policy.len(), 4);
        let kept: f64 = outcome.policy.values().map(|r| 1000.0 * (1.0 - r)).sum();
        assert!(
            (kept / 4000.0 - 0.7).abs() < 1e-9,
            "the policy's ratios meet the budget too"
        );
        let top = outcome
            .episodes
            .iter()
            .map(|e| e.score)
            .fold(f64::MIN, f64::max);
        assert_eq!(outcome.best().score, top);
    }

    #[test]
    fn a_failing_or_non_finite_evaluation_names_the_episode() {
        let amc = Amc::new(AmcConfig {
            episodes: 5,
            hidden1: 4,
            hidden2: 4,
            ..Default::default()
        })
        .unwrap();
        let mut n = 0;
        let err = amc
            .search(&toy_layers(), 0.5, true, &mut |_| {
                n += 1;
                if n == 3 {
                    Err(AmcError::EmptySearchSpace)
                } else {
                    Ok(0.5)
                }
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "AMC episode 2: evaluating its ratios failed: AMC needs at least one layer to prune: the search space is empty"
        );
        let err = amc
            .search(&toy_layers(), 0.5, true, &mut |_| {
                Ok::<_, Infallible>(f64::NAN)
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "AMC episode 0: the evaluation returned NaN, expected a finite score"
        );
        let err = amc
            .search(&[], 0.5, true, &mut |_| Ok::<_, Infallible>(1.0))
            .unwrap_err();
        assert!(matches!(
            err,
            SearchError::Invalid(AmcError::EmptySearchSpace)
        ));
    }
}
