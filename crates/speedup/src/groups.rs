//! Dependency groups: the coupled parameter slices that must be removed together.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use compress_core::{
    CompressConfig, ModuleIndex,
    config::{GroupId, Mode},
};

use crate::Result;
use compress_graph::{Analysis, Graph, Member};

/// One prunable channel: every parameter slice that goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// `(param path, axis, index)` slices.
    pub slices: Vec<(String, usize, usize)>,
    /// Why it cannot be removed, if anything pins it.
    pub pinned: Vec<String>,
    /// The LayerNorm layers that normalize it: removed only under
    /// [`LayerNormPolicy::NormalizeKept`](crate::LayerNormPolicy::NormalizeKept).
    pub layer_norms: Vec<String>,
}

/// Channels that couple the same parameters (a conv's outputs with its BatchNorm, the next
/// layer's inputs, and everything a residual add joins), like a Torch-Pruning group.
#[derive(Debug, Clone, PartialEq)]
pub struct DependencyGroup {
    /// `(param path, axis)` pairs the group touches, sorted.
    pub params: Vec<(String, usize)>,
    /// Its channels, in the order they were created.
    pub channels: Vec<Channel>,
}

impl DependencyGroup {
    /// The layers (parameter paths without the field) the group touches.
    pub fn layers(&self) -> BTreeSet<String> {
        self.params
            .iter()
            .map(|(p, _)| {
                p.rsplit_once('.')
                    .map_or(p.as_str(), |(l, _)| l)
                    .to_string()
            })
            .collect()
    }

    /// Whether every channel is pinned (LayerNorm marks aside).
    pub fn is_pinned(&self) -> bool {
        self.channels.iter().all(|c| !c.pinned.is_empty())
    }
}

impl fmt::Display for DependencyGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(p, a)| format!("{p}[axis {a}]"))
            .collect();
        write!(f, "{} channels: {}", self.channels.len(), params.join(", "))?;
        let reasons: BTreeSet<&String> = self.channels.iter().flat_map(|c| &c.pinned).collect();
        if !reasons.is_empty() {
            let r: Vec<&str> = reasons.into_iter().map(String::as_str).collect();
            write!(f, " (pinned: {})", r.join("; "))?;
        }
        let norms: BTreeSet<&String> = self.channels.iter().flat_map(|c| &c.layer_norms).collect();
        if !norms.is_empty() {
            let n: Vec<&str> = norms.into_iter().map(String::as_str).collect();
            write!(f, " (normalized by LayerNorm {})", n.join(", "))?;
        }
        Ok(())
    }
}

/// A grouped (not depthwise) conv: its path, group count, and the (dependency group, channel)
/// of each of its output channels, in order.
pub(crate) type GroupedConvChannels = (String, usize, Vec<(usize, usize)>);

/// A layer's outputs split into attention heads: each head is one channel of a group (with GQA,
/// one channel holds a KV head and its query group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadGroup {
    /// The layer whose outputs are split (`layers.0.attn.query`).
    pub layer: String,
    /// Its heads.
    pub heads: usize,
    /// Channels per head.
    pub head_dim: usize,
    /// Per head, its (group, channel) in [`DependencyGraph::groups`].
    pub channels: Vec<(usize, usize)>,
}

/// The dependency structure of a captured model.
#[derive(Debug, Clone)]
pub struct DependencyGraph {
    /// Groups, in creation order.
    pub groups: Vec<DependencyGroup>,
    /// Layers whose outputs are split into heads, in graph order.
    pub heads: Vec<HeadGroup>,
    /// Gammas of the RMS norms over channels (recognized in the graph): removing channels from
    /// one rescales it (see [`apply`](crate::apply)).
    pub rms_norms: Vec<String>,
    /// Grouped (not depthwise) convs and where their outputs sit.
    pub(crate) grouped_convs: Vec<GroupedConvChannels>,
}

impl DependencyGraph {
    /// Run the channel rules over a captured graph.
    ///
    /// # Errors
    /// [`GraphError::UnsupportedOp`](compress_graph::GraphError::UnsupportedOp) (wrapped in
    /// [`SpeedupError::Graph`](crate::SpeedupError::Graph)) for an op without a rule.
    pub fn build(graph: &Graph) -> Result<Self> {
        let mut analysis = Analysis::run(graph)?;
        let classes = analysis.classes();
        // Group classes by the set of (param, axis) they touch.
        let mut by_signature: BTreeMap<Vec<(String, usize)>, usize> = BTreeMap::new();
        let mut groups: Vec<DependencyGroup> = Vec::new();
        let mut position: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for class in classes {
            let (root, members) = (class.root, class.members);
            if members.is_empty() {
                continue;
            }
            let signature: Vec<(String, usize)> = members
                .iter()
                .map(|m: &Member| (m.param.clone(), m.axis))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let g = *by_signature.entry(signature.clone()).or_insert_with(|| {
                groups.push(DependencyGroup {
                    params: signature,
                    channels: Vec::new(),
                });
                groups.len() - 1
            });
            position.insert(root, (g, groups[g].channels.len()));
            groups[g].channels.push(Channel {
                slices: members
                    .into_iter()
                    .map(|m| (m.param, m.axis, m.index))
                    .collect(),
                pinned: class.pins,
                layer_norms: class.layer_norms,
            });
        }
        let grouped_convs = analysis
            .grouped_convs
            .clone()
            .into_iter()
            .map(|gc| {
                let pos = gc
                    .out_slots
                    .iter()
                    .filter_map(|&s| position.get(&analysis.find(s)).copied())
                    .collect();
                (gc.layer, gc.groups, pos)
            })
            .collect();
        let heads = std::mem::take(&mut analysis.head_splits)
            .into_iter()
            .map(|h| HeadGroup {
                channels: h
                    .slots
                    .iter()
                    .filter_map(|&s| position.get(&analysis.find(s)).copied())
                    .collect(),
                layer: h.layer,
                heads: h.heads,
                head_dim: h.head_dim,
            })
            .collect();
        Ok(Self {
            groups,
            heads,
            rms_norms: std::mem::take(&mut analysis.rms_norms),
            grouped_convs,
        })
    }

    /// The groups that touch a layer.
    pub fn groups_of(&self, layer: &str) -> Vec<&DependencyGroup> {
        self.groups
            .iter()
            .filter(|g| g.layers().contains(layer))
            .collect()
    }

    /// A copy of `config` whose pruning targets that share a dependency group also share a
    /// `dependency_group_id` (and grouped convs an `internal_metric_block`), so pruners produce
    /// consistent masks up front: NNI's `auto_set_denpendency_group_ids`.
    ///
    /// Targets that couple on their output channels get one rule each (`op_names = [layer]`)
    /// with the id `dep<n>`; rules that already set an id keep it.
    ///
    /// # Errors
    /// Config resolution errors.
    pub fn auto_dependency_groups(
        &self,
        config: &CompressConfig,
        index: &ModuleIndex,
    ) -> Result<CompressConfig> {
        let resolved = config.resolve(index)?;
        let mut rules = config.rules.clone();
        let mut splits = Vec::new();
        for (gi, group) in self.groups.iter().enumerate() {
            // The weights whose *output* axis is in this group.
            let owners: Vec<&compress_core::Target> = resolved
                .targets
                .iter()
                .filter(|t| t.is_active() && t.setting.dependency_group_id.is_none())
                .filter(|t| {
                    t.out_axis
                        .is_some_and(|a| group.params.contains(&(t.path.clone(), a)))
                })
                .collect();
            // One shared mask needs one output length: GQA's query and KV projections share
            // a group of heads but not a width, so they keep their own rules (the plan still
            // removes a KV group only when all its members' masks agree).
            let widths: BTreeSet<usize> = owners
                .iter()
                .filter_map(|t| t.out_axis.and_then(|a| t.shape.get(a).copied()))
                .collect();
            if owners.len() < 2 || widths.len() > 1 {
                continue;
            }
            let id = GroupId(format!("dep{}", splits.len()));
            let block = self
                .grouped_convs
                .iter()
                .filter(|(_, _, pos)| pos.iter().any(|(g, _)| *g == gi))
                .map(|(_, g, _)| *g)
                .max();
            for t in owners {
                let Some(rule) = rules
                    .iter_mut()
                    .find(|r| r.index == t.rule && r.mode == Mode::Pruning)
                else {
                    continue;
                };
                let mut split = rule.clone();
                split.selection = compress_core::config::Selection {
                    op_names: vec![t.layer.clone()],
                    ..Default::default()
                };
                split.shortcut.dependency_group_id = Some(id.clone());
                split.shortcut.internal_metric_block = block;
                // The original rule must not configure this layer any more.
                rule.selection.exclude_op_names.push(t.layer.clone());
                splits.push(split);
            }
        }
        let mut out = config.clone();
        out.rules = splits.into_iter().chain(rules).collect();
        for (i, r) in out.rules.iter_mut().enumerate() {
            r.index = i;
        }
        Ok(out)
    }
}
