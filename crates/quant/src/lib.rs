//! # compress-quant
//!
//! The quantization machinery of burn-compress, shared by every quantizer crate:
//!
//! - **Math** ([`qparams_from_range`], [`fake_quant`], [`fake_quant_dense`], [`quant_bounds`]):
//!   NNI v3's scale and zero-point formulas and fake quantization, on host data and on Burn
//!   tensors with straight-through or QAT-clipped gradients; the building blocks quantizer
//!   crates write their [`Quantizer`](compress_core::Quantizer) formulas with
//!   ([`fake_quant_blocks`], [`fake_quant_activation`], [`straight_through`]).
//! - **Observers** ([`MinMaxObserver`], [`EmaObserver`]) over any granularity.
//! - **Calibration I/O** ([`CalibrationConfig`]): NNI's JSON, or safetensors.
//! - **Weights** ([`WeightQuantization`]): fake-quantized parameters by Burn reparameterization
//!   ([`FakeQuantReparam`], holding its quantizer as a [`QuantizerHandle`]), trainable (QAT,
//!   LSQ, ...).
//! - **Simulation** ([`QuantSim`]): activations quantized at layer inputs and outputs through a
//!   replay of the captured forward; the user's model is never edited.
//! - **BN folding** ([`fuse_bn`]) with adjacency checked on the captured graph.
//! - **Deploy** ([`deploy`]): opt-in int8 layers for the flex CPU backend ([`deploy::Int8Linear`],
//!   [`deploy::Int8Conv2d`], [`deploy::Int8ResNet`]) that run QuantSim's integer semantics on an
//!   int8 GEMM (rten-gemm, AVX-512 VNNI), with standard Burn ops on other devices.
//! - **Export** ([`quantize_weights`], [`save_quantized`], [`load_quantized`],
//!   [`quantized_to_device`], [`burnpack_size`]): Burn's native quantized tensors
//!   (Q8S/Q4S/Q2S), packed.
//! - **One-shot grid** ([`rtn`]): GPTQ's quantizer (min/max, symmetric or asymmetric, MSE
//!   clip search), llm-compressor's weight schemes and presets (`W4A16`, `W8A8`),
//!   round-to-nearest of `[out, in]` weights and per-token activation quantization.
//! - **Mixed precision** ([`plan_mixed_precision`], [`MixedPlan`]): a weight width per layer
//!   (8/4/2 bits) from per-layer sensitivity, under a file-size budget ([`SizeBudget`]).
//!
//! The flow of a post-training quantizer (NNI's `PtqQuantizer`):
//!
//! ```
//! use compress_core::{Dense, Granularity, config::{QuantDtype, QuantScheme}};
//! use compress_quant::{
//!     CalibrationConfig, CalibrationEntry, MinMaxObserver, Observer, fake_quant_dense,
//!     quant_scaling,
//! };
//!
//! // A Linear weight in Burn's layout `[in = 3, out = 2]`, one scale per output channel.
//! let weight = Dense::new(vec![3, 2], vec![0.5, -1.0, 0.25, 2.0, -0.5, 1.0]);
//! let scaling = quant_scaling(&Granularity::OutChannel, 2, Some(1), Some(0), "fc.weight")?;
//! let mut observer = MinMaxObserver::new(scaling, "fc.weight");
//! observer.observe(&weight)?;
//! let int8 = QuantDtype::parse("int8").unwrap();
//! let params = observer.qparams(int8, Some(QuantScheme::Symmetric)).unwrap();
//! assert_eq!(params.scale.shape(), &[1, 2]);
//! let quantized = fake_quant_dense(&weight, &params.scale, &params.zero_point, int8)?;
//! assert!((quantized.data()[0] - 0.5).abs() < 0.5 / 127.0);
//!
//! let mut calibration = CalibrationConfig::new();
//! calibration.insert("fc", "weight", CalibrationEntry::new(params, int8, Some(QuantScheme::Symmetric)));
//! # Ok::<(), compress_core::CompressError>(())
//! ```

#![deny(missing_docs)]

mod calibration;
pub mod deploy;
mod error;
mod export;
mod fake;
mod fold;
mod handle;
mod mixed;
mod observer;
mod onnx;
mod params;
pub mod rtn;
mod sim;
mod weights;

pub use calibration::{CalibrationConfig, CalibrationEntry};
pub use error::{QuantError, Result};
pub use export::{
    AffinePolicy, QuantBits, QuantLevel, WeightQuant, burnpack_size, load_quantized,
    quantize_layers, quantize_weights, quantized_params, quantized_to_device, save_quantized,
};
pub use fake::{
    FakeQuantGrad, broadcast_qparam, fake_quant, fake_quant_activation, fake_quant_blocks,
    fake_quant_dense, straight_through,
};
pub use fold::{FoldBatchNorm, fuse_bn};
pub use handle::QuantizerHandle;
pub use mixed::{
    DEFAULT_CANDIDATES, LayerBits, LayerSensitivity, MixedPlan, MixedPrecision, SizeBudget,
    choose_bits, mixed_config, plan_mixed_precision, weight_sensitivity,
};
pub use observer::{EmaObserver, MinMaxObserver, Observer, block_min_max};
pub use onnx::{export_qdq, qdq_annotations};
pub use params::{
    per_tensor_scaling, qparams_from_range, quant_bounds, quant_scaling, symmetric_zero_point,
};
pub use sim::{ActivationTarget, QuantSim, SimPhase};
pub use weights::{FakeQuantReparam, QuantTarget, WeightQuantization, fake_quant_param};
