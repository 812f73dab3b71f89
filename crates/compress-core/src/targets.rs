//! Stage two of the config: resolve rules against a [`ModuleIndex`] into per-target settings.
//!
//! Selection follows NNI (`base/config.py`): `(op_names ∪ op_names_re matches) ∩ op_types`, or
//! just `op_types` when no names are given, minus the three exclusion lists.
//!
//! **When two rules hit one target, the first rule wins** and the later one is reported as a
//! [`ConfigWarning::ConfiguredTwice`]. This is what NNI's code does
//! (`wrapper.extend_target_spaces`); its `config_list.rst` claims the opposite.
//! Unknown `op_names` (and `exclude_op_names`) are errors here, where NNI sometimes drops them
//! silently: a typo in an exclusion would otherwise compress a layer the user meant to keep.

use std::collections::BTreeSet;
use std::fmt;

use crate::config::{Align, Mode, Rule, TargetSetting};
use crate::error::did_you_mean;
use crate::index::{LayerInfo, ModuleIndex};
use crate::layers::{LayerSpec, ParamRole};
use crate::{CompressConfig, CompressError, Result};

/// One resolved compression target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Layer path (`layer1.0.conv1`).
    pub layer: String,
    /// Canonical layer type (`Conv2d`).
    pub layer_type: String,
    /// Target name: a Burn parameter name (`weight`, `gamma`) or `_input_` / `_output_`.
    pub name: String,
    /// Full path: `layer.name`.
    pub path: String,
    /// Parameter shape in Burn's layout (empty for activations).
    pub shape: Vec<usize>,
    /// Output-channel axis of the parameter.
    pub out_axis: Option<usize>,
    /// Input-channel axis of the parameter.
    pub in_axis: Option<usize>,
    /// Parameter role.
    pub role: Option<ParamRole>,
    /// The merged setting.
    pub setting: TargetSetting,
    /// Which rule configured it.
    pub rule: usize,
}

impl Target {
    /// Whether the target gets a metric of its own (`sparse_ratio` or `sparse_threshold`).
    pub fn is_active(&self) -> bool {
        self.setting.sparse_ratio.is_some() || self.setting.sparse_threshold.is_some()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Something worth telling the user that does not stop resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigWarning {
    /// An `op_types` entry that no layer of the model has.
    OpTypeMatchesNothing {
        /// The rule (`config_list[i]`).
        rule: String,
        /// The type.
        op_type: String,
    },
    /// A rule that selects no layer.
    RuleSelectsNothing {
        /// The rule.
        rule: String,
    },
    /// A target a later rule also selects: the first rule wins.
    ConfiguredTwice {
        /// The target path.
        target: String,
        /// The rule that configured it.
        kept: String,
        /// The rule that is ignored for it.
        ignored: String,
    },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::OpTypeMatchesNothing { rule, op_type } => {
                write!(
                    f,
                    "{rule}: op type '{op_type}' matches no layer of the model"
                )
            }
            ConfigWarning::RuleSelectsNothing { rule } => write!(f, "{rule} selects no layer"),
            ConfigWarning::ConfiguredTwice {
                target,
                kept,
                ignored,
            } => write!(
                f,
                "'{target}' is configured by {kept} and {ignored}: the first rule wins, {ignored} is ignored for it"
            ),
        }
    }
}

/// The outcome of resolving a config against a model.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// Targets in rule order, then model order.
    pub targets: Vec<Target>,
    /// Warnings.
    pub warnings: Vec<ConfigWarning>,
}

impl Resolved {
    /// A target by path.
    pub fn target(&self, path: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.path == path)
    }

    /// The paths of the active targets (those a pruner scores), in order.
    pub fn active_paths(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter(|t| t.is_active())
            .map(|t| t.path.clone())
            .collect()
    }
}

fn type_matches(layer_type: &str, wanted: &str) -> bool {
    layer_type == wanted || LayerSpec::canonical(wanted).is_some_and(|c| c == layer_type)
}

/// The layer paths of a composite's children (`attn.query`, ...).
fn composite_children<'a>(
    index: &'a ModuleIndex,
    path: &str,
    spec: &LayerSpec,
) -> Vec<&'a LayerInfo> {
    spec.children
        .iter()
        .filter_map(|c| {
            let child = if path.is_empty() {
                c.to_string()
            } else {
                format!("{path}.{c}")
            };
            index.layer(&child)
        })
        .collect()
}

fn layers_of_type<'a>(index: &'a ModuleIndex, wanted: &str) -> Vec<&'a LayerInfo> {
    let mut out: Vec<&LayerInfo> = index
        .layers()
        .iter()
        .filter(|l| type_matches(&l.type_name, wanted))
        .collect();
    // Composites (attention) are containers, not layers: select their children.
    if let Some(spec) = LayerSpec::find(wanted).filter(|s| !s.children.is_empty()) {
        let containers: BTreeSet<&str> = index
            .layers()
            .iter()
            .filter_map(|l| {
                l.path
                    .rsplit_once('.')
                    .map(|(parent, _)| parent)
                    .or(Some(""))
            })
            .filter(|parent| {
                index
                    .module_type(parent)
                    .is_some_and(|t| type_matches(t, wanted))
            })
            .collect();
        for c in containers {
            out.extend(composite_children(index, c, &spec));
        }
    }
    out
}

fn check_names(index: &ModuleIndex, names: &[String], ctx: &str) -> Result<()> {
    for name in names {
        if index.layer(name).is_none() {
            return Err(CompressError::UnknownOpName {
                name: name.clone(),
                context: ctx.to_string(),
                suggestion: did_you_mean(name, index.layers().iter().map(|l| l.path.as_str())),
            });
        }
    }
    Ok(())
}

/// The layers a rule selects, in model order.
fn select<'a>(
    index: &'a ModuleIndex,
    rule: &Rule,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Vec<&'a LayerInfo>> {
    let s = &rule.selection;
    let ctx = rule.context();
    check_names(index, &s.op_names, &format!("{ctx}.op_names"))?;
    check_names(
        index,
        &s.exclude_op_names,
        &format!("{ctx}.exclude_op_names"),
    )?;
    let mut by_type: BTreeSet<&str> = BTreeSet::new();
    for t in &s.op_types {
        let layers = layers_of_type(index, t);
        if layers.is_empty() {
            warnings.push(ConfigWarning::OpTypeMatchesNothing {
                rule: ctx.clone(),
                op_type: t.clone(),
            });
        }
        by_type.extend(layers.iter().map(|l| l.path.as_str()));
    }
    let named = !s.op_names.is_empty() || !s.op_names_re.is_empty();
    let selected: Vec<&LayerInfo> = index
        .layers()
        .iter()
        .filter(|l| {
            let by_name =
                s.op_names.contains(&l.path) || s.op_names_re.iter().any(|r| r.is_match(&l.path));
            let typed = by_type.contains(l.path.as_str());
            match (named, s.op_types.is_empty()) {
                (true, true) => by_name,
                (true, false) => by_name && typed,
                (false, _) => typed,
            }
        })
        .filter(|l| {
            !(s.exclude_op_names.contains(&l.path)
                || s.exclude_op_names_re.iter().any(|r| r.is_match(&l.path))
                || s.exclude_op_types
                    .iter()
                    .any(|t| type_matches(&l.type_name, t)))
        })
        .collect();
    if selected.is_empty() {
        warnings.push(ConfigWarning::RuleSelectsNothing { rule: ctx });
    }
    Ok(selected)
}

/// Which setting keys a target's template accepts in `mode`: NNI copies a shortcut key only to
/// templates that have it, so `sparse_ratio` reaches `weight` but not `bias`.
fn template(mode: Mode, role: Option<ParamRole>) -> TargetSetting {
    let mut t = TargetSetting::default();
    if mode == Mode::Pruning && role == Some(ParamRole::Bias) {
        t.align = Some(Align {
            module_name: None,
            target_name: "weight".into(),
            dims: None,
        });
    }
    t
}

fn accepts_shortcut(
    mode: Mode,
    role: Option<ParamRole>,
    shortcut: &TargetSetting,
) -> TargetSetting {
    match (mode, role) {
        // A bias template has no ratio keys: only align and apply_method reach it.
        (Mode::Pruning, Some(ParamRole::Bias)) => TargetSetting {
            align: shortcut.align.clone(),
            apply_method: shortcut.apply_method,
            ..Default::default()
        },
        (Mode::Pruning, _) => TargetSetting {
            align: None,
            ..shortcut.clone()
        },
        _ => shortcut.clone(),
    }
}

/// Default target names of a layer in a mode.
fn default_targets(mode: Mode, spec: &LayerSpec, layer: &LayerInfo) -> Vec<String> {
    let params = spec
        .params
        .iter()
        .filter(|p| p.role != ParamRole::Buffer && layer.param(p.name).is_some())
        .map(|p| p.name.to_string());
    match mode {
        Mode::Pruning => params.collect(),
        Mode::Quantization => {
            let mut t = Vec::new();
            if spec.activations {
                t.push("_input_".to_string());
            }
            t.extend(params);
            if spec.activations {
                t.push("_output_".to_string());
            }
            t
        }
        Mode::Distillation => vec!["_output_".to_string()],
    }
}

impl CompressConfig {
    /// Resolve every rule against a model's index.
    ///
    /// # Errors
    /// Unknown op names, layers without a [`LayerSpec`], target names a layer does not have,
    /// and `fuse_names` hosts the rule does not select.
    pub fn resolve(&self, index: &ModuleIndex) -> Result<Resolved> {
        let mut resolved = Resolved::default();
        let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
        for rule in &self.rules {
            let ctx = rule.context();
            let layers = select(index, rule, &mut resolved.warnings)?;
            for group in &rule.fuse_names {
                check_names(index, group, &format!("{ctx}.fuse_names"))?;
                if !layers.iter().any(|l| l.path == group[0]) {
                    return Err(CompressError::InvalidValue {
                        key: "fuse_names".into(),
                        context: ctx.clone(),
                        value: group.join(", "),
                        reason: format!(
                            "the fusion host '{}' is not selected by this rule",
                            group[0]
                        ),
                    });
                }
            }
            for layer in layers {
                let spec = LayerSpec::find(&layer.type_name).ok_or_else(|| {
                    CompressError::UnsupportedLayer {
                        path: layer.path.clone(),
                        type_name: layer.type_name.clone(),
                    }
                })?;
                let names = match &rule.target_names {
                    Some(names) => names.clone(),
                    None => default_targets(rule.mode, &spec, layer),
                };
                for name in names {
                    let target = build_target(rule, &spec, layer, &name, &ctx)?;
                    if let Some(first) = seen.get(&target.path) {
                        resolved.warnings.push(ConfigWarning::ConfiguredTwice {
                            target: target.path.clone(),
                            kept: format!("config_list[{first}]"),
                            ignored: ctx.clone(),
                        });
                        continue;
                    }
                    seen.insert(target.path.clone(), rule.index);
                    resolved.targets.push(target);
                }
            }
        }
        Ok(resolved)
    }
}

fn build_target(
    rule: &Rule,
    spec: &LayerSpec,
    layer: &LayerInfo,
    name: &str,
    ctx: &str,
) -> Result<Target> {
    let join = |n: &str| {
        if layer.path.is_empty() {
            n.to_string()
        } else {
            format!("{}.{n}", layer.path)
        }
    };
    let available = || {
        let mut names: Vec<String> = spec
            .params
            .iter()
            .filter(|p| p.role != ParamRole::Buffer && layer.param(p.name).is_some())
            .map(|p| p.name.to_string())
            .collect();
        if spec.activations {
            names.push("_input_".into());
            names.push("_output_".into());
        }
        names.join(", ")
    };
    let unknown = || CompressError::UnknownTarget {
        target: name.to_string(),
        layer: layer.path.clone(),
        layer_type: layer.type_name.clone(),
        available: available(),
        context: ctx.to_string(),
    };
    let (burn_name, shape, pspec) = if name.starts_with("_input_") || name.starts_with("_output_") {
        if !spec.activations {
            return Err(unknown());
        }
        (name.to_string(), Vec::new(), None)
    } else {
        let p = spec
            .param(name)
            .filter(|p| p.role != ParamRole::Buffer)
            .ok_or_else(unknown)?;
        let info = layer.param(p.name).ok_or_else(unknown)?;
        (p.name.to_string(), info.shape.clone(), Some(p))
    };
    let role = pspec.map(|p| p.role);
    let mut setting =
        template(rule.mode, role).merged(&accepts_shortcut(rule.mode, role, &rule.shortcut));
    let explicit = rule
        .target_settings
        .get(name)
        .or_else(|| rule.target_settings.get(&burn_name))
        .or_else(|| pspec.and_then(|p| rule.target_settings.get(p.nni_name)));
    if let Some(explicit) = explicit {
        setting = setting.merged(explicit);
    }
    Ok(Target {
        layer: layer.path.clone(),
        layer_type: spec.type_name.to_string(),
        path: join(&burn_name),
        name: burn_name,
        shape,
        out_axis: pspec.and_then(|p| p.out_axis),
        in_axis: pspec.and_then(|p| p.in_axis),
        role,
        setting,
        rule: rule.index,
    })
}
