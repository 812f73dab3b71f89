//! Shape ops: reshape, swap_dims, permute, expand (which also carry parameter views: a
//! Linear's bias reshaped to `[1, out]`), slice, cat, cast, and tensor creation (zeros, ones,
//! empty, full), whose outputs are constants.
//!
//! A reshape that splits the channel axis into `[heads, head_dim]` (attention) is a head-group
//! rule: each head's channels join one class and the channels continue on the heads axis; a
//! reshape that merges the heads axis with trailing dims (`[b, s, h, hd] -> [b, s, h * hd]`, or
//! GQA's `[b, kvh, g, s, hd] -> [b, kvh * g, s, hd]` after an expand) maps each output channel
//! back to its head.

use burn_backend::ops::{FloatTensorOps, IntTensorOps};
use burn_dispatch::{Dispatch, DispatchTensor};
use burn_ir::{BaseOperationIr as Base, NumericOperationIr as N, OperationIr, TensorId, TensorIr};

use super::{Exec, OpRule};
use crate::Result;
use crate::onnx::{Attr, OnnxWriter};
use crate::rules::{Analysis, Map, Value};
use crate::views::{ParamView, ParamViews};

type B = Dispatch;

/// A shape op.
pub(crate) enum Shape<'a> {
    Reshape(&'a burn_ir::ShapeOpIr),
    SwapDims(&'a burn_ir::SwapDimsOpIr),
    Permute(&'a burn_ir::PermuteOpIr),
    Expand(&'a burn_ir::ShapeOpIr),
    Slice(&'a burn_ir::SliceOpIr),
    Cat(&'a burn_ir::CatOpIr),
    Cast(&'a burn_ir::CastOpIr),
    /// Zeros, ones, empty, full: a constant.
    Create(&'a OperationIr, &'a TensorIr),
    /// A reshape of an integer tensor (token positions).
    IntReshape(&'a burn_ir::ShapeOpIr),
    /// `repeat_dim` of a float or integer tensor.
    Repeat(&'a burn_ir::RepeatDimOpIr, bool),
}

impl<'a> Shape<'a> {
    pub fn of(op: &'a OperationIr) -> Option<Self> {
        Some(match op {
            OperationIr::BaseFloat(b) => match b {
                Base::Reshape(s) => Shape::Reshape(s),
                Base::SwapDims(s) => Shape::SwapDims(s),
                Base::Permute(p) => Shape::Permute(p),
                Base::Expand(s) => Shape::Expand(s),
                Base::Slice(s) => Shape::Slice(s),
                Base::Cat(c) => Shape::Cat(c),
                Base::Cast(c) => Shape::Cast(c),
                Base::Zeros(c) | Base::Ones(c) | Base::Empty(c) => Shape::Create(op, &c.out),
                Base::RepeatDim(r) => Shape::Repeat(r, true),
                _ => return None,
            },
            OperationIr::BaseInt(b) => match b {
                Base::Reshape(s) => Shape::IntReshape(s),
                Base::RepeatDim(r) => Shape::Repeat(r, false),
                // Token-type ids (BERT's `zeros_like(ids)`).
                Base::Zeros(c) | Base::Ones(c) => Shape::Create(op, &c.out),
                _ => return None,
            },
            OperationIr::NumericFloat(_, N::Full(f)) => Shape::Create(op, &f.out),
            _ => return None,
        })
    }
}

impl OpRule for Shape<'_> {
    fn channels(&self, a: &mut Analysis, _: usize, _: &OperationIr) -> Result<()> {
        match self {
            Shape::Reshape(s) => reshape(a, &s.input, &s.out),
            Shape::SwapDims(s) => {
                let mut axes: Vec<usize> = (0..s.input.shape.num_dims()).collect();
                axes.swap(s.dim1, s.dim2);
                permute(a, &s.input, &s.out, &axes);
            }
            Shape::Permute(p) => permute(a, &p.input, &p.out, &p.axes),
            Shape::Expand(s) => {
                if !matches!(a.value(&s.input), Value::Param { .. }) {
                    let shift = s.out.shape.num_dims() - s.input.shape.num_dims();
                    let v = a.map(&s.input).map(|m| Map {
                        axis: m.axis + shift,
                        slots: m.slots,
                    });
                    a.set(&s.out, Value::Act(v));
                }
            }
            Shape::Slice(s) => slice(a, s),
            Shape::Cat(c) => cat(a, c),
            Shape::Cast(c) => a.pass(&c.input, &c.out),
            Shape::Create(_, out) => a.set(out, Value::Const),
            Shape::IntReshape(s) => a.pass(&s.input, &s.out),
            Shape::Repeat(r, _) => {
                let m = a.map(&r.tensor);
                if m.as_ref().is_some_and(|m| m.axis == r.dim) {
                    a.pin_map(&m, "repeated along its channel axis".into());
                }
                a.pass(&r.tensor, &r.out)
            }
        }
        Ok(())
    }

    fn execute(&self, e: &Exec<'_>) -> Result<DispatchTensor> {
        let device = e.device.as_dispatch();
        Ok(match self {
            Shape::Reshape(d) => B::float_reshape(e.get(&d.input)?, d.out.shape.clone()),
            Shape::IntReshape(d) => B::int_reshape(e.get(&d.input)?, d.out.shape.clone()),
            Shape::Repeat(r, true) => B::float_repeat_dim(e.get(&r.tensor)?, r.dim, r.times),
            Shape::Repeat(r, false) => B::int_repeat_dim(e.get(&r.tensor)?, r.dim, r.times),
            Shape::SwapDims(d) => B::float_swap_dims(e.get(&d.input)?, d.dim1, d.dim2),
            Shape::Permute(d) => B::float_permute(e.get(&d.input)?, &d.axes),
            Shape::Expand(d) => B::float_expand(e.get(&d.input)?, d.out.shape.clone()),
            Shape::Slice(d) => B::float_slice(e.get(&d.tensor)?, &d.ranges),
            Shape::Cat(d) => {
                let ts = d
                    .tensors
                    .iter()
                    .map(|t| e.get(t))
                    .collect::<Result<Vec<_>>>()?;
                B::float_cat(ts, d.dim)
            }
            Shape::Cast(d) => B::float_cast(e.get(&d.input)?, d.out.dtype.into()),
            Shape::Create(op, out) => {
                let (shape, dtype) = (out.shape.clone(), out.dtype.into());
                match op {
                    OperationIr::BaseFloat(Base::Zeros(_)) => B::float_zeros(shape, device, dtype),
                    OperationIr::BaseFloat(Base::Ones(_)) => B::float_ones(shape, device, dtype),
                    OperationIr::BaseFloat(Base::Empty(_)) => B::float_empty(shape, device, dtype),
                    OperationIr::BaseInt(Base::Zeros(_)) => {
                        B::int_zeros(shape, device, out.dtype.into())
                    }
                    OperationIr::BaseInt(Base::Ones(_)) => {
                        B::int_ones(shape, device, out.dtype.into())
                    }
                    OperationIr::NumericFloat(_, N::Full(f)) => {
                        B::float_full(shape, f.value.into(), device, dtype)
                    }
                    _ => return Err(e.refuse()),
                }
            }
        })
    }

    /// Reshape (a batch-carrying input writes `-1` for the first dimension), `Transpose`,
    /// `Expand` (1 on the batch axis), `Slice`, `Concat`, `Cast`, constants as initializers, and
    /// `repeat_dim` as `Tile`, or, for a constant repeated to the capture's batch size, an
    /// `Expand` to the run-time batch.
    fn onnx(&self, w: &mut OnnxWriter<'_>) -> Result<()> {
        let dims =
            |t: &TensorIr| -> Vec<i64> { t.shape.as_slice().iter().map(|&d| d as i64).collect() };
        let perm = |v: Vec<usize>| Attr::Ints(v.into_iter().map(|a| a as i64).collect());
        match self {
            Shape::Reshape(s) | Shape::IntReshape(s) => {
                let mut shape = dims(&s.out);
                if w.dynamic_batch() && w.is_batched(&s.input) && !shape.is_empty() {
                    shape[0] = -1;
                }
                let (x, shape) = (w.input(&s.input)?, w.const_i64(&shape));
                let out = w.output(&s.out);
                w.node("Reshape", vec![x, shape], vec![out], vec![]);
                Ok(())
            }
            Shape::SwapDims(s) => {
                let mut axes: Vec<usize> = (0..s.input.shape.num_dims()).collect();
                axes.swap(s.dim1, s.dim2);
                w.simple("Transpose", &[&s.input], &s.out, vec![("perm", perm(axes))])
            }
            Shape::Permute(p) => w.simple(
                "Transpose",
                &[&p.input],
                &p.out,
                vec![("perm", perm(p.axes.clone()))],
            ),
            Shape::Expand(s) => {
                let mut shape = dims(&s.out);
                if w.dynamic_batch() && w.is_batched(&s.input) {
                    shape[s.out.shape.num_dims() - s.input.shape.num_dims()] = 1;
                }
                let (x, shape) = (w.input(&s.input)?, w.const_i64(&shape));
                let out = w.output(&s.out);
                w.node("Expand", vec![x, shape], vec![out], vec![]);
                Ok(())
            }
            Shape::Slice(s) => {
                let (mut starts, mut ends, mut axes, mut steps) = (vec![], vec![], vec![], vec![]);
                let batched = w.dynamic_batch() && w.is_batched(&s.tensor);
                for (a, r) in s.ranges.iter().enumerate() {
                    if r.step < 1 {
                        return Err(w.unmapped());
                    }
                    let len = s.tensor.shape[a] as isize;
                    let end = r.end.unwrap_or(len);
                    let full = r.start == 0 && (end == len || end == isize::MAX) && r.step == 1;
                    if full {
                        continue;
                    }
                    if a == 0 && batched {
                        return Err(w.unmapped());
                    }
                    starts.push(r.start as i64);
                    ends.push(end as i64);
                    axes.push(a as i64);
                    steps.push(r.step as i64);
                }
                let x = w.input(&s.tensor)?;
                let out = w.output(&s.out);
                if axes.is_empty() {
                    w.node("Identity", vec![x], vec![out], vec![]);
                    return Ok(());
                }
                let inputs = vec![
                    x,
                    w.const_i64(&starts),
                    w.const_i64(&ends),
                    w.const_i64(&axes),
                    w.const_i64(&steps),
                ];
                w.node("Slice", inputs, vec![out], vec![]);
                Ok(())
            }
            Shape::Cat(c) => {
                let ts: Vec<&TensorIr> = c.tensors.iter().collect();
                w.simple(
                    "Concat",
                    &ts,
                    &c.out,
                    vec![("axis", Attr::Int(c.dim as i64))],
                )
            }
            Shape::Cast(c) => {
                let to = if c.out.dtype.is_float() {
                    1
                } else if c.out.dtype.is_bool() {
                    9
                } else {
                    7
                };
                w.simple("Cast", &[&c.input], &c.out, vec![("to", Attr::Int(to))])
            }
            Shape::Create(op, out) => {
                let value = match op {
                    OperationIr::NumericFloat(_, N::Full(f)) => f.value.elem::<f64>(),
                    OperationIr::BaseFloat(Base::Ones(_)) | OperationIr::BaseInt(Base::Ones(_)) => {
                        1.0
                    }
                    _ => 0.0,
                };
                w.filled(out, value)
            }
            Shape::Repeat(r, _) => {
                let ins = r.tensor.shape.as_slice();
                let to_batch = w.dynamic_batch()
                    && !w.is_batched(&r.tensor)
                    && r.dim == 0
                    && ins[0] == 1
                    && r.times == w.capture_batch();
                let x = w.input(&r.tensor)?;
                let out = w.output(&r.out);
                if to_batch {
                    let batch = w.batch_dim();
                    let rest: Vec<i64> = ins[1..].iter().map(|&d| d as i64).collect();
                    let rest = w.const_i64(&rest);
                    let shape = format!("{out}_shape");
                    w.node(
                        "Concat",
                        vec![batch, rest],
                        vec![shape.clone()],
                        vec![("axis", Attr::Int(0))],
                    );
                    w.node("Expand", vec![x, shape], vec![out], vec![]);
                    w.set_batched(&r.out);
                } else {
                    let mut reps = vec![1i64; ins.len()];
                    reps[r.dim] = r.times as i64;
                    let reps = w.const_i64(&reps);
                    w.node("Tile", vec![x, reps], vec![out], vec![]);
                }
                Ok(())
            }
        }
    }

    /// Reshapes of parameters only add or drop unit dims (a Linear's bias to `[1, out]`);
    /// expands add leading or broadcast dims; swaps and permutes move the parameter's axes.
    fn param_view(&self, views: &ParamViews) -> Option<(TensorId, ParamView)> {
        let (input, out) = match self {
            Shape::Reshape(s) | Shape::Expand(s) => (&s.input, &s.out),
            Shape::SwapDims(s) => (&s.input, &s.out),
            Shape::Permute(p) => (&p.input, &p.out),
            _ => return None,
        };
        let ParamView { path, axes } = views.get(input)?.clone();
        let axes = match self {
            Shape::SwapDims(s) => {
                let mut axes = axes;
                axes.swap(s.dim1, s.dim2);
                axes
            }
            Shape::Permute(p) => p
                .axes
                .iter()
                .map(|&a| axes.get(a).copied().flatten())
                .collect(),
            Shape::Expand(_) => {
                let shift = out.shape.num_dims() - input.shape.num_dims();
                let ins = input.shape.as_slice();
                (0..out.shape.num_dims())
                    .map(|o| {
                        let i = o.checked_sub(shift)?;
                        (ins[i] == out.shape[o]).then_some(axes[i]).flatten()
                    })
                    .collect()
            }
            _ => reshape_axes(input.shape.as_slice(), out.shape.as_slice(), &axes),
        };
        Some((out.id, ParamView { path, axes }))
    }
}

/// The parameter axes of a reshaped parameter view: kept when only unit dims change.
fn reshape_axes(ins: &[usize], outs: &[usize], axes: &[Option<usize>]) -> Vec<Option<usize>> {
    let real_in: Vec<(usize, Option<usize>)> = ins
        .iter()
        .zip(axes)
        .filter(|(d, _)| **d != 1)
        .map(|(d, a)| (*d, *a))
        .collect();
    let real_out = outs.iter().copied().filter(|&d| d != 1);
    if !real_in.iter().map(|(d, _)| *d).eq(real_out) {
        return vec![None; outs.len()];
    }
    let mut it = real_in.into_iter();
    outs.iter()
        .map(|&d| {
            if d == 1 {
                None
            } else {
                it.next().and_then(|(_, a)| a)
            }
        })
        .collect()
}

fn permute(a: &mut Analysis, input: &TensorIr, out: &TensorIr, axes: &[usize]) {
    let v = match a.value(input) {
        Value::Act(Some(m)) => {
            let axis = axes.iter().position(|&a| a == m.axis).unwrap_or(m.axis);
            Value::Act(Some(Map {
                axis,
                slots: m.slots,
            }))
        }
        // A parameter's view is the table's (`param_view`).
        Value::Param { .. } => return,
        other => other,
    };
    a.set(out, v);
}

fn reshape(a: &mut Analysis, input: &TensorIr, out: &TensorIr) {
    let (ins, outs) = (input.shape.to_vec(), out.shape.to_vec());
    match a.value(input) {
        // A parameter's view is the table's (`param_view`).
        Value::Param { .. } => {}
        Value::Act(Some(m)) => {
            let prefix: usize = ins[..m.axis].iter().product();
            let len = ins[m.axis];
            // Output axes whose leading product equals the channel axis' prefix are the
            // candidates; unit dims (a batch of 1) are skipped unless the axis has one channel.
            let mut acc = 1usize;
            let mut mapped = None;
            for (b, &ob) in outs.iter().enumerate() {
                if acc == prefix && (ob != 1 || len == 1) {
                    let merged = (m.axis + 1..=ins.len())
                        .any(|k| ins[m.axis..k].iter().product::<usize>() == ob);
                    if merged {
                        // Merged with trailing dims (flatten): `ob / len` consecutive entries per channel.
                        let per = ob / len;
                        mapped = Some(Map {
                            axis: b,
                            slots: (0..ob).map(|j| m.slots[j / per]).collect(),
                        });
                    } else if len % ob == 0 {
                        // Split (`[.., h * hd] -> [.., h, hd, ..]`): every element of channel
                        // `c` lands in row `c / per` of axis `b`, and each row holds whole runs
                        // of `per` channels. A run is one head: its slots join one class, so
                        // it leaves whole (rows of axis `b`) or stays.
                        let per = len / ob;
                        let uniform = m.slots.chunks(per).all(|c| c.iter().all(|&s| s == c[0]));
                        let slots = if uniform {
                            m.slots.iter().step_by(per).copied().collect()
                        } else {
                            a.join_heads(&m.slots, per)
                        };
                        mapped = Some(Map { axis: b, slots });
                    }
                    break;
                }
                acc *= ob;
                if acc > prefix {
                    break;
                }
            }
            if mapped.is_none() {
                a.pin_map(&Some(m), "a reshape splits the channel axis".into());
            }
            a.set(out, Value::Act(mapped));
        }
        other => a.set(out, other),
    }
}

fn slice(a: &mut Analysis, s: &burn_ir::SliceOpIr) {
    let v = match a.map(&s.tensor) {
        Some(m) => match s.ranges.get(m.axis) {
            Some(r) if r.step == 1 => {
                let len = m.slots.len() as isize;
                let start =
                    if r.start < 0 { len + r.start } else { r.start }.clamp(0, len) as usize;
                let end = match r.end {
                    Some(e) if e < 0 => (len + e).max(0) as usize,
                    Some(e) => e.min(len) as usize,
                    None => len as usize,
                };
                Some(Map {
                    axis: m.axis,
                    slots: m.slots[start..end.max(start)].to_vec(),
                })
            }
            Some(_) => {
                a.pin_map(&Some(m), "a strided slice of the channel axis".into());
                None
            }
            None => Some(m),
        },
        None => None,
    };
    let is_act = matches!(a.value(&s.tensor), Value::Act(_));
    a.set(&s.out, if is_act { Value::Act(v) } else { Value::Const });
}

fn cat(a: &mut Analysis, c: &burn_ir::CatOpIr) {
    let maps: Vec<Option<Map>> = c.tensors.iter().map(|t| a.map(t)).collect();
    if maps.iter().all(Option::is_none) {
        let act = c
            .tensors
            .iter()
            .any(|t| matches!(a.value(t), Value::Act(_)));
        a.set(&c.out, if act { Value::Act(None) } else { Value::Const });
        return;
    }
    let on_dim = maps.iter().flatten().all(|m| m.axis == c.dim);
    let v = if on_dim {
        // Offsets: the output's channels are the inputs' channels in order; inputs without
        // prunable channels contribute pinned slots.
        let mut slots = Vec::new();
        for (t, m) in c.tensors.iter().zip(&maps) {
            match m {
                Some(m) => slots.extend(&m.slots),
                None => {
                    let fresh: Vec<usize> = (0..t.shape[c.dim]).map(|_| a.new_slot()).collect();
                    let map = Some(Map {
                        axis: c.dim,
                        slots: fresh.clone(),
                    });
                    a.pin_map(&map, "concatenated constant channels".into());
                    slots.extend(fresh);
                }
            }
        }
        Some(Map { axis: c.dim, slots })
    } else {
        // Concatenating along another axis couples the inputs' channels.
        let present: Vec<Map> = maps.into_iter().flatten().collect();
        let first = present[0].clone();
        for m in &present[1..] {
            if m.axis == first.axis && m.slots.len() == first.slots.len() {
                for (&l, &r) in first.slots.iter().zip(&m.slots) {
                    a.union(l, r);
                }
            } else {
                a.pin_map(
                    &Some(m.clone()),
                    "concatenated with channels on another axis".into(),
                );
            }
        }
        Some(first)
    };
    a.set(&c.out, Value::Act(v));
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::nn::conv::Conv2dConfig;
    use burn::prelude::*;

    use crate::ops::testing::{groups_of, pins_of};

    #[derive(Module, Debug)]
    struct ConvFc {
        conv: burn::nn::conv::Conv2d,
        fc: burn::nn::Linear,
    }

    impl ConvFc {
        /// A 1x1 conv (1 -> 3 channels), then a `Linear(fc_in -> 2)`.
        fn new(fc_in: usize, d: &Device) -> Self {
            Self {
                conv: Conv2dConfig::new([1, 3], [1, 1]).init(d),
                fc: LinearConfig::new(fc_in, 2).init(d),
            }
        }
    }

    #[test]
    fn a_flatten_maps_each_channel_to_its_block_of_features_of_the_next_linear() {
        let d = Device::flex();
        let m = ConvFc::new(12, &d);
        let groups = groups_of(&m, |m, d| {
            m.fc.forward(
                m.conv
                    .forward(Tensor::<4>::zeros([1, 1, 2, 2], d))
                    .reshape([1, 12]),
            )
        });
        assert!(groups[0].contains(&("fc.weight".into(), 0)), "{groups:?}");
    }

    #[test]
    fn a_head_split_joins_each_heads_channels_and_merging_the_heads_back_maps_them_per_head() {
        let d = Device::flex();
        // fc: 2 -> 6 features = 3 heads of 2; `[1, 2, 6] -> [1, 2, 3, 2]`, swap, and back.
        let m = ConvFc::new(2, &d);
        let m = ConvFc {
            conv: m.conv,
            fc: LinearConfig::new(2, 6).init(&d),
        };
        let graph = crate::capture(&m, |m, d| {
            let h = m.fc.forward(Tensor::<3>::zeros([1, 2, 2], d));
            let heads = h.reshape([1, 2, 3, 2]).swap_dims(1, 2);
            heads.swap_dims(1, 2).reshape([1, 2, 6])
        })
        .unwrap();
        let mut a = crate::Analysis::run(&graph).unwrap();
        assert_eq!(a.head_splits.len(), 1);
        let split = a.head_splits[0].clone();
        assert_eq!(
            (split.layer.as_str(), split.heads, split.head_dim),
            ("fc", 3, 2)
        );
        let classes = a.classes();
        let with_members: Vec<_> = classes.iter().filter(|c| !c.members.is_empty()).collect();
        assert_eq!(with_members.len(), 3, "one class per head");
        let cols: Vec<usize> = with_members[1]
            .members
            .iter()
            .filter(|m| m.param == "fc.weight")
            .map(|m| m.index)
            .collect();
        assert_eq!(cols, [2, 3]);
        assert!(classes.iter().all(|c| c.pins.is_empty()));
    }

    #[test]
    fn a_cat_of_two_convs_offsets_the_second_and_a_strided_slice_pins() {
        let d = Device::flex();
        let m = ConvFc::new(6, &d);
        let f = |m: &ConvFc, d: &Device| {
            let h = m.conv.forward(Tensor::<4>::zeros([1, 1, 1, 1], d));
            let h = Tensor::cat(vec![h.clone(), h], 1).reshape([1, 6]);
            m.fc.forward(h)
        };
        assert!(groups_of(&m, f)[0].contains(&("fc.weight".into(), 0)));
        let pins = pins_of(&m, |m, d| {
            m.conv
                .forward(Tensor::<4>::zeros([1, 1, 1, 1], d))
                .slice(s![.., 0..3;2])
        });
        assert!(
            pins.contains("a strided slice of the channel axis"),
            "{pins:?}"
        );
    }
}
