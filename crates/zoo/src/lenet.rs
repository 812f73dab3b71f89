//! LeNet-5 and LeNet-300-100 for 28x28 MNIST digits.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// LeNet-5 (the variant PyTorch tutorials use), input `[N, 1, 28, 28]`:
/// `conv1 1->6 k5 pad 2`, relu, maxpool 2, `conv2 6->16 k5`, relu, maxpool 2, flatten (400),
/// `fc1 400->120`, relu, `fc2 120->84`, relu, `fc3 84->10`.
#[derive(Module, Debug)]
pub struct LeNet5 {
    /// `Conv2d(1 -> 6, k5, pad 2)`.
    pub conv1: Conv2d,
    /// `Conv2d(6 -> 16, k5)`.
    pub conv2: Conv2d,
    /// `Linear(400 -> 120)`.
    pub fc1: Linear,
    /// `Linear(120 -> 84)`.
    pub fc2: Linear,
    /// `Linear(84 -> 10)`.
    pub fc3: Linear,
    pool: MaxPool2d,
}

impl LeNet5 {
    /// Randomly initialized on `device`.
    pub fn new(device: &Device) -> Self {
        Self {
            conv1: Conv2dConfig::new([1, 6], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device),
            conv2: Conv2dConfig::new([6, 16], [5, 5]).init(device),
            fc1: LinearConfig::new(400, 120).init(device),
            fc2: LinearConfig::new(120, 84).init(device),
            fc3: LinearConfig::new(84, 10).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        }
    }

    /// Logits. Channel counts are read from the weights, so a pruned LeNet-5 runs too.
    ///
    /// # Shapes
    /// - input `[N, 1, 28, 28]`
    /// - output `[N, 10]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(x)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        let x = relu(self.fc1.forward(x.flatten(1, 3)));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}

/// LeNet-300-100: `fc1 784->300`, relu, `fc2 300->100`, relu, `fc3 100->10`.
#[derive(Module, Debug)]
pub struct LeNet300100 {
    /// `Linear(784 -> 300)`.
    pub fc1: Linear,
    /// `Linear(300 -> 100)`.
    pub fc2: Linear,
    /// `Linear(100 -> 10)`.
    pub fc3: Linear,
}

impl LeNet300100 {
    /// Randomly initialized on `device`.
    pub fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(784, 300).init(device),
            fc2: LinearConfig::new(300, 100).init(device),
            fc3: LinearConfig::new(100, 10).init(device),
        }
    }

    /// Logits.
    ///
    /// # Shapes
    /// - input `[N, 784]`
    /// - output `[N, 10]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}
