//! `pow2` end to end: found by name, run by the facade's quantize driver on the bundled
//! LeNet-5 like the built-ins, exported to Burn's Q8S with power-of-two scales only.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::quantization::QuantizedBytes;
use burn_compress::core::paths::{PathVisitor, visit_params};
use burn_compress::core::{dataset::ImageDataset, train::accuracy};
use burn_compress::quant::{AffinePolicy, quantized_params};
use burn_compress::quantize::{QuantizeJob, quantize_classifier};
use burn_compress::zoo::{AnyModel, Arch, ImageClassifier};
use burn_compress::{AlgorithmEntry, CompressConfig};

use super::pow2;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn is_power_of_two(s: f32) -> bool {
    s > 0.0 && s.is_finite() && pow2(s) == s && s.to_bits() & 0x007f_ffff == 0
}

/// Every quantized parameter's scales, decoded from its stored bytes.
fn exported_scales<M: Module>(model: &M) -> Vec<(String, Vec<f32>)> {
    struct Scales(Vec<(String, Vec<f32>)>);
    impl PathVisitor for Scales {
        fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
            let data = param.val().into_data();
            let DType::QFloat(scheme) = data.dtype() else {
                return;
            };
            let shape = data.shape().clone();
            let (_, scales) = QuantizedBytes {
                bytes: data.into_bytes(),
                scheme,
                shape,
            }
            .into_vec_i8();
            self.0.push((path.to_string(), scales.block));
        }
    }
    let mut v = Scales(Vec::new());
    visit_params(model, &mut v);
    v.0
}

/// Every float parameter's value (`Param::val()`, dequantized), by path.
fn float_values<M: Module>(model: &M) -> BTreeMap<String, Vec<f32>> {
    struct Values(BTreeMap<String, Vec<f32>>);
    impl PathVisitor for Values {
        fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
            let values = param.val().dequantize().into_data().convert::<f32>();
            self.0
                .insert(path.to_string(), values.try_into_vec::<f32>().unwrap());
        }
    }
    let mut v = Values(BTreeMap::new());
    visit_params(model, &mut v);
    v.0
}

#[test]
fn pow2_is_found_by_name_and_quantizes_lenet5_with_power_of_two_scales_only() {
    let names: Vec<&str> = AlgorithmEntry::all().iter().map(|e| e.name).collect();
    assert!(
        names.contains(&"pow2") && names.contains(&"ptq"),
        "{names:?}"
    );
    assert_eq!(
        names.len(),
        burn_compress::algorithms::BUILT_IN.len() + 1,
        "{names:?}"
    );

    let device = Device::flex();
    let (train, test) = ImageDataset::load(root().join("data/mnist5k.safetensors"), 255.0)
        .unwrap()
        .split();
    let AnyModel::LeNet5(model) = AnyModel::load(
        Arch::LeNet5,
        &root().join("data/lenet5-mnist5k.safetensors"),
        &device,
    )
    .unwrap() else {
        unreachable!()
    };
    let dense = accuracy(&model, &test, |m, x| m.classify(x), &device);

    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_types = ['Conv2d', 'Linear']\n\
         target_names = ['_input_', 'weight', '_output_']\nquant_dtype = 'int8'\n\
         granularity = 'out_channel'\n\
         [config_list.target_settings._input_]\ngranularity = 'default'\n\
         [config_list.target_settings._output_]\ngranularity = 'default'\n",
    )
    .unwrap();
    let job = QuantizeJob::new("pow2", config);
    let quantized = quantize_classifier(&model, &train, &job).unwrap();
    assert_eq!(quantized.quantizer().name(), "pow2");

    // The calibration: symmetric, every weight scale a power of two.
    let calibration = quantized.calibration();
    let weights = quantized.sim.weights().targets().len();
    assert_eq!(weights, 5, "LeNet-5 has 2 convs and 3 linears");
    for t in quantized.sim.weights().targets() {
        let e = calibration.get(&t.module, &t.name).unwrap();
        assert!(
            e.scale.data().iter().all(|&s| is_power_of_two(s)),
            "{}",
            t.path
        );
        assert!(e.zero_point.data().iter().all(|&z| z == 0.0), "{}", t.path);
    }

    // Simulated accuracy: power-of-two int8 costs little.
    let acc = quantized.accuracy(&test).unwrap();
    assert!(dense - acc <= 0.02, "pow2 int8: {dense} -> {acc}");

    // Export: Burn Q8S weights whose stored scales are all powers of two, and whose forward
    // is the simulated model's (weights only: the exported model's activations are float).
    let exported = quantized.export(AffinePolicy::Error).unwrap();
    let schemes = quantized_params(&exported);
    assert_eq!(schemes.len(), 5, "{schemes:?}");
    let scales = exported_scales(&exported);
    assert_eq!(scales.len(), 5);
    for (path, block) in &scales {
        assert!(!block.is_empty(), "{path}");
        assert!(
            block.iter().all(|&s| is_power_of_two(s)),
            "{path}: {block:?}"
        );
    }
    let exported_acc = accuracy(&exported, &test, |m, x| m.classify(x), &device);
    assert!(
        dense - exported_acc <= 0.02,
        "exported: {dense} -> {exported_acc}"
    );
    // Bit-exact: every exported weight dequantizes to the simulated fake-quantized weight.
    let simulated = float_values(&quantized.model.clone().materialize());
    for (path, values) in float_values(&exported) {
        if schemes.contains_key(&path) {
            assert_eq!(values, simulated[&path], "{path}");
        }
    }
}
