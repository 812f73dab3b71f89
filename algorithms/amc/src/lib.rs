//! # search-amc: AMC, AutoML for Model Compression
//!
//! He et al., "AMC: AutoML for Model Compression and Acceleration on Mobile Devices" (ECCV
//! 2018), as NNI v2.10's `AMCPruner` runs it (`amc_pruner.py`, `tools/rl_env/amc_env.py`,
//! `tools/rl_env/agent.py`). A DDPG agent walks the prunable layers in order; for each it sees a
//! 10-feature state and proposes a ratio (the fraction of the layer's output channels to
//! remove); the action is corrected so the episode removes the budget; at the end of the
//! episode the caller scores the ratios and `score - 1` becomes every step's reward.
//!
//! The crate knows nothing about models: layers come in as [`AmcLayer`]s (costs, shapes, a
//! maximum ratio) and the evaluation is a callback from ratios to a score. The facade adapts
//! a real model (prune with the ratios, optionally fine-tune, measure accuracy).
//!
//! ## Contents
//! - [`correct_action`] / [`action_bounds`]: the budget correction (`amc_env.py` L58-85), pure.
//! - [`AmcEnv`]: the layers' cost model, the state features ([`STATE_FEATURES`]), one episode.
//! - [`Ddpg`]: actor `state -> 300 -> 300 -> 1` (sigmoid), critic
//!   `ReLU(W1 s + W2 a) -> 300 -> 1`, Adam (actor 1e-4, critic 1e-3), batch 64, tau 0.01,
//!   gamma 1, a replay buffer, rewards minus a moving-average baseline (alpha 0.5).
//! - [`Amc::search`]: warm-up episodes with `U(0, 1)` actions, then the agent's actions with
//!   truncated-normal noise `sigma = 0.5 * 0.99^(episode - warmup)`; every episode and the best.
//!
//! ## Config keys ([`AmcConfig`], NNI's defaults)
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `episodes` | 400 | episodes, one evaluation each |
//! | `warmup` | `episodes / 4` | random episodes before the agent acts |
//! | `hidden1`, `hidden2` | 300, 300 | hidden widths of both networks |
//! | `lr_actor`, `lr_critic` | 1e-4, 1e-3 | Adam learning rates |
//! | `batch_size` | 64 | transitions per update |
//! | `replay_per_layer` | 100 | replay capacity per layer |
//! | `tau` | 0.01 | soft target update rate |
//! | `discount` | 1.0 | gamma |
//! | `init_delta`, `delta_decay` | 0.5, 0.99 | exploration noise and its decay |
//! | `moving_alpha` | 0.5 | reward baseline rate |
//! | `seed` | 0 | the agent's random stream |
//!
//! ## Where this differs from NNI, and why
//! - **Next state.** NNI's `step` returns the *current* layer's row (with updated `reduced`,
//!   `rest`, `a_{t-1}`) and the agent picks the next layer's action from it; the original AMC
//!   code returns the *next* layer's row. We follow AMC: the agent sees the layer it prunes.
//! - **Headroom of later layers.** NNI's lower bound counts `current_j * max_j` for the later
//!   layers; we count `max(0, current_j - original_j * (1 - max_j))`. Equal while those layers are
//!   untouched; when a layer's input was pruned, NNI's term overstates what it can still remove
//!   and an episode can end over budget. Ours keeps "every episode ends within the budget".
//! - **Costs are modelled**, not re-measured on a pruned model each step: layer `j` with ratio
//!   `r_j`, fed by layer `p` ([`AmcLayer::input_from`]), costs `cost_j (1 - r_j)(1 - r_p)`. Output
//!   sizes are estimated as `out_channels * input_size / stride^2`. Ratios are continuous;
//!   rounding to whole channels is the caller's.
//! - **Constant feature columns** become 0 (NNI leaves them unnormalised, e.g. a stride of 2
//!   everywhere stays 2), so every feature lies in [0, 1].
//! - **Replay capacity** is `replay_per_layer * layers` (the original AMC's); NNI keeps 100
//!   transitions in all, a handful of episodes.
//! - **Warm-up count.** NNI runs `warmup + 1` random episodes (`episode <= warmup`) and its first
//!   agent episode already has `sigma = 0.5 * 0.99`; here exactly `warmup` random episodes, then
//!   `sigma = 0.5 * 0.99^k` from `k = 0`. Updates start after the first agent episode in both.
//! - **Randomness** is one seeded ChaCha stream (initial weights drawn like PyTorch's
//!   `nn.Linear`, exploration, replay sampling), not Burn's process-wide RNG, so runs are
//!   reproducible even while other code uses Burn's RNG. Adam uses PyTorch's epsilon 1e-8.
//! - **Per-layer maximum** defaults to 0.8 in [`AmcLayer::new`] (NNI's example and AMC's 20%
//!   floor; NNI's code default is 1.0, which may remove a whole layer).
//!
//! ```
//! use std::collections::BTreeMap;
//! use search_amc::{Amc, AmcConfig, AmcLayer};
//!
//! let layers = vec![
//!     AmcLayer::new("conv1", "Conv2d", 100, 10),
//!     AmcLayer::new("conv2", "Conv2d", 200, 20).with_input_from("conv1"),
//! ];
//! let config = AmcConfig { episodes: 4, warmup: Some(2), hidden1: 8, hidden2: 8, ..Default::default() };
//! let outcome = Amc::new(config)?.search(&layers, 0.5, true, &mut |ratios: &BTreeMap<String, f64>| {
//!     Ok::<_, std::convert::Infallible>(1.0 - ratios["conv2"] * 0.1)
//! })?;
//! assert_eq!(outcome.episodes.len(), 4);
//! assert!(outcome.best().remaining <= 0.5 + 1e-9);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod agent;
mod config;
mod correct;
mod env;
mod error;
mod registry;
mod search;

pub use agent::{Actor, Critic, Ddpg, Transition, UpdateLosses};
pub use config::AmcConfig;
pub use correct::{ActionBounds, BudgetState, action_bounds, correct_action};
pub use env::{AmcEnv, AmcLayer, Measure, STATE_DIM, STATE_FEATURES, State, Step};
pub use error::{AmcError, SearchError};
pub use registry::AmcSearch;
pub use search::{Amc, AmcEpisode, AmcOutcome, Evaluate};
