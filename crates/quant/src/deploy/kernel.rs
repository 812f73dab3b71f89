//! The host int8 kernels of the deploy layers: activations quantized to 8-bit integers, the
//! u8 x i8 -> i32 GEMMs of rten-gemm (VNNI on AVX-512), and the float epilogue.
//!
//! rten-gemm computes `sum_k (a - za) (b - zb)` exactly in i32, but the zero points of a
//! *prepacked* operand are fixed to 0 when it is packed. The weights are prepacked once, so
//! their zero point (plus the 128 that moves an `int8` value into the kernel's `u8` side) is
//! subtracted here instead: `sum_k (a - za') (b - zb) = gemm - za' * sum_k (b - zb)`, with the
//! per-pixel (conv) or per-row (Linear) sums of the other operand computed on the host. That
//! keeps the result exact for every zero point.

use std::mem::MaybeUninit;

use rayon::prelude::*;
use rten_gemm::{
    ColOffsets, GemmExecutor, GemmInputA, GemmInputB, GemmUninitOptions, Im2Col, PackedAMatrix,
    PackedBMatrix, QuantParams, RowOffsets,
};
use rten_tensor::{Matrix, NdTensorView};

use crate::params::torch_clamp;

/// The int8 GEMM of this CPU (AVX-512 VNNI, AVX2, NEON dot product or generic).
pub(crate) fn executor() -> GemmExecutor<u8, i8, i32> {
    GemmExecutor::default()
}

/// A per-tensor quantization grid on the host: NNI's clamp-round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Grid {
    pub scale: f32,
    pub zero_point: f32,
    pub qmin: f32,
    pub qmax: f32,
}

impl Grid {
    /// The integer of `v` (as a float): `round(clamp(zero_point + v / scale, qmin, qmax))`, in
    /// NNI's (and QuantSim's) float32 order, ties to even.
    #[inline]
    pub fn quantize(&self, v: f32) -> f32 {
        torch_clamp(self.zero_point + v / self.scale, self.qmin, self.qmax).round_ties_even()
    }

    /// `(quantize(v) - zero_point) * scale`: the fake-quantized value.
    #[inline]
    pub fn fake_quant(&self, v: f32) -> f32 {
        (self.quantize(v) - self.zero_point) * self.scale
    }

    /// The shift that moves this grid's integers into `u8` (`+128` for signed grids).
    pub fn u8_offset(&self) -> i32 {
        if self.qmin < 0.0 { 128 } else { 0 }
    }

    /// The shift that moves this grid's integers into `i8` (`-128` for unsigned grids).
    pub fn i8_offset(&self) -> i32 {
        if self.qmin < 0.0 { 0 } else { -128 }
    }
}

/// Per output channel: `y = acc * mul + add`, then the layer's output grid (QuantSim's
/// `_output_`), then a per-channel affine map (a following BatchNorm), then ReLU.
#[derive(Debug, Clone)]
pub(crate) struct Epilogue {
    pub mul: Vec<f32>,
    pub add: Vec<f32>,
    pub output: Option<Grid>,
    pub post: Option<(Vec<f32>, Vec<f32>)>,
    pub relu: bool,
}

impl Epilogue {
    #[inline]
    fn apply(&self, acc: i32, c: usize) -> f32 {
        let mut y = acc as f32 * self.mul[c] + self.add[c];
        if let Some(g) = &self.output {
            y = g.fake_quant(y);
        }
        if let Some((m, a)) = &self.post {
            y = y * m[c] + a[c];
        }
        if self.relu { y.max(0.0) } else { y }
    }
}

/// Fill `out` with `values` quantized on `grid`, shifted by `offset`.
fn quantize_into<T: Copy + Send>(
    values: &[f32],
    grid: &Grid,
    offset: i32,
    out: &mut [T],
    cast: fn(i32) -> T,
) {
    for (o, &v) in out.iter_mut().zip(values) {
        *o = cast(grid.quantize(v) as i32 + offset);
    }
}

/// Vec of `len` i32 written by `fill`, which must initialize every element.
fn filled_i32(
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<i32>]) -> Result<(), rten_gemm::GemmError>,
) -> Result<Vec<i32>, rten_gemm::GemmError> {
    let mut out = Vec::<i32>::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len])?;
    // SAFETY: rten-gemm's `*_uninit` calls initialize the whole output slice they return
    // successfully (and `fill` returned Ok).
    unsafe { out.set_len(len) };
    Ok(out)
}

/// A Linear weight `[in, out]` on the kernel's `i8` side, prepacked.
pub(crate) struct LinearWeights {
    packed: PackedBMatrix<i8>,
    /// Per output column, the weight's zero point on the `i8` side (0 for symmetric int8).
    zero: Vec<i32>,
    k: usize,
    n: usize,
}

impl LinearWeights {
    /// `q[k * n + c]`: the weight's integers in `[in, out]`, on a grid whose `i8` shift is
    /// `offset`; `zero[c]` its zero points.
    pub fn new(
        exec: &GemmExecutor<u8, i8, i32>,
        q: &[i32],
        zero: &[i32],
        offset: i32,
        k: usize,
        n: usize,
    ) -> Self {
        let b: Vec<i8> = q.iter().map(|&v| (v + offset) as i8).collect();
        let packed = exec.prepack_b(Matrix::from_data([k, n], b.as_slice()));
        Self {
            packed,
            zero: zero.iter().map(|z| z + offset).collect(),
            k,
            n,
        }
    }

    /// `x [m, k]` quantized on `grid` times the weight, through `epilogue` (per column): `[m, n]`
    /// as f32 bits.
    pub fn forward(
        &self,
        exec: &GemmExecutor<u8, i8, i32>,
        x: &[f32],
        m: usize,
        grid: &Grid,
        epilogue: &Epilogue,
    ) -> Result<Vec<i32>, rten_gemm::GemmError> {
        let (k, n) = (self.k, self.n);
        let offset = grid.u8_offset();
        let mut a = vec![0u8; m * k];
        a.par_chunks_mut(k)
            .zip(x.par_chunks(k))
            .for_each(|(o, v)| quantize_into(v, grid, offset, o, |q| q as u8));
        let za = (grid.zero_point as i32 + offset) as u8;
        // Per row, sum_k (a - za): needed where the weight's zero point is not 0.
        let corrected = self.zero.iter().any(|&z| z != 0);
        let row_sums: Vec<i32> = if corrected {
            a.par_chunks(k)
                .map(|r| r.iter().map(|&v| v as i32 - za as i32).sum())
                .collect()
        } else {
            Vec::new()
        };
        let a_zero = vec![za; m];
        let mut out = filled_i32(m * n, |out| {
            exec.gemm_uninit(
                out,
                GemmInputA::Unpacked(Matrix::from_data([m, k], a.as_slice())),
                GemmInputB::Packed(&self.packed),
                GemmUninitOptions {
                    a_quant: Some(QuantParams {
                        zero_point: &a_zero,
                    }),
                    ..Default::default()
                },
            )
            .map(|_| ())
        })?;
        out.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
            for (c, v) in row.iter_mut().enumerate() {
                let acc = if corrected {
                    *v - row_sums[r] * self.zero[c]
                } else {
                    *v
                };
                *v = epilogue.apply(acc, c).to_bits() as i32;
            }
        });
        Ok(out)
    }
}

/// The geometry of a 2-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub padding: [usize; 4],
}

impl ConvGeometry {
    /// `(padded height, padded width, output height, output width)` for an `h x w` input;
    /// `None` when the kernel does not fit.
    pub fn sizes(&self, h: usize, w: usize) -> Option<(usize, usize, usize, usize)> {
        let [pt, pl, pb, pr] = self.padding;
        let (hp, wp) = (h + pt + pb, w + pl + pr);
        let span = |k: usize, d: usize| d * (k - 1) + 1;
        let (sh, sw) = (
            span(self.kernel[0], self.dilation[0]),
            span(self.kernel[1], self.dilation[1]),
        );
        (hp >= sh && wp >= sw).then(|| {
            (
                hp,
                wp,
                (hp - sh) / self.stride[0] + 1,
                (wp - sw) / self.stride[1] + 1,
            )
        })
    }
}

/// Conv weights `[out, in / groups, kh, kw]` on the kernel's `u8` side, prepacked per group.
pub(crate) struct ConvWeights {
    packed: Vec<PackedAMatrix<u8>>,
    /// Per output channel, what the GEMM's result is corrected by (times the pixel's sum): the
    /// weight's zero point on the `u8` side.
    zero: Vec<i32>,
    geometry: ConvGeometry,
}

impl ConvWeights {
    /// `q`: the weight's integers in Burn's layout, on a grid whose `u8` shift is `offset`;
    /// `zero[c]` its zero points.
    pub fn new(
        exec: &GemmExecutor<u8, i8, i32>,
        q: &[i32],
        zero: &[i32],
        offset: i32,
        geometry: ConvGeometry,
    ) -> Self {
        let a: Vec<u8> = q.iter().map(|&v| (v + offset) as u8).collect();
        let out_g = geometry.out_channels / geometry.groups;
        let k = a.len() / geometry.out_channels;
        let packed = (0..geometry.groups)
            .map(|g| {
                let rows = &a[g * out_g * k..(g + 1) * out_g * k];
                exec.prepack_a(Matrix::from_data([out_g, k], rows))
            })
            .collect();
        Self {
            packed,
            zero: zero.iter().map(|z| z + offset).collect(),
            geometry,
        }
    }

    /// `x [n, in, h, w]` quantized on `grid`, convolved, through `epilogue` (per output
    /// channel): `[n, out, oh, ow]` as f32 bits, and `(oh, ow)`.
    pub fn forward(
        &self,
        exec: &GemmExecutor<u8, i8, i32>,
        x: &[f32],
        [n, h, w]: [usize; 3],
        grid: &Grid,
        epilogue: &Epilogue,
    ) -> Result<(Vec<i32>, [usize; 2]), rten_gemm::GemmError> {
        let geo = self.geometry;
        let c_in = geo.in_channels;
        let (hp, wp, oh, ow) = geo.sizes(h, w).ok_or(rten_gemm::GemmError::KSizeMismatch)?;
        let [pt, pl, _, _] = geo.padding;
        let offset = grid.i8_offset();
        let zb = (grid.zero_point as i32 + offset) as i8;

        // The quantized image, padded with the zero point (QuantSim pads the fake-quantized
        // input with 0.0, which is the zero point): im2col then never sees padding.
        let plane = hp * wp;
        let mut image = vec![zb; n * c_in * plane];
        image
            .par_chunks_mut(plane)
            .zip(x.par_chunks(h * w))
            .for_each(|(out, src)| {
                for y in 0..h {
                    let row = &mut out[(y + pt) * wp + pl..(y + pt) * wp + pl + w];
                    quantize_into(&src[y * w..(y + 1) * w], grid, offset, row, |q| q as i8);
                }
            });

        let (groups, in_g) = (geo.groups, c_in / geo.groups);
        let out_g = geo.out_channels / groups;
        let pixels = oh * ow;
        // Per (image, group) and output pixel: sum over its receptive field of (b - zb).
        let window_sums: Vec<Vec<i32>> = (0..n * groups)
            .into_par_iter()
            .map(|ig| {
                let start = ig * in_g * plane;
                let mut sum = vec![0i32; plane];
                for ch in image[start..start + in_g * plane].chunks(plane) {
                    for (s, &v) in sum.iter_mut().zip(ch) {
                        *s += v as i32 - zb as i32;
                    }
                }
                let mut out = vec![0i32; pixels];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (y0, x0) = (oy * geo.stride[0], ox * geo.stride[1]);
                        let mut s = 0;
                        for ky in 0..geo.kernel[0] {
                            let row = (y0 + ky * geo.dilation[0]) * wp + x0;
                            for kx in 0..geo.kernel[1] {
                                s += sum[row + kx * geo.dilation[1]];
                            }
                        }
                        out[oy * ow + ox] = s;
                    }
                }
                out
            })
            .collect();

        let im2cols: Vec<Im2Col<i8>> = (0..n * groups)
            .map(|ig| {
                let start = ig * in_g * plane;
                let view =
                    NdTensorView::from_data([in_g, hp, wp], &image[start..start + in_g * plane]);
                im2col(view, [in_g, hp, wp], &geo, oh, ow, exec)
            })
            .collect();
        let a: Vec<GemmInputA<u8>> = (0..n * groups)
            .map(|ig| GemmInputA::Packed(&self.packed[ig % groups]))
            .collect();
        let b: Vec<GemmInputB<i8>> = im2cols.iter().map(GemmInputB::Im2Col).collect();
        let b_zero = vec![zb; pixels];
        let mut out = filled_i32(n * geo.out_channels * pixels, |out| {
            exec.batched_gemm_uninit(
                out,
                &a,
                &b,
                GemmUninitOptions {
                    b_quant: Some(QuantParams {
                        zero_point: &b_zero,
                    }),
                    ..Default::default()
                },
            )
            .map(|_| ())
        })?;
        out.par_chunks_mut(pixels)
            .enumerate()
            .for_each(|(i, plane)| {
                let (img, c) = (i / geo.out_channels, i % geo.out_channels);
                let sums = &window_sums[img * groups + c / out_g];
                let z = self.zero[c];
                for (v, s) in plane.iter_mut().zip(sums) {
                    *v = epilogue.apply(*v - z * s, c).to_bits() as i32;
                }
            });
        Ok((out, [oh, ow]))
    }
}

/// The virtual im2col matrix of an (already padded) image, as rten's `build_im2col` lays it
/// out: rows `(channel, ky, kx)`, columns output pixels, both padded to the kernel's steps
/// (padded rows point past the image and read as 0).
fn im2col<'a>(
    image: NdTensorView<'a, i8, 3>,
    dims: [usize; 3],
    geo: &ConvGeometry,
    oh: usize,
    ow: usize,
    exec: &GemmExecutor<u8, i8, i32>,
) -> Im2Col<'a, i8> {
    let [chans, h, w] = dims;
    let [kh, kw] = geo.kernel;
    let (sc, sh, sw) = ((h * w) as i32, w as i32, 1i32);
    let n_rows = chans * kh * kw;
    let rows_padded = n_rows.next_multiple_of(exec.im2col_row_count_step());
    let max_y_offset = ((h - 1) * w) as i32;
    let max_x_offset = (w - 1) as i32;
    let mut rows = RowOffsets {
        chan: Vec::with_capacity(rows_padded),
        y: Vec::with_capacity(rows_padded),
        x: Vec::with_capacity(rows_padded),
    };
    for c in 0..chans {
        for ky in 0..kh {
            for kx in 0..kw {
                rows.chan.push(c as i32 * sc);
                rows.y.push((ky * geo.dilation[0]) as i32 * sh);
                rows.x.push((kx * geo.dilation[1]) as i32 * sw);
            }
        }
    }
    for _ in n_rows..rows_padded {
        rows.chan.push(0);
        rows.y.push(max_y_offset + 1);
        rows.x.push(max_x_offset + 1);
    }
    let n_cols = oh * ow;
    let cols_padded = n_cols.next_multiple_of(exec.im2col_col_count_step());
    let mut cols = ColOffsets {
        y: Vec::with_capacity(cols_padded),
        x: Vec::with_capacity(cols_padded),
    };
    for col in 0..cols_padded {
        let (py, px) = (col / ow, col % ow);
        cols.y.push((py * geo.stride[0]) as i32 * sh);
        cols.x.push((px * geo.stride[1]) as i32 * sw);
    }
    Im2Col {
        image,
        row_offsets: rows,
        col_offsets: cols,
        n_cols,
        n_rows,
        max_y_offset,
        max_x_offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic integers in `[lo, hi]`.
    fn ints(n: usize, lo: i32, hi: i32, seed: u64) -> Vec<i32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                lo + ((s >> 33) % (hi - lo + 1) as u64) as i32
            })
            .collect()
    }

    /// An epilogue that returns the (exactly representable) integer sum.
    fn raw(channels: usize) -> Epilogue {
        Epilogue {
            mul: vec![1.0; channels],
            add: vec![0.0; channels],
            output: None,
            post: None,
            relu: false,
        }
    }

    /// A grid of scale 1 and zero point 0 on `[qmin, qmax]`.
    fn unit(qmin: f32, qmax: f32) -> Grid {
        Grid {
            scale: 1.0,
            zero_point: 0.0,
            qmin,
            qmax,
        }
    }

    fn as_f32(bits: &[i32]) -> Vec<f32> {
        bits.iter().map(|&b| f32::from_bits(b as u32)).collect()
    }

    #[test]
    fn the_conv_gemm_equals_the_integer_convolution_on_edge_tiles() {
        let exec = executor();
        // (in, out, groups, kernel, stride, dilation, padding [t, l, b, r], h, w, input zp,
        // unsigned input, weight zero points)
        let cases = [
            (
                5,
                19,
                1,
                [3, 3],
                [2, 2],
                [1, 1],
                [1, 2, 0, 1],
                11,
                13,
                0,
                false,
                false,
            ),
            (
                6,
                10,
                2,
                [3, 2],
                [1, 2],
                [2, 1],
                [2, 0, 1, 3],
                9,
                7,
                0,
                false,
                true,
            ),
            (
                3,
                9,
                1,
                [7, 7],
                [2, 2],
                [1, 1],
                [3, 3, 3, 3],
                17,
                15,
                131,
                true,
                false,
            ),
            (
                8,
                33,
                1,
                [1, 1],
                [2, 2],
                [1, 1],
                [0, 0, 0, 0],
                9,
                9,
                -5,
                false,
                true,
            ),
        ];
        for (i, &(cin, cout, groups, kernel, stride, dilation, padding, h, w, zx, unsigned, wz)) in
            cases.iter().enumerate()
        {
            let n = 3;
            let geo = ConvGeometry {
                in_channels: cin,
                out_channels: cout,
                groups,
                kernel,
                stride,
                dilation,
                padding,
            };
            let (qmin, qmax) = if unsigned { (0, 255) } else { (-127, 127) };
            let x = ints(n * cin * h * w, qmin, qmax, i as u64);
            let in_g = cin / groups;
            let k = in_g * kernel[0] * kernel[1];
            let wq = ints(cout * k, -127, 127, 100 + i as u64);
            let wzero: Vec<i32> = (0..cout)
                .map(|c| if wz { (c as i32 % 7) - 3 } else { 0 })
                .collect();
            let weights = ConvWeights::new(&exec, &wq, &wzero, 128, geo);
            let grid = Grid {
                scale: 1.0,
                zero_point: zx as f32,
                qmin: qmin as f32,
                qmax: qmax as f32,
            };
            let xf: Vec<f32> = x.iter().map(|&v| (v - zx) as f32).collect();
            let (out, [oh, ow]) = weights
                .forward(&exec, &xf, [n, h, w], &grid, &raw(cout))
                .unwrap();
            let (_, _, eh, ew) = geo.sizes(h, w).unwrap();
            assert_eq!([oh, ow], [eh, ew], "case {i}");
            let out = as_f32(&out);
            let out_g = cout / groups;
            let mut checked = 0;
            for img in 0..n {
                for c in 0..cout {
                    let g = c / out_g;
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = 0i64;
                            for ci in 0..in_g {
                                for ky in 0..kernel[0] {
                                    for kx in 0..kernel[1] {
                                        let y = (oy * stride[0] + ky * dilation[0]) as i64
                                            - padding[0] as i64;
                                        let xx = (ox * stride[1] + kx * dilation[1]) as i64
                                            - padding[1] as i64;
                                        // Padding holds the zero point: (q - zp) = 0.
                                        if y < 0 || xx < 0 || y >= h as i64 || xx >= w as i64 {
                                            continue;
                                        }
                                        let ch = g * in_g + ci;
                                        let xv = x
                                            [((img * cin + ch) * h + y as usize) * w + xx as usize]
                                            - zx;
                                        let wv = wq[c * k + (ci * kernel[0] + ky) * kernel[1] + kx]
                                            - wzero[c];
                                        acc += (xv * wv) as i64;
                                    }
                                }
                            }
                            let found = out[((img * cout + c) * oh + oy) * ow + ox];
                            assert_eq!(
                                found as i64, acc,
                                "case {i}: image {img} channel {c} at ({oy}, {ox})"
                            );
                            checked += 1;
                        }
                    }
                }
            }
            assert_eq!(checked, n * cout * oh * ow);
        }
    }

    #[test]
    fn the_linear_gemm_equals_the_integer_product_on_edge_tiles() {
        let exec = executor();
        for (i, &(m, k, n, zx, unsigned, wz)) in [
            (13, 37, 45, 0, false, false),
            (1, 64, 33, 7, false, true),
            (9, 5, 70, 200, true, true),
        ]
        .iter()
        .enumerate()
        {
            let (qmin, qmax) = if unsigned { (0, 255) } else { (-127, 127) };
            let x = ints(m * k, qmin, qmax, i as u64);
            let wq = ints(k * n, -127, 127, 50 + i as u64);
            let wzero: Vec<i32> = (0..n)
                .map(|c| if wz { (c as i32 % 5) - 2 } else { 0 })
                .collect();
            let weights = LinearWeights::new(&exec, &wq, &wzero, 0, k, n);
            let grid = Grid {
                scale: 1.0,
                zero_point: zx as f32,
                qmin: qmin as f32,
                qmax: qmax as f32,
            };
            let xf: Vec<f32> = x.iter().map(|&v| (v - zx) as f32).collect();
            let out = as_f32(&weights.forward(&exec, &xf, m, &grid, &raw(n)).unwrap());
            for r in 0..m {
                for c in 0..n {
                    let acc: i32 = (0..k)
                        .map(|j| (x[r * k + j] - zx) * (wq[j * n + c] - wzero[c]))
                        .sum();
                    assert_eq!(out[r * n + c] as i32, acc, "case {i}: row {r} column {c}");
                }
            }
        }
    }

    #[test]
    fn the_epilogue_rescales_quantizes_the_output_applies_the_affine_map_then_relu() {
        let e = Epilogue {
            mul: vec![0.5],
            add: vec![0.25],
            output: Some(unit(-3.0, 3.0)),
            post: Some((vec![-2.0], vec![1.0])),
            relu: true,
        };
        // 3 * 0.5 + 0.25 = 1.75 -> round 2 -> 2 * -2 + 1 = -3 -> relu 0.
        assert_eq!(e.apply(3, 0), 0.0);
        // -5 * 0.5 + 0.25 = -2.25 -> -2 -> 5.
        assert_eq!(e.apply(-5, 0), 5.0);
        // -20 * 0.5 + 0.25 = -9.75 -> clamped to -3 -> 7.
        assert_eq!(e.apply(-20, 0), 7.0);
    }
}
