//! The GPU path (feature `gpu`): speedup on a model that lives on a Vulkan device, and the
//! sped-up model's output there. CI runs it on lavapipe (Mesa's CPU Vulkan driver).

use burn::prelude::*;
use burn_compress::core::ModuleIndex;
use burn_compress::core::testing::oracle::{fixture, nni_masks, nni_pruning, tensors};
use burn_compress::device::DeviceChoice;
use burn_compress::speedup::{ConflictPolicy, DependencyGraph, apply};
use burn_compress::zoo::{AnyModel, Arch};

fn vulkan() -> Device {
    // Pinned to Vulkan (wgpu's OpenGL fallback deadlocks on llvmpipe) and started once per
    // process, as `DeviceChoice::init` does.
    DeviceChoice::Vulkan
        .init()
        .expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)")
}

#[test]
fn speedup_runs_on_a_vulkan_device_and_matches_the_cpu_and_nni() {
    let gpu = vulkan();
    let cpu = Device::flex();
    let weights = fixture("cnn_weights.safetensors");
    let on_gpu = AnyModel::load(Arch::SmallCnn, &weights, &gpu).unwrap();
    let on_cpu = AnyModel::load(Arch::SmallCnn, &weights, &cpu).unwrap();
    let (AnyModel::SmallCnn(g), AnyModel::SmallCnn(c)) = (&on_gpu, &on_cpu) else {
        unreachable!()
    };
    let masks = nni_masks("cnn", "l1");
    // Capture and plan from the GPU-resident model: capture copies it to the capture device.
    let graph = burn_compress::zoo_capture::capture_zoo(&on_gpu, &[1, 1, 8, 8]).unwrap();
    let report = DependencyGraph::build(&graph)
        .unwrap()
        .plan(&masks, &ModuleIndex::from_module(g), ConflictPolicy::Union)
        .unwrap();
    let small_gpu = apply(g, &report.plan).unwrap();
    let small_cpu = apply(c, &report.plan).unwrap();
    assert_eq!(small_gpu.conv2.weight.dims(), [14, 4, 3, 3]);
    let x = &tensors("inputs.safetensors")["cnn_x"];
    let input =
        |d: &Device| Tensor::<4>::from_data(TensorData::new(x.data().to_vec(), [4, 1, 8, 8]), d);
    let out_gpu: Vec<f32> = small_gpu
        .forward(input(&gpu))
        .into_data()
        .try_into_vec()
        .unwrap();
    let out_cpu: Vec<f32> = small_cpu
        .forward(input(&cpu))
        .into_data()
        .try_into_vec()
        .unwrap();
    let nni: Vec<f32> = nni_pruning()["cnn"]["cases"]["l1"]["speedup_output"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    for ((g, c), n) in out_gpu.iter().zip(&out_cpu).zip(&nni) {
        assert!((g - c).abs() < 1e-4, "GPU {g} vs CPU {c}");
        assert!((g - n).abs() < 1e-4, "GPU {g} vs NNI {n}");
    }
}

/// The exported int8 / int4 LeNet-5 loads onto the Vulkan device (Burn runs packed quantized
/// weights in its kernels there) and computes what the CPU computes; the graph replay that
/// simulates activation quantization runs there too.
#[test]
fn quantized_models_and_the_quantization_replay_run_on_a_vulkan_device() {
    use burn_compress::CompressConfig;
    use burn_compress::core::dataset::ImageDataset;
    use burn_compress::quant::{AffinePolicy, load_quantized, quantized_to_device, save_quantized};
    use burn_compress::quantize::{QuantizeJob, quantize_classifier};
    use burn_compress::zoo::{ImageClassifier, LeNet5};

    let gpu = vulkan();
    let cpu = Device::flex();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (train, test) = ImageDataset::load(root.join("data/mnist5k.safetensors"), 255.0)
        .unwrap()
        .split();
    let model = match AnyModel::load(
        Arch::LeNet5,
        &root.join("data/lenet5-mnist5k.safetensors"),
        &cpu,
    )
    .unwrap()
    {
        AnyModel::LeNet5(m) => m,
        _ => unreachable!(),
    };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-gpu-quant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for dtype in ["int8", "int4"] {
        let config = CompressConfig::from_toml(&format!(
            "[[config_list]]\nop_types = ['Conv2d', 'Linear']\ntarget_names = ['weight']\nquant_dtype = '{dtype}'\n"
        ))
        .unwrap();
        let q = quantize_classifier(&model, &train, &QuantizeJob::new("ptq", config)).unwrap();
        let native = q.export(AffinePolicy::Error).unwrap();
        let file = save_quantized(&native, dir.join(format!("{dtype}.bpk"))).unwrap();
        let loaded = load_quantized(LeNet5::new(&cpu), &file).unwrap();
        let on_gpu = quantized_to_device(&loaded, &gpu).unwrap();
        // Packed on the GPU where the innermost extent allows (Linear weights), float elsewhere.
        let packed: Vec<String> = burn_compress::quant::quantized_params(&on_gpu)
            .into_keys()
            .collect();
        let expected: &[&str] = if dtype == "int8" {
            &["fc1.weight", "fc2.weight"]
        } else {
            &["fc1.weight"]
        };
        assert_eq!(packed, expected, "{dtype}");
        let x = |d: &Device| test.batch(0, 16, d).0;
        let out_gpu: Vec<f32> = on_gpu.classify(x(&gpu)).into_data().try_into_vec().unwrap();
        let out_cpu: Vec<f32> = native.classify(x(&cpu)).into_data().try_into_vec().unwrap();
        for (g, c) in out_gpu.iter().zip(&out_cpu) {
            assert!((g - c).abs() < 1e-3, "{dtype}: GPU {g} vs CPU {c}");
        }
    }
    // Activation fake quantization through the replay, on the GPU.
    let config = CompressConfig::from_file(root.join("configs/lenet5-ptq-int8.toml")).unwrap();
    let q = quantize_classifier(&model, &train, &QuantizeJob::new("ptq", config)).unwrap();
    let gpu_model = q.model.clone().to_device(&gpu);
    let x = |d: &Device| test.batch(0, 16, d).0;
    let sim_gpu: Vec<f32> = q
        .sim
        .forward(&gpu_model, x(&gpu), |m: &LeNet5, x| m.classify(x))
        .unwrap()
        .into_data()
        .try_into_vec()
        .unwrap();
    let sim_cpu: Vec<f32> = q
        .forward(x(&cpu))
        .unwrap()
        .into_data()
        .try_into_vec()
        .unwrap();
    // Fake quantization rounds at ties: a rare flip moves a logit by a step, not the answer.
    let argmax = |v: &[f32]| -> Vec<usize> {
        v.chunks(10)
            .map(|r| (0..10).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
            .collect()
    };
    assert_eq!(argmax(&sim_gpu), argmax(&sim_cpu));
    let mean = sim_gpu
        .iter()
        .zip(&sim_cpu)
        .map(|(g, c)| (g - c).abs())
        .sum::<f32>()
        / sim_gpu.len() as f32;
    assert!(mean < 5e-2, "simulated: mean |GPU - CPU| {mean}");
    std::fs::remove_dir_all(&dir).ok();
}
