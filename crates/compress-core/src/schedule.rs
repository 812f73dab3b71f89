//! Sparsity schedules: the goal ratio at a step, for a final ratio.
//!
//! - [`Schedule`]: NNI's scheduled pruners (`pruning/scheduled_pruner.py`, `movement_pruner.py`),
//!   masks regenerated during one training run.
//! - [`IterativeSchedule`]: the task generators of NNI v2's iterative scheduler
//!   (`pruning/tools/task_generator.py`), one prune -> speedup -> fine-tune -> evaluate round per
//!   target, with [`compact_ratio`] converting a target for the already smaller model.

use std::fmt;
use std::str::FromStr;

use crate::{CompressError, Result};

/// A schedule of the sparse ratio over training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// NNI's `LinearPruner`: `final * t / T` at the `t`-th of `T` mask updates.
    Linear {
        /// Mask updates in all (`total_times`).
        total_times: usize,
    },
    /// NNI's `AGPPruner` (Zhu & Gupta, 2017): `final * (1 - (1 - t / T)^3)`.
    Agp {
        /// Mask updates in all (`total_times`).
        total_times: usize,
    },
    /// NNI's `MovementPruner`: nothing during `warmup_step` steps, then
    /// `final * (1 - (1 - k / K)^3)` with `k = step - warmup`, `K = cooldown_begin_step - warmup`,
    /// and `final` from `cooldown_begin_step` on.
    Movement {
        /// Steps before any pruning.
        warmup_step: usize,
        /// Step from which the final ratio holds.
        cooldown_begin_step: usize,
    },
}

impl Schedule {
    /// The goal ratio at update `t` (Linear, AGP: the `t`-th mask update, 1-based, capped at
    /// `total_times`; Movement: the training step).
    pub fn ratio(&self, final_ratio: f64, t: usize) -> f64 {
        let cubic = |frac: f64| final_ratio * (1.0 - (1.0 - frac.clamp(0.0, 1.0)).powi(3));
        match *self {
            Schedule::Linear { total_times } => {
                final_ratio * t.min(total_times) as f64 / total_times.max(1) as f64
            }
            Schedule::Agp { total_times } => cubic(t as f64 / total_times.max(1) as f64),
            Schedule::Movement {
                warmup_step,
                cooldown_begin_step,
            } => {
                if t < warmup_step {
                    0.0
                } else if t >= cooldown_begin_step {
                    final_ratio
                } else {
                    cubic(
                        (t - warmup_step) as f64
                            / (cooldown_begin_step - warmup_step).max(1) as f64,
                    )
                }
            }
        }
    }
}

/// The sparsity targets of NNI v2's iterative scheduler, each relative to the original model
/// (`tools/task_generator.py`, L26-162), for a total sparsity `S` over `N` iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IterativeSchedule {
    /// `s_i = i * S / N` for `i = 1..=N`.
    Linear,
    /// `s_i = (1 - (1 - i / N)^3) * S` for `i = 0..=N`; `i = 0` (sparsity 0) is a dense warm-up
    /// round.
    Agp,
    /// The lottery-ticket schedule: `s_i = 1 - (1 - S)^(i / N)` for `i = 1..=N`, pruning the same
    /// share of what is left each round.
    Lottery,
}

impl IterativeSchedule {
    /// Every schedule with its name as [`FromStr`] reads it.
    pub const ALL: [(IterativeSchedule, &'static str); 3] = [
        (IterativeSchedule::Linear, "linear"),
        (IterativeSchedule::Agp, "agp"),
        (IterativeSchedule::Lottery, "lottery"),
    ];

    /// The first iteration index: 0 for AGP (the dense warm-up), else 1.
    pub fn first_iteration(&self) -> usize {
        match self {
            IterativeSchedule::Agp => 0,
            IterativeSchedule::Linear | IterativeSchedule::Lottery => 1,
        }
    }

    /// The target of iteration `i` (clamped to `N`) for a total sparsity `total` over
    /// `iterations` rounds (`N`, at least 1).
    pub fn target(&self, total: f64, i: usize, iterations: usize) -> f64 {
        let n = iterations.max(1);
        let frac = i.min(n) as f64 / n as f64;
        match self {
            IterativeSchedule::Linear => frac * total,
            IterativeSchedule::Agp => (1.0 - (1.0 - frac).powi(3)) * total,
            IterativeSchedule::Lottery => 1.0 - (1.0 - total).powf(frac),
        }
    }

    /// Every round's target, from [`first_iteration`](Self::first_iteration) to `N`: `N`
    /// values for Linear and Lottery, `N + 1` for AGP. Empty when `iterations` is 0.
    pub fn targets(&self, total: f64, iterations: usize) -> Vec<f64> {
        if iterations == 0 {
            return Vec::new();
        }
        (self.first_iteration()..=iterations)
            .map(|i| self.target(total, i, iterations))
            .collect()
    }
}

impl fmt::Display for IterativeSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(s, _)| s == self)
            .map_or("?", |(_, n)| n);
        f.write_str(name)
    }
}

impl FromStr for IterativeSchedule {
    type Err = CompressError;

    /// `linear`, `agp` or `lottery`.
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == s.trim())
            .map(|(sched, _)| *sched)
            .ok_or_else(|| CompressError::InvalidValue {
                key: "schedule".into(),
                context: "iterative scheduler".into(),
                value: s.to_string(),
                reason: match crate::error::did_you_mean(s, Self::ALL.iter().map(|(_, n)| *n)) {
                    Some(near) => {
                        format!("expected linear, agp or lottery; did you mean '{near}'?")
                    }
                    None => "expected linear, agp or lottery".into(),
                },
            })
    }
}

/// A target `target` relative to the original model, as the ratio to prune from a compact model
/// whose original-relative sparsity is already `current`: `max(0, (target - current) / (1 -
/// current))` (NNI's conversion for a sped-up model). 0 when `current` is 1 (nothing is left).
pub fn compact_ratio(target: f64, current: f64) -> f64 {
    if current >= 1.0 {
        return 0.0;
    }
    ((target - current) / (1.0 - current)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close_all(found: &[f64], expected: &[f64], tol: f64) {
        assert_eq!(found.len(), expected.len(), "{found:?}");
        for (a, b) in found.iter().zip(expected) {
            assert!((a - b).abs() < tol, "{found:?} vs {expected:?}");
        }
    }

    #[test]
    fn iterative_schedules_match_nni_check_values_at_s_08_n_5() {
        close_all(
            &IterativeSchedule::Lottery.targets(0.8, 5),
            &[0.2752, 0.4747, 0.6193, 0.7241, 0.8],
            5e-5,
        );
        close_all(
            &IterativeSchedule::Agp.targets(0.8, 5),
            &[0.0, 0.3904, 0.6272, 0.7488, 0.7936, 0.8],
            5e-5,
        );
        close_all(
            &IterativeSchedule::Linear.targets(0.8, 5),
            &[0.16, 0.32, 0.48, 0.64, 0.8],
            1e-12,
        );
        assert!(IterativeSchedule::Linear.targets(0.8, 0).is_empty());
    }

    #[test]
    fn a_target_becomes_the_ratio_of_what_the_compact_model_has_left() {
        // 0.4747 of the original on a model already at 0.2752: 27.5% of what is left.
        assert!((compact_ratio(0.4747, 0.2752) - (0.4747 - 0.2752) / 0.7248).abs() < 1e-12);
        // Lottery rounds each prune the same share of what is left.
        let t = IterativeSchedule::Lottery.targets(0.8, 5);
        for w in t.windows(2) {
            assert!((compact_ratio(w[1], w[0]) - t[0]).abs() < 1e-12);
        }
        assert_eq!(compact_ratio(0.3, 0.5), 0.0);
        assert_eq!(compact_ratio(0.3, 1.0), 0.0);
    }

    #[test]
    fn iterative_schedules_parse_their_names() {
        for (s, name) in IterativeSchedule::ALL {
            assert_eq!(name.parse::<IterativeSchedule>().unwrap(), s);
            assert_eq!(s.to_string(), name);
        }
        assert_eq!(
            "lotery"
                .parse::<IterativeSchedule>()
                .unwrap_err()
                .to_string(),
            "key 'schedule' in iterative scheduler: invalid value 'lotery' (expected linear, agp or lottery; did you mean 'lottery'?)"
        );
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn linear_grows_evenly_to_the_final_ratio() {
        let s = Schedule::Linear { total_times: 10 };
        close(s.ratio(0.8, 1), 0.08);
        close(s.ratio(0.8, 5), 0.4);
        close(s.ratio(0.8, 10), 0.8);
        close(s.ratio(0.8, 12), 0.8);
    }

    #[test]
    fn agp_front_loads_pruning_with_a_cubic() {
        let s = Schedule::Agp { total_times: 10 };
        close(s.ratio(0.8, 1), 0.8 * (1.0 - 0.9f64.powi(3)));
        close(s.ratio(0.8, 5), 0.8 * (1.0 - 0.5f64.powi(3)));
        close(s.ratio(0.8, 10), 0.8);
        assert!(s.ratio(0.8, 3) > Schedule::Linear { total_times: 10 }.ratio(0.8, 3));
    }

    #[test]
    fn movement_waits_for_warmup_then_follows_the_cubic_to_cooldown() {
        let s = Schedule::Movement {
            warmup_step: 10,
            cooldown_begin_step: 90,
        };
        close(s.ratio(0.5, 5), 0.0);
        close(s.ratio(0.5, 10), 0.0);
        close(s.ratio(0.5, 50), 0.5 * (1.0 - 0.5f64.powi(3)));
        close(s.ratio(0.5, 90), 0.5);
        close(s.ratio(0.5, 200), 0.5);
    }
}
