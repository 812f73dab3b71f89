//! The weight quantization grid of the one-shot quantizers (GPTQ, AWQ, SmoothQuant's W8A8) and
//! round-to-nearest on host matrices.
//!
//! - [`Quantizer`]: GPTQ's `Quantizer` (`quant.py` of IST-DASLab/gptq): scale and zero point of
//!   a row (or a group of a row, or a whole tensor) from its min / max, symmetric or
//!   asymmetric, optionally with the MSE clip search ([`ClipSearch`]), and
//!   [`quantize`]` = s * (clamp(round(x / s) + z, 0, maxq) - z)`.
//! - [`WeightScheme`]: the weight scheme as llm-compressor names it (`num_bits`, `type = "int"`,
//!   `symmetric`, `strategy = "tensor" | "channel" | "group"`, `group_size`), and [`Scheme`]
//!   with the presets `W4A16` / `W8A8`, parsed from an `[algorithm]` table
//!   ([`Scheme::from_table`]).
//! - [`rtn_quantize`]: round-to-nearest of a whole `[out, in]` weight (PyTorch layout) per tensor,
//!   channel (row) or group of `group_size` input columns.
//! - [`quantize_per_token`]: the activation side of W8A8 (symmetric absmax per row), the
//!   function the engine's evaluation applies to every Linear input.
//!
//! Rounding is half to even everywhere, as `torch.round` and `numpy.round` do.
//!
//! ```
//! use compress_quant::rtn::{Quantizer, quantize};
//!
//! // Asymmetric 4-bit on [-1, 2]: scale 3/15 = 0.2, zero round(1 / 0.2) = 5.
//! let p = Quantizer::new(4, false).fit(&[-1.0, 0.5, 2.0]);
//! assert!((p.scale - 0.2).abs() < 1e-7 && p.zero == 5.0);
//! assert!((p.quantize(0.45) - 0.4).abs() < 1e-6);
//! assert_eq!(quantize(0.0, 0.2, 5.0, 15.0), 0.0);
//! ```

use compress_core::error::check_keys;
use compress_core::oneshot::ActivationQuant;
use compress_core::toml;
use compress_core::{CompressError, Dense, Result};
use rayon::prelude::*;

/// `scale * (clamp(round(x / scale) + zero, 0, maxq) - zero)` (GPTQ's `quantize`; round half to
/// even).
#[inline]
pub fn quantize(x: f32, scale: f32, zero: f32, maxq: f32) -> f32 {
    let q = ((x / scale).round_ties_even() + zero).clamp(0.0, maxq);
    scale * (q - zero)
}

/// GPTQ's optional MSE clip search: the range is shrunk to `p * [min, max]` for
/// `p = 1 - i / grid`, `i = 0 .. maxshrink * grid`, keeping the `p` with the least
/// `sum |Q(x) - x|^norm`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipSearch {
    /// Grid points per unit of shrink (100).
    pub grid: usize,
    /// The largest shrink tried (0.8).
    pub maxshrink: f32,
    /// The error's norm (2.4).
    pub norm: f32,
}

impl Default for ClipSearch {
    fn default() -> Self {
        Self {
            grid: 100,
            maxshrink: 0.8,
            norm: 2.4,
        }
    }
}

/// The quantization parameters of one row, group or tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QParams {
    /// The step.
    pub scale: f32,
    /// The zero point, on the unsigned grid `0 ..= maxq`.
    pub zero: f32,
    /// `2^bits - 1`.
    pub maxq: f32,
}

impl QParams {
    /// [`quantize`] with these parameters.
    #[inline]
    pub fn quantize(&self, x: f32) -> f32 {
        quantize(x, self.scale, self.zero, self.maxq)
    }
}

/// GPTQ's `Quantizer` (`quant.py`): how parameters are fitted to a set of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    /// Bits, 2 ..= 8.
    pub bits: u32,
    /// Symmetric: `max |x|` on both sides and `zero = (maxq + 1) / 2` (the reference's choice:
    /// the grid is `[-2^(b-1), 2^(b-1) - 1] * scale`; as in the reference, a set with no
    /// negative value keeps `min = 0`, so its step is `max / maxq`); asymmetric: `[min, max]` (both widened
    /// to include 0) and `zero = round(-min / scale)`.
    pub symmetric: bool,
    /// The MSE clip search, if any.
    pub clip: Option<ClipSearch>,
}

impl Quantizer {
    /// A min / max quantizer without clip search.
    pub fn new(bits: u32, symmetric: bool) -> Self {
        Self {
            bits,
            symmetric,
            clip: None,
        }
    }

    /// `2^bits - 1`.
    pub fn maxq(&self) -> f32 {
        ((1u64 << self.bits) - 1) as f32
    }

    /// The parameters of `x` (GPTQ's `find_params` on one row): `min(x, 0)`, `max(x, 0)`,
    /// symmetric widening, a `[-1, 1]` range for an all-zero row, then the clip search if
    /// configured.
    pub fn fit(&self, x: &[f32]) -> QParams {
        let (mut lo, mut hi) = x
            .iter()
            .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        self.fit_range(&mut lo, &mut hi, x)
    }

    /// [`fit`](Self::fit) once `x`'s range `[lo, hi]` (both including 0) is known.
    fn fit_range(&self, lo: &mut f32, hi: &mut f32, x: &[f32]) -> QParams {
        let maxq = self.maxq();
        if self.symmetric {
            *hi = hi.max(lo.abs());
            if *lo < 0.0 {
                *lo = -*hi;
            }
        }
        if *lo == 0.0 && *hi == 0.0 {
            *lo = -1.0;
            *hi = 1.0;
        }
        let scale = (*hi - *lo) / maxq;
        let sym_zero = (maxq + 1.0) / 2.0;
        let zero = if self.symmetric {
            sym_zero
        } else {
            (-*lo / scale).round_ties_even()
        };
        let mut best = QParams { scale, zero, maxq };
        if let Some(clip) = self.clip {
            let mut best_err = f32::INFINITY;
            let steps = (clip.maxshrink * clip.grid as f32) as usize;
            for i in 0..steps {
                let p = 1.0 - i as f32 / clip.grid as f32;
                let (lo1, hi1) = (p * *lo, p * *hi);
                let scale1 = (hi1 - lo1) / maxq;
                let zero1 = if self.symmetric {
                    sym_zero
                } else {
                    (-lo1 / scale1).round_ties_even()
                };
                let err: f32 = x
                    .iter()
                    .map(|&v| (quantize(v, scale1, zero1, maxq) - v).abs().powf(clip.norm))
                    .sum();
                if err < best_err {
                    best_err = err;
                    best = QParams {
                        scale: scale1,
                        zero: zero1,
                        maxq,
                    };
                }
            }
        }
        best
    }
}

/// How a weight is split into parameter sets (llm-compressor's `strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// One scale for the whole tensor.
    Tensor,
    /// One scale per output channel (row of `[out, in]`).
    Channel,
    /// One scale per row and run of `group_size` input columns.
    Group(usize),
}

/// llm-compressor's weight `QuantizationArgs`: `{num_bits, type = "int", symmetric, strategy,
/// group_size, observer}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightScheme {
    /// The grid of one parameter set.
    pub quantizer: Quantizer,
    /// How the weight is split.
    pub strategy: Strategy,
}

impl WeightScheme {
    /// `W4A16`'s weights: int4, symmetric, groups of 128.
    pub fn w4a16() -> Self {
        Self {
            quantizer: Quantizer::new(4, true),
            strategy: Strategy::Group(128),
        }
    }

    /// `W8A8`'s weights: int8, symmetric, per channel.
    pub fn w8_channel() -> Self {
        Self {
            quantizer: Quantizer::new(8, true),
            strategy: Strategy::Channel,
        }
    }

    /// The group size, `None` unless [`Strategy::Group`].
    pub fn group_size(&self) -> Option<usize> {
        match self.strategy {
            Strategy::Group(g) => Some(g),
            _ => None,
        }
    }

    /// Check that the scheme fits the `[out, in]` weight of the Linear at `path`.
    ///
    /// # Errors
    /// [`CompressError::KernelMismatch`] naming `path` for a weight that is not 2-D or a
    /// `group_size` that does not divide the input width.
    pub fn check(&self, path: &str, shape: &[usize]) -> Result<()> {
        let mismatch = |kernel: Vec<i64>, reason: String| CompressError::KernelMismatch {
            path: path.to_string(),
            shape: shape.to_vec(),
            kernel,
            reason,
        };
        if shape.len() != 2 {
            return Err(mismatch(
                vec![],
                "a Linear weight [out, in] must be 2-D".into(),
            ));
        }
        if let Strategy::Group(g) = self.strategy
            && (g == 0 || !shape[1].is_multiple_of(g))
        {
            return Err(mismatch(
                vec![1, g as i64],
                format!(
                    "group_size {g} does not divide the input width {}{}",
                    shape[1],
                    dividing_power_of_two(g, shape[1])
                        .map(|p| format!(" ({p} does)"))
                        .unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }
}

/// The largest power of two `<= g` that divides `width`, for the error's hint (`None` when
/// only 1 does).
fn dividing_power_of_two(g: usize, width: usize) -> Option<usize> {
    let mut p = 1usize;
    while p * 2 <= g && width.is_multiple_of(p * 2) {
        p *= 2;
    }
    (p > 1 && width > 0).then_some(p)
}

/// A preset or explicit scheme: the weight grid and, for W8A8, the activation quantization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scheme {
    /// The weights.
    pub weights: WeightScheme,
    /// The activations (`W8A8`: dynamic per-token int8), `None` for weight-only schemes.
    pub activations: Option<ActivationQuant>,
}

/// The presets [`Scheme::from_table`] knows.
pub const PRESETS: &[&str] = &["W4A16", "W4A16_ASYM", "W8A16", "W8A8"];

/// The keys of an `[algorithm.weights]` table.
pub const WEIGHT_KEYS: &[&str] = &[
    "num_bits",
    "type",
    "symmetric",
    "strategy",
    "group_size",
    "observer",
];

impl Scheme {
    /// The `[algorithm]` keys [`from_table`](Self::from_table) reads (add them to an entry's
    /// `config_keys`).
    pub const KEYS: &'static [&'static str] = &["scheme", "weights"];

    /// A preset by llm-compressor's name: `W4A16` (int4 symmetric group 128), `W4A16_ASYM`
    /// (int4 asymmetric group 128), `W8A16` (int8 symmetric per channel), `W8A8` (int8
    /// symmetric per channel weights + dynamic per-token int8 activations).
    pub fn preset(name: &str) -> Option<Self> {
        let weight_only = |weights| Scheme {
            weights,
            activations: None,
        };
        match name.to_ascii_uppercase().as_str() {
            "W4A16" => Some(weight_only(WeightScheme::w4a16())),
            "W4A16_ASYM" => Some(weight_only(WeightScheme {
                quantizer: Quantizer::new(4, false),
                strategy: Strategy::Group(128),
            })),
            "W8A16" => Some(weight_only(WeightScheme::w8_channel())),
            "W8A8" => Some(Scheme {
                weights: WeightScheme::w8_channel(),
                activations: Some(ActivationQuant::PerTokenDynamic { bits: 8 }),
            }),
            _ => None,
        }
    }

    /// The scheme of `algorithm`'s `[algorithm]` table: `scheme = "<preset>"` (default
    /// `"W4A16"`), then the keys of an optional `weights = { num_bits, type, symmetric,
    /// strategy, group_size, observer }` table override the preset's weights. `observer =
    /// "mse"` turns on the clip search ([`ClipSearch::default`]), `"minmax"` (default) leaves it
    /// off; `group_size` alone implies `strategy = "group"`.
    ///
    /// # Errors
    /// Typed errors naming the key: [`CompressError::InvalidValue`] for an unknown preset,
    /// `type`, `strategy` or `observer`; [`CompressError::WrongType`] for a value of the wrong
    /// type; [`CompressError::OutOfRange`] for `num_bits` outside 2..=8 or `group_size` < 1;
    /// [`CompressError::UnknownKey`] for an unknown key of `weights`;
    /// [`CompressError::ConflictingKeys`] for `group_size` with a strategy other than `group`.
    pub fn from_table(algorithm: &str, table: &toml::Table) -> Result<Self> {
        let context = format!("[algorithm] of '{algorithm}'");
        let mut scheme = match table.get("scheme") {
            None => Self::preset("W4A16").expect("a known preset"),
            Some(toml::Value::String(name)) => {
                Self::preset(name).ok_or_else(|| CompressError::InvalidValue {
                    key: "scheme".into(),
                    context: context.clone(),
                    value: name.clone(),
                    reason: format!("expected one of {}", PRESETS.join(", ")),
                })?
            }
            Some(v) => return Err(wrong_type("scheme", &context, "a preset name", v)),
        };
        match table.get("weights") {
            None => {}
            Some(toml::Value::Table(w)) => {
                scheme.weights = parse_weights(scheme.weights, w, &format!("{context}.weights"))?;
            }
            Some(v) => return Err(wrong_type("weights", &context, "a table", v)),
        }
        Ok(scheme)
    }
}

fn wrong_type(key: &str, context: &str, expected: &str, found: &toml::Value) -> CompressError {
    CompressError::WrongType {
        key: key.into(),
        context: context.into(),
        expected: expected.into(),
        found: format!("{} {found}", found.type_str()),
    }
}

fn parse_weights(base: WeightScheme, w: &toml::Table, context: &str) -> Result<WeightScheme> {
    check_keys(w, WEIGHT_KEYS, context)?;
    let mut out = base;
    let string = |key: &str| -> Result<Option<&str>> {
        match w.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(wrong_type(key, context, "a string", v)),
        }
    };
    let integer = |key: &str| -> Result<Option<i64>> {
        match w.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) => Ok(Some(*n)),
            Some(v) => Err(wrong_type(key, context, "an integer", v)),
        }
    };
    let invalid = |key: &str, value: &str, reason: &str| CompressError::InvalidValue {
        key: key.into(),
        context: context.into(),
        value: value.into(),
        reason: reason.into(),
    };
    if let Some(t) = string("type")?
        && t != "int"
    {
        return Err(invalid("type", t, "only \"int\" is supported"));
    }
    if let Some(bits) = integer("num_bits")? {
        if !(2..=8).contains(&bits) {
            return Err(CompressError::OutOfRange {
                key: "num_bits".into(),
                context: context.into(),
                value: bits as f64,
                range: "2..=8".into(),
            });
        }
        out.quantizer.bits = bits as u32;
    }
    match w.get("symmetric") {
        None => {}
        Some(toml::Value::Boolean(b)) => out.quantizer.symmetric = *b,
        Some(v) => return Err(wrong_type("symmetric", context, "true or false", v)),
    }
    match string("observer")? {
        None => {}
        Some("minmax") => out.quantizer.clip = None,
        Some("mse") => out.quantizer.clip = Some(ClipSearch::default()),
        Some(o) => return Err(invalid("observer", o, "expected \"minmax\" or \"mse\"")),
    }
    let group_size = match integer("group_size")? {
        None => None,
        Some(g) if g >= 1 => Some(g as usize),
        Some(g) => {
            return Err(CompressError::OutOfRange {
                key: "group_size".into(),
                context: context.into(),
                value: g as f64,
                range: ">= 1".into(),
            });
        }
    };
    let strategy = string("strategy")?;
    out.strategy = match (strategy, group_size) {
        (None, None) => out.strategy,
        (None | Some("group"), Some(g)) => Strategy::Group(g),
        (Some("group"), None) => match out.strategy {
            Strategy::Group(g) => Strategy::Group(g),
            _ => Strategy::Group(128),
        },
        (Some(s @ ("tensor" | "channel")), Some(_)) => {
            return Err(CompressError::ConflictingKeys {
                first: "group_size".into(),
                second: format!("strategy = \"{s}\""),
                context: context.into(),
            });
        }
        (Some("tensor"), None) => Strategy::Tensor,
        (Some("channel"), None) => Strategy::Channel,
        (Some(s), _) => {
            return Err(invalid(
                "strategy",
                s,
                "expected \"tensor\", \"channel\" or \"group\"",
            ));
        }
    };
    Ok(out)
}

/// Round-to-nearest of the `[out, in]` weight of the Linear at `path`, in place, under
/// `scheme`: parameters from each tensor / row / row group's own min / max (and clip search),
/// then [`quantize`]. Rows run in parallel (rayon).
///
/// # Errors
/// As [`WeightScheme::check`].
pub fn rtn_quantize(weight: &mut Dense<f32>, scheme: &WeightScheme, path: &str) -> Result<()> {
    scheme.check(path, weight.shape())?;
    let d_in = weight.shape()[1];
    if d_in == 0 {
        return Ok(());
    }
    let q = scheme.quantizer;
    match scheme.strategy {
        Strategy::Tensor => {
            let p = q.fit(weight.data());
            weight
                .data_mut()
                .par_iter_mut()
                .for_each(|v| *v = p.quantize(*v));
        }
        Strategy::Channel => quantize_runs(weight.data_mut(), d_in, &q),
        Strategy::Group(g) => quantize_runs(weight.data_mut(), g, &q),
    }
    Ok(())
}

/// Every contiguous run of `run` values gets its own parameters.
fn quantize_runs(data: &mut [f32], run: usize, q: &Quantizer) {
    data.par_chunks_mut(run).for_each(|chunk| {
        let p = q.fit(chunk);
        for v in chunk {
            *v = p.quantize(*v);
        }
    });
}

/// The parameters round-to-nearest uses for the `[out, in]` weight under `scheme`, one per
/// row and group, row-major: `[out]` (channel), `[out * in / group_size]` (group) or `[1]`
/// (tensor).
///
/// # Errors
/// As [`WeightScheme::check`].
pub fn rtn_params(weight: &Dense<f32>, scheme: &WeightScheme, path: &str) -> Result<Vec<QParams>> {
    scheme.check(path, weight.shape())?;
    let q = scheme.quantizer;
    let d_in = weight.shape()[1].max(1);
    Ok(match scheme.strategy {
        Strategy::Tensor => vec![q.fit(weight.data())],
        Strategy::Channel => weight.data().par_chunks(d_in).map(|c| q.fit(c)).collect(),
        Strategy::Group(g) => weight.data().par_chunks(g).map(|c| q.fit(c)).collect(),
    })
}

/// Symmetric absmax quantization of each row of `x` (`row_len` values each) to `bits` bits, in
/// place: `scale = max(max |x_row|, 1e-5) / (2^(bits-1) - 1)`, `x = round(x / scale) * scale`
/// (SmoothQuant's `quantize_activation_per_token_absmax`; W8A8's dynamic per-token
/// activations). A trailing partial row is quantized on its own.
///
/// # Panics
/// If `row_len` is 0 or `bits` is outside 2..=16 (programmer errors).
pub fn quantize_per_token(x: &mut [f32], row_len: usize, bits: u32) {
    assert!(row_len > 0, "quantize_per_token: row_len must be positive");
    assert!(
        (2..=16).contains(&bits),
        "quantize_per_token: bits must be within 2..=16, got {bits}"
    );
    let qmax = ((1u32 << (bits - 1)) - 1) as f32;
    let one_row = |row: &mut [f32]| {
        let absmax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = absmax.max(1e-5) / qmax;
        for v in row {
            *v = (*v / scale).round_ties_even() * scale;
        }
    };
    if x.len() >= 1 << 16 {
        x.par_chunks_mut(row_len).for_each(one_row);
    } else {
        x.chunks_mut(row_len).for_each(one_row);
    }
}

#[cfg(test)]
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;

    /// By hand: sym 4-bit on [-0.6, 1.5]: max |x| 1.5, range [-1.5, 1.5], scale 3 / 15 = 0.2,
    /// zero 8; 0.31 -> round(1.55) = 2 -> 0.4; 1.5 -> round(7.5) + 8 = 16 -> clamp 15 -> 1.4;
    /// -0.6 -> round(-3) = -3 -> -0.6 (within f32).
    #[test]
    fn symmetric_four_bit_uses_zero_eight_and_clips_the_top() {
        let q = Quantizer::new(4, true);
        let p = q.fit(&[-0.6, 0.31, 1.5]);
        assert!((p.scale - 0.2).abs() < 1e-7, "{p:?}");
        assert_eq!((p.zero, p.maxq), (8.0, 15.0));
        assert!((p.quantize(0.31) - 0.4).abs() < 1e-6);
        assert!((p.quantize(1.5) - 1.4).abs() < 1e-6);
        assert!((p.quantize(-0.6) + 0.6).abs() < 1e-6);
    }

    /// By hand: asym 2-bit on [0.5, 2]: min widened to 0, scale 2 / 3, zero 0; 0.5 / (2/3) =
    /// 0.75 -> 1 -> 2/3; an all-zero row gets [-1, 1]: scale 2/3, zero round(1.5) = 2 (ties to
    /// even).
    #[test]
    fn asymmetric_ranges_include_zero_and_round_half_to_even() {
        let q = Quantizer::new(2, false);
        let p = q.fit(&[0.5, 2.0]);
        assert!((p.scale - 2.0 / 3.0).abs() < 1e-7 && p.zero == 0.0, "{p:?}");
        assert!((p.quantize(0.5) - 2.0 / 3.0).abs() < 1e-6);
        let z = q.fit(&[0.0, 0.0]);
        assert!((z.scale - 2.0 / 3.0).abs() < 1e-7 && z.zero == 2.0, "{z:?}");
        assert_eq!(quantize(0.5, 1.0, 0.0, 15.0), 0.0);
        assert_eq!(quantize(1.5, 1.0, 0.0, 15.0), 2.0);
    }

    /// By hand: 8-bit rows [1, -0.5, 0.25] and [0, 0, 0]: scale 1/127; 0.25 * 127 = 31.75 ->
    /// 32 / 127; the zero row stays zero (scale 1e-5 / 127).
    #[test]
    fn per_token_quantization_is_symmetric_absmax_per_row() {
        let mut x = [1.0, -0.5, 0.25, 0.0, 0.0, 0.0];
        quantize_per_token(&mut x, 3, 8);
        assert_eq!(x[0], 1.0);
        assert!((x[1] + 64.0 / 127.0).abs() < 1e-7, "{x:?}");
        assert!((x[2] - 32.0 / 127.0).abs() < 1e-7, "{x:?}");
        assert_eq!(&x[3..], &[0.0, 0.0, 0.0]);
    }

    // `python3 scripts/reference/gptq.py` (a NumPy port of GPTQ's quant.py): 4-bit on one row,
    // and round-to-nearest of a 4 x 8 weight per group of 4.
    const ROW_SYM_TRUE_MSE_FALSE_Q: [f32; 8] = [
        -0.8000000715255737,
        -0.1600000113248825,
        0.0,
        0.320000022649765,
        0.48000001907348633,
        1.1200001239776611,
        0.0,
        -0.320000022649765,
    ];
    const ROW_SYM_TRUE_MSE_TRUE_Q: [f32; 8] = [
        -0.8000000715255737,
        -0.1600000113248825,
        0.0,
        0.320000022649765,
        0.48000001907348633,
        1.1200001239776611,
        0.0,
        -0.320000022649765,
    ];
    const ROW_SYM_FALSE_MSE_FALSE_Q: [f32; 8] = [
        -0.8000000715255737,
        -0.13333334028720856,
        0.0,
        0.2666666805744171,
        0.5333333611488342,
        1.2000000476837158,
        0.0,
        -0.40000003576278687,
    ];
    const ROW_SYM_FALSE_MSE_TRUE_Q: [f32; 8] = [
        -0.7919999957084656,
        -0.13199999928474426,
        0.0,
        0.2639999985694885,
        0.527999997138977,
        1.187999963760376,
        0.0,
        -0.3959999978542328,
    ];
    const W: [f32; 32] = [
        -0.59375, 0.625, 1.046875, 1.03125, 1.8125, -0.390625, 0.546875, -0.359375, -1.421875,
        -0.703125, 0.140625, -0.921875, -0.1875, 1.125, 0.578125, 0.578125, 0.34375, -0.171875,
        -1.875, 0.984375, -1.5, 0.21875, -0.109375, 0.140625, 0.25, -0.328125, 0.90625, -1.28125,
        0.796875, -1.6875, 1.1875, -0.515625,
    ];
    const RTN_GROUP4_BITS_4_SYM_TRUE: [f32; 32] = [
        -0.5583333373069763,
        0.5583333373069763,
        0.9770833253860474,
        0.9770833253860474,
        1.691666603088379,
        -0.4833333194255829,
        0.4833333194255829,
        -0.24166665971279144,
        -1.5166666507720947,
        -0.7583333253860474,
        0.18958333134651184,
        -0.9479166269302368,
        -0.15000000596046448,
        1.0500000715255737,
        0.6000000238418579,
        0.6000000238418579,
        0.25,
        -0.25,
        -2.0,
        1.0,
        -1.600000023841858,
        0.20000000298023224,
        -0.20000000298023224,
        0.20000000298023224,
        0.17083333432674408,
        -0.34166666865348816,
        0.8541666865348816,
        -1.3666666746139526,
        0.8999999761581421,
        -1.7999999523162842,
        1.125,
        -0.44999998807907104,
    ];
    const RTN_GROUP4_BITS_3_SYM_FALSE: [f32; 32] = [
        -0.703125,
        0.703125,
        0.9375,
        0.9375,
        1.8883928060531616,
        -0.3147321343421936,
        0.6294642686843872,
        -0.3147321343421936,
        -1.3392857313156128,
        -0.6696428656578064,
        0.2232142835855484,
        -0.8928571343421936,
        -0.1875,
        1.125,
        0.5625,
        0.5625,
        0.4084821343421936,
        0.0,
        -2.0424106121063232,
        0.8169642686843872,
        -1.4732142686843872,
        0.2455357164144516,
        0.0,
        0.2455357164144516,
        0.3125,
        -0.3125,
        0.9375,
        -1.25,
        0.8214285969734192,
        -1.6428571939468384,
        1.2321429252624512,
        -0.4107142984867096,
    ];

    fn assert_close(got: &[f32], want: &[f32]) {
        for (g, e) in got.iter().zip(want) {
            assert!((g - e).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn the_quantizer_matches_the_reference_with_and_without_clip_search() {
        let row = [-0.8f32, -0.1, 0.05, 0.3, 0.55, 1.2, 0.0, -0.35];
        let cases = [
            (true, false, 0.16, 8.0, ROW_SYM_TRUE_MSE_FALSE_Q),
            (true, true, 0.16, 8.0, ROW_SYM_TRUE_MSE_TRUE_Q),
            (false, false, 0.133_333_34, 6.0, ROW_SYM_FALSE_MSE_FALSE_Q),
            (false, true, 0.132, 6.0, ROW_SYM_FALSE_MSE_TRUE_Q),
        ];
        for (sym, mse, scale, zero, want) in cases {
            let q = Quantizer {
                bits: 4,
                symmetric: sym,
                clip: mse.then(ClipSearch::default),
            };
            let p = q.fit(&row);
            assert!(
                (p.scale - scale).abs() < 1e-7 && p.zero == zero,
                "{sym} {mse}: {p:?}"
            );
            let got: Vec<f32> = row.iter().map(|&x| p.quantize(x)).collect();
            assert_close(&got, &want);
        }
    }

    #[test]
    fn round_to_nearest_per_group_matches_the_reference() {
        for (bits, sym, want) in [
            (4, true, RTN_GROUP4_BITS_4_SYM_TRUE),
            (3, false, RTN_GROUP4_BITS_3_SYM_FALSE),
        ] {
            let mut w = Dense::new(vec![4, 8], W.to_vec());
            let scheme = WeightScheme {
                quantizer: Quantizer::new(bits, sym),
                strategy: Strategy::Group(4),
            };
            rtn_quantize(&mut w, &scheme, "fc").unwrap();
            assert_close(w.data(), &want);
            let params = rtn_params(&Dense::new(vec![4, 8], W.to_vec()), &scheme, "fc").unwrap();
            assert_eq!(params.len(), 8);
        }
        // Per channel and per tensor: one parameter set per row / for all.
        let w = Dense::new(vec![4, 8], W.to_vec());
        let channel = WeightScheme {
            quantizer: Quantizer::new(4, true),
            strategy: Strategy::Channel,
        };
        assert_eq!(rtn_params(&w, &channel, "fc").unwrap().len(), 4);
        let tensor = WeightScheme {
            strategy: Strategy::Tensor,
            ..channel
        };
        let p = rtn_params(&w, &tensor, "fc").unwrap();
        // max |w| = 1.875: scale 3.75 / 15 = 0.25.
        assert_eq!((p.len(), p[0].scale, p[0].zero), (1, 0.25, 8.0));
    }

    #[test]
    fn a_group_size_that_does_not_divide_the_input_width_names_the_layer() {
        let mut w = Dense::new(vec![2, 6], vec![0.5; 12]);
        let scheme = WeightScheme {
            quantizer: Quantizer::new(4, true),
            strategy: Strategy::Group(4),
        };
        let err = rtn_quantize(&mut w, &scheme, "model.layers.0.mlp.down_proj").unwrap_err();
        assert_eq!(
            err.to_string(),
            "granularity kernel [1, 4] does not fit 'model.layers.0.mlp.down_proj' of shape \
             [2, 6]: group_size 4 does not divide the input width 6 (2 does)"
        );
    }

    #[test]
    fn presets_and_overrides_parse_from_the_algorithm_table() {
        let t: toml::Table = "scheme = \"W8A8\"".parse().unwrap();
        let s = Scheme::from_table("rtn", &t).unwrap();
        assert_eq!(s.weights, WeightScheme::w8_channel());
        assert_eq!(
            s.activations,
            Some(ActivationQuant::PerTokenDynamic { bits: 8 })
        );
        let t: toml::Table = "weights = { num_bits = 3, symmetric = false, group_size = 64, \
                              observer = \"mse\" }"
            .parse()
            .unwrap();
        let s = Scheme::from_table("gptq", &t).unwrap();
        assert_eq!(s.activations, None);
        assert_eq!(s.weights.strategy, Strategy::Group(64));
        assert_eq!(
            s.weights.quantizer,
            Quantizer {
                bits: 3,
                symmetric: false,
                clip: Some(ClipSearch::default())
            }
        );
        let t: toml::Table = "weights = { strategy = \"tensor\" }".parse().unwrap();
        let s = Scheme::from_table("gptq", &t).unwrap();
        assert_eq!(s.weights.strategy, Strategy::Tensor);
    }

    #[test]
    fn bad_scheme_keys_are_typed_errors_naming_the_key() {
        let err = |src: &str| {
            let t: toml::Table = src.parse().unwrap();
            Scheme::from_table("gptq", &t).unwrap_err().to_string()
        };
        assert_eq!(
            err("scheme = \"W4A4\""),
            "key 'scheme' in [algorithm] of 'gptq': invalid value 'W4A4' (expected one of \
             W4A16, W4A16_ASYM, W8A16, W8A8)"
        );
        assert_eq!(
            err("weights = { num_bits = 9 }"),
            "key 'num_bits' in [algorithm] of 'gptq'.weights: 9 is outside 2..=8"
        );
        assert_eq!(
            err("weights = { num_bits = 1 }"),
            "key 'num_bits' in [algorithm] of 'gptq'.weights: 1 is outside 2..=8"
        );
        assert_eq!(
            err("weights = { strategy = \"block\" }"),
            "key 'strategy' in [algorithm] of 'gptq'.weights: invalid value 'block' (expected \
             \"tensor\", \"channel\" or \"group\")"
        );
        assert_eq!(
            err("weights = { type = \"float\" }"),
            "key 'type' in [algorithm] of 'gptq'.weights: invalid value 'float' (only \"int\" \
             is supported)"
        );
        assert_eq!(
            err("weights = { group_sise = 64 }"),
            "unknown key 'group_sise' in [algorithm] of 'gptq'.weights (did you mean \
             'group_size'?)"
        );
        assert_eq!(
            err("weights = { strategy = \"channel\", group_size = 64 }"),
            "keys 'group_size' and 'strategy = \"channel\"' in [algorithm] of 'gptq'.weights \
             cannot be set together"
        );
        assert_eq!(
            err("weights = { group_size = 0 }"),
            "key 'group_size' in [algorithm] of 'gptq'.weights: 0 is outside >= 1"
        );
        assert_eq!(
            err("scheme = 4"),
            "key 'scheme' in [algorithm] of 'gptq': expected a preset name, found integer 4"
        );
    }
}
