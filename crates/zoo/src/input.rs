//! What each zoo model takes as input: images, feature vectors or token ids.

use std::fmt;

use burn::prelude::*;

use crate::{AnyModel, Arch, BertConfig, TinyTransformer, ZooError};

/// The kind of input a zoo model takes, with its fixed extents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Images `[N, channels, height, width]` (float).
    Image {
        /// Channels (1 for the digit models, 3 for the ImageNet ones).
        channels: usize,
        /// The height [`Arch::input_shape`] uses (the ImageNet models take any size >= 32).
        height: usize,
        /// The width [`Arch::input_shape`] uses.
        width: usize,
    },
    /// Feature vectors `[N, features]` (float). These models also take images `[N, C, H, W]`
    /// with `C * H * W = features`, flattened.
    Features {
        /// Features per example.
        features: usize,
    },
    /// Token ids `[N, S]` (`Int`), `S <= max_len`, ids below `vocab`.
    Tokens {
        /// The longest sequence.
        max_len: usize,
        /// The vocabulary size.
        vocab: usize,
    },
}

impl InputKind {
    /// The example input shape for a batch of `n`: `[n, C, H, W]`, `[n, F]` or `[n, max_len]`.
    pub fn example_shape(self, n: usize) -> Vec<usize> {
        match self {
            InputKind::Image {
                channels,
                height,
                width,
            } => vec![n, channels, height, width],
            InputKind::Features { features } => vec![n, features],
            InputKind::Tokens { max_len, .. } => vec![n, max_len],
        }
    }

    /// Check that `shape` is an input of this kind for `arch` (rank, and the extents that are
    /// fixed: a non-empty batch, the feature count, the sequence length).
    ///
    /// # Errors
    /// [`ZooError::InputShape`] naming the architecture, the shape and what it takes.
    pub fn check(self, arch: Arch, shape: &[usize]) -> Result<(), ZooError> {
        let ok = !shape.is_empty()
            && shape.iter().all(|&d| d > 0)
            && match (self, shape) {
                (InputKind::Image { channels, .. }, &[_, c, _, _]) => c == channels,
                (InputKind::Features { features }, &[_, f]) => f == features,
                (InputKind::Features { features }, &[_, c, h, w]) => c * h * w == features,
                (InputKind::Tokens { max_len, .. }, &[_, s]) => s <= max_len,
                _ => false,
            };
        if ok {
            Ok(())
        } else {
            Err(ZooError::InputShape {
                arch: arch.name().to_string(),
                shape: shape.to_vec(),
                expected: self.to_string(),
            })
        }
    }
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            // "image models take [batch, channels, height, width]" is what the CLI has always said.
            InputKind::Image { channels, .. } => write!(
                f,
                "image models take [batch, channels, height, width] with {channels} channel(s)"
            ),
            InputKind::Features { features } => write!(
                f,
                "feature models take [batch, {features}] (or images [batch, C, H, W] with C*H*W = {features})"
            ),
            InputKind::Tokens { max_len, vocab } => write!(
                f,
                "token models take token ids [batch, seq] with seq <= {max_len} (ids below {vocab})"
            ),
        }
    }
}

impl Arch {
    /// What the architecture takes: images for the CNNs, feature vectors `[N, 64]` (`mlp`) and
    /// `[N, 784]` (`lenet-300-100`), token ids for `tiny-transformer` and `minilm-l6` (up to 512
    /// tokens, vocabulary 30522).
    pub fn input_kind(self) -> InputKind {
        match self {
            Arch::Mlp => InputKind::Features { features: 64 },
            Arch::LeNet300100 => InputKind::Features { features: 784 },
            Arch::TinyTransformer => InputKind::Tokens {
                max_len: TinyTransformer::MAX_LEN,
                vocab: TinyTransformer::VOCAB,
            },
            Arch::MiniLmL6 => {
                let config = BertConfig::minilm_l6();
                InputKind::Tokens {
                    max_len: config.max_position_embeddings,
                    vocab: config.vocab_size,
                }
            }
            Arch::SmallCnn
            | Arch::LeNet5
            | Arch::ResNet18
            | Arch::ResNet50
            | Arch::MobileNetV2
            | Arch::EfficientNetLite0 => {
                let [_, channels, height, width] = self.input_shape(1);
                InputKind::Image {
                    channels,
                    height,
                    width,
                }
            }
        }
    }
}

impl AnyModel {
    /// Logits for an example input of `shape` (checked with [`InputKind::check`]): ones for
    /// images and features, zeros (token id 0) for token ids.
    ///
    /// # Errors
    /// [`ZooError::InputShape`] when `shape` is not an input of the model's kind.
    pub fn forward_example(&self, shape: &[usize], device: &Device) -> Result<Tensor<2>, ZooError> {
        let arch = self.arch();
        arch.input_kind().check(arch, shape)?;
        Ok(match (self, shape) {
            (AnyModel::TinyTransformer(m), &[b, s]) => {
                m.forward(Tensor::<2, Int>::zeros([b, s], device))
            }
            (AnyModel::MiniLm(m), &[b, s]) => m.forward(Tensor::<2, Int>::zeros([b, s], device)),
            (_, &[b, f]) => self.forward(Tensor::<2>::ones([b, f], device).reshape([b, 1, 1, f])),
            (_, &[b, c, h, w]) => self.forward(Tensor::ones([b, c, h, w], device)),
            _ => {
                return Err(ZooError::InputShape {
                    arch: arch.name().to_string(),
                    shape: shape.to_vec(),
                    expected: arch.input_kind().to_string(),
                });
            }
        })
    }
}
