//! The DDPG agent (NNI `agent.py`, `memory.py`): an actor and a critic in Burn, their target
//! copies, a replay buffer and the exploration noise.

use std::collections::VecDeque;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::AmcConfig;
use crate::env::{STATE_DIM, State};

/// The policy network: `state -> 300 -> 300 -> 1`, ReLU between, sigmoid at the end, so an
/// action is a ratio in (0, 1).
#[derive(Module, Debug)]
pub struct Actor {
    /// `[STATE_DIM, hidden1]`.
    pub fc1: Linear,
    /// `[hidden1, hidden2]`.
    pub fc2: Linear,
    /// `[hidden2, 1]`.
    pub fc3: Linear,
}

impl Actor {
    /// Actions for a batch of states.
    ///
    /// # Shapes
    /// `states` `[batch, STATE_DIM]` -> `[batch, 1]`.
    pub fn forward(&self, states: Tensor<2>) -> Tensor<2> {
        let x = relu(self.fc1.forward(states));
        let x = relu(self.fc2.forward(x));
        sigmoid(self.fc3.forward(x))
    }
}

/// The value network: `ReLU(W11 s + W12 a) -> 300 -> 1`.
#[derive(Module, Debug)]
pub struct Critic {
    /// State branch `[STATE_DIM, hidden1]`.
    pub fc11: Linear,
    /// Action branch `[1, hidden1]`.
    pub fc12: Linear,
    /// `[hidden1, hidden2]`.
    pub fc2: Linear,
    /// `[hidden2, 1]`.
    pub fc3: Linear,
}

impl Critic {
    /// Q-values of a batch of (state, action) pairs.
    ///
    /// # Shapes
    /// `states` `[batch, STATE_DIM]`, `actions` `[batch, 1]` -> `[batch, 1]`.
    pub fn forward(&self, states: Tensor<2>, actions: Tensor<2>) -> Tensor<2> {
        let x = relu(self.fc11.forward(states) + self.fc12.forward(actions));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}

/// One step of an episode, as the replay buffer keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The state the action was taken in.
    pub state: State,
    /// The action taken (after correction: the ratio the layer got).
    pub action: f64,
    /// The episode's reward, `score - 1`, given to each of its steps.
    pub reward: f64,
    /// The next layer's state (ignored when `done`).
    pub next_state: State,
    /// Whether this was the episode's last step.
    pub done: bool,
}

/// Losses of one policy update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateLosses {
    /// The critic's mean squared TD error, before its step.
    pub critic: f64,
    /// The actor's loss `-mean(Q(s, actor(s)))`, before its step.
    pub actor: f64,
}

/// The DDPG agent. Networks train on `Device::flex().autodiff()`; the target networks live on
/// the plain device. All randomness (initial weights, exploration, replay sampling) comes from
/// one ChaCha stream seeded by [`AmcConfig::seed`], so a run is reproducible.
pub struct Ddpg {
    device: Device,
    actor: Actor,
    critic: Critic,
    actor_target: Actor,
    critic_target: Critic,
    actor_optim: ModuleOptimizer,
    critic_optim: ModuleOptimizer,
    memory: VecDeque<Transition>,
    capacity: usize,
    moving_average: Option<f64>,
    rng: ChaCha8Rng,
    config: AmcConfig,
}

impl std::fmt::Debug for Ddpg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ddpg")
            .field("memory", &self.memory.len())
            .field("capacity", &self.capacity)
            .field("moving_average", &self.moving_average)
            .finish_non_exhaustive()
    }
}

impl Ddpg {
    /// A fresh agent whose replay buffer holds `capacity` transitions. Weights are drawn like
    /// PyTorch's `nn.Linear` default (NNI's): `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
    /// The config is assumed valid ([`AmcConfig::validate`]).
    pub fn new(config: &AmcConfig, capacity: usize) -> Self {
        let device = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let (h1, h2) = (config.hidden1, config.hidden2);
        let actor = Actor {
            fc1: linear(STATE_DIM, h1, &mut rng, &device),
            fc2: linear(h1, h2, &mut rng, &device),
            fc3: linear(h2, 1, &mut rng, &device),
        };
        let critic = Critic {
            fc11: linear(STATE_DIM, h1, &mut rng, &device),
            fc12: linear(1, h1, &mut rng, &device),
            fc2: linear(h1, h2, &mut rng, &device),
            fc3: linear(h2, 1, &mut rng, &device),
        };
        // Adam with PyTorch's epsilon (Burn's default is 1e-5).
        let adam = AdamConfig::new().with_epsilon(1e-8);
        Self {
            actor_target: actor.valid(),
            critic_target: critic.valid(),
            actor,
            critic,
            actor_optim: adam.init(),
            critic_optim: adam.init(),
            memory: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
            moving_average: None,
            rng,
            config: config.clone(),
            device,
        }
    }

    /// A warm-up action: uniform in [0, 1).
    pub fn random_action(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// The actor's action for `state`, without noise.
    pub fn policy(&self, state: &State) -> f64 {
        let actor = self.actor.valid();
        let device = Device::flex();
        let out = actor.forward(states_tensor(std::slice::from_ref(state), &device));
        values(out)[0]
    }

    /// An exploring action: the actor's output plus truncated-normal noise in [0, 1], with
    /// `sigma = init_delta * delta_decay^k` at the `k`-th episode after the warm-up.
    pub fn select_action(&mut self, state: &State, k: usize) -> f64 {
        let mu = self.policy(state);
        let sigma = self.config.init_delta
            * self
                .config
                .delta_decay
                .powi(k.min(i32::MAX as usize) as i32);
        truncated_normal(&mut self.rng, mu, sigma, 0.0, 1.0)
    }

    /// Keep a transition (the oldest goes when the buffer is full).
    pub fn observe(&mut self, transition: Transition) {
        if self.memory.len() == self.capacity {
            self.memory.pop_front();
        }
        self.memory.push_back(transition);
    }

    /// Transitions held.
    pub fn memory_len(&self) -> usize {
        self.memory.len()
    }

    /// The reward baseline now (`None` before the first update).
    pub fn moving_average(&self) -> Option<f64> {
        self.moving_average
    }

    /// One DDPG update from a batch of the replay buffer (NNI `update_policy`): rewards minus
    /// the moving-average baseline, critic towards `r + gamma * (1 - done) * Q'(s', mu'(s'))`,
    /// actor towards higher `Q(s, mu(s))`, then soft target updates. `None` when the buffer is
    /// empty.
    pub fn update_policy(&mut self) -> Option<UpdateLosses> {
        if self.memory.is_empty() {
            return None;
        }
        let batch = self.sample();
        let n = batch.len();
        let rewards: Vec<f64> = batch.iter().map(|t| t.reward).collect();
        let mean = rewards.iter().sum::<f64>() / n as f64;
        let baseline = match self.moving_average {
            None => mean,
            Some(ma) => ma + self.config.moving_alpha * (mean - ma),
        };
        self.moving_average = Some(baseline);

        let plain = Device::flex();
        let next_states = states_tensor(
            &batch.iter().map(|t| t.next_state).collect::<Vec<_>>(),
            &plain,
        );
        let next_q = values(
            self.critic_target
                .forward(next_states.clone(), self.actor_target.forward(next_states)),
        );
        let targets: Vec<f32> = batch
            .iter()
            .zip(&next_q)
            .map(|(t, q)| {
                let live = if t.done { 0.0 } else { 1.0 };
                (t.reward - baseline + self.config.discount * live * q) as f32
            })
            .collect();
        let targets = Tensor::<2>::from_data(TensorData::new(targets, [n, 1]), &self.device);
        let states = states_tensor(
            &batch.iter().map(|t| t.state).collect::<Vec<_>>(),
            &self.device,
        );
        let actions: Vec<f32> = batch.iter().map(|t| t.action as f32).collect();
        let actions = Tensor::<2>::from_data(TensorData::new(actions, [n, 1]), &self.device);

        let q = self.critic.forward(states.clone(), actions);
        let critic_loss = (q - targets).powf_scalar(2.0).mean();
        let critic_value = scalar(critic_loss.clone());
        let grads = GradientsParams::from_grads(critic_loss.backward(), &self.critic);
        self.critic = self
            .critic_optim
            .step(self.config.lr_critic, self.critic.clone(), grads);

        let actor_loss = self
            .critic
            .forward(states.clone(), self.actor.forward(states))
            .mean()
            .neg();
        let actor_value = scalar(actor_loss.clone());
        let grads = GradientsParams::from_grads(actor_loss.backward(), &self.actor);
        self.actor = self
            .actor_optim
            .step(self.config.lr_actor, self.actor.clone(), grads);

        let tau = self.config.tau;
        self.actor_target = soft_update_actor(self.actor_target.clone(), &self.actor.valid(), tau);
        self.critic_target =
            soft_update_critic(self.critic_target.clone(), &self.critic.valid(), tau);
        Some(UpdateLosses {
            critic: critic_value,
            actor: actor_value,
        })
    }

    /// The target actor (on the plain device).
    pub fn actor_target(&self) -> &Actor {
        &self.actor_target
    }

    /// The trained actor (on the autodiff device).
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// A batch: without replacement when the buffer holds enough, else with (NNI's
    /// `sample_batch_indexes`).
    fn sample(&mut self) -> Vec<Transition> {
        let len = self.memory.len();
        let size = self.config.batch_size;
        let indices: Vec<usize> = if len >= size {
            rand::seq::index::sample(&mut self.rng, len, size).into_vec()
        } else {
            (0..size).map(|_| self.rng.random_range(0..len)).collect()
        };
        indices
            .into_iter()
            .map(|i| self.memory[i].clone())
            .collect()
    }
}

/// A Linear layer with PyTorch's default initialisation drawn from `rng`.
fn linear(d_in: usize, d_out: usize, rng: &mut ChaCha8Rng, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f64).sqrt();
    let mut draw = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
            .collect()
    };
    let weight = draw(d_in * d_out);
    let bias = draw(d_out);
    Linear {
        weight: Param::from_data(TensorData::new(weight, [d_in, d_out]), device),
        bias: Some(Param::from_data(TensorData::new(bias, [d_out]), device)),
    }
}

/// `target <- (1 - tau) * target + tau * source`, parameter by parameter.
fn blend(target: Linear, source: &Linear, tau: f64) -> Linear {
    let mix = |t: Tensor<2>, s: Tensor<2>| t.mul_scalar(1.0 - tau) + s.mul_scalar(tau);
    let w = source.weight.val();
    let weight = target.weight.map(|t| mix(t, w));
    let bias = match (target.bias, &source.bias) {
        (Some(tb), Some(sb)) => {
            let b = sb.val();
            Some(tb.map(|t| t.mul_scalar(1.0 - tau) + b.mul_scalar(tau)))
        }
        (tb, _) => tb,
    };
    Linear { weight, bias }
}

fn soft_update_actor(target: Actor, source: &Actor, tau: f64) -> Actor {
    Actor {
        fc1: blend(target.fc1, &source.fc1, tau),
        fc2: blend(target.fc2, &source.fc2, tau),
        fc3: blend(target.fc3, &source.fc3, tau),
    }
}

fn soft_update_critic(target: Critic, source: &Critic, tau: f64) -> Critic {
    Critic {
        fc11: blend(target.fc11, &source.fc11, tau),
        fc12: blend(target.fc12, &source.fc12, tau),
        fc2: blend(target.fc2, &source.fc2, tau),
        fc3: blend(target.fc3, &source.fc3, tau),
    }
}

fn states_tensor(states: &[State], device: &Device) -> Tensor<2> {
    let flat: Vec<f32> = states.iter().flatten().map(|x| *x as f32).collect();
    Tensor::from_data(TensorData::new(flat, [states.len(), STATE_DIM]), device)
}

/// A `[batch, 1]` tensor's values.
fn values(tensor: Tensor<2>) -> Vec<f64> {
    tensor
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("the agent's tensors are f32")
        .into_iter()
        .map(f64::from)
        .collect()
}

fn scalar(tensor: Tensor<1>) -> f64 {
    f64::from(tensor.into_scalar::<f32>())
}

/// A standard normal draw (Box-Muller).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A draw from `N(mu, sigma)` restricted to `[lo, hi]`, by rejection (scipy's `truncnorm` in
/// NNI). `mu` is the actor's output, inside the interval, so at least a third of the draws are
/// kept for `sigma <= 0.5`; after 1000 misses the clamped mean is returned.
pub(crate) fn truncated_normal(rng: &mut ChaCha8Rng, mu: f64, sigma: f64, lo: f64, hi: f64) -> f64 {
    for _ in 0..1000 {
        let x = mu + sigma * standard_normal(rng);
        if (lo..=hi).contains(&x) {
            return x;
        }
    }
    mu.clamp(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> AmcConfig {
        AmcConfig {
            hidden1: 16,
            hidden2: 16,
            batch_size: 8,
            ..Default::default()
        }
    }

    fn weights(linear: &Linear) -> Vec<f32> {
        linear
            .weight
            .val()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap()
    }

    #[test]
    fn the_networks_have_the_documented_shapes_and_ranges() {
        let agent = Ddpg::new(&AmcConfig::default(), 10);
        assert_eq!(agent.actor.fc1.weight.shape().to_vec(), [STATE_DIM, 300]);
        assert_eq!(agent.actor.fc2.weight.shape().to_vec(), [300, 300]);
        assert_eq!(agent.actor.fc3.weight.shape().to_vec(), [300, 1]);
        assert_eq!(agent.critic.fc12.weight.shape().to_vec(), [1, 300]);
        let bound = 1.0 / (STATE_DIM as f32).sqrt();
        assert!(weights(&agent.actor.fc1).iter().all(|w| w.abs() <= bound));
        let device = Device::flex();
        let states = states_tensor(
            &[[0.0; STATE_DIM], [1.0; STATE_DIM], [0.5; STATE_DIM]],
            &device,
        );
        let actions = values(agent.actor.valid().forward(states.clone()));
        assert_eq!(actions.len(), 3);
        assert!(actions.iter().all(|a| *a > 0.0 && *a < 1.0), "{actions:?}");
        let q = agent
            .critic
            .valid()
            .forward(states, Tensor::zeros([3, 1], &device));
        assert_eq!(q.shape().to_vec(), [3, 1]);
    }

    #[test]
    fn the_same_seed_gives_the_same_weights_and_actions() {
        let config = AmcConfig { seed: 3, ..small() };
        let (mut a, mut b) = (Ddpg::new(&config, 10), Ddpg::new(&config, 10));
        assert_eq!(weights(&a.critic.fc2), weights(&b.critic.fc2));
        let s = [0.25; STATE_DIM];
        assert_eq!(a.select_action(&s, 0), b.select_action(&s, 0));
        assert_eq!(a.random_action(), b.random_action());
        let mut c = Ddpg::new(&AmcConfig { seed: 4, ..small() }, 10);
        assert_ne!(weights(&a.critic.fc2), weights(&c.critic.fc2));
        assert_ne!(a.random_action(), c.random_action());
    }

    #[test]
    fn truncated_normal_draws_stay_in_the_interval_around_the_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let draws: Vec<f64> = (0..4000)
            .map(|_| truncated_normal(&mut rng, 0.5, 0.1, 0.0, 1.0))
            .collect();
        assert!(draws.iter().all(|x| (0.0..=1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let sd =
            (draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / draws.len() as f64).sqrt();
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert!((sd - 0.1).abs() < 0.01, "sd {sd}");
        // Near the edge the mass is cut off: every draw of N(0, 0.5) kept is >= 0.
        let edge: Vec<f64> = (0..1000)
            .map(|_| truncated_normal(&mut rng, 0.0, 0.5, 0.0, 1.0))
            .collect();
        assert!(edge.iter().all(|x| (0.0..=1.0).contains(x)));
        assert!(edge.iter().sum::<f64>() / 1000.0 > 0.3);
    }

    #[test]
    fn the_replay_buffer_drops_the_oldest_transition_when_full() {
        let mut agent = Ddpg::new(&small(), 3);
        for i in 0..5 {
            agent.observe(Transition {
                state: [i as f64; STATE_DIM],
                action: 0.1 * i as f64,
                reward: -1.0,
                next_state: [0.0; STATE_DIM],
                done: true,
            });
        }
        assert_eq!(agent.memory_len(), 3);
        assert_eq!(agent.memory[0].state[0], 2.0);
        assert_eq!(agent.memory[2].action, 0.4);
    }

    #[test]
    fn soft_updates_move_the_targets_by_tau() {
        let mut agent = Ddpg::new(
            &AmcConfig {
                tau: 0.25,
                ..small()
            },
            50,
        );
        let before_target = weights(&agent.actor_target.fc3);
        for i in 0..4 {
            agent.observe(Transition {
                state: [0.1 * i as f64; STATE_DIM],
                action: 0.5,
                reward: -0.5,
                next_state: [0.0; STATE_DIM],
                done: true,
            });
        }
        agent.update_policy().unwrap();
        let source = weights(&agent.actor.fc3);
        let after = weights(&agent.actor_target.fc3);
        for ((t0, s), t1) in before_target.iter().zip(&source).zip(&after) {
            let expected = 0.75 * t0 + 0.25 * s;
            assert!((t1 - expected).abs() < 1e-6, "{t1} vs {expected}");
        }
        assert_ne!(before_target, after);
    }

    #[test]
    fn updates_fit_the_critic_to_terminal_rewards() {
        // One-step episodes: Q(s, a) should approach the reward minus the baseline. Rewards
        // depend on the action, so the baseline cannot absorb them.
        let config = AmcConfig {
            lr_critic: 1e-2,
            lr_actor: 1e-3,
            batch_size: 16,
            ..small()
        };
        let mut agent = Ddpg::new(&config, 64);
        for i in 0..16 {
            let action = i as f64 / 15.0;
            agent.observe(Transition {
                state: [0.5; STATE_DIM],
                action,
                reward: -action,
                next_state: [0.0; STATE_DIM],
                done: true,
            });
        }
        let policy_before = agent.policy(&[0.5; STATE_DIM]);
        let first = agent.update_policy().unwrap().critic;
        let mut last = first;
        for _ in 0..200 {
            last = agent.update_policy().unwrap().critic;
        }
        assert!(last < first / 10.0, "critic loss {first} -> {last}");
        // The actor moved towards smaller actions, the ones with the larger reward.
        let policy_after = agent.policy(&[0.5; STATE_DIM]);
        assert!(
            policy_after < policy_before - 0.1,
            "{policy_before} -> {policy_after}"
        );
        assert!((agent.moving_average().unwrap() + 0.5).abs() < 1e-12);
    }
}
