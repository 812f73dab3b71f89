//! Plans: which indices of which parameter axes survive. Plain, serializable data, computed by
//! [`DependencyGraph::plan`] and applied by [`apply`](crate::apply) as separate steps, so a plan
//! can be inspected, edited, saved and replayed onto a fresh model.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use compress_core::error::FileError;
use compress_core::{CompressError, Dense, MaskSet, ModuleIndex};
use serde::{Deserialize, Serialize};

use crate::groups::DependencyGraph;
use crate::{Result, SpeedupError};

/// How a group decides when its members' masks disagree about a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ConflictPolicy {
    /// Keep a channel if any member's mask keeps it (what NNI's speedup does).
    #[default]
    Union,
    /// Remove a channel if any member's mask removes it.
    Intersection,
}

/// What happens to channels that a LayerNorm normalizes (the residual stream of a BERT-style
/// model) when the masks remove them.
///
/// A LayerNorm's mean and variance run over every channel: the masked model (removed channels
/// zero) normalizes over `d` channels, zeros included, and no rescaling of gamma, beta or
/// epsilon makes a LayerNorm over the `d'` kept channels compute the same thing (the mean
/// subtracted differs by `d/d'`). So by default these channels stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LayerNormPolicy {
    /// Keep them; each is reported in [`PlanReport::skipped`] with the LayerNorm's name.
    #[default]
    Pin,
    /// Remove them: the sped-up model's LayerNorms normalize over the kept channels. Its
    /// reference is the masked model whose LayerNorms take their mean and variance over the kept
    /// channels only (and output zero on the removed ones), not the plainly masked model.
    NormalizeKept,
}

/// Options of [`DependencyGraph::plan_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PlanOptions {
    /// When the masks of a channel's members disagree.
    pub conflict: ConflictPolicy,
    /// Channels normalized by a LayerNorm.
    pub layer_norm: LayerNormPolicy,
}

/// Kept indices of one axis of one parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AxisKeep {
    /// Axis, Burn's layout.
    pub axis: usize,
    /// Kept indices, increasing.
    pub kept: Vec<usize>,
}

/// A speedup plan.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// Shapes of every parameter the plan touches, before pruning (checked on apply).
    pub original_shapes: BTreeMap<String, Vec<usize>>,
    /// Per parameter path, the axes that shrink.
    pub params: BTreeMap<String, Vec<AxisKeep>>,
}

/// A channel the masks asked to remove but that had to stay.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The parameter slices of the channel.
    pub slices: Vec<(String, usize, usize)>,
    /// Why.
    pub reasons: Vec<String>,
}

/// The heads a plan removes from a layer whose outputs are split into heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadsRemoved {
    /// The layer (`layers.0.attn.query`).
    pub layer: String,
    /// Its heads before the plan.
    pub heads: usize,
    /// Channels per head.
    pub head_dim: usize,
    /// The removed heads' indices, increasing.
    pub removed: Vec<usize>,
}

/// A plan with what it achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanReport {
    /// The plan.
    pub plan: Plan,
    /// Channels removed (a head, or a KV head with its query group, counts as one).
    pub removed: usize,
    /// Per layer split into heads, the heads removed (also when none are).
    pub heads: Vec<HeadsRemoved>,
    /// Prunable channels in all.
    pub channels: usize,
    /// Channels the masks wanted removed but that are pinned.
    pub skipped: Vec<Skipped>,
}

impl Plan {
    /// Shape of a parameter after the plan.
    pub fn shape_after(&self, path: &str) -> Option<Vec<usize>> {
        let mut shape = self.original_shapes.get(path)?.clone();
        for k in self.params.get(path).into_iter().flatten() {
            shape[k.axis] = k.kept.len();
        }
        Some(shape)
    }

    /// Masks that zero exactly what the plan removes (every coupled slice): the masked model with
    /// propagated masks, whose output the sped-up model must equal.
    pub fn to_masks(&self) -> MaskSet {
        let mut masks = MaskSet::default();
        for (path, axes) in &self.params {
            let shape = &self.original_shapes[path];
            let mut mask = Dense::full(shape.clone(), 1u8);
            let strides: Vec<usize> = (0..shape.len())
                .map(|d| shape[d + 1..].iter().product())
                .collect();
            for k in axes {
                let kept: BTreeSet<usize> = k.kept.iter().copied().collect();
                for (i, m) in mask.data_mut().iter_mut().enumerate() {
                    if !kept.contains(&((i / strides[k.axis]) % shape[k.axis])) {
                        *m = 0;
                    }
                }
            }
            masks.insert(path.clone(), mask);
        }
        masks
    }

    /// Write as JSON.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = serde_json::to_string_pretty(self).map_err(|e| SpeedupError::InvalidPlan {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|e| FileError::new(path, e).into())
    }

    /// Read a JSON plan.
    ///
    /// # Errors
    /// [`SpeedupError::Io`] or [`SpeedupError::InvalidPlan`] (corrupt JSON, unsorted or duplicate
    /// indices).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let invalid = |message: String| SpeedupError::InvalidPlan {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| FileError::new(path, e))?;
        let plan: Plan = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        for (p, axes) in &plan.params {
            for k in axes {
                if !k.kept.windows(2).all(|w| w[0] < w[1]) {
                    return Err(invalid(format!(
                        "kept indices of '{p}' axis {} are not increasing",
                        k.axis
                    )));
                }
            }
            if !plan.original_shapes.contains_key(p) {
                return Err(invalid(format!("'{p}' has no original shape")));
            }
        }
        Ok(plan)
    }
}

/// For each index along `axis`: `Some(kept)` when the mask is uniform over that slice, or `None`
/// for the whole axis when any slice mixes kept and pruned entries (a fine-grained mask says
/// nothing about channels).
fn slice_opinions(mask: &Dense<u8>, axis: usize) -> Option<Vec<bool>> {
    let shape = mask.shape();
    let n = *shape.get(axis)?;
    let stride: usize = shape[axis + 1..].iter().product();
    let mut state: Vec<Option<u8>> = vec![None; n];
    for (i, &m) in mask.data().iter().enumerate() {
        let c = (i / stride) % n;
        match state[c] {
            None => state[c] = Some(m),
            Some(v) if v != m => return None,
            _ => {}
        }
    }
    Some(state.into_iter().map(|s| s != Some(0)).collect())
}

/// Why the channels of an RMS norm that is not burn-nn's `RmsNorm` stay: apply rescales only
/// the epsilon of layers of type `RmsNorm` (through [`FixStructure`](crate::FixStructure)).
fn rms_block(gamma: &str, index: &ModuleIndex) -> Option<String> {
    let (layer, field) = gamma.rsplit_once('.').unwrap_or(("", gamma));
    let is_rms = field == "gamma" && index.layer(layer).is_some_and(|l| l.type_name == "RmsNorm");
    (!is_rms).then(|| {
        format!(
            "normalized by an RMS norm at '{layer}' that is not burn-nn's RmsNorm (its epsilon cannot be rescaled)"
        )
    })
}

/// Why a channel that would shrink a parameter of burn-nn's `MultiHeadAttention` stays: its
/// forward reshapes the heads' context to its input width (`d_model`), so it runs neither with
/// fewer heads nor with a smaller residual stream.
fn mha_block(param: &str, index: &ModuleIndex) -> Option<String> {
    let layer = param.rsplit_once('.')?.0;
    let parent = layer.rsplit_once('.').map_or("", |(p, _)| p);
    (index.module_type(parent) == Some("MultiHeadAttention")).then(|| {
        format!(
            "a parameter of burn-nn MultiHeadAttention '{parent}', whose forward needs its heads' total width to equal its input width"
        )
    })
}

impl DependencyGraph {
    /// Turn masks into a plan: a channel is removed when the masks of its group say so (per
    /// `policy`), unless it is pinned or normalized by a LayerNorm. See [`Self::plan_with`].
    ///
    /// # Errors
    /// As [`Self::plan_with`].
    pub fn plan(
        &self,
        masks: &MaskSet,
        index: &ModuleIndex,
        policy: ConflictPolicy,
    ) -> Result<PlanReport> {
        let options = PlanOptions {
            conflict: policy,
            ..PlanOptions::default()
        };
        self.plan_with(masks, index, &options)
    }

    /// Turn masks into a plan with explicit [`PlanOptions`].
    ///
    /// A parameter axis has an opinion on a channel only when its mask is uniform over the
    /// channel's slices on that axis: over one index for a plain channel, over a whole head
    /// (every column of it) for a head, so a fine-grained mask inside a head removes nothing.
    /// A channel is removed when the opinions say so (per `options.conflict`), unless it is
    /// pinned, normalized by a LayerNorm under [`LayerNormPolicy::Pin`], normalized by an RMS
    /// norm that is not burn-nn's `RmsNorm`, or would shrink a burn-nn `MultiHeadAttention`
    /// (its forward cannot run with fewer heads or a smaller input width; models that keep their
    /// own head counts, as the zoo's BERT and Llama do, are not limited).
    ///
    /// # Errors
    /// Masks for unknown parameters or of the wrong shape, a layer left with no channels
    /// ([`SpeedupError::EmptyLayer`]), or a grouped conv left unbalanced.
    pub fn plan_with(
        &self,
        masks: &MaskSet,
        index: &ModuleIndex,
        options: &PlanOptions,
    ) -> Result<PlanReport> {
        let policy = options.conflict;
        masks.validate(index)?;
        let mut opinions: HashMap<(String, usize), Option<Vec<bool>>> = HashMap::new();
        let mut removed_idx: BTreeMap<(String, usize), BTreeSet<usize>> = BTreeMap::new();
        let mut report = PlanReport {
            plan: Plan::default(),
            removed: 0,
            heads: Vec::new(),
            channels: 0,
            skipped: Vec::new(),
        };
        let mut removed_channels: Vec<Vec<bool>> = Vec::new();
        for group in &self.groups {
            let mut flags = Vec::with_capacity(group.channels.len());
            for channel in &group.channels {
                report.channels += 1;
                // Per (param, axis): the opinion when uniform over the channel's indices.
                let mut per_axis: BTreeMap<(&str, usize), Option<bool>> = BTreeMap::new();
                for (param, axis, i) in &channel.slices {
                    let Some(mask) = masks.get(param) else {
                        continue;
                    };
                    let o = opinions
                        .entry((param.clone(), *axis))
                        .or_insert_with(|| slice_opinions(mask, *axis));
                    let Some(o) = o else { continue };
                    per_axis
                        .entry((param.as_str(), *axis))
                        .and_modify(|v| {
                            if *v != Some(o[*i]) {
                                *v = None;
                            }
                        })
                        .or_insert(Some(o[*i]));
                }
                let votes: Vec<bool> = per_axis.into_values().flatten().collect();
                let remove = !votes.is_empty()
                    && match policy {
                        ConflictPolicy::Union => votes.iter().all(|k| !k),
                        ConflictPolicy::Intersection => votes.iter().any(|k| !k),
                    };
                let mut blocked = channel.pinned.clone();
                if options.layer_norm == LayerNormPolicy::Pin {
                    blocked.extend(channel.layer_norms.iter().map(|l| {
                        format!(
                            "normalized by LayerNorm '{l}' (LayerNormPolicy::NormalizeKept removes it and normalizes over the kept channels)"
                        )
                    }));
                }
                blocked.extend(
                    channel
                        .slices
                        .iter()
                        .filter(|(p, _, _)| self.rms_norms.contains(p))
                        .filter_map(|(p, _, _)| rms_block(p, index)),
                );
                blocked.extend(
                    channel
                        .slices
                        .iter()
                        .filter_map(|(p, _, _)| mha_block(p, index)),
                );
                blocked.sort();
                blocked.dedup();
                if remove && !blocked.is_empty() {
                    report.skipped.push(Skipped {
                        slices: channel.slices.clone(),
                        reasons: blocked.clone(),
                    });
                }
                let remove = remove && blocked.is_empty();
                if remove {
                    report.removed += 1;
                    for (param, axis, i) in &channel.slices {
                        removed_idx
                            .entry((param.clone(), *axis))
                            .or_default()
                            .insert(*i);
                    }
                }
                flags.push(remove);
            }
            if !flags.is_empty() && flags.iter().all(|&r| r) {
                // The group's producer (its first slice) would lose every channel.
                let (param, axis, _) = group.channels[0].slices[0].clone();
                let layer = param
                    .rsplit_once('.')
                    .map_or(param.as_str(), |(l, _)| l)
                    .to_string();
                return Err(SpeedupError::EmptyLayer { layer, param, axis });
            }
            removed_channels.push(flags);
        }
        for (layer, groups, pos) in &self.grouped_convs {
            let per = pos.len() / groups.max(&1);
            let counts: Vec<usize> = pos
                .chunks(per.max(1))
                .map(|c| c.iter().filter(|(g, i)| !removed_channels[*g][*i]).count())
                .collect();
            if counts.windows(2).any(|w| w[0] != w[1]) {
                return Err(SpeedupError::UnbalancedGroups {
                    layer: layer.clone(),
                    groups: *groups,
                    counts,
                });
            }
        }
        report.heads = self
            .heads
            .iter()
            .map(|h| HeadsRemoved {
                layer: h.layer.clone(),
                heads: h.heads,
                head_dim: h.head_dim,
                removed: (0..h.channels.len())
                    .filter(|&k| {
                        let (g, c) = h.channels[k];
                        removed_channels[g][c]
                    })
                    .collect(),
            })
            .collect();
        for ((param, axis), removed) in removed_idx {
            let info = index
                .param(&param)
                .ok_or_else(|| CompressError::UnknownParam {
                    path: param.clone(),
                    suggestion: None,
                })?;
            let n = info.shape[axis];
            let kept: Vec<usize> = (0..n).filter(|i| !removed.contains(i)).collect();
            if kept.is_empty() {
                let layer = param
                    .rsplit_once('.')
                    .map_or(param.as_str(), |(l, _)| l)
                    .to_string();
                return Err(SpeedupError::EmptyLayer { layer, param, axis });
            }
            report
                .plan
                .original_shapes
                .insert(param.clone(), info.shape.clone());
            report
                .plan
                .params
                .entry(param)
                .or_default()
                .push(AxisKeep { axis, kept });
        }
        Ok(report)
    }
}
