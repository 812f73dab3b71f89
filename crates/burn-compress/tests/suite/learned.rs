//! Learned-score pruners: Slim with parity to NNI 3.0 (5 steps on the fixed batch, eval mode,
//! SGD lr 0, the factors' own Adam at lr 1e-2), and Movement's straight-through scores and
//! schedule.

use burn::prelude::*;
use burn_compress::core::testing::oracle::nni_pruning;
use burn_compress::core::{
    scores::LearnedScores,
    train::{GradientStatistics, OptimizerKind, TrainConfig, train_classifier},
};
use burn_compress::zoo::{ImageClassifier, Mlp};
use burn_compress::{CompressConfig, ModuleIndex};

use crate::common::{cnn, fixed_batch, mask_values, mlp, nni_case, pruner, pruner_error};

fn frozen_sgd(steps: usize) -> TrainConfig {
    TrainConfig {
        epochs: steps,
        batch_size: 4,
        lr: 0.0,
        optimizer: OptimizerKind::Sgd,
        progress: false,
        ..Default::default()
    }
}

#[test]
fn slim_matches_nni_on_the_cnn() {
    let spec = &nni_pruning()["cnn"]["cases"]["slim"];
    assert_eq!(spec["kwargs"]["training_steps"], 5);
    let device = Device::flex().autodiff();
    let model = cnn(&device);
    let original = model.bn2.gamma.val().into_data();
    // Eval mode (BatchNorm on running statistics) while still computing gradients.
    let model = model.freeze().set_require_grad(true);
    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_types = ['BatchNorm']\nsparse_ratio = 0.5\n",
    )
    .unwrap();
    let mut hook = LearnedScores::new(
        pruner("slim", "training_steps = 5\nregular_scale = 1.0"),
        config,
        &ModuleIndex::from_module(&model),
    )
    .unwrap();
    let attached = hook.attach(&model);
    let (trained, report) = train_classifier(
        attached,
        &fixed_batch("cnn_x", "cnn_y"),
        |m, x| m.classify(x),
        &frozen_sgd(5),
        &mut hook,
    );
    assert_eq!(report.steps, 5);
    let scores = hook.scores();
    let (plain, masks) = hook.finish(trained).unwrap();
    // The returned weights are the trained weights, not multiplied by the factors.
    assert_eq!(plain.bn2.gamma.val().into_data(), original);

    let nni_masks = nni_case("nni_masks.safetensors", "cnn/slim/");
    let mut checked = 0;
    for (path, expected) in nni_case("nni_metrics.safetensors", "cnn/slim/") {
        let ours = &scores[&path];
        for (a, b) in ours.data().iter().zip(expected.data()) {
            assert!(
                (a.abs() - b).abs() <= 1e-4,
                "{path}: |factor| {} vs NNI {b}",
                a.abs()
            );
        }
        let ours = mask_values(masks.get(&path).unwrap());
        assert_eq!(
            ours,
            nni_masks[&path].data(),
            "{path}: mask differs from NNI's"
        );
        // NNI leaves the bias mask all ones (so its speedup removes nothing); ours follows the
        // weight so the channel can go.
        let bias = path.replace("gamma", "beta");
        let bias_mask = mask_values(masks.get(&bias).unwrap());
        assert_eq!(bias_mask, ours, "{bias} should follow {path}");
        checked += 1;
    }
    assert_eq!(checked, 3, "bn1, bn2 and bn3");
}

fn mlp_config(extra: &str) -> CompressConfig {
    CompressConfig::from_toml(&format!(
        "[[config_list]]\nop_names = ['fc1', 'fc2']\n{extra}\n"
    ))
    .unwrap()
}

#[test]
fn movement_scores_move_against_w_times_grad_and_follow_the_cubic_schedule() {
    let device = Device::flex().autodiff();
    let model = mlp(&device).freeze().set_require_grad(true);
    let data = fixed_batch("mlp_x", "mlp_y");
    let index = ModuleIndex::from_module(&model);

    // Reference: dL/dS = sum over the block of w * dL/dw while the mask is all ones, so the
    // first Adam step moves every score by -lr * sign(that sum).
    let mut stats = GradientStatistics::new(
        ["fc1.weight".to_string(), "fc2.weight".to_string()],
        |w, g| w * g,
    );
    let _ = train_classifier(
        model.clone(),
        &data,
        |m, x| m.classify(x),
        &frozen_sgd(1),
        &mut stats,
    );
    let movement = stats.mean().unwrap();

    let mut hook = LearnedScores::new(
        pruner("movement", "warmup_step = 2\ncooldown_begin_step = 6"),
        mlp_config("sparse_ratio = 0.5"),
        &index,
    )
    .unwrap();
    let (m, _) = train_classifier(
        hook.attach(&model),
        &data,
        |m, x| m.classify(x),
        &frozen_sgd(1),
        &mut hook,
    );
    for path in ["fc1.weight", "fc2.weight"] {
        let w_g = &movement[path];
        let [rows, cols] = [w_g.shape()[0], w_g.shape()[1]];
        let score = &hook.scores()[path];
        assert_eq!(score.shape(), [1, cols], "one score per output channel");
        for c in 0..cols {
            let sum: f32 = (0..rows).map(|r| w_g.data()[r * cols + c]).sum();
            let expected = if sum == 0.0 {
                0.0
            } else {
                -0.01 * sum.signum()
            };
            assert!(
                (score.data()[c] - expected).abs() < 1e-6,
                "{path}[{c}]: score {} vs {expected}",
                score.data()[c]
            );
        }
    }
    assert!(hook.masks().is_none(), "no masks during warm-up");

    // Steps 2..=6: the goal follows final * (1 - (1 - k/K)^3), K = 4.
    let mut model = m;
    for (step, pruned_fc1) in [
        (2, None),
        (3, Some(9)),
        (4, Some(14)),
        (5, Some(15)),
        (6, Some(16)),
    ] {
        let (next, _) = train_classifier(
            model,
            &data,
            |m, x| m.classify(x),
            &frozen_sgd(1),
            &mut hook,
        );
        model = next;
        assert_eq!(hook.steps(), step);
        match pruned_fc1 {
            None => assert!(hook.masks().is_none()),
            Some(k) => {
                // ratio = 0.5 * (1 - (1 - (step - 2) / 4)^3) of 32 channels, rounded down:
                // 9.25, 14, 15.75, 16.
                let mask = hook.masks().unwrap().get("fc1.weight").unwrap();
                let zero_cols = (0..32).filter(|&c| mask.data()[c] == 0).count();
                assert_eq!(zero_cols, k, "step {step}");
                // The forward uses the mask: the effective weight is zero in pruned columns.
                let effective = model
                    .fc1
                    .weight
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                for c in (0..32).filter(|&c| mask.data()[c] == 0) {
                    assert!((0..64).all(|r| effective[r * 32 + c] == 0.0), "column {c}");
                }
            }
        }
    }
    let (plain, masks) = hook.finish(model).unwrap();
    assert_eq!(
        masks
            .get("fc2.weight")
            .unwrap()
            .data()
            .iter()
            .filter(|&&m| m == 0)
            .count(),
        8 * 32
    );
    // Weights come back unmasked and unchanged (lr 0).
    let original = mlp(&Device::flex());
    assert_eq!(
        plain
            .fc1
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
        original
            .fc1
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    );
}

#[test]
fn movement_threshold_mode_prunes_under_the_scheduled_sigmoid_threshold() {
    let device = Device::flex().autodiff();
    let model = mlp(&device).freeze().set_require_grad(true);
    let mut hook = LearnedScores::new(
        pruner(
            "movement",
            "warmup_step = 0\ncooldown_begin_step = 3\nregular_scale = 10.0",
        ),
        mlp_config("sparse_threshold = 0.5"),
        &ModuleIndex::from_module(&model),
    )
    .unwrap();
    let (model, _) = train_classifier(
        hook.attach(&model),
        &fixed_batch("mlp_x", "mlp_y"),
        |m, x| m.classify(x),
        &frozen_sgd(3),
        &mut hook,
    );
    let scores = hook.scores();
    let (_, masks) = hook.finish(model).unwrap();
    for path in ["fc1.weight", "fc2.weight"] {
        let mask = masks.get(path).unwrap();
        let cols = mask.shape()[1];
        let score = &scores[path];
        let mut pruned = 0;
        for c in 0..cols {
            let sigmoid = 1.0 / (1.0 + (-score.data()[c]).exp());
            assert_eq!(
                mask.data()[c] == 0,
                sigmoid < 0.5,
                "{path}[{c}] sigmoid {sigmoid}"
            );
            pruned += usize::from(mask.data()[c] == 0);
        }
        // The sigmoid penalty pushes scores down, so some channels fall under the threshold.
        assert!(pruned > 0, "{path}: nothing pruned");
    }
}

#[test]
fn learned_score_pruners_reject_bad_options_and_missing_scores() {
    let e = pruner_error("movement", "warmup_step = 2");
    assert!(e.contains("'cooldown_begin_step' is required"), "{e}");
    let e = pruner_error("movement", "warmup_step = 5\ncooldown_begin_step = 5");
    assert!(
        e.contains("'cooldown_begin_step' must be an integer >= 6, found 5"),
        "{e}"
    );
    let e = pruner_error("slim", "regular_scale = -1.0");
    assert!(
        e.contains("'regular_scale' must be a number >= 0, found -1.0"),
        "{e}"
    );
    let e = pruner_error("slim", "training_steps = 'many'");
    assert!(
        e.contains("'training_steps' must be an integer >= 1"),
        "{e}"
    );

    // One-shot use without training says what is missing.
    let model = Mlp::new(&Device::flex());
    let slim = pruner("slim", "");
    let err =
        burn_compress::prune(&model, &mlp_config("sparse_ratio = 0.5"), slim.as_ref()).unwrap_err();
    assert!(
        err.to_string()
            .contains("needs a gradient for 'fc1.weight'"),
        "{err}"
    );
    // A pruner without learned scores cannot drive LearnedScores.
    let Err(err) = LearnedScores::new(
        pruner("l1-norm", ""),
        mlp_config("sparse_ratio = 0.5"),
        &ModuleIndex::from_module(&model),
    ) else {
        panic!("l1-norm has no scores")
    };
    assert!(err.to_string().contains("does not learn scores"), "{err}");
}
