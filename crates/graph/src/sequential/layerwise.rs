//! One-shot compression of models without transformer blocks (CNNs, MLPs), calibrated on
//! inputs such as images: every Linear and 2-D convolution of the captured forward, one layer
//! (or one set of layers reading the same tensor) at a time, in execution order.
//!
//! A convolution is a Linear on its unfolded input (SparseGPT's and GPTQ's `nn.Unfold` route):
//! its weight `[out, in / groups, kh, kw]` is the matrix `[out, in * kh * kw]`, and the tap turns
//! the input `[n, in, h, w]` into the `n * positions` rows of `unfold4d` that matrix multiplies,
//! so the Hessian, the channel norms and the column loops are the Linear ones. A grouped
//! (depthwise) convolution is one such Linear per group, each with the statistics of its own
//! input channels (one batched matmul gives every group's Hessian). 1-D / 3-D and transposed
//! convolutions are left dense, each with a note.
//!
//! With [`SequentialOptions::propagate_error`] (the default) each layer is observed with every
//! earlier one already compressed, the model-wide form of the block engine's error propagation
//! (one forward pass over the calibration set per layer); without it all layers are observed
//! once on the dense model. Statistics count images as samples. Methods that balance a layer
//! against the one feeding it (AWQ, SmoothQuant's smoothing mappings) or quantize activations
//! need a transformer block's structure and are refused.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::module::unfold4d;
use burn::tensor::ops::{PadMode, UnfoldOptions};
use burn_ir::TensorId;
use compress_core::Dense;
use compress_core::oneshot::{
    IgnoreRule, InputStats, LinearReport, LinearSlot, OneShot, SparsityProfile, StatNeeds,
    outlier_fraction, owl_densities, wanda_scores,
};

use super::{
    Acc, LinearOutcome, SequentialOptions, SequentialReport, compress_err, param_value, set_params,
    stat_bytes, transpose, unknown,
};
use crate::replay::{ConvWindow, Replay, Site, Tap};
use crate::views::LayerKind;
use crate::{GraphError, Result};

/// A layer the engine compresses.
#[derive(Debug, Clone)]
struct Target {
    path: String,
    input: TensorId,
    window: Option<ConvWindow>,
}

impl Target {
    /// Independent column groups: a grouped convolution's, else 1.
    fn groups(&self) -> usize {
        self.window.map_or(1, |w| w.groups.max(1))
    }
}

/// `[out, cols]` as `groups` matrices of `out / groups` consecutive rows.
fn split_rows(weight: &Dense<f32>, groups: usize) -> Vec<Dense<f32>> {
    let [out, cols] = [weight.shape()[0], weight.shape()[1]];
    let rows = out / groups.max(1);
    weight
        .data()
        .chunks((rows * cols).max(1))
        .map(|c| Dense::new(vec![rows, cols], c.to_vec()))
        .collect()
}

/// Whether [`compress_layerwise`] can run `method`: not when it needs a transformer block's
/// structure (cached inputs for smoothing mappings: AWQ; activation quantization: SmoothQuant's
/// W8A8).
///
/// # Errors
/// [`GraphError::Core`] naming the method and what it needs.
pub fn check_layerwise(method: &dyn OneShot) -> Result<()> {
    let why = if method.needs().inputs {
        "balances each Linear against the norm or Linear feeding it (smoothing mappings) on \
         cached inputs"
    } else if method.activation_quant().is_some() {
        "quantizes the activations of every block Linear per token"
    } else {
        return Ok(());
    };
    Err(GraphError::from(compress_err(
        method.name(),
        format!(
            "'{}' {why}, which needs a transformer's blocks (smollm2-135m, minilm-l6); on \
             models without blocks use magnitude, wanda, sparsegpt, rtn or gptq",
            method.name()
        ),
    )))
}

/// Compress every Linear and 2-D convolution of `model` with `method`, calibrated on `batches`
/// (model inputs, e.g. `[n, channels, height, width]` images) run through `forward`.
///
/// The report's `samples` counts calibration inputs (the first dimension over all batches),
/// `seq_len` is 1, `block_sparsity` holds each compressed layer's sparsity (OWL's ratios are
/// per layer here) and `notes` name the layers left dense and why.
///
/// # Errors
/// [`GraphError::Replay`] for an empty calibration set or a model with no layer to compress;
/// [`GraphError::Core`] naming the method when it needs a transformer block's structure
/// (input caches, smoothing mappings, activation quantization), and the method's errors naming
/// the layer; capture and replay errors.
pub fn compress_layerwise<M: Module, const D: usize, const DO: usize>(
    model: M,
    batches: &[Tensor<D>],
    forward: impl Fn(&M, Tensor<D>) -> Tensor<DO>,
    method: &dyn OneShot,
    options: &SequentialOptions,
) -> Result<(M, SequentialReport)> {
    let start = Instant::now();
    let samples: usize = batches.iter().map(|b| b.dims()[0]).sum();
    if samples == 0 {
        return Err(GraphError::Replay(
            "the calibration set is empty (no inputs)".into(),
        ));
    }
    check_layerwise(method)?;
    let needs = method.needs();
    let mut replays = Replays::default();
    let first = replays.get(&model, &batches[0], &forward)?;
    let (targets, notes) = targets(first.layers(), &options.ignore)?;
    if targets.is_empty() {
        return Err(GraphError::Replay(format!(
            "the model has no Linear or 2-D convolution to compress{}",
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            }
        )));
    }
    let mut report = SequentialReport {
        method: method.name().to_string(),
        samples,
        seq_len: 1,
        notes,
        ..SequentialReport::default()
    };
    let sparsity: Vec<f64> = match method.sparsity() {
        None => Vec::new(),
        Some(spec) => match spec.profile {
            SparsityProfile::Uniform => vec![spec.sparsity; targets.len()],
            SparsityProfile::Owl { m, lambda } => {
                let sq = StatNeeds {
                    sq_norm: true,
                    ..StatNeeds::default()
                };
                let stats = replays.observe(&model, batches, &forward, &targets, sq)?;
                let mut outliers = Vec::with_capacity(targets.len());
                for t in &targets {
                    let groups = split_rows(&layer_weight(&model, t)?, t.groups());
                    let mut scores = Vec::new();
                    for (w, s) in groups.iter().zip(&stats[&t.path]) {
                        let norms = s.sq_norm.as_deref().unwrap_or(&[]);
                        scores.extend_from_slice(wanda_scores(w, norms).data());
                    }
                    outliers.push(outlier_fraction(&scores, m));
                }
                owl_densities(&outliers, lambda, spec.sparsity)
                    .into_iter()
                    .map(|density| 1.0 - density)
                    .collect()
            }
        },
    };
    report.block_sparsity.clone_from(&sparsity);
    let input_bytes: usize = batches.iter().map(|b| b.shape().num_elements() * 4).sum();
    let mut model = model;
    let mut done = vec![false; targets.len()];
    let mut peak = 0;
    for k in 0..targets.len() {
        if done[k] {
            continue;
        }
        // The layers observed together: with error propagation, every layer not yet compressed
        // that reads this layer's input; without, all of them, on the dense model.
        let group: Vec<usize> = (k..targets.len())
            .filter(|&j| !done[j])
            .filter(|&j| !options.propagate_error || targets[j].input == targets[k].input)
            .collect();
        let observed: Vec<Target> = group.iter().map(|&j| targets[j].clone()).collect();
        // A method that reads no statistics (round-to-nearest, magnitude) needs no forward pass.
        let stats = if needs == StatNeeds::default() {
            observed
                .iter()
                .map(|t| (t.path.clone(), vec![InputStats::default(); t.groups()]))
                .collect()
        } else {
            replays.observe(&model, batches, &forward, &observed, needs)?
        };
        let held: usize = stats.values().flatten().map(stat_bytes).sum();
        peak = peak.max(input_bytes + held);
        for &j in &group {
            let target = &targets[j];
            let s = sparsity.get(j).copied().unwrap_or(0.0);
            let (m, outcome) = compress(model, target, &stats[&target.path], method, s)?;
            model = m;
            report.linears.push(outcome);
            done[j] = true;
        }
    }
    report.peak_bytes = peak;
    report.seconds = start.elapsed().as_secs_f64();
    Ok((model, report))
}

/// The layers to compress, in execution order, and notes on the ones left dense.
fn targets(layers: &[crate::LayerIo], ignore: &[String]) -> Result<(Vec<Target>, Vec<String>)> {
    let ignore = IgnoreRule::parse_all(ignore)?;
    if let Some(unknown) = ignore
        .iter()
        .find(|rule| !layers.iter().any(|l| rule.matches(&l.layer, None)))
    {
        return Err(GraphError::Replay(format!(
            "ignore: the model's forward calls no layer '{}'",
            unknown.text()
        )));
    }
    let mut calls: BTreeMap<&str, usize> = BTreeMap::new();
    for l in layers {
        *calls.entry(l.layer.as_str()).or_default() += 1;
    }
    let mut targets = Vec::new();
    let mut notes = Vec::new();
    for l in layers {
        let path = l.layer.as_str();
        if ignore.iter().any(|rule| rule.matches(path, None)) {
            continue;
        }
        let supported = match (l.kind, l.window) {
            (LayerKind::Linear, _) | (LayerKind::Conv2d, Some(_)) => Ok(()),
            (LayerKind::BatchNorm | LayerKind::LayerNorm | LayerKind::Embedding, _) => continue,
            (kind, _) => Err(format!(
                "'{path}' is a {}: one-shot methods compress Linears and 2-D convolutions; left dense",
                kind.as_str()
            )),
        };
        let seen = targets.iter().any(|t: &Target| t.path == path)
            || notes
                .iter()
                .any(|n: &String| n.starts_with(&format!("'{path}'")));
        if seen {
            continue;
        }
        match supported {
            Ok(()) if calls[path] > 1 => notes.push(format!(
                "'{path}' is called {} times in one forward: left dense",
                calls[path]
            )),
            Ok(()) => targets.push(Target {
                path: path.to_string(),
                input: l.input,
                window: l.window,
            }),
            Err(note) => notes.push(note),
        }
    }
    Ok((targets, notes))
}

/// One capture per input shape.
#[derive(Default)]
struct Replays {
    by_shape: Vec<(Vec<usize>, Replay)>,
}

impl Replays {
    fn get<M: Module, const D: usize, const DO: usize>(
        &mut self,
        model: &M,
        x: &Tensor<D>,
        forward: &impl Fn(&M, Tensor<D>) -> Tensor<DO>,
    ) -> Result<&Replay> {
        let shape = x.dims();
        let at = match self.by_shape.iter().position(|(s, _)| s[..] == shape[..]) {
            Some(at) => at,
            None => {
                let r = Replay::capture(model, shape, forward)?;
                self.by_shape.push((shape.to_vec(), r));
                self.by_shape.len() - 1
            }
        };
        Ok(&self.by_shape[at].1)
    }

    /// Run `model` on every batch with taps on the inputs of `targets`: their statistics by
    /// path, one per column group (layers reading the same tensor through the same window share
    /// one accumulator).
    fn observe<M: Module, const D: usize, const DO: usize>(
        &mut self,
        model: &M,
        batches: &[Tensor<D>],
        forward: &impl Fn(&M, Tensor<D>) -> Tensor<DO>,
        targets: &[Target],
        needs: StatNeeds,
    ) -> Result<BTreeMap<String, Vec<InputStats>>> {
        let mut tap = StatTap::default();
        let mut owner: Vec<usize> = Vec::new();
        for t in targets {
            let at = tap
                .readers
                .iter()
                .position(|(input, window, _)| *input == t.input && *window == t.window);
            let k = match at {
                Some(k) => k,
                None => {
                    tap.readers.push((t.input, t.window, Acc::new(needs)));
                    tap.readers.len() - 1
                }
            };
            tap.wanted.insert(t.path.clone(), k);
            owner.push(k);
        }
        for x in batches {
            let replay = self.get(model, x, forward)?;
            tap.seen = vec![false; tap.readers.len()];
            let _: Tensor<DO> = replay.run(model, x.clone(), &mut tap)?;
        }
        let mut finished: HashMap<usize, Vec<InputStats>> = HashMap::new();
        for (k, (_, _, acc)) in tap.readers.into_iter().enumerate() {
            finished.insert(k, acc.finish_groups().0);
        }
        Ok(targets
            .iter()
            .zip(owner)
            .map(|(t, k)| (t.path.clone(), finished[&k].clone()))
            .collect())
    }
}

/// Streams the statistics of the tapped layers' inputs, unfolding a convolution's.
#[derive(Default)]
struct StatTap {
    /// Layer path -> reader index.
    wanted: HashMap<String, usize>,
    /// One accumulator per (input tensor, window).
    readers: Vec<(TensorId, Option<ConvWindow>, Acc)>,
    /// Which readers already took this batch (layers sharing an input are tapped once each).
    seen: Vec<bool>,
}

impl Tap for StatTap {
    fn wants(&self, layer: &str, site: Site) -> bool {
        site == Site::Input && self.wanted.contains_key(layer)
    }

    fn tap(&mut self, layer: &str, _: Site, rank: usize, value: Tensor<3>) -> Result<Tensor<3>> {
        let Some(&k) = self.wanted.get(layer) else {
            return Ok(value);
        };
        if self.seen[k] {
            return Ok(value);
        }
        self.seen[k] = true;
        let (_, window, acc) = &mut self.readers[k];
        let [n, c, rest] = value.dims();
        match (*window, rank) {
            (Some(w), 4) => {
                // `[n, positions, c * kh * kw]`, channel-major: group g's columns are contiguous.
                let rows = unfold(value.clone(), &w, layer)?;
                let [_, l, cols] = rows.dims();
                let g = w.groups.max(1);
                let grouped = rows.reshape([n * l, g, cols / g]).swap_dims(0, 1);
                acc.add_groups(grouped, n, n * l);
            }
            // `[n, features]` (tapped as `[n, features, 1]`): one row per input.
            (None, 2) => acc.add(value.clone().reshape([n, 1, c])),
            // A Linear on `[batch, seq, features]`: one row per token.
            (None, 3) => acc.add(value.clone()),
            _ => {
                return Err(GraphError::Replay(format!(
                    "the input of '{layer}' has rank {rank} ([{n}, {c}, {rest}]); expected a \
                     Linear's [n, features] or [batch, seq, features], or a convolution's \
                     [n, channels, height, width]"
                )));
            }
        }
        Ok(value)
    }
}

/// A convolution's input `[n, c, h * w]` as the rows its flattened weight multiplies:
/// `[n, positions, c * kh * kw]`.
fn unfold(value: Tensor<3>, w: &ConvWindow, layer: &str) -> Result<Tensor<3>> {
    let [n, c, hw] = value.dims();
    let [wc, h, wd] = w.input;
    if c != wc || hw != h * wd {
        return Err(GraphError::Replay(format!(
            "the input of '{layer}' is [{n}, {c}, {hw}], its convolution was captured for \
             [{n}, {wc}, {h}, {wd}]"
        )));
    }
    let mut x = value.reshape([n, c, h, wd]);
    let [(top, bottom), (left, right)] = w.padding;
    // Padded here, not by `unfold4d`: without padding (and dilation) Burn unfolds with strided
    // windows, with it through a convolution by a one-hot kernel, `c^2 kh kw` multiply-adds a
    // pixel (minutes for EfficientNet's 1152-channel depthwise layers).
    if top + bottom + left + right > 0 {
        x = x.pad([(top, bottom), (left, right)], PadMode::Constant(0.0));
    }
    let cols = unfold4d(
        x,
        w.kernel,
        UnfoldOptions::new(w.stride, [0, 0], w.dilation),
    );
    Ok(cols.swap_dims(1, 2))
}

/// A layer's weight as `[out, in * kernel]`: a Linear's transposed (Burn stores `[in, out]`), a
/// convolution's `[out, in, kh, kw]` flattened.
fn layer_weight(model: &impl Module, target: &Target) -> Result<Dense<f32>> {
    let path = format!("{}.weight", target.path);
    let (shape, v) = param_value(model, &path).ok_or_else(|| unknown(&path))?;
    match (target.window, shape.as_slice()) {
        (None, &[inp, out]) => Ok(transpose(&v, inp, out)),
        (Some(_), &[out, ..]) if shape.len() == 4 => {
            let cols = v.len() / out.max(1);
            Ok(Dense::new(vec![out, cols], v))
        }
        _ => Err(GraphError::Replay(format!(
            "'{path}' has shape {shape:?}; a Linear weight is [in, out], a convolution's \
             [out, in, kh, kw]"
        ))),
    }
}

/// Compress one layer with `method` (each column group of a grouped convolution as its own
/// Linear, named `path (group g of G)`) and write it back.
fn compress<M: Module>(
    model: M,
    target: &Target,
    stats: &[InputStats],
    method: &dyn OneShot,
    sparsity: f64,
) -> Result<(M, LinearOutcome)> {
    let full = target.path.as_str();
    let weight = layer_weight(&model, target)?;
    let bias_path = format!("{full}.bias");
    let bias = param_value(&model, &bias_path).map(|(_, v)| v);
    let [out, inp] = [weight.shape()[0], weight.shape()[1]];
    let groups = target.groups();
    if stats.len() != groups || !out.is_multiple_of(groups) {
        return Err(GraphError::Replay(format!(
            "'{full}': {} statistics for {groups} groups of its {out} outputs",
            stats.len()
        )));
    }
    let rows = out / groups;
    let start = Instant::now();
    let mut parts = split_rows(&weight, groups);
    let mut new_bias = Vec::with_capacity(out);
    let mut report = LinearReport::default();
    let mut fallbacks = Vec::new();
    for (g, (part, s)) in parts.iter_mut().zip(stats).enumerate() {
        let path = if groups == 1 {
            full.to_string()
        } else {
            format!("{full} (group {g} of {groups})")
        };
        let mut b = bias.as_ref().map(|b| b[g * rows..(g + 1) * rows].to_vec());
        let r = method
            .compress_linear(&mut LinearSlot {
                path: &path,
                weight: part,
                bias: b.as_mut(),
                stats: s,
                sparsity,
            })
            .map_err(GraphError::from)?;
        if part.shape() != [rows, inp] || b.as_ref().is_some_and(|b| b.len() != rows) {
            return Err(GraphError::from(compress_err(
                method.name(),
                format!("changed the shape of '{path}' to {:?}", part.shape()),
            )));
        }
        new_bias.extend(b.unwrap_or_default());
        report.dead_columns += r.dead_columns;
        report.damping_retries += r.damping_retries;
        report.zeros += r.zeros;
        report.loss = match (report.loss, r.loss) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        fallbacks.extend(r.fallback.map(|f| (path, f)));
    }
    report.fallback = match fallbacks.as_slice() {
        [] => None,
        [(_, why)] if groups == 1 => Some(why.clone()),
        [(path, why), ..] => Some(format!(
            "{} of {groups} groups; {path}: {why}",
            fallbacks.len()
        )),
    };
    let seconds = start.elapsed().as_secs_f64();
    let flat: Vec<f32> = parts.into_iter().flat_map(Dense::into_data).collect();
    let stored = match target.window {
        None => transpose(&flat, out, inp).into_data(),
        Some(_) => flat,
    };
    let mut values = BTreeMap::new();
    values.insert(format!("{full}.weight"), stored);
    if bias.is_some() {
        values.insert(bias_path, new_bias);
    }
    Ok((
        set_params(model, values),
        LinearOutcome {
            path: full.to_string(),
            shape: [out, inp],
            sparsity,
            report,
            seconds,
        },
    ))
}
