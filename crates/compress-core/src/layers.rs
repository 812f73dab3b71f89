//! The LayerSpec registry: what each layer type's parameters mean for compression.
//!
//! Burn's layouts differ from PyTorch's, so no algorithm may guess an axis from a layer type:
//! it asks the spec. `Linear.weight` is `[d_input, d_output]` (output channels on axis 1), conv
//! weights are `[out, in / groups, k..]`, transposed-conv weights `[in, out / groups, k..]`.

use std::collections::BTreeMap;

/// What a parameter is for, which decides its default compression targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamRole {
    /// The main weight: pruning metrics are computed on it (`weight`, `gamma`, `alpha`).
    Weight,
    /// A bias-like vector that follows the weight's mask (`bias`, `beta`).
    Bias,
    /// A buffer such as BatchNorm's running statistics: never a target.
    Buffer,
}

/// One parameter of a layer type.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Burn's field name (`weight`, `gamma`, `running_mean`, ...).
    pub name: &'static str,
    /// The name NNI and PyTorch use for the same tensor (`weight` for BatchNorm's `gamma`).
    pub nni_name: &'static str,
    /// What the parameter is for.
    pub role: ParamRole,
    /// Axis of the output channels in Burn's layout, if the tensor has one.
    pub out_axis: Option<usize>,
    /// Axis of the input channels in Burn's layout, if the tensor has one.
    pub in_axis: Option<usize>,
}

impl ParamSpec {
    const fn new(
        name: &'static str,
        nni_name: &'static str,
        role: ParamRole,
        out_axis: Option<usize>,
        in_axis: Option<usize>,
    ) -> Self {
        Self {
            name,
            nni_name,
            role,
            out_axis,
            in_axis,
        }
    }
}

/// How a layer type's parameters are compressed.
///
/// Built-in specs cover burn-nn's layers. Register one for your own layer type (its struct name,
/// as `#[derive(Module)]` reports it) with `inventory`; a registered spec replaces a built-in one
/// of the same name:
///
/// ```
/// use compress_core::{layers::{LayerSpec, ParamRole, ParamSpec}};
///
/// inventory::submit! {
///     LayerSpec {
///         type_name: "MyScale",
///         aliases: &[],
///         params: &[ParamSpec {
///             name: "scale", nni_name: "weight", role: ParamRole::Weight,
///             out_axis: Some(0), in_axis: None,
///         }],
///         children: &[],
///         activations: false,
///     }
/// }
/// assert!(LayerSpec::find("MyScale").is_some());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LayerSpec {
    /// The struct name (`Conv2d`).
    pub type_name: &'static str,
    /// Other names configs may use for it (PyTorch's `BatchNorm2d` for Burn's `BatchNorm`).
    pub aliases: &'static [&'static str],
    /// Its parameters.
    pub params: &'static [ParamSpec],
    /// For a composite layer (attention), the child fields that are the real layers: selecting
    /// the composite by type selects these.
    pub children: &'static [&'static str],
    /// Whether its inputs and outputs can be quantization targets (`_input_`, `_output_`).
    pub activations: bool,
}

inventory::collect!(LayerSpec);

impl LayerSpec {
    /// The spec for a type name or alias; user-registered specs win over built-in ones.
    pub fn find(type_name: &str) -> Option<LayerSpec> {
        let matches =
            |spec: &LayerSpec| spec.type_name == type_name || spec.aliases.contains(&type_name);
        inventory::iter::<LayerSpec>
            .into_iter()
            .find(|s| matches(s))
            .or_else(|| BUILTIN.iter().find(|s| matches(s)))
            .copied()
    }

    /// The canonical type name for a name or alias (`BatchNorm2d` -> `BatchNorm`).
    pub fn canonical(type_name: &str) -> Option<&'static str> {
        Self::find(type_name).map(|s| s.type_name)
    }

    /// Every known spec, user-registered first, sorted by type name within each source.
    pub fn all() -> Vec<LayerSpec> {
        let mut specs: BTreeMap<&'static str, LayerSpec> =
            BUILTIN.iter().map(|s| (s.type_name, *s)).collect();
        for spec in inventory::iter::<LayerSpec> {
            specs.insert(spec.type_name, *spec);
        }
        specs.into_values().collect()
    }

    /// The spec of a parameter by Burn name or NNI name (`gamma` or `weight` on BatchNorm).
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .or_else(|| self.params.iter().find(|p| p.nni_name == name))
    }
}

use ParamRole::{Bias, Buffer, Weight};

const LINEAR: &[ParamSpec] = &[
    ParamSpec::new("weight", "weight", Weight, Some(1), Some(0)),
    ParamSpec::new("bias", "bias", Bias, Some(0), None),
];
const CONV: &[ParamSpec] = &[
    ParamSpec::new("weight", "weight", Weight, Some(0), Some(1)),
    ParamSpec::new("bias", "bias", Bias, Some(0), None),
];
const CONV_TRANSPOSE: &[ParamSpec] = &[
    ParamSpec::new("weight", "weight", Weight, Some(1), Some(0)),
    ParamSpec::new("bias", "bias", Bias, Some(0), None),
];
const BATCH_NORM: &[ParamSpec] = &[
    ParamSpec::new("gamma", "weight", Weight, Some(0), None),
    ParamSpec::new("beta", "bias", Bias, Some(0), None),
    ParamSpec::new("running_mean", "running_mean", Buffer, Some(0), None),
    ParamSpec::new("running_var", "running_var", Buffer, Some(0), None),
];
const AFFINE_NORM: &[ParamSpec] = &[
    ParamSpec::new("gamma", "weight", Weight, Some(0), None),
    ParamSpec::new("beta", "bias", Bias, Some(0), None),
];
const RMS_NORM: &[ParamSpec] = &[ParamSpec::new("gamma", "weight", Weight, Some(0), None)];
// Embedding weight is `[n_embedding, d_model]`; the channel that flows out is `d_model`, so
// that is its output axis. (NNI reads torch's layout as `[out, in]` and asks for `in_channel`
// to prune the embedding dim; we name axes by data flow instead.)
const EMBEDDING: &[ParamSpec] = &[ParamSpec::new("weight", "weight", Weight, Some(1), None)];
const PRELU: &[ParamSpec] = &[ParamSpec::new("alpha", "weight", Weight, Some(0), None)];

macro_rules! spec {
    ($name:literal, [$($alias:literal),*], $params:expr, $act:expr) => {
        LayerSpec {
            type_name: $name,
            aliases: &[$($alias),*],
            params: $params,
            children: &[],
            activations: $act,
        }
    };
}

/// Specs for burn-nn's layers.
const BUILTIN: &[LayerSpec] = &[
    spec!("Linear", [], LINEAR, true),
    spec!("Conv1d", [], CONV, true),
    spec!("Conv2d", [], CONV, true),
    spec!("Conv3d", [], CONV, true),
    spec!("ConvTranspose1d", [], CONV_TRANSPOSE, true),
    spec!("ConvTranspose2d", [], CONV_TRANSPOSE, true),
    spec!("ConvTranspose3d", [], CONV_TRANSPOSE, true),
    spec!(
        "BatchNorm",
        ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"],
        BATCH_NORM,
        true
    ),
    spec!("LayerNorm", [], AFFINE_NORM, true),
    spec!("GroupNorm", [], AFFINE_NORM, true),
    spec!("RmsNorm", ["RMSNorm"], RMS_NORM, true),
    spec!("Embedding", [], EMBEDDING, false),
    spec!("PRelu", ["PReLU"], PRELU, true),
    LayerSpec {
        type_name: "MultiHeadAttention",
        aliases: &["MultiheadAttention"],
        params: &[],
        children: &["query", "key", "value", "output"],
        activations: false,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytorch_batch_norm_names_resolve_to_burns_batch_norm() {
        assert_eq!(LayerSpec::canonical("BatchNorm2d"), Some("BatchNorm"));
        assert_eq!(LayerSpec::canonical("BatchNorm1d"), Some("BatchNorm"));
        assert_eq!(LayerSpec::canonical("Conv7d"), None);
    }

    #[test]
    fn linear_output_channels_are_axis_one_and_conv_axis_zero() {
        let linear = LayerSpec::find("Linear").unwrap();
        assert_eq!(linear.param("weight").unwrap().out_axis, Some(1));
        assert_eq!(linear.param("weight").unwrap().in_axis, Some(0));
        let conv = LayerSpec::find("Conv2d").unwrap();
        assert_eq!(conv.param("weight").unwrap().out_axis, Some(0));
        let convt = LayerSpec::find("ConvTranspose2d").unwrap();
        assert_eq!(convt.param("weight").unwrap().out_axis, Some(1));
    }

    #[test]
    fn batch_norm_weight_is_found_by_its_nni_name() {
        let bn = LayerSpec::find("BatchNorm").unwrap();
        assert_eq!(bn.param("weight").unwrap().name, "gamma");
        assert_eq!(bn.param("bias").unwrap().name, "beta");
        assert_eq!(bn.param("running_mean").unwrap().role, ParamRole::Buffer);
    }
}
