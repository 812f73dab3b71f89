//! Distillation: the [`Distiller`] trait, NNI's two distances ([`mse_loss`], [`kl_loss`]) and
//! the per-target link settings the config's distillation rules resolve to ([`DistillTarget`]).
//!
//! A distiller owns its formula (how the terms of a step combine, which outputs it reads, what
//! share the original loss keeps); the machinery that runs the teacher, taps the layers of both
//! models and patches the training loss lives in the facade (`burn_compress::distill`), so that
//! every distiller gets the same teacher handling, links, checks and adapters.
//!
//! The total loss of a step is NNI's: `origin_lambda * L + sum of the distiller's terms`.

use burn::prelude::*;

use crate::config::{ApplyMethod, Mode};
use crate::error::did_you_mean;
use crate::{CompressConfig, CompressError, ModuleIndex, Result};

/// How a link measures the distance between student and teacher (`apply_method`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DistillMethod {
    /// Mean squared error (NNI's default `"mse"`).
    Mse,
    /// `KL(softmax(t / T) || softmax(s / T)) * T^2`, batch mean (NNI's `"kl"`, `T = 2`).
    Kl {
        /// The temperature `T`.
        temperature: f64,
    },
}

/// The features of one model at one tap, `[batch, features]`.
pub type Features = Tensor<2>;

/// `mean((student - teacher)^2)` over every element.
///
/// # Errors
/// [`CompressError::LinkShapeMismatch`] naming `link` when the shapes differ (never a broadcast).
pub fn mse_loss(student: Features, teacher: Features, link: &str) -> Result<Tensor<1>> {
    check_shapes(&student, &teacher, link)?;
    Ok((student - teacher).powf_scalar(2.0).mean())
}

/// NNI's KL distance: `kl_div(log_softmax(s / T), softmax(t / T), batchmean) * T^2`, over the
/// feature axis (dim 1).
///
/// # Errors
/// [`CompressError::LinkShapeMismatch`] naming `link` when the shapes differ.
pub fn kl_loss(
    student: Features,
    teacher: Features,
    temperature: f64,
    link: &str,
) -> Result<Tensor<1>> {
    check_shapes(&student, &teacher, link)?;
    let batch = student.dims()[0].max(1) as f64;
    let log_q = burn::tensor::activation::log_softmax(student.div_scalar(temperature), 1);
    let log_p = burn::tensor::activation::log_softmax(teacher.div_scalar(temperature), 1);
    let p = log_p.clone().exp();
    Ok((p * (log_p - log_q))
        .sum()
        .div_scalar(batch)
        .mul_scalar(temperature * temperature))
}

/// The distance `method` names.
///
/// # Errors
/// As [`mse_loss`] and [`kl_loss`].
pub fn distance(
    method: DistillMethod,
    student: Features,
    teacher: Features,
    link: &str,
) -> Result<Tensor<1>> {
    match method {
        DistillMethod::Mse => mse_loss(student, teacher, link),
        DistillMethod::Kl { temperature } => kl_loss(student, teacher, temperature, link),
    }
}

fn check_shapes(student: &Features, teacher: &Features, link: &str) -> Result<()> {
    if student.dims() != teacher.dims() {
        return Err(CompressError::LinkShapeMismatch {
            link: link.to_string(),
            student: student.dims().to_vec(),
            teacher: teacher.dims().to_vec(),
        });
    }
    Ok(())
}

/// What a distiller compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistillReads {
    /// The two models' logits (KD): no config rules needed.
    Logits,
    /// Layer outputs chosen by the config's distillation rules (`lambda`, `link`).
    Layers,
}

/// One distillation target: a student layer output, the teacher layers it is linked to, and
/// how they are compared.
#[derive(Debug, Clone, PartialEq)]
pub struct DistillTarget {
    /// Student layer path (`fc2`).
    pub student: String,
    /// Teacher layer paths (`link`; `"auto"` is the same path).
    pub teachers: Vec<String>,
    /// `lambda` (default 1.0, never negative).
    pub lambda: f64,
    /// `apply_method` (default MSE).
    pub method: DistillMethod,
}

impl DistillTarget {
    /// The name of the link to `teacher`, for messages: `student fc2 -> teacher fc2`.
    pub fn link_name(&self, teacher: &str) -> String {
        format!("student {} -> teacher {teacher}", self.student)
    }
}

/// The targets of `config`'s distillation rules on the student `index` (NNI's semantics:
/// `target_names` default `_output_0`, `lambda` default 1.0 and accepting integers, `link`
/// `"auto"` (the same layer path in the teacher), a name or a list, `apply_method` `"mse"`
/// (default) or `"kl"` at `temperature`). Teacher layer names are checked against the teacher
/// later, when its graph is known.
///
/// # Errors
/// [`CompressError::NegativeLambda`] naming the rule; config resolution errors (an unknown
/// student layer in `op_names`); [`CompressError::InvalidValue`] for an `apply_method` that is
/// not a distance or a target that is not a layer output.
pub fn distill_targets(
    config: &CompressConfig,
    index: &ModuleIndex,
    temperature: f64,
) -> Result<Vec<DistillTarget>> {
    for rule in config.rules.iter().filter(|r| r.mode == Mode::Distillation) {
        let settings = std::iter::once(&rule.shortcut).chain(rule.target_settings.values());
        for s in settings {
            if let Some(l) = s.lambda
                && !(l.is_finite() && l >= 0.0)
            {
                return Err(CompressError::NegativeLambda {
                    context: rule.context(),
                    value: l,
                });
            }
        }
    }
    let mut targets = Vec::new();
    for t in config.resolve(index)?.targets {
        let Some(rule) = config.rules.iter().find(|r| r.index == t.rule) else {
            continue;
        };
        if rule.mode != Mode::Distillation {
            continue;
        }
        if !t.name.starts_with("_output_") {
            return Err(CompressError::InvalidValue {
                key: "target_names".into(),
                context: rule.context(),
                value: t.name.clone(),
                reason: "distillation compares layer outputs (`_output_0`)".into(),
            });
        }
        let method = match t.setting.apply_method {
            None | Some(ApplyMethod::Mse) => DistillMethod::Mse,
            Some(ApplyMethod::Kl) => DistillMethod::Kl { temperature },
            Some(other) => {
                return Err(CompressError::InvalidValue {
                    key: "apply_method".into(),
                    context: rule.context(),
                    value: format!("{other:?}"),
                    reason: "distillation takes \"mse\" or \"kl\"".into(),
                });
            }
        };
        let teachers = match t.setting.link.as_deref() {
            None => vec![t.layer.clone()],
            Some(links) => links
                .iter()
                .map(|l| {
                    if l == "auto" {
                        t.layer.clone()
                    } else {
                        l.clone()
                    }
                })
                .collect(),
        };
        targets.push(DistillTarget {
            student: t.layer.clone(),
            teachers,
            lambda: t.setting.lambda.unwrap_or(1.0),
            method,
        });
    }
    Ok(targets)
}

/// Check that every teacher layer a target links to exists among `teacher_layers`.
///
/// # Errors
/// [`CompressError::UnknownLink`] naming the student target and the missing teacher layer,
/// with a did-you-mean.
pub fn check_links(targets: &[DistillTarget], teacher_layers: &[String]) -> Result<()> {
    for t in targets {
        for teacher in &t.teachers {
            if !teacher_layers.contains(teacher) {
                return Err(CompressError::UnknownLink {
                    student: t.student.clone(),
                    teacher: teacher.clone(),
                    suggestion: did_you_mean(teacher, teacher_layers.iter().map(String::as_str)),
                    available: teacher_layers.join(", "),
                });
            }
        }
    }
    Ok(())
}

/// One target's features in a step: the student's (through its adapter, if any) and each
/// linked teacher layer's.
#[derive(Debug, Clone)]
pub struct TargetFeatures<'a> {
    /// The target.
    pub target: &'a DistillTarget,
    /// The student's output `[batch, features]` (after the adapter, for Adaptive1d).
    pub student: Features,
    /// The teachers' outputs, in `target.teachers` order.
    pub teachers: Vec<Features>,
}

impl TargetFeatures<'_> {
    /// `lambda * D(student, teacher)` of the target's `i`-th link, `D` its `apply_method`.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] when the two outputs differ in shape (never a broadcast),
    /// or the link does not exist.
    pub fn link_term(&self, i: usize) -> Result<Tensor<1>> {
        let (Some(name), Some(teacher)) = (self.target.teachers.get(i), self.teachers.get(i))
        else {
            return Err(CompressError::Algorithm {
                algorithm: "distillation".into(),
                message: format!("target '{}' has no link {i}", self.target.student),
            });
        };
        Ok(distance(
            self.target.method,
            self.student.clone(),
            teacher.clone(),
            &self.target.link_name(name),
        )?
        .mul_scalar(self.target.lambda))
    }
}

/// The options every layerwise distiller reads from its `[algorithm]` table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerwiseOptions {
    /// Weight of the original loss (`origin_lambda`, a number >= 0, default 1).
    pub origin_lambda: f64,
    /// Temperature of `"kl"` links (`temperature`, a number > 0, default NNI's 2).
    pub temperature: f64,
}

impl LayerwiseOptions {
    /// The keys these options take, for [`AlgorithmEntry::config_keys`](crate::AlgorithmEntry).
    pub const KEYS: &'static [&'static str] = &["origin_lambda", "temperature"];

    /// Read them from `algorithm`'s `[algorithm]` table.
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] naming the key and the value found.
    pub fn read(algorithm: &str, options: &toml::Table) -> Result<Self> {
        let o = crate::registry::AlgorithmOptions::new(algorithm, options);
        Ok(Self {
            origin_lambda: o.f64("origin_lambda", 1.0, |l| l >= 0.0, "a number >= 0")?,
            temperature: o.f64("temperature", 2.0, |t| t > 0.0, "a number > 0")?,
        })
    }
}

/// The sum over `input`'s targets of `term(target)`: a layerwise distiller's loss.
///
/// # Errors
/// `term`'s errors; [`CompressError::Algorithm`] naming `algorithm` when there is no target.
pub fn sum_over_targets(
    algorithm: &str,
    input: &DistillInput<'_>,
    mut term: impl FnMut(&TargetFeatures<'_>) -> Result<Tensor<1>>,
) -> Result<Tensor<1>> {
    let mut total: Option<Tensor<1>> = None;
    for t in input.targets {
        let x = term(t)?;
        total = Some(match total {
            Some(sum) => sum + x,
            None => x,
        });
    }
    total.ok_or_else(|| CompressError::Algorithm {
        algorithm: algorithm.into(),
        message: "no distillation targets: add a config rule with 'lambda' or 'link'".into(),
    })
}

/// Everything a distiller sees in one training step.
#[derive(Debug, Clone)]
pub struct DistillInput<'a> {
    /// The student's logits `[batch, classes]` (tracked: gradients flow).
    pub student_logits: &'a Tensor<2>,
    /// The teacher's logits (no gradients).
    pub teacher_logits: &'a Tensor<2>,
    /// Layer features, for [`DistillReads::Layers`] distillers.
    pub targets: &'a [TargetFeatures<'a>],
}

/// A distillation method: the terms it adds to the training loss.
///
/// Like [`Pruner`](crate::Pruner), an opinionated trait: an implementor writes **the loss of one
/// step** from the features it is given. It does not run the teacher (which runs without
/// gradients and in inference mode), tap layers, resolve links, check shapes of links, build or
/// train adapters, or patch the loss: the facade's distillation driver does that identically for
/// every distiller.
pub trait Distiller: Send + Sync {
    /// Which outputs it compares.
    fn reads(&self) -> DistillReads;

    /// The weight of the original loss (NNI's `origin_loss_lambda`; KD's `alpha`):
    /// total = `origin_lambda * L + ` [`loss`](Self::loss).
    fn origin_lambda(&self) -> f64 {
        1.0
    }

    /// The temperature of KL distances (NNI fixes 2).
    fn temperature(&self) -> f64 {
        2.0
    }

    /// Whether a student feature whose width differs from its teacher's goes through a trainable
    /// `Linear(d_student -> d_teacher)` (Adaptive1d), rather than being an error. The adapters
    /// are created only on a mismatch, and trained by the training loop's own optimizer.
    fn adapts(&self) -> bool {
        false
    }

    /// The most links one target may have (`None`: any number).
    fn max_links(&self) -> Option<usize> {
        None
    }

    /// The distillation terms of one step (a scalar, `[1]`).
    ///
    /// # Errors
    /// [`CompressError::LinkShapeMismatch`] from the distances, or the distiller's own.
    fn loss(&self, input: &DistillInput<'_>) -> Result<Tensor<1>>;
}

/// A distiller of layer outputs under [`LayerwiseOptions`]: it writes the term of one target, and
/// is a [`Distiller`] that reads [`DistillReads::Layers`], takes its `origin_lambda` and
/// `temperature` from its options, and sums its terms with [`sum_over_targets`].
pub trait Layerwise: Send + Sync {
    /// The registry name, for error messages.
    const NAME: &'static str;

    /// The options read from the `[algorithm]` table.
    fn options(&self) -> &LayerwiseOptions;

    /// See [`Distiller::adapts`].
    fn adapts(&self) -> bool {
        false
    }

    /// See [`Distiller::max_links`].
    fn max_links(&self) -> Option<usize> {
        None
    }

    /// The term of one target.
    ///
    /// # Errors
    /// [`CompressError::LinkShapeMismatch`] from the distances.
    fn target_term(&self, target: &TargetFeatures<'_>) -> Result<Tensor<1>>;
}

impl<T: Layerwise> Distiller for T {
    fn reads(&self) -> DistillReads {
        DistillReads::Layers
    }

    fn origin_lambda(&self) -> f64 {
        self.options().origin_lambda
    }

    fn temperature(&self) -> f64 {
        self.options().temperature
    }

    fn adapts(&self) -> bool {
        Layerwise::adapts(self)
    }

    fn max_links(&self) -> Option<usize> {
        Layerwise::max_links(self)
    }

    fn loss(&self, input: &DistillInput<'_>) -> Result<Tensor<1>> {
        sum_over_targets(T::NAME, input, |t| self.target_term(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: [f32; 3]) -> Tensor<2> {
        Tensor::<1>::from_floats(v, &Device::flex()).reshape([1, 3])
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn mse_of_nni_check_values_is_2_6667() {
        let v = scalar(mse_loss(row([1., 2., 3.]), row([3., 2., 1.]), "l").unwrap());
        assert!((v - 2.6667).abs() < 1e-4, "{v}");
    }

    #[test]
    fn kl_of_nni_check_values_is_1_2806_at_temperature_two() {
        let v = scalar(kl_loss(row([1., 2., 3.]), row([3., 2., 1.]), 2.0, "l").unwrap());
        assert!((v - 1.2806).abs() < 5e-4, "{v}");
    }

    #[test]
    fn kl_of_identical_outputs_is_zero() {
        let v = scalar(kl_loss(row([1., 2., 3.]), row([1., 2., 3.]), 4.0, "l").unwrap());
        assert!(v.abs() < 1e-6, "{v}");
    }

    #[test]
    fn a_shape_mismatch_is_an_error_naming_the_link_not_a_broadcast() {
        let s = Tensor::<2>::zeros([2, 3], &Device::flex());
        let t = Tensor::<2>::zeros([1, 3], &Device::flex());
        let e = mse_loss(s, t, "student fc1 -> teacher fc1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "distillation link 'student fc1 -> teacher fc1' compares outputs of different shapes: \
             student [2, 3], teacher [1, 3]"
        );
    }
}
