//! Whole-model quantization simulation (weights by reparameterization, activations by graph
//! replay) against NNI 3.0's `PtqQuantizer` on the 7 `nni_quant.json` cases: scales, zero
//! points, tracked ranges and the model output within 1e-6, through the public API only.

use crate::quantizers::ptq;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::prelude::*;
use compress_core::testing::oracle::{config_from_json, json_dense as dense, nni_quant, transpose};
use compress_core::{Dense, ModuleIndex};
use compress_quant::{QuantSim, SimPhase};
use serde_json::Value;

#[derive(Module, Debug)]
struct Net {
    fc: Linear,
}

/// The oracle, its `Linear(8, 4)` as `fc` (Burn layout), and its calibration input.
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
