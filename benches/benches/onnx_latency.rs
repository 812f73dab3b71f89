//! Exported ONNX models on tract (pure-Rust CPU engine) against Burn flex f32 in the same run:
//! ResNet-18 (224x224) at batch 8 and a Linear 1024x1024 at batch 32, each as f32 and as QDQ
//! int8 on tract; and the exported 50%-channel (L1, sped-up) ResNet-18 against the dense one on
//! tract, with the MACs of each, for the latency/MACs ratio.
//!
//! The QDQ scales are synthetic (weights: max-abs per output channel; activations: one fixed
//! range per tensor): they set what runs, not the accuracy, which the test suite checks with
//! real calibrations. Threads: tract runs on one thread; Burn flex as built (no `rayon`).
//!
//! `cargo bench -p burn-compress-benches --bench onnx_latency`

use std::sync::Arc;
use std::time::Duration;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn_compress::graph::onnx::{OnnxOptions, Qdq, QuantParam, export};
use burn_compress::graph::{Graph, capture, count, layer_calls};
use burn_compress::zoo::{AnyModel, Arch};
use burn_compress::zoo_capture::capture_zoo;
use burn_compress_benches::resnet18_half;
use criterion::{Criterion, criterion_group, criterion_main};
use tract_onnx::prelude::{
    self as tract, Framework, InferenceFact, InferenceModelExt, IntoRunnable, TypedRunnableModel,
    tvec,
};

fn tract_plan(bytes: &[u8], shape: &[usize]) -> Arc<TypedRunnableModel> {
    tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .expect("tract reads the model")
        .with_input_fact(
            0,
            InferenceFact::dt_shape(f32::datum_type(), shape.to_vec()),
        )
        .unwrap()
        .into_optimized()
        .expect("tract optimizes")
        .into_runnable()
        .unwrap()
}

use tract::Datum;

/// Synthetic QDQ annotations: weights per output channel (max-abs / 127), activations one
/// fixed int8 range each.
fn synthetic_qdq<M: Module>(graph: &Graph, model: &M) -> Qdq {
    struct W(Vec<(String, Vec<usize>, Vec<f32>)>);
    impl burn_compress::core::paths::PathVisitor for W {
        fn visit<const D: usize>(&mut self, path: &str, p: &burn::module::Param<Tensor<D>>) {
            let v = p.val();
            self.0.push((
                path.into(),
                v.dims().to_vec(),
                v.into_data().try_to_vec().unwrap(),
            ));
        }
    }
    let mut w = W(Vec::new());
    burn_compress::core::paths::visit_params(model, &mut w);
    let mut qdq = Qdq::default();
    for call in layer_calls(graph) {
        let path = format!("{}.weight", call.layer);
        let Some((_, dims, values)) = w.0.iter().find(|(p, _, _)| *p == path) else {
            continue;
        };
        if dims.len() < 2 || call.kind.as_str() == "BatchNorm" {
            continue;
        }
        // Conv weights [out, ..] (axis 0); Linear [in, out] (axis 1).
        let axis = if dims.len() == 2 { 1 } else { 0 };
        let inner: usize = dims[axis + 1..].iter().product();
        let mut max = vec![0f32; dims[axis]];
        for (i, v) in values.iter().enumerate() {
            let c = (i / inner) % dims[axis];
            max[c] = max[c].max(v.abs());
        }
        let scales = max
            .iter()
            .map(|m| (m / 127.0).max(1e-8))
            .collect::<Vec<_>>();
        let n = scales.len();
        qdq.weights.insert(
            path,
            QuantParam {
                scales,
                zero_points: vec![0; n],
                axis: Some(axis),
                signed: true,
            },
        );
        for t in [&call.input, &call.output] {
            qdq.activations
                .insert(t.id, QuantParam::per_tensor(0.05, 0, true));
        }
    }
    qdq
}

fn input(shape: &[usize]) -> tract::TValue {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| ((i % 251) as f32 / 251.0) - 0.5).collect();
    tract::Tensor::from_shape(shape, &data).unwrap().into()
}

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    let mut g = c.benchmark_group("onnx_latency");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    // Linear 1024x1024, batch 32.
    let linear: Linear = LinearConfig::new(1024, 1024).init(&device);
    let lgraph = capture(&linear, |m, d| m.forward(Tensor::<2>::zeros([1, 1024], d))).unwrap();
    let f32_bytes = export(&lgraph, &linear, &OnnxOptions::default()).unwrap();
    let q = synthetic_qdq(&lgraph, &linear);
    let int8_bytes = export(&lgraph, &linear, &OnnxOptions::default().with_qdq(q)).unwrap();
    let shape = [32, 1024];
    let x = Tensor::<2>::ones(shape, &device);
    g.bench_function("linear1024_b32/burn_flex_f32", |b| {
        b.iter(|| linear.forward(x.clone()).into_data())
    });
    for (tag, bytes) in [("f32", &f32_bytes), ("int8_qdq", &int8_bytes)] {
        let plan = tract_plan(bytes, &shape);
        let v = input(&shape);
        g.bench_function(format!("linear1024_b32/tract_{tag}"), |b| {
            b.iter(|| plan.run(tvec!(v.clone())).unwrap())
        });
    }

    // ResNet-18 224x224, batch 8: dense f32 / int8, and 50%-channel f32.
    let model = AnyModel::init(Arch::ResNet18, &device);
    let graph = capture_zoo(&model, &[1, 3, 224, 224]).unwrap();
    let small = resnet18_half(&model, &graph);
    let small_graph = capture_zoo(&small, &[1, 3, 224, 224]).unwrap();
    let (AnyModel::ResNet18(dense), AnyModel::ResNet18(half)) = (&model, &small) else {
        unreachable!()
    };
    let (macs_dense, macs_half) = (count(&graph).macs, count(&small_graph).macs);
    println!(
        "resnet18 224x224 MACs per image: dense {macs_dense}, 50%-channel {macs_half} ({:.3}x)",
        macs_half as f64 / macs_dense as f64
    );
    let f32_bytes = export(&graph, dense, &OnnxOptions::default()).unwrap();
    let int8_bytes = export(
        &graph,
        dense,
        &OnnxOptions::default().with_qdq(synthetic_qdq(&graph, dense)),
    )
    .unwrap();
    let half_bytes = export(&small_graph, half, &OnnxOptions::default()).unwrap();
    let shape = [8, 3, 224, 224];
    let x = Tensor::<4>::ones(shape, &device);
    g.bench_function("resnet18_b8/burn_flex_f32", |b| {
        b.iter(|| dense.forward(x.clone()).into_data())
    });
    for (tag, bytes) in [
        ("f32", &f32_bytes),
        ("int8_qdq", &int8_bytes),
        ("half_channels_f32", &half_bytes),
    ] {
        let plan = tract_plan(bytes, &shape);
        let v = input(&shape);
        g.bench_function(format!("resnet18_b8/tract_{tag}"), |b| {
            b.iter(|| plan.run(tvec!(v.clone())).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
