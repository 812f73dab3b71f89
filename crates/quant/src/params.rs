//! Scale and zero point from a tracked range, with NNI's exact formulas.

use compress_core::config::{QuantDtype, QuantScheme};
use compress_core::{Dense, Result};
use compress_core::{
    Granularity,
    granularity::{KernelPadding, Scaling},
};

/// NNI's integer range of `dtype` as floats `(qmin, qmax)`: `int8` is `[-127, 127]`, `uint8`
/// `[0, 255]`, `int4` `[-7, 7]` (see [`QuantDtype::range`]).
pub fn quant_bounds(dtype: QuantDtype) -> (f32, f32) {
    let (lo, hi) = dtype.range();
    (lo as f32, hi as f32)
}

/// The zero point of the symmetric scheme: `(qmax + qmin + 1) // 2` (Python's floor division),
/// so 0 for `int<b>` and `2^(b-1)` for `uint<b>`.
pub fn symmetric_zero_point(dtype: QuantDtype) -> f32 {
    let (lo, hi) = dtype.range();
    (hi + lo + 1).div_euclid(2) as f32
}

/// Scale and zero point per block from a tracked range, exactly as NNI's `PtqQuantizer` and
/// `QATQuantizer` compute them (`update_scale_zp`).
///
/// The arithmetic is float32 throughout, as torch's on float32 buffers, with torch's
/// round-half-to-even:
/// 1. the range is widened to include 0: `mn = min(tracked_min, 0)`, `mx = max(tracked_max, 0)`;
/// 2. [`QuantScheme::Symmetric`]: `scale = max(|mn|, |mx|) / ((qmax - qmin) / 2)`, floored at
///    `f32::EPSILON`; `zero_point = (qmax + qmin + 1) // 2`;
/// 3. [`QuantScheme::Affine`]: `scale = (mx - mn) / (qmax - qmin)`, floored at `f32::EPSILON`;
///    `zero_point = qmin - round(mn / scale)`;
/// 4. `zero_point` is clamped to `[qmin, qmax]`.
///
/// NNI treats an unset `quant_scheme` as symmetric: pass `scheme.unwrap_or(QuantScheme::Symmetric)`.
/// Both outputs have the shape of `tracked_min` (the kept-dim shape of the granularity). A NaN
/// in the range propagates to the scale, as in torch.
///
/// ```
/// use compress_core::{Dense, config::{QuantDtype, QuantScheme}};
/// use compress_quant::qparams_from_range;
///
/// let int8 = QuantDtype::parse("int8").unwrap();
/// let mn = Dense::new(vec![], vec![-0.5f32]);
/// let mx = Dense::new(vec![], vec![2.0f32]);
/// let (scale, zp) = qparams_from_range(&mn, &mx, int8, QuantScheme::Symmetric);
/// assert_eq!((scale.data(), zp.data()), (&[2.0f32 / 127.0][..], &[0.0f32][..]));
/// // A range that does not reach 0 is widened to it first.
/// let mn = Dense::new(vec![], vec![1.0f32]);
/// let (scale, zp) = qparams_from_range(&mn, &mx, int8, QuantScheme::Affine);
/// assert_eq!((scale.data(), zp.data()), (&[2.0f32 / 254.0][..], &[-127.0f32][..]));
/// ```
///
/// # Panics
/// If `tracked_min` and `tracked_max` have different shapes (a programmer error: both come from
/// one observer).
pub fn qparams_from_range(
    tracked_min: &Dense<f32>,
    tracked_max: &Dense<f32>,
    dtype: QuantDtype,
    scheme: QuantScheme,
) -> (Dense<f32>, Dense<f32>) {
    assert_eq!(
        tracked_min.shape(),
        tracked_max.shape(),
        "qparams_from_range: tracked_min and tracked_max differ in shape"
    );
    let (qmin, qmax) = quant_bounds(dtype);
    let shape = tracked_min.shape().to_vec();
    let n = tracked_min.numel();
    let mut scale = Vec::with_capacity(n);
    let mut zero_point = Vec::with_capacity(n);
    for (&lo, &hi) in tracked_min.data().iter().zip(tracked_max.data()) {
        let mn = torch_min(lo, 0.0);
        let mx = torch_max(hi, 0.0);
        let (s, z) = match scheme {
            QuantScheme::Symmetric => {
                // Python: float(qmax - qmin) / 2, exact for every supported dtype.
                let half_range = ((qmax - qmin) as f64 / 2.0) as f32;
                let abs_max = torch_max(mn.abs(), mx.abs());
                (floor_eps(abs_max / half_range), symmetric_zero_point(dtype))
            }
            QuantScheme::Affine => {
                let s = floor_eps((mx - mn) / (qmax - qmin));
                (s, qmin - (mn / s).round_ties_even())
            }
        };
        scale.push(s);
        zero_point.push(torch_clamp(z, qmin, qmax));
    }
    (
        Dense::new(shape.clone(), scale),
        Dense::new(shape, zero_point),
    )
}

/// `torch.max(scale, eps)`: NaN propagates.
fn floor_eps(s: f32) -> f32 {
    torch_max(s, f32::EPSILON)
}

/// `torch.min` of two values: NaN propagates (Rust's `f32::min` would drop it).
fn torch_min(a: f32, b: f32) -> f32 {
    if a.is_nan() || a < b { a } else { b }
}

/// `torch.max` of two values: NaN propagates.
fn torch_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || a > b { a } else { b }
}

/// `torch.clamp(x, lo, hi)`: NaN stays NaN.
pub(crate) fn torch_clamp(x: f32, lo: f32, hi: f32) -> f32 {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

/// One block for the whole tensor (NNI's quantization default, granularity `None`): every dim
/// reduced, whatever the rank.
pub fn per_tensor_scaling() -> Scaling {
    Scaling::new(Vec::new(), KernelPadding::Back, -1)
}

/// The block scaling of a quantization target, with NNI's quantization meaning of each
/// granularity:
/// - [`Granularity::Default`]: **per tensor** (NNI's `None`, one scale for the whole tensor;
///   unlike pruning, where the default is the algorithm's);
/// - [`Granularity::Fine`]: one scale per element;
/// - [`Granularity::OutChannel`] / [`Granularity::InChannel`]: per slice of the parameter's
///   output / input axis (`out_axis`, `in_axis` from its [`ParamSpec`](compress_core::layers::ParamSpec), Burn's
///   layout: a Linear weight's output channels are axis 1);
/// - [`Granularity::PerChannel`]: activations, dim 1 (batch on dim 0);
/// - [`Granularity::Block`]: the kernel as given, in Burn's layout.
///
/// # Errors
/// [`CompressError::InvalidGranularity`](compress_core::CompressError::InvalidGranularity) when the
/// tensor has no such axis.
pub fn quant_scaling(
    granularity: &Granularity,
    rank: usize,
    out_axis: Option<usize>,
    in_axis: Option<usize>,
    path: &str,
) -> Result<Scaling> {
    match granularity {
        Granularity::Default => Ok(per_tensor_scaling()),
        other => other.scaling(rank, out_axis, in_axis, path),
    }
}
