//! The two models of the NNI / Torch-Pruning oracle (`shared/oracle/README.md`).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// `SmallCNN`, input `[N, 1, 8, 8]`: conv-bn-relu three times, a residual `z + y`, then a
/// Linear classifier on the flattened `[N, 256]`.
#[derive(Module, Debug)]
pub struct SmallCnn {
    /// `Conv2d(1 -> 8, k3, pad 1)`, weight `[8, 1, 3, 3]`.
    pub conv1: Conv2d,
    /// `BatchNorm(8)`.
    pub bn1: BatchNorm,
    /// `Conv2d(8 -> 16, k3, stride 2, pad 1)`, weight `[16, 8, 3, 3]`.
    pub conv2: Conv2d,
    /// `BatchNorm(16)`.
    pub bn2: BatchNorm,
    /// `Conv2d(16 -> 16, k3, pad 1)`, weight `[16, 16, 3, 3]`.
    pub conv3: Conv2d,
    /// `BatchNorm(16)`.
    pub bn3: BatchNorm,
    /// `Linear(256 -> 10)`, weight `[256, 10]` (Burn layout).
    pub fc: Linear,
}

impl SmallCnn {
    /// Randomly initialized on `device`.
    pub fn new(device: &Device) -> Self {
        let conv = |i, o, stride| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: conv(1, 8, 1),
            bn1: BatchNormConfig::new(8).init(device),
            conv2: conv(8, 16, 2),
            bn2: BatchNormConfig::new(16).init(device),
            conv3: conv(16, 16, 1),
            bn3: BatchNormConfig::new(16).init(device),
            fc: LinearConfig::new(256, 10).init(device),
        }
    }

    /// Logits.
    ///
    /// # Shapes
    /// - input `[N, 1, 8, 8]`
    /// - output `[N, 10]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let y = relu(self.bn2.forward(self.conv2.forward(x)));
        let z = relu(self.bn3.forward(self.conv3.forward(y.clone())));
        self.fc.forward((z + y).flatten(1, 3))
    }
}

/// `MLP`, input `[N, 64]`: `fc1 64 -> 32`, relu, `fc2 32 -> 16`, relu, `fc3 16 -> 10`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `Linear(64 -> 32)`.
    pub fc1: Linear,
    /// `Linear(32 -> 16)`.
    pub fc2: Linear,
    /// `Linear(16 -> 10)`.
    pub fc3: Linear,
}

impl Mlp {
    /// Randomly initialized on `device`.
    pub fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(64, 32).init(device),
            fc2: LinearConfig::new(32, 16).init(device),
            fc3: LinearConfig::new(16, 10).init(device),
        }
    }

    /// Logits.
    ///
    /// # Shapes
    /// - input `[N, 64]`
    /// - output `[N, 10]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}
