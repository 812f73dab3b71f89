//! Host-side quantization: NNI's rounding on the host, block layouts, Burn schemes.

use super::*;

/// The largest divisor of `n` that fits a Burn block extent (`u8`).
pub(super) fn block_extent(n: usize) -> usize {
    (1..=n.min(255))
        .rev()
        .find(|d| n.is_multiple_of(*d))
        .unwrap_or(1)
}

/// The blocks of a tensor: extents per dimension (left-padded to the rank) and the grid.
pub(super) struct Blocks {
    extents: Vec<usize>,
    grid: Vec<usize>,
}

impl Blocks {
    fn new(shape: &[usize], extents: Vec<usize>) -> Self {
        let grid = shape.iter().zip(&extents).map(|(&d, &e)| d / e).collect();
        Self { extents, grid }
    }

    fn count(&self) -> usize {
        self.grid.iter().product()
    }

    /// The row-major block of row-major element `index` (as burn-std's `BlockLayout::block_of`).
    fn block_of(&self, shape: &[usize], mut index: usize) -> usize {
        let mut block = 0;
        let mut stride = 1;
        for d in (0..shape.len()).rev() {
            let coordinate = index % shape[d];
            index /= shape[d];
            block += coordinate / self.extents[d] * stride;
            stride *= self.grid[d];
        }
        block
    }

    /// The block-grid coordinate of `block` along `axis`.
    fn coordinate(&self, mut block: usize, axis: usize) -> usize {
        for d in (axis + 1..self.grid.len()).rev() {
            block /= self.grid[d];
        }
        block % self.grid[axis]
    }
}

pub(super) fn unsupported(path: &str, reason: impl Into<String>) -> QuantError {
    QuantError::UnsupportedQuant {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Quantize one parameter on the host, NNI's way: `q = round_half_even(clamp(x / s, qmin,
/// qmax))`, stored as Burn `QFloat` data (`QuantStore::Native`, f32 scales).
pub(super) fn quantize_host(
    path: &str,
    values: &Dense<f32>,
    quant: &WeightQuant,
    out_axis: Option<usize>,
    affine: AffinePolicy,
) -> Result<TensorData> {
    let shape = values.shape().to_vec();
    let rank = shape.len();
    let is_affine = quant
        .zero_point
        .as_ref()
        .is_some_and(|z| z.data().iter().any(|&v| v != 0.0));
    let calibrated = match (is_affine, affine) {
        (true, AffinePolicy::Error) => {
            return Err(unsupported(
                path,
                "its calibration is affine (non-zero zero point); Burn quantization is symmetric \
                 only. Calibrate with the symmetric scheme, or use AffinePolicy::Requantize",
            ));
        }
        (true, AffinePolicy::Requantize) => None,
        (false, _) => quant.scale.as_ref(),
    };

    // The block layout and, for channel levels, the channel axis.
    let (blocks, axis) = match &quant.level {
        QuantLevel::PerTensor => (None, None),
        QuantLevel::PerChannel | QuantLevel::PerAxis(_) => {
            let axis = match quant.level {
                QuantLevel::PerAxis(a) => a,
                _ => out_axis.ok_or_else(|| {
                    unsupported(
                        path,
                        "per channel needs its output axis, and its layer's LayerSpec gives none: \
                         register a LayerSpec for the layer type, or use QuantLevel::PerAxis",
                    )
                })?,
            };
            if axis >= rank.max(1) {
                return Err(unsupported(
                    path,
                    format!("axis {axis} is out of range for shape {shape:?}"),
                ));
            }
            let extents = (0..rank)
                .map(|d| if d == axis { 1 } else { block_extent(shape[d]) })
                .collect();
            (Some(Blocks::new(&shape, extents)), Some(axis))
        }
        QuantLevel::PerBlock(block) => {
            if block.len() > rank {
                return Err(unsupported(
                    path,
                    format!("block {block:?} has more dimensions than shape {shape:?}"),
                ));
            }
            let mut extents = vec![1; rank - block.len()];
            extents.extend(block);
            for (d, (&e, &n)) in extents.iter().zip(&shape).enumerate() {
                if e == 0 || e > 255 {
                    return Err(unsupported(
                        path,
                        format!("block extent {e} (dimension {d}) is outside Burn's 1..=255"),
                    ));
                }
                if !n.is_multiple_of(e) {
                    return Err(unsupported(
                        path,
                        format!(
                            "block {block:?} does not tile shape {shape:?} (dimension {d}); \
                             Burn's CPU backend needs whole blocks"
                        ),
                    ));
                }
            }
            (Some(Blocks::new(&shape, extents)), None)
        }
    };
    if let Some(b) = &blocks {
        let significant = b.extents.iter().skip_while(|&&e| e == 1).count();
        if significant > 5 {
            return Err(unsupported(
                path,
                format!(
                    "block {:?} spans more than Burn's 5 block dimensions",
                    b.extents
                ),
            ));
        }
    }

    // One scale per block (or one for the tensor).
    let (qmin, qmax) = quant.value.range();
    let half_range = (qmax - qmin) / 2.0;
    let data = values.data();
    let scales: Vec<f32> = match (calibrated, &blocks, axis) {
        (Some(scale), _, _) => {
            let expected = match (&blocks, axis) {
                (None, _) => 1,
                (Some(_), Some(a)) => shape[a],
                (Some(b), None) => b.count(),
            };
            if scale.numel() != expected {
                return Err(QuantError::ShapeMismatch {
                    path: format!("{path} (scale)"),
                    expected: match (&blocks, axis) {
                        (Some(b), None) => b.grid.clone(),
                        _ => vec![expected],
                    },
                    found: scale.shape().to_vec(),
                });
            }
            if let Some(bad) = scale.data().iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return Err(unsupported(path, format!("scale {bad} is not positive")));
            }
            match (&blocks, axis) {
                (Some(b), Some(a)) => (0..b.count())
                    .map(|k| scale.data()[b.coordinate(k, a)])
                    .collect(),
                _ => scale.data().to_vec(),
            }
        }
        (None, None, _) => {
            let max = data.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            vec![symmetric_scale(max, half_range)]
        }
        (None, Some(b), axis) => {
            let mut peaks = vec![0.0f32; b.count()];
            for (i, x) in data.iter().enumerate() {
                let p = &mut peaks[b.block_of(&shape, i)];
                *p = p.max(x.abs());
            }
            if let Some(a) = axis {
                // One scale per channel, repeated over the channel's blocks.
                let mut per_channel = vec![0.0f32; shape[a]];
                for (k, p) in peaks.iter().enumerate() {
                    let c = &mut per_channel[b.coordinate(k, a)];
                    *c = c.max(*p);
                }
                for (k, p) in peaks.iter_mut().enumerate() {
                    *p = per_channel[b.coordinate(k, a)];
                }
            }
            peaks
                .into_iter()
                .map(|p| symmetric_scale(p, half_range))
                .collect()
        }
    };

    let q: Vec<i8> = data
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let s = match &blocks {
                Some(b) => scales[b.block_of(&shape, i)],
                None => scales[0],
            };
            (x / s).clamp(qmin, qmax).round_ties_even() as i8
        })
        .collect();
    let scheme = scheme(quant.value, blocks.as_ref().map(|b| b.extents.as_slice()));
    Ok(TensorData::quantized(q, shape, scheme, &scales, None))
}

/// NNI's symmetric scale for a max-abs value: `max / ((qmax - qmin) / 2)`, floored at
/// `f32::EPSILON`.
pub(super) fn symmetric_scale(max_abs: f32, half_range: f32) -> f32 {
    (max_abs / half_range).max(f32::EPSILON)
}

/// Burn's scheme for a format and block layout (f32 scales, one byte per value in memory).
pub(super) fn scheme(value: QuantBits, block: Option<&[usize]>) -> QuantScheme {
    let scheme = QuantScheme::default()
        .with_value(value.value())
        .with_mode(QuantMode::Symmetric)
        .with_store(QuantStore::Native);
    match block {
        Some(b) => scheme.per_block(
            b.iter().map(|&e| e as u8).collect::<Vec<u8>>(),
            ScaleDtype::F32,
        ),
        None => scheme,
    }
}
