//! Fake quantization (quantize, then dequantize): NNI's `ClampRound` and `QATClampRound`, on
//! host data and on Burn tensors.

use burn::tensor::{Int, Tensor, TensorData};

use crate::params::{quant_bounds, torch_clamp};
use compress_core::config::QuantDtype;
use compress_core::dense::strides;
use compress_core::{CompressError, Dense, Result};

/// How gradients cross [`fake_quant`] (rounding has no useful gradient of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FakeQuantGrad {
    /// Straight-through estimator: the gradient passes unchanged (NNI's `clamp_round`, used by
    /// `PtqQuantizer`).
    #[default]
    Ste,
    /// The gradient is zeroed where `zero_point + x / scale` falls outside `[qmin, qmax]`
    /// (strictly below `qmin` or above `qmax`), and passes unchanged elsewhere (NNI's
    /// `qat_clamp_round`, used by `QATQuantizer`).
    Clipped,
}

/// For every dim of `shape`, how many consecutive elements share one value of a parameter of
/// shape `param` (right-aligned, leading dims padded with 1); `None` when `param` does not fit.
fn block_sizes(param: &[usize], shape: &[usize]) -> Option<Vec<usize>> {
    if param.len() > shape.len() {
        return None;
    }
    let padded: Vec<usize> = std::iter::repeat_n(1, shape.len() - param.len())
        .chain(param.iter().copied())
        .collect();
    padded
        .iter()
        .zip(shape)
        .map(|(&p, &n)| (p > 0 && n.is_multiple_of(p)).then(|| n / p))
        .collect()
}

/// For each element of a tensor of `shape` (row-major), the flat index of its value in a
/// parameter of shape `param` (`param` in the kept-dim block shape of a granularity, or any
/// shape that broadcasts: `[]`, trailing dims, size-1 dims).
fn param_index(
    param: &[usize],
    shape: &[usize],
    path: &str,
    key: &'static str,
) -> Result<impl Iterator<Item = usize>> {
    let blocks = block_sizes(param, shape).ok_or_else(|| CompressError::QuantShape {
        path: path.to_string(),
        key,
        found: param.to_vec(),
        tensor: shape.to_vec(),
        reason: "each of its dims (right-aligned) must divide the tensor's".into(),
    })?;
    let rank = shape.len();
    let kept: Vec<usize> = shape.iter().zip(&blocks).map(|(n, b)| n / b).collect();
    let kept_strides = strides(&kept);
    let numel: usize = shape.iter().product();
    let shape = shape.to_vec();
    let mut coord = vec![0usize; rank];
    let mut index = 0usize;
    Ok((0..numel).map(move |_| {
        let here = index;
        for d in (0..rank).rev() {
            coord[d] += 1;
            if coord[d] < shape[d] {
                if coord[d].is_multiple_of(blocks[d]) {
                    index += kept_strides[d];
                }
                break;
            }
            // Wrapped: back to the first block of this dim.
            index -= kept_strides[d] * (kept[d] - 1);
            coord[d] = 0;
        }
        here
    }))
}

/// A quantization parameter given per block, repeated over its blocks: a tensor of `shape`.
///
/// `param` is in the kept-dim shape of a granularity (each dim divides the tensor's), or any
/// shape that broadcasts (`[]` for per-tensor). Use it to build the `scale` / `zero_point`
/// tensors of [`fake_quant`] for block granularities.
///
/// # Errors
/// [`CompressError::QuantShape`] when `param` does not fit `shape`.
pub fn broadcast_qparam(
    param: &Dense<f32>,
    shape: &[usize],
    path: &str,
    key: &'static str,
) -> Result<Dense<f32>> {
    let values = param_index(param.shape(), shape, path, key)?
        .map(|i| param.data()[i])
        .collect();
    Ok(Dense::new(shape.to_vec(), values))
}

/// Fake-quantize host data exactly as NNI's `ClampRound` does, in float32 and in NNI's order:
///
/// `q = round(clamp(zero_point + x / scale, qmin, qmax))`, then `x̂ = (q - zero_point) * scale`,
///
/// with torch's round-half-to-even and the range of `dtype` (`int8` is `[-127, 127]`).
/// `scale` and `zero_point` are in the kept-dim block shape of the granularity (or `[]` for
/// per-tensor) and are repeated over their blocks.
///
/// # Errors
/// [`CompressError::QuantShape`] when `scale` or `zero_point` does not fit `x`.
pub fn fake_quant_dense(
    x: &Dense<f32>,
    scale: &Dense<f32>,
    zero_point: &Dense<f32>,
    dtype: QuantDtype,
) -> Result<Dense<f32>> {
    let (qmin, qmax) = quant_bounds(dtype);
    let scales = param_index(scale.shape(), x.shape(), "<tensor>", "scale")?;
    let zero_points = param_index(zero_point.shape(), x.shape(), "<tensor>", "zero_point")?;
    let values = x
        .data()
        .iter()
        .zip(scales.zip(zero_points))
        .map(|(&v, (si, zi))| {
            let (s, z) = (scale.data()[si], zero_point.data()[zi]);
            let t = z + v / s;
            let q = torch_clamp(t, qmin, qmax).round_ties_even();
            (q - z) * s
        })
        .collect();
    Ok(Dense::new(x.shape().to_vec(), values))
}

/// `param` (detached) repeated over the blocks of a tensor of `dims`.
fn fit<const D: usize>(param: Tensor<D>, dims: [usize; D], what: &str) -> Tensor<D> {
    let mut param = param.detach();
    let device = param.device();
    let pdims = param.dims();
    for d in 0..D {
        let (p, n) = (pdims[d], dims[d]);
        assert!(
            p > 0 && n.is_multiple_of(p),
            "fake_quant: {what} of shape {pdims:?} does not fit a tensor of shape {dims:?} \
             (dim {d}: {p} values over {n} elements)"
        );
        if p != n && p != 1 {
            // Block granularity: repeat each value over its block (repeat-interleave).
            let block = n / p;
            let indices: Vec<i64> = (0..n).map(|i| (i / block) as i64).collect();
            let indices = Tensor::<1, Int>::from_data(TensorData::new(indices, [n]), &device);
            param = param.select(d, indices);
        }
    }
    param.expand(dims)
}

/// Fake-quantize a Burn tensor: NNI's `ClampRound` forward,
/// `x̂ = (round(clamp(zero_point + x / scale, qmin, qmax)) - zero_point) * scale`,
/// with gradients for training.
///
/// `scale` and `zero_point` have the rank of `x` and are either its size or 1 on each dim, or
/// a block count that divides it (the kept-dim shape of any granularity): they are repeated
/// over their blocks. They are constants here (detached, as NNI's buffers); only `x` gets a
/// gradient, shaped by `grad`: [`FakeQuantGrad::Ste`] passes it unchanged,
/// [`FakeQuantGrad::Clipped`] zeroes it where `zero_point + x / scale` is outside
/// `[qmin, qmax]`.
///
/// The forward value is exactly the quantized value (not `x + (x̂ - x)`, which would round):
/// the gradient path is added as `x - x.detach()`, which is exactly zero.
///
/// ```
/// use burn::prelude::*;
/// use compress_quant::{FakeQuantGrad, fake_quant};
///
/// let device = Device::flex();
/// let x = Tensor::<2>::from_floats([[0.26, -1.0], [0.5, 3.0]], &device);
/// let scale = Tensor::<2>::from_floats([[0.5]], &device);
/// let zp = Tensor::<2>::from_floats([[0.0]], &device);
/// let y = fake_quant(x, scale, zp, -2.0, 2.0, FakeQuantGrad::Ste);
/// y.into_data().assert_eq(&TensorData::from([[0.5f32, -1.0], [0.5, 1.0]]), false);
/// ```
///
/// # Panics
/// If `scale` or `zero_point` does not fit `x` (a programmer error; check host values with
/// [`broadcast_qparam`] first when they come from a file).
pub fn fake_quant<const D: usize>(
    x: Tensor<D>,
    scale: Tensor<D>,
    zero_point: Tensor<D>,
    qmin: f32,
    qmax: f32,
    grad: FakeQuantGrad,
) -> Tensor<D> {
    let dims = x.dims();
    let scale = fit(scale, dims, "scale");
    let zero_point = fit(zero_point, dims, "zero_point");
    let tracked = x.is_tracked();
    let value = x.clone().detach();
    let transformed = zero_point.clone() + value / scale.clone();
    let quantized = transformed.clone().clamp(qmin, qmax).round();
    let dequantized = (quantized - zero_point) * scale;
    if !tracked {
        return dequantized;
    }
    // Zero in value, identity in gradient.
    let pass = x.clone() - x.detach();
    let pass = match grad {
        FakeQuantGrad::Ste => pass,
        FakeQuantGrad::Clipped => {
            let inside = transformed
                .clone()
                .greater_equal_elem(qmin)
                .bool_and(transformed.lower_equal_elem(qmax));
            pass * inside.float()
        }
    };
    pass + dequantized
}

/// `value` in the forward pass, `gradient`'s gradient in the backward pass. The gradient path
/// is added as `g - g.detach()`, exactly zero, so the forward value is `value` bit for bit.
/// The building block of straight-through estimators (`round` with the gradient of its input)
/// and of gradient scaling (`straight_through(s, s * g)`: value `s`, gradient `g * ds`).
pub fn straight_through<const D: usize>(value: Tensor<D>, gradient: Tensor<D>) -> Tensor<D> {
    if !gradient.is_tracked() {
        return value;
    }
    value.detach() + (gradient.clone() - gradient.detach())
}

/// A weight (rank 4, trailing dims 1) fake-quantized with [`fake_quant`] on its block grid:
/// `grid`'s scale and zero point are constants (detached) spread over their blocks; the
/// weight's gradient is shaped by `grad`. The plain clamp-round of
/// [`Quantizer::fake_quant`](compress_core::Quantizer::fake_quant) (PTQ, QAT).
pub fn fake_quant_blocks(
    weight: Tensor<4>,
    grid: &compress_core::quantizer::FakeQuantGrid,
    grad: FakeQuantGrad,
) -> Tensor<4> {
    let dims = weight.dims();
    let scale = compress_core::scores::block_expand(grid.scale.clone().detach(), dims);
    let zero_point = compress_core::scores::block_expand(grid.zero_point.clone().detach(), dims);
    fake_quant(weight, scale, zero_point, grid.qmin, grid.qmax, grad)
}

/// An activation fake-quantized with its calibrated parameters (unchanged while there are
/// none): the plain clamp-round of
/// [`Quantizer::quantize_activation`](compress_core::Quantizer::quantize_activation).
pub fn fake_quant_activation(
    x: Tensor<3>,
    input: &compress_core::quantizer::ActivationInput<'_>,
    grad: FakeQuantGrad,
) -> Tensor<3> {
    match &input.params {
        Some((scale, zero_point)) => fake_quant(
            x,
            scale.clone(),
            zero_point.clone(),
            input.qmin,
            input.qmax,
            grad,
        ),
        None => x,
    }
}
