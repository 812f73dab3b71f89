//! torchvision's MobileNetV2 (width 1.0).

use std::fmt;

use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation::relu6;

/// torchvision's `Conv2dNormActivation` without its parameter-free activation: a bias-free conv
/// (`.0`) and its BatchNorm (`.1`). The activation (ReLU6) is applied by the owner's forward.
pub type ConvBn = (Conv2d, BatchNorm);

/// The inverted-residual table `(t, c, n, s)`: expansion, output channels, repeats, stride of the
/// first repeat.
const INVERTED_RESIDUAL_SETTING: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// A bias-free `Conv2d(in -> out, k x k, stride, pad k / 2, groups)` and its `BatchNorm(out)`.
fn conv_bn(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> ConvBn {
    (
        conv(channels, kernel, stride, groups, device),
        BatchNormConfig::new(channels[1]).init(device),
    )
}

fn conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_groups(groups)
        .with_bias(false)
        .init(device)
}

/// conv, bn, ReLU6.
fn conv_bn_relu6((conv, bn): &ConvBn, x: Tensor<4>) -> Tensor<4> {
    relu6(bn.forward(conv.forward(x)))
}

/// torchvision's `InvertedResidual` with `expand_ratio == 1` (`features.1`): no expansion conv,
/// so `conv` is `Sequential(ConvBNReLU6 depthwise, Conv2d project, BatchNorm)`.
#[derive(Module, Debug)]
pub struct DepthwiseSeparable {
    /// `conv.0`: `(Conv2d(c -> c, k3, stride, pad 1, groups c, no bias), BatchNorm(c))`, weight
    /// `[c, 1, 3, 3]`, then ReLU6.
    ///
    /// `conv.1`: `Conv2d(c -> out, k1, no bias)`, weight `[out, c, 1, 1]`.
    ///
    /// `conv.2`: `BatchNorm(out)`, no activation.
    pub conv: (ConvBn, Conv2d, BatchNorm),
    /// Whether the input is added to the output (torchvision's `use_res_connect`: stride 1 and
    /// `in == out` at construction).
    pub residual: bool,
}

impl DepthwiseSeparable {
    /// Randomly initialized on `device`.
    pub fn new(in_channels: usize, out_channels: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv: (
                conv_bn([in_channels, in_channels], 3, stride, in_channels, device),
                conv([in_channels, out_channels], 1, 1, 1, device),
                BatchNormConfig::new(out_channels).init(device),
            ),
            residual: stride == 1 && in_channels == out_channels,
        }
    }

    /// The block's output. Channel counts are read from the weights (the depthwise conv's
    /// `groups` is a field of its [`Conv2d`]), so a pruned block runs too.
    ///
    /// # Shapes
    /// - input `[N, in, H, W]`
    /// - output `[N, out, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (depthwise, project, bn) = &self.conv;
        let out = conv_bn_relu6(depthwise, x.clone());
        let out = bn.forward(project.forward(out));
        if self.residual { out + x } else { out }
    }
}

/// torchvision's `InvertedResidual` with `expand_ratio > 1`: `conv` is
/// `Sequential(ConvBNReLU6 expand, ConvBNReLU6 depthwise, Conv2d project, BatchNorm)`.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// `conv.0`: `(Conv2d(in -> hidden, k1, no bias), BatchNorm(hidden))`, weight
    /// `[hidden, in, 1, 1]`, then ReLU6.
    ///
    /// `conv.1`: `(Conv2d(hidden -> hidden, k3, stride, pad 1, groups hidden, no bias),
    /// BatchNorm(hidden))`, weight `[hidden, 1, 3, 3]`, then ReLU6.
    ///
    /// `conv.2`: `Conv2d(hidden -> out, k1, no bias)`, weight `[out, hidden, 1, 1]`.
    ///
    /// `conv.3`: `BatchNorm(out)`, no activation.
    pub conv: (ConvBn, ConvBn, Conv2d, BatchNorm),
    /// Whether the input is added to the output (torchvision's `use_res_connect`: stride 1 and
    /// `in == out` at construction).
    pub residual: bool,
}

impl InvertedResidual {
    /// Randomly initialized on `device`, with `hidden = in_channels * expand_ratio`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        expand_ratio: usize,
        device: &Device,
    ) -> Self {
        let hidden = in_channels * expand_ratio;
        Self {
            conv: (
                conv_bn([in_channels, hidden], 1, 1, 1, device),
                conv_bn([hidden, hidden], 3, stride, hidden, device),
                conv([hidden, out_channels], 1, 1, 1, device),
                BatchNormConfig::new(out_channels).init(device),
            ),
            residual: stride == 1 && in_channels == out_channels,
        }
    }

    /// The block's output. Channel counts are read from the weights (the depthwise conv's
    /// `groups` is a field of its [`Conv2d`]), so a pruned block runs too.
    ///
    /// # Shapes
    /// - input `[N, in, H, W]`
    /// - output `[N, out, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (expand, depthwise, project, bn) = &self.conv;
        let out = conv_bn_relu6(expand, x.clone());
        let out = conv_bn_relu6(depthwise, out);
        let out = bn.forward(project.forward(out));
        if self.residual { out + x } else { out }
    }
}

/// torchvision's `features` `Sequential`, whose children are named by their position: `0` the
/// stem, `1` the `t = 1` block, `2..=17` the `t = 6` blocks, `18` the final 1x1 conv.
///
/// Its [`Module`] implementation is written out (the derive would name the children by field),
/// entering each child under its index as `Sequential` does.
#[derive(Debug, Clone)]
pub struct Features {
    /// `features.0`: `(Conv2d(3 -> 32, k3, stride 2, pad 1, no bias), BatchNorm(32))`, weight
    /// `[32, 3, 3, 3]`, then ReLU6.
    pub stem: ConvBn,
    /// `features.1`: the `t = 1` block, 32 -> 16.
    pub first: DepthwiseSeparable,
    /// `features.2` to `features.17`: the `t = 6` blocks, `blocks[i]` is `features.{i + 2}`.
    pub blocks: Vec<InvertedResidual>,
    /// `features.18`: `(Conv2d(320 -> 1280, k1, no bias), BatchNorm(1280))`, weight
    /// `[1280, 320, 1, 1]`, then ReLU6.
    pub last: ConvBn,
}

/// The container type [`Features`] reports when entering its children, in the derive's format.
const FEATURES: &str = "Struct:Features";

impl Features {
    /// The `features` of a width-1.0 MobileNetV2, randomly initialized on `device`.
    pub fn new(device: &Device) -> Self {
        let stem = conv_bn([3, 32], 3, 2, 1, device);
        let mut in_channels = 32;
        let mut first = None;
        let mut blocks = Vec::new();
        for (t, c, n, s) in INVERTED_RESIDUAL_SETTING {
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                if t == 1 {
                    first = Some(DepthwiseSeparable::new(in_channels, c, stride, device));
                } else {
                    blocks.push(InvertedResidual::new(in_channels, c, stride, t, device));
                }
                in_channels = c;
            }
        }
        Self {
            stem,
            first: first.expect("the table starts with a t = 1 block"),
            blocks,
            last: conv_bn([in_channels, 1280], 1, 1, 1, device),
        }
    }

    /// The index of [`Features::last`] (`18`).
    fn last_index(&self) -> String {
        (self.blocks.len() + 2).to_string()
    }

    /// The feature map.
    ///
    /// # Shapes
    /// - input `[N, 3, H, W]`
    /// - output `[N, 1280, H / 32, W / 32]` (rounded up)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = conv_bn_relu6(&self.stem, x);
        let mut x = self.first.forward(x);
        for block in &self.blocks {
            x = block.forward(x);
        }
        conv_bn_relu6(&self.last, x)
    }
}

impl Module for Features {
    fn collect_devices(&self, devices: Devices) -> Devices {
        let devices = self.stem.collect_devices(devices);
        let devices = self.first.collect_devices(devices);
        let devices = self.blocks.collect_devices(devices);
        self.last.collect_devices(devices)
    }

    fn fork(self, device: &Device) -> Self {
        Self {
            stem: self.stem.fork(device),
            first: self.first.fork(device),
            blocks: self.blocks.fork(device),
            last: self.last.fork(device),
        }
    }

    fn to_device(self, device: &Device) -> Self {
        Self {
            stem: self.stem.to_device(device),
            first: self.first.to_device(device),
            blocks: self.blocks.to_device(device),
            last: self.last.to_device(device),
        }
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        visitor.enter_module("0", FEATURES);
        self.stem.visit(visitor);
        visitor.exit_module("0", FEATURES);
        visitor.enter_module("1", FEATURES);
        self.first.visit(visitor);
        visitor.exit_module("1", FEATURES);
        for (i, block) in self.blocks.iter().enumerate() {
            let name = (i + 2).to_string();
            visitor.enter_module(&name, FEATURES);
            block.visit(visitor);
            visitor.exit_module(&name, FEATURES);
        }
        let name = self.last_index();
        visitor.enter_module(&name, FEATURES);
        self.last.visit(visitor);
        visitor.exit_module(&name, FEATURES);
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        let last_index = self.last_index();
        mapper.enter_module("0", FEATURES);
        let stem = self.stem.map(mapper);
        mapper.exit_module("0", FEATURES);
        mapper.enter_module("1", FEATURES);
        let first = self.first.map(mapper);
        mapper.exit_module("1", FEATURES);
        let blocks = self
            .blocks
            .into_iter()
            .enumerate()
            .map(|(i, block)| {
                let name = (i + 2).to_string();
                mapper.enter_module(&name, FEATURES);
                let block = block.map(mapper);
                mapper.exit_module(&name, FEATURES);
                block
            })
            .collect();
        mapper.enter_module(&last_index, FEATURES);
        let last = self.last.map(mapper);
        mapper.exit_module(&last_index, FEATURES);
        Self {
            stem,
            first,
            blocks,
            last,
        }
    }

    fn valid(&self) -> Self {
        Self {
            stem: self.stem.valid(),
            first: self.first.valid(),
            blocks: self.blocks.valid(),
            last: self.last.valid(),
        }
    }

    fn train(self) -> Self {
        Self {
            stem: self.stem.train(),
            first: self.first.train(),
            blocks: self.blocks.train(),
            last: self.last.train(),
        }
    }

    fn materialize(self) -> Self {
        Self {
            stem: self.stem.materialize(),
            first: self.first.materialize(),
            blocks: self.blocks.materialize(),
            last: self.last.materialize(),
        }
    }
}

impl ModuleDisplayDefault for Features {
    fn content(&self, content: Content) -> Option<Content> {
        let content = content
            .set_top_level_type("Features")
            .add("0", &self.stem)
            .add("1", &self.first);
        self.blocks
            .iter()
            .enumerate()
            .fold(content, |content, (i, block)| {
                content.add(&(i + 2).to_string(), block)
            })
            .add(&self.last_index(), &self.last)
            .optional()
    }

    fn num_params(&self) -> usize {
        Module::num_params(self)
    }
}

impl ModuleDisplay for Features {}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", ModuleDisplay::format(self, Default::default()))
    }
}

/// torchvision's `MobileNetV2` (width 1.0): [`Features`], global average pooling, and
/// `classifier = Sequential(Dropout(0.2), Linear(1280 -> num_classes))`.
///
/// Parameter paths equal torchvision's `state_dict` keys (`features.3.conv.1.0.weight`,
/// `classifier.1.bias`, ...), with Burn's `gamma`/`beta` for BatchNorm `weight`/`bias` and
/// without `num_batches_tracked`.
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    /// `features.0` to `features.18`.
    pub features: Features,
    /// `classifier.0`: `Dropout(0.2)` (no parameters; active only while training on an
    /// autodiff device).
    ///
    /// `classifier.1`: `Linear(1280 -> num_classes)`, weight `[1280, num_classes]` (Burn layout).
    pub classifier: (Dropout, Linear),
    avgpool: AdaptiveAvgPool2d,
}

impl MobileNetV2 {
    /// Randomly initialized on `device`.
    pub fn new(num_classes: usize, device: &Device) -> Self {
        Self {
            features: Features::new(device),
            classifier: (
                DropoutConfig::new(0.2).init(),
                LinearConfig::new(1280, num_classes).init(device),
            ),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }

    /// Logits. Channel counts are read from the weights, so a pruned MobileNetV2 runs too.
    ///
    /// # Shapes
    /// - input `[N, 3, H, W]` (224x224 for ImageNet; any size of at least 32x32 works)
    /// - output `[N, num_classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.features.forward(x);
        let x = self.avgpool.forward(x).flatten(1, 3);
        let (dropout, linear) = &self.classifier;
        linear.forward(dropout.forward(x))
    }
}
