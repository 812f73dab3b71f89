//! Automatic compression (`burn_compress::auto`): the search space of LeNet-5, plan
//! composition, a short searched + uniform run on MNIST-5k, the recipe step, bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_compress::auto::{
    AutoError, AutoSettings, KeepBest, Metric, auto_compress, check_labels, compose_plans,
    search_space,
};
use burn_compress::core::dataset::ImageDataset;
use burn_compress::core::schedule::IterativeSchedule;
use burn_compress::core::search::{Budget, Measure};
use burn_compress::graph::capture;
use burn_compress::speedup::{AxisKeep, Plan};
use burn_compress::zoo::{AnyModel, Arch, ImageClassifier, LeNet5};
use burn_compress::{CompressConfig, CompressError};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lenet() -> LeNet5 {
    let weights = root().join("data/lenet5-mnist5k.safetensors");
    match AnyModel::load(Arch::LeNet5, &weights, &Device::flex()).unwrap() {
        AnyModel::LeNet5(m) => m,
        _ => unreachable!(),
    }
}

/// A few hundred MNIST-5k images: train from the train split, test from the test split.
fn data(train: usize, test: usize) -> (ImageDataset, ImageDataset) {
    let (tr, te) = ImageDataset::load(root().join("data/mnist5k.safetensors"), 255.0)
        .unwrap()
        .split();
    (tr.filter(|i| i < train), te.filter(|i| i < test))
}

const IMAGE: [usize; 4] = [1, 1, 28, 28];

fn graph(model: &LeNet5) -> burn_compress::graph::Graph {
    capture(model, |m, d| m.classify(Tensor::zeros(IMAGE, d))).unwrap()
}

#[test]
fn the_search_space_of_lenet5_has_its_four_hidden_layers_with_real_sizes() {
    let model = lenet();
    let space = search_space(&model, &graph(&model), None, 0.8).unwrap();
    let rows: Vec<_> = space
        .layers
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.op_type.as_str(),
                l.params,
                l.macs,
                l.in_channels,
                l.out_channels,
                l.kernel,
                l.stride,
                l.input_size,
            )
        })
        .collect();
    // conv1: 6x1x5x5 on 28x28 (pad 2) -> 6*25*784; conv2: 16x6x5x5 -> 10x10 outputs.
    assert_eq!(
        rows,
        vec![
            ("conv1", "Conv2d", 150, 117_600, 1, 6, 5, 1, 784),
            ("conv2", "Conv2d", 2400, 240_000, 6, 16, 5, 1, 196),
            ("fc1", "Linear", 48_000, 48_000, 400, 120, 1, 1, 1),
            ("fc2", "Linear", 10_080, 10_080, 120, 84, 1, 1, 1),
        ]
    );
    assert!(space.layers.iter().all(|l| l.max_ratio == 0.8));
}

#[test]
fn a_config_restricts_the_search_space_and_one_that_resolves_nothing_is_an_empty_space() {
    let model = lenet();
    let g = graph(&model);
    let config =
        CompressConfig::from_toml("[[config_list]]\nop_types = [\"Conv2d\"]\nsparse_ratio = 0.5\n")
            .unwrap();
    let space = search_space(&model, &g, Some(&config), 0.9).unwrap();
    let names: Vec<&str> = space.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["conv1", "conv2"]);

    let none = CompressConfig::from_toml(
        "[[config_list]]\nop_types = [\"BatchNorm\"]\nsparse_ratio = 0.5\n",
    )
    .unwrap();
    let err = search_space(&model, &g, Some(&none), 0.9).unwrap_err();
    assert!(
        matches!(&err, AutoError::Compress(e) if matches!(**e, CompressError::EmptySearchSpace)),
        "{err}"
    );
    assert!(err.to_string().starts_with("the search space is empty"));
}

#[test]
fn composed_plans_index_the_original_model() {
    let keep = |axis, kept: &[usize]| AxisKeep {
        axis,
        kept: kept.to_vec(),
    };
    let first = Plan {
        original_shapes: BTreeMap::from([("a.weight".into(), vec![6, 4])]),
        params: BTreeMap::from([("a.weight".into(), vec![keep(0, &[0, 2, 3, 5])])]),
    };
    let second = Plan {
        original_shapes: BTreeMap::from([
            ("a.weight".into(), vec![4, 4]),
            ("b.weight".into(), vec![8, 3]),
        ]),
        params: BTreeMap::from([
            ("a.weight".into(), vec![keep(0, &[1, 3]), keep(1, &[0, 1])]),
            ("b.weight".into(), vec![keep(1, &[2])]),
        ]),
    };
    let both = compose_plans(&first, &second);
    assert_eq!(both.original_shapes["a.weight"], vec![6, 4]);
    assert_eq!(both.original_shapes["b.weight"], vec![8, 3]);
    assert_eq!(
        both.params["a.weight"],
        vec![keep(0, &[2, 5]), keep(1, &[0, 1])]
    );
    assert_eq!(both.params["b.weight"], vec![keep(1, &[2])]);
    assert_eq!(compose_plans(&Plan::default(), &first), first);
}

fn settings(budget: &str) -> AutoSettings {
    let mut s = AutoSettings::new(Budget::parse(budget).unwrap());
    s.search_options = "max_evaluations = 4".parse().unwrap();
    s.finetune_epochs = 0;
    s.final_epochs = 1;
    s.lr = 1e-3;
    s.seed = 3;
    s
}

#[test]
fn a_searched_schedule_meets_the_budget_and_reports_every_candidate_and_the_uniform_baseline() {
    let model = lenet();
    let (train, test) = data(256, 200);
    let mut s = settings("macs/3");
    s.schedule = IterativeSchedule::Lottery;
    s.iterations = 2;
    s.keep = KeepBest::Maximize;
    let mut phases = Vec::new();
    let mut seen = 0;
    let outcome = auto_compress(&model, &train, &test, IMAGE, &s, |e| match e {
        burn_compress::auto::AutoEvent::Phase(p) => phases.push(p.to_string()),
        burn_compress::auto::AutoEvent::Candidate(_) => seen += 1,
        burn_compress::auto::AutoEvent::Iteration(_) => {}
    })
    .unwrap();
    let r = &outcome.report;
    assert_eq!(
        phases,
        ["search", "final fine-tune", "uniform", "uniform fine-tune"]
    );
    assert_eq!(seen, r.candidates.len());
    assert_eq!(r.dense.macs, 416_520);
    assert_eq!(r.dense.params, 61_706);
    // The chosen model meets the budget, measured after speedup, both ways.
    assert!(r.chosen.macs * 3 <= r.dense.macs, "{}", r.chosen.macs);
    assert!(r.chosen.macs_times_fewer >= 3.0);
    assert!((r.chosen.macs_of_dense * r.chosen.macs_times_fewer - 1.0).abs() < 1e-9);
    // Every search trial of both iterations was recorded, each with its layers' ratios.
    let search: Vec<_> = r
        .candidates
        .iter()
        .filter(|c| c.phase == "search")
        .collect();
    assert!(search.iter().any(|c| c.iteration == 1) && search.iter().any(|c| c.iteration == 2));
    for c in &search {
        assert_eq!(
            c.ratios.keys().collect::<Vec<_>>(),
            ["conv1", "conv2", "fc1", "fc2"]
        );
        assert!(c.ratios.values().all(|r| (0.0..0.9 + 1e-12).contains(r)));
        assert!(c.ratios_of_dense.values().all(|r| (0.0..1.0).contains(r)));
        assert!((0.0..=1.0).contains(&c.metric));
    }
    // Lottery targets relative to dense: 1 - (1 - S)^(i/N) with S = 1 - 1/3.
    let targets: Vec<f64> = r.schedule_log.iter().map(|i| i.target).collect();
    assert!(
        (targets[0] - (1.0 / 3.0f64).sqrt()).abs() < 1e-9,
        "{targets:?}"
    );
    assert!((targets[1] - 1.0 / 3.0).abs() < 1e-9);
    // The chosen model is the real one: its size is what the report says.
    let graph = capture(&outcome.model, |m, d| m.classify(Tensor::zeros(IMAGE, d))).unwrap();
    assert_eq!(burn_compress::graph::count(&graph).macs, r.chosen.macs);
    // The uniform baseline has one ratio (up to channel rounding) and no more MACs.
    let u = r.uniform.as_ref().unwrap();
    assert!(u.macs <= r.chosen.macs);
    assert_eq!(r.uniform_summary().unwrap().accuracy, u.accuracy);
    assert!(r.candidates.iter().any(|c| c.phase == "uniform"));
    for c in r.candidates.iter().filter(|c| c.phase == "uniform") {
        let first = c.ratios["conv1"];
        assert!(c.ratios.values().all(|v| *v == first));
    }
    let json = serde_json::to_value(r).unwrap();
    for key in [
        "candidates",
        "chosen",
        "uniform",
        "dense",
        "schedule_log",
        "budget",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    let svg = burn_compress::auto::plot_svg(r, "LeNet-5").unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("chosen") && svg.contains("uniform"));
}

/// LeNet-5's MACs with `a`, `b`, `c`, `d` output channels kept in conv1, conv2, fc1, fc2.
fn lenet_macs(a: u64, b: u64, c: u64, d: u64) -> u64 {
    a * 28 * 28 * 25 + b * a * 10 * 10 * 25 + c * b * 25 + d * c + 10 * d
}

#[test]
fn the_budget_fill_gives_back_every_channel_that_still_fits() {
    let model = lenet();
    let (train, test) = data(128, 100);
    let mut s = settings("macs/6");
    s.iterations = 1;
    s.final_epochs = 0;
    s.uniform_baseline = false;
    s.search_options = "max_evaluations = 3\nsize = \"params\"".parse().unwrap();
    let outcome = auto_compress(&model, &train, &test, IMAGE, &s, |_| {}).unwrap();
    let r = &outcome.report;
    let limit = r.dense.macs / 6;
    let channels = [6u64, 16, 120, 84];
    let layers = ["conv1", "conv2", "fc1", "fc2"];
    let search: Vec<_> = r
        .candidates
        .iter()
        .filter(|c| c.phase == "search" && c.within_budget)
        .collect();
    assert!(!search.is_empty());
    for c in search {
        // The allocator prunes floor(n * ratio) channels.
        let kept: Vec<u64> = layers
            .iter()
            .zip(channels)
            .map(|(l, n)| n - (n as f64 * c.ratios[*l] + 1e-9).floor() as u64)
            .collect();
        let macs = |k: &[u64]| lenet_macs(k[0], k[1], k[2], k[3]);
        assert_eq!(macs(&kept), c.macs, "{:?}", c.ratios);
        assert!(c.macs <= limit);
        // No layer can take one more channel within the budget.
        for (i, n) in channels.iter().enumerate() {
            if kept[i] < *n {
                let mut more = kept.clone();
                more[i] += 1;
                assert!(macs(&more) > limit, "{} could keep {:?}", layers[i], more);
            }
        }
    }
}

#[test]
fn autocompress_is_annealing_with_admm_on_the_lottery_schedule() {
    let model = lenet();
    let (train, test) = data(128, 100);
    let mut s = settings("macs/3");
    s.search = "simulated-annealing".into();
    s.search_options = "max_evaluations = 2".parse().unwrap();
    s.pruner = "admm".into();
    // Channels, so that speedup removes them (ADMM defaults to fine-grained, as NNI).
    s.pruner_options = "iterations = 2\ntraining_epochs = 1\ngranularity = \"coarse-grained\""
        .parse()
        .unwrap();
    s.schedule = IterativeSchedule::Lottery;
    s.iterations = 2;
    s.uniform_baseline = false;
    let outcome = auto_compress(&model, &train, &test, IMAGE, &s, |_| {}).unwrap();
    let r = &outcome.report;
    assert_eq!(
        (r.search.as_str(), r.pruner.as_str()),
        ("simulated-annealing", "admm")
    );
    assert_eq!(r.schedule, "lottery");
    assert_eq!(r.schedule_log.len(), 2);
    assert!(r.chosen.macs * 3 <= r.dense.macs, "{}", r.chosen.macs);
    let graph = capture(&outcome.model, |m, d| m.classify(Tensor::zeros(IMAGE, d))).unwrap();
    assert_eq!(burn_compress::graph::count(&graph).macs, r.chosen.macs);
    assert!(r.uniform.is_none());
}

#[test]
fn a_budget_that_cannot_be_met_names_the_closest_achievable_cost() {
    let model = lenet();
    let (train, test) = data(64, 64);
    let err =
        auto_compress(&model, &train, &test, IMAGE, &settings("macs/1000"), |_| {}).unwrap_err();
    let AutoError::Compress(inner) = &err else {
        panic!("{err}")
    };
    let CompressError::BudgetUnreachable { closest, .. } = inner.as_ref() else {
        panic!("{err}")
    };
    // Every layer at 0.9 of its channels: predicted from the layer sizes, about 0.1 of dense.
    assert!(*closest > 0.09 && *closest < 0.2, "{closest}");
    let text = err.to_string();
    assert!(
        text.starts_with("budget macs <= 0.0010 of dense (1000.00x fewer) cannot be met: the closest achievable is"),
        "{text}"
    );
}

#[test]
fn unknown_metrics_keep_values_and_searches_are_typed_errors() {
    let err = "acuracy".parse::<Metric>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown metric 'acuracy' (did you mean 'accuracy'?): expected one of accuracy, loss"
    );
    assert_eq!("loss".parse::<Metric>().unwrap(), Metric::Loss);
    assert!("best".parse::<KeepBest>().is_err());
    let mut s = settings("macs/2");
    s.search = "simulated-anealing".into();
    let err = s.validate().unwrap_err();
    assert!(err.to_string().contains("simulated-anealing"), "{err}");
    let mut s = settings("macs/2");
    s.max_ratio = 1.0;
    assert_eq!(
        s.validate().unwrap_err().to_string(),
        "auto setting 'max_ratio' = 1: must be in [0, 1)"
    );
    assert_eq!(Budget::parse("macs/6").unwrap().measure, Measure::Macs);
}

#[test]
fn a_data_set_without_labels_is_refused_for_accuracy() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("auto-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("images-only.safetensors");
    let pixels = vec![0u8; 2 * 28 * 28];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![2, 28, 28], &pixels)
            .unwrap();
    safetensors::serialize_to_file([("images", view)], &None, &path).unwrap();
    let err = check_labels(&path, Metric::Accuracy).unwrap_err();
    assert!(matches!(err, AutoError::NoLabels { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "data set '{}' has no 'labels' tensor: the 'accuracy' metric needs labels",
            path.display()
        )
    );
    check_labels(&root().join("data/mnist5k.safetensors"), Metric::Accuracy).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_recipe_step_auto_keeps_the_stages_and_adds_the_uniform_baseline() {
    use burn_compress::recipe::{Recipe, RunOptions, run};
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("auto-recipe-{}", std::process::id()));
    let text = format!(
        r#"
seed = 2
[model]
arch = "lenet5"
weights = "{root}/data/lenet5-mnist5k.safetensors"
[data]
path = "{root}/data/mnist5k.safetensors"
[[step]]
kind = "auto"
budget = "macs/2"
search_options = {{ max_evaluations = 2 }}
finetune_epochs = 0
final_epochs = 0
report = "{dir}/auto.json"
plot = "{dir}/auto.svg"
"#,
        root = root().display(),
        dir = dir.display()
    );
    let recipe = Recipe::from_toml(&text).unwrap();
    let report = run(&recipe, &RunOptions::default()).unwrap();
    assert_eq!(report.stages.len(), 1);
    assert_eq!(report.stages[0].name, "auto");
    let uniform = report.uniform.as_ref().unwrap();
    let auto = report.auto.as_ref().unwrap();
    assert_eq!(uniform.macs, auto.uniform.as_ref().unwrap().macs);
    assert!(report.stages[0].macs * 2 <= 416_520);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["uniform"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["accuracy", "macs", "params"]
    );
    assert!(json["stages"].is_array());
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("auto.json")).unwrap()).unwrap();
    assert_eq!(written["chosen"]["macs"], report.stages[0].macs);
    assert!(
        std::fs::read_to_string(dir.join("auto.svg"))
            .unwrap()
            .contains("<svg")
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let bad = text.replace(
        "budget = \"macs/2\"",
        "budget = \"macs/2\"\nmetric = \"acc\"",
    );
    let err = Recipe::from_toml(&bad).unwrap_err().to_string();
    assert!(err.contains("unknown metric 'acc'"), "{err}");
    let typo = text.replace("final_epochs", "final_epoch");
    let err = Recipe::from_toml(&typo).unwrap_err().to_string();
    assert!(
        err.contains("unknown key 'final_epoch' (did you mean 'final_epochs'?)"),
        "{err}"
    );
}
