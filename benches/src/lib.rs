//! Shared setup for the benches.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;

mod pruned;
pub use pruned::resnet18_half;

/// The conv layers of torchvision's ResNet-50 as `(in, out, kernel)`, in order (53 convs,
/// 23.5M parameters).
pub fn resnet50_convs() -> Vec<(usize, usize, usize)> {
    let mut convs = vec![(3, 64, 7)];
    let mut in_ch = 64;
    for (blocks, width) in [(3, 64), (4, 128), (6, 256), (3, 512)] {
        for b in 0..blocks {
            convs.push((in_ch, width, 1));
            convs.push((width, width, 3));
            convs.push((width, width * 4, 1));
            if b == 0 {
                convs.push((in_ch, width * 4, 1));
            }
            in_ch = width * 4;
        }
    }
    convs
}

/// A bag of convs with ResNet-50's weight shapes (random weights).
#[derive(Module, Debug)]
pub struct ConvStack {
    /// The convs.
    pub convs: Vec<Conv2d>,
}

impl ConvStack {
    /// ResNet-50's convs on `device`.
    pub fn resnet50(device: &Device) -> Self {
        Self {
            convs: resnet50_convs()
                .into_iter()
                .map(|(i, o, k)| {
                    Conv2dConfig::new([i, o], [k, k])
                        .with_bias(false)
                        .init(device)
                })
                .collect(),
        }
    }
}
