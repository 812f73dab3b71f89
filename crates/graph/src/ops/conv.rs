//! Conv-like ops: `Conv1d/2d/3d` (weight `[out, in/groups, k..]`) and `ConvTranspose1d/2d/3d`
//! (weight `[in, out/groups, k..]`).

use burn_backend::ops::ModuleOps;
use burn_dispatch::{Dispatch, DispatchTensor};
use burn_ir::{ModuleOperationIr as M, OperationIr, TensorIr};

use super::{Exec, OpCost, OpRule, Row, call, numel};
use crate::Result;
use crate::onnx::{Attr, OnnxWriter};
use crate::rules::{Analysis, GroupedConv, Map, Value};
use crate::views::{LayerCall, LayerKind, ParamViews, layer_of};

/// A conv-like op.
pub(crate) struct Conv<'a> {
    kind: LayerKind,
    x: &'a TensorIr,
    weight: &'a TensorIr,
    bias: Option<&'a TensorIr>,
    out: &'a TensorIr,
    groups: usize,
    transposed: bool,
    ir: &'a M,
}

impl<'a> Conv<'a> {
    pub fn of(op: &'a OperationIr) -> Option<Self> {
        let OperationIr::Module(m) = op else {
            return None;
        };
        macro_rules! conv {
            ($c:expr, $kind:ident, $t:expr) => {
                Some(Conv {
                    kind: LayerKind::$kind,
                    x: &$c.x,
                    weight: &$c.weight,
                    bias: $c.bias.as_ref(),
                    out: &$c.out,
                    groups: $c.options.groups,
                    transposed: $t,
                    ir: m,
                })
            };
        }
        match m {
            M::Conv1d(c) => conv!(c, Conv1d, false),
            M::Conv2d(c) => conv!(c, Conv2d, false),
            M::Conv3d(c) => conv!(c, Conv3d, false),
            M::ConvTranspose1d(c) => conv!(c, ConvTranspose1d, true),
            M::ConvTranspose2d(c) => conv!(c, ConvTranspose2d, true),
            M::ConvTranspose3d(c) => conv!(c, ConvTranspose3d, true),
            _ => None,
        }
    }
}

impl OpRule for Conv<'_> {
    fn channels(&self, a: &mut Analysis, index: usize, op: &OperationIr) -> Result<()> {
        if self.transposed && self.groups != 1 {
            // Grouped transposed convs have no rule yet.
            return a.no_rule(index, op);
        }
        let (w_out, w_in) = if self.transposed { (1, 0) } else { (0, 1) };
        let (x, out, groups) = (self.x, self.out, self.groups);
        let Some(w) = a.param(self.weight) else {
            // A functional conv with a computed weight: its channels cannot be pruned.
            let m = a.map(x);
            a.pin_map(&m, "conv with a computed (non-parameter) weight".into());
            a.set(out, Value::Act(None));
            return Ok(());
        };
        let b = self.bias.and_then(|b| a.param(b));
        let layer = layer_of(&w).to_string();
        a.last_layer = Some(layer.clone());
        let (out_c, in_c) = (out.shape[1], x.shape[1]);
        let input = a.map(x).filter(|m| m.axis == 1);
        let depthwise = groups > 1 && groups == in_c && out_c == in_c;
        let slots: Vec<usize> = match (&input, depthwise) {
            // Depthwise: output channel c is computed from input channel c alone.
            (Some(m), true) => m.slots.clone(),
            _ => (0..out_c).map(|_| a.new_slot()).collect(),
        };
        for (o, &s) in slots.iter().enumerate() {
            a.attach(s, &w, w_out, o);
            if let Some(b) = &b {
                a.attach(s, b, 0, o);
            }
        }
        if let Some(m) = &input {
            if groups == 1 {
                for (c, &s) in m.slots.iter().enumerate() {
                    a.attach(s, &w, w_in, c);
                }
            } else if !depthwise {
                a.pin_map(&input, format!("input channels of grouped conv '{layer}'"));
            }
        }
        if groups > 1 && !depthwise {
            a.grouped_convs.push(GroupedConv {
                layer,
                groups,
                out_slots: slots.clone(),
            });
        }
        a.set(out, Value::Act(Some(Map { axis: 1, slots })));
        Ok(())
    }

    fn execute(&self, e: &Exec<'_>) -> Result<DispatchTensor> {
        let (x, w, b) = (e.get(self.x)?, e.get(self.weight)?, e.opt(self.bias)?);
        Ok(match self.ir {
            M::Conv1d(c) => Dispatch::conv1d(x, w, b, c.options.clone().into()),
            M::Conv2d(c) => Dispatch::conv2d(x, w, b, c.options.clone().into()),
            M::Conv3d(c) => Dispatch::conv3d(x, w, b, c.options.clone().into()),
            M::ConvTranspose1d(c) => Dispatch::conv_transpose1d(x, w, b, c.options.clone().into()),
            M::ConvTranspose2d(c) => Dispatch::conv_transpose2d(x, w, b, c.options.clone().into()),
            M::ConvTranspose3d(c) => Dispatch::conv_transpose3d(x, w, b, c.options.clone().into()),
            _ => return Err(e.refuse()),
        })
    }

    /// A conv computes `in/groups x kernel` MACs per output element; a transposed conv spreads
    /// each input element over `out/groups x kernel` outputs.
    fn cost(&self, _: &ParamViews) -> OpCost {
        let per = self.weight.shape.as_slice()[1..].iter().product::<usize>() as u64;
        let spread = if self.transposed { self.x } else { self.out };
        let macs = numel(spread) * per;
        OpCost {
            macs,
            ..OpCost::row(self.kind.as_str(), Row::Default, self.x, self.out, macs)
        }
    }

    fn onnx(&self, w: &mut OnnxWriter<'_>) -> Result<()> {
        let ints = Attr::ints;
        // (op, stride, per-axis padding, dilation, groups, output_padding). Conv1d and Conv2d
        // options are different burn-ir types with the same fields.
        macro_rules! conv {
            ($o:expr) => {
                (
                    "Conv",
                    &$o.stride[..],
                    $o.padding.to_vec(),
                    &$o.dilation[..],
                    $o.groups,
                    None,
                )
            };
        }
        let (op, stride, padding, dilation, groups, output_padding) = match self.ir {
            M::Conv1d(c) => conv!(c.options),
            M::Conv2d(c) => conv!(c.options),
            M::ConvTranspose2d(c) => {
                let o = &c.options;
                let padding = o.padding.map(|p| (p, p)).to_vec();
                let out = Some(&o.padding_out[..]);
                let stride = &o.stride[..];
                (
                    "ConvTranspose",
                    stride,
                    padding,
                    &o.dilation[..],
                    o.groups,
                    out,
                )
            }
            _ => return Err(w.unmapped()),
        };
        let mut attrs = vec![
            ("strides", ints(stride)),
            ("pads", Attr::pads(&padding)),
            ("dilations", ints(dilation)),
        ];
        attrs.extend(output_padding.map(|p| ("output_padding", ints(p))));
        attrs.push(("group", Attr::Int(groups as i64)));
        let mut inputs = vec![self.x, self.weight];
        inputs.extend(self.bias);
        w.simple(op, &inputs, self.out, attrs)
    }

    fn layer_call(&self, views: &ParamViews) -> Option<LayerCall> {
        let w = views.path(self.weight)?;
        Some(call(self.kind, w, self.x, self.out, self.weight, self.bias))
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::conv::{Conv1dConfig, Conv2dConfig, ConvTranspose2dConfig};
    use burn::prelude::*;

    use crate::ops::testing::{groups_of, macs};

    #[test]
    fn a_conv_couples_its_output_channels_with_its_bias_and_the_next_layers_input() {
        #[derive(Module, Debug)]
        struct Net {
            a: burn::nn::conv::Conv2d,
            b: burn::nn::conv::Conv2d,
        }
        let d = Device::flex();
        let net = Net {
            a: Conv2dConfig::new([2, 4], [3, 3]).init(&d),
            b: Conv2dConfig::new([4, 5], [1, 1]).init(&d),
        };
        let groups = groups_of(&net, |m, d| {
            m.b.forward(m.a.forward(Tensor::zeros([1, 2, 6, 6], d)))
        });
        assert!(groups.contains(&vec![
            ("a.bias".into(), 0),
            ("a.weight".into(), 0),
            ("b.weight".into(), 1)
        ]));
        assert_eq!(groups.len(), 2, "{groups:?}");
    }

    #[test]
    fn conv_macs_are_output_elements_times_the_kernel_volume() {
        let d = Device::flex();
        let c = Conv1dConfig::new(3, 4, 5).init(&d);
        // out [2, 4, 6] x (3 x 5).
        assert_eq!(
            macs(&c, |m, d| m.forward(Tensor::zeros([2, 3, 10], d))),
            48 * 15
        );
    }

    #[test]
    fn transposed_conv_macs_are_input_elements_times_the_kernel_volume() {
        let d = Device::flex();
        let c = ConvTranspose2dConfig::new([3, 4], [2, 2]).init(&d);
        // in [1, 3, 5, 5] x (4 x 2 x 2); its output channels sit on weight axis 1.
        assert_eq!(
            macs(&c, |m, d| m.forward(Tensor::zeros([1, 3, 5, 5], d))),
            75 * 16
        );
        let groups = groups_of(&c, |m, d| m.forward(Tensor::zeros([1, 3, 5, 5], d)));
        assert_eq!(groups, vec![vec![("bias".into(), 0), ("weight".into(), 1)]]);
    }
}
