//! One LeNet-5 training epoch on MNIST-5k's 4000 training images (Adam 1e-3, batch 64), CPU
//! (`flex` with autodiff). The same-run baseline is one inference pass over the same images, the
//! floor a training epoch is measured against; PyTorch (1 thread) takes 0.35-0.5 s per epoch here.
//!
//! `cargo bench -p burn-compress-benches --bench train_epoch`

use std::path::Path;
use std::time::Duration;

use burn::prelude::*;
use burn_compress::core::{
    dataset::ImageDataset,
    train::{NoHooks, TrainConfig, accuracy, train_classifier},
};
use burn_compress::zoo::{ImageClassifier, LeNet5};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist5k.safetensors");
    let (train, _) = ImageDataset::load(data, 255.0)
        .expect("bundled data")
        .split();
    let device = Device::flex().autodiff();
    let config = TrainConfig {
        epochs: 1,
        progress: false,
        ..Default::default()
    };
    let mut group = c.benchmark_group("lenet5_mnist5k");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("train_epoch", |b| {
        b.iter(|| {
            train_classifier(
                LeNet5::new(&device),
                &train,
                |m, x| m.classify(x),
                &config,
                &mut NoHooks,
            )
        })
    });
    let inference = LeNet5::new(&Device::flex());
    group.bench_function("baseline-inference_pass", |b| {
        b.iter(|| accuracy(&inference, &train, |m, x| m.classify(x), &Device::flex()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
