//! The facade links every algorithm crate: the registry lists exactly these, sorted.

use burn_compress::{AlgorithmEntry, AlgorithmKind};

#[test]
fn the_registry_lists_every_built_in_algorithm_sorted_by_name() {
    let names: Vec<&str> = AlgorithmEntry::all().iter().map(|e| e.name).collect();
    assert_eq!(names, burn_compress::algorithms::BUILT_IN);
    assert_eq!(
        names,
        [
            "bnn", "dorefa", "fpgm", "l1-norm", "l2-norm", "level", "lsq", "lsq-plus", "movement",
            "ptq", "qat", "slim", "taylor"
        ]
    );
    let quantizers: Vec<&str> = AlgorithmEntry::all()
        .iter()
        .filter(|e| e.kind == AlgorithmKind::Quantizer)
        .map(|e| e.name)
        .collect();
    assert_eq!(
        quantizers,
        ["bnn", "dorefa", "lsq", "lsq-plus", "ptq", "qat"]
    );
    assert!(AlgorithmEntry::all().iter().all(|e| !e.summary.is_empty()));
}

#[test]
fn an_unknown_algorithm_suggests_the_closest_name_and_lists_the_rest() {
    let err = AlgorithmEntry::find("l1norm").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("did you mean 'l1-norm'"), "{msg}");
    assert!(
        msg.contains("bnn, dorefa, fpgm, l1-norm, l2-norm, level, lsq, lsq-plus, movement, ptq, qat, slim, taylor"),
        "{msg}"
    );
}

#[test]
fn options_a_pruner_does_not_take_are_refused() {
    let mut options = burn_compress::core::toml::Table::new();
    options.insert("training_steps".into(), 5.into());
    let Err(err) = AlgorithmEntry::find("fpgm").unwrap().build_pruner(&options) else {
        panic!("fpgm takes no options")
    };
    assert!(
        err.to_string()
            .contains("unknown key 'training_steps' in [algorithm] of 'fpgm'"),
        "{err}"
    );
}
