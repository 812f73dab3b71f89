//! # compress-zoo
//!
//! Reference models for burn-compress. Every model's parameter paths equal the PyTorch
//! `state_dict` names of its PyTorch twin (`conv1.weight`, `bn1.running_var`, ...), so
//! PyTorch-trained weights load through burn-store's PyTorch adapter (which transposes Linear
//! weights and renames norm `weight`/`bias` to `gamma`/`beta`) with no hand-written mapping.
//!
//! | CLI name | type | input |
//! | --- | --- | --- |
//! | `small-cnn` | [`SmallCnn`] | `[N, 1, 8, 8]` |
//! | `mlp` | [`Mlp`] | `[N, 64]` |
//! | `lenet5` | [`LeNet5`] | `[N, 1, 28, 28]` |
//! | `lenet-300-100` | [`LeNet300100`] | `[N, 784]` (or images, flattened) |
//! | `resnet18` | [`ResNet`]`<`[`BasicBlock`]`>` ([`ResNet::resnet18`]) | `[N, 3, H, W]`, `H, W >= 32` (224 for ImageNet, 64 in [`Arch::input_shape`]) |
//! | `resnet50` | [`ResNet`]`<`[`Bottleneck`]`>` ([`ResNet::resnet50`]) | `[N, 3, H, W]`, as ResNet-18 |
//! | `mobilenet_v2` | [`MobileNetV2`] | `[N, 3, H, W]`, as ResNet-18 |
//! | `efficientnet-lite0` | [`EfficientNetLite0`] | `[N, 3, H, W]` normalised ([`EfficientNetLite0::preprocess`]), 224x224 |
//! | `tiny-transformer` | [`TinyTransformer`] | token ids `[N, S]` (`Int`), `S <= 32`, ids `< 100` |
//! | `minilm-l6` | [`MiniLm`] (all-MiniLM-L6-v2, any BERT [`BertConfig`]) | token ids `[N, S]`, `S <= 512`; sentences through [`MiniLm::embed`] and a [`TextTokenizer`] |
//!
//! The ResNets and MobileNetV2 match torchvision's `resnet18`, `resnet50` and `mobilenet_v2`
//! (`state_dict` keys minus `num_batches_tracked`); their class count (1000 from
//! [`AnyModel::init`]) is read from the classifier weight by [`AnyModel::load`].
//! `tiny-transformer` has no PyTorch twin; its paths are burn-nn's. EfficientNet-Lite0's paths
//! are the keys of its shipped legacy `.pth` checkpoint, which [`EfficientNetLite0::load`] reads.
//! `minilm-l6` has the HF `BertModel` keys and loads from the model directory as shipped
//! ([`MiniLm::load`]).
//!
//! [`ImageFolder`] decodes labelled image folders (foolbox's `imagenet_00_243.jpg` samples).
//!
//! Language models from GGUF files (llama.cpp's format): [`Llama`] (alias [`SmolLm`] for
//! SmolLM2-135M) loads with [`Llama::load`] through the [`gguf`] reader (Q4_1 / Q8_0 / Q4_0 /
//! Q6_K / F16 / F32 dequantized to f32), its tokenizer with [`LlamaTokenizer::from_gguf`], and
//! [`perplexity`] scores a text over non-overlapping windows.
//!
//! [`AnyModel`] holds any of them for code (like the CLI) that picks a model by name; it runs
//! images through [`AnyModel::forward`] and token ids through [`AnyModel::forward_tokens`].
#![warn(missing_docs)]

mod any;
mod blocks;
mod efficientnet;
pub mod gguf;
mod images;
mod input;
mod lenet;
mod llama;
mod llama_tokenizer;
mod load;
mod minilm;
mod mobilenet;
mod perplexity;
mod resnet;
mod small;
mod tokenize;
mod torch_legacy;
mod transformer;

pub use any::{AnyModel, Arch};
pub use efficientnet::{EfficientNetLite0, MBConvBlock};
pub use images::{ImageFolder, decode_image};
pub use input::InputKind;
pub use lenet::{LeNet5, LeNet300100};
pub use llama::{
    Llama, LlamaAttention, LlamaConfig, LlamaDecoderLayer, LlamaError, LlamaMlp, LlamaModel, SmolLm,
};
pub use llama_tokenizer::LlamaTokenizer;
pub use load::{ZooError, load_pytorch_safetensors, safetensors_shape};
pub use minilm::{
    BertAttention, BertConfig, BertEmbeddings, BertEncoder, BertIntermediate, BertLayer,
    BertOutput, BertSelfAttention, BertSelfOutput, MiniLm,
};
pub use mobilenet::{ConvBn, DepthwiseSeparable, Features, InvertedResidual, MobileNetV2};
pub use perplexity::{Perplexity, perplexity, perplexity_by};
pub use resnet::{BasicBlock, Bottleneck, ResNet, ResidualBlock};
pub use small::{Mlp, SmallCnn};
pub use tokenize::TextTokenizer;
pub use transformer::TinyTransformer;

mod structure {
    //! Which fields of each zoo model hold layers whose non-tensor fields follow their tensors
    //! (depthwise `groups`, attention heads), for speedup.
    use compress_core::{FixStructure, impl_fix_structure};

    use crate::efficientnet::{EfficientNetLite0, MBConvBlock};
    use crate::mobilenet::{DepthwiseSeparable, Features, InvertedResidual};
    use crate::resnet::{BasicBlock, Bottleneck};
    use crate::{LeNet5, LeNet300100, Mlp, MobileNetV2, ResNet, SmallCnn, TinyTransformer};

    impl_fix_structure!(SmallCnn {
        conv1,
        bn1,
        conv2,
        bn2,
        conv3,
        bn3,
        fc
    });
    impl_fix_structure!(Mlp { fc1, fc2, fc3 });
    impl_fix_structure!(LeNet5 {
        conv1,
        conv2,
        fc1,
        fc2,
        fc3
    });
    impl_fix_structure!(LeNet300100 { fc1, fc2, fc3 });
    impl_fix_structure!(BasicBlock {
        conv1,
        bn1,
        conv2,
        bn2,
        downsample
    });
    impl_fix_structure!(Bottleneck {
        conv1,
        bn1,
        conv2,
        bn2,
        conv3,
        bn3,
        downsample
    });
    impl_fix_structure!(DepthwiseSeparable { conv });
    impl_fix_structure!(InvertedResidual { conv });
    impl_fix_structure!(Features {
        stem,
        first,
        blocks,
        last
    });
    impl_fix_structure!(MobileNetV2 {
        features,
        classifier
    });
    impl_fix_structure!(MBConvBlock {
        _expand_conv,
        _bn0,
        _depthwise_conv,
        _bn1,
        _project_conv,
        _bn2
    });
    impl_fix_structure!(EfficientNetLite0 {
        _conv_stem,
        _bn0,
        _blocks,
        _conv_head,
        _bn1,
        _dropout,
        _fc
    });
    impl_fix_structure!(TinyTransformer {
        tokens,
        positions,
        encoder,
        head
    });

    impl<B: burn::module::Module + FixStructure> FixStructure for ResNet<B> {
        fn fix_structure(&mut self) {
            self.conv1.fix_structure();
            self.bn1.fix_structure();
            self.layer1.fix_structure();
            self.layer2.fix_structure();
            self.layer3.fix_structure();
            self.layer4.fix_structure();
            self.fc.fix_structure();
        }
    }

    impl FixStructure for crate::AnyModel {
        fn fix_structure(&mut self) {
            crate::dispatch!(self, m => m.fix_structure())
        }
    }
}

/// Models that classify image batches `[B, C, H, W]` (the MLPs flatten them): what trainers and
/// evaluators call.
pub trait ImageClassifier {
    /// Logits `[B, classes]`.
    fn classify(&self, images: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<2>;
}

macro_rules! image_classifier {
    ($($ty:ty => |$m:ident, $x:ident| $body:expr),* $(,)?) => {
        $(impl ImageClassifier for $ty {
            fn classify(&self, $x: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<2> {
                let $m = self;
                $body
            }
        })*
    };
}

image_classifier!(
    SmallCnn => |m, x| m.forward(x),
    LeNet5 => |m, x| m.forward(x),
    Mlp => |m, x| m.forward(x.flatten(1, 3)),
    LeNet300100 => |m, x| m.forward(x.flatten(1, 3)),
    ResNet<BasicBlock> => |m, x| m.forward(x),
    ResNet<Bottleneck> => |m, x| m.forward(x),
    MobileNetV2 => |m, x| m.forward(x),
    // RGB in [0, 1]: the model's normalisation is part of classifying.
    EfficientNetLite0 => |m, x| m.forward(EfficientNetLite0::preprocess(x)),
);
