//! Where ResNet-18's CPU latency goes, dense vs 50% channels (issue #4's latency goal): each
//! layer shape of ResNet-18 timed alone on `Device::flex()` at both widths, plus the whole
//! models, then the stem's time against its output channels (a straight-line fit: the intercept is
//! the part of the kernel's time that removing output channels cannot remove). Median of 15 runs
//! after 3 warm-ups.
//!
//! `cargo run --release -p burn-compress-benches --example latency_breakdown [BATCH]` (default 1)

use std::time::Instant;

use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn_compress::core::ModuleIndex;
use burn_compress::graph::capture;
use burn_compress::speedup::{ConflictPolicy, DependencyGraph, apply};
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
    let batch: usize = match std::env::args().nth(1) {
        None => 1,
        Some(arg) => match arg.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("BATCH must be a positive integer, got {arg:?}");
                std::process::exit(2);
            }
        },
    };
    let device = Device::flex();
    println!("batch {batch}");
    println!("{:28} {:>11} {:>11}  ratio", "", "dense", "50% ch.");
    // The 7x7 stem: 3 input channels, so halving its outputs halves its MACs.
    let stem = |c: usize| {
        Conv2dConfig::new([3, c], [7, 7])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
            .init(&device)
    };
    let x = Tensor::<4>::ones([batch, 3, 224, 224], &device);
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
        Tensor::<4>::ones([batch, 64, 112, 112], &device),
        Tensor::<4>::ones([batch, 32, 112, 112], &device),
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
            Tensor::<4>::ones([batch, c, hw, hw], &device),
            Tensor::<4>::ones([batch, c / 2, hw, hw], &device),
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
    let input = [batch, 3, 224, 224];
    let r18 = ResNet::resnet18(1000, &device);
    let graph =
        capture(&r18, |m, d| m.forward(Tensor::zeros([1, 3, 224, 224], d))).expect("captures");
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

    // The stem's time against its output channels: t = a + b * c_out. `a` is paid whatever
    // the width, so it bounds how much pruning the stem's outputs can gain.
    let widths = [24usize, 32, 48, 64, 96, 128];
    let times: Vec<f64> = widths
        .iter()
        .map(|&c| {
            let conv = stem(c);
            median_ms(|| drop(conv.forward(x.clone()).into_data()))
        })
        .collect();
    let n = widths.len() as f64;
    let mean_c = widths.iter().sum::<usize>() as f64 / n;
    let mean_t = times.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (&c, &t) in widths.iter().zip(&times) {
        sxy += (c as f64 - mean_c) * (t - mean_t);
        sxx += (c as f64 - mean_c).powi(2);
    }
    let slope = sxy / sxx;
    let intercept = mean_t - slope * mean_c;
    println!("stem conv 7x7 s2 @224, time by output channels:");
    for (c, t) in widths.iter().zip(&times) {
        println!("  c_out {c:4}  {t:8.2} ms");
    }
    println!(
        "  fit: {intercept:.2} ms + {:.4} ms per output channel ({:.0}% of the 64-channel time is fixed)",
        slope,
        100.0 * intercept / (intercept + 64.0 * slope)
    );
}
