//! Normalizations: `BatchNorm` (inference: gamma, beta and running statistics per channel on
//! axis 1) and `LayerNorm` (gamma, beta on the last axis).

use burn_backend::ops::ModuleOps;
use burn_dispatch::{Dispatch, DispatchTensor};
use burn_ir::{ModuleOperationIr as M, OperationIr, TensorIr};

use super::{Exec, OpCost, OpRule, Row, call, numel};
use crate::Result;
use crate::onnx::{Attr, OnnxWriter};
use crate::rules::Analysis;
use crate::views::{LayerCall, LayerKind, ParamViews, layer_of};

/// A normalization op.
pub(crate) struct Norm<'a> {
    kind: LayerKind,
    x: &'a TensorIr,
    /// Per-channel parameters (gamma first).
    params: Vec<&'a TensorIr>,
    out: &'a TensorIr,
    ir: &'a M,
}

impl<'a> Norm<'a> {
    pub fn of(op: &'a OperationIr) -> Option<Self> {
        let OperationIr::Module(m) = op else {
            return None;
        };
        match m {
            M::BatchNorm(b) => Some(Self {
                kind: LayerKind::BatchNorm,
                x: &b.x,
                params: vec![&b.gamma, &b.beta, &b.mean, &b.variance],
                out: &b.out,
                ir: m,
            }),
            M::LayerNorm(l) => Some(Self {
                kind: LayerKind::LayerNorm,
                x: &l.input,
                params: std::iter::once(&l.gamma).chain(l.beta.as_ref()).collect(),
                out: &l.out,
                ir: m,
            }),
            _ => None,
        }
    }

    /// Attach the per-channel parameters to the channels of `x` on `axis`.
    fn per_channel(&self, a: &mut Analysis, axis: usize) {
        let map = a.map(self.x).filter(|m| m.axis == axis);
        let paths: Vec<String> = self.params.iter().filter_map(|p| a.param(p)).collect();
        if let Some(p) = paths.first() {
            a.last_layer = Some(layer_of(p).to_string());
        }
        if let Some(m) = &map {
            for (c, &s) in m.slots.iter().enumerate() {
                for p in &paths {
                    a.attach(s, p, 0, c);
                }
            }
        }
        a.pass(self.x, self.out);
    }
}

impl OpRule for Norm<'_> {
    fn channels(&self, a: &mut Analysis, _: usize, _: &OperationIr) -> Result<()> {
        match self.kind {
            LayerKind::BatchNorm => self.per_channel(a, 1),
            _ => {
                let last = self.x.shape.num_dims() - 1;
                match a.map(self.x) {
                    // The norm's statistics mix the channels it normalizes: they are marked
                    // (kept unless the plan normalizes over kept channels), and its gamma and
                    // beta hang on them.
                    Some(m) if m.axis == last => {
                        let layer = self.params.first().and_then(|p| a.param(p));
                        let layer = layer.as_deref().map_or("", layer_of).to_string();
                        a.mark_layer_norm(&m, &layer);
                        self.per_channel(a, last);
                    }
                    _ => self.per_channel(a, usize::MAX),
                }
            }
        }
        Ok(())
    }

    fn execute(&self, e: &Exec<'_>) -> Result<DispatchTensor> {
        Ok(match self.ir {
            M::BatchNorm(d) => Dispatch::batch_norm(
                e.get(&d.x)?,
                e.get(&d.gamma)?,
                e.get(&d.beta)?,
                e.get(&d.mean)?,
                e.get(&d.variance)?,
                d.epsilon.elem(),
            ),
            M::LayerNorm(d) => Dispatch::layer_norm(
                e.get(&d.input)?,
                e.get(&d.gamma)?,
                e.opt(d.beta.as_ref())?,
                d.epsilon.elem(),
            ),
            _ => return Err(e.refuse()),
        })
    }

    /// NNI's full mode: 2 FLOPs per output element, no MACs.
    fn cost(&self, _: &ParamViews) -> OpCost {
        OpCost::row(
            self.kind.as_str(),
            Row::Full,
            self.x,
            self.out,
            2 * numel(self.out),
        )
    }

    fn onnx(&self, w: &mut OnnxWriter<'_>) -> Result<()> {
        match self.ir {
            M::BatchNorm(d) => w.simple(
                "BatchNormalization",
                &[&d.x, &d.gamma, &d.beta, &d.mean, &d.variance],
                &d.out,
                vec![("epsilon", Attr::Float(d.epsilon.elem::<f32>()))],
            ),
            M::LayerNorm(d) => {
                let mut inputs = vec![&d.input, &d.gamma];
                inputs.extend(d.beta.as_ref());
                w.simple(
                    "LayerNormalization",
                    &inputs,
                    &d.out,
                    vec![
                        ("axis", Attr::Int(-1)),
                        ("epsilon", Attr::Float(d.epsilon.elem::<f32>())),
                    ],
                )
            }
            _ => Err(w.unmapped()),
        }
    }

    fn layer_call(&self, views: &ParamViews) -> Option<LayerCall> {
        let gamma = views.path(self.params[0])?;
        Some(call(
            self.kind,
            gamma,
            self.x,
            self.out,
            self.params[0],
            self.params.get(1).copied(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::{BatchNormConfig, LayerNormConfig, LinearConfig};
    use burn::prelude::*;

    use crate::ops::testing::{full_rows, groups_of, macs};

    #[derive(Module, Debug)]
    struct ConvBn {
        conv: burn::nn::conv::Conv2d,
        bn: burn::nn::BatchNorm,
    }

    #[test]
    fn a_batch_norm_joins_the_channels_of_the_conv_it_follows_and_costs_two_flops_per_element() {
        let d = Device::flex();
        let m = ConvBn {
            conv: Conv2dConfig::new([1, 3], [1, 1]).with_bias(false).init(&d),
            bn: BatchNormConfig::new(3).init(&d),
        };
        let f = |m: &ConvBn, d: &Device| {
            m.bn.forward(m.conv.forward(Tensor::<4>::zeros([1, 1, 2, 2], d)))
        };
        let groups = groups_of(&m, f);
        assert_eq!(groups[0].len(), 5, "{groups:?}");
        assert_eq!(macs(&m, f), 12);
        let rows = full_rows(&m, f);
        let bn = rows.iter().find(|r| r.module_type == "BatchNorm").unwrap();
        assert_eq!((bn.name.as_str(), bn.flops, bn.params), ("bn", 24, 6));
    }

    #[derive(Module, Debug)]
    struct LinNorm {
        fc: burn::nn::Linear,
        norm: burn::nn::LayerNorm,
    }

    #[test]
    fn a_layer_norm_over_the_features_marks_them_and_hangs_its_gamma_and_beta_on_them() {
        let d = Device::flex();
        let m = LinNorm {
            fc: LinearConfig::new(3, 4).init(&d),
            norm: LayerNormConfig::new(4).init(&d),
        };
        let graph = crate::capture(&m, |m, d| {
            m.norm.forward(m.fc.forward(Tensor::<2>::zeros([2, 3], d)))
        })
        .unwrap();
        let classes = crate::Analysis::run(&graph).unwrap().classes();
        assert_eq!(classes.len(), 4);
        for c in &classes {
            assert_eq!(c.layer_norms, ["norm"]);
            assert!(c.pins.is_empty(), "{:?}", c.pins);
            let params: Vec<&str> = c.members.iter().map(|m| m.param.as_str()).collect();
            assert_eq!(params, ["fc.weight", "fc.bias", "norm.gamma", "norm.beta"]);
        }
    }
}
