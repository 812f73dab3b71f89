//! Picking a zoo model by name.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::prelude::*;

use crate::{LeNet5, LeNet300100, Mlp, SmallCnn, ZooError, load_pytorch_safetensors};

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
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 4] = [Arch::SmallCnn, Arch::Mlp, Arch::LeNet5, Arch::LeNet300100];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::SmallCnn => "small-cnn",
            Arch::Mlp => "mlp",
            Arch::LeNet5 => "lenet5",
            Arch::LeNet300100 => "lenet-300-100",
        }
    }

    /// The image batch shape [`AnyModel::forward`] takes for a batch of `n`: 8x8 images
    /// (UCI digits) for `small-cnn` and `mlp`, 28x28 (MNIST) for the LeNets.
    pub fn input_shape(self, n: usize) -> [usize; 4] {
        match self {
            Arch::SmallCnn | Arch::Mlp => [n, 1, 8, 8],
            Arch::LeNet5 | Arch::LeNet300100 => [n, 1, 28, 28],
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

/// Any zoo model.
// A program holds one or two of these; boxing the variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum AnyModel {
    /// [`SmallCnn`].
    SmallCnn(SmallCnn),
    /// [`Mlp`].
    Mlp(Mlp),
    /// [`LeNet5`].
    LeNet5(LeNet5),
    /// [`LeNet300100`].
    LeNet300100(LeNet300100),
}

/// Run `$body` with `$m` bound to the concrete model inside an [`AnyModel`], rebuilding the same
/// variant when `$body` returns a model (`dispatch!(map model, m => expr)`).
#[macro_export]
macro_rules! dispatch {
    ($model:expr, $m:ident => $body:expr) => {
        match $model {
            $crate::AnyModel::SmallCnn($m) => $body,
            $crate::AnyModel::Mlp($m) => $body,
            $crate::AnyModel::LeNet5($m) => $body,
            $crate::AnyModel::LeNet300100($m) => $body,
        }
    };
    (map $model:expr, $m:ident => $body:expr) => {
        match $model {
            $crate::AnyModel::SmallCnn($m) => $body.map($crate::AnyModel::SmallCnn),
            $crate::AnyModel::Mlp($m) => $body.map($crate::AnyModel::Mlp),
            $crate::AnyModel::LeNet5($m) => $body.map($crate::AnyModel::LeNet5),
            $crate::AnyModel::LeNet300100($m) => $body.map($crate::AnyModel::LeNet300100),
        }
    };
}

impl AnyModel {
    /// A randomly initialized model.
    pub fn init(arch: Arch, device: &Device) -> Self {
        match arch {
            Arch::SmallCnn => AnyModel::SmallCnn(SmallCnn::new(device)),
            Arch::Mlp => AnyModel::Mlp(Mlp::new(device)),
            Arch::LeNet5 => AnyModel::LeNet5(LeNet5::new(device)),
            Arch::LeNet300100 => AnyModel::LeNet300100(LeNet300100::new(device)),
        }
    }

    /// A model loaded from PyTorch-named safetensors.
    ///
    /// # Errors
    /// As [`load_pytorch_safetensors`].
    pub fn load(arch: Arch, weights: &Path, device: &Device) -> Result<Self, ZooError> {
        let name = arch.name();
        dispatch!(map Self::init(arch, device), m => load_pytorch_safetensors(m, weights, name))
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        match self {
            AnyModel::SmallCnn(_) => Arch::SmallCnn,
            AnyModel::Mlp(_) => Arch::Mlp,
            AnyModel::LeNet5(_) => Arch::LeNet5,
            AnyModel::LeNet300100(_) => Arch::LeNet300100,
        }
    }

    /// Logits for an image batch in [`Arch::input_shape`]; the MLPs flatten it.
    ///
    /// # Panics
    /// If the image size does not fit the architecture (a programmer error; use
    /// [`Arch::input_shape`]).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            AnyModel::SmallCnn(m) => m.forward(x),
            AnyModel::LeNet5(m) => m.forward(x),
            AnyModel::Mlp(m) => m.forward(x.flatten(1, 3)),
            AnyModel::LeNet300100(m) => m.forward(x.flatten(1, 3)),
        }
    }
}
