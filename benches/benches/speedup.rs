//! Dense vs sped-up latency at 50% channels, and the time the speedup step takes. Baselines are
//! measured in the same run: the dense model, and for the step the MACs ratio the latency is
//! compared to.
//!
//! `cargo bench -p burn-compress-benches --bench speedup` runs on the CPU (`flex`).
//! `BURN_COMPRESS_DEVICE=vulkan cargo bench -p burn-compress-benches --features gpu --bench speedup`
//! runs the models on a Vulkan GPU (group names gain the device: `speedup_latency_vulkan`).

use std::time::Duration;

use burn::prelude::*;
use burn_compress::core::ModuleIndex;
use burn_compress::device::DeviceChoice;
use burn_compress::graph::{capture, count};
use burn_compress::speedup::{ConflictPolicy, DependencyGraph, FixStructure, apply};
use burn_compress::zoo::{ResNet, SmallCnn};
use burn_compress::{AlgorithmEntry, CompressConfig, prune};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const CONVS: &str = "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\n";

/// The step users run: capture, dependency groups, plan, shrink (masks come from L1-norm with
/// automatic dependency groups).
fn speedup_step<M: Module + FixStructure + 'static>(
    model: &M,
    masks: &burn_compress::MaskSet,
    input: [usize; 4],
) -> M {
    let graph = capture(model, |m, d| forward(m, Tensor::zeros(input, d))).expect("captures");
    let deps = DependencyGraph::build(&graph).expect("rules");
    let report = deps
        .plan(
            masks,
            &ModuleIndex::from_module(model),
            ConflictPolicy::Union,
        )
        .expect("plans");
    apply(model, &report.plan).expect("applies")
}

/// The forward of the models benched here.
fn forward<M: Module + 'static>(m: &M, x: Tensor<4>) -> Tensor<2> {
    let any: &dyn std::any::Any = m;
    if let Some(r) = any.downcast_ref::<ResNet<burn_compress::zoo::BasicBlock>>() {
        r.forward(x)
    } else if let Some(r) = any.downcast_ref::<ResNet<burn_compress::zoo::Bottleneck>>() {
        r.forward(x)
    } else if let Some(c) = any.downcast_ref::<SmallCnn>() {
        c.forward(x)
    } else {
        unreachable!("benched models only")
    }
}

fn masks_for<M: Module + 'static>(model: &M, input: [usize; 4]) -> burn_compress::MaskSet {
    let graph = capture(model, |m, d| forward(m, Tensor::zeros(input, d))).expect("captures");
    let deps = DependencyGraph::build(&graph).expect("rules");
    let index = ModuleIndex::from_module(model);
    let config = deps
        .auto_dependency_groups(&CompressConfig::from_toml(CONVS).expect("valid"), &index)
        .expect("groups");
    let pruner = AlgorithmEntry::find("l1-norm")
        .expect("registered")
        .build_pruner(&Default::default())
        .expect("builds");
    prune(model, &config, pruner.as_ref())
        .expect("prunes")
        .masks
}

fn report<M: Module + 'static>(name: &str, dense: &M, small: &M, input: [usize; 4]) {
    let cost =
        |m: &M| count(&capture(m, |m, d| forward(m, Tensor::zeros(input, d))).expect("captures"));
    let (a, b) = (cost(dense), cost(small));
    eprintln!(
        "{name}: MACs {} -> {} ({:.2}x), params {} -> {} ({:.2}x), bytes (f32) {} -> {} ({:.2}x)",
        a.macs,
        b.macs,
        a.macs as f64 / b.macs as f64,
        a.params,
        b.params,
        a.params as f64 / b.params as f64,
        a.params * 4,
        b.params * 4,
        a.params as f64 / b.params as f64
    );
}

fn bench(c: &mut Criterion) {
    let name = std::env::var("BURN_COMPRESS_DEVICE").unwrap_or_else(|_| "cpu".into());
    let (choice, device) = match name
        .parse::<DeviceChoice>()
        .and_then(|c| Ok((c, c.init()?)))
    {
        Ok(found) => found,
        Err(e) => {
            eprintln!("BURN_COMPRESS_DEVICE: {e}");
            std::process::exit(2);
        }
    };
    let suffix = match choice {
        DeviceChoice::Cpu => String::new(),
        other => format!("_{other}"),
    };
    eprintln!("device: {choice}");
    let input = [1, 3, 224, 224];
    let r18 = ResNet::resnet18(1000, &device);
    let r18_masks = masks_for(&r18, input);
    let r18_small = speedup_step(&r18, &r18_masks, input);
    report("resnet18 224x224", &r18, &r18_small, input);
    let cnn = SmallCnn::new(&device);
    let cnn_masks = masks_for(&cnn, [1, 1, 8, 8]);
    let cnn_small = speedup_step(&cnn, &cnn_masks, [1, 1, 8, 8]);
    report("small-cnn 8x8", &cnn, &cnn_small, [1, 1, 8, 8]);

    let mut group = c.benchmark_group(format!("speedup_latency{suffix}"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for batch in [1usize, 8] {
        let x = Tensor::<4>::ones([batch, 3, 224, 224], &device);
        group.bench_with_input(BenchmarkId::new("resnet18-dense", batch), &x, |b, x| {
            b.iter(|| r18.forward(x.clone()).into_data())
        });
        group.bench_with_input(BenchmarkId::new("resnet18-pruned", batch), &x, |b, x| {
            b.iter(|| r18_small.forward(x.clone()).into_data())
        });
        let x = Tensor::<4>::ones([batch, 1, 8, 8], &device);
        group.bench_with_input(BenchmarkId::new("small-cnn-dense", batch), &x, |b, x| {
            b.iter(|| cnn.forward(x.clone()).into_data())
        });
        group.bench_with_input(BenchmarkId::new("small-cnn-pruned", batch), &x, |b, x| {
            b.iter(|| cnn_small.forward(x.clone()).into_data())
        });
    }
    group.finish();

    let mut group = c.benchmark_group(format!("speedup_step{suffix}"));
    group.sample_size(10);
    group.bench_function("resnet18", |b| {
        b.iter(|| speedup_step(&r18, &r18_masks, input))
    });
    let r50 = ResNet::resnet50(1000, &device);
    let r50_masks = masks_for(&r50, input);
    report(
        "resnet50 224x224",
        &r50,
        &speedup_step(&r50, &r50_masks, input),
        input,
    );
    group.bench_function("resnet50", |b| {
        b.iter(|| speedup_step(&r50, &r50_masks, input))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
