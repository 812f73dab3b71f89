//! # distill-kd: knowledge distillation on the logits
//!
//! Hinton et al., "Distilling the Knowledge in a Neural Network" (2015): the student learns the
//! teacher's softened output distribution. The loss of a step is
//!
//! `alpha * L + (1 - alpha) * KL(softmax(t / T) || softmax(s / T)) * T^2`
//!
//! where `L` is the training loss (cross-entropy on the hard labels), `s` and `t` the student's
//! and teacher's logits, and the `T^2` keeps the gradient scale independent of `T`. No config
//! rules are needed: KD reads the logits.
//!
//! Registry name: `kd`.
//!
//! | key | meaning |
//! | --- | --- |
//! | `temperature` | `T` (a number > 0, default 2, NNI's fixed value) |
//! | `alpha` | the hard-label share in `[0, 1]` (default 0.5) |
#![warn(missing_docs)]

use burn::prelude::*;
use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, Distiller, Result,
    distill::{DistillInput, DistillReads, kl_loss},
    registry::AlgorithmOptions,
};

/// The KD distiller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnowledgeDistillation {
    /// Softmax temperature `T`.
    pub temperature: f64,
    /// Share of the hard-label loss.
    pub alpha: f64,
}

impl Distiller for KnowledgeDistillation {
    fn reads(&self) -> DistillReads {
        DistillReads::Logits
    }

    fn origin_lambda(&self) -> f64 {
        self.alpha
    }

    fn temperature(&self) -> f64 {
        self.temperature
    }

    fn loss(&self, input: &DistillInput<'_>) -> Result<Tensor<1>> {
        let kl = kl_loss(
            input.student_logits.clone(),
            input.teacher_logits.clone(),
            self.temperature,
            "student logits -> teacher logits",
        )?;
        Ok(kl.mul_scalar(1.0 - self.alpha))
    }
}

fn build(options: &compress_core::toml::Table) -> Result<Algorithm> {
    let o = AlgorithmOptions::new("kd", options);
    let temperature = o.f64("temperature", 2.0, |t| t > 0.0, "a number > 0")?;
    let alpha = o.f64(
        "alpha",
        0.5,
        |a| (0.0..=1.0).contains(&a),
        "a number in [0, 1]",
    )?;
    Ok(Algorithm::Distiller(Box::new(KnowledgeDistillation {
        temperature,
        alpha,
    })))
}

inventory::submit! {
    AlgorithmEntry {
        name: "kd",
        kind: AlgorithmKind::Distiller,
        summary: "knowledge distillation: KL of the softened logits * T^2, alpha for the hard labels",
        config_keys: &["temperature", "alpha"],
        build,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(v: [f32; 3]) -> Tensor<2> {
        Tensor::<1>::from_floats(v, &Device::flex()).reshape([1, 3])
    }

    #[test]
    fn kd_at_temperature_two_and_alpha_zero_is_nni_kl_check_value() {
        let kd = KnowledgeDistillation {
            temperature: 2.0,
            alpha: 0.0,
        };
        let (s, t) = (logits([1., 2., 3.]), logits([3., 2., 1.]));
        let input = DistillInput {
            student_logits: &s,
            teacher_logits: &t,
            targets: &[],
        };
        let v = kd.loss(&input).unwrap().into_scalar::<f32>();
        assert!((v - 1.2806).abs() < 5e-4, "{v}");
        assert_eq!(kd.origin_lambda(), 0.0);
    }

    #[test]
    fn alpha_splits_the_loss_between_hard_labels_and_the_teacher() {
        let table: compress_core::toml::Table = "alpha = 0.25\ntemperature = 4".parse().unwrap();
        let Algorithm::Distiller(d) = build(&table).unwrap() else {
            panic!("not a distiller")
        };
        assert_eq!(d.origin_lambda(), 0.25);
        assert_eq!(d.temperature(), 4.0);
    }

    #[test]
    fn an_alpha_outside_zero_one_is_refused_naming_the_key() {
        let table: compress_core::toml::Table = "alpha = 1.5".parse().unwrap();
        let e = build(&table).unwrap_err().to_string();
        assert_eq!(
            e,
            "algorithm 'kd': 'alpha' must be a number in [0, 1], found 1.5"
        );
    }
}
