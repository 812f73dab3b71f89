//! f32 vs Burn-quantized weights on the CPU backend (`flex`), the f32 model being the same-run
//! baseline: a Linear 1024x1024 at batch 1 and 32 (f32, Q8S, Q4S per tensor) and LeNet-5 at
//! batch 64 (f32, Q8S). Burn's CPU backends dequantize the whole weight on every call, so the
//! quantized rows measure that cost; the win is the file size, printed before the timings.
//!
//! `cargo bench -p burn-compress-benches --bench quantized`

use std::collections::BTreeMap;
use std::time::Duration;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn_compress::quant::{
    AffinePolicy, QuantBits, QuantLevel, WeightQuant, quantize_layers, quantize_weights,
    save_quantized,
};
use burn_compress::zoo::LeNet5;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn quantized_linear(linear: &Linear, bits: QuantBits) -> Linear {
    let plan = BTreeMap::from([(
        "weight".to_string(),
        WeightQuant::new(bits, QuantLevel::PerTensor),
    )]);
    quantize_weights(linear, &plan, AffinePolicy::Error).expect("quantizes")
}

/// File sizes of the f32 model and its quantized copies.
fn report<M: Module>(name: &str, models: &[(&str, &M)]) {
    let dir = std::env::temp_dir().join(format!("bc-bench-quantized-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sizes: Vec<(&str, u64)> = models
        .iter()
        .map(|(tag, m)| {
            let file = save_quantized(*m, dir.join(format!("{name}-{tag}.bpk"))).expect("saves");
            (*tag, std::fs::metadata(file).expect("written").len())
        })
        .collect();
    let base = sizes[0].1 as f64;
    let line: Vec<String> = sizes
        .iter()
        .map(|(tag, s)| format!("{tag} {s} B ({:.2}x)", base / *s as f64))
        .collect();
    eprintln!("{name} file: {}", line.join(", "));
    let _ = std::fs::remove_dir_all(dir);
}

fn bench(c: &mut Criterion) {
    let device = Device::flex();

    let linear: Linear = LinearConfig::new(1024, 1024).init(&device);
    let q8 = quantized_linear(&linear, QuantBits::Q8S);
    let q4 = quantized_linear(&linear, QuantBits::Q4S);
    report(
        "linear-1024",
        &[("f32", &linear), ("q8s", &q8), ("q4s", &q4)],
    );
    let mut group = c.benchmark_group("quantized_linear_1024");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for batch in [1usize, 32] {
        let x = Tensor::<2>::random([batch, 1024], burn::tensor::Distribution::Default, &device);
        for (tag, model) in [("f32", &linear), ("q8s", &q8), ("q4s", &q4)] {
            group.bench_with_input(BenchmarkId::new(tag, batch), &x, |b, x| {
                b.iter(|| model.forward(x.clone()).into_data())
            });
        }
    }
    group.finish();

    let lenet = LeNet5::new(&device);
    let lenet_q8 = quantize_layers(
        &lenet,
        &["conv1", "conv2", "fc1", "fc2", "fc3"],
        &WeightQuant::new(QuantBits::Q8S, QuantLevel::PerTensor),
    )
    .expect("quantizes");
    report("lenet5", &[("f32", &lenet), ("q8s", &lenet_q8)]);
    let mut group = c.benchmark_group("quantized_lenet5");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    let x = Tensor::<4>::random(
        [64, 1, 28, 28],
        burn::tensor::Distribution::Default,
        &device,
    );
    for (tag, model) in [("f32", &lenet), ("q8s", &lenet_q8)] {
        group.bench_with_input(BenchmarkId::new(tag, 64), &x, |b, x| {
            b.iter(|| model.forward(x.clone()).into_data())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
