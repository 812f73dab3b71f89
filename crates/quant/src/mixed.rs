//! Mixed-precision weights: a bit width per layer (8, 4 or 2) chosen from each layer's
//! quantization sensitivity so that the exported file meets a size budget.
//!
//! # The method
//!
//! 1. **Sensitivity** ([`weight_sensitivity`]). For every weight the config quantizes and every
//!    candidate width `b`, only that weight is fake-quantized to `b` bits (the config's scheme
//!    and granularity, max-abs range: what PTQ does), every other parameter and every activation
//!    stay float, and the model runs on the calibration batches. The loss is the **relative
//!    output MSE** `Σ (y_b - y)² / Σ y²` against the float model's outputs `y`. Why this proxy
//!    rather than the metric drop: accuracy on a few hundred calibration images moves in coarse
//!    steps (one image is 0.2 points on 500) and is flat until a layer breaks, so it cannot rank
//!    the small perturbations that matter at 8 and 4 bits; the output error is smooth, needs no
//!    labels, costs one forward pass per (layer, width), and for small perturbations the errors
//!    of several layers add up to first order (the assumption of HAWQ's and ZeroQ's
//!    per-layer allocation), which is what lets the choice below sum per-layer losses.
//! 2. **Choice** ([`choose_bits`]). Each layer takes exactly one width; a width costs the bytes
//!    its weight takes in the file (packed words or one byte per value, plus its f32 scales) and
//!    its measured loss. Minimising the summed loss under a byte capacity is a multiple-choice
//!    knapsack, solved exactly by dynamic programming over the capacity (in units of
//!    `ceil(total / 4096)` bytes, costs rounded up, so a solution always fits; for models under
//!    4 KiB of weights the unit is one byte and the optimum is exact). A greedy by loss per saved
//!    byte is not optimal here: going from 8 to 2 bits in one layer can beat 8 to 4 in two.
//! 3. **The real file.** The capacity is the budget minus the container's overhead (header,
//!    float parameters, alignment), measured by writing the model in memory exactly as
//!    [`save_quantized`](crate::save_quantized) does ([`burnpack_size`](crate::burnpack_size)).
//!    Alignment padding is not additive, so the chosen plan's file is measured again and, if it
//!    is over budget, the capacity shrinks by the excess and the choice is redone. A budget that
//!    even every weight at the fewest bits cannot meet is [`QuantError::BudgetUnreachable`],
//!    naming the closest achievable size.
//!
//! [`MixedPlan::config`] rewrites the config with one rule per layer carrying the chosen
//! `quant_dtype` (every other setting, activations included, as the config resolved them), so
//! any quantizer calibrates, trains and exports the mixed model through the uniform path.
//! Per-tensor weight scales are the safe choice for Linear layers: Burn's CPU backend re-derives
//! block (per-channel) scales when a Linear reshapes its weight (see the export module).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::prelude::*;

use crate::export::packed_dim;
use crate::{
    AffinePolicy, MinMaxObserver, Observer, QuantBits, QuantError, QuantLevel, Result, WeightQuant,
    burnpack_size, fake_quant_dense, quant_scaling, quantize_weights,
};
use compress_core::config::{Mode, QuantDtype, QuantScheme, Rule, Selection, TargetSetting};
use compress_core::granularity::Scaling;
use compress_core::index::param_handles;
use compress_core::mask::deep_copy;
use compress_core::paths::set_param_values;
use compress_core::prune::read_handle;
use compress_core::{CompressConfig, Dense, Granularity, ModuleIndex};

/// The bit widths mixed precision chooses from by default, widest first.
pub const DEFAULT_CANDIDATES: [u32; 3] = [8, 4, 2];

/// A model-size budget: the most bytes the exported file may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SizeBudget {
    /// At most this many bytes.
    Bytes(u64),
    /// At least this many times smaller than the f32 file (`5x`).
    TimesSmaller(f64),
}

impl SizeBudget {
    /// Parse `5x` / `5.5x` (times smaller than f32), `48000` or `48000B` (bytes), `48kB` /
    /// `1.5MB` (powers of 1000) or `47KiB` / `1MiB` (powers of 1024). Spaces around the number
    /// and the unit are allowed.
    ///
    /// # Errors
    /// [`QuantError::InvalidMixedPrecision`] (key `size_budget`) naming the value: not a
    /// number, an unknown unit, zero or negative, or a factor below 1.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| QuantError::InvalidMixedPrecision {
            key: "size_budget",
            value: text.to_string(),
            reason: reason.to_string(),
        };
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = (t[..split].trim(), t[split..].trim());
        let value: f64 = number.parse().map_err(|_| {
            bad("expected a factor such as `5x` or a size such as `48000`, `48kB`, `47KiB`")
        })?;
        if !(value.is_finite() && value > 0.0) {
            return Err(bad("the budget must be positive"));
        }
        let bytes = |scale: f64| {
            let b = (value * scale).floor();
            if b < 1.0 {
                Err(bad("the budget is under one byte"))
            } else {
                Ok(SizeBudget::Bytes(b as u64))
            }
        };
        match unit {
            "x" | "X" => {
                if value < 1.0 {
                    Err(bad(
                        "a factor below 1x would allow a file larger than f32's",
                    ))
                } else {
                    Ok(SizeBudget::TimesSmaller(value))
                }
            }
            "" | "B" => bytes(1.0),
            "kB" | "KB" => bytes(1e3),
            "MB" => bytes(1e6),
            "KiB" => bytes(1024.0),
            "MiB" => bytes(1024.0 * 1024.0),
            _ => Err(bad(
                "unknown unit (use x for a factor, or B, kB, MB, KiB, MiB)",
            )),
        }
    }

    /// The budget in bytes, given the f32 file's size: `floor(f32_bytes / k)` for a factor.
    pub fn bytes(&self, f32_bytes: u64) -> u64 {
        match *self {
            SizeBudget::Bytes(b) => b,
            SizeBudget::TimesSmaller(k) => (f32_bytes as f64 / k).floor() as u64,
        }
    }
}

impl FromStr for SizeBudget {
    type Err = QuantError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for SizeBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeBudget::Bytes(b) => write!(f, "{b} bytes"),
            SizeBudget::TimesSmaller(k) => write!(f, "{k}x smaller than f32"),
        }
    }
}

/// A mixed-precision request: the budget and the widths to choose from.
#[derive(Debug, Clone, PartialEq)]
pub struct MixedPrecision {
    /// The most the exported file may take.
    pub budget: SizeBudget,
    /// Candidate weight widths, distinct, widest first (a subset of 8, 4, 2).
    pub candidates: Vec<u32>,
}

impl MixedPrecision {
    /// `budget`, choosing from 8, 4 and 2 bits.
    pub fn new(budget: SizeBudget) -> Self {
        Self {
            budget,
            candidates: DEFAULT_CANDIDATES.to_vec(),
        }
    }

    /// The same budget choosing from `bits` (any order, duplicates dropped).
    ///
    /// # Errors
    /// [`QuantError::InvalidMixedPrecision`] (key `bits`) for an empty list or a width other
    /// than 8, 4 or 2 (the widths Burn stores symmetric and packed).
    pub fn with_candidates(mut self, bits: &[u32]) -> Result<Self> {
        let bad = |reason: String| QuantError::InvalidMixedPrecision {
            key: "bits",
            value: format!("{bits:?}"),
            reason,
        };
        if bits.is_empty() {
            return Err(bad("no bit width to choose from".into()));
        }
        if let Some(b) = bits.iter().find(|b| !DEFAULT_CANDIDATES.contains(b)) {
            return Err(bad(format!("{b} bits: the widths are 8, 4 and 2")));
        }
        let mut c = bits.to_vec();
        c.sort_unstable_by(|a, b| b.cmp(a));
        c.dedup();
        self.candidates = c;
        Ok(self)
    }
}

/// How much one weight's quantization costs at each candidate width.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSensitivity {
    /// Layer path (`fc1`).
    pub layer: String,
    /// Parameter path (`fc1.weight`).
    pub path: String,
    /// Elements of the weight.
    pub numel: usize,
    /// Relative output MSE with only this weight at each width (bits -> loss).
    pub loss: BTreeMap<u32, f64>,
    /// Bytes the weight takes in the file at each width: values (packed 4- and 2-bit words, one
    /// byte per 8-bit value) plus the f32 scales.
    pub bytes: BTreeMap<u32, u64>,
}

/// The width chosen for one weight.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerBits {
    /// Layer path.
    pub layer: String,
    /// Parameter path.
    pub path: String,
    /// The chosen width.
    pub bits: u32,
    /// Its measured loss alone (relative output MSE).
    pub loss: f64,
    /// Its bytes in the file (values and scales).
    pub bytes: u64,
}

/// The outcome of [`choose_bits`]: a width per weight and the file it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct MixedPlan {
    /// One entry per quantized weight, in config order.
    pub layers: Vec<LayerBits>,
    /// The f32 file's size (bytes).
    pub f32_bytes: u64,
    /// The budget (bytes).
    pub budget_bytes: u64,
    /// The exported file's exact size with these widths (bytes), measured on the container.
    pub file_bytes: u64,
    /// The summed per-layer losses of the choice (the knapsack's objective).
    pub predicted_loss: f64,
    /// Every layer's sensitivity, as measured.
    pub sensitivity: Vec<LayerSensitivity>,
}

impl MixedPlan {
    /// The width chosen for `layer`.
    pub fn bits(&self, layer: &str) -> Option<u32> {
        self.layers
            .iter()
            .find(|l| l.layer == layer)
            .map(|l| l.bits)
    }

    /// How many times smaller than the f32 file the exported file is.
    pub fn ratio(&self) -> f64 {
        self.f32_bytes as f64 / self.file_bytes.max(1) as f64
    }

    /// `config` with the chosen widths: every quantization target as the config resolves it
    /// against `index`, written out as one rule per layer (`op_names = [layer]`, the layer's
    /// targets and their full settings, its `fuse_names` groups), the weights' `quant_dtype`
    /// replaced by `int<bits>`. Rules of other modes follow unchanged.
    ///
    /// # Errors
    /// Config resolution errors; [`QuantError::InvalidMixedPrecision`] when a planned layer is
    /// not a quantization target of `config`.
    pub fn config(&self, config: &CompressConfig, index: &ModuleIndex) -> Result<CompressConfig> {
        let bits: BTreeMap<&str, u32> = self
            .layers
            .iter()
            .map(|l| (l.path.as_str(), l.bits))
            .collect();
        mixed_config(config, index, &bits)
    }
}

/// A weight whose width is chosen.
struct WeightTarget {
    layer: String,
    path: String,
    shape: Vec<usize>,
    scheme: Option<QuantScheme>,
    scaling: Scaling,
    keep: Vec<usize>,
}

/// The `weight` targets of `config`'s quantization rules.
fn weight_targets(config: &CompressConfig, index: &ModuleIndex) -> Result<Vec<WeightTarget>> {
    let mut out = Vec::new();
    for t in crate::weights::quantization_targets(config, index)? {
        if t.name != "weight" {
            continue;
        }
        let granularity = t
            .setting
            .granularity
            .clone()
            .unwrap_or(Granularity::Default);
        let scaling = quant_scaling(&granularity, t.shape.len(), t.out_axis, t.in_axis, &t.path)?;
        let keep = scaling.shrunk_shape(&t.shape, true, &t.path)?;
        out.push(WeightTarget {
            layer: t.layer,
            path: t.path,
            shape: t.shape,
            scheme: t.setting.quant_scheme,
            scaling,
            keep,
        });
    }
    if out.is_empty() {
        return Err(QuantError::InvalidMixedPrecision {
            key: "config",
            value: String::new(),
            reason: "it quantizes no layer's `weight`: mixed precision has nothing to choose"
                .into(),
        });
    }
    Ok(out)
}

fn dtype(bits: u32) -> QuantDtype {
    QuantDtype { signed: true, bits }
}

/// The export's scale level for a kept-dim shape: per tensor, or one axis at full extent.
fn level(t: &WeightTarget) -> Result<QuantLevel> {
    let wide: Vec<usize> = (0..t.keep.len()).filter(|&d| t.keep[d] > 1).collect();
    match wide.as_slice() {
        [] => Ok(QuantLevel::PerTensor),
        [d] if t.keep[*d] == t.shape[*d] => Ok(QuantLevel::PerAxis(*d)),
        _ => Err(QuantError::UnsupportedQuant {
            path: t.path.clone(),
            reason: format!(
                "scales of shape {:?} are neither per tensor nor per channel",
                t.keep
            ),
        }),
    }
}

/// Bytes of a weight at `bits` in the file: values plus f32 scales.
fn weight_bytes(t: &WeightTarget, bits: u32) -> u64 {
    let numel: usize = t.shape.iter().product();
    let values = if bits >= 8 {
        numel
    } else {
        packed_dim(&t.shape, 32 / bits as usize).1 * 4
    };
    let scales: usize = t.keep.iter().product();
    (values + 4 * scales) as u64
}

/// Sum of squares of `a - b` and of `b`, over flattened outputs.
fn squared_error(a: &[f32], b: &[f32]) -> (f64, f64) {
    a.iter().zip(b).fold((0.0, 0.0), |(e, n), (&x, &y)| {
        let d = f64::from(x) - f64::from(y);
        (e + d * d, n + f64::from(y) * f64::from(y))
    })
}

/// Every quantized weight's sensitivity: the relative output MSE with only that weight
/// fake-quantized to each of `candidates` bits (the config's scheme and granularity, max-abs
/// range), on `batches`, against the float model; and its bytes at each width. `model` is not
/// changed.
///
/// # Errors
/// [`QuantError::InvalidMixedPrecision`] for no batches or a config without weight targets;
/// config and granularity errors; a weight that cannot be read (already quantized).
pub fn weight_sensitivity<M: Module, const DI: usize, const DO: usize>(
    model: &M,
    config: &CompressConfig,
    candidates: &[u32],
    batches: &[Tensor<DI>],
    forward: impl Fn(&M, Tensor<DI>) -> Tensor<DO>,
) -> Result<Vec<LayerSensitivity>> {
    if batches.is_empty() {
        return Err(QuantError::InvalidMixedPrecision {
            key: "calib",
            value: "0".into(),
            reason: "sensitivity needs at least one calibration batch".into(),
        });
    }
    let inference = model.valid();
    let index = ModuleIndex::from_module(&inference);
    let targets = weight_targets(config, &index)?;
    let outputs = |m: &M| -> Result<Vec<Vec<f32>>> {
        batches
            .iter()
            .map(|x| {
                Dense::from_tensor(forward(m, x.clone()), "<output>")
                    .map(Dense::into_data)
                    .map_err(QuantError::from)
            })
            .collect()
    };
    let reference = outputs(&inference)?;
    let handles = param_handles(&inference, |p| targets.iter().any(|t| t.path == p));
    let mut out = Vec::with_capacity(targets.len());
    for t in &targets {
        let w = read_handle(&handles, &t.path)?;
        let mut observer = MinMaxObserver::new(t.scaling.clone(), t.path.clone());
        observer.observe(&w)?;
        let mut loss = BTreeMap::new();
        let mut bytes = BTreeMap::new();
        for &b in candidates {
            let params = observer
                .qparams(dtype(b), t.scheme)
                .expect("the observer has seen the weight");
            let q = fake_quant_dense(&w, &params.scale, &params.zero_point, dtype(b))?;
            let values = BTreeMap::from([(t.path.clone(), q.into_data())]);
            let perturbed = set_param_values(deep_copy(&inference), &values);
            let (err, norm) = outputs(&perturbed)?
                .iter()
                .zip(&reference)
                .map(|(a, r)| squared_error(a, r))
                .fold((0.0, 0.0), |(e, n), (de, dn)| (e + de, n + dn));
            loss.insert(b, err / norm.max(f64::MIN_POSITIVE));
            bytes.insert(b, weight_bytes(t, b));
        }
        out.push(LayerSensitivity {
            layer: t.layer.clone(),
            path: t.path.clone(),
            numel: w.numel(),
            loss,
            bytes,
        });
    }
    Ok(out)
}

/// The exact file size of `model` with each weight of `targets` quantized to its width.
fn file_size<M: Module>(model: &M, targets: &[WeightTarget], bits: &[u32]) -> Result<u64> {
    let mut plan = BTreeMap::new();
    for (t, &b) in targets.iter().zip(bits) {
        let value = QuantBits::from_nni(&format!("int{b}")).expect("candidates are 8, 4 or 2 bits");
        plan.insert(t.path.clone(), WeightQuant::new(value, level(t)?));
    }
    burnpack_size(&quantize_weights(model, &plan, AffinePolicy::Requantize)?)
}

/// Multiple-choice knapsack: one option `(bytes, loss)` per item, least summed loss with summed
/// bytes at most `capacity`; `None` when even the cheapest options exceed it. Exact in units of
/// `ceil(total / 4096)` bytes, costs rounded up (so the answer always fits); on equal loss the
/// earlier option (the wider width) wins.
pub(crate) fn knapsack(options: &[Vec<(u64, f64)>], capacity: u64) -> Option<Vec<usize>> {
    let total: u64 = options
        .iter()
        .map(|o| o.iter().map(|c| c.0).max().unwrap_or(0))
        .sum();
    let unit = total.div_ceil(4096).max(1);
    // The widest options, each rounded up, always fit a capacity above them.
    let widest: u64 = options
        .iter()
        .map(|o| o.iter().map(|c| c.0.div_ceil(unit)).max().unwrap_or(0))
        .sum();
    let cap = (capacity / unit).min(widest) as usize;
    let inf = f64::INFINITY;
    // best[j]: least loss of the items so far within j units; choice[i][j]: item i's option.
    let mut best = vec![0.0f64; cap + 1];
    let mut choice = vec![vec![usize::MAX; cap + 1]; options.len()];
    for (i, opts) in options.iter().enumerate() {
        let mut next = vec![inf; cap + 1];
        for j in 0..=cap {
            for (k, &(bytes, loss)) in opts.iter().enumerate() {
                let w = bytes.div_ceil(unit) as usize;
                if w > j || best[j - w] == inf {
                    continue;
                }
                let v = best[j - w] + loss;
                if v < next[j] {
                    next[j] = v;
                    choice[i][j] = k;
                }
            }
        }
        best = next;
    }
    if best[cap] == inf {
        return None;
    }
    let mut picked = vec![0; options.len()];
    let mut j = cap;
    for i in (0..options.len()).rev() {
        let k = choice[i][j];
        picked[i] = k;
        j -= options[i][k].0.div_ceil(unit) as usize;
    }
    Some(picked)
}

/// Choose a width per weight of `config` from `sensitivity` (as [`weight_sensitivity`] measured
/// it on `model`) so that the exported file of `model` fits `mixed.budget` with the least summed
/// loss (see the module docs).
///
/// # Errors
/// [`QuantError::BudgetUnreachable`] when every weight at the fewest bits is still too big,
/// with the closest achievable size; [`QuantError::InvalidMixedPrecision`] when `sensitivity`
/// lacks a weight of the config or a candidate width; export errors (a granularity Burn cannot
/// store).
pub fn choose_bits<M: Module>(
    model: &M,
    config: &CompressConfig,
    mixed: &MixedPrecision,
    sensitivity: Vec<LayerSensitivity>,
) -> Result<MixedPlan> {
    let inference = model.valid();
    let index = ModuleIndex::from_module(&inference);
    let targets = weight_targets(config, &index)?;
    let candidates = &mixed.candidates;
    let mut options = Vec::with_capacity(targets.len());
    let mut rows = Vec::with_capacity(targets.len());
    for t in &targets {
        let s = sensitivity
            .iter()
            .find(|s| s.path == t.path)
            .ok_or_else(|| QuantError::InvalidMixedPrecision {
                key: "sensitivity",
                value: t.path.clone(),
                reason: "no sensitivity was measured for this weight".into(),
            })?;
        let opts = candidates
            .iter()
            .map(|b| match s.loss.get(b) {
                Some(&loss) => Ok((weight_bytes(t, *b), loss)),
                None => Err(QuantError::InvalidMixedPrecision {
                    key: "sensitivity",
                    value: t.path.clone(),
                    reason: format!("no loss was measured at {b} bits"),
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        options.push(opts);
        rows.push(s.clone());
    }
    let f32_bytes = burnpack_size(&inference)?;
    let budget = mixed.budget.bytes(f32_bytes);
    let narrowest = *candidates.last().expect("candidates are never empty");
    let all = |b: u32| vec![b; targets.len()];
    let smallest = file_size(&inference, &targets, &all(narrowest))?;
    if smallest > budget {
        return Err(QuantError::BudgetUnreachable {
            budget,
            closest: smallest,
            closest_ratio: f32_bytes as f64 / smallest.max(1) as f64,
            bits: narrowest,
            f32_bytes,
        });
    }
    let data =
        |picked: &[usize]| -> u64 { picked.iter().zip(&options).map(|(&k, o)| o[k].0).sum() };
    let widest = vec![0; targets.len()];
    let widest_bits: Vec<u32> = widest.iter().map(|&k| candidates[k]).collect();
    let overhead = file_size(&inference, &targets, &widest_bits)? as i64 - data(&widest) as i64;
    let mut capacity = budget as i64 - overhead;
    let narrowest_picks = vec![candidates.len() - 1; targets.len()];
    let mut picked = narrowest_picks.clone();
    let mut file_bytes = smallest;
    // Alignment padding is not additive: measure the choice, shrink the capacity by any excess.
    for _ in 0..16 {
        let Some(p) = u64::try_from(capacity)
            .ok()
            .and_then(|c| knapsack(&options, c))
        else {
            break;
        };
        let bits: Vec<u32> = p.iter().map(|&k| candidates[k]).collect();
        let size = file_size(&inference, &targets, &bits)?;
        if size <= budget {
            picked = p;
            file_bytes = size;
            break;
        }
        capacity -= (size - budget) as i64;
    }
    let layers: Vec<LayerBits> = targets
        .iter()
        .zip(&picked)
        .zip(&options)
        .map(|((t, &k), o)| LayerBits {
            layer: t.layer.clone(),
            path: t.path.clone(),
            bits: candidates[k],
            loss: o[k].1,
            bytes: o[k].0,
        })
        .collect();
    let predicted_loss = layers.iter().map(|l| l.loss).sum();
    Ok(MixedPlan {
        layers,
        f32_bytes,
        budget_bytes: budget,
        file_bytes,
        predicted_loss,
        sensitivity: rows,
    })
}

/// Measure sensitivity on `batches` ([`weight_sensitivity`]) and choose the widths
/// ([`choose_bits`]) in one call.
///
/// # Errors
/// Those of both.
pub fn plan_mixed_precision<M: Module, const DI: usize, const DO: usize>(
    model: &M,
    config: &CompressConfig,
    mixed: &MixedPrecision,
    batches: &[Tensor<DI>],
    forward: impl Fn(&M, Tensor<DI>) -> Tensor<DO>,
) -> Result<MixedPlan> {
    let sensitivity = weight_sensitivity(model, config, &mixed.candidates, batches, forward)?;
    choose_bits(model, config, mixed, sensitivity)
}

/// `config` with the weights at `bits` (parameter path -> width): every quantization target as
/// `config` resolves it against `index`, one rule per layer in order of first appearance, the
/// listed weights' `quant_dtype` replaced by `int<bits>`; rules of other modes follow
/// unchanged. The result resolves to the same targets and settings, apart from those widths.
///
/// # Errors
/// Config resolution errors; [`QuantError::InvalidMixedPrecision`] when a path of `bits` is not
/// a quantization target of `config`.
pub fn mixed_config(
    config: &CompressConfig,
    index: &ModuleIndex,
    bits: &BTreeMap<&str, u32>,
) -> Result<CompressConfig> {
    let targets = crate::weights::quantization_targets(config, index)?;
    if let Some(missing) = bits.keys().find(|p| !targets.iter().any(|t| t.path == **p)) {
        return Err(QuantError::InvalidMixedPrecision {
            key: "bits",
            value: missing.to_string(),
            reason: "not a quantization target of the config".into(),
        });
    }
    let mut layers: Vec<(String, Vec<(String, TargetSetting)>)> = Vec::new();
    for t in targets {
        let mut setting = t.setting.clone();
        if let Some(&b) = bits.get(t.path.as_str()) {
            setting.quant_dtype = Some(dtype(b));
        }
        match layers.iter_mut().find(|(l, _)| *l == t.layer) {
            Some((_, names)) => names.push((t.name, setting)),
            None => layers.push((t.layer, vec![(t.name, setting)])),
        }
    }
    let fuse: Vec<Vec<String>> = config
        .rules
        .iter()
        .filter(|r| r.mode == Mode::Quantization)
        .flat_map(|r| r.fuse_names.iter().cloned())
        .collect();
    let mut rules: Vec<Rule> = layers
        .into_iter()
        .enumerate()
        .map(|(i, (layer, names))| Rule {
            index: i,
            mode: Mode::Quantization,
            selection: Selection {
                op_names: vec![layer.clone()],
                ..Selection::default()
            },
            target_names: Some(names.iter().map(|(n, _)| n.clone()).collect()),
            shortcut: TargetSetting::default(),
            target_settings: names.into_iter().collect(),
            fuse_names: fuse.iter().filter(|g| g[0] == layer).cloned().collect(),
        })
        .collect();
    for r in config.rules.iter().filter(|r| r.mode != Mode::Quantization) {
        let mut r = r.clone();
        r.index = rules.len();
        rules.push(r);
    }
    Ok(CompressConfig {
        algorithm: config.algorithm.clone(),
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_with_units_and_refuse_bad_text() {
        assert_eq!(
            SizeBudget::parse("5x").unwrap(),
            SizeBudget::TimesSmaller(5.0)
        );
        assert_eq!(
            SizeBudget::parse(" 2.5 X ").unwrap(),
            SizeBudget::TimesSmaller(2.5)
        );
        assert_eq!(
            SizeBudget::parse("48000").unwrap(),
            SizeBudget::Bytes(48000)
        );
        assert_eq!(SizeBudget::parse("48kB").unwrap(), SizeBudget::Bytes(48000));
        assert_eq!(
            SizeBudget::parse("1.5MB").unwrap(),
            SizeBudget::Bytes(1_500_000)
        );
        assert_eq!(
            SizeBudget::parse("47KiB").unwrap(),
            SizeBudget::Bytes(48128)
        );
        assert_eq!(
            SizeBudget::parse("1MiB").unwrap(),
            SizeBudget::Bytes(1 << 20)
        );
        assert_eq!(SizeBudget::TimesSmaller(5.0).bytes(246_000), 49_200);
        assert_eq!(SizeBudget::TimesSmaller(3.0).bytes(10), 3);
        assert_eq!(SizeBudget::Bytes(7).bytes(246_000), 7);
        for (text, reason) in [
            ("five", "expected a factor"),
            ("5y", "unknown unit"),
            ("0.5x", "below 1x"),
            ("0", "must be positive"),
            ("0.2", "under one byte"),
            ("", "expected a factor"),
        ] {
            let e = SizeBudget::parse(text).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("invalid size_budget '{text}'")) && e.contains(reason),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn candidates_are_sorted_deduplicated_and_checked() {
        let m = MixedPrecision::new(SizeBudget::Bytes(1));
        assert_eq!(m.candidates, vec![8, 4, 2]);
        let m = m.with_candidates(&[2, 8, 2]).unwrap();
        assert_eq!(m.candidates, vec![8, 2]);
        let e = m.clone().with_candidates(&[8, 3]).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid bits '[8, 3]': 3 bits: the widths are 8, 4 and 2"
        );
        let e = m.with_candidates(&[]).unwrap_err().to_string();
        assert_eq!(e, "invalid bits '[]': no bit width to choose from");
    }

    #[test]
    fn knapsack_finds_the_optimum_a_greedy_misses() {
        // Two layers, widths (8, 4, 2) as (bytes, loss); both 100 / 50 / 25 bytes. At 125
        // bytes a greedy by loss per saved byte first takes b to 4 bits (0.5 / 50 B, the best
        // ratio), is then at 150 B and takes a to 4 bits too (loss 1.4); the optimum takes a
        // alone to 2 bits (loss 1.0, exactly 125 B).
        let options = vec![
            vec![(100, 0.0), (50, 0.9), (25, 1.0)],
            vec![(100, 0.0), (50, 0.5), (25, 3.0)],
        ];
        assert_eq!(knapsack(&options, 125), Some(vec![2, 0]));
        // At 160 one 4-bit layer is enough: the cheaper one.
        assert_eq!(knapsack(&options, 160), Some(vec![0, 1]));
        // Everything fits at 200: the widest widths.
        assert_eq!(knapsack(&options, 200), Some(vec![0, 0]));
        // At 100: a 4-bit pair (1.4) beats a 2/8 split that does not fit (125).
        assert_eq!(knapsack(&options, 100), Some(vec![1, 1]));
        // At 75: 50 + 25: the cheaper loss puts a at 2 bits and b at 4 (1.5 < 3.9).
        assert_eq!(knapsack(&options, 75), Some(vec![2, 1]));
        assert_eq!(knapsack(&options, 49), None);
        // Large costs run in units: the answer still fits the capacity in bytes.
        let big = vec![
            vec![(1_000_003, 0.0), (500_001, 1.0)],
            vec![(1_000_003, 0.0), (500_001, 2.0)],
        ];
        assert_eq!(knapsack(&big, 1_502_000), Some(vec![1, 0]));
        // A capacity above everything keeps every item at its least loss, even when rounding
        // up to units makes the sum of the rounded costs exceed the rounded total.
        let rounded = vec![
            vec![(154, 1e-5), (104, 6e-4)],
            vec![(48_004, 1e-5), (24_004, 3e-3)],
            vec![(10_084, 1e-5), (5_044, 2e-3)],
            vec![(844, 1e-5), (444, 5e-3)],
            vec![(2_404, 1e-5), (1_204, 2e-3)],
        ];
        assert_eq!(knapsack(&rounded, u64::MAX), Some(vec![0; 5]));
        assert_eq!(knapsack(&big, 1_000_001), None);
    }
}
