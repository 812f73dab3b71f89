//! Action correction: the range of ratios that keeps an episode able to meet its budget (NNI
//! `amc_env.py` L58-85), as pure functions of the costs.

/// Where an episode stands when layer `t` is about to be pruned: every layer's original cost,
/// its current cost (after the layers before `t` were pruned), its maximum ratio, and how much
/// cost the whole episode must remove.
#[derive(Debug, Clone, Copy)]
pub struct BudgetState<'a> {
    /// Each layer's dense cost (FLOPs or parameters).
    pub original: &'a [f64],
    /// Each layer's cost now. A layer after `t` may already be cheaper than `original` when
    /// its input channels were pruned.
    pub current: &'a [f64],
    /// Each layer's maximum ratio, measured like NNI's `max_sparsity_per_layer`: against the
    /// layer's original cost, counting what input pruning already took.
    pub max_ratio: &'a [f64],
    /// The cost the episode must remove: `E = S * sum(original)`.
    pub target_removal: f64,
}

/// The ratios layer `t` may take: a corrected action lies in `[lower, upper]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActionBounds {
    /// The smallest ratio that leaves the later layers able to finish the budget (at least 0).
    pub lower: f64,
    /// The largest ratio within the layer's maximum and the budget (at least `lower`).
    pub upper: f64,
}

/// The range of ratios layer `layer` may take (NNI `AMCEnv.correct_action`):
///
/// - `prev = sum(original) - sum(current)`, the cost removed so far;
/// - `max_rest = sum_{j > t} headroom_j`, what later layers can still remove;
/// - `min = (E - prev - max_rest) / current_t`;
/// - `max = min(original_t * max_t - (original_t - current_t), E - prev) / current_t`;
/// - `lower = clamp(min, 0, upper)`, `upper = max(max, 0)`.
///
/// `headroom_j = max(0, current_j - original_j * (1 - max_j))`, the cost above what layer `j` must
/// keep. NNI writes `current_j * max_j`; the two agree while `current_j = original_j` (every
/// layer before its turn, unless its input channels were pruned). When they differ NNI's term
/// overstates the headroom and its lower bound can leave the budget unmet; this one keeps the
/// guarantee: if `E <= sum(original_i * max_i)`, every episode whose actions are corrected by
/// [`correct_action`] removes at least `E` (exactly `E` when no layer's cost depends on another's).
///
/// A layer whose current cost is 0 gets `[0, 0]`.
///
/// # Panics
/// When `layer` is not an index of all three slices.
pub fn action_bounds(state: &BudgetState<'_>, layer: usize) -> ActionBounds {
    let BudgetState {
        original,
        current,
        max_ratio,
        target_removal,
    } = *state;
    let current_t = current[layer];
    if current_t <= 0.0 {
        return ActionBounds {
            lower: 0.0,
            upper: 0.0,
        };
    }
    let previous = original.iter().sum::<f64>() - current.iter().sum::<f64>();
    let max_rest: f64 = (layer + 1..original.len())
        .map(|j| headroom(original[j], current[j], max_ratio[j]))
        .sum();
    let min_removal = target_removal - previous - max_rest;
    let own_headroom = original[layer] * max_ratio[layer] - (original[layer] - current_t);
    let max_removal = own_headroom.min(target_removal - previous);
    let upper = (max_removal / current_t).max(0.0);
    let lower = (min_removal / current_t).clamp(0.0, upper);
    ActionBounds { lower, upper }
}

/// The agent's action for layer `layer`, moved into [`action_bounds`]: NNI's
/// `max(0, min(max, max(min, action)))`.
///
/// # Panics
/// When `layer` is not an index of all three slices.
pub fn correct_action(action: f64, state: &BudgetState<'_>, layer: usize) -> f64 {
    let ActionBounds { lower, upper } = action_bounds(state, layer);
    if action.is_nan() {
        return lower;
    }
    action.clamp(lower, upper)
}

/// What a layer can still remove under its maximum ratio.
pub(crate) fn headroom(original: f64, current: f64, max_ratio: f64) -> f64 {
    (current - original * (1.0 - max_ratio)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FLOPS: [f64; 3] = [100.0, 200.0, 300.0];
    const MAX: [f64; 3] = [0.8; 3];

    fn state<'a>(current: &'a [f64]) -> BudgetState<'a> {
        BudgetState {
            original: &FLOPS,
            current,
            max_ratio: &MAX,
            target_removal: 0.5 * 600.0,
        }
    }

    #[test]
    fn first_layer_may_take_anything_up_to_its_maximum() {
        let s = state(&FLOPS);
        assert_eq!(
            action_bounds(&s, 0),
            ActionBounds {
                lower: 0.0,
                upper: 0.8
            }
        );
        assert_eq!(correct_action(0.95, &s, 0), 0.8);
        assert_eq!(correct_action(-0.2, &s, 0), 0.0);
        assert_eq!(correct_action(0.3, &s, 0), 0.3);
    }

    #[test]
    fn a_middle_layer_must_take_what_the_last_layer_cannot() {
        // Nothing removed yet: the last layer can remove 240 of the 300, so layer 1 must remove
        // at least 60 of its 200 (0.3); it may remove 160 (0.8).
        let b = action_bounds(&state(&FLOPS), 1);
        assert!((b.lower - 0.3).abs() < 1e-12, "{b:?}");
        assert_eq!(b.upper, 0.8);
    }

    #[test]
    fn the_last_layer_is_forced_to_the_rest_of_the_budget() {
        // 100 removed before the last layer (50 from each earlier layer): 200 of its 300 remain.
        let s = state(&[50.0, 150.0, 300.0]);
        let forced = 200.0 / 300.0;
        assert_eq!(
            action_bounds(&s, 2),
            ActionBounds {
                lower: forced,
                upper: forced
            }
        );
        assert_eq!(correct_action(0.0, &s, 2), forced);
        assert_eq!(correct_action(1.0, &s, 2), forced);
        assert_eq!(format!("{forced:.3}"), "0.667");
    }

    #[test]
    fn nothing_more_is_pruned_once_the_budget_is_met() {
        let s = state(&[20.0, 100.0, 300.0]); // 80 + 100 = 180 removed
        assert_eq!(
            action_bounds(&s, 2),
            ActionBounds {
                lower: 0.4,
                upper: 0.4
            }
        );
        let s = BudgetState {
            target_removal: 200.0,
            ..state(&[20.0, 80.0, 300.0])
        };
        let b = action_bounds(&s, 2);
        assert_eq!(
            b,
            ActionBounds {
                lower: 0.0,
                upper: 0.0
            },
            "the 200 are already removed"
        );
    }

    #[test]
    fn a_layer_without_cost_takes_nothing() {
        let s = BudgetState {
            original: &[10.0, 10.0],
            current: &[0.0, 10.0],
            max_ratio: &[1.0, 1.0],
            target_removal: 15.0,
        };
        assert_eq!(correct_action(0.7, &s, 0), 0.0);
    }

    #[test]
    fn a_nan_action_becomes_the_lower_bound() {
        let s = state(&FLOPS);
        assert!((correct_action(f64::NAN, &s, 1) - 0.3).abs() < 1e-12);
    }

    /// NNI's formula, written as in `amc_env.py` L58-85.
    fn nni(action: f64, state: &BudgetState<'_>, t: usize) -> f64 {
        let prev = state.original.iter().sum::<f64>() - state.current.iter().sum::<f64>();
        let max_rest: f64 = (t + 1..state.original.len())
            .map(|j| state.current[j] * state.max_ratio[j])
            .sum();
        let min_target = state.target_removal - prev - max_rest;
        let max_target = (state.original[t] * state.max_ratio[t]
            - (state.original[t] - state.current[t]))
            .min(state.target_removal - prev);
        let (min_a, max_a) = (min_target / state.current[t], max_target / state.current[t]);
        0f64.max(max_a.min(min_a.max(action)))
    }

    proptest! {
        /// While the layers after `t` are untouched (independent layers), the correction is
        /// NNI's formula.
        #[test]
        fn equals_nnis_formula_on_independent_layers(
            costs in prop::collection::vec(1.0f64..1000.0, 1..8),
            maxes in prop::collection::vec(0.05f64..1.0, 8),
            taken in prop::collection::vec(0.0f64..1.0, 8),
            s in 0.01f64..1.0,
            action in -0.5f64..1.5,
            t_pick in 0usize..8,
        ) {
            let n = costs.len();
            let t = t_pick % n;
            let max_ratio = &maxes[..n];
            let current: Vec<f64> = (0..n)
                .map(|j| if j < t { costs[j] * (1.0 - taken[j] * max_ratio[j]) } else { costs[j] })
                .collect();
            let st = BudgetState {
                original: &costs,
                current: &current,
                max_ratio,
                target_removal: s * costs.iter().sum::<f64>(),
            };
            let ours = correct_action(action, &st, t);
            let theirs = nni(action, &st, t);
            prop_assert!((ours - theirs).abs() < 1e-9, "ours {ours} NNI {theirs}");
        }
    }
}
