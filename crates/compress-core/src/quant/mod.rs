//! Quantization math shared by every quantizer: NNI v3's scale and zero-point formulas, fake
//! quantization (host and Burn, with STE or QAT-clipped gradients), min/max and EMA observers
//! over a granularity, and the calibration config (NNI's JSON, or safetensors).
//!
//! The flow of a post-training quantizer (NNI's `PtqQuantizer`):
//!
//! ```
//! use compress_core::{
//!     CalibrationConfig, CalibrationEntry, Dense, Granularity, MinMaxObserver, Observer,
//!     QuantDtype, QuantScheme, fake_quant_dense, quant_scaling,
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

mod calibration;
mod fake;
mod observer;
mod params;

pub use calibration::{CalibrationConfig, CalibrationEntry};
pub use fake::{FakeQuantGrad, broadcast_qparam, fake_quant, fake_quant_dense};
pub use observer::{EmaObserver, MinMaxObserver, Observer, block_min_max};
pub use params::{
    per_tensor_scaling, qparams_from_range, quant_bounds, quant_scaling, symmetric_zero_point,
};
