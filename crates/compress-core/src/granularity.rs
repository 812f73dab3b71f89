//! Granularity: one block shrink/expand primitive for metrics, masks and quantization scales.
//!
//! This is NNI's `Scaling` (`nni/compression/utils/scaling.py`): a kernel describes blocks the
//! way a pooling kernel does. A positive entry `k` makes blocks of `k` along that dim (the dim
//! must be divisible by `k`); `-1` takes the whole dim as one block. A kernel shorter than the
//! tensor's rank is padded: `front` padding fills the leading dims (with 1 by default, so `[4, 4]`
//! on a conv weight means `[1, 1, 4, 4]` blocks); `back` padding fills the trailing dims (with
//! -1 by default, so `[1]` means one block per dim-0 slice).

use std::fmt;

use rayon::prelude::*;

use crate::dense::strides;
use crate::{CompressError, Dense, Result};

/// Which side of a short kernel is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPadding {
    /// Pad the leading dims.
    Front,
    /// Pad the trailing dims.
    Back,
}

/// A block kernel with its padding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaling {
    kernel: Vec<i64>,
    padding: KernelPadding,
    padding_value: i64,
}

impl Scaling {
    /// A kernel with explicit padding; entries must be positive or `-1`.
    pub fn new(kernel: Vec<i64>, padding: KernelPadding, padding_value: i64) -> Self {
        Self {
            kernel,
            padding,
            padding_value,
        }
    }

    /// One block per element (fine-grained).
    pub fn fine() -> Self {
        Self::new(Vec::new(), KernelPadding::Front, 1)
    }

    /// One block per slice of `axis` in a tensor of rank `rank` (`1` on the axis, `-1` elsewhere).
    pub fn along_axis(axis: usize, rank: usize) -> Self {
        let kernel = (0..rank).map(|d| if d == axis { 1 } else { -1 }).collect();
        Self::new(kernel, KernelPadding::Back, -1)
    }

    /// The kernel padded to `rank`, checked against `shape`.
    pub fn full_kernel(&self, shape: &[usize], path: &str) -> Result<Vec<i64>> {
        let rank = shape.len();
        let err = |kernel: Vec<i64>, reason: String| CompressError::KernelMismatch {
            path: path.to_string(),
            shape: shape.to_vec(),
            kernel,
            reason,
        };
        if self.kernel.len() > rank {
            return Err(err(
                self.kernel.clone(),
                format!("kernel has {} dims, the tensor {rank}", self.kernel.len()),
            ));
        }
        let pad = vec![self.padding_value; rank - self.kernel.len()];
        let kernel: Vec<i64> = match self.padding {
            KernelPadding::Front => pad.into_iter().chain(self.kernel.iter().copied()).collect(),
            KernelPadding::Back => self.kernel.iter().copied().chain(pad).collect(),
        };
        for (d, (&k, &n)) in kernel.iter().zip(shape).enumerate() {
            if k == 0 || k < -1 {
                return Err(err(
                    kernel.clone(),
                    format!("entry {k} on dim {d} must be positive or -1"),
                ));
            }
            if k > 0 && n % k as usize != 0 {
                return Err(err(
                    kernel.clone(),
                    format!("dim {d} of size {n} is not divisible by {k}"),
                ));
            }
        }
        Ok(kernel)
    }

    /// Block size along each dim.
    fn blocks(&self, shape: &[usize], path: &str) -> Result<Vec<usize>> {
        Ok(self
            .full_kernel(shape, path)?
            .iter()
            .zip(shape)
            .map(|(&k, &n)| if k == -1 { n } else { k as usize })
            .collect())
    }

    /// The shape `shrink` returns for `shape`, keeping reduced dims as size 1 when `keepdim`.
    pub fn shrunk_shape(&self, shape: &[usize], keepdim: bool, path: &str) -> Result<Vec<usize>> {
        let kernel = self.full_kernel(shape, path)?;
        Ok(kernel
            .iter()
            .zip(shape)
            .filter(|(k, _)| keepdim || **k != -1)
            .map(|(&k, &n)| if k == -1 { 1 } else { n / k as usize })
            .collect())
    }

    /// Reduce each block to one value: `init`, then `fold(acc, x)` over its elements in
    /// row-major order, then `finish(acc, block_len)`.
    ///
    /// Blocks that are contiguous in memory (fine-grained, or output channels on axis 0) are
    /// reduced in parallel; other layouts take a strided walk.
    ///
    /// # Errors
    /// [`CompressError::KernelMismatch`] when the kernel does not fit the tensor.
    pub fn shrink_with<A: Copy + Send + Sync>(
        &self,
        tensor: &Dense<f32>,
        keepdim: bool,
        path: &str,
        init: A,
        fold: impl Fn(A, f32) -> A + Sync,
        finish: impl Fn(A, usize) -> f32 + Sync,
    ) -> Result<Dense<f32>> {
        let shape = tensor.shape();
        let blocks = self.blocks(shape, path)?;
        let block_len: usize = blocks.iter().product();
        let out_shape = self.shrunk_shape(shape, keepdim, path)?;
        if is_contiguous(shape, &blocks) {
            let reduce =
                |chunk: &[f32]| finish(chunk.iter().fold(init, |a, &x| fold(a, x)), block_len);
            let values: Vec<f32> = if tensor.numel() >= PARALLEL_MIN && block_len > 0 {
                tensor.data().par_chunks(block_len).map(reduce).collect()
            } else {
                tensor.data().chunks(block_len.max(1)).map(reduce).collect()
            };
            return Ok(Dense::new(out_shape, values));
        }
        let kept_shape: Vec<usize> = shape.iter().zip(&blocks).map(|(n, b)| n / b).collect();
        let mut acc = vec![init; kept_shape.iter().product()];
        for_each_block_index(shape, &blocks, |i, out_index| {
            acc[out_index] = fold(acc[out_index], tensor.data()[i]);
        });
        let values = acc.into_iter().map(|a| finish(a, block_len)).collect();
        Ok(Dense::new(out_shape, values))
    }

    /// The sum of `map(x)` over each block, then `finish(sum, block_len)`: the reduction of
    /// norm-like metrics. Contiguous blocks are summed with several f32 accumulators (which
    /// vectorize) combined in f64, in parallel for large tensors.
    ///
    /// # Errors
    /// [`CompressError::KernelMismatch`] when the kernel does not fit the tensor.
    pub fn shrink_sum(
        &self,
        tensor: &Dense<f32>,
        keepdim: bool,
        path: &str,
        map: impl Fn(f32) -> f32 + Sync,
        finish: impl Fn(f64, usize) -> f32 + Sync,
    ) -> Result<Dense<f32>> {
        let shape = tensor.shape();
        let blocks = self.blocks(shape, path)?;
        if !is_contiguous(shape, &blocks) {
            return self.shrink_with(
                tensor,
                keepdim,
                path,
                0.0f64,
                |a, x| a + map(x) as f64,
                finish,
            );
        }
        let block_len: usize = blocks.iter().product::<usize>().max(1);
        let out_shape = self.shrunk_shape(shape, keepdim, path)?;
        let reduce = |chunk: &[f32]| {
            const LANES: usize = 8;
            let mut lanes = [0.0f32; LANES];
            let mut exact = chunk.chunks_exact(LANES);
            for group in &mut exact {
                for (l, &x) in lanes.iter_mut().zip(group) {
                    *l += map(x);
                }
            }
            let tail: f64 = exact.remainder().iter().map(|&x| map(x) as f64).sum();
            finish(
                lanes.iter().map(|&l| l as f64).sum::<f64>() + tail,
                block_len,
            )
        };
        let data = tensor.data();
        let values: Vec<f32> = match (block_len, data.len() >= PARALLEL_MIN) {
            (1, true) => data.par_iter().map(|&x| finish(map(x) as f64, 1)).collect(),
            (1, false) => data.iter().map(|&x| finish(map(x) as f64, 1)).collect(),
            (_, true) => data
                .par_chunks(block_len)
                .with_min_len(64)
                .map(reduce)
                .collect(),
            (_, false) => data.chunks(block_len).map(reduce).collect(),
        };
        Ok(Dense::new(out_shape, values))
    }

    /// The elements of each block gathered into one row: `(rows, block_len, values)` with
    /// `values` row-major `[rows, block_len]`, rows in block order.
    ///
    /// # Errors
    /// [`CompressError::KernelMismatch`] when the kernel does not fit the tensor.
    pub fn block_rows(&self, tensor: &Dense<f32>, path: &str) -> Result<(usize, usize, Vec<f32>)> {
        let shape = tensor.shape();
        let blocks = self.blocks(shape, path)?;
        let block_len: usize = blocks.iter().product();
        let rows = tensor.numel() / block_len.max(1);
        if is_contiguous(shape, &blocks) {
            return Ok((rows, block_len, tensor.data().to_vec()));
        }
        let mut values = vec![0.0f32; tensor.numel()];
        let mut filled = vec![0usize; rows];
        for_each_block_index(shape, &blocks, |i, row| {
            values[row * block_len + filled[row]] = tensor.data()[i];
            filled[row] += 1;
        });
        Ok((rows, block_len, values))
    }

    /// The mean of each block (NNI's default reduction).
    pub fn shrink_mean(
        &self,
        tensor: &Dense<f32>,
        keepdim: bool,
        path: &str,
    ) -> Result<Dense<f32>> {
        self.shrink_with(
            tensor,
            keepdim,
            path,
            0.0f64,
            |a, x| a + x as f64,
            |a, n| (a / n as f64) as f32,
        )
    }

    /// Repeat each block value over its block, giving a tensor of `shape`.
    ///
    /// `tensor` may be in kept-dim or squeezed form of [`shrunk_shape`](Self::shrunk_shape).
    ///
    /// # Errors
    /// [`CompressError::KernelMismatch`] when the kernel does not fit `shape`, or
    /// [`CompressError::ShapeMismatch`] when `tensor` is not the shrunk shape of `shape`.
    pub fn expand<T: Copy + Send + Sync>(
        &self,
        tensor: &Dense<T>,
        shape: &[usize],
        path: &str,
    ) -> Result<Dense<T>> {
        let blocks = self.blocks(shape, path)?;
        let kept_shape: Vec<usize> = shape.iter().zip(&blocks).map(|(n, b)| n / b).collect();
        let squeezed = self.shrunk_shape(shape, false, path)?;
        if tensor.shape() != kept_shape.as_slice() && tensor.shape() != squeezed.as_slice() {
            return Err(CompressError::ShapeMismatch {
                path: path.to_string(),
                expected: kept_shape,
                found: tensor.shape().to_vec(),
            });
        }
        let numel: usize = shape.iter().product();
        let data = tensor.data();
        let Some(&first) = data.first() else {
            return Ok(Dense::new(shape.to_vec(), Vec::new()));
        };
        let mut values = vec![first; numel];
        let block_len: usize = blocks.iter().product();
        if is_contiguous(shape, &blocks) {
            let fill = |(chunk, &v): (&mut [T], &T)| chunk.fill(v);
            if numel >= PARALLEL_MIN {
                values
                    .par_chunks_mut(block_len)
                    .zip(data.par_iter())
                    .for_each(fill);
            } else {
                values.chunks_mut(block_len).zip(data.iter()).for_each(fill);
            }
        } else {
            for_each_block_index(shape, &blocks, |i, block| values[i] = data[block]);
        }
        Ok(Dense::new(shape.to_vec(), values))
    }
}

/// Tensors at least this large are reduced on several threads.
const PARALLEL_MIN: usize = 1 << 16;

/// Whether every block is one contiguous run of memory: leading dims with block 1, then
/// trailing dims reduced whole.
fn is_contiguous(shape: &[usize], blocks: &[usize]) -> bool {
    let first_whole = blocks.iter().position(|&b| b != 1).unwrap_or(blocks.len());
    blocks[first_whole..]
        .iter()
        .zip(&shape[first_whole..])
        .all(|(b, n)| b == n)
}

/// Call `f(flat_index, block_index)` for every element in row-major order.
fn for_each_block_index(shape: &[usize], blocks: &[usize], mut f: impl FnMut(usize, usize)) {
    let kept_shape: Vec<usize> = shape.iter().zip(blocks).map(|(n, b)| n / b).collect();
    let out_strides = strides(&kept_shape);
    let rank = shape.len();
    let numel: usize = shape.iter().product();
    let mut coord = vec![0usize; rank];
    let mut block = 0usize;
    for i in 0..numel {
        f(i, block);
        for d in (0..rank).rev() {
            coord[d] += 1;
            if coord[d].is_multiple_of(blocks[d]) {
                block += out_strides[d];
            }
            if coord[d] < shape[d] {
                break;
            }
            block -= out_strides[d] * kept_shape[d];
            coord[d] = 0;
        }
    }
}

/// A granularity as written in a config.
#[derive(Debug, Clone, PartialEq)]
pub enum Granularity {
    /// The algorithm's own default (`"default"`).
    Default,
    /// One metric or scale per element (NNI's `None`; written `"fine"`).
    Fine,
    /// One per output channel, on the layer's real output axis (`"out_channel"`).
    OutChannel,
    /// One per input channel (`"in_channel"`).
    InChannel,
    /// One per activation channel, dim 1 with batch on dim 0 (`"per_channel"`).
    PerChannel,
    /// Blocks given by a kernel, in Burn's layout of the target.
    Block(Scaling),
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Granularity::Default => write!(f, "default"),
            Granularity::Fine => write!(f, "fine-grained"),
            Granularity::OutChannel => write!(f, "out_channel"),
            Granularity::InChannel => write!(f, "in_channel"),
            Granularity::PerChannel => write!(f, "per_channel"),
            Granularity::Block(s) => write!(
                f,
                "block {:?} ({} padding with {})",
                s.kernel,
                match s.padding {
                    KernelPadding::Front => "front",
                    KernelPadding::Back => "back",
                },
                s.padding_value
            ),
        }
    }
}

impl Granularity {
    /// The scaling for a target tensor.
    ///
    /// `out_axis` / `in_axis` come from the layer's [`ParamSpec`](crate::layers::ParamSpec); for
    /// activations pass `None` and use [`Granularity::PerChannel`]. `Default` must be replaced
    /// by the algorithm's default before this call.
    ///
    /// # Errors
    /// [`CompressError::InvalidGranularity`] when the tensor has no such axis.
    pub fn scaling(
        &self,
        rank: usize,
        out_axis: Option<usize>,
        in_axis: Option<usize>,
        path: &str,
    ) -> Result<Scaling> {
        let missing = |what: &str| CompressError::InvalidGranularity {
            value: format!("'{self}'"),
            context: format!("target '{path}'"),
            reason: format!("the tensor has no {what} axis"),
        };
        match self {
            Granularity::Default | Granularity::Fine => Ok(Scaling::fine()),
            Granularity::OutChannel => out_axis
                .map(|a| Scaling::along_axis(a, rank))
                .ok_or_else(|| missing("output-channel")),
            Granularity::InChannel => in_axis
                .map(|a| Scaling::along_axis(a, rank))
                .ok_or_else(|| missing("input-channel")),
            Granularity::PerChannel if rank >= 2 => Ok(Scaling::along_axis(1, rank)),
            Granularity::PerChannel => Err(missing("channel (dim 1)")),
            Granularity::Block(s) => Ok(s.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arange(shape: Vec<usize>) -> Dense<f32> {
        let n = shape.iter().product::<usize>();
        Dense::new(shape, (0..n).map(|x| x as f32).collect())
    }

    #[test]
    fn front_padded_kernel_reduces_trailing_blocks_like_nni() {
        // NNI test_scaling: a 2x3x4 arange, kernel [2] with front padding -> blocks [1, 1, 2].
        let t = arange(vec![2, 3, 4]);
        let s = Scaling::new(vec![2], KernelPadding::Front, 1);
        let m = s.shrink_mean(&t, false, "t").unwrap();
        assert_eq!(m.shape(), &[2, 3, 2]);
        assert_eq!(m.data()[..4], [0.5, 2.5, 4.5, 6.5]);
    }

    #[test]
    fn back_padded_kernel_reduces_whole_trailing_dims() {
        // kernel [1] with back padding -1: one value per dim-0 slice (NNI's out_channel).
        let t = arange(vec![2, 3, 4]);
        let s = Scaling::new(vec![1], KernelPadding::Back, -1);
        let kept = s.shrink_mean(&t, true, "t").unwrap();
        assert_eq!(kept.shape(), &[2, 1, 1]);
        assert_eq!(kept.data(), &[5.5, 17.5]);
        let squeezed = s.shrink_mean(&t, false, "t").unwrap();
        assert_eq!(squeezed.shape(), &[2]);
    }

    #[test]
    fn in_channel_on_burn_linear_reduces_the_output_axis() {
        // Burn Linear weight [in=2, out=3]; in_channel is axis 0.
        let t = arange(vec![2, 3]);
        let s = Granularity::InChannel
            .scaling(2, Some(1), Some(0), "fc.weight")
            .unwrap();
        let m = s.shrink_mean(&t, true, "fc.weight").unwrap();
        assert_eq!(m.shape(), &[2, 1]);
        assert_eq!(m.data(), &[1.0, 4.0]);
    }

    #[test]
    fn expand_inverts_shrink_for_every_granularity() {
        let t = arange(vec![4, 6, 2, 2]);
        let cases = [
            Scaling::fine(),
            Scaling::along_axis(0, 4),
            Scaling::along_axis(1, 4),
            Scaling::new(vec![2, 3], KernelPadding::Back, -1),
            Scaling::new(vec![2, 2], KernelPadding::Front, 1),
        ];
        for s in cases {
            for keepdim in [true, false] {
                let shrunk = s.shrink_mean(&t, keepdim, "t").unwrap();
                let back = s.expand(&shrunk, t.shape(), "t").unwrap();
                assert_eq!(back.shape(), t.shape());
                // Shrinking the expanded tensor again gives the same block values.
                assert_eq!(s.shrink_mean(&back, keepdim, "t").unwrap(), shrunk, "{s:?}");
            }
        }
    }

    #[test]
    fn expanded_values_fill_their_blocks() {
        let s = Scaling::new(vec![2, 2], KernelPadding::Front, 1);
        let small = Dense::new(vec![1, 2, 2], vec![1.0f32, 2.0, 3.0, 4.0]);
        let big = s.expand(&small, &[1, 4, 4], "t").unwrap();
        assert_eq!(
            big.data(),
            &[
                1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.
            ]
        );
    }

    #[test]
    fn a_kernel_that_does_not_divide_the_dim_is_refused() {
        let s = Scaling::new(vec![3], KernelPadding::Front, 1);
        let err = s.shrunk_shape(&[4, 4], true, "conv.weight").unwrap_err();
        assert!(matches!(err, CompressError::KernelMismatch { .. }));
        assert!(err.to_string().contains("conv.weight"), "{err}");
        assert!(err.to_string().contains("not divisible by 3"), "{err}");
    }
}
