//! Where ResNet-18's CPU latency goes, dense vs 50% channels (issue #4's latency goal): each
//! layer shape of ResNet-18 timed alone on `Device::flex()` at both widths, plus the whole
//! models. Median of 15 runs after 3 warm-ups.
//!
//! `cargo run --release -p burn-compress-benches --example latency_breakdown`

use std::time::Instant;

use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn_compress::core::ModuleIndex;
use burn_compress::speedup::{ConflictPolicy, DependencyGraph, apply, capture};
use burn_compress::zoo::ResNet;
use burn_compress::{AlgorithmEntry, CompressConfig, prune};

fn median_ms(f: impl Fn()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut v: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One line: both timings, their ratio, and the ratio of the work (MACs, or elements for
/// pooling and normalisation) that 50% of the channels removes.
fn row(name: &str, dense: f64, half: f64, work_ratio: f64) {
    println!(
        "{name:28} {dense:8.2} ms {half:8.2} ms  {:5.2}x  (work {work_ratio:.2}x)",
        dense / half
    );
}

fn main() {
    let device = Device::flex();
    println!("{:28} {:>11} {:>11}  ratio", "", "dense", "50% ch.");
    // The 7x7 stem: 3 input channels, so halving its outputs halves its MACs.
    let stem = |c: usize| {
        Conv2dConfig::new([3, c], [7, 7])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
            .init(&device)
    };
    let x = Tensor::<4>::ones([1, 3, 224, 224], &device);
    let (a, b) = (stem(64), stem(32));
    row(
        "stem conv 7x7 s2 @224",
        median_ms(|| drop(a.forward(x.clone()).into_data())),
        median_ms(|| drop(b.forward(x.clone()).into_data())),
        2.0,
    );
    let pool = MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init();
    let (ya, yb) = (
        Tensor::<4>::ones([1, 64, 112, 112], &device),
        Tensor::<4>::ones([1, 32, 112, 112], &device),
    );
    row(
        "maxpool 3x3 s2 @112",
        median_ms(|| drop(pool.forward(ya.clone()).into_data())),
        median_ms(|| drop(pool.forward(yb.clone()).into_data())),
        2.0,
    );
    for (c, hw) in [(64usize, 56usize), (128, 28), (256, 14), (512, 7)] {
        let conv = |ch: usize| {
            Conv2dConfig::new([ch, ch], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(&device)
        };
        let (ca, cb) = (conv(c), conv(c / 2));
        let (xa, xb) = (
            Tensor::<4>::ones([1, c, hw, hw], &device),
            Tensor::<4>::ones([1, c / 2, hw, hw], &device),
        );
        row(
            &format!("conv 3x3 {c}->{c} @{hw}"),
            median_ms(|| drop(ca.forward(xa.clone()).into_data())),
            median_ms(|| drop(cb.forward(xb.clone()).into_data())),
            4.0,
        );
        let (ba, bb) = (
            BatchNormConfig::new(c).init(&device),
            BatchNormConfig::new(c / 2).init(&device),
        );
        row(
            &format!("batchnorm + relu {c} @{hw}"),
            median_ms(|| drop(burn::tensor::activation::relu(ba.forward(xa.clone())).into_data())),
            median_ms(|| drop(burn::tensor::activation::relu(bb.forward(xb.clone())).into_data())),
            2.0,
        );
    }
    // The whole models, pruned as the speedup bench prunes them.
    let input = [1, 3, 224, 224];
    let r18 = ResNet::resnet18(1000, &device);
    let graph = capture(&r18, |m, d| m.forward(Tensor::zeros(input, d))).expect("captures");
    let deps = DependencyGraph::build(&graph).expect("rules");
    let index = ModuleIndex::from_module(&r18);
    let config =
        CompressConfig::from_toml("[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\n")
            .expect("valid");
    let config = deps
        .auto_dependency_groups(&config, &index)
        .expect("groups");
    let pruner = AlgorithmEntry::find("l1-norm")
        .expect("registered")
        .build_pruner(&Default::default())
        .expect("builds");
    let masks = prune(&r18, &config, pruner.as_ref()).expect("prunes").masks;
    let plan = deps
        .plan(&masks, &index, ConflictPolicy::Union)
        .expect("plans")
        .plan;
    let small = apply(&r18, &plan).expect("applies");
    let x = Tensor::<4>::ones(input, &device);
    row(
        "resnet18 (whole)",
        median_ms(|| drop(r18.forward(x.clone()).into_data())),
        median_ms(|| drop(small.forward(x.clone()).into_data())),
        3.75,
    );
}
