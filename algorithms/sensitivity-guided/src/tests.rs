use compress_core::search::{Cost, Evaluation};

use super::*;

fn layer(name: &str, params: u64) -> SearchLayer {
    SearchLayer {
        name: name.into(),
        op_type: "Conv2d".into(),
        params,
        macs: params * 10,
        in_channels: 1,
        out_channels: 1,
        kernel: 3,
        stride: 1,
        input_size: 1,
        max_ratio: 0.9,
        current_ratio: 0.0,
    }
}

fn curve(points: &[(&str, f64)]) -> BTreeMap<String, f64> {
    points.iter().map(|(s, m)| (s.to_string(), *m)).collect()
}

/// Baseline 0.97. `big` (1e4 weights) barely notices pruning up to 0.6; `small` (1e3) loses
/// 0.001 per 0.1 up to 0.2, then collapses.
fn table() -> SensitivityCurves {
    let t = BTreeMap::from([
        (
            "big".to_string(),
            curve(&[
                ("0.1", 0.97),
                ("0.2", 0.97),
                ("0.3", 0.969),
                ("0.4", 0.969),
                ("0.5", 0.968),
                ("0.6", 0.967),
                ("0.7", 0.96),
                ("0.8", 0.90),
                ("0.9", 0.50),
            ]),
        ),
        (
            "small".to_string(),
            curve(&[
                ("0.1", 0.969),
                ("0.2", 0.968),
                ("0.3", 0.90),
                ("0.4", 0.70),
                ("0.5", 0.40),
            ]),
        ),
    ]);
    SensitivityCurves::from_map(0.97, &t)
        .unwrap()
        .with_metric("accuracy")
}

fn space() -> SearchSpace {
    SearchSpace::new(vec![layer("small", 1_000), layer("big", 10_000)])
}

/// Real params = the layers' remaining weights plus `overhead` that no prediction sees.
struct Mock {
    space: SearchSpace,
    dense: Cost,
    overhead: u64,
    calls: usize,
}

impl Mock {
    fn new(space: &SearchSpace, overhead: u64) -> Self {
        let params = space.total(Measure::Params) as u64;
        Self {
            space: space.clone(),
            dense: Cost {
                macs: params * 10,
                params,
                file_bytes: params * 4,
                latency_ms: None,
            },
            overhead,
            calls: 0,
        }
    }
}

impl Evaluator for Mock {
    fn dense(&self) -> &Cost {
        &self.dense
    }
    fn evaluate(&mut self, c: &Candidate) -> Result<Evaluation> {
        self.calls += 1;
        let left: f64 = self
            .space
            .layers
            .iter()
            .map(|l| l.params as f64 * (1.0 - c.ratios[&l.name]))
            .sum();
        let params = left.round() as u64 + self.overhead;
        Ok(Evaluation {
            metric: 0.97 - c.ratios["small"],
            cost: Cost {
                macs: params * 10,
                params,
                file_bytes: params * 4,
                latency_ms: None,
            },
        })
    }
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
}

#[test]
fn curves_interpolate_linearly_from_the_unpruned_baseline() {
    let t = table();
    close(t.metric_at("small", 0.05).unwrap(), 0.9695);
    close(t.metric_at("small", 0.25).unwrap(), 0.934);
    close(
        t.predicted_loss("big", 0.55, Objective::Maximize).unwrap(),
        0.0025,
    );
    close(
        t.predicted_loss("big", 0.55, Objective::Minimize).unwrap(),
        -0.0025,
    );
    // Past the last measured point (a sweep that stopped early) there is no prediction.
    assert_eq!(t.metric_at("small", 0.6), None);
    assert_eq!(t.last_measured("small"), Some(0.5));
    assert_eq!(t.metric_at("conv9", 0.1), None);
}

#[test]
fn the_insensitive_big_layer_takes_all_the_pruning() {
    let dense = Mock::new(&space(), 0).dense;
    let plan = SensitivityGuided::new(table())
        .allocate(&space(), Measure::Params, &dense, 0.5, Objective::Maximize)
        .unwrap();
    // 5500 of 11000 weights must go: all from big (0.4 -> 0.6 costs 0.002 per 2000 weights).
    close(plan.candidate.ratios["big"], 0.55);
    assert_eq!(plan.candidate.ratios["small"], 0.0);
    close(plan.predicted_loss, 0.0025);
    close(plan.predicted_fraction, 0.5);
}

#[test]
fn the_cheapest_loss_per_saved_weight_is_taken_first_across_layers() {
    let dense = Mock::new(&space(), 0).dense;
    let plan = SensitivityGuided::new(table())
        .allocate(&space(), Measure::Params, &dense, 0.2, Objective::Maximize)
        .unwrap();
    // 8800 must go. Prices per weight: big to 0.7 (<= 7e-6), small to 0.2 (1e-5), big 0.7->0.8
    // (6e-5), then big 0.8->0.9 (4e-4) before small 0.2->0.3 (6.8e-4): big ends at 0.86.
    close(plan.candidate.ratios["small"], 0.2);
    close(plan.candidate.ratios["big"], 0.86);
    close(plan.predicted_fraction, 0.2);
    close(plan.predicted_loss, 0.002 + (0.97 - (0.90 - 0.4 * 0.6)));
}

#[test]
fn minimizing_a_loss_metric_reads_the_curves_the_other_way_up() {
    // A loss that grows where accuracy falls: the same allocation.
    let mut t = table();
    for curve in t.layers.values_mut() {
        for p in curve.iter_mut() {
            p.1 = 1.0 - p.1;
        }
    }
    t.baseline = 1.0 - t.baseline;
    let dense = Mock::new(&space(), 0).dense;
    let plan = SensitivityGuided::new(t)
        .allocate(&space(), Measure::Params, &dense, 0.5, Objective::Minimize)
        .unwrap();
    close(plan.candidate.ratios["big"], 0.55);
    assert_eq!(plan.candidate.ratios["small"], 0.0);
}

#[test]
fn pre_existing_masks_count_towards_the_budget() {
    let mut space = space();
    space.layers[1].current_ratio = 0.3;
    let dense = Mock::new(&space, 0).dense;
    let plan = SensitivityGuided::new(table())
        .allocate(&space, Measure::Params, &dense, 0.5, Objective::Maximize)
        .unwrap();
    // 3000 are already gone; 2500 more of big's 7000 left: s = 0.357.., ratio 0.3 + s * 0.7.
    close(plan.candidate.ratios["big"], 0.55);
    close(plan.predicted_fraction, 0.5);
}

#[test]
fn a_search_evaluates_once_when_the_real_cost_meets_the_budget() {
    let mut mock = Mock::new(&space(), 0);
    let budget = Budget::parse("params<=0.5").unwrap();
    let outcome = SensitivityGuided::new(table())
        .search(&space(), &budget, Objective::Maximize, &mut mock)
        .unwrap();
    assert_eq!(outcome.trials.len(), 1);
    assert_eq!(outcome.best, Some(0));
    assert_eq!(outcome.trials[0].evaluation.cost.params, 5500);
}

#[test]
fn a_real_cost_that_misses_tightens_the_target_and_retries() {
    // 300 weights the prediction does not see: 5800 > 5500 first, then the target drops by the
    // miss (0.0273) plus 1% of the budget (0.005): 5145 left + 300 = 5445.
    let mut mock = Mock::new(&space(), 300);
    let budget = Budget::parse("params<=0.5").unwrap();
    let outcome = SensitivityGuided::new(table())
        .search(&space(), &budget, Objective::Maximize, &mut mock)
        .unwrap();
    let params: Vec<u64> = outcome
        .trials
        .iter()
        .map(|t| t.evaluation.cost.params)
        .collect();
    assert_eq!(params, [5800, 5445]);
    assert_eq!(outcome.best, Some(1));
    close(outcome.trials[1].candidate.ratios["big"], 0.5855);
}

#[test]
fn retries_are_bounded_and_end_in_the_closest_measured_cost() {
    // An overhead of 5000 can never fit 5500 with big capped at 0.9 and small at 0.5.
    let mut mock = Mock::new(&space(), 5_000);
    let budget = Budget::parse("params<=0.5").unwrap();
    let e = SensitivityGuided::new(table())
        .with_max_retries(3)
        .search(&space(), &budget, Objective::Maximize, &mut mock)
        .unwrap_err()
        .to_string();
    assert!(mock.calls <= 4, "{}", mock.calls);
    assert!(
        e.starts_with("budget params <= 0.5000 of dense (2.00x fewer) cannot be met: the closest achievable is"),
        "{e}"
    );
    assert!(e.contains("(measured, smallest of"), "{e}");
}

#[test]
fn a_budget_past_the_measured_curves_is_unreachable_before_any_evaluation() {
    let mut mock = Mock::new(&space(), 0);
    // Caps: big 0.9 (max_ratio), small 0.5 (last measured): 9500 of 11000 at most.
    let budget = Budget::parse("params<=0.12").unwrap();
    let e = SensitivityGuided::new(table())
        .search(&space(), &budget, Objective::Maximize, &mut mock)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "budget params <= 0.1200 of dense (8.33x fewer) cannot be met: the closest achievable is \
         0.1364 of dense (7.33x fewer) (predicted from the sensitivity curves and layer sizes, \
         every layer at its max_ratio or last measured sparsity)"
    );
    assert_eq!(mock.calls, 0);
}

#[test]
fn a_layer_without_a_curve_is_named_with_a_suggestion() {
    let space = SearchSpace::new(vec![layer("smal", 1_000)]);
    let dense = Mock::new(&space, 0).dense;
    let e = SensitivityGuided::new(table())
        .allocate(&space, Measure::Params, &dense, 0.5, Objective::Maximize)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "algorithm 'sensitivity-guided': no sensitivity curve for layer 'smal' (did you mean 'small'?) (the table has: big, small)"
    );
}

#[test]
fn bad_tables_are_refused_naming_the_layer_and_key() {
    let t = BTreeMap::from([("conv1".to_string(), curve(&[("abc", 0.9)]))]);
    assert_eq!(
        SensitivityCurves::from_map(0.97, &t)
            .unwrap_err()
            .to_string(),
        "key 'abc' in sensitivity table, layer 'conv1': invalid value 'abc' (a sparsity key must be a number in [0, 1))"
    );
    let t = BTreeMap::from([("conv1".to_string(), curve(&[("0.1", 0.9), ("0.10", 0.8)]))]);
    assert!(
        SensitivityCurves::from_map(0.97, &t)
            .unwrap_err()
            .to_string()
            .contains("the sparsity is given twice")
    );
    let e = SensitivityCurves::from_json("{\"layers\": {}}", "s.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("algorithm 'sensitivity-guided': sensitivity file 's.json' is invalid: missing field `baseline`"),
        "{e}"
    );
}

#[test]
fn the_registry_entry_reads_the_sensitivity_json_named_by_its_key() {
    let path = std::env::temp_dir().join(format!("sg-{}.json", std::process::id()));
    std::fs::write(
        &path,
        r#"{"metric": "accuracy", "baseline": 0.971, "layers": {"conv1": {"0.1": 0.97, "0.2": 0.95}}}"#,
    )
    .unwrap();
    let curves = SensitivityCurves::from_file(&path).unwrap();
    assert_eq!(curves.metric, "accuracy");
    assert_eq!(curves.layers["conv1"], [(0.1, 0.97), (0.2, 0.95)]);
    let table: compress_core::toml::Table = format!(
        "sensitivity = {:?}\nmax_retries = 2",
        path.display().to_string()
    )
    .parse()
    .unwrap();
    let Algorithm::Search(_) = build(&table).unwrap() else {
        panic!("not a search")
    };
    std::fs::remove_file(&path).unwrap();
    let e = build(&Default::default()).unwrap_err().to_string();
    assert!(e.contains("'sensitivity' is required"), "{e}");
    let missing: compress_core::toml::Table =
        "sensitivity = \"/nonexistent/s.json\"".parse().unwrap();
    let e = build(&missing).unwrap_err().to_string();
    assert!(e.starts_with("cannot access '/nonexistent/s.json'"), "{e}");
}
