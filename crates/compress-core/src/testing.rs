//! Tiny seeded models and a test device, for tests of this and other crates
//! (feature `testing`).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

/// The CPU device tests run on.
pub fn test_device() -> Device {
    Device::flex()
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
