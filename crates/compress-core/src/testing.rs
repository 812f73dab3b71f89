//! Tiny seeded models and a test device, for tests of this and other crates
//! (feature `testing`).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor};

/// The CPU device tests run on.
pub fn test_device() -> Device {
    Device::flex()
}

/// The oracle's `SmallCNN` (`shared/oracle/README.md`), input `[N, 1, 8, 8]`: conv-bn-relu x3
/// with a residual `z + y` before the classifier.
#[derive(Module, Debug)]
pub struct SmallCnn {
    /// `Conv2d(1 -> 8, k3, pad 1)`.
    pub conv1: Conv2d,
    /// BatchNorm(8).
    pub bn1: BatchNorm,
    /// `Conv2d(8 -> 16, k3, stride 2, pad 1)`.
    pub conv2: Conv2d,
    /// BatchNorm(16).
    pub bn2: BatchNorm,
    /// `Conv2d(16 -> 16, k3, pad 1)`.
    pub conv3: Conv2d,
    /// BatchNorm(16).
    pub bn3: BatchNorm,
    /// `Linear(256 -> 10)`.
    pub fc: Linear,
    relu: Relu,
}

impl SmallCnn {
    /// Random weights on `device`.
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
            relu: Relu::new(),
        }
    }

    /// Logits `[N, 10]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.relu.forward(self.bn1.forward(self.conv1.forward(x)));
        let y = self.relu.forward(self.bn2.forward(self.conv2.forward(x)));
        let z = self
            .relu
            .forward(self.bn3.forward(self.conv3.forward(y.clone())));
        self.fc.forward((z + y).flatten(1, 3))
    }
}

/// The oracle's `MLP`: `fc1 64 -> 32`, `fc2 32 -> 16`, `fc3 16 -> 10`.
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
    /// Random weights on `device`.
    pub fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(64, 32).init(device),
            fc2: LinearConfig::new(32, 16).init(device),
            fc3: LinearConfig::new(16, 10).init(device),
        }
    }

    /// Logits `[N, 10]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = burn::tensor::activation::relu(self.fc1.forward(x));
        let x = burn::tensor::activation::relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}

/// A user-defined layer type with a parameter of its own.
#[derive(Module, Debug)]
pub struct Scale {
    /// One factor per channel, `[channels]`.
    pub factor: Param<Tensor<1>>,
}

/// A conv-bn block, used in a `Vec`.
#[derive(Module, Debug)]
pub struct Block {
    /// `Conv2d(4 -> 4, k3, pad 1)`.
    pub conv: Conv2d,
    /// BatchNorm(4).
    pub bn: BatchNorm,
}

/// Nested structs, a `Vec` of blocks, an `Option` layer and a user-defined layer type.
#[derive(Module, Debug)]
pub struct Nested {
    /// `Conv2d(1 -> 4, k3, pad 1)`.
    pub stem: Conv2d,
    /// Two blocks: paths `blocks.0.conv`, `blocks.1.bn`, ...
    pub blocks: Vec<Block>,
    /// Present: `Linear(4 -> 3)`.
    pub head: Option<Linear>,
    /// Absent.
    pub aux: Option<Linear>,
    /// A user type.
    pub scale: Scale,
}

impl Nested {
    /// Random weights on `device`.
    pub fn new(device: &Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            stem: conv(1, 4),
            blocks: (0..2)
                .map(|_| Block {
                    conv: conv(4, 4),
                    bn: BatchNormConfig::new(4).init(device),
                })
                .collect(),
            head: Some(LinearConfig::new(4, 3).init(device)),
            aux: None,
            scale: Scale {
                factor: Param::from_tensor(Tensor::ones([4], device)),
            },
        }
    }

    /// `[N, 1, H, W]` -> `[N, 3]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = self.stem.forward(x);
        for b in &self.blocks {
            x = burn::tensor::activation::relu(b.bn.forward(b.conv.forward(x)));
        }
        let pooled = x.mean_dim(3).mean_dim(2).flatten::<2>(1, 3);
        let scaled = pooled * self.scale.factor.val().unsqueeze::<2>();
        match &self.head {
            Some(h) => h.forward(scaled),
            None => scaled,
        }
    }
}
