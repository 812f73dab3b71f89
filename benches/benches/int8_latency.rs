//! Burn flex f32 (the same-run baseline) against compress-quant's int8 deploy path
//! (`compress_quant::deploy`: rten-gemm's u8 x i8 -> i32 kernels, AVX-512 VNNI where the CPU has
//! it), in one run:
//!
//! - a Linear 1024x1024 at batch 32: `Linear::forward` vs `Int8Linear`;
//! - the zoo's ResNet-18 at 224x224, batch 8: `ResNet::forward` vs `Int8ResNet`;
//! - the 50%-channel (L1, sped-up) ResNet-18 in int8 against the dense int8 one, for the
//!   latency/MACs ratio: `(t_dense / t_half) / (MACs_dense / MACs_half)` (1.0: latency shrinks
//!   exactly as the MACs do).
//!
//! Calibrations come from QuantSim with PTQ (int8 weights per output channel, int8 inputs per
//! tensor) on a synthetic batch: they set what runs, not an accuracy. Threads: rayon's default
//! (`RAYON_NUM_THREADS` unset: one per core) for both sides.
//!
//! `cargo bench -p burn-compress-benches --bench int8_latency`

use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn_compress::algorithms::ptq::PtqQuantizer;
use burn_compress::graph::count;
use burn_compress::quant::deploy::{Int8Linear, Int8ResNet, int8_kernel_name, runs_int8};
use burn_compress::quant::{CalibrationConfig, QuantSim};
use burn_compress::zoo::{AnyModel, Arch, BasicBlock, ResNet};
use burn_compress::zoo_capture::capture_zoo;
use burn_compress::{CompressConfig, ModuleIndex};
use burn_compress_benches::resnet18_half;
use criterion::{Criterion, criterion_group, criterion_main};

/// PTQ on `op_types`: weights per output channel, inputs per tensor, int8.
fn config(op_types: &str) -> CompressConfig {
    CompressConfig::from_toml(&format!(
        "[[config_list]]\nop_types = {op_types}\ntarget_names = ['weight']\nquant_dtype = 'int8'\n\
         granularity = 'out_channel'\n\
         [[config_list]]\nop_types = {op_types}\ntarget_names = ['_input_']\nquant_dtype = 'int8'\n"
    ))
    .expect("bench config")
}

fn calibrate<M: Module, const D: usize, const O: usize>(
    model: &M,
    config: &CompressConfig,
    x: Tensor<D>,
    forward: impl Fn(&M, Tensor<D>) -> Tensor<O> + Copy,
) -> CalibrationConfig {
    let index = ModuleIndex::from_module(model);
    let mut sim = QuantSim::new(Arc::new(PtqQuantizer::default()), config, &index).expect("sim");
    sim.calibrate(model, [x], forward).expect("calibrates")
}

fn synthetic<const D: usize>(dims: [usize; D], device: &Device) -> Tensor<D> {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i % 251) as f32 / 251.0) - 0.5).collect();
    Tensor::from_data(TensorData::new(v, dims), device)
}

/// Median wall time of `runs` calls (for the ratio line; criterion reports the rest).
fn median(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[runs / 2]
}

fn resnet(model: &AnyModel) -> &ResNet<BasicBlock> {
    match model {
        AnyModel::ResNet18(m) => m,
        _ => unreachable!("a ResNet-18"),
    }
}

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    println!(
        "int8 kernel: {}; rayon threads: {}",
        int8_kernel_name(),
        rayon::current_num_threads()
    );
    let mut g = c.benchmark_group("int8_latency");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    // Linear 1024x1024, batch 32.
    #[derive(Module, Debug)]
    struct Fc {
        fc: Linear,
    }
    let model = Fc {
        fc: LinearConfig::new(1024, 1024).init(&device),
    };
    let x = synthetic([32, 1024], &device);
    let cal = calibrate(&model, &config("['Linear']"), x.clone(), |m: &Fc, x| {
        m.fc.forward(x)
    });
    let int8 = Int8Linear::new(&model.fc, "fc", &cal).expect("int8 Linear");
    assert!(runs_int8(&x), "the bench must run the int8 GEMM");
    g.bench_function("linear1024_b32/burn_flex_f32", |b| {
        b.iter(|| model.fc.forward(x.clone()).into_data())
    });
    g.bench_function("linear1024_b32/int8_deploy", |b| {
        b.iter(|| int8.forward(x.clone()).into_data())
    });

    // ResNet-18 224x224, batch 8: dense f32 / int8, 50%-channel int8.
    let dense = AnyModel::init(Arch::ResNet18, &device);
    let graph = capture_zoo(&dense, &[1, 3, 224, 224]).expect("captures");
    let half = resnet18_half(&dense, &graph);
    let half_graph = capture_zoo(&half, &[1, 3, 224, 224]).expect("captures");
    let (macs_dense, macs_half) = (count(&graph).macs, count(&half_graph).macs);
    let convs = config("['Conv2d', 'Linear']");
    let one = synthetic([1, 3, 224, 224], &device);
    let forward = |m: &ResNet<BasicBlock>, x: Tensor<4>| m.forward(x);
    let int8_dense = Int8ResNet::new(
        resnet(&dense),
        &calibrate(resnet(&dense), &convs, one.clone(), forward),
    )
    .expect("int8 ResNet-18");
    let int8_half = Int8ResNet::new(
        resnet(&half),
        &calibrate(resnet(&half), &convs, one, forward),
    )
    .expect("int8 50%-channel ResNet-18");
    let x = synthetic([8, 3, 224, 224], &device);
    g.bench_function("resnet18_b8/burn_flex_f32", |b| {
        b.iter(|| resnet(&dense).forward(x.clone()).into_data())
    });
    g.bench_function("resnet18_b8/int8_deploy", |b| {
        b.iter(|| int8_dense.forward(x.clone()).into_data())
    });
    g.bench_function("resnet18_half_b8/int8_deploy", |b| {
        b.iter(|| int8_half.forward(x.clone()).into_data())
    });
    g.finish();

    let t_dense = median(7, || {
        int8_dense.forward(x.clone()).into_data();
    });
    let t_half = median(7, || {
        int8_half.forward(x.clone()).into_data();
    });
    let macs_ratio = macs_dense as f64 / macs_half as f64;
    println!(
        "resnet18 b8 int8: dense {:.1} ms, 50%-channel {:.1} ms (median of 7); MACs per image \
         dense {macs_dense}, 50%-channel {macs_half} ({macs_ratio:.3}x); latency/MACs ratio {:.3}",
        t_dense * 1e3,
        t_half * 1e3,
        (t_dense / t_half) / macs_ratio
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
