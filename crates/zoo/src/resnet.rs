//! torchvision's ResNet-18 and ResNet-50 (v1.5: the bottleneck's stride sits on its 3x3 conv).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// A bias-free `Conv2d(in -> out, k x k, stride, pad k / 2)`, as torchvision's `conv3x3` and
/// `conv1x1` build them.
fn conv(channels: [usize; 2], kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

/// torchvision's `downsample`: `Sequential(conv1x1(in -> out, stride), BatchNorm(out))`, so its
/// parameters are `downsample.0.weight` and `downsample.1.*`. `None` where the shortcut is the
/// identity.
fn downsample(
    in_channels: usize,
    out_channels: usize,
    stride: usize,
    device: &Device,
) -> Option<(Conv2d, BatchNorm)> {
    (stride != 1 || in_channels != out_channels).then(|| {
        (
            conv([in_channels, out_channels], 1, stride, device),
            BatchNormConfig::new(out_channels).init(device),
        )
    })
}

/// The shortcut branch: `x` itself, or `downsample(x)`.
fn shortcut(downsample: &Option<(Conv2d, BatchNorm)>, x: Tensor<4>) -> Tensor<4> {
    match downsample {
        Some((conv, bn)) => bn.forward(conv.forward(x)),
        None => x,
    }
}

/// A residual block [`ResNet`] stacks: [`BasicBlock`] or [`Bottleneck`].
pub trait ResidualBlock: Module {
    /// Output channels per `planes` (torchvision's `expansion`): 1 or 4.
    const EXPANSION: usize;

    /// A randomly initialized block taking `in_channels` and giving `planes * EXPANSION`
    /// channels, with a `downsample` shortcut when `stride != 1` or the channel counts differ.
    fn init(in_channels: usize, planes: usize, stride: usize, device: &Device) -> Self;

    /// The block's output.
    ///
    /// # Shapes
    /// - input `[N, C_in, H, W]`
    /// - output `[N, C_out, H / stride, W / stride]`
    fn forward(&self, x: Tensor<4>) -> Tensor<4>;
}

/// torchvision's `BasicBlock` (ResNet-18/34): `conv3x3(stride)`, bn, relu, `conv3x3`, bn, plus
/// the shortcut, relu.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// `Conv2d(in -> planes, k3, stride, pad 1, no bias)`, weight `[planes, in, 3, 3]`.
    pub conv1: Conv2d,
    /// `BatchNorm(planes)`.
    pub bn1: BatchNorm,
    /// `Conv2d(planes -> planes, k3, pad 1, no bias)`, weight `[planes, planes, 3, 3]`.
    pub conv2: Conv2d,
    /// `BatchNorm(planes)`.
    pub bn2: BatchNorm,
    /// `(Conv2d(in -> planes, k1, stride, no bias), BatchNorm(planes))` when the shortcut changes
    /// shape, weight `[planes, in, 1, 1]`; `None` for an identity shortcut.
    pub downsample: Option<(Conv2d, BatchNorm)>,
}

impl ResidualBlock for BasicBlock {
    const EXPANSION: usize = 1;

    fn init(in_channels: usize, planes: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv1: conv([in_channels, planes], 3, stride, device),
            bn1: BatchNormConfig::new(planes).init(device),
            conv2: conv([planes, planes], 3, 1, device),
            bn2: BatchNormConfig::new(planes).init(device),
            downsample: downsample(in_channels, planes, stride, device),
        }
    }

    /// Channel counts are read from the weights, so a pruned block runs too.
    ///
    /// # Shapes
    /// - input `[N, in, H, W]`
    /// - output `[N, planes, H / stride, W / stride]`
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, x.clone());
        let out = relu(self.bn1.forward(self.conv1.forward(x)));
        let out = self.bn2.forward(self.conv2.forward(out));
        relu(out + identity)
    }
}

/// torchvision's `Bottleneck` (ResNet-50/101/152, v1.5): `conv1x1`, bn, relu, `conv3x3(stride)`,
/// bn, relu, `conv1x1` to `4 * planes`, bn, plus the shortcut, relu.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// `Conv2d(in -> planes, k1, no bias)`, weight `[planes, in, 1, 1]`.
    pub conv1: Conv2d,
    /// `BatchNorm(planes)`.
    pub bn1: BatchNorm,
    /// `Conv2d(planes -> planes, k3, stride, pad 1, no bias)`, weight `[planes, planes, 3, 3]`.
    pub conv2: Conv2d,
    /// `BatchNorm(planes)`.
    pub bn2: BatchNorm,
    /// `Conv2d(planes -> 4 * planes, k1, no bias)`, weight `[4 * planes, planes, 1, 1]`.
    pub conv3: Conv2d,
    /// `BatchNorm(4 * planes)`.
    pub bn3: BatchNorm,
    /// `(Conv2d(in -> 4 * planes, k1, stride, no bias), BatchNorm(4 * planes))` when the shortcut
    /// changes shape, weight `[4 * planes, in, 1, 1]`; `None` for an identity shortcut.
    pub downsample: Option<(Conv2d, BatchNorm)>,
}

impl ResidualBlock for Bottleneck {
    const EXPANSION: usize = 4;

    fn init(in_channels: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let out_channels = planes * Self::EXPANSION;
        Self {
            conv1: conv([in_channels, planes], 1, 1, device),
            bn1: BatchNormConfig::new(planes).init(device),
            conv2: conv([planes, planes], 3, stride, device),
            bn2: BatchNormConfig::new(planes).init(device),
            conv3: conv([planes, out_channels], 1, 1, device),
            bn3: BatchNormConfig::new(out_channels).init(device),
            downsample: downsample(in_channels, out_channels, stride, device),
        }
    }

    /// Channel counts are read from the weights, so a pruned block runs too.
    ///
    /// # Shapes
    /// - input `[N, in, H, W]`
    /// - output `[N, 4 * planes, H / stride, W / stride]`
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, x.clone());
        let out = relu(self.bn1.forward(self.conv1.forward(x)));
        let out = relu(self.bn2.forward(self.conv2.forward(out)));
        let out = self.bn3.forward(self.conv3.forward(out));
        relu(out + identity)
    }
}

/// torchvision's `ResNet`: a `conv1 7x7/2` stem with bn, relu and `maxpool 3x3/2`, four stages of
/// residual blocks (`layer1..layer4`, 64/128/256/512 planes, stride 1/2/2/2), global average
/// pooling and a Linear classifier `fc`.
///
/// Parameter paths equal torchvision's `state_dict` keys (`layer2.0.downsample.0.weight`, ...),
/// with Burn's `gamma`/`beta` for BatchNorm `weight`/`bias` and without `num_batches_tracked`.
/// [`ResNet::resnet18`] builds `ResNet<BasicBlock>`, [`ResNet::resnet50`] `ResNet<Bottleneck>`.
#[derive(Module, Debug)]
pub struct ResNet<B: Module> {
    /// `Conv2d(3 -> 64, k7, stride 2, pad 3, no bias)`, weight `[64, 3, 7, 7]`.
    pub conv1: Conv2d,
    /// `BatchNorm(64)`.
    pub bn1: BatchNorm,
    /// Stage 1: 64 planes, stride 1.
    pub layer1: Vec<B>,
    /// Stage 2: 128 planes, the first block has stride 2.
    pub layer2: Vec<B>,
    /// Stage 3: 256 planes, the first block has stride 2.
    pub layer3: Vec<B>,
    /// Stage 4: 512 planes, the first block has stride 2.
    pub layer4: Vec<B>,
    /// `Linear(512 * expansion -> num_classes)`, weight `[512 * expansion, num_classes]` (Burn
    /// layout).
    pub fc: Linear,
    maxpool: MaxPool2d,
    avgpool: AdaptiveAvgPool2d,
}

impl ResNet<BasicBlock> {
    /// ResNet-18 (`BasicBlock`, layers `[2, 2, 2, 2]`), randomly initialized on `device`.
    pub fn resnet18(num_classes: usize, device: &Device) -> Self {
        Self::with_layers([2, 2, 2, 2], num_classes, device)
    }
}

impl ResNet<Bottleneck> {
    /// ResNet-50 (`Bottleneck`, layers `[3, 4, 6, 3]`), randomly initialized on `device`.
    pub fn resnet50(num_classes: usize, device: &Device) -> Self {
        Self::with_layers([3, 4, 6, 3], num_classes, device)
    }
}

impl<B: ResidualBlock> ResNet<B> {
    /// A ResNet with `layers[i]` blocks in stage `i + 1`, randomly initialized on `device`
    /// (torchvision's `ResNet(block, layers, num_classes)`).
    pub fn with_layers(layers: [usize; 4], num_classes: usize, device: &Device) -> Self {
        let mut in_channels = 64;
        let mut stage = |planes: usize, blocks: usize, stride: usize| -> Vec<B> {
            (0..blocks)
                .map(|i| {
                    let block =
                        B::init(in_channels, planes, if i == 0 { stride } else { 1 }, device);
                    in_channels = planes * B::EXPANSION;
                    block
                })
                .collect()
        };
        let layer1 = stage(64, layers[0], 1);
        let layer2 = stage(128, layers[1], 2);
        let layer3 = stage(256, layers[2], 2);
        let layer4 = stage(512, layers[3], 2);
        Self {
            conv1: Conv2dConfig::new([3, 64], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false)
                .init(device),
            bn1: BatchNormConfig::new(64).init(device),
            layer1,
            layer2,
            layer3,
            layer4,
            fc: LinearConfig::new(512 * B::EXPANSION, num_classes).init(device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }

    /// Logits. Channel counts are read from the weights, so a pruned ResNet runs too.
    ///
    /// # Shapes
    /// - input `[N, 3, H, W]` (224x224 for ImageNet; any size of at least 32x32 works)
    /// - output `[N, num_classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let mut x = self.maxpool.forward(x);
        for block in [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .flatten()
        {
            x = block.forward(x);
        }
        self.fc.forward(self.avgpool.forward(x).flatten(1, 3))
    }
}
