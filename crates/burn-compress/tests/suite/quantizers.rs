//! The built-in quantizers through compress-quant's drivers: weight quantization by
//! reparameterization (PTQ's forward values, QAT's EMA updates during training, bad inputs),
//! whole-model simulation against NNI 3.0's `PtqQuantizer` on the 7 `nni_quant.json` cases
//! (scales, zero points, tracked ranges and the model output within 1e-6), LSQ's learnable
//! scales, the BNN and DoReFa grids on weights and activations. (Moved from compress-quant's
//! suite, which cannot depend on the quantizer crates without a cycle.)

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::prelude::*;
use burn_compress::algorithms::{
    bnn::BnnQuantizer, dorefa::DorefaQuantizer, lsq::LsqQuantizer, ptq::PtqQuantizer,
    qat::QatQuantizer,
};
use compress_core::testing::oracle::{config_from_json, json_dense as dense, nni_quant, transpose};
use compress_core::testing::{Nested, test_device};
use compress_core::{CompressConfig, Dense, ModuleIndex, Quantizer, config::QuantDtype};
use compress_quant::{QuantSim, SimPhase, WeightQuantization, fake_quant_dense};
use serde_json::Value;

fn config(extra: &str) -> CompressConfig {
    CompressConfig::from_toml(&format!(
        "[[config_list]]\nop_types = ['Conv2d', 'Linear']\ntarget_names = ['weight']\n{}\n",
        if extra.contains("quant_dtype") {
            extra.to_string()
        } else {
            format!("quant_dtype = 'int8'\n{extra}")
        }
    ))
    .unwrap()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn ptq() -> Arc<dyn Quantizer> {
    Arc::new(PtqQuantizer::default())
}

/// The input model, the calibrated driver, and the simulated model.
fn setup(quantizer: Arc<dyn Quantizer>, extra: &str) -> (Nested, WeightQuantization, Nested) {
    let model = Nested::new(&test_device());
    let index = ModuleIndex::from_module(&model);
    let mut wq = WeightQuantization::new(quantizer, &config(extra), &index).unwrap();
    let calibration = wq.calibrate(&model).unwrap().clone();
    let simulated = wq.simulate(&model, &calibration).unwrap();
    (model, wq, simulated)
}

#[derive(Module, Debug)]
struct Net {
    fc: Linear,
}

/// The NNI oracle, its `Linear(8, 4)` as `fc` (Burn layout), and its calibration input.
fn oracle_net(device: &Device) -> (Value, Net, Tensor<2>) {
    let oracle = nni_quant();
    let net = Net {
        fc: Linear {
            weight: Param::from_tensor(transpose(&dense(&oracle["weight"])).to_tensor(device)),
            bias: Some(Param::from_tensor(dense(&oracle["bias"]).to_tensor(device))),
        },
    };
    let x = dense(&oracle["calib_input"]).to_tensor(device);
    (oracle, net, x)
}

#[track_caller]
fn close(found: &Dense<f32>, expected: &Dense<f32>, what: &str) {
    assert_eq!(found.numel(), expected.numel(), "{what}: size");
    for (a, b) in found.data().iter().zip(expected.data()) {
        assert!((a - b).abs() <= 1e-6, "{what}: {a} vs NNI {b}");
    }
}

#[test]
fn ptq_weights_equal_nni_fake_quant_of_the_calibrated_parameters() {
    for (extra, scale_shape) in [
        ("", vec![]),
        ("granularity = 'out_channel'", vec![4, 1, 1, 1]),
    ] {
        let (model, wq, simulated) = setup(ptq(), extra);
        let paths: Vec<&str> = wq.targets().iter().map(|t| t.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "stem.weight",
                "blocks.0.conv.weight",
                "blocks.1.conv.weight",
                "head.weight"
            ]
        );
        let entry = wq.calibration().get("stem", "weight").unwrap();
        assert_eq!(entry.scale.shape(), scale_shape.as_slice());
        let w = Dense::from_tensor(model.stem.weight.val(), "stem.weight").unwrap();
        let expected = fake_quant_dense(
            &w,
            &entry.scale,
            &entry.zero_point,
            QuantDtype::parse("int8").unwrap(),
        )
        .unwrap();
        assert_eq!(values(simulated.stem.weight.val()), expected.data());
        // At most 255 distinct values per block, and not the float weights any more.
        assert_ne!(values(simulated.stem.weight.val()), w.data());
        // The input model is untouched; the bias was not a target.
        assert_eq!(values(model.stem.weight.val()), w.data());
        assert_eq!(
            values(simulated.stem.bias.as_ref().unwrap().val()),
            values(model.stem.bias.as_ref().unwrap().val())
        );
    }
}

#[test]
fn qat_attaches_at_quant_start_step_and_follows_the_ema_range() {
    use compress_core::train::TrainHooks;
    use compress_quant::WeightQuantization as Wq;
    let device = test_device().autodiff();
    let model = Nested::new(&device);
    let index = ModuleIndex::from_module(&model);
    let qat = Arc::new(QatQuantizer {
        decay: 0.5,
        quant_start_step: 2,
    });
    let mut wq: Wq = WeightQuantization::new(qat, &config(""), &index).unwrap();
    let w0 = Dense::from_tensor(model.stem.weight.val(), "w").unwrap();
    let m = TrainHooks::after_step(&mut wq, model, 0);
    assert_eq!(
        values(m.stem.weight.val()),
        w0.data(),
        "bypass before quant_start_step"
    );
    let m = TrainHooks::after_step(&mut wq, m, 1);
    let entry = wq.calibration().get("stem", "weight").unwrap().clone();
    let max = w0.data().iter().fold(0f32, |a, x| a.max(x.abs()));
    assert!((entry.scale.data()[0] - max / 127.0).abs() < 1e-7);
    assert_ne!(
        values(m.stem.weight.val()),
        w0.data(),
        "fake-quantized from step 2"
    );
    // A later step with doubled weights moves the range half way (decay 0.5).
    let doubled = m.map(&mut Double);
    let _ = TrainHooks::after_step(&mut wq, doubled, 2);
    let entry = wq.calibration().get("stem", "weight").unwrap();
    assert!((entry.scale.data()[0] - 1.5 * max / 127.0).abs() < 1e-6);
    assert!(wq.take_error().is_none());
}

struct Double;
impl burn::module::ModuleMapper for Double {
    fn map_float<const D: usize>(
        &mut self,
        p: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        compress_core::mask::map_param_leaf(p, |t| t.mul_scalar(2.0))
    }
}

#[test]
fn activation_targets_are_skipped_and_mismatched_calibrations_refused() {
    let model = Nested::new(&test_device());
    let index = ModuleIndex::from_module(&model);
    let acts =
        CompressConfig::from_toml("[[config_list]]\nop_types = ['Linear']\nquant_dtype = 'int8'\n")
            .unwrap();
    // Activation targets are left to the graph replay (compress-speedup's QuantSim).
    let wq = WeightQuantization::new(ptq(), &acts, &index).unwrap();
    let names: Vec<&str> = wq.targets().iter().map(|t| t.path.as_str()).collect();
    assert_eq!(names, ["head.weight", "head.bias"]);
    // A calibration computed per channel does not fit a per-tensor simulation.
    let (_, per_channel, _) = setup(ptq(), "granularity = 'out_channel'");
    let (_, per_tensor, _) = setup(ptq(), "");
    let err = per_tensor
        .simulate(&model, per_channel.calibration())
        .unwrap_err();
    assert!(err.to_string().contains("'stem.weight'"), "{err}");
    // A calibration without the target.
    let err = per_tensor
        .simulate(&model, &compress_quant::CalibrationConfig::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("no entry for 'stem.weight'"),
        "{err}"
    );
}

#[test]
fn ptq_simulation_matches_nni_on_every_oracle_case() {
    let device = Device::flex();
    let (oracle, net, x) = oracle_net(&device);
    let cases = oracle["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 7);
    for (name, case) in cases {
        let config = config_from_json(&case["config_list"]);
        let index = ModuleIndex::from_module(&net);
        let mut sim = QuantSim::new(ptq(), &config, &index).unwrap();
        let forward = |m: &Net, x: Tensor<2>| m.fc.forward(x);
        let calibration = sim.calibrate(&net, [x.clone()], forward).unwrap();
        for (ours, nni) in [
            ("weight", "weight"),
            ("_input_", "_input_0"),
            ("_output_", "_output_0"),
        ] {
            let e = calibration
                .get("fc", ours)
                .unwrap_or_else(|| panic!("{name}: no {ours}"));
            let t = &case["targets"][nni];
            let (mut scale, mut zp) = (dense(&t["scale"]), dense(&t["zero_point"]));
            if ours == "weight" && scale.shape().len() == 2 {
                // PyTorch [out, 1] -> Burn [1, out].
                (scale, zp) = (transpose(&scale), transpose(&zp));
            }
            close(&e.scale, &scale, &format!("{name} {ours} scale"));
            close(&e.zero_point, &zp, &format!("{name} {ours} zero_point"));
            if ours != "weight" {
                close(
                    &e.tracked_min,
                    &dense(&t["tracked_min"]),
                    &format!("{name} {ours} min"),
                );
                close(
                    &e.tracked_max,
                    &dense(&t["tracked_max"]),
                    &format!("{name} {ours} max"),
                );
            }
        }
        let simulated = sim.simulate(&net).unwrap();
        let y = sim.forward(&simulated, x.clone(), forward).unwrap();
        close(
            &Dense::from_tensor(y, "y").unwrap(),
            &dense(&case["model_output"]),
            &format!("{name} model output"),
        );
        // The observed phase leaves values alone: the float model's output.
        sim.set_phase(SimPhase::Observe);
        let plain = sim.forward(&net, x.clone(), forward).unwrap();
        close(
            &Dense::from_tensor(plain, "y").unwrap(),
            &dense(&oracle["float_output"]),
            &format!("{name} float output"),
        );
    }
}

#[test]
fn calibration_without_data_is_refused_and_a_loaded_calibration_reproduces_the_output() {
    let device = Device::flex();
    let (oracle, net, x) = oracle_net(&device);
    let case = &oracle["cases"]["int8_affine_per_channel"];
    let config = config_from_json(&case["config_list"]);
    let index = ModuleIndex::from_module(&net);
    let forward = |m: &Net, x: Tensor<2>| m.fc.forward(x);
    let mut sim = QuantSim::new(ptq(), &config, &index).unwrap();
    let err = sim
        .calibrate(&net, Vec::<Tensor<2>>::new(), forward)
        .unwrap_err();
    assert!(
        err.to_string().contains("calibration with no data"),
        "{err}"
    );

    let calibration = sim.calibrate(&net, [x.clone()], forward).unwrap();
    let json = calibration.to_nni_json(&index).unwrap();
    let loaded = compress_quant::CalibrationConfig::from_nni_json(&json, &index).unwrap();
    let fresh = QuantSim::new(ptq(), &config, &index).unwrap();
    let simulated = fresh.load_calibration(&net, &loaded).unwrap();
    let y = fresh.forward(&simulated, x, forward).unwrap();
    close(
        &Dense::from_tensor(y, "y").unwrap(),
        &dense(&case["model_output"]),
        "reloaded model output",
    );
}

#[test]
fn lsq_starts_from_the_paper_scale_and_trains_it() {
    let device = test_device().autodiff();
    let model = Nested::new(&device);
    let index = ModuleIndex::from_module(&model);
    let mut wq =
        WeightQuantization::new(Arc::new(LsqQuantizer::default()), &config(""), &index).unwrap();
    let calibration = wq.calibrate(&model).unwrap().clone();
    let w = Dense::from_tensor(model.head.as_ref().unwrap().weight.val(), "head.weight").unwrap();
    let mean_abs = w.data().iter().map(|x| x.abs()).sum::<f32>() / w.numel() as f32;
    let scale = calibration.get("head", "weight").unwrap().scale.data()[0];
    assert!(
        (scale - 2.0 * mean_abs / 127f32.sqrt()).abs() < 1e-7,
        "{scale}"
    );
    let simulated = wq.simulate(&model, &calibration).unwrap();
    let loss = simulated.forward(Tensor::ones([2, 1, 6, 6], &device)).sum();
    let grads = loss.backward();
    // The scale is a trainable parameter that receives a gradient, and so does the weight.
    struct Scales(Vec<bool>);
    impl burn::module::ModuleVisitor for Scales {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            if D == 4 && p.val().dims().iter().product::<usize>() == 1 {
                self.0.push(p.is_require_grad());
            }
        }
    }
    let mut s = Scales(Vec::new());
    simulated.visit(&mut s);
    assert!(s.0.iter().filter(|&&r| r).count() >= 4, "{:?}", s.0);
    let head = simulated.head.as_ref().unwrap();
    assert!(head.weight.base().grad(&grads).is_some());
    // LSQ's values sit on the grid s * [-127, 127].
    for v in values(head.weight.val()) {
        let q = v / scale;
        assert!(
            (q - q.round()).abs() < 1e-3 && q.abs() <= 127.0 + 1e-3,
            "{q}"
        );
    }
}

#[test]
fn bnn_and_dorefa_weights_take_their_grids() {
    let (_, _, bnn) = setup(Arc::new(BnnQuantizer), "");
    assert!(
        values(bnn.stem.weight.val())
            .iter()
            .all(|&v| v == 1.0 || v == -1.0)
    );
    let (_, _, dorefa) = setup(Arc::new(DorefaQuantizer), "quant_dtype = 'int2'");
    // NNI's grid: qmax - qmin steps on [0, 1] (int2 = [-1, 1]: 2 steps), mapped to [-1, 1].
    let grid = values(dorefa.stem.weight.val());
    assert!(
        grid.iter().all(|&v| v == -1.0 || v == 0.0 || v == 1.0),
        "{grid:?}"
    );
    assert!(grid.contains(&-1.0) && grid.contains(&1.0));
}

#[test]
fn bnn_and_dorefa_quantize_activations_too() {
    let device = Device::flex();
    let (_, net, x) = oracle_net(&device);
    let forward = |m: &Net, x: Tensor<2>| m.fc.forward(x);
    let config = compress_core::CompressConfig::from_toml(
        "[[config_list]]\nop_names = ['fc']\ntarget_names = ['_input_', 'weight', '_output_']\nquant_dtype = 'int2'\n",
    )
    .unwrap();
    let index = ModuleIndex::from_module(&net);
    let values = |quantizer: Arc<dyn Quantizer>| {
        let mut sim = QuantSim::new(quantizer, &config, &index).unwrap();
        sim.calibrate(&net, [x.clone()], forward).unwrap();
        let simulated = sim.simulate(&net).unwrap();
        let y = sim.forward(&simulated, x.clone(), forward).unwrap();
        Dense::from_tensor(y, "y").unwrap().into_data()
    };
    // BNN: sign of the output.
    let bnn = values(Arc::new(BnnQuantizer));
    assert!(bnn.iter().all(|&v| v == 1.0 || v == -1.0), "{bnn:?}");
    assert!(bnn.contains(&1.0) && bnn.contains(&-1.0));
    // DoReFa: the output clamped to [0, 1] on int2's grid of 2 steps: 0, 0.5, 1.
    let dorefa = values(Arc::new(DorefaQuantizer));
    assert!(
        dorefa.iter().all(|&v| v == 0.0 || v == 0.5 || v == 1.0),
        "{dorefa:?}"
    );
}
