//! The environment: layers, their cost model, the per-layer state features and one episode's
//! walk over the layers (NNI `amc_env.py`).

use std::collections::{BTreeMap, BTreeSet};

use compress_core::search::SearchLayer;

use crate::AmcError;
use crate::correct::{ActionBounds, BudgetState, action_bounds, correct_action};

/// Features per layer in the agent's state.
pub const STATE_DIM: usize = 10;

/// One agent state: the features of the layer about to be pruned.
pub type State = [f64; STATE_DIM];

/// The names of the [`STATE_DIM`] features, in order (NNI's `state_feature`).
pub const STATE_FEATURES: [&str; STATE_DIM] = [
    "index",
    "layer_type",
    "input_size",
    "output_size",
    "stride",
    "kernel_size",
    "params_size",
    "reduced",
    "rest",
    "a_{t-1}",
];

/// What the budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Multiply-accumulates (NNI's `target = "flops"`).
    Flops,
    /// Parameters (NNI's `target = "params"`).
    Params,
}

impl Measure {
    /// How error messages name it.
    pub fn label(self) -> &'static str {
        match self {
            Measure::Flops => "FLOPs",
            Measure::Params => "parameters",
        }
    }
}

/// A prunable layer as AMC sees it: compress-core's [`SearchLayer`] (name, type, costs, shape,
/// `max_ratio`; read through `Deref`) plus the earlier layer that feeds its input channels. The
/// ratio AMC chooses for it is the fraction of its output channels to remove.
#[derive(Debug, Clone, PartialEq)]
pub struct AmcLayer {
    /// The layer's name, type, dense costs, shape and `max_ratio` (NNI's
    /// `max_sparsity_per_layer`; [`AmcLayer::new`] sets 0.8). AMC starts from the dense model,
    /// so its `current_ratio` is 0.
    pub layer: SearchLayer,
    /// The earlier layer whose output channels are this layer's input channels, if it is
    /// searched too: pruning that layer by `r` makes this one `(1 - r)` cheaper.
    pub input_from: Option<String>,
}

impl std::ops::Deref for AmcLayer {
    type Target = SearchLayer;

    fn deref(&self) -> &SearchLayer {
        &self.layer
    }
}

impl AmcLayer {
    /// A layer with the given costs, one channel in and out, kernel, stride and input size 1,
    /// `max_ratio` 0.8 (NNI's example; AMC's paper keeps at least 20% of the channels) and no
    /// input dependency. Set the rest with the `with_*` methods.
    pub fn new(
        name: impl Into<String>,
        op_type: impl Into<String>,
        macs: u64,
        params: u64,
    ) -> Self {
        Self {
            layer: SearchLayer {
                name: name.into(),
                op_type: op_type.into(),
                params,
                macs,
                in_channels: 1,
                out_channels: 1,
                kernel: 1,
                stride: 1,
                input_size: 1,
                max_ratio: 0.8,
                current_ratio: 0.0,
            },
            input_from: None,
        }
    }

    /// Set the channel counts.
    pub fn with_channels(mut self, in_channels: usize, out_channels: usize) -> Self {
        self.layer.in_channels = in_channels;
        self.layer.out_channels = out_channels;
        self
    }

    /// Set kernel size and stride.
    pub fn with_kernel(mut self, kernel: usize, stride: usize) -> Self {
        self.layer.kernel = kernel;
        self.layer.stride = stride;
        self
    }

    /// Set the input's spatial size `H * W`.
    pub fn with_input_size(mut self, input_size: usize) -> Self {
        self.layer.input_size = input_size;
        self
    }

    /// Set the maximum ratio.
    pub fn with_max_ratio(mut self, max_ratio: f64) -> Self {
        self.layer.max_ratio = max_ratio;
        self
    }

    /// Name the earlier layer that feeds this one's input channels.
    pub fn with_input_from(mut self, layer: impl Into<String>) -> Self {
        self.input_from = Some(layer.into());
        self
    }

    fn cost(&self, measure: Measure) -> f64 {
        match measure {
            Measure::Flops => self.macs as f64,
            Measure::Params => self.params as f64,
        }
    }
}

/// What one [`AmcEnv::step`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The layer that was pruned.
    pub layer: usize,
    /// The ratio it got: the action after correction.
    pub ratio: f64,
    /// The bounds the action was corrected into.
    pub bounds: ActionBounds,
    /// The state of the next layer; `None` after the last layer.
    pub next_state: Option<State>,
}

/// The AMC environment: walks the layers in order, one corrected action each, and tracks the
/// cost each layer has left. Costs are modelled, not measured: layer `j` with ratio `r_j`,
/// fed by layer `p` with ratio `r_p`, costs `cost_j * (1 - r_j) * (1 - r_p)`.
#[derive(Debug, Clone)]
pub struct AmcEnv {
    names: Vec<String>,
    original: Vec<f64>,
    max_ratio: Vec<f64>,
    producer: Vec<Option<usize>>,
    static_features: Vec<State>,
    measure: Measure,
    target_removal: f64,
    ratios: Vec<f64>,
}

impl AmcEnv {
    /// An environment that must remove `budget_fraction` of the layers' total cost.
    ///
    /// # Errors
    /// [`AmcError::EmptySearchSpace`] without layers; [`AmcError::DuplicateLayer`];
    /// [`AmcError::InvalidLayer`] for a `max_ratio` outside [0, 1], a zero kernel or stride, or
    /// when every layer costs 0; [`AmcError::UnknownInput`] when `input_from` does not name an
    /// earlier layer; [`AmcError::InvalidBudget`] for a fraction outside (0, 1);
    /// [`AmcError::BudgetUnreachable`] when the maximum ratios cannot remove that much.
    pub fn new(
        layers: &[AmcLayer],
        budget_fraction: f64,
        measure: Measure,
    ) -> Result<Self, AmcError> {
        if layers.is_empty() {
            return Err(AmcError::EmptySearchSpace);
        }
        let mut index = BTreeMap::new();
        let mut producer = Vec::with_capacity(layers.len());
        for (i, layer) in layers.iter().enumerate() {
            let invalid = |reason: String| AmcError::InvalidLayer {
                layer: layer.name.clone(),
                reason,
            };
            if !(layer.max_ratio.is_finite() && (0.0..=1.0).contains(&layer.max_ratio)) {
                return Err(invalid(format!(
                    "max_ratio {} is outside [0, 1]",
                    layer.max_ratio
                )));
            }
            if layer.kernel == 0 || layer.stride == 0 {
                return Err(invalid(format!(
                    "kernel {} and stride {} must be at least 1",
                    layer.kernel, layer.stride
                )));
            }
            producer.push(match &layer.input_from {
                None => None,
                Some(input) => {
                    Some(
                        *index
                            .get(input.as_str())
                            .ok_or_else(|| AmcError::UnknownInput {
                                layer: layer.name.clone(),
                                input: input.clone(),
                            })?,
                    )
                }
            });
            if index.insert(layer.name.as_str(), i).is_some() {
                return Err(AmcError::DuplicateLayer(layer.name.clone()));
            }
        }
        let original: Vec<f64> = layers.iter().map(|l| l.cost(measure)).collect();
        let total: f64 = original.iter().sum();
        if total <= 0.0 {
            return Err(AmcError::InvalidLayer {
                layer: layers[0].name.clone(),
                reason: format!("every layer has 0 {}: nothing to prune", measure.label()),
            });
        }
        if !(budget_fraction.is_finite() && budget_fraction > 0.0 && budget_fraction < 1.0) {
            return Err(AmcError::InvalidBudget(budget_fraction, measure.label()));
        }
        let max_ratio: Vec<f64> = layers.iter().map(|l| l.max_ratio).collect();
        let achievable = original
            .iter()
            .zip(&max_ratio)
            .map(|(c, m)| c * m)
            .sum::<f64>()
            / total;
        // A relative tolerance, so a budget equal to the achievable maximum is accepted.
        if budget_fraction > achievable * (1.0 + 1e-12) {
            return Err(AmcError::BudgetUnreachable {
                requested: budget_fraction,
                achievable,
                measure: measure.label(),
            });
        }
        Ok(Self {
            names: layers.iter().map(|l| l.name.clone()).collect(),
            static_features: static_features(layers),
            target_removal: budget_fraction * total,
            original,
            max_ratio,
            producer,
            measure,
            ratios: Vec::with_capacity(layers.len()),
        })
    }

    /// Layers in the episode.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false: an environment has at least one layer.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// What the budget counts.
    pub fn measure(&self) -> Measure {
        self.measure
    }

    /// The dense cost of the layers, summed.
    pub fn dense_cost(&self) -> f64 {
        self.original.iter().sum()
    }

    /// The cost an episode must remove (`E = S * dense_cost`).
    pub fn target_removal(&self) -> f64 {
        self.target_removal
    }

    /// Start a new episode; the state of the first layer.
    pub fn reset(&mut self) -> State {
        self.ratios.clear();
        self.state()
    }

    /// The index of the layer the next [`step`](Self::step) prunes (`len()` when done).
    pub fn layer(&self) -> usize {
        self.ratios.len()
    }

    /// True after the last layer's step.
    pub fn done(&self) -> bool {
        self.ratios.len() == self.names.len()
    }

    /// Each layer's cost under the ratios chosen so far.
    pub fn current_costs(&self) -> Vec<f64> {
        let ratio = |j: usize| self.ratios.get(j).copied().unwrap_or(0.0);
        (0..self.len())
            .map(|j| {
                let input = self.producer[j].map_or(1.0, |p| 1.0 - ratio(p));
                self.original[j] * (1.0 - ratio(j)) * input
            })
            .collect()
    }

    /// The remaining cost as a fraction of the dense cost.
    pub fn remaining_fraction(&self) -> f64 {
        self.current_costs().iter().sum::<f64>() / self.dense_cost()
    }

    /// The range the next layer's action is corrected into.
    ///
    /// # Panics
    /// After the last layer.
    pub fn bounds(&self) -> ActionBounds {
        let current = self.current_costs();
        action_bounds(&self.budget_state(&current), self.layer())
    }

    /// The state of the layer the next step prunes: its static features (min-max normalised
    /// per column over the layers; a constant column is 0) and `reduced` (cost removed so far
    /// over the dense cost), `rest` (the current cost of the later layers over the dense cost),
    /// `a_{t-1}` (the previous layer's ratio; 0 for the first). After the last layer, the last
    /// layer's row with the final `reduced`.
    pub fn state(&self) -> State {
        let t = self.layer().min(self.len() - 1);
        let current = self.current_costs();
        let dense = self.dense_cost();
        let mut state = self.static_features[t];
        state[7] = (dense - current.iter().sum::<f64>()) / dense;
        state[8] = current[t + 1..].iter().sum::<f64>() / dense;
        state[9] = self.ratios.last().copied().unwrap_or(0.0);
        // Rounding can leave `reduced` a hair below 0 or above 1.
        state[7] = state[7].clamp(0.0, 1.0);
        state
    }

    /// Prune the next layer: correct `action` into its bounds, record it as the layer's ratio.
    ///
    /// # Panics
    /// After the last layer (check [`done`](Self::done)).
    pub fn step(&mut self, action: f64) -> Step {
        assert!(
            !self.done(),
            "AmcEnv::step after the last layer; call reset"
        );
        let layer = self.layer();
        let current = self.current_costs();
        let state = self.budget_state(&current);
        let bounds = action_bounds(&state, layer);
        let ratio = correct_action(action, &state, layer);
        self.ratios.push(ratio);
        Step {
            layer,
            ratio,
            bounds,
            next_state: (!self.done()).then(|| self.state()),
        }
    }

    /// The ratios chosen so far, by layer name.
    pub fn ratios(&self) -> BTreeMap<String, f64> {
        self.names
            .iter()
            .zip(&self.ratios)
            .map(|(n, r)| (n.clone(), *r))
            .collect()
    }

    /// The static features of every layer (columns 0-6 normalised; 7-9 at their episode-start
    /// values 0, 1, 0 as in NNI).
    pub fn static_features(&self) -> &[State] {
        &self.static_features
    }

    fn budget_state<'a>(&'a self, current: &'a [f64]) -> BudgetState<'a> {
        BudgetState {
            original: &self.original,
            current,
            max_ratio: &self.max_ratio,
            target_removal: self.target_removal,
        }
    }
}

/// Columns 0-6 of every layer's state, min-max normalised per column (constant columns 0).
fn static_features(layers: &[AmcLayer]) -> Vec<State> {
    let types: Vec<&str> = layers
        .iter()
        .map(|l| l.op_type.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rows: Vec<State> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let type_index = types.iter().position(|t| *t == l.op_type).unwrap_or(0);
            let stride = l.stride as f64;
            [
                i as f64,
                type_index as f64,
                l.in_channels as f64 * l.input_size as f64,
                l.out_channels as f64 * l.input_size as f64 / (stride * stride),
                stride,
                l.kernel as f64,
                l.params as f64,
                0.0,
                1.0,
                0.0,
            ]
        })
        .collect();
    for column in 0..7 {
        let (lo, hi) = rows
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                (lo.min(r[column]), hi.max(r[column]))
            });
        for row in &mut rows {
            row[column] = if hi > lo {
                (row[column] - lo) / (hi - lo)
            } else {
                0.0
            };
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn independent(costs: &[u64], max_ratio: f64) -> Vec<AmcLayer> {
        costs
            .iter()
            .enumerate()
            .map(|(i, &c)| AmcLayer::new(format!("l{i}"), "Conv2d", c, c).with_max_ratio(max_ratio))
            .collect()
    }

    #[test]
    fn an_episode_of_the_check_values_meets_the_budget_exactly() {
        let mut env =
            AmcEnv::new(&independent(&[100, 200, 300], 0.8), 0.5, Measure::Flops).unwrap();
        env.reset();
        assert_eq!(
            env.bounds(),
            ActionBounds {
                lower: 0.0,
                upper: 0.8
            }
        );
        let s0 = env.step(0.5);
        assert_eq!(s0.ratio, 0.5);
        let s1 = env.step(0.25); // lower bound 0.3 after 50 removed: (300 - 50 - 240) / 200 = 0.05
        assert_eq!(s1.ratio, 0.25);
        // 50 + 50 = 100 removed: the last layer is forced to 2/3.
        let s2 = env.step(0.0);
        assert_eq!(s2.ratio, 200.0 / 300.0);
        assert_eq!(s2.next_state, None);
        assert!(env.done());
        assert!((env.remaining_fraction() - 0.5).abs() < 1e-12);
        assert_eq!(
            env.ratios(),
            BTreeMap::from([
                ("l0".into(), 0.5),
                ("l1".into(), 0.25),
                ("l2".into(), 200.0 / 300.0)
            ])
        );
    }

    #[test]
    fn dynamic_features_are_reduced_rest_and_previous_action() {
        let mut env =
            AmcEnv::new(&independent(&[100, 200, 300], 0.8), 0.5, Measure::Flops).unwrap();
        let s = env.reset();
        assert_eq!(&s[7..], &[0.0, 500.0 / 600.0, 0.0]);
        let step = env.step(0.5);
        let next = step.next_state.unwrap();
        assert_eq!(&next[7..], &[50.0 / 600.0, 300.0 / 600.0, 0.5]);
        assert_eq!(next[0], 0.5, "index column of the middle of three layers");
    }

    #[test]
    fn static_features_are_min_max_normalised_per_column() {
        let layers = vec![
            AmcLayer::new("conv1", "Conv2d", 1000, 216)
                .with_channels(3, 8)
                .with_kernel(3, 1)
                .with_input_size(1024),
            AmcLayer::new("conv2", "Conv2d", 4000, 1152)
                .with_channels(8, 16)
                .with_kernel(3, 2)
                .with_input_size(1024),
            AmcLayer::new("fc", "Linear", 2560, 2570).with_channels(256, 10),
        ];
        let env = AmcEnv::new(&layers, 0.3, Measure::Flops).unwrap();
        let f = env.static_features();
        let column = |c: usize| f.iter().map(|r| r[c]).collect::<Vec<_>>();
        assert_eq!(column(0), [0.0, 0.5, 1.0]);
        assert_eq!(column(1), [0.0, 0.0, 1.0], "Conv2d < Linear");
        // input sizes 3072, 8192, 256 -> (x - 256) / (8192 - 256)
        assert_eq!(column(2), [(3072.0 - 256.0) / 7936.0, 1.0, 0.0]);
        // output sizes 8192, 16 * 1024 / 4 = 4096, 10
        assert_eq!(column(3), [1.0, (4096.0 - 10.0) / 8182.0, 0.0]);
        assert_eq!(column(4), [0.0, 1.0, 0.0]);
        assert_eq!(column(5), [1.0, 1.0, 0.0]);
        assert_eq!(column(6), [0.0, (1152.0 - 216.0) / 2354.0, 1.0]);
        let constant = AmcEnv::new(&independent(&[5, 5], 0.8), 0.5, Measure::Params).unwrap();
        assert!(
            constant
                .static_features()
                .iter()
                .all(|r| r[1..7] == [0.0; 6])
        );
    }

    #[test]
    fn pruning_a_producer_makes_its_consumer_cheaper() {
        let layers = vec![
            AmcLayer::new("a", "Conv2d", 100, 10),
            AmcLayer::new("b", "Conv2d", 400, 40).with_input_from("a"),
        ];
        let mut env = AmcEnv::new(&layers, 0.5, Measure::Flops).unwrap();
        env.reset();
        env.step(0.5);
        assert_eq!(env.current_costs(), [50.0, 200.0]);
        // 250 removed of the 250 asked: b may take nothing more.
        assert_eq!(
            env.bounds(),
            ActionBounds {
                lower: 0.0,
                upper: 0.0
            }
        );
    }

    #[test]
    fn bad_layers_and_budgets_are_named() {
        let two = independent(&[10, 10], 0.8);
        let cases: Vec<(Vec<AmcLayer>, f64, &str)> = vec![
            (
                vec![],
                0.5,
                "AMC needs at least one layer to prune: the search space is empty",
            ),
            (
                vec![two[0].clone(), two[0].clone()],
                0.5,
                "AMC layer `l0` is listed twice",
            ),
            (
                vec![two[0].clone().with_max_ratio(1.5)],
                0.5,
                "AMC layer `l0`: max_ratio 1.5 is outside [0, 1]",
            ),
            (
                vec![two[0].clone().with_kernel(0, 1)],
                0.5,
                "AMC layer `l0`: kernel 0 and stride 1 must be at least 1",
            ),
            (
                vec![two[0].clone().with_input_from("l1"), two[1].clone()],
                0.5,
                "AMC layer `l0` takes its input from `l1`, which is not a layer listed before it",
            ),
            (
                independent(&[0, 0], 0.8),
                0.5,
                "AMC layer `l0`: every layer has 0 FLOPs: nothing to prune",
            ),
            (
                two.clone(),
                1.0,
                "AMC budget fraction 1 is invalid: expected the fraction of the prunable FLOPs to remove, in (0, 1)",
            ),
            (
                two.clone(),
                0.9,
                "AMC cannot remove 0.9 of the prunable FLOPs: with these per-layer maximum ratios at most 0.800000 can be removed",
            ),
        ];
        for (layers, budget, message) in cases {
            assert_eq!(
                AmcEnv::new(&layers, budget, Measure::Flops)
                    .unwrap_err()
                    .to_string(),
                message
            );
        }
    }

    fn layer_strategy() -> impl Strategy<Value = (Vec<(u64, f64, bool)>, f64)> {
        (
            prop::collection::vec((1u64..10_000, 0.05f64..=1.0, any::<bool>()), 1..10),
            0.01f64..0.99,
        )
    }

    proptest! {
        /// Random actions, corrected, always end an episode within the budget; with independent
        /// layers they remove exactly the budget. Every ratio stays within its layer's maximum.
        #[test]
        fn every_episode_with_random_actions_ends_within_the_budget(
            (spec, fraction_of_achievable) in layer_strategy(),
            actions in prop::collection::vec(-0.2f64..1.2, 10),
            coupled in any::<bool>(),
        ) {
            let layers: Vec<AmcLayer> = spec
                .iter()
                .enumerate()
                .map(|(i, &(cost, max_ratio, link))| {
                    let layer = AmcLayer::new(format!("l{i}"), "Conv2d", cost, cost).with_max_ratio(max_ratio);
                    if coupled && link && i > 0 { layer.with_input_from(format!("l{}", i - 1)) } else { layer }
                })
                .collect();
            let total: f64 = spec.iter().map(|s| s.0 as f64).sum();
            let achievable = spec.iter().map(|s| s.0 as f64 * s.1).sum::<f64>() / total;
            let budget = (fraction_of_achievable * achievable).min(0.999);
            prop_assume!(budget > 0.0);
            let mut env = AmcEnv::new(&layers, budget, Measure::Flops).unwrap();
            env.reset();
            for (i, &a) in actions.iter().take(layers.len()).enumerate() {
                let step = env.step(a);
                prop_assert!(step.ratio >= 0.0 && step.ratio <= layers[i].max_ratio + 1e-12);
                prop_assert!(step.bounds.lower <= step.bounds.upper);
            }
            prop_assert!(env.done());
            let remaining = env.remaining_fraction();
            prop_assert!(remaining <= 1.0 - budget + 1e-9, "remaining {remaining}, budget {budget}");
            if !coupled {
                prop_assert!((remaining - (1.0 - budget)).abs() < 1e-9);
            }
        }

        /// Every feature of every state of an episode lies in [0, 1].
        #[test]
        fn states_stay_within_the_unit_interval(
            (spec, fraction_of_achievable) in layer_strategy(),
            actions in prop::collection::vec(0.0f64..1.0, 10),
        ) {
            let layers: Vec<AmcLayer> = spec
                .iter()
                .enumerate()
                .map(|(i, &(cost, max_ratio, _))| {
                    AmcLayer::new(format!("l{i}"), if i % 2 == 0 { "Conv2d" } else { "Linear" }, cost, cost / 2 + i as u64)
                        .with_channels(i + 1, 3 * i + 2)
                        .with_kernel(1 + i % 3, 1 + i % 2)
                        .with_input_size(64 << (i % 4))
                        .with_max_ratio(max_ratio)
                })
                .collect();
            let total: f64 = spec.iter().map(|s| s.0 as f64).sum();
            let achievable = spec.iter().map(|s| s.0 as f64 * s.1).sum::<f64>() / total;
            let budget = (fraction_of_achievable * achievable).min(0.999);
            prop_assume!(budget > 0.0);
            let mut env = AmcEnv::new(&layers, budget, Measure::Params).unwrap();
            let mut state = env.reset();
            for &a in actions.iter().take(layers.len()) {
                prop_assert!(state.iter().all(|x| (0.0..=1.0).contains(x)), "{state:?}");
                match env.step(a).next_state { Some(s) => state = s, None => break }
            }
        }
    }
}
