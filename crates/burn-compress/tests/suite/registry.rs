//! The facade links every algorithm crate its `Cargo.toml` lists: the registry holds each one's
//! entries, sorted.

use burn_compress::{AlgorithmEntry, AlgorithmKind};

#[test]
fn every_algorithm_crate_the_facade_depends_on_is_linked_and_registered() {
    let registered: Vec<&str> = AlgorithmEntry::all().iter().map(|e| e.name).collect();
    let crates = burn_compress::algorithms::CRATES;
    assert!(!crates.is_empty());
    let submitted = burn_compress::algorithms::SUBMITTED;
    assert_eq!(
        submitted.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        crates,
        "every linked crate's source was read"
    );
    let mut from_crates = Vec::new();
    for (krate, names) in submitted {
        assert!(!names.is_empty(), "{krate} submits no AlgorithmEntry");
        for name in *names {
            assert!(
                registered.contains(name),
                "{krate}'s '{name}' is not registered: the crate is not linked"
            );
        }
        from_crates.extend(names.iter().copied());
    }
    // Nothing else is registered: the registry is exactly the linked crates' entries.
    from_crates.sort();
    assert_eq!(registered, from_crates);
}

#[test]
fn the_registry_lists_every_built_in_algorithm_sorted_by_name() {
    let names: Vec<&str> = AlgorithmEntry::all().iter().map(|e| e.name).collect();
    assert_eq!(names, burn_compress::algorithms::BUILT_IN);
    assert_eq!(
        burn_compress::algorithms::CRATES,
        [
            "distill-adaptive1d-layerwise",
            "distill-dynamic-layerwise",
            "distill-kd",
            "prune-activation",
            "prune-admm",
            "prune-fpgm",
            "prune-level",
            "prune-magnitude",
            "prune-movement",
            "prune-norm",
            "prune-slim",
            "prune-sparsegpt",
            "prune-taylor",
            "prune-wanda",
            "quant-awq",
            "quant-bnn",
            "quant-dorefa",
            "quant-gptq",
            "quant-lsq",
            "quant-ptq",
            "quant-qat",
            "quant-rtn",
            "quant-smoothquant",
            "search-amc",
            "search-sa",
            "search-sensitivity-guided"
        ]
    );
    assert_eq!(
        names,
        [
            "adaptive1d-layerwise",
            "admm",
            "amc",
            "apoz",
            "awq",
            "bnn",
            "dorefa",
            "dynamic-layerwise",
            "fpgm",
            "gptq",
            "kd",
            "l1-norm",
            "l2-norm",
            "level",
            "lsq",
            "lsq-plus",
            "magnitude",
            "mean-activation",
            "movement",
            "ptq",
            "qat",
            "rtn",
            "sensitivity-guided",
            "simulated-annealing",
            "slim",
            "smoothquant",
            "sparsegpt",
            "taylor",
            "wanda"
        ]
    );
    let of_kind = |kind: AlgorithmKind| -> Vec<&str> {
        AlgorithmEntry::all()
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.name)
            .collect()
    };
    assert_eq!(
        of_kind(AlgorithmKind::Distiller),
        ["adaptive1d-layerwise", "dynamic-layerwise", "kd"]
    );
    assert_eq!(
        of_kind(AlgorithmKind::Quantizer),
        ["bnn", "dorefa", "lsq", "lsq-plus", "ptq", "qat"]
    );
    assert_eq!(
        of_kind(AlgorithmKind::OneShotQuantizer),
        ["awq", "gptq", "rtn", "smoothquant"]
    );
    assert_eq!(
        of_kind(AlgorithmKind::Search),
        ["amc", "sensitivity-guided", "simulated-annealing"]
    );
    assert_eq!(
        of_kind(AlgorithmKind::OneShotPruner),
        ["magnitude", "sparsegpt", "wanda"]
    );
    assert!(AlgorithmEntry::all().iter().all(|e| !e.summary.is_empty()));
}

#[test]
fn an_unknown_algorithm_suggests_the_closest_name_and_lists_the_rest() {
    let err = AlgorithmEntry::find("l1norm").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("did you mean 'l1-norm'"), "{msg}");
    assert!(
        msg.contains("adaptive1d-layerwise, admm, amc, apoz, awq, bnn, dorefa, dynamic-layerwise, fpgm, gptq, kd, l1-norm, l2-norm, level, lsq, lsq-plus, magnitude, mean-activation, movement, ptq, qat, rtn, sensitivity-guided, simulated-annealing, slim, smoothquant, sparsegpt, taylor, wanda"),
        "{msg}"
    );
}

#[test]
fn a_search_algorithm_builds_as_a_search_and_not_as_a_pruner() {
    let entry = AlgorithmEntry::find("simulated-annealing").unwrap();
    assert_eq!(entry.kind.to_string(), "search");
    let table: burn_compress::core::toml::Table = "seed = 4".parse().unwrap();
    assert!(entry.build_search(&table).is_ok());
    let err = entry.build_pruner(&table).err().unwrap().to_string();
    assert_eq!(
        err,
        "algorithm 'simulated-annealing' is a search, not a pruner"
    );
    let err = AlgorithmEntry::find("l1-norm")
        .unwrap()
        .build_search(&Default::default())
        .err()
        .unwrap()
        .to_string();
    assert_eq!(err, "algorithm 'l1-norm' is a pruner, not a search");
}

#[test]
fn options_a_pruner_does_not_take_are_refused() {
    let err = crate::common::pruner_error("fpgm", "training_steps = 5");
    assert!(
        err.contains("unknown key 'training_steps' in [algorithm] of 'fpgm'"),
        "{err}"
    );
}
