//! Mask generation on ResNet-50's conv weights (~23.5M parameters) at sparse_ratio 0.5, for each
//! pruner, against a same-run baseline: the straightforward algorithm NNI 3.0 uses (a full sort of
//! every metric for the ratio rule; FPGM's pairwise distance loop), written in plain Rust.
//!
//! `cargo bench -p burn-compress-benches --bench prune_masks`

use burn::prelude::*;
use burn_compress::core::{Dense, granularity::Scaling};
use burn_compress::{AlgorithmEntry, CompressConfig, ModuleIndex, prune};
use burn_compress_benches::ConvStack;
use criterion::{Criterion, criterion_group, criterion_main};

const CONFIG: &str = "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\n";

fn weights(model: &ConvStack) -> Vec<Dense<f32>> {
    model
        .convs
        .iter()
        .map(|c| Dense::from_tensor(c.weight.val(), "w").expect("f32 weights"))
        .collect()
}

/// NNI's ratio rule as written: sort everything, mask the first k.
fn sort_mask(metric: &[f32], ratio: f64) -> Vec<u8> {
    let mut order: Vec<usize> = (0..metric.len()).collect();
    order.sort_by(|&a, &b| metric[a].total_cmp(&metric[b]));
    let mut mask = vec![1u8; metric.len()];
    for &i in &order[..(metric.len() as f64 * ratio) as usize] {
        mask[i] = 0;
    }
    mask
}

/// NNI's FPGM loop: for each filter, the distance to every other filter.
fn fpgm_loop(w: &Dense<f32>) -> Vec<f32> {
    let rows = w.shape()[0];
    let len = w.numel() / rows;
    let d = w.data();
    (0..rows)
        .map(|i| {
            (0..rows)
                .map(|j| {
                    (0..len)
                        .map(|k| (d[j * len + k] - d[i * len + k]).powi(2))
                        .sum::<f32>()
                        .sqrt()
                })
                .sum()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    let model = ConvStack::resnet50(&device);
    let params: usize = ModuleIndex::from_module(&model)
        .params()
        .map(|p| p.shape.iter().product::<usize>())
        .sum();
    eprintln!(
        "ResNet-50 conv weights: {} convs, {params} parameters",
        model.convs.len()
    );
    let config = CompressConfig::from_toml(CONFIG).expect("valid config");
    let mut group = c.benchmark_group("prune_masks_resnet50");
    group.sample_size(10);
    for name in ["level", "l1-norm", "l2-norm", "fpgm"] {
        let pruner = AlgorithmEntry::find(name)
            .expect("registered")
            .build_pruner(&Default::default())
            .expect("builds");
        group.bench_function(name, |b| {
            b.iter(|| prune(&model, &config, pruner.as_ref()).expect("prunes"))
        });
    }
    let ws = weights(&model);
    group.bench_function("baseline-level-sort", |b| {
        b.iter(|| {
            ws.iter()
                .map(|w| sort_mask(&w.data().iter().map(|x| x.abs()).collect::<Vec<_>>(), 0.5))
                .collect::<Vec<_>>()
        })
    });
    group.bench_function("baseline-l1-sort", |b| {
        b.iter(|| {
            ws.iter()
                .map(|w| {
                    let s = Scaling::along_axis(0, 4);
                    let m = s
                        .shrink_with(w, true, "w", 0.0f32, |a, x| a + x.abs(), |a, _| a)
                        .expect("fits");
                    sort_mask(m.data(), 0.5)
                })
                .collect::<Vec<_>>()
        })
    });
    group.bench_function("baseline-fpgm-loop", |b| {
        b.iter(|| ws.iter().map(fpgm_loop).collect::<Vec<_>>())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
