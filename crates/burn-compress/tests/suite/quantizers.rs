//! The built-in quantizers' own formulas, through compress-quant's drivers: LSQ's learnable
//! scales, the BNN and DoReFa grids on weights and activations. (Moved from compress-quant's
//! suite, which cannot depend on the quantizer crates without a cycle.)

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::prelude::*;
use burn_compress::algorithms::{bnn::BnnQuantizer, dorefa::DorefaQuantizer, lsq::LsqQuantizer};
use compress_core::testing::oracle::{json_dense as dense, nni_quant, transpose};
use compress_core::testing::{Nested, test_device};
use compress_core::{CompressConfig, Dense, ModuleIndex, Quantizer};
use compress_quant::{QuantSim, WeightQuantization};

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

fn setup(quantizer: Arc<dyn Quantizer>, extra: &str) -> Nested {
    let model = Nested::new(&test_device());
    let index = ModuleIndex::from_module(&model);
    let mut wq = WeightQuantization::new(quantizer, &config(extra), &index).unwrap();
    let calibration = wq.calibrate(&model).unwrap().clone();
    wq.simulate(&model, &calibration).unwrap()
}

#[derive(Module, Debug)]
struct Net {
    fc: Linear,
}

/// The NNI oracle's `Linear(8, 4)` as `fc` (Burn layout), and its calibration input.
fn oracle_net(device: &Device) -> (Net, Tensor<2>) {
    let oracle = nni_quant();
    let net = Net {
        fc: Linear {
            weight: Param::from_tensor(transpose(&dense(&oracle["weight"])).to_tensor(device)),
            bias: Some(Param::from_tensor(dense(&oracle["bias"]).to_tensor(device))),
        },
    };
    let x = dense(&oracle["calib_input"]).to_tensor(device);
    (net, x)
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
    let bnn = setup(Arc::new(BnnQuantizer), "");
    assert!(
        values(bnn.stem.weight.val())
            .iter()
            .all(|&v| v == 1.0 || v == -1.0)
    );
    let dorefa = setup(Arc::new(DorefaQuantizer), "quant_dtype = 'int2'");
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
    let (net, x) = oracle_net(&device);
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
