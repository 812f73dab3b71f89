//! int8 deploy layers for Burn's flex CPU backend: integer GEMMs that compute what
//! [`QuantSim`](crate::QuantSim) simulates, opt-in.
//!
//! Burn's CPU backends have no int8 GEMM (a quantized weight is dequantized on every call), so a
//! calibrated model runs no faster than the float one. These layers take a calibrated layer and
//! run it as QuantSim's integer semantics describe it:
//!
//! 1. the input is quantized per tensor with the layer's calibrated `_input_` scale and zero
//!    point (`round(clamp(zp + x / scale))`, NNI's clamp-round, ties to even);
//! 2. the weight sits on its calibrated int8 grid (per tensor or per output channel);
//! 3. products are accumulated exactly in i32 (rten-gemm's u8 x i8 kernels: AVX-512 VNNI,
//!    AVX2, NEON dot product);
//! 4. the sum is rescaled to f32 by `input_scale * weight_scale[c]`, the bias added in f32;
//! 5. an `_output_` target, when calibrated, fake-quantizes the result as QuantSim does.
//!
//! The output equals QuantSim's fake-quantized layer up to float rounding (QuantSim sums f32
//! products of dequantized values; here the sum is an exact integer scaled once).
//!
//! # Where it runs
//! The integer path runs when the input is a float32 tensor of the flex backend (reached without
//! a copy through `Tensor::try_into_primitive::<Flex>`) and the CPU's int8 kernel cannot
//! saturate (AVX2 without VNNI can, in `vpmaddubsw`). Everywhere else (capture, autodiff,
//! Vulkan or CUDA devices, such CPUs) the same layer runs standard Burn ops on the dequantized
//! weights with the same semantics: [`Int8Linear::forward_reference`] and
//! [`Int8Conv2d::forward_reference`] call that path directly.
//!
//! # Whole models
//! Burn modules have fixed forwards (`Conv2d::forward` always runs Burn's conv; there are no
//! forward hooks to swap a layer's kernel), so a model runs in int8 through a deploy version of
//! its type built from these layers: [`Int8ResNet`] for the zoo's ResNet-18/34.
//!
//! # What is refused
//! Typed errors ([`QuantError::UnsupportedQuant`], [`QuantError::MissingCalibration`]) for a
//! layer without a `weight` or `_input_` entry, per-channel activations, weight scales that vary
//! within an output channel (block granularities), grids wider than 8 bits, and `Same` padding.

mod conv;
mod kernel;
mod linear;
mod resnet;

pub use conv::Int8Conv2d;
pub use linear::Int8Linear;
pub use resnet::{Int8BasicBlock, Int8ResNet};

use burn::backend::Flex;
use burn::backend::flex::{FlexTensor, Layout};
use burn::prelude::*;
use burn::tensor::{Bytes, DType, Shape};
use compress_core::Dense;
use rayon::prelude::*;

use crate::{CalibrationConfig, CalibrationEntry, QuantError, Result, broadcast_qparam};
use kernel::Grid;

/// Whether the deploy layers run `x` on the int8 GEMM: a float32 tensor of the flex backend
/// (not autodiff, not capture), on a CPU whose int8 kernel cannot saturate. Otherwise they run
/// their `forward_reference` path.
pub fn runs_int8<const D: usize>(x: &Tensor<D>) -> bool {
    !kernel::executor().may_saturate() && flex_input(x).is_some()
}

/// The name of the int8 GEMM kernel rten-gemm picked for this CPU
/// (`x86_64-u8i8i32-avx512` with AVX-512, VNNI used where present).
pub fn int8_kernel_name() -> String {
    kernel::executor().kernel_name().to_string()
}

/// The calibration entry `module.target`, or [`QuantError::MissingCalibration`].
fn entry<'a>(
    calibration: &'a CalibrationConfig,
    module: &str,
    target: &str,
) -> Result<&'a CalibrationEntry> {
    calibration
        .get(module, target)
        .ok_or_else(|| QuantError::MissingCalibration {
            module: module.to_string(),
            target: target.to_string(),
        })
}

/// Refuse grids the 8-bit kernels cannot hold.
fn check_bits(entry: &CalibrationEntry, path: &str) -> Result<()> {
    if entry.quant_dtype.bits > 8 {
        return Err(QuantError::UnsupportedQuant {
            path: path.to_string(),
            reason: format!(
                "the int8 deploy path holds grids of at most 8 bits, not {}",
                entry.quant_dtype.bits
            ),
        });
    }
    Ok(())
}

/// A per-tensor activation grid from its calibration entry.
fn activation_grid(calibration: &CalibrationConfig, module: &str, target: &str) -> Result<Grid> {
    let e = entry(calibration, module, target)?;
    let path = format!("{module}.{target}");
    check_bits(e, &path)?;
    if e.scale.numel() != 1 || e.zero_point.numel() != 1 {
        return Err(QuantError::UnsupportedQuant {
            path,
            reason: format!(
                "the int8 deploy path quantizes activations per tensor; this one has {} scales",
                e.scale.numel()
            ),
        });
    }
    let scale = e.scale.data()[0];
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(QuantError::UnsupportedQuant {
            path,
            reason: format!("its scale {scale} is not a positive finite number"),
        });
    }
    let (qmin, qmax) = e.bounds();
    Ok(Grid {
        scale,
        zero_point: e.zero_point.data()[0],
        qmin,
        qmax,
    })
}

/// What an int8 Conv2d and Linear share: the `_input_` grid, the optional `_output_` grid, the bias
/// values (fake-quantized when calibrated), and the epilogue that rescales the i32 accumulators
/// (`input scale x weight scale` per output channel, plus the bias).
struct LayerQuant {
    input: Grid,
    bias: Option<Dense<f32>>,
    epilogue: kernel::Epilogue,
}

impl LayerQuant {
    fn new(
        ints: &WeightInts,
        bias: Option<&burn::module::Param<Tensor<1>>>,
        out_channels: usize,
        calibration: &CalibrationConfig,
        path: &str,
    ) -> Result<Self> {
        let input = activation_grid(calibration, path, "_input_")?;
        let output = match calibration.get(path, "_output_") {
            Some(_) => Some(activation_grid(calibration, path, "_output_")?),
            None => None,
        };
        let bias = match bias {
            Some(b) => Some(param_values(b.val(), calibration, path, "bias")?),
            None => None,
        };
        let epilogue = kernel::Epilogue {
            mul: ints.scale.iter().map(|s| input.scale * s).collect(),
            add: bias
                .as_ref()
                .map_or_else(|| vec![0.0; out_channels], |b| b.data().to_vec()),
            output,
            post: None,
            relu: false,
        };
        Ok(Self {
            input,
            bias,
            epilogue,
        })
    }
}

/// A weight on its calibrated grid: integers in the weight's layout, one scale and zero point
/// per output channel, and the dequantized values QuantSim computes with.
struct WeightInts {
    q: Vec<i32>,
    scale: Vec<f32>,
    zero: Vec<f32>,
    dequantized: Dense<f32>,
    /// `(qmin, qmax)` of the grid.
    bounds: (f32, f32),
}

impl WeightInts {
    /// Quantize `weight` (output channels on `axis`) with the `weight` entry of `module`.
    fn new(
        weight: &Dense<f32>,
        axis: usize,
        calibration: &CalibrationConfig,
        module: &str,
    ) -> Result<Self> {
        let e = entry(calibration, module, "weight")?;
        let path = format!("{module}.weight");
        check_bits(e, &path)?;
        let shape = weight.shape();
        let scales = broadcast_qparam(&e.scale, shape, &path, "scale")?;
        let zeros = broadcast_qparam(&e.zero_point, shape, &path, "zero_point")?;
        let channels = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        let (qmin, qmax) = e.bounds();
        let mut scale = vec![f32::NAN; channels];
        let mut zero = vec![f32::NAN; channels];
        let mut q = Vec::with_capacity(weight.numel());
        let mut dequantized = Vec::with_capacity(weight.numel());
        for (i, &w) in weight.data().iter().enumerate() {
            let c = (i / inner) % channels;
            let (s, z) = (scales.data()[i], zeros.data()[i]);
            if scale[c].is_nan() {
                (scale[c], zero[c]) = (s, z);
            } else if scale[c] != s || zero[c] != z {
                return Err(QuantError::UnsupportedQuant {
                    path,
                    reason: format!(
                        "its scale or zero point varies within output channel {c}; the int8 \
                         deploy path needs one per tensor or per output channel"
                    ),
                });
            }
            let grid = Grid {
                scale: s,
                zero_point: z,
                qmin,
                qmax,
            };
            let v = grid.quantize(w);
            q.push(v as i32);
            dequantized.push((v - z) * s);
        }
        Ok(Self {
            q,
            scale,
            zero,
            dequantized: Dense::new(shape.to_vec(), dequantized),
            bounds: (qmin, qmax),
        })
    }

    /// The zero points as integers.
    fn zero_ints(&self) -> Vec<i32> {
        self.zero.iter().map(|&z| z as i32).collect()
    }

    /// A grid with the weight's integer range (for its shifts into `u8` / `i8`).
    fn grid(&self) -> Grid {
        Grid {
            scale: 1.0,
            zero_point: 0.0,
            qmin: self.bounds.0,
            qmax: self.bounds.1,
        }
    }
}

/// A parameter's values on the host, fake-quantized when the calibration has an entry for it
/// (a quantized bias).
fn param_values<const D: usize>(
    value: Tensor<D>,
    calibration: &CalibrationConfig,
    module: &str,
    name: &str,
) -> Result<Dense<f32>> {
    let path = format!("{module}.{name}");
    let dense = Dense::from_tensor(value, &path)?;
    Ok(match calibration.get(module, name) {
        Some(e) => e.fake_quant(&dense)?,
        None => dense,
    })
}

/// `x`'s float32 flex primitive, contiguous, when the integer path can take it.
fn flex_input<const D: usize>(x: &Tensor<D>) -> Option<FlexTensor> {
    let t = x.clone().try_into_primitive::<Flex>().ok()?;
    if t.dtype() != DType::F32 {
        return None;
    }
    Some(if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    })
}

/// A flex float32 tensor of `dims` over `bits` (f32 bit patterns), without a copy.
fn flex_output<const D: usize>(bits: Vec<i32>, dims: [usize; D]) -> Tensor<D> {
    let t = FlexTensor::new(
        Bytes::from_elems(bits),
        Layout::contiguous(Shape::from(dims.to_vec())),
        DType::F32,
    );
    Tensor::from_primitive::<Flex>(t)
}

/// `x` fake-quantized on `grid` with Burn ops (the fallback path).
fn fake_quant_ops<const D: usize>(x: Tensor<D>, grid: &Grid) -> Tensor<D> {
    let device = x.device();
    let param = |v: f32| Tensor::<1>::from_floats([v], &device).reshape([1; D]);
    crate::fake_quant(
        x,
        param(grid.scale),
        param(grid.zero_point),
        grid.qmin,
        grid.qmax,
        crate::FakeQuantGrad::Ste,
    )
}

/// `x` fake-quantized on `grid`: on the host for a flex float32 tensor, else with Burn ops.
fn fake_quant_tensor<const D: usize>(x: Tensor<D>, grid: &Grid) -> Tensor<D> {
    match flex_input(&x) {
        Some(t) => {
            let values = t.as_slice::<f32>().expect("contiguous after to_contiguous");
            let bits: Vec<i32> = values
                .par_iter()
                .map(|&v| grid.fake_quant(v).to_bits() as i32)
                .collect();
            flex_output(bits, x.dims())
        }
        None => fake_quant_ops(x, grid),
    }
}
