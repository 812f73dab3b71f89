//! Pooling and resizing: max/avg pooling 1d/2d, adaptive average pooling 1d/2d/3d and
//! interpolation. Channels pass through unchanged.

use burn_backend::ops::ModuleOps;
use burn_dispatch::{Dispatch, DispatchTensor};
use burn_ir::{ModuleOperationIr as M, OperationIr, TensorIr};

use super::{Exec, OpCost, OpRule, Row, numel};
use crate::Result;
use crate::onnx::{Attr, OnnxWriter};
use crate::rules::Analysis;
use crate::views::ParamViews;

/// A pooling or resizing op.
pub(crate) struct Pool<'a> {
    kind: &'static str,
    x: &'a TensorIr,
    out: &'a TensorIr,
    /// Input elements read per output element (NNI's full-mode FLOPs per output).
    window: u64,
    ir: &'a M,
}

impl<'a> Pool<'a> {
    pub fn of(op: &'a OperationIr) -> Option<Self> {
        let OperationIr::Module(m) = op else {
            return None;
        };
        let adaptive = |x: &TensorIr, out: &TensorIr| numel(x) / numel(out).max(1);
        let (kind, x, out, window) = match m {
            M::MaxPool1d(p) => ("MaxPool1d", &p.x, &p.out, p.kernel_size as u64),
            M::MaxPool2d(p) => (
                "MaxPool2d",
                &p.x,
                &p.out,
                (p.kernel_size[0] * p.kernel_size[1]) as u64,
            ),
            M::AvgPool1d(p) => ("AvgPool1d", &p.x, &p.out, p.kernel_size as u64),
            M::AvgPool2d(p) => (
                "AvgPool2d",
                &p.x,
                &p.out,
                (p.kernel_size[0] * p.kernel_size[1]) as u64,
            ),
            M::AdaptiveAvgPool1d(p) => ("AdaptiveAvgPool1d", &p.x, &p.out, adaptive(&p.x, &p.out)),
            M::AdaptiveAvgPool2d(p) => ("AdaptiveAvgPool2d", &p.x, &p.out, adaptive(&p.x, &p.out)),
            M::AdaptiveAvgPool3d(p) => ("AdaptiveAvgPool3d", &p.x, &p.out, adaptive(&p.x, &p.out)),
            M::Interpolate(p) => ("Interpolate", &p.x, &p.out, 0),
            _ => return None,
        };
        Some(Self {
            kind,
            x,
            out,
            window,
            ir: m,
        })
    }
}

impl OpRule for Pool<'_> {
    fn channels(&self, a: &mut Analysis, _: usize, _: &OperationIr) -> Result<()> {
        a.pass(self.x, self.out);
        Ok(())
    }

    fn execute(&self, e: &Exec<'_>) -> Result<DispatchTensor> {
        let x = e.get(self.x)?;
        Ok(match self.ir {
            M::MaxPool1d(p) => Dispatch::max_pool1d(
                x,
                p.kernel_size,
                p.stride,
                p.padding,
                p.dilation,
                p.ceil_mode,
            ),
            M::MaxPool2d(p) => Dispatch::max_pool2d(
                x,
                p.kernel_size,
                p.stride,
                p.padding,
                p.dilation,
                p.ceil_mode,
            ),
            M::AvgPool1d(p) => Dispatch::avg_pool1d(
                x,
                p.kernel_size,
                p.stride,
                p.padding,
                p.count_include_pad,
                p.ceil_mode,
            ),
            M::AvgPool2d(p) => Dispatch::avg_pool2d(
                x,
                p.kernel_size,
                p.stride,
                p.padding,
                p.count_include_pad,
                p.ceil_mode,
            ),
            M::AdaptiveAvgPool1d(p) => Dispatch::adaptive_avg_pool1d(x, p.output_size),
            M::AdaptiveAvgPool2d(p) => Dispatch::adaptive_avg_pool2d(x, p.output_size),
            M::AdaptiveAvgPool3d(p) => Dispatch::adaptive_avg_pool3d(x, p.output_size),
            M::Interpolate(p) => Dispatch::interpolate(x, p.output_size, p.options.clone().into()),
            _ => return Err(e.refuse()),
        })
    }

    /// NNI's full mode: one FLOP per window element per output; interpolation is not counted.
    fn cost(&self, _: &ParamViews) -> OpCost {
        let row = if self.window == 0 {
            Row::None
        } else {
            Row::Full
        };
        OpCost::row(
            self.kind,
            row,
            self.x,
            self.out,
            numel(self.out) * self.window,
        )
    }

    /// Max/avg pooling as `MaxPool`/`AveragePool`; adaptive average pooling to 1 as
    /// `GlobalAveragePool`, to a size that divides the input as an `AveragePool`; interpolation
    /// has no mapping yet.
    fn onnx(&self, w: &mut OnnxWriter<'_>) -> Result<()> {
        let ints = Attr::ints;
        let flag = |b: bool| Attr::Int(b as i64);
        let sym = |p: &[usize]| Attr::pads(&p.iter().map(|&p| (p, p)).collect::<Vec<_>>());
        let x = &[self.x];
        // (op, kernel, stride, padding, the op's own attribute, ceil_mode)
        let (op, kernel, stride, padding, own, ceil_mode) = match self.ir {
            M::MaxPool1d(p) => (
                "MaxPool",
                vec![p.kernel_size],
                vec![p.stride],
                vec![p.padding],
                ("dilations", ints(&[p.dilation])),
                p.ceil_mode,
            ),
            M::MaxPool2d(p) => (
                "MaxPool",
                p.kernel_size.to_vec(),
                p.stride.to_vec(),
                p.padding.to_vec(),
                ("dilations", ints(&p.dilation)),
                p.ceil_mode,
            ),
            M::AvgPool1d(p) => (
                "AveragePool",
                vec![p.kernel_size],
                vec![p.stride],
                vec![p.padding],
                ("count_include_pad", flag(p.count_include_pad)),
                p.ceil_mode,
            ),
            M::AvgPool2d(p) => (
                "AveragePool",
                p.kernel_size.to_vec(),
                p.stride.to_vec(),
                p.padding.to_vec(),
                ("count_include_pad", flag(p.count_include_pad)),
                p.ceil_mode,
            ),
            M::AdaptiveAvgPool1d(_) | M::AdaptiveAvgPool2d(_) | M::AdaptiveAvgPool3d(_) => {
                let (xs, os) = (
                    &self.x.shape.as_slice()[2..],
                    &self.out.shape.as_slice()[2..],
                );
                if os.iter().all(|&o| o == 1) {
                    return w.simple("GlobalAveragePool", x, self.out, vec![]);
                }
                if xs.iter().zip(os).any(|(&i, &o)| o == 0 || i % o != 0) {
                    return Err(w.unmapped());
                }
                let k: Vec<usize> = xs.iter().zip(os).map(|(&i, &o)| i / o).collect();
                return w.simple(
                    "AveragePool",
                    x,
                    self.out,
                    vec![("kernel_shape", ints(&k)), ("strides", ints(&k))],
                );
            }
            _ => return Err(w.unmapped()),
        };
        let attrs = vec![
            ("kernel_shape", ints(&kernel)),
            ("strides", ints(&stride)),
            ("pads", sym(&padding)),
            own,
            ("ceil_mode", flag(ceil_mode)),
        ];
        w.simple(op, x, self.out, attrs)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::prelude::*;

    use crate::ops::testing::{full_rows, groups_of};

    #[derive(Module, Debug)]
    struct ConvPool {
        a: burn::nn::conv::Conv2d,
        pool: burn::nn::pool::MaxPool2d,
        b: burn::nn::conv::Conv2d,
    }

    #[test]
    fn pooling_passes_channels_through_and_counts_its_window_in_full_mode() {
        let d = Device::flex();
        let m = ConvPool {
            a: Conv2dConfig::new([1, 3], [1, 1]).init(&d),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            b: Conv2dConfig::new([3, 2], [1, 1]).init(&d),
        };
        let f = |m: &ConvPool, d: &Device| {
            m.b.forward(
                m.pool
                    .forward(m.a.forward(Tensor::<4>::zeros([1, 1, 4, 4], d))),
            )
        };
        assert!(groups_of(&m, f)[0].contains(&("b.weight".into(), 1)));
        let rows = full_rows(&m, f);
        let pool = rows.iter().find(|r| r.module_type == "MaxPool2d").unwrap();
        assert_eq!(pool.flops, 12 * 4);
    }
}
