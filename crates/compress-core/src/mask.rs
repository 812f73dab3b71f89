//! MaskSet: masks keyed by Burn parameter path, their statistics, their file format, and how
//! they are applied to a model.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, Param, Reparameterization, Reparameterizer};
use burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::did_you_mean;
use crate::{CompressError, Dense, ModuleIndex, Result};

/// Metadata written into every mask file.
const FORMAT: &str = "burn-compress/masks";
const VERSION: &str = "1";

/// Masks by parameter path (`layer1.0.conv1.weight`), in Burn's layout, 1 = keep, 0 = pruned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaskSet {
    masks: BTreeMap<String, Dense<u8>>,
}

/// Sparsity of one masked parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskStat {
    /// Parameter path.
    pub path: String,
    /// Mask shape.
    pub shape: Vec<usize>,
    /// Elements kept.
    pub kept: usize,
    /// Elements in all.
    pub total: usize,
}

impl MaskStat {
    /// Fraction of elements pruned.
    pub fn sparsity(&self) -> f64 {
        sparsity(self.kept, self.total)
    }
}

/// The fraction of `total` elements not `kept` (0 for none at all).
fn sparsity(kept: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        1.0 - kept as f64 / total as f64
    }
}

/// Sparsity of every masked parameter and of all of them together.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskStats {
    /// One row per parameter, in path order.
    pub targets: Vec<MaskStat>,
    /// Elements kept over all masked parameters.
    pub kept: usize,
    /// Elements of all masked parameters.
    pub total: usize,
}

impl MaskStats {
    /// Fraction of all masked parameters' elements that are pruned.
    pub fn sparsity(&self) -> f64 {
        sparsity(self.kept, self.total)
    }
}

impl MaskSet {
    /// Add or replace a mask.
    pub fn insert(&mut self, path: impl Into<String>, mask: Dense<u8>) {
        self.masks.insert(path.into(), mask);
    }

    /// A mask by parameter path.
    pub fn get(&self, path: &str) -> Option<&Dense<u8>> {
        self.masks.get(path)
    }

    /// Masks in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Dense<u8>)> {
        self.masks.iter()
    }

    /// Number of masks.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// Whether there are no masks.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// Per-parameter and total sparsity.
    pub fn stats(&self) -> MaskStats {
        let targets: Vec<MaskStat> = self
            .masks
            .iter()
            .map(|(path, m)| MaskStat {
                path: path.clone(),
                shape: m.shape().to_vec(),
                kept: m.data().iter().filter(|&&x| x != 0).count(),
                total: m.numel(),
            })
            .collect();
        MaskStats {
            kept: targets.iter().map(|t| t.kept).sum(),
            total: targets.iter().map(|t| t.total).sum(),
            targets,
        }
    }

    /// Check every mask against a model: the path must be a parameter, the shape its shape.
    ///
    /// # Errors
    /// [`CompressError::UnknownParam`] or [`CompressError::ShapeMismatch`].
    pub fn validate(&self, index: &ModuleIndex) -> Result<()> {
        for (path, mask) in &self.masks {
            let param = index
                .param(path)
                .ok_or_else(|| CompressError::UnknownParam {
                    path: path.clone(),
                    suggestion: did_you_mean(path, index.params().map(|p| p.path.as_str())),
                })?;
            if param.shape != mask.shape() {
                return Err(CompressError::ShapeMismatch {
                    path: path.clone(),
                    expected: param.shape.clone(),
                    found: mask.shape().to_vec(),
                });
            }
        }
        Ok(())
    }

    /// Serialize as safetensors: one `u8` tensor per path, plus format metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let views: Vec<(String, TensorView<'_>)> = self
            .masks
            .iter()
            .map(|(path, m)| {
                TensorView::new(Dtype::U8, m.shape().to_vec(), m.data())
                    .map(|v| (path.clone(), v))
                    .map_err(|e| CompressError::InvalidMaskFile {
                        path: path.into(),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<_>>()?;
        let metadata: std::collections::HashMap<String, String> = [
            ("format".to_string(), FORMAT.to_string()),
            ("version".to_string(), VERSION.to_string()),
        ]
        .into_iter()
        .collect();
        safetensors::serialize(views, &Some(metadata)).map_err(|e| CompressError::InvalidMaskFile {
            path: "<memory>".into(),
            message: e.to_string(),
        })
    }

    /// Write to a safetensors file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        crate::error::fs::write(path, self.to_bytes()?)
    }

    /// Read a safetensors file of `u8` (0/1) or `bool` masks.
    ///
    /// # Errors
    /// [`CompressError::Io`] when the file cannot be read, [`CompressError::InvalidMaskFile`]
    /// when it is truncated, corrupt, holds another dtype, or values other than 0 and 1.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::error::fs::read(path)?;
        Self::from_bytes(&bytes, path)
    }

    /// Parse safetensors bytes; `origin` names the source in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Self> {
        let invalid = |message: String| CompressError::InvalidMaskFile {
            path: origin.to_path_buf(),
            message,
        };
        let file = SafeTensors::deserialize(bytes).map_err(|e| invalid(e.to_string()))?;
        let mut masks = BTreeMap::new();
        for (name, view) in file.tensors() {
            match view.dtype() {
                Dtype::U8 | Dtype::BOOL => {}
                other => {
                    return Err(invalid(format!(
                        "'{name}' has dtype {other:?}; masks are u8 (1 = keep) or bool"
                    )));
                }
            }
            let data = view.data().to_vec();
            if let Some(bad) = data.iter().find(|&&x| x > 1) {
                return Err(invalid(format!(
                    "'{name}' holds the value {bad}; masks hold only 0 and 1"
                )));
            }
            masks.insert(name, Dense::new(view.shape().to_vec(), data));
        }
        Ok(Self { masks })
    }

    /// A copy of `model` with every masked parameter multiplied by its mask.
    ///
    /// The input model is never changed: the copy's BatchNorm running statistics are rebuilt
    /// (Burn's clones share them).
    ///
    /// # Errors
    /// As [`validate`](Self::validate), before anything is touched.
    pub fn apply_hard<M: Module>(&self, model: &M) -> Result<M> {
        self.validate(&ModuleIndex::from_module(model))?;
        Ok(crate::paths::map_params(
            deep_copy(model),
            &mut HardMasker { masks: self },
        ))
    }

    /// A copy of `model` whose masked parameters are reparameterized by [`SoftMask`]:
    /// `Param::val()` returns `base * mask`, so gradients still reach the base but training
    /// keeps pruned weights at zero. `model.materialize()` folds the masks into the weights.
    ///
    /// # Errors
    /// As [`validate`](Self::validate), before anything is touched.
    pub fn apply_soft<M: Module>(&self, model: &M) -> Result<M> {
        self.validate(&ModuleIndex::from_module(model))?;
        Ok(deep_copy(model).apply_reparameterization(SoftMasker { masks: self }))
    }

    fn mask_tensor<const D: usize>(
        &self,
        path: &str,
        device: &burn::tensor::Device,
    ) -> Option<Tensor<D>> {
        let m = self.masks.get(path)?;
        let values: Vec<f32> = m.data().iter().map(|&x| x as f32).collect();
        Some(Tensor::from_data(
            TensorData::new(values, m.shape().to_vec()),
            device,
        ))
    }
}

/// `param` with its tensor replaced by `f(tensor)`, as a fresh leaf that requires gradients
/// exactly when the original did: a parameter computed from another (masked, shrunk) must not stay
/// a node of the old autodiff graph, and must stay trainable.
pub fn map_param_leaf<const D: usize>(
    param: Param<Tensor<D>>,
    f: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Param<Tensor<D>> {
    // The effective state (what `val()` hands to a forward) decides whether the new leaf must be
    // tracked; an inference copy keeps its configured state for a later `train()`.
    let tracked = param.val().is_require_grad();
    let mapped = param.map(|t| {
        let grad = t.is_require_grad();
        let leaf = f(t).detach();
        if grad { leaf.require_grad() } else { leaf }
    });
    if tracked {
        mapped.set_require_grad(true)
    } else {
        mapped
    }
}

/// A copy of a module that shares no state with the original.
///
/// `Module::clone` shares BatchNorm's `RunningState` (and `map` on it writes in place);
/// `valid()` rebuilds every running state. A model on an autodiff device (one being trained) is
/// put back on autodiff with `train()`, which restores its configured gradient and training
/// flags; an inference model stays an inference model (`train()` would move it onto autodiff,
/// where BatchNorm switches to batch statistics).
pub fn deep_copy<M: Module>(model: &M) -> M {
    struct Autodiff(bool);
    impl burn::module::ModuleVisitor for Autodiff {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 |= param.lazy_device().is_autodiff();
        }
    }
    let mut autodiff = Autodiff(false);
    model.visit(&mut autodiff);
    let copy = model.valid();
    if autodiff.0 { copy.train() } else { copy }
}

struct HardMasker<'a> {
    masks: &'a MaskSet,
}

impl crate::paths::PathMapper for HardMasker<'_> {
    fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let masks = self.masks;
        if masks.get(path).is_none() {
            return param;
        }
        map_param_leaf(param, |t| match masks.mask_tensor::<D>(path, &t.device()) {
            Some(mask) => t * mask,
            None => t,
        })
    }
}

/// A mask attached to a parameter as a Burn [`Reparameterization`]: the effective value is
/// `base * mask`. The mask is a parameter that never requires gradients (optimizers never touch
/// it, like [`ScoreReparam`](crate::scores::ScoreReparam)'s mask), so module visitors see it and
/// the graph replay can rebuild the effective value (compress-graph registers the rebuild).
#[derive(Module, Debug)]
pub struct SoftMask {
    /// The mask, flattened; reshaped to the base's shape on apply.
    pub mask: Param<Tensor<1>>,
}

impl Reparameterization for SoftMask {
    const NAME: &'static str = "soft_mask";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let mask = self.mask.val().reshape(base.shape());
        base * mask
    }
}

struct SoftMasker<'a> {
    masks: &'a MaskSet,
}

impl Reparameterizer for SoftMasker<'_> {
    type Reparam = SoftMask;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<SoftMask>) {
        let device = param.lazy_device();
        let mask = self.masks.mask_tensor::<D>(path, &device).map(|m| {
            let n = m.shape().num_elements();
            SoftMask {
                mask: Param::from_tensor(m.reshape([n])).set_require_grad(false),
            }
        });
        (param, mask)
    }
}
