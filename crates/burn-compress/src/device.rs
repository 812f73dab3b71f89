//! Choosing where models run by name: the CLI's `--device` and the benches'
//! `BURN_COMPRESS_DEVICE`.
//!
//! `cpu` is Burn's pure-Rust CPU backend (`Device::flex()`). `vulkan` is Burn's wgpu runtime pinned
//! to Vulkan (never wgpu's OpenGL fallback, which deadlocks on software drivers); it needs the
//! crate's `gpu` feature, and runs on a real GPU or, without one, on Mesa's lavapipe.
//!
//! ```
//! use burn_compress::device::{DeviceChoice, DeviceError};
//!
//! let cpu: DeviceChoice = "cpu".parse()?;
//! let device = cpu.init()?;
//! assert!(matches!("tpu".parse::<DeviceChoice>(), Err(DeviceError::Unknown { .. })));
//! # let _ = device;
//! # Ok::<(), DeviceError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use burn::prelude::Device;

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// Burn's CPU backend (`Device::flex()`).
    #[default]
    Cpu,
    /// Burn's wgpu runtime on Vulkan (feature `gpu`).
    Vulkan,
}

/// Why a device could not be chosen or started.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The name is not a device.
    #[error("unknown device '{name}': expected 'cpu' or 'vulkan'")]
    Unknown {
        /// The name given.
        name: String,
    },
    /// Vulkan asked of a build without the GPU backend.
    #[error(
        "device 'vulkan' needs burn-compress's `gpu` feature; this build has the CPU backend only \
         (build with `--features gpu`)"
    )]
    NotBuilt,
    /// The Vulkan runtime did not start.
    #[error("no Vulkan device: {reason} (without a GPU, install mesa-vulkan-drivers for lavapipe)")]
    NoAdapter {
        /// What wgpu reported.
        reason: String,
    },
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "cpu" | "flex" => Ok(Self::Cpu),
            "vulkan" | "gpu" => Ok(Self::Vulkan),
            _ => Err(DeviceError::Unknown { name: name.into() }),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Vulkan => "vulkan",
        })
    }
}

impl DeviceChoice {
    /// Starts (once per process) and returns the device.
    ///
    /// Burn's wgpu runtime can be initialised only once per process, so the Vulkan device is
    /// started on first use and cloned afterwards; a failed start is remembered too.
    pub fn init(self) -> Result<Device, DeviceError> {
        match self {
            Self::Cpu => Ok(Device::flex()),
            Self::Vulkan => vulkan(),
        }
    }
}

#[cfg(feature = "gpu")]
fn vulkan() -> Result<Device, DeviceError> {
    use burn::tensor::wgpu::WgpuBackend;
    static DEVICE: std::sync::OnceLock<Result<Device, String>> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            Device::wgpu_options()
                .graphics_api(WgpuBackend::Vulkan)
                .init()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|reason| DeviceError::NoAdapter { reason })
}

#[cfg(not(feature = "gpu"))]
fn vulkan() -> Result<Device, DeviceError> {
    Err(DeviceError::NotBuilt)
}
