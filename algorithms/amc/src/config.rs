//! [`AmcConfig`]: the search's and the DDPG agent's settings, with NNI v2.10's defaults.

use serde::{Deserialize, Serialize};

use crate::AmcError;

/// How AMC searches. Defaults are NNI v2.10's (`AMCTaskGenerator` and `DDPG.ddpg_params`, the
/// values its `amc_pruning_torch.py` example passes), except where a field says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmcConfig {
    /// Episodes (one per-layer ratio vector each, evaluated once). Default 400 (NNI's example
    /// `total_episode`); at least 1.
    pub episodes: usize,
    /// Warm-up episodes with uniform random actions, before the agent acts and learns. Default
    /// `None`: a quarter of `episodes` (NNI's `AMCTaskGenerator` when `warmup` is not given);
    /// at most `episodes`.
    pub warmup: Option<usize>,
    /// Width of the first hidden layer of the actor and the critic. Default 300; at least 1.
    pub hidden1: usize,
    /// Width of the second hidden layer. Default 300; at least 1.
    pub hidden2: usize,
    /// Adam learning rate of the actor. Default 1e-4; positive.
    pub lr_actor: f64,
    /// Adam learning rate of the critic. Default 1e-3; positive.
    pub lr_critic: f64,
    /// Transitions per policy update. Default 64; at least 1.
    pub batch_size: usize,
    /// Replay buffer size per layer: the buffer holds `replay_per_layer * layers` transitions
    /// (original AMC's `rmsize * n_layers`; NNI v2.10 keeps 100 in all). Default 100; at least 1.
    pub replay_per_layer: usize,
    /// Soft target update rate `target <- (1 - tau) target + tau source`. Default 0.01; in (0, 1].
    pub tau: f64,
    /// Discount of the next state's value. Default 1.0; in [0, 1].
    pub discount: f64,
    /// Exploration noise at the first agent episode (standard deviation of the truncated
    /// normal around the actor's output). Default 0.5; positive.
    pub init_delta: f64,
    /// Per-episode decay of the noise: `sigma = init_delta * delta_decay^(episode - warmup)`.
    /// Default 0.99; in (0, 1].
    pub delta_decay: f64,
    /// Rate of the reward baseline, a moving average of batch mean rewards subtracted from
    /// each batch's rewards. Default 0.5; in (0, 1].
    pub moving_alpha: f64,
    /// Seed of the agent's networks, its exploration and its replay sampling. Default 0.
    pub seed: u64,
}

impl Default for AmcConfig {
    fn default() -> Self {
        Self {
            episodes: 400,
            warmup: None,
            hidden1: 300,
            hidden2: 300,
            lr_actor: 1e-4,
            lr_critic: 1e-3,
            batch_size: 64,
            replay_per_layer: 100,
            tau: 0.01,
            discount: 1.0,
            init_delta: 0.5,
            delta_decay: 0.99,
            moving_alpha: 0.5,
            seed: 0,
        }
    }
}

impl AmcConfig {
    /// The warm-up length in effect: `warmup`, or a quarter of `episodes`.
    pub fn warmup_episodes(&self) -> usize {
        self.warmup.unwrap_or(self.episodes / 4)
    }

    /// Check every field against its documented range.
    ///
    /// # Errors
    /// [`AmcError::InvalidConfig`] naming the first key out of range.
    pub fn validate(&self) -> Result<(), AmcError> {
        fn bad(key: &'static str, value: impl ToString, expected: &'static str) -> AmcError {
            AmcError::InvalidConfig {
                key,
                value: value.to_string(),
                expected,
            }
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let unit = |x: f64| x.is_finite() && x > 0.0 && x <= 1.0;
        if self.episodes == 0 {
            return Err(bad("episodes", self.episodes, "at least 1"));
        }
        if let Some(w) = self.warmup
            && w > self.episodes
        {
            return Err(bad("warmup", w, "at most `episodes`"));
        }
        for (key, v) in [
            ("hidden1", self.hidden1),
            ("hidden2", self.hidden2),
            ("batch_size", self.batch_size),
            ("replay_per_layer", self.replay_per_layer),
        ] {
            if v == 0 {
                return Err(bad(key, v, "at least 1"));
            }
        }
        for (key, v) in [
            ("lr_actor", self.lr_actor),
            ("lr_critic", self.lr_critic),
            ("init_delta", self.init_delta),
        ] {
            if !positive(v) {
                return Err(bad(key, v, "a finite number above 0"));
            }
        }
        for (key, v) in [
            ("tau", self.tau),
            ("delta_decay", self.delta_decay),
            ("moving_alpha", self.moving_alpha),
        ] {
            if !unit(v) {
                return Err(bad(key, v, "a number in (0, 1]"));
            }
        }
        if !(self.discount.is_finite() && (0.0..=1.0).contains(&self.discount)) {
            return Err(bad("discount", self.discount, "a number in [0, 1]"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_nnis_and_valid() {
        let c = AmcConfig::default();
        assert_eq!((c.hidden1, c.hidden2, c.batch_size), (300, 300, 64));
        assert_eq!(
            (c.lr_actor, c.lr_critic, c.tau, c.discount),
            (1e-4, 1e-3, 0.01, 1.0)
        );
        assert_eq!(
            (c.init_delta, c.delta_decay, c.moving_alpha),
            (0.5, 0.99, 0.5)
        );
        assert_eq!(c.warmup_episodes(), 100);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn out_of_range_keys_are_named() {
        let cases: [(AmcConfig, &str); 5] = [
            (
                AmcConfig {
                    episodes: 0,
                    ..Default::default()
                },
                "AMC config key `episodes` = 0 is invalid: expected at least 1",
            ),
            (
                AmcConfig {
                    warmup: Some(401),
                    ..Default::default()
                },
                "AMC config key `warmup` = 401 is invalid: expected at most `episodes`",
            ),
            (
                AmcConfig {
                    tau: 0.0,
                    ..Default::default()
                },
                "AMC config key `tau` = 0 is invalid: expected a number in (0, 1]",
            ),
            (
                AmcConfig {
                    lr_actor: f64::NAN,
                    ..Default::default()
                },
                "AMC config key `lr_actor` = NaN is invalid: expected a finite number above 0",
            ),
            (
                AmcConfig {
                    discount: 1.5,
                    ..Default::default()
                },
                "AMC config key `discount` = 1.5 is invalid: expected a number in [0, 1]",
            ),
        ];
        for (config, message) in cases {
            assert_eq!(config.validate().unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn unknown_keys_are_rejected_when_deserialising() {
        let err = serde_json::from_str::<AmcConfig>("{\"episodes\": 10, \"epsilon\": 5}")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown field `epsilon`"), "{err}");
        let parsed: AmcConfig = serde_json::from_str("{\"episodes\": 10, \"seed\": 7}").unwrap();
        assert_eq!(
            (parsed.episodes, parsed.seed, parsed.warmup_episodes()),
            (10, 7, 2)
        );
    }
}
