//! Distillation during training: a teacher, a registered [`Distiller`], and the
//! [`Distillation`] training hook that patches the loss (NNI's `DynamicLayerwiseDistiller` /
//! `Adaptive1dLayerwiseDistiller` flow, and plain KD).
//!
//! - The **teacher** runs without gradients and in inference mode (BatchNorm on running
//!   statistics, dropout off; NNI leaves its mode unmanaged): [`Teacher::new`] takes any model
//!   and its forward, and keeps `model.valid()`.
//! - **Layer outputs** of both models come from graph replays with taps
//!   ([`compress_graph::Replay`]): neither model is edited. The student's replay runs on its
//!   autodiff device, so the distillation terms reach its parameters.
//! - **Links** are checked up front on a dry run: a teacher layer that does not exist
//!   ([`CompressError::UnknownLink`]), outputs of different shapes
//!   ([`CompressError::LinkShapeMismatch`]; Adaptive1d inserts a trainable `Linear` instead when
//!   1-d widths differ), a teacher whose input shape differs ([`CompressError::TeacherInput`]),
//!   a negative `lambda` ([`CompressError::NegativeLambda`]).
//! - **The loss**: `origin_lambda * L + distiller.loss(..)` through
//!   [`TrainHooks::patch_loss_with`]; adapters train with the loop's own optimizer through
//!   [`TrainHooks::step_extra`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use burn::prelude::*;
//! use burn_compress::core::{AlgorithmEntry, CompressConfig, dataset::ImageDataset, train::{TrainConfig, train_classifier}};
//! use burn_compress::distill::{Distillation, Teacher};
//! use burn_compress::zoo::{ImageClassifier, LeNet5};
//!
//! let device = Device::flex().autodiff();
//! let (train, _) = ImageDataset::load("data/mnist5k.safetensors", 255.0)?.split();
//! let dense = LeNet5::new(&device); // trained in practice
//! let student = LeNet5::new(&device);
//! let kd = AlgorithmEntry::find("kd")?.build_distiller(&Default::default())?;
//! let teacher = Teacher::new(dense, [1, 28, 28], |m: &LeNet5, x| m.classify(x))?;
//! let forward = |m: &LeNet5, x: Tensor<4>| m.classify(x);
//! let mut hook = Distillation::new(Arc::from(kd), &CompressConfig { algorithm: None, rules: vec![] }, teacher, &student, [1, 28, 28], forward)?;
//! let (student, _) = train_classifier(student, &train, forward, &TrainConfig::default(), &mut hook);
//! hook.take_error().map_or(Ok(()), Err)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Gradients;
use compress_core::{
    CompressConfig, CompressError, Distiller, ModuleIndex,
    distill::{
        DistillInput, DistillReads, DistillTarget, TargetFeatures, check_links, distill_targets,
    },
    train::{StepBatch, TrainHooks},
};
use compress_graph::{GraphError, Replay, Site, Tap};

/// Why distillation could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    /// A config, link or shape error (names the culprit).
    #[error(transparent)]
    Core(#[from] CompressError),
    /// Capturing or replaying a model failed.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// Layer outputs recorded by a replay: path -> (rank, value as `[d0, d1, rest]`).
type Recorded = BTreeMap<String, (usize, Tensor<3>)>;

struct Record<'a> {
    wanted: &'a BTreeSet<String>,
    out: Recorded,
}

impl Tap for Record<'_> {
    fn wants(&self, layer: &str, site: Site) -> bool {
        site == Site::Output && self.wanted.contains(layer)
    }
    fn tap(
        &mut self,
        layer: &str,
        _: Site,
        rank: usize,
        value: Tensor<3>,
    ) -> compress_graph::Result<Tensor<3>> {
        self.out.insert(layer.to_string(), (rank, value.clone()));
        Ok(value)
    }
}

/// A classifier's forward.
type Forward<M> = Box<dyn Fn(&M, Tensor<4>) -> Tensor<2>>;

/// Replays of one model, captured once per input shape.
struct Replays<M> {
    forward: Forward<M>,
    cache: RefCell<HashMap<[usize; 4], Replay>>,
}

impl<M: Module> Replays<M> {
    fn run(
        &self,
        model: &M,
        x: Tensor<4>,
        wanted: &BTreeSet<String>,
    ) -> Result<(Tensor<2>, Recorded), DistillError> {
        if wanted.is_empty() {
            return Ok(((self.forward)(model, x), Recorded::new()));
        }
        let shape = x.dims();
        let mut cache = self.cache.borrow_mut();
        if let std::collections::hash_map::Entry::Vacant(e) = cache.entry(shape) {
            e.insert(Replay::capture(model, shape, |m, x| (self.forward)(m, x))?);
        }
        let mut tap = Record {
            wanted,
            out: Recorded::new(),
        };
        let logits = cache[&shape].run(model, x, &mut tap)?;
        Ok((logits, tap.out))
    }

    fn layers(&self, model: &M, shape: [usize; 4]) -> Result<Vec<String>, DistillError> {
        let replay = Replay::capture(model, shape, |m, x| (self.forward)(m, x))?;
        let mut names: Vec<String> = replay.layers().iter().map(|l| l.layer.clone()).collect();
        names.dedup();
        self.cache.borrow_mut().insert(shape, replay);
        Ok(names)
    }
}

type TeacherRun =
    dyn Fn(Tensor<4>, &BTreeSet<String>) -> Result<(Tensor<2>, Recorded), DistillError>;

/// The teacher: any model with its forward, run without gradients and in inference mode.
pub struct Teacher {
    input: [usize; 3],
    layers: Vec<String>,
    run: Box<TeacherRun>,
}

impl std::fmt::Debug for Teacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teacher")
            .field("input", &self.input)
            .field("layers", &self.layers)
            .finish()
    }
}

impl Teacher {
    /// `model` (kept as `model.valid()`: inference mode, no autodiff) with its forward, for
    /// inputs of `input_shape` per example (`[channels, height, width]`).
    ///
    /// # Errors
    /// [`DistillError::Graph`] when its forward cannot be captured (to list its layers).
    pub fn new<M: Module + 'static>(
        model: M,
        input_shape: [usize; 3],
        forward: impl Fn(&M, Tensor<4>) -> Tensor<2> + 'static,
    ) -> Result<Self, DistillError> {
        let model = model.valid();
        let replays = Replays {
            forward: Box::new(forward),
            cache: RefCell::new(HashMap::new()),
        };
        let [c, h, w] = input_shape;
        let layers = replays.layers(&model, [1, c, h, w])?;
        let run = move |x: Tensor<4>, wanted: &BTreeSet<String>| {
            // No gradients reach the teacher: its input leaves the student's autodiff graph.
            let device = model
                .devices()
                .into_iter()
                .next()
                .unwrap_or_else(Device::flex);
            replays.run(&model, x.inner().to_device(&device), wanted)
        };
        Ok(Self {
            input: input_shape,
            layers,
            run: Box::new(run),
        })
    }

    /// The input shape per example.
    pub fn input_shape(&self) -> [usize; 3] {
        self.input
    }

    /// The teacher's layer paths, in execution order.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    /// The teacher's logits for `x` (no gradients).
    ///
    /// # Errors
    /// Replay errors.
    pub fn logits(&self, x: Tensor<4>) -> Result<Tensor<2>, DistillError> {
        Ok((self.run)(x, &BTreeSet::new())?.0)
    }
}

/// The trainable adapters of Adaptive1d (`Linear(d_student -> d_teacher)`), one per target
/// whose widths differ.
#[derive(Module, Debug)]
pub struct Adapters {
    /// The adapters, in target order (targets without a mismatch have none).
    pub linears: Vec<Linear>,
}

/// The distillation training hook: see the [module docs](self).
pub struct Distillation<M> {
    distiller: Arc<dyn Distiller>,
    teacher: Teacher,
    targets: Vec<DistillTarget>,
    student: Replays<M>,
    /// Target index -> adapter index.
    adapter_of: Vec<Option<usize>>,
    adapters: Option<Adapters>,
    error: Option<DistillError>,
}

impl<M> std::fmt::Debug for Distillation<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distillation")
            .field("teacher", &self.teacher)
            .field("targets", &self.targets)
            .field("adapters", &self.adapter_of)
            .finish()
    }
}

impl<M: Module> Distillation<M> {
    /// Distil `teacher` into `student` (whose forward is `forward`, for inputs of
    /// `input_shape` per example) with `distiller`; layer-reading distillers take their targets
    /// from `config`'s distillation rules. Links are checked on a dry run of both models.
    ///
    /// # Errors
    /// [`CompressError::TeacherInput`], [`CompressError::NegativeLambda`],
    /// [`CompressError::UnknownLink`], [`CompressError::LinkShapeMismatch`], config resolution
    /// errors; capture and replay errors.
    pub fn new(
        distiller: Arc<dyn Distiller>,
        config: &CompressConfig,
        teacher: Teacher,
        student: &M,
        input_shape: [usize; 3],
        forward: impl Fn(&M, Tensor<4>) -> Tensor<2> + 'static,
    ) -> Result<Self, DistillError> {
        if teacher.input != input_shape {
            return Err(CompressError::TeacherInput {
                teacher: teacher.input.to_vec(),
                student: input_shape.to_vec(),
            }
            .into());
        }
        let replays = Replays {
            forward: Box::new(forward),
            cache: RefCell::new(HashMap::new()),
        };
        let mut hook = Self {
            distiller: distiller.clone(),
            teacher,
            targets: Vec::new(),
            student: replays,
            adapter_of: Vec::new(),
            adapters: None,
            error: None,
        };
        if distiller.reads() == DistillReads::Logits {
            return Ok(hook);
        }
        let index = ModuleIndex::from_module(student);
        let targets = distill_targets(config, &index, distiller.temperature())?;
        if targets.is_empty() {
            return Err(CompressError::Algorithm {
                algorithm: "distillation".into(),
                message: "this distiller compares layer outputs: add a config rule with 'lambda' \
                          or 'link' (e.g. op_names = [\"fc2\"], lambda = 1.0)"
                    .into(),
            }
            .into());
        }
        if let Some(max) = distiller.max_links()
            && let Some(t) = targets.iter().find(|t| t.teachers.len() > max)
        {
            return Err(CompressError::Algorithm {
                algorithm: "distillation".into(),
                message: format!(
                    "'{}' has {} links; this distiller takes at most {max} per target",
                    t.student,
                    t.teachers.len()
                ),
            }
            .into());
        }
        check_links(&targets, hook.teacher.layers())?;
        // Dry run on a batch of two: every link's shapes, adapters where allowed.
        let device = student
            .devices()
            .into_iter()
            .next()
            .unwrap_or_else(Device::flex);
        let [c, h, w] = input_shape;
        let x = Tensor::<4>::zeros([2, c, h, w], &device);
        let wanted_s: BTreeSet<String> = targets.iter().map(|t| t.student.clone()).collect();
        let wanted_t: BTreeSet<String> = targets.iter().flat_map(|t| t.teachers.clone()).collect();
        let (_, s_out) = hook.student.run(student, x.clone(), &wanted_s)?;
        let (_, t_out) = (hook.teacher.run)(x, &wanted_t)?;
        let mut linears = Vec::new();
        for t in &targets {
            let (s_rank, s) = &s_out[&t.student];
            let mut adapter = None;
            for teacher in &t.teachers {
                let (t_rank, tv) = &t_out[teacher];
                let (sd, td) = (s.dims(), tv.dims());
                if sd == td && s_rank == t_rank {
                    continue;
                }
                let one_d = *s_rank == 2 && *t_rank == 2 && sd[0] == td[0];
                if distiller.adapts() && one_d && adapter.is_none() {
                    adapter = Some(linears.len());
                    linears.push(LinearConfig::new(sd[1], td[1]).init(&device));
                    continue;
                }
                return Err(CompressError::LinkShapeMismatch {
                    link: t.link_name(teacher),
                    student: shape_of(*s_rank, sd),
                    teacher: shape_of(*t_rank, td),
                }
                .into());
            }
            hook.adapter_of.push(adapter);
        }
        hook.targets = targets;
        hook.adapters = (!linears.is_empty()).then_some(Adapters { linears });
        Ok(hook)
    }

    /// The distillation targets (empty for KD).
    pub fn targets(&self) -> &[DistillTarget] {
        &self.targets
    }

    /// The adapters, if any target needed one (Adaptive1d on a width mismatch).
    pub fn adapters(&self) -> Option<&Adapters> {
        self.adapters.as_ref()
    }

    /// The first error a training step hit (the step then kept its original loss).
    pub fn take_error(&mut self) -> Option<DistillError> {
        self.error.take()
    }

    /// `origin_lambda * loss + distillation terms` for one step.
    ///
    /// # Errors
    /// Replay errors, link shape errors.
    pub fn patched_loss(
        &self,
        model: &M,
        loss: Tensor<1>,
        batch: &StepBatch<'_>,
    ) -> Result<Tensor<1>, DistillError> {
        let wanted_t: BTreeSet<String> = self
            .targets
            .iter()
            .flat_map(|t| t.teachers.clone())
            .collect();
        let (teacher_logits, t_out) = (self.teacher.run)(batch.images.clone(), &wanted_t)?;
        let mut features = Vec::new();
        if !self.targets.is_empty() {
            let wanted_s: BTreeSet<String> =
                self.targets.iter().map(|t| t.student.clone()).collect();
            let (_, s_out) = self.student.run(model, batch.images.clone(), &wanted_s)?;
            for (i, t) in self.targets.iter().enumerate() {
                let mut student = flat(&s_out[&t.student].1);
                if let (Some(a), Some(adapters)) = (self.adapter_of[i], &self.adapters) {
                    student = adapters.linears[a].forward(student);
                }
                features.push(TargetFeatures {
                    target: t,
                    student,
                    teachers: t.teachers.iter().map(|n| flat(&t_out[n].1)).collect(),
                });
            }
        }
        let input = DistillInput {
            student_logits: batch.logits,
            teacher_logits: &teacher_logits,
            targets: &features,
        };
        let terms = self.distiller.loss(&input)?;
        Ok(loss.mul_scalar(self.distiller.origin_lambda()) + terms)
    }
}

/// `[d0, d1, rest]` as `[batch, features]`.
fn flat(v: &Tensor<3>) -> Tensor<2> {
    let [b, c, r] = v.dims();
    v.clone().reshape([b, c * r])
}

/// The shape to report for a recorded value: rank 2 as `[batch, features]`, else the 3-d view.
fn shape_of(rank: usize, d: [usize; 3]) -> Vec<usize> {
    if rank == 2 {
        vec![d[0], d[1]]
    } else {
        d.to_vec()
    }
}

impl<M: Module> TrainHooks<M> for Distillation<M> {
    fn patch_loss_with(&mut self, model: &M, loss: Tensor<1>, batch: &StepBatch<'_>) -> Tensor<1> {
        match self.patched_loss(model, loss.clone(), batch) {
            Ok(total) => total,
            Err(e) => {
                self.error.get_or_insert(e);
                loss
            }
        }
    }

    fn step_extra(&mut self, optimizer: &mut ModuleOptimizer, lr: f64, grads: &mut Gradients) {
        if let Some(adapters) = self.adapters.take() {
            let g = GradientsParams::from_module(grads, &adapters);
            self.adapters = Some(optimizer.step(lr, adapters, g));
        }
    }
}
