//! Fixing non-tensor fields after tensors shrank: [`FixStructure`].
//!
//! Pruning (and the speedup that makes it physical) changes tensor shapes; some layers also
//! hold the sizes as plain fields (a depthwise conv's `groups`, a GroupNorm's `num_channels`,
//! attention head counts). Every model that is shrunk implements this trait, usually through
//! [`impl_fix_structure!`](crate::impl_fix_structure). It lives in compress-core so that model
//! crates (the zoo, users' models) depend on the contracts crate only.

use std::collections::HashMap;

use burn::module::{Param, ParamId};
use burn::prelude::Tensor;

/// Fields that are not tensors but must follow the tensors' new sizes (a depthwise conv's
/// `groups`, a GroupNorm's `num_channels`, ...).
///
/// Implemented for burn-nn's layers, `Vec`, `Option` and tuples; implement it for your own
/// model with [`impl_fix_structure!`](crate::impl_fix_structure) by listing its module fields.
pub trait FixStructure {
    /// Update non-tensor fields from the (shrunk) tensors.
    fn fix_structure(&mut self);
}

/// Implement [`FixStructure`] for a struct by visiting the listed module fields:
/// `impl_fix_structure!(MyNet { conv1, blocks, head });`
#[macro_export]
macro_rules! impl_fix_structure {
    ($ty:ty { $($field:ident),* $(,)? }) => {
        impl $crate::FixStructure for $ty {
            fn fix_structure(&mut self) {
                $( $crate::FixStructure::fix_structure(&mut self.$field); )*
            }
        }
    };
}

macro_rules! no_structure {
    ($($ty:ty),*) => { $(impl FixStructure for $ty { fn fix_structure(&mut self) {} })* };
}

no_structure!(
    burn::nn::Linear,
    burn::nn::BatchNorm,
    burn::nn::LayerNorm,
    burn::nn::Embedding,
    burn::nn::PRelu,
    burn::nn::Dropout,
    burn::nn::Relu,
    burn::nn::Gelu,
    burn::nn::pool::MaxPool2d,
    burn::nn::pool::AvgPool2d,
    burn::nn::pool::AdaptiveAvgPool2d
);

/// Implement [`FixStructure`] for layers whose fields follow their `weight`'s shape: `$body`
/// runs with `$s` the layer and `$dims` the weight's shape.
macro_rules! weight_structure {
    (|$s:ident, $dims:ident| $body:block for $($ty:ty),*) => {$(
        impl FixStructure for $ty {
            fn fix_structure(&mut self) {
                let $s = self;
                let $dims = $s.weight.lazy_shape();
                $body
            }
        }
    )*};
}
weight_structure!(|s, dims| {
    // A depthwise conv (in / groups == 1) whose channels shrank: groups = channels.
    if s.groups > 1 && dims[1] == 1 && dims[0] < s.groups {
        s.groups = dims[0];
    }
} for
    burn::nn::conv::Conv1d,
    burn::nn::conv::Conv2d,
    burn::nn::conv::Conv3d
);
weight_structure!(|s, dims| {
    s.channels = [dims[0], dims[1] * s.groups];
} for
    burn::nn::conv::ConvTranspose1d,
    burn::nn::conv::ConvTranspose2d,
    burn::nn::conv::ConvTranspose3d
);

thread_local! {
    /// The epsilon factors of the norms being fixed, by gamma id (see [`with_epsilon_factors`]).
    static EPSILON_FACTORS: std::cell::RefCell<Option<HashMap<ParamId, f64>>> =
        const { std::cell::RefCell::new(None) };
}

/// Run `fix` (a model's [`FixStructure::fix_structure`]) with per-norm epsilon factors keyed by
/// the norm's gamma id; returns `fix`'s result and the ids nobody claimed.
///
/// Why a scope and not an argument: removing zero channels from an RMS norm is exact only if its
/// epsilon is rescaled by `d / d'` (`d'` kept of `d`), and only the speedup knows `d`. Epsilon is
/// a plain field, beyond a `ModuleMapper`, and `fix_structure` takes no arguments because every
/// model forwards it to its fields by hand; a scope keyed by the gamma's [`ParamId`] reaches the
/// norm through any of those impls. burn-nn `RmsNorm`'s impl claims its factor with
/// [`epsilon_factor`]; a model with its own RMS norm calls it too. An unclaimed id is returned,
/// so the caller reports it instead of leaving a norm silently wrong.
pub fn with_epsilon_factors<R>(
    factors: HashMap<ParamId, f64>,
    fix: impl FnOnce() -> R,
) -> (R, Vec<ParamId>) {
    let previous = EPSILON_FACTORS.with(|f| f.replace(Some(factors)));
    let out = fix();
    let left = EPSILON_FACTORS.with(|f| f.replace(previous));
    (
        out,
        left.map(|m| m.into_keys().collect()).unwrap_or_default(),
    )
}

/// The epsilon factor [`with_epsilon_factors`] holds for the norm whose gamma is `gamma`, taken
/// (a second call returns `None`). Outside that scope, always `None`.
pub fn epsilon_factor(gamma: &Param<Tensor<1>>) -> Option<f64> {
    EPSILON_FACTORS.with(|f| f.borrow_mut().as_mut()?.remove(&gamma.id))
}

impl FixStructure for burn::nn::RmsNorm {
    /// Scales `epsilon` by the factor of a speedup that removed channels (see
    /// [`with_epsilon_factors`]); the gamma was rescaled with the tensors.
    fn fix_structure(&mut self) {
        if let Some(f) = epsilon_factor(&self.gamma) {
            self.epsilon *= f;
        }
    }
}

impl FixStructure for burn::nn::GroupNorm {
    fn fix_structure(&mut self) {
        if let Some(g) = &self.gamma {
            self.num_channels = g.lazy_shape()[0];
        }
    }
}

impl FixStructure for burn::nn::attention::MultiHeadAttention {
    fn fix_structure(&mut self) {
        // Head pruning keeps d_k: the head count follows the query projection's width.
        let inner = self.query.weight.lazy_shape()[1];
        if self.d_k > 0 && inner.is_multiple_of(self.d_k) {
            self.n_heads = inner / self.d_k;
        }
        self.d_model = self.output.weight.lazy_shape()[1];
    }
}

impl FixStructure for burn::nn::transformer::PositionWiseFeedForward {
    fn fix_structure(&mut self) {}
}

impl FixStructure for burn::nn::transformer::TransformerEncoderLayer {
    fn fix_structure(&mut self) {
        self.mha.fix_structure();
    }
}

impl FixStructure for burn::nn::transformer::TransformerEncoder {
    fn fix_structure(&mut self) {
        self.layers.fix_structure();
        if let Some(first) = self.layers.first() {
            self.d_ff = first.pwff.linear_inner.weight.lazy_shape()[1];
            self.n_heads = first.mha.n_heads;
        }
    }
}

impl<T: FixStructure> FixStructure for Vec<T> {
    fn fix_structure(&mut self) {
        self.iter_mut().for_each(FixStructure::fix_structure);
    }
}

impl<T: FixStructure> FixStructure for Option<T> {
    fn fix_structure(&mut self) {
        if let Some(t) = self {
            t.fix_structure();
        }
    }
}

impl<A: FixStructure, B: FixStructure> FixStructure for (A, B) {
    fn fix_structure(&mut self) {
        self.0.fix_structure();
        self.1.fix_structure();
    }
}

impl<A: FixStructure, B: FixStructure, C: FixStructure> FixStructure for (A, B, C) {
    fn fix_structure(&mut self) {
        self.0.fix_structure();
        self.1.fix_structure();
        self.2.fix_structure();
    }
}

impl<A: FixStructure, B: FixStructure, C: FixStructure, D: FixStructure> FixStructure
    for (A, B, C, D)
{
    fn fix_structure(&mut self) {
        self.0.fix_structure();
        self.1.fix_structure();
        self.2.fix_structure();
        self.3.fix_structure();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::RmsNormConfig;
    use burn::prelude::Device;

    #[test]
    fn an_rms_norm_claims_its_epsilon_factor_once_inside_the_scope_and_leaves_others_unclaimed() {
        let d = Device::flex();
        let mut a = RmsNormConfig::new(3).with_epsilon(1e-5).init(&d);
        let b = RmsNormConfig::new(3).init(&d);
        let factors = HashMap::from([(a.gamma.id, 1.5), (b.gamma.id, 2.0)]);
        let ((), left) = with_epsilon_factors(factors, || {
            a.fix_structure();
            a.fix_structure();
        });
        assert!(
            (a.epsilon - 1.5e-5).abs() < 1e-18,
            "claimed once: {}",
            a.epsilon
        );
        assert_eq!(left, [b.gamma.id]);
        // Outside the scope nothing changes.
        a.fix_structure();
        assert!((a.epsilon - 1.5e-5).abs() < 1e-18);
        assert_eq!(epsilon_factor(&a.gamma), None);
    }
}
