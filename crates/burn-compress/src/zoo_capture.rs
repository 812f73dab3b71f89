//! Capturing a zoo model's forward pass for an input shape (speedup, counting, replay).

use burn::prelude::*;
use compress_graph::{Graph, GraphError, capture};
use compress_zoo::AnyModel;

/// Record one forward pass on an example input of `shape` (`[batch, channels, height,
/// width]` for image models, `[batch, seq]` token ids for tiny-transformer and minilm-l6), for
/// speedup.
///
/// # Errors
/// A shape of the wrong rank, or the capture's own errors.
pub fn capture_zoo(model: &AnyModel, shape: &[usize]) -> compress_graph::Result<Graph> {
    let bad = |what: &str| GraphError::Capture(format!("input shape {shape:?}: {what}"));
    match (model, shape) {
        (AnyModel::TinyTransformer(m), &[b, s]) => {
            capture(m, |m, d| m.forward(Tensor::<2, Int>::zeros([b, s], d)))
        }
        (AnyModel::TinyTransformer(_), _) => {
            Err(bad("tiny-transformer takes token ids [batch, seq]"))
        }
        (AnyModel::MiniLm(m), &[b, s]) => {
            capture(m, |m, d| m.forward(Tensor::<2, Int>::zeros([b, s], d)))
        }
        (AnyModel::MiniLm(_), _) => Err(bad("minilm-l6 takes token ids [batch, seq]")),
        // The MLPs take feature vectors [batch, features], or images flattened.
        (AnyModel::Mlp(m), &[b, f]) => capture(m, |m, d| m.forward(Tensor::<2>::zeros([b, f], d))),
        (AnyModel::LeNet300100(m), &[b, f]) => {
            capture(m, |m, d| m.forward(Tensor::<2>::zeros([b, f], d)))
        }
        (AnyModel::Mlp(m), &[b, c, h, w]) => capture(m, |m, d| {
            m.forward(Tensor::<4>::zeros([b, c, h, w], d).flatten(1, 3))
        }),
        (AnyModel::LeNet300100(m), &[b, c, h, w]) => capture(m, |m, d| {
            m.forward(Tensor::<4>::zeros([b, c, h, w], d).flatten(1, 3))
        }),
        (AnyModel::SmallCnn(m), &[b, c, h, w]) => {
            capture(m, |m, d| m.forward(Tensor::zeros([b, c, h, w], d)))
        }
        (AnyModel::LeNet5(m), &[b, c, h, w]) => {
            capture(m, |m, d| m.forward(Tensor::zeros([b, c, h, w], d)))
        }
        (AnyModel::ResNet18(m), &[b, c, h, w]) => {
            capture(m, |m, d| m.forward(Tensor::zeros([b, c, h, w], d)))
        }
        (AnyModel::ResNet50(m), &[b, c, h, w]) => {
            capture(m, |m, d| m.forward(Tensor::zeros([b, c, h, w], d)))
        }
        (AnyModel::MobileNetV2(m), &[b, c, h, w]) => {
            capture(m, |m, d| m.forward(Tensor::zeros([b, c, h, w], d)))
        }
        // As `AnyModel::forward`: RGB in [0, 1], normalised by the model's preprocessing.
        (AnyModel::EfficientNetLite0(m), &[b, c, h, w]) => capture(m, |m, d| {
            m.forward(compress_zoo::EfficientNetLite0::preprocess(Tensor::zeros(
                [b, c, h, w],
                d,
            )))
        }),
        _ => Err(bad("image models take [batch, channels, height, width]")),
    }
}
