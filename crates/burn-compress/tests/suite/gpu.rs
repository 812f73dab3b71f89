//! The GPU path (feature `gpu`): speedup on a model that lives on a Vulkan device, and the
//! sped-up model's output there. CI runs it on lavapipe (Mesa's CPU Vulkan driver).

use burn::prelude::*;
use burn::tensor::wgpu::WgpuBackend;
use burn_compress::core::ModuleIndex;
use burn_compress::core::testing::oracle::{fixture, nni_masks, nni_pruning, tensors};
use burn_compress::speedup::{ConflictPolicy, DependencyGraph, apply};
use burn_compress::zoo::{AnyModel, Arch};

fn vulkan() -> Device {
    // Pinned to Vulkan: wgpu's OpenGL fallback deadlocks on llvmpipe.
    Device::wgpu_options()
        .graphics_api(WgpuBackend::Vulkan)
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
    let graph = on_gpu.capture(&[1, 1, 8, 8]).unwrap();
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
