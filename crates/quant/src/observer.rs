//! Observers: per-block ranges tracked over calibration or training batches.

use crate::params::qparams_from_range;
use compress_core::config::{QuantDtype, QuantScheme};
use compress_core::granularity::Scaling;
use compress_core::quantizer::QuantParams;
use compress_core::{CompressError, Dense, Result};

/// The minimum and maximum of each block of `value` (kept-dim shape of `scaling`), as NNI's
/// `amin` / `amax` reductions: a NaN in a block makes that block's extrema NaN.
///
/// # Errors
/// [`CompressError::KernelMismatch`] when the kernel does not fit `value`, and
/// [`CompressError::InvalidObservation`] when `value` is empty.
pub fn block_min_max(
    scaling: &Scaling,
    value: &Dense<f32>,
    path: &str,
) -> Result<(Dense<f32>, Dense<f32>)> {
    if value.numel() == 0 {
        return Err(CompressError::InvalidObservation {
            path: path.to_string(),
            shape: value.shape().to_vec(),
            reason: "the tensor is empty: it has no range".into(),
        });
    }
    let min = scaling.shrink_with(
        value,
        true,
        path,
        f32::INFINITY,
        |acc, x| if x.is_nan() || x < acc { x } else { acc },
        |acc, _| acc,
    )?;
    let max = scaling.shrink_with(
        value,
        true,
        path,
        f32::NEG_INFINITY,
        |acc, x| if x.is_nan() || x > acc { x } else { acc },
        |acc, _| acc,
    )?;
    Ok((min, max))
}

/// Something that tracks a per-block range over observations and turns it into quantization
/// parameters.
pub trait Observer: Send + Sync {
    /// Observe one value (a weight, or an activation batch).
    ///
    /// # Errors
    /// When the value does not fit the observer's granularity, or its block shape differs from
    /// earlier observations'.
    fn observe(&mut self, value: &Dense<f32>) -> Result<()>;

    /// The tracked `(min, max)` per block (kept-dim shape), `None` before any observation.
    fn tracked(&self) -> Option<(&Dense<f32>, &Dense<f32>)>;

    /// Forget everything observed.
    fn reset(&mut self);

    /// Scale and zero point from the tracked range ([`qparams_from_range`]); an unset scheme
    /// is symmetric, as in NNI. `None` before any observation.
    fn qparams(&self, dtype: QuantDtype, scheme: Option<QuantScheme>) -> Option<QuantParams> {
        let (min, max) = self.tracked()?;
        let (scale, zero_point) =
            qparams_from_range(min, max, dtype, scheme.unwrap_or(QuantScheme::Symmetric));
        Some(QuantParams {
            scale,
            zero_point,
            tracked_min: min.clone(),
            tracked_max: max.clone(),
        })
    }
}

/// The shared state of both observers: scaling, path and the tracked range.
#[derive(Debug, Clone, PartialEq)]
struct Tracked {
    scaling: Scaling,
    path: String,
    range: Option<(Dense<f32>, Dense<f32>)>,
}

impl Tracked {
    /// Reduce `value` per block, checking the block shape against earlier observations.
    fn current(&self, value: &Dense<f32>) -> Result<(Dense<f32>, Dense<f32>)> {
        let (min, max) = block_min_max(&self.scaling, value, &self.path)?;
        if let Some((old, _)) = &self.range
            && old.shape() != min.shape()
        {
            return Err(CompressError::InvalidObservation {
                path: self.path.clone(),
                shape: value.shape().to_vec(),
                reason: format!(
                    "its blocks have shape {:?}, earlier observations' {:?}",
                    min.shape(),
                    old.shape()
                ),
            });
        }
        Ok((min, max))
    }

    fn update(
        &mut self,
        value: &Dense<f32>,
        merge_min: impl Fn(f32, f32) -> f32,
        merge_max: impl Fn(f32, f32) -> f32,
    ) -> Result<()> {
        let (min, max) = self.current(value)?;
        self.range = Some(match self.range.take() {
            None => (min, max),
            Some((mut old_min, mut old_max)) => {
                for (o, &c) in old_min.data_mut().iter_mut().zip(min.data()) {
                    *o = merge_min(*o, c);
                }
                for (o, &c) in old_max.data_mut().iter_mut().zip(max.data()) {
                    *o = merge_max(*o, c);
                }
                (old_min, old_max)
            }
        });
        Ok(())
    }
}

/// Running global minimum and maximum per block: NNI's `PtqQuantizer` observer.
///
/// Each observation is reduced per block (`amin` / `amax` over the block), then merged
/// elementwise into the running range with `min` / `max` (NNI's `update_tracked_value`). The
/// order of observations does not matter.
///
/// ```
/// use compress_core::Dense;
/// use compress_quant::{MinMaxObserver, Observer, per_tensor_scaling};
///
/// let mut obs = MinMaxObserver::new(per_tensor_scaling(), "fc._input_");
/// obs.observe(&Dense::new(vec![1, 2], vec![-1.0, 2.0]))?;
/// obs.observe(&Dense::new(vec![1, 2], vec![0.5, 3.0]))?;
/// let (min, max) = obs.tracked().unwrap();
/// assert_eq!((min.data(), max.data()), (&[-1.0f32][..], &[3.0f32][..]));
/// # Ok::<(), compress_core::CompressError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MinMaxObserver(Tracked);

impl MinMaxObserver {
    /// An observer reducing per block of `scaling`; `path` names the target in errors.
    pub fn new(scaling: Scaling, path: impl Into<String>) -> Self {
        Self(Tracked {
            scaling,
            path: path.into(),
            range: None,
        })
    }

    /// The block scaling.
    pub fn scaling(&self) -> &Scaling {
        &self.0.scaling
    }
}

/// `torch.min` / `torch.max` of two tensors elementwise: NaN propagates.
fn nan_min(a: f32, b: f32) -> f32 {
    if a.is_nan() || a < b { a } else { b }
}

fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || a > b { a } else { b }
}

impl Observer for MinMaxObserver {
    fn observe(&mut self, value: &Dense<f32>) -> Result<()> {
        self.0.update(value, nan_min, nan_max)
    }

    fn tracked(&self) -> Option<(&Dense<f32>, &Dense<f32>)> {
        self.0.range.as_ref().map(|(a, b)| (a, b))
    }

    fn reset(&mut self) {
        self.0.range = None;
    }
}

/// Exponential moving average of the per-block minimum and maximum: NNI's `QATQuantizer`
/// observer (`track_min_max_val`).
///
/// The first observation initialises the range to its block extrema. Every later one updates
/// it as NNI's `update_ema` does:
///
/// `tracked = tracked * decay + (1 - decay) * current`
///
/// with `current` the observation's block `amin` (or `amax`), and the default decay 0.99.
/// There is no bias correction (NNI's `biased_ema` is used as is), and the arithmetic matches
/// torch's on float32 buffers: `1 - decay` is computed in double precision (Python floats), both
/// factors are then rounded to f32, and the update is a multiply, a multiply and an add in f32
/// (no fused multiply-add), left to right as written above.
///
/// NNI tracks only in training mode (`wrapper.training`); deciding when to observe is the
/// caller's job.
#[derive(Debug, Clone, PartialEq)]
pub struct EmaObserver {
    tracked: Tracked,
    decay: f64,
}

impl EmaObserver {
    /// NNI's decay.
    pub const DEFAULT_DECAY: f64 = 0.99;

    /// An observer with decay 0.99 reducing per block of `scaling`; `path` names the target in
    /// errors.
    pub fn new(scaling: Scaling, path: impl Into<String>) -> Self {
        Self {
            tracked: Tracked {
                scaling,
                path: path.into(),
                range: None,
            },
            decay: Self::DEFAULT_DECAY,
        }
    }

    /// The same observer with another decay.
    ///
    /// # Errors
    /// [`CompressError::OutOfRange`] when `decay` is not in `[0, 1]`.
    pub fn with_decay(mut self, decay: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(CompressError::OutOfRange {
                key: "decay".into(),
                context: format!("the EMA observer of '{}'", self.tracked.path),
                value: decay,
                range: "[0, 1]".into(),
            });
        }
        self.decay = decay;
        Ok(self)
    }

    /// The decay.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The block scaling.
    pub fn scaling(&self) -> &Scaling {
        &self.tracked.scaling
    }
}

impl Observer for EmaObserver {
    fn observe(&mut self, value: &Dense<f32>) -> Result<()> {
        let keep = self.decay as f32;
        let take = (1.0 - self.decay) as f32;
        let ema = move |old: f32, current: f32| old * keep + take * current;
        self.tracked.update(value, ema, ema)
    }

    fn tracked(&self) -> Option<(&Dense<f32>, &Dense<f32>)> {
        self.tracked.range.as_ref().map(|(a, b)| (a, b))
    }

    fn reset(&mut self) {
        self.tracked.range = None;
    }
}
