use super::*;

fn layer(name: &str, params: u64, macs: u64) -> SearchLayer {
    SearchLayer {
        name: name.into(),
        op_type: "Linear".into(),
        params,
        macs,
        in_channels: 1,
        out_channels: 1,
        kernel: 1,
        stride: 1,
        input_size: 1,
        max_ratio: 0.8,
        current_ratio: 0.0,
    }
}

fn dense(macs: u64, params: u64) -> Cost {
    Cost {
        macs,
        params,
        file_bytes: params * 4,
        latency_ms: None,
    }
}

/// Cost = dense minus each layer's pruned share of its size; metric = minus the pruned share.
struct Linear {
    space: SearchSpace,
    dense: Cost,
}

impl Evaluator for Linear {
    fn dense(&self) -> &Cost {
        &self.dense
    }
    fn evaluate(&mut self, c: &Candidate) -> Result<Evaluation> {
        let removed = |m: Measure| -> u64 {
            self.space
                .layers
                .iter()
                .map(|l| (l.size(m) * c.ratio(&l.name).unwrap_or(0.0)).round() as u64)
                .sum()
        };
        let cost = Cost {
            macs: self.dense.macs - removed(Measure::Macs),
            params: self.dense.params - removed(Measure::Params),
            file_bytes: (self.dense.params - removed(Measure::Params)) * 4,
            latency_ms: None,
        };
        Ok(Evaluation {
            metric: -self.space.pruned_share(c, Measure::Params),
            cost,
        })
    }
}

#[test]
fn budgets_parse_both_ways_and_print_both_ways() {
    let at_most = Budget::parse("macs<=0.25").unwrap();
    assert_eq!(at_most, Budget::new(Measure::Macs, 0.25).unwrap());
    assert_eq!(at_most.to_string(), "macs <= 0.2500 of dense (4.00x fewer)");
    assert_eq!(Budget::parse(" params <= 25% ").unwrap().fraction, 0.25);
    let fewer: Budget = "file_bytes/5".parse().unwrap();
    assert_eq!(fewer.measure, Measure::FileBytes);
    assert!((fewer.fraction - 0.2).abs() < 1e-15);
    assert_eq!(fewer.times(), 5.0);
    assert_eq!(
        Budget::parse("latency/2").unwrap().measure,
        Measure::Latency
    );
}

#[test]
fn bad_budgets_are_typed_errors_naming_the_input() {
    let e = Budget::parse("macs<=1.5").unwrap_err().to_string();
    assert!(
        e.starts_with("invalid budget 'macs<=1.5': the fraction of dense must be in (0, 1]"),
        "{e}"
    );
    let e = Budget::parse("macs/0.5").unwrap_err().to_string();
    assert!(
        e.starts_with("invalid budget 'macs/0.5': k (times fewer) must be a finite number >= 1"),
        "{e}"
    );
    let e = Budget::parse("macs=0.5").unwrap_err().to_string();
    assert!(
        e.starts_with("invalid budget 'macs=0.5': no '<=' or '/'"),
        "{e}"
    );
    let e = Budget::parse("macs<=half").unwrap_err().to_string();
    assert!(e.contains("'half' is not a number"), "{e}");
    assert_eq!(
        Budget::parse("mac/6").unwrap_err().to_string(),
        "unknown measure 'mac' (did you mean 'macs'?): expected one of macs, params, file-bytes, latency"
    );
    assert!(matches!(
        Budget::times_fewer(Measure::Params, f64::NAN),
        Err(CompressError::InvalidBudget { .. })
    ));
}

#[test]
fn measures_read_their_names_and_print_them_back() {
    for (m, name) in Measure::ALL {
        assert_eq!(name.parse::<Measure>().unwrap(), m);
        assert_eq!(m.to_string(), name);
    }
    assert_eq!("MACS".parse::<Measure>().unwrap(), Measure::Macs);
    assert!(matches!(
        "speed".parse::<Measure>(),
        Err(CompressError::UnknownMeasure {
            suggestion: None,
            ..
        })
    ));
}

#[test]
fn a_cost_is_reported_as_a_fraction_of_dense_and_as_times_fewer() {
    let d = dense(1200, 100);
    let c = Cost {
        macs: 200,
        params: 50,
        file_bytes: 0,
        latency_ms: Some(2.0),
    };
    assert_eq!(c.ratio_to(&d, Measure::Macs), Some(200.0 / 1200.0));
    assert_eq!(c.times_fewer(&d, Measure::Macs), Some(6.0));
    assert_eq!(c.times_fewer(&d, Measure::FileBytes), Some(f64::INFINITY));
    assert_eq!(c.ratio_to(&d, Measure::Latency), None);
    let budget = Budget::times_fewer(Measure::Macs, 6.0).unwrap();
    assert!(budget.allows(&c, &d));
    assert!(!budget.allows(
        &Cost {
            macs: 201,
            ..c.clone()
        },
        &d
    ));
    assert!(!Budget::new(Measure::Latency, 1.0).unwrap().allows(&c, &d));
}

#[test]
fn an_empty_space_is_refused() {
    let e = SearchSpace::default().validate().unwrap_err();
    assert!(matches!(e, CompressError::EmptySearchSpace));
    assert!(e.to_string().starts_with("the search space is empty"));
}

#[test]
fn invalid_layers_are_refused_naming_the_layer_and_key() {
    let mut bad = layer("fc1", 10, 10);
    bad.max_ratio = 1.0;
    let e = SearchSpace::new(vec![bad])
        .validate()
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "key 'max_ratio' in search layer 'fc1': invalid value '1' (must be in [0, 1))"
    );
    let mut bad = layer("fc1", 10, 10);
    bad.current_ratio = 0.9;
    let e = SearchSpace::new(vec![bad])
        .validate()
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "key 'current_ratio' in search layer 'fc1': invalid value '0.9' (must be in [0, max_ratio = 0.8])"
    );
    let e = SearchSpace::new(vec![layer("a", 1, 1), layer("a", 1, 1)])
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("the layer is listed twice"), "{e}");
}

#[test]
fn the_required_share_accounts_for_cost_outside_the_layers() {
    let space = SearchSpace::new(vec![layer("a", 300, 600), layer("b", 100, 200)]);
    // Layers hold all 400 params: S = 1 - fraction.
    let b = Budget::new(Measure::Params, 0.25).unwrap();
    assert!((space.required_share(&b, &dense(1000, 400)) - 0.75).abs() < 1e-12);
    // Layers hold 800 of 1000 MACs: removing 75% of dense means 93.75% of the layers.
    let b = Budget::new(Measure::Macs, 0.25).unwrap();
    assert!((space.required_share(&b, &dense(1000, 400)) - 0.9375).abs() < 1e-12);
    assert!(
        (space.predicted_fraction(0.9375, Measure::Macs, &dense(1000, 400)) - 0.25).abs() < 1e-12
    );
}

#[test]
fn a_budget_beyond_every_layer_at_its_max_is_unreachable_with_the_closest_both_ways() {
    let space = SearchSpace::new(vec![layer("a", 300, 600), layer("b", 100, 200)]);
    let b = Budget::new(Measure::Macs, 0.1).unwrap();
    let e = space.reachable_share(&b, &dense(1000, 400)).unwrap_err();
    // Every layer at 0.8 leaves 1000 - 640 = 360 MACs: 0.36 of dense, 2.78x fewer.
    assert_eq!(
        e.to_string(),
        "budget macs <= 0.1000 of dense (10.00x fewer) cannot be met: the closest achievable is \
         0.3600 of dense (2.78x fewer) (predicted from the layer sizes with every layer at its max_ratio)"
    );
    let ok = Budget::new(Measure::Macs, 0.4).unwrap();
    assert!((space.reachable_share(&ok, &dense(1000, 400)).unwrap() - 0.75).abs() < 1e-12);
}

#[test]
fn candidates_outside_the_space_or_the_range_are_refused() {
    let space = SearchSpace::new(vec![layer("conv1", 10, 10)]);
    let c = Candidate::new([("conv2".to_string(), 0.5)].into());
    assert_eq!(
        space.check(&c).unwrap_err().to_string(),
        "search candidate: op name 'conv2' is not a layer of the model (did you mean 'conv1'?)"
    );
    let c = Candidate::new([("conv1".to_string(), 0.9)].into());
    assert!(
        space
            .check(&c)
            .unwrap_err()
            .to_string()
            .contains("must be in [0, max_ratio = 0.8]")
    );
    assert_eq!(Candidate::uniform(&space, 0.95).ratio("conv1"), Some(0.8));
}

#[test]
fn the_trial_log_picks_the_best_within_budget_by_the_objective() {
    let space = SearchSpace::new(vec![layer("a", 300, 300), layer("b", 100, 100)]);
    let mut eval = Linear {
        space: space.clone(),
        dense: dense(400, 400),
    };
    let budget = Budget::new(Measure::Params, 0.5).unwrap();
    let mut log = TrialLog::new(&space, &budget, Objective::Maximize, &mut eval);
    for r in [0.3, 0.5, 0.6, 0.7] {
        log.evaluate(Candidate::uniform(&space, r)).unwrap();
    }
    let outcome = log.finish("test").unwrap();
    let within: Vec<bool> = outcome.trials.iter().map(|t| t.within_budget).collect();
    assert_eq!(within, [false, true, true, true]);
    // Metric = minus the pruned share: the least pruned candidate within budget wins.
    assert_eq!(outcome.best, Some(1));
    assert_eq!(outcome.best_trial().unwrap().evaluation.cost.params, 200);
    let json = serde_json::to_value(&outcome).unwrap();
    assert_eq!(json["trials"][1]["candidate"]["ratios"]["a"], 0.5);
    assert_eq!(json["trials"][1]["evaluation"]["cost"]["params"], 200);
    assert_eq!(json["best"], 1);
}

#[test]
fn a_search_whose_trials_all_miss_reports_the_closest_measured_cost() {
    let space = SearchSpace::new(vec![layer("a", 300, 300), layer("b", 100, 100)]);
    let mut eval = Linear {
        space: space.clone(),
        dense: dense(400, 400),
    };
    let budget = Budget::new(Measure::Params, 0.1).unwrap();
    let mut log = TrialLog::new(&space, &budget, Objective::Minimize, &mut eval);
    log.evaluate(Candidate::uniform(&space, 0.5)).unwrap();
    log.evaluate(Candidate::uniform(&space, 0.75)).unwrap();
    assert_eq!(
        log.finish("test").unwrap_err().to_string(),
        "budget params <= 0.1000 of dense (10.00x fewer) cannot be met: the closest achievable is \
         0.2500 of dense (4.00x fewer) (measured, smallest of 2 trial(s) of 'test')"
    );
}

#[test]
fn objectives_compare_and_parse() {
    assert!(Objective::Maximize.better(2.0, 1.0) && !Objective::Maximize.better(1.0, 1.0));
    assert!(Objective::Minimize.better(1.0, 2.0));
    assert_eq!(Objective::Maximize.loss(0.97, 0.95), 0.97 - 0.95);
    assert_eq!(Objective::Minimize.loss(0.5, 0.7), 0.7 - 0.5);
    assert_eq!(
        "minimize".parse::<Objective>().unwrap(),
        Objective::Minimize
    );
    assert!(
        "best"
            .parse::<Objective>()
            .unwrap_err()
            .to_string()
            .contains("expected maximize or minimize")
    );
}
