//! Weight quantization simulation through reparameterization: PTQ's forward values, QAT's EMA
//! updates during training, and bad inputs. (LSQ's learnable scales and the BNN / DoReFa grids
//! are the quantizer crates' formulas: `crates/burn-compress/tests/suite/quantizers.rs`.)

use burn::prelude::*;
use compress_core::testing::{Nested, test_device};
use std::sync::Arc;

use crate::quantizers::{Ptq, Qat, ptq};
use compress_core::{CompressConfig, Dense, ModuleIndex, Quantizer, config::QuantDtype};
use compress_quant::{WeightQuantization, fake_quant_dense};

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

fn setup(quantizer: Arc<dyn Quantizer>, extra: &str) -> (Nested, WeightQuantization, Nested) {
    let model = Nested::new(&test_device());
    let index = ModuleIndex::from_module(&model);
    let mut wq = WeightQuantization::new(quantizer, &config(extra), &index).unwrap();
    let calibration = wq.calibrate(&model).unwrap().clone();
    let simulated = wq.simulate(&model, &calibration).unwrap();
    (model, wq, simulated)
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
    let qat = Arc::new(Qat {
        decay: 0.5,
        start: 2,
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
    let wq = WeightQuantization::new(Arc::new(Ptq), &acts, &index).unwrap();
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
