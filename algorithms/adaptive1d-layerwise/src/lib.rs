//! # distill-adaptive1d-layerwise: layer outputs through a learned adapter
//!
//! NNI's `Adaptive1dLayerwiseDistiller`: each distillation target (a student layer output,
//! `[batch, features]`) has exactly one teacher link. When the widths differ, a trainable
//! `Linear(d_student -> d_teacher)` maps the student's feature first; the adapter is created only
//! on such a mismatch and is trained by the training loop's own optimizer (NNI's
//! `patch_optim_param_group`). The term of a target is `lambda * D(adapter(s), t)` with the
//! rule's `apply_method` (`"mse"` default, or `"kl"`); the step's loss is
//! `origin_lambda * L + sum over targets`.
//!
//! Registry name: `adaptive1d-layerwise`.
//!
//! | key | meaning |
//! | --- | --- |
//! | `origin_lambda` | weight of the original loss (a number >= 0, default 1) |
//! | `temperature` | `T` of `"kl"` links (a number > 0, default 2) |
#![warn(missing_docs)]

use burn::prelude::*;
use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, Result,
    distill::{Layerwise, LayerwiseOptions, TargetFeatures},
};

/// The Adaptive1d layerwise distiller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptive1dLayerwise(pub LayerwiseOptions);

impl Layerwise for Adaptive1dLayerwise {
    const NAME: &'static str = "adaptive1d-layerwise";

    fn options(&self) -> &LayerwiseOptions {
        &self.0
    }

    fn adapts(&self) -> bool {
        true
    }

    fn max_links(&self) -> Option<usize> {
        Some(1)
    }

    fn target_term(&self, t: &TargetFeatures<'_>) -> Result<Tensor<1>> {
        // One link per target (`max_links`); the student's output is already adapted.
        t.link_term(0)
    }
}

fn build(options: &compress_core::toml::Table) -> Result<Algorithm> {
    let o = LayerwiseOptions::read(Adaptive1dLayerwise::NAME, options)?;
    Ok(Algorithm::Distiller(Box::new(Adaptive1dLayerwise(o))))
}

inventory::submit! {
    AlgorithmEntry {
        name: Adaptive1dLayerwise::NAME,
        kind: AlgorithmKind::Distiller,
        summary: "layer outputs (mse | kl), one link per target, a trained Linear adapter when widths differ",
        config_keys: LayerwiseOptions::KEYS,
        build,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_adapts_and_allows_one_link_per_target() {
        let Algorithm::Distiller(d) = build(&Default::default()).unwrap() else {
            panic!("not a distiller")
        };
        assert!(d.adapts());
        assert_eq!(d.max_links(), Some(1));
        assert_eq!(d.origin_lambda(), 1.0);
    }

    #[test]
    fn a_negative_origin_lambda_is_refused() {
        let table: compress_core::toml::Table = "origin_lambda = -1".parse().unwrap();
        let e = build(&table).unwrap_err().to_string();
        assert_eq!(
            e,
            "algorithm 'adaptive1d-layerwise': 'origin_lambda' must be a number >= 0, found -1"
        );
    }
}
