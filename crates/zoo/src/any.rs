//! Picking a zoo model by name.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::prelude::*;

use crate::load::safetensors_shape;
use crate::{
    BasicBlock, BertConfig, Bottleneck, EfficientNetLite0, LeNet5, LeNet300100, MiniLm, Mlp,
    MobileNetV2, ResNet, SmallCnn, TinyTransformer, ZooError, load_pytorch_safetensors,
    torch_legacy,
};

/// A zoo architecture, by its CLI name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `small-cnn`
    SmallCnn,
    /// `mlp`
    Mlp,
    /// `lenet5`
    LeNet5,
    /// `lenet-300-100`
    LeNet300100,
    /// `resnet18`
    ResNet18,
    /// `resnet50`
    ResNet50,
    /// `mobilenet_v2`
    MobileNetV2,
    /// `tiny-transformer`
    TinyTransformer,
    /// `efficientnet-lite0`
    EfficientNetLite0,
    /// `minilm-l6` (all-MiniLM-L6-v2, [`MiniLm`])
    MiniLmL6,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 10] = [
        Arch::SmallCnn,
        Arch::Mlp,
        Arch::LeNet5,
        Arch::LeNet300100,
        Arch::ResNet18,
        Arch::ResNet50,
        Arch::MobileNetV2,
        Arch::TinyTransformer,
        Arch::EfficientNetLite0,
        Arch::MiniLmL6,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::SmallCnn => "small-cnn",
            Arch::Mlp => "mlp",
            Arch::LeNet5 => "lenet5",
            Arch::LeNet300100 => "lenet-300-100",
            Arch::ResNet18 => "resnet18",
            Arch::ResNet50 => "resnet50",
            Arch::MobileNetV2 => "mobilenet_v2",
            Arch::TinyTransformer => "tiny-transformer",
            Arch::EfficientNetLite0 => "efficientnet-lite0",
            Arch::MiniLmL6 => "minilm-l6",
        }
    }

    /// Whether the model takes token ids ([`AnyModel::forward_tokens`], shape
    /// [`Arch::token_shape`]) rather than images ([`AnyModel::forward`], shape
    /// [`Arch::input_shape`]): `tiny-transformer` and `minilm-l6`.
    pub fn takes_tokens(self) -> bool {
        matches!(self, Arch::TinyTransformer | Arch::MiniLmL6)
    }

    /// The image batch shape [`AnyModel::forward`] takes for a batch of `n`: 8x8 images
    /// (UCI digits) for `small-cnn` and `mlp`, 28x28 (MNIST) for the LeNets, 64x64 RGB for the
    /// ImageNet models (`resnet18`, `resnet50`, `mobilenet_v2`; they take any size of at least
    /// 32x32, 224x224 being ImageNet's), 224x224 RGB for `efficientnet-lite0` (its weights are
    /// real ImageNet ones).
    ///
    /// # Panics
    /// For the token models (`tiny-transformer`, `minilm-l6`; see [`Arch::takes_tokens`] and
    /// [`Arch::token_shape`]).
    pub fn input_shape(self, n: usize) -> [usize; 4] {
        match self {
            Arch::SmallCnn | Arch::Mlp => [n, 1, 8, 8],
            Arch::LeNet5 | Arch::LeNet300100 => [n, 1, 28, 28],
            Arch::ResNet18 | Arch::ResNet50 | Arch::MobileNetV2 => [n, 3, 64, 64],
            Arch::EfficientNetLite0 => {
                let side = EfficientNetLite0::IMAGE_SIZE;
                [n, 3, side, side]
            }
            Arch::TinyTransformer => {
                panic!("'tiny-transformer' takes token ids, not images: use Arch::token_shape")
            }
            Arch::MiniLmL6 => {
                panic!("'minilm-l6' takes token ids, not images: use Arch::token_shape")
            }
        }
    }

    /// The token-id batch shape [`AnyModel::forward_tokens`] takes for a batch of `n`
    /// (`[n, longest]`: 32 for `tiny-transformer`, 512 for `minilm-l6`; shorter ones work too),
    /// or `None` for the image models.
    pub fn token_shape(self, n: usize) -> Option<[usize; 2]> {
        match self.input_kind() {
            crate::InputKind::Tokens { max_len, .. } => Some([n, max_len]),
            _ => None,
        }
    }

    /// The number of classes [`AnyModel::init`] builds: 1000 (ImageNet) for `resnet18`,
    /// `resnet50`, `mobilenet_v2` and `efficientnet-lite0`, 10 for the others; for `minilm-l6`,
    /// which has no classes, the embedding width (384).
    pub fn default_num_classes(self) -> usize {
        match self {
            Arch::ResNet18 | Arch::ResNet50 | Arch::MobileNetV2 | Arch::EfficientNetLite0 => 1000,
            Arch::SmallCnn
            | Arch::Mlp
            | Arch::LeNet5
            | Arch::LeNet300100
            | Arch::TinyTransformer => 10,
            Arch::MiniLmL6 => BertConfig::minilm_l6().hidden_size,
        }
    }

    /// The PyTorch name of the classifier weight (`[num_classes, in]`) from which
    /// [`AnyModel::load`] reads the number of classes, for the architectures whose class count
    /// is not fixed: `fc.weight` (ResNets), `classifier.1.weight` (MobileNetV2), `head.weight`
    /// (tiny-transformer), `_fc.weight` (efficientnet-lite0). `None` for the 10-class digit
    /// models and `minilm-l6`.
    pub fn classifier_weight(self) -> Option<&'static str> {
        match self {
            Arch::ResNet18 | Arch::ResNet50 => Some("fc.weight"),
            Arch::MobileNetV2 => Some("classifier.1.weight"),
            Arch::TinyTransformer => Some("head.weight"),
            Arch::EfficientNetLite0 => Some("_fc.weight"),
            Arch::SmallCnn | Arch::Mlp | Arch::LeNet5 | Arch::LeNet300100 | Arch::MiniLmL6 => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = ZooError;

    fn from_str(s: &str) -> Result<Self, ZooError> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| ZooError::UnknownArch {
                name: s.to_string(),
                available: Arch::ALL.map(Arch::name).join(", "),
            })
    }
}

/// [`AnyModel`] with a `From` impl for each model type: one list of the variants.
macro_rules! any_model {
    ($($(#[$doc:meta])* $variant:ident($model:ty),)*) => {
        /// Any zoo model.
        // A program holds one or two of these; boxing the variants would buy nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone)]
        pub enum AnyModel {
            $($(#[$doc])* $variant($model),)*
        }

        $(impl From<$model> for AnyModel {
            fn from(m: $model) -> Self {
                AnyModel::$variant(m)
            }
        })*
    };
}

any_model! {
    /// [`SmallCnn`].
    SmallCnn(SmallCnn),
    /// [`Mlp`].
    Mlp(Mlp),
    /// [`LeNet5`].
    LeNet5(LeNet5),
    /// [`LeNet300100`].
    LeNet300100(LeNet300100),
    /// [`ResNet::resnet18`].
    ResNet18(ResNet<BasicBlock>),
    /// [`ResNet::resnet50`].
    ResNet50(ResNet<Bottleneck>),
    /// [`MobileNetV2`].
    MobileNetV2(MobileNetV2),
    /// [`TinyTransformer`].
    TinyTransformer(TinyTransformer),
    /// [`EfficientNetLite0`].
    EfficientNetLite0(EfficientNetLite0),
    /// [`MiniLm`].
    MiniLm(MiniLm),
}

/// Run `$body` with `$m` bound to the concrete model inside an [`AnyModel`]:
/// - `dispatch!(model, m => expr)`: the same expression for every model;
/// - `dispatch!(map model, m => expr)`: `expr` returns a model (in a `Result`), rebuilt into an
///   [`AnyModel`] (through its `From` impls);
/// - `dispatch!(images model, m => expr, t => tokens)`: `expr` for each image classifier,
///   `tokens` for the token models (`tiny-transformer`, `minilm-l6`, bound to `t`).
#[macro_export]
macro_rules! dispatch {
    // `map` first: `map &model` would otherwise parse as the expression `map & model`.
    (map $model:expr, $m:ident => $body:expr) => {
        $crate::dispatch!($model, $m => $body.map($crate::AnyModel::from))
    };
    (images $model:expr, $m:ident => $body:expr, $t:ident => $tokens:expr) => {
        match $model {
            $crate::AnyModel::SmallCnn($m) => $body,
            $crate::AnyModel::Mlp($m) => $body,
            $crate::AnyModel::LeNet5($m) => $body,
            $crate::AnyModel::LeNet300100($m) => $body,
            $crate::AnyModel::ResNet18($m) => $body,
            $crate::AnyModel::ResNet50($m) => $body,
            $crate::AnyModel::MobileNetV2($m) => $body,
            $crate::AnyModel::EfficientNetLite0($m) => $body,
            $crate::AnyModel::TinyTransformer($t) => $tokens,
            $crate::AnyModel::MiniLm($t) => $tokens,
        }
    };
    ($model:expr, $m:ident => $body:expr) => {
        $crate::dispatch!(images $model, $m => $body, $m => $body)
    };
}

impl AnyModel {
    /// A randomly initialized model with [`Arch::default_num_classes`] classes.
    pub fn init(arch: Arch, device: &Device) -> Self {
        Self::init_with_classes(arch, arch.default_num_classes(), device)
    }

    /// A randomly initialized model; `num_classes` sizes the classifier of the architectures
    /// that have a [`Arch::classifier_weight`] and is ignored by the 10-class digit models.
    fn init_with_classes(arch: Arch, num_classes: usize, device: &Device) -> Self {
        match arch {
            Arch::SmallCnn => AnyModel::SmallCnn(SmallCnn::new(device)),
            Arch::Mlp => AnyModel::Mlp(Mlp::new(device)),
            Arch::LeNet5 => AnyModel::LeNet5(LeNet5::new(device)),
            Arch::LeNet300100 => AnyModel::LeNet300100(LeNet300100::new(device)),
            Arch::ResNet18 => AnyModel::ResNet18(ResNet::resnet18(num_classes, device)),
            Arch::ResNet50 => AnyModel::ResNet50(ResNet::resnet50(num_classes, device)),
            Arch::MobileNetV2 => AnyModel::MobileNetV2(MobileNetV2::new(num_classes, device)),
            Arch::TinyTransformer => {
                AnyModel::TinyTransformer(TinyTransformer::new(num_classes, device))
            }
            Arch::EfficientNetLite0 => {
                AnyModel::EfficientNetLite0(EfficientNetLite0::new(num_classes, device))
            }
            Arch::MiniLmL6 => AnyModel::MiniLm(BertConfig::minilm_l6().init(device)),
        }
    }

    /// A model loaded from PyTorch-named safetensors, or, for `efficientnet-lite0`, from its
    /// shipped legacy `.pth` checkpoint ([`EfficientNetLite0::load`]; a file that starts like a
    /// legacy `torch.save` one is read that way). For the architectures with an
    /// [`Arch::classifier_weight`], the number of classes is that tensor's first dimension
    /// (PyTorch layout `[num_classes, in]`), read from the file's header before the model is
    /// built.
    ///
    ///
    /// `minilm-l6` loads as the model ships: `weights` is the model directory (or its
    /// `model.safetensors`), see [`MiniLm::load`].
    ///
    /// # Errors
    /// As [`load_pytorch_safetensors`]; also [`ZooError::Read`] when the header cannot be read
    /// and [`ZooError::Mismatch`] when the classifier weight is missing or not 2-D.
    pub fn load(arch: Arch, weights: &Path, device: &Device) -> Result<Self, ZooError> {
        if arch == Arch::EfficientNetLite0 && torch_legacy::is_legacy_file(weights) {
            return EfficientNetLite0::load(weights, device).map(AnyModel::from);
        }
        if arch == Arch::MiniLmL6 {
            return MiniLm::load(weights, device).map(AnyModel::MiniLm);
        }
        let name = arch.name();
        let num_classes = match arch.classifier_weight() {
            Some(key) => {
                let mismatch = |message: String| ZooError::Mismatch {
                    path: weights.to_path_buf(),
                    arch: name.to_string(),
                    message,
                };
                match safetensors_shape(weights, key)? {
                    Some(shape) if shape.len() == 2 && shape[0] > 0 => shape[0],
                    Some(shape) => {
                        return Err(mismatch(format!(
                            "classifier '{key}' has shape {shape:?}, expected [num_classes, in]"
                        )));
                    }
                    None => return Err(mismatch(format!("missing tensor '{key}'"))),
                }
            }
            None => arch.default_num_classes(),
        };
        let model = Self::init_with_classes(arch, num_classes, device);
        dispatch!(map model, m => load_pytorch_safetensors(m, weights, name))
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        match self {
            AnyModel::SmallCnn(_) => Arch::SmallCnn,
            AnyModel::Mlp(_) => Arch::Mlp,
            AnyModel::LeNet5(_) => Arch::LeNet5,
            AnyModel::LeNet300100(_) => Arch::LeNet300100,
            AnyModel::ResNet18(_) => Arch::ResNet18,
            AnyModel::ResNet50(_) => Arch::ResNet50,
            AnyModel::MobileNetV2(_) => Arch::MobileNetV2,
            AnyModel::TinyTransformer(_) => Arch::TinyTransformer,
            AnyModel::EfficientNetLite0(_) => Arch::EfficientNetLite0,
            AnyModel::MiniLm(_) => Arch::MiniLmL6,
        }
    }

    /// Logits for an image batch in [`Arch::input_shape`]; the MLPs flatten it.
    /// `efficientnet-lite0` takes RGB in `[0, 1]` here and normalises it
    /// ([`EfficientNetLite0::preprocess`]).
    ///
    /// # Panics
    /// If the image size does not fit the architecture (a programmer error; use
    /// [`Arch::input_shape`]), and for the token models (`tiny-transformer`, `minilm-l6`): use
    /// [`AnyModel::forward_tokens`] for them (and [`Arch::takes_tokens`] to tell).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            AnyModel::SmallCnn(m) => m.forward(x),
            AnyModel::LeNet5(m) => m.forward(x),
            AnyModel::Mlp(m) => m.forward(x.flatten(1, 3)),
            AnyModel::LeNet300100(m) => m.forward(x.flatten(1, 3)),
            AnyModel::ResNet18(m) => m.forward(x),
            AnyModel::ResNet50(m) => m.forward(x),
            AnyModel::MobileNetV2(m) => m.forward(x),
            AnyModel::EfficientNetLite0(m) => m.forward(EfficientNetLite0::preprocess(x)),
            AnyModel::TinyTransformer(_) => {
                panic!("'tiny-transformer' takes token ids: use AnyModel::forward_tokens")
            }
            AnyModel::MiniLm(_) => {
                panic!("'minilm-l6' takes token ids: use AnyModel::forward_tokens")
            }
        }
    }

    /// Logits (`tiny-transformer`, `[N, classes]`) or unit-length sentence embeddings
    /// (`minilm-l6`, `[N, 384]`, every token real) for a batch of token ids in
    /// [`Arch::token_shape`], or `None` for the image models, which take [`AnyModel::forward`].
    pub fn forward_tokens(&self, x: Tensor<2, Int>) -> Option<Tensor<2>> {
        match self {
            AnyModel::TinyTransformer(m) => Some(m.forward(x)),
            AnyModel::MiniLm(m) => Some(m.forward(x)),
            _ => None,
        }
    }
}
