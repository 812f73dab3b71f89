//! The one pruning driver: the mode follows what the pruner declares, and each mode is exactly
//! the composition of core's pieces it stands for.

use std::sync::Arc;

use burn::prelude::*;
use compress_core::{
    CompressConfig, Dense, MetricInput, ModuleIndex, Pruner, Result,
    dataset::ImageDataset,
    driver::{PruneMode, PruneSchedule, Training},
    prune,
    prune::prune_with_grads,
    prune_model,
    registry::MetricNeeds,
    schedule::Schedule,
    scores::{ScoreForward, ScorePenalty, ScoreSpec, ScoreTrigger},
    train::{GradientStatistics, TrainConfig, train_classifier},
};
use compress_zoo::SmallCnn;

/// L1 norm of each block: a weights-only pruner.
struct L1;
impl Pruner for L1 {
    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        input
            .scaling
            .shrink_sum(input.weight, true, &input.target.path, f32::abs, |s, _| {
                s as f32
            })
    }
}

/// Taylor's metric, gathered over two steps.
struct Taylor;
impl Pruner for Taylor {
    fn needs(&self) -> MetricNeeds {
        MetricNeeds::Gradients
    }
    fn training_steps(&self) -> usize {
        2
    }
    fn gradient_statistic(&self, weight: Tensor<1>, grad: Tensor<1>) -> Tensor<1> {
        (weight * grad).powf_scalar(2.0)
    }
    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        let grad = input.grad.expect("the driver passes gradients");
        input
            .scaling
            .shrink_sum(grad, true, &input.target.path, |x| x, |s, _| s as f32)
    }
}

/// A pruner that declares learned scores.
struct Learned;
impl Pruner for Learned {
    fn learned_scores(&self) -> Option<ScoreSpec> {
        Some(ScoreSpec {
            init: 1.0,
            forward: ScoreForward::Scale,
            lr: 1e-2,
            regular_scale: 1.0,
            penalty: ScorePenalty::L1Mean,
            trigger: ScoreTrigger::Once { training_steps: 1 },
        })
    }
    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        L1.metric(input)
    }
}

fn config() -> CompressConfig {
    CompressConfig::from_toml(
        "[[config_list]]\nop_types = ['Conv2d']\nexclude_op_names = ['conv3']\nsparse_ratio = 0.5\n",
    )
    .unwrap()
}

fn digits() -> ImageDataset {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/digits.safetensors");
    ImageDataset::load(path, 16.0).unwrap().split().0
}

#[test]
fn the_mode_follows_what_the_pruner_declares() {
    let agp = PruneSchedule {
        schedule: Schedule::Agp { total_times: 2 },
        total_times: 2,
        interval_steps: 1,
    };
    assert_eq!(PruneMode::choose(&L1, None).unwrap(), PruneMode::OneShot);
    assert_eq!(
        PruneMode::choose(&Taylor, None).unwrap(),
        PruneMode::Gradients
    );
    assert_eq!(
        PruneMode::choose(&Learned, None).unwrap(),
        PruneMode::LearnedScores
    );
    assert_eq!(
        PruneMode::choose(&L1, Some(&agp)).unwrap(),
        PruneMode::Scheduled
    );
    assert_eq!(
        PruneMode::choose(&Taylor, Some(&agp)).unwrap(),
        PruneMode::Scheduled
    );
    let err = PruneMode::choose(&Learned, Some(&agp)).unwrap_err();
    assert!(
        err.to_string().contains("follows its own schedule"),
        "{err}"
    );
    assert!(!PruneMode::OneShot.needs_training());
    assert!(PruneMode::Gradients.needs_training() && PruneMode::Scheduled.needs_training());
}

#[test]
fn one_shot_pruning_is_prune_on_the_weights_and_needs_no_data() {
    let model = SmallCnn::new(&Device::flex());
    let expected = prune(&model, &config(), &L1).unwrap().masks;
    let pruned = prune_model(model, &config(), Arc::new(L1), None, None).unwrap();
    assert_eq!(pruned.mode, PruneMode::OneShot);
    assert_eq!(pruned.masks, expected);
}

#[test]
fn a_pruner_that_trains_without_training_data_is_refused() {
    let model = SmallCnn::new(&Device::flex().autodiff());
    let err = prune_model(model, &config(), Arc::new(Taylor), None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "algorithm 'pruner': gradients pruning trains the model: give it training data"
    );
}

#[test]
fn gradient_pruning_is_gradient_statistics_then_prune_with_grads() {
    let data = digits();
    let device = Device::flex().autodiff();
    let model = SmallCnn::new(&device);
    let train = TrainConfig {
        progress: false,
        seed: 5,
        ..TrainConfig::default()
    };
    // By hand: two steps at learning rate 0, the mean statistic, then masks.
    let targets = config()
        .resolve(&ModuleIndex::from_module(&model))
        .unwrap()
        .active_paths();
    let mut stats = GradientStatistics::new(targets, |w, g| (w * g).powf_scalar(2.0));
    let by_hand = TrainConfig {
        epochs: 2,
        max_steps: Some(2),
        lr: 0.0,
        ..train.clone()
    };
    let (_, report) = train_classifier(
        model.clone(),
        &data,
        |m: &SmallCnn, x| m.forward(x),
        &by_hand,
        &mut stats,
    );
    assert_eq!(report.steps, 2);
    let expected = prune_with_grads(&model.valid(), &config(), &Taylor, &stats.mean().unwrap())
        .unwrap()
        .masks;

    let forward = |m: &SmallCnn, x: Tensor<4>| m.forward(x);
    let training = Training {
        data: &data,
        forward: &forward,
        config: train,
    };
    let pruned = prune_model(model, &config(), Arc::new(Taylor), None, Some(&training)).unwrap();
    assert_eq!(pruned.mode, PruneMode::Gradients);
    assert_eq!(pruned.masks, expected);
    assert_eq!(pruned.masks.stats().sparsity(), 0.5);
}
