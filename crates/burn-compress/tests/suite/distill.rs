//! Distillation through the public API: links checked up front with typed errors naming the
//! culprit, Adaptive1d's adapter only on a width mismatch and trained, KD in a training run.

use std::sync::Arc;

use burn::prelude::*;
use burn_compress::core::{
    AlgorithmEntry, CompressConfig, CompressError, Distiller,
    dataset::ImageDataset,
    train::{TrainConfig, train_classifier},
};
use burn_compress::distill::{DistillError, Distillation, Teacher};
use burn_compress::zoo::{ImageClassifier, LeNet5};

const IMAGE: [usize; 3] = [1, 28, 28];

fn distiller(name: &str) -> Arc<dyn Distiller> {
    Arc::from(
        AlgorithmEntry::find(name)
            .unwrap()
            .build_distiller(&Default::default())
            .unwrap(),
    )
}

fn forward(m: &LeNet5, x: Tensor<4>) -> Tensor<2> {
    m.classify(x)
}

fn teacher() -> Teacher {
    Teacher::new(LeNet5::new(&Device::flex()), IMAGE, forward).unwrap()
}

fn setup(name: &str, config: &str) -> Result<Distillation<LeNet5>, DistillError> {
    let student = LeNet5::new(&Device::flex().autodiff());
    let config = CompressConfig::from_toml(config).unwrap();
    Distillation::new(
        distiller(name),
        &config,
        teacher(),
        &student,
        IMAGE,
        forward,
    )
}

fn core_error(e: DistillError) -> CompressError {
    match e {
        DistillError::Core(c) => c,
        other => panic!("expected a config error, got {other}"),
    }
}

#[test]
fn a_link_to_a_teacher_layer_that_does_not_exist_is_an_error_naming_it() {
    let e = core_error(
        setup(
            "dynamic-layerwise",
            "[[config_list]]\nop_names = [\"fc2\"]\nlink = [\"fc2\", \"fc9\"]\nlambda = 1.0",
        )
        .unwrap_err(),
    );
    assert!(
        matches!(&e, CompressError::UnknownLink { student, teacher, .. } if student == "fc2" && teacher == "fc9"),
        "{e}"
    );
    assert!(e.to_string().contains("did you mean 'fc1'") || e.to_string().contains("'fc9'"));
}

#[test]
fn an_mse_link_between_outputs_of_different_shapes_is_an_error_not_a_broadcast() {
    // fc1 gives [batch, 120], the teacher's fc2 [batch, 84].
    let e = core_error(
        setup(
            "dynamic-layerwise",
            "[[config_list]]\nop_names = [\"fc1\"]\nlink = \"fc2\"\nlambda = 1.0\napply_method = \"mse\"",
        )
        .unwrap_err(),
    );
    assert_eq!(
        e.to_string(),
        "distillation link 'student fc1 -> teacher fc2' compares outputs of different shapes: \
         student [2, 120], teacher [2, 84]"
    );
}

#[test]
fn a_negative_lambda_is_an_error_naming_the_rule() {
    let e = core_error(
        setup(
            "dynamic-layerwise",
            "[[config_list]]\nop_names = [\"fc2\"]\nlambda = -0.5",
        )
        .unwrap_err(),
    );
    assert_eq!(
        e.to_string(),
        "config_list[0]: 'lambda' must be a non-negative number, found -0.5"
    );
}

#[test]
fn a_teacher_whose_input_shape_differs_from_the_students_is_an_error() {
    let student = LeNet5::new(&Device::flex().autodiff());
    let e = Distillation::new(
        distiller("kd"),
        &CompressConfig::from_toml("[[config_list]]\nop_names = [\"fc2\"]\nlambda = 1").unwrap(),
        teacher(),
        &student,
        [3, 28, 28],
        forward,
    )
    .unwrap_err();
    assert_eq!(
        core_error(e).to_string(),
        "the teacher takes inputs of shape [1, 28, 28] per example, the student [3, 28, 28]: \
         distillation feeds both the same batch"
    );
}

#[test]
fn an_integer_lambda_and_auto_link_are_accepted_and_links_default_to_the_same_layer() {
    let hook = setup(
        "dynamic-layerwise",
        "[[config_list]]\nop_names = [\"fc1\", \"fc2\"]\nlink = \"auto\"\nlambda = 2",
    )
    .unwrap();
    let t = hook.targets();
    assert_eq!(t.len(), 2);
    assert_eq!(
        (t[0].student.as_str(), t[0].teachers.as_slice()),
        ("fc1", &["fc1".to_string()][..])
    );
    assert_eq!(t[1].lambda, 2.0);
    assert!(hook.adapters().is_none());
}

#[test]
fn the_adaptive_linear_appears_only_on_a_width_mismatch_and_is_trained() {
    let same = setup(
        "adaptive1d-layerwise",
        "[[config_list]]\nop_names = [\"fc2\"]\nlambda = 1.0",
    )
    .unwrap();
    assert!(same.adapters().is_none(), "equal widths need no adapter");

    let student = LeNet5::new(&Device::flex().autodiff());
    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_names = [\"fc1\"]\nlink = \"fc2\"\nlambda = 1.0",
    )
    .unwrap();
    let mut hook = Distillation::new(
        distiller("adaptive1d-layerwise"),
        &config,
        teacher(),
        &student,
        IMAGE,
        forward,
    )
    .unwrap();
    let adapters = hook
        .adapters()
        .expect("fc1 (120) -> fc2 (84) needs an adapter");
    assert_eq!(adapters.linears.len(), 1);
    assert_eq!(adapters.linears[0].weight.dims(), [120, 84]);
    let before = adapters.linears[0].weight.val().into_data();
    let (train, _) = ImageDataset::load("../../data/mnist5k.safetensors", 255.0)
        .unwrap()
        .split();
    let config = TrainConfig {
        max_steps: Some(3),
        progress: false,
        ..TrainConfig::default()
    };
    let _ = train_classifier(student, &train, forward, &config, &mut hook);
    assert!(hook.take_error().is_none());
    let after = hook.adapters().unwrap().linears[0].weight.val().into_data();
    assert_ne!(before, after, "the user's optimizer steps the adapter");
}

#[test]
fn kd_changes_the_loss_and_trains_without_errors() {
    let student = LeNet5::new(&Device::flex().autodiff());
    let no_rules = CompressConfig {
        algorithm: None,
        rules: vec![],
    };
    let mut hook = Distillation::new(
        distiller("kd"),
        &no_rules,
        teacher(),
        &student,
        IMAGE,
        forward,
    )
    .unwrap();
    let (train, _) = ImageDataset::load("../../data/mnist5k.safetensors", 255.0)
        .unwrap()
        .split();
    let student = LeNet5::new(&Device::flex().autodiff());
    let config = TrainConfig {
        max_steps: Some(2),
        progress: false,
        ..TrainConfig::default()
    };
    let (_, report) = train_classifier(student, &train, forward, &config, &mut hook);
    assert!(hook.take_error().is_none());
    assert!(report.final_loss.is_finite());
}
