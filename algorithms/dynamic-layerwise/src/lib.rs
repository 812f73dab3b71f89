//! # distill-dynamic-layerwise: layer outputs, the closest teacher layer wins
//!
//! NNI's `DynamicLayerwiseDistiller`: each distillation target (a student layer output) is
//! linked to one or more teacher layers, and its term is the **minimum over its links** of
//! `lambda * D(student, teacher)`, so the student layer is pulled towards whichever teacher
//! layer it already resembles most. `D` is the rule's `apply_method`: `"mse"` (default) or
//! `"kl"` (`KL(softmax(t / T) || softmax(s / T)) * T^2`, NNI's `T = 2`). The step's loss is
//! `origin_lambda * L + sum over targets`.
//!
//! The targets come from the config's distillation rules (`lambda`, `link`, `apply_method`;
//! `target_names` default `_output_0`, `link = "auto"` is the same layer in the teacher).
//!
//! Registry name: `dynamic-layerwise`.
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

/// The Dynamic layerwise distiller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynamicLayerwise(pub LayerwiseOptions);

impl Layerwise for DynamicLayerwise {
    const NAME: &'static str = "dynamic-layerwise";

    fn options(&self) -> &LayerwiseOptions {
        &self.0
    }

    fn target_term(&self, t: &TargetFeatures<'_>) -> Result<Tensor<1>> {
        let terms = (0..t.teachers.len())
            .map(|i| t.link_term(i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(terms, 0).min())
    }
}

fn build(options: &compress_core::toml::Table) -> Result<Algorithm> {
    let o = LayerwiseOptions::read(DynamicLayerwise::NAME, options)?;
    Ok(Algorithm::Distiller(Box::new(DynamicLayerwise(o))))
}

inventory::submit! {
    AlgorithmEntry {
        name: DynamicLayerwise::NAME,
        kind: AlgorithmKind::Distiller,
        summary: "layer outputs (mse | kl), each target takes the minimum over its teacher links",
        config_keys: LayerwiseOptions::KEYS,
        build,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compress_core::Distiller;
    use compress_core::distill::{DistillInput, DistillMethod, DistillTarget};

    fn row(v: [f32; 3]) -> Tensor<2> {
        Tensor::<1>::from_floats(v, &Device::flex()).reshape([1, 3])
    }

    fn loss_of(method: DistillMethod, teachers: Vec<Tensor<2>>, lambda: f64) -> f32 {
        let target = DistillTarget {
            student: "fc".into(),
            teachers: (0..teachers.len()).map(|i| format!("t{i}")).collect(),
            lambda,
            method,
        };
        let features = [TargetFeatures {
            target: &target,
            student: row([1., 2., 3.]),
            teachers,
        }];
        let logits = row([0., 0., 0.]);
        let d = DynamicLayerwise(LayerwiseOptions {
            origin_lambda: 1.0,
            temperature: 2.0,
        });
        d.loss(&DistillInput {
            student_logits: &logits,
            teacher_logits: &logits,
            targets: &features,
        })
        .unwrap()
        .into_scalar::<f32>()
    }

    #[test]
    fn one_mse_link_gives_nni_check_value() {
        let v = loss_of(DistillMethod::Mse, vec![row([3., 2., 1.])], 1.0);
        assert!((v - 2.6667).abs() < 1e-4, "{v}");
    }

    #[test]
    fn one_kl_link_gives_nni_check_value() {
        let kl = DistillMethod::Kl { temperature: 2.0 };
        let v = loss_of(kl, vec![row([3., 2., 1.])], 1.0);
        assert!((v - 1.2806).abs() < 5e-4, "{v}");
    }

    #[test]
    fn a_target_takes_the_minimum_over_its_links() {
        // MSE to [3,2,1] is 2.6667, to [1,2,4] is 0.3333: the closer teacher layer wins.
        let v = loss_of(
            DistillMethod::Mse,
            vec![row([3., 2., 1.]), row([1., 2., 4.])],
            1.0,
        );
        assert!((v - 0.3333).abs() < 1e-4, "{v}");
    }

    #[test]
    fn lambda_scales_each_link() {
        let v = loss_of(DistillMethod::Mse, vec![row([3., 2., 1.])], 0.1);
        assert!((v - 0.26667).abs() < 1e-4, "{v}");
    }
}
