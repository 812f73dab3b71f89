use compress_core::search::{Cost, Evaluation};

use super::*;

fn layer(name: &str, params: u64) -> SearchLayer {
    SearchLayer {
        name: name.into(),
        op_type: "Linear".into(),
        params,
        macs: params * 10,
        in_channels: 1,
        out_channels: 1,
        kernel: 1,
        stride: 1,
        input_size: 1,
        max_ratio: 0.99,
        current_ratio: 0.0,
    }
}

/// Layers of 1e2, 1e3 and 1e4 weights (the note's check values).
fn three_sizes(max_ratio: f64) -> SearchSpace {
    let mut layers = vec![layer("c", 10_000), layer("a", 100), layer("b", 1_000)];
    for l in &mut layers {
        l.max_ratio = max_ratio;
    }
    SearchSpace::new(layers)
}

/// The metric of the `i`-th evaluation of a candidate.
type Metric = Box<dyn FnMut(usize, &Candidate) -> f64>;

/// Real cost = the layers' remaining params and MACs (the prediction); the metric is chosen
/// per test.
struct Mock {
    space: SearchSpace,
    dense: Cost,
    metric: Metric,
    calls: usize,
}

impl Mock {
    fn new(space: &SearchSpace, metric: impl FnMut(usize, &Candidate) -> f64 + 'static) -> Self {
        let params = space.total(Measure::Params) as u64;
        Self {
            space: space.clone(),
            dense: Cost {
                macs: space.total(Measure::Macs) as u64,
                params,
                file_bytes: params * 4,
                latency_ms: None,
            },
            metric: Box::new(metric),
            calls: 0,
        }
    }
}

impl Evaluator for Mock {
    fn dense(&self) -> &Cost {
        &self.dense
    }
    fn evaluate(&mut self, c: &Candidate) -> Result<Evaluation> {
        let left: f64 = self
            .space
            .layers
            .iter()
            .map(|l| l.params as f64 * (1.0 - c.ratios[&l.name]))
            .sum();
        let params = left.round() as u64;
        let macs: f64 = self
            .space
            .layers
            .iter()
            .map(|l| l.macs as f64 * (1.0 - c.ratios[&l.name]))
            .sum();
        let metric = (self.metric)(self.calls, c);
        self.calls += 1;
        Ok(Evaluation {
            metric,
            cost: Cost {
                macs: macs.round() as u64,
                params,
                file_bytes: params * 4,
                latency_ms: None,
            },
        })
    }
}

fn sa() -> SimulatedAnnealing {
    SimulatedAnnealingConfig::default().init().unwrap()
}

fn params_budget(fraction: f64) -> Budget {
    Budget::new(Measure::Params, fraction).unwrap()
}

#[test]
fn ratios_grow_with_layer_size_stay_in_zero_one_and_meet_s_05() {
    let space = three_sizes(0.99);
    let mut mock = Mock::new(&space, |i, _| i as f64);
    let outcome = sa()
        .search(&space, &params_budget(0.5), Objective::Maximize, &mut mock)
        .unwrap();
    assert_eq!(outcome.trials.len(), 17);
    for t in &outcome.trials {
        let r = |n: &str| t.candidate.ratios[n];
        assert!(r("a") <= r("b") && r("b") <= r("c"), "{:?}", t.candidate);
        assert!(
            (0.0..1.0).contains(&r("a")) && r("c") < 1.0,
            "{:?}",
            t.candidate
        );
        // The rescale hits S = 0.5 up to the floor() in NNI's formula, never below it.
        let share = space.pruned_share(&t.candidate, Measure::Params);
        assert!((0.5 - 1e-9..0.5 + 2e-3).contains(&share), "{share}");
        assert!(t.within_budget);
    }
    // Always improving: the last trial is the best.
    assert_eq!(outcome.best, Some(16));
}

#[test]
fn an_always_improving_metric_costs_exactly_17_evaluations() {
    let space = three_sizes(0.99);
    for objective in [Objective::Maximize, Objective::Minimize] {
        let sign = if objective == Objective::Maximize {
            1.0
        } else {
            -1.0
        };
        let mut mock = Mock::new(&space, move |i, _| sign * i as f64);
        let outcome = sa()
            .search(&space, &params_budget(0.5), objective, &mut mock)
            .unwrap();
        assert_eq!(outcome.trials.len(), 17, "{objective}");
        assert_eq!(mock.calls, 17);
    }
}

#[test]
fn s_095_terminates_with_valid_ratios() {
    let space = three_sizes(0.99);
    let mut mock = Mock::new(&space, |i, _| i as f64);
    let outcome = sa()
        .search(&space, &params_budget(0.05), Objective::Maximize, &mut mock)
        .unwrap();
    assert_eq!(outcome.trials.len(), 17);
    for t in &outcome.trials {
        assert!(
            t.candidate
                .ratios
                .values()
                .all(|r| (0.0..=0.99).contains(r))
        );
        assert!(space.pruned_share(&t.candidate, Measure::Params) >= 0.95 - 1e-9);
    }
}

#[test]
fn loss_scale_metrics_that_get_worse_stop_at_max_evaluations() {
    // NNI #4527: deltas of 1e3 make exp(-|delta|/T) ~ 0; nothing is accepted, T never cools.
    let space = three_sizes(0.99);
    let mut mock = Mock::new(&space, |i, _| 1e3 * (1.0 + i as f64));
    let outcome = sa()
        .search(&space, &params_budget(0.5), Objective::Minimize, &mut mock)
        .unwrap();
    assert_eq!(outcome.trials.len(), 100);
    assert_eq!(outcome.best, Some(0));
    let capped = SimulatedAnnealingConfig {
        max_evaluations: 7,
        ..Default::default()
    };
    let mut mock = Mock::new(&space, |i, _| 1e3 * (1.0 + i as f64));
    let outcome = capped
        .init()
        .unwrap()
        .search(&space, &params_budget(0.5), Objective::Minimize, &mut mock)
        .unwrap();
    assert_eq!(outcome.trials.len(), 7);
}

#[test]
fn a_budget_past_every_max_ratio_is_refused_before_any_evaluation() {
    let space = three_sizes(0.8);
    let mut mock = Mock::new(&space, |i, _| i as f64);
    let e = sa()
        .search(&space, &params_budget(0.05), Objective::Maximize, &mut mock)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "budget params <= 0.0500 of dense (20.00x fewer) cannot be met: the closest achievable is \
         0.2000 of dense (5.00x fewer) (predicted from the layer sizes with every layer at its max_ratio)"
    );
    assert_eq!(mock.calls, 0);
}

#[test]
fn max_ratios_are_never_passed_even_when_they_bind() {
    // S = 0.75 with every cap at 0.8: the start draws mostly fail the caps.
    let space = three_sizes(0.8);
    let mut mock = Mock::new(&space, |i, _| i as f64);
    let outcome = sa()
        .search(&space, &params_budget(0.25), Objective::Maximize, &mut mock)
        .unwrap();
    for t in &outcome.trials {
        assert!(
            t.candidate.ratios.values().all(|r| (0.0..=0.8).contains(r)),
            "{:?}",
            t.candidate
        );
        assert!(space.pruned_share(&t.candidate, Measure::Params) >= 0.75 - 1e-9);
    }
}

#[test]
fn when_no_draw_can_be_valid_the_start_is_water_filling_and_the_search_still_ends() {
    // The biggest layer caps at 0.3 but the sorted rescale gives it the biggest ratio, so no
    // draw can be valid: every point is the water-filling one (c at its cap, a and b equal).
    let mut space = three_sizes(0.9);
    space.layers[0].max_ratio = 0.3;
    let mut mock = Mock::new(&space, |i, _| i as f64);
    let outcome = sa()
        .search(&space, &params_budget(0.65), Objective::Maximize, &mut mock)
        .unwrap();
    assert_eq!(outcome.trials.len(), 17);
    let t = (0.35 * 11_100.0 - 3_000.0) / 1_100.0;
    for trial in &outcome.trials {
        let r = &trial.candidate.ratios;
        assert!((r["c"] - 0.3).abs() < 1e-12, "{r:?}");
        assert!(
            (r["a"] - t).abs() < 1e-9 && (r["b"] - t).abs() < 1e-9,
            "{r:?}"
        );
    }
}

#[test]
fn pre_existing_masks_rescale_the_target_and_map_back() {
    let mut space = SearchSpace::new(vec![layer("a", 1000), layer("b", 1000)]);
    space.layers[0].current_ratio = 0.5;
    let mut mock = Mock::new(&space, |i, _| i as f64);
    let outcome = sa()
        .search(&space, &params_budget(0.5), Objective::Maximize, &mut mock)
        .unwrap();
    for t in &outcome.trials {
        // Layer a keeps its masks: m + s (1 - m) >= 0.5.
        assert!(t.candidate.ratios["a"] >= 0.5, "{:?}", t.candidate);
        let share = space.pruned_share(&t.candidate, Measure::Params);
        assert!((0.5 - 1e-9..0.5 + 2e-3).contains(&share), "{share}");
    }
}

#[test]
fn a_dense_budget_is_one_evaluation_of_the_unpruned_layers() {
    let space = three_sizes(0.99);
    let mut mock = Mock::new(&space, |i, _| i as f64);
    let outcome = sa()
        .search(&space, &params_budget(1.0), Objective::Maximize, &mut mock)
        .unwrap();
    assert_eq!(outcome.trials.len(), 1);
    assert!(
        outcome.trials[0]
            .candidate
            .ratios
            .values()
            .all(|&r| r == 0.0)
    );
}

#[test]
fn the_same_seed_gives_the_same_trials_and_another_seed_others() {
    let space = three_sizes(0.99);
    // A metric that depends on the candidate, so acceptance involves the random draws.
    let metric = |_: usize, c: &Candidate| -> f64 { -(c.ratios["a"] - 0.3).powi(2) * 100.0 };
    let run = |seed: u64| {
        let config = SimulatedAnnealingConfig {
            seed,
            ..Default::default()
        };
        let mut mock = Mock::new(&space, metric);
        config
            .init()
            .unwrap()
            .search(&space, &params_budget(0.5), Objective::Maximize, &mut mock)
            .unwrap()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).trials[0], run(8).trials[0]);
}

#[test]
fn an_empty_space_is_refused() {
    let space = SearchSpace::default();
    let mut mock = Mock::new(&three_sizes(0.9), |i, _| i as f64);
    let e = sa()
        .search(&space, &params_budget(0.5), Objective::Maximize, &mut mock)
        .unwrap_err();
    assert!(matches!(e, CompressError::EmptySearchSpace), "{e}");
}

#[test]
fn options_come_from_the_algorithm_table_with_nni_names() {
    let table: compress_core::toml::Table =
        "start_temperature = 50\ncool_down_rate = 0.5\nseed = 3\nmax_evaluations = 9"
            .parse()
            .unwrap();
    let c = SimulatedAnnealingConfig::from_table(&table).unwrap();
    assert_eq!(
        c,
        SimulatedAnnealingConfig {
            start_temperature: 50.0,
            cool_down_rate: 0.5,
            seed: 3,
            max_evaluations: 9,
            ..Default::default()
        }
    );
    let Algorithm::Search(_) = build(&table).unwrap() else {
        panic!("not a search")
    };
}

#[test]
fn out_of_range_options_are_refused_naming_the_key() {
    let err = |text: &str| {
        let table: compress_core::toml::Table = text.parse().unwrap();
        SimulatedAnnealingConfig::from_table(&table)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("cool_down_rate = 1.0"),
        "algorithm 'simulated-annealing': 'cool_down_rate' must be a number in (0, 1), found 1.0"
    );
    assert_eq!(
        err("stop_temperature = 200"),
        "algorithm 'simulated-annealing': 'stop_temperature' must be in (0, start_temperature = 100), found 200"
    );
    assert_eq!(
        err("seed = -1"),
        "algorithm 'simulated-annealing': 'seed' must be an integer >= 0, found -1"
    );
    assert_eq!(
        err("max_evaluations = 0"),
        "algorithm 'simulated-annealing': 'max_evaluations' must be an integer >= 1, found 0"
    );
}

#[test]
fn size_params_orders_layers_by_weights_under_a_macs_budget() {
    // "conv" has few weights but the most MACs; "fc" many weights and few MACs.
    let mut conv = layer("conv", 100);
    conv.macs = 100_000;
    let mut fc = layer("fc", 10_000);
    fc.macs = 10_000;
    let space = SearchSpace::new(vec![conv, fc]);
    let budget = Budget::new(Measure::Macs, 0.6).unwrap();
    let run = |size: &str| {
        let table: compress_core::toml::Table = format!("size = \"{size}\"").parse().unwrap();
        let mut mock = Mock::new(&space, |i, _| i as f64);
        SimulatedAnnealingConfig::from_table(&table)
            .unwrap()
            .init()
            .unwrap()
            .search(&space, &budget, Objective::Maximize, &mut mock)
            .unwrap_or_else(|e| panic!("size = {size}: {e}"))
    };
    for t in run("budget").trials {
        let r = &t.candidate.ratios;
        assert!(r["conv"] >= r["fc"], "MACs order: {r:?}");
    }
    for t in run("params").trials {
        let r = &t.candidate.ratios;
        assert!(r["fc"] >= r["conv"], "weight order: {r:?}");
        // Still weighted by MACs: the predicted MACs share meets the budget.
        let share = space.pruned_share(&t.candidate, Measure::Macs);
        assert!((0.4 - 1e-9..0.4 + 2e-3).contains(&share), "{share}");
    }
    let table: compress_core::toml::Table = "size = \"flops\"".parse().unwrap();
    assert_eq!(
        SimulatedAnnealingConfig::from_table(&table)
            .unwrap_err()
            .to_string(),
        "algorithm 'simulated-annealing': 'size' must be \"budget\", \"params\" or \"macs\", found \"flops\""
    );
}
