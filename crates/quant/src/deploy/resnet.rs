//! [`Int8ResNet`]: the zoo's ResNet-18/34 (`ResNet<BasicBlock>`) built from int8 deploy layers.

use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use compress_zoo::{BasicBlock, ResNet};

use super::{Int8Conv2d, Int8Linear, fake_quant_tensor};
use crate::{CalibrationConfig, QuantError, Result};

/// A zoo [`BasicBlock`] in int8: `conv1` with `bn1` and the ReLU folded in, `conv2` with `bn2`,
/// the `downsample` conv with its BatchNorm.
///
/// QuantSim's taps replace a tensor for every consumer: the block input that `conv1` (and the
/// `downsample` conv) quantize is the fake-quantized input on the identity shortcut too, and
/// is what the residual add sees here as well.
pub struct Int8BasicBlock {
    conv1: Int8Conv2d,
    conv2: Int8Conv2d,
    downsample: Option<Int8Conv2d>,
}

impl Int8BasicBlock {
    /// The block at `path` (`layer2.0`) of a calibrated model.
    ///
    /// # Errors
    /// As [`Int8Conv2d::new`]; [`QuantError::UnsupportedQuant`] when `conv1` and the
    /// `downsample` conv quantize their shared input with different grids (QuantSim would apply
    /// both in turn to the one tensor both read).
    pub fn new(block: &BasicBlock, path: &str, calibration: &CalibrationConfig) -> Result<Self> {
        let conv1 = Int8Conv2d::new(&block.conv1, &format!("{path}.conv1"), calibration)?
            .with_batch_norm(&block.bn1, &format!("{path}.bn1"))?
            .with_relu();
        let conv2 = Int8Conv2d::new(&block.conv2, &format!("{path}.conv2"), calibration)?
            .with_batch_norm(&block.bn2, &format!("{path}.bn2"))?;
        let downsample = match &block.downsample {
            Some((conv, bn)) => {
                let d = Int8Conv2d::new(conv, &format!("{path}.downsample.0"), calibration)?
                    .with_batch_norm(bn, &format!("{path}.downsample.1"))?;
                if d.input_grid() != conv1.input_grid() {
                    return Err(QuantError::UnsupportedQuant {
                        path: format!("{path}.downsample.0"),
                        reason: format!(
                            "its input grid {:?} differs from '{path}.conv1''s {:?} on the same \
                             tensor",
                            d.input_grid(),
                            conv1.input_grid()
                        ),
                    });
                }
                Some(d)
            }
            None => None,
        };
        Ok(Self {
            conv1,
            conv2,
            downsample,
        })
    }

    /// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
    ///
    /// # Shapes
    /// - input `[N, in, H, W]`
    /// - output `[N, planes, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.forward(x.clone()),
            None => fake_quant_tensor(x.clone(), self.conv1.input_grid()),
        };
        relu(self.conv2.forward(self.conv1.forward(x)) + identity)
    }
}

/// The zoo's ResNet-18/34 with every conv and the classifier on the int8 deploy path; pooling,
/// residual adds and ReLUs stay Burn ops in f32.
///
/// Burn's module forwards cannot be re-targeted to another kernel (see the
/// [module docs](crate::deploy)), so this is a deploy copy of the zoo's type, built from the
/// calibrated float model. Pruned (sped-up) ResNets work too: channel counts come from the
/// weights.
///
/// ```no_run
/// # use burn::prelude::*;
/// # use compress_quant::{CalibrationConfig, deploy::Int8ResNet};
/// # let device = Device::flex();
/// # let model = compress_zoo::ResNet::resnet18(10, &device);
/// # let calibration = CalibrationConfig::new();
/// let int8 = Int8ResNet::new(&model, &calibration)?;
/// let logits = int8.forward(Tensor::<4>::zeros([8, 3, 224, 224], &device));
/// # Ok::<(), compress_quant::QuantError>(())
/// ```
pub struct Int8ResNet {
    conv1: Int8Conv2d,
    blocks: Vec<Int8BasicBlock>,
    fc: Int8Linear,
    maxpool: MaxPool2d,
    avgpool: AdaptiveAvgPool2d,
}

impl Int8ResNet {
    /// The int8 version of `model`, quantized with `calibration` (weights, and the `_input_` of
    /// every conv and of `fc`).
    ///
    /// # Errors
    /// As [`Int8Conv2d::new`], [`Int8Linear::new`] and [`Int8BasicBlock::new`], naming the layer.
    pub fn new(model: &ResNet<BasicBlock>, calibration: &CalibrationConfig) -> Result<Self> {
        let conv1 = Int8Conv2d::new(&model.conv1, "conv1", calibration)?
            .with_batch_norm(&model.bn1, "bn1")?
            .with_relu();
        let mut blocks = Vec::new();
        for (stage, layer) in [&model.layer1, &model.layer2, &model.layer3, &model.layer4]
            .into_iter()
            .enumerate()
        {
            for (i, block) in layer.iter().enumerate() {
                let path = format!("layer{}.{i}", stage + 1);
                blocks.push(Int8BasicBlock::new(block, &path, calibration)?);
            }
        }
        Ok(Self {
            conv1,
            blocks,
            fc: Int8Linear::new(&model.fc, "fc", calibration)?,
            // torchvision's stem pooling and head, as the zoo's ResNet builds them.
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        })
    }

    /// Logits.
    ///
    /// # Shapes
    /// - input `[N, 3, H, W]`
    /// - output `[N, num_classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = self.maxpool.forward(self.conv1.forward(x));
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.fc.forward(self.avgpool.forward(x).flatten(1, 3))
    }
}
