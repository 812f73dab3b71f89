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
//!
//! [`AnyModel`] holds any of them for code (like the CLI) that picks a model by name.
#![warn(missing_docs)]

mod any;
mod lenet;
mod load;
mod small;

pub use any::{AnyModel, Arch};
pub use lenet::{LeNet5, LeNet300100};
pub use load::{ZooError, load_pytorch_safetensors};
pub use small::{Mlp, SmallCnn};
