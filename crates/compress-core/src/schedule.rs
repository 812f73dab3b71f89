//! Sparsity schedules of NNI's scheduled pruners (`pruning/scheduled_pruner.py`,
//! `movement_pruner.py`): the goal ratio at a step, for a final ratio.

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

#[cfg(test)]
mod tests {
    use super::*;

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
