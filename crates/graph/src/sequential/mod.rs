//! Layer-sequential calibration: one-shot compression of a [`BlockModel`] block by block
//! (sparsegpt `opt.py`, gptq `opt.py`, wanda `lib/prune.py`).
//!
//! 1. Block 0's inputs are computed for every calibration sequence ([`BlockModel::embed`]) and
//!    kept on the device: one block's cache, `samples x seq x hidden` floats.
//! 2. Block `i` is captured once per chunk shape and replayed on the cache ([`Replay`]) with taps
//!    on every Linear input; each tap streams the statistics the method asks for
//!    ([`StatNeeds`]): the Hessian in f64, channel norms, means and maxima. Linears reading the
//!    same tensor (q, k, v) share one accumulator.
//! 3. The method transforms the block ([`OneShot::transform_block`], through [`BlockOps`]) and
//!    compresses each Linear ([`OneShot::compress_linear`]); with
//!    [`SequentialOptions::true_sequential`] each later group of Linears
//!    ([`BlockModel::linear_groups`]: o, then gate/up, then down) is re-observed with the
//!    earlier groups already compressed.
//! 4. The block runs again with its compressed weights to give block `i + 1` its inputs
//!    ([`SequentialOptions::propagate_error`], the reference default); without it the
//!    full-precision outputs of step 2 are used (llm-awq's choice).
//!
//! Under OWL ([`SparsityProfile::Owl`]) a first pass over the dense model computes every
//! block's outlier fraction of Wanda scores and from it the block's sparsity.
//!
//! Models without blocks (CNNs, MLPs) go through [`compress_layerwise`]: every Linear and 2-D
//! convolution, one at a time, on their (unfolded) inputs.
//!
//! Memory stays bounded by one block: the cache of its inputs and outputs, the statistics of
//! its Linears (a `d_in x d_in` f64 Hessian per distinct input) and, when the method asks for
//! them ([`StatNeeds::inputs`]), the block's Linear inputs. [`SequentialReport::peak_bytes`]
//! says how much that was.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType, TensorData};
use compress_core::oneshot::{
    BlockModel, BlockOps, IgnoreRule, InputStats, LinearReport, LinearSlot, OneShot, SmoothKind,
    SmoothMapping, SparsityProfile, StatNeeds, outlier_fraction, owl_densities, wanda_scores,
};
use compress_core::paths::{PathMapper, PathVisitor, map_params, visit_params};
use compress_core::{CompressError, Dense};

use crate::replay::{Replay, Site, Tap};
use crate::{GraphError, Result};

mod layerwise;

pub use layerwise::{check_layerwise, compress_layerwise};

/// How the engine walks the model.
#[derive(Debug, Clone, PartialEq)]
pub struct SequentialOptions {
    /// Feed block `i + 1` the outputs of the *compressed* block `i` (default), else the
    /// full-precision outputs.
    pub propagate_error: bool,
    /// Re-observe each later group of Linears after the earlier groups are compressed
    /// (GPTQ's `--true-sequential`, llm-compressor's `sequential_targets`). Off by default.
    pub true_sequential: bool,
    /// Calibration sequences per replayed chunk.
    pub chunk: usize,
    /// Linears to leave alone, relative to their block (`mlp.down_proj`) or as full paths.
    pub ignore: Vec<String>,
}

impl Default for SequentialOptions {
    fn default() -> Self {
        Self {
            propagate_error: true,
            true_sequential: false,
            chunk: 8,
            ignore: Vec::new(),
        }
    }
}

/// One Linear's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearOutcome {
    /// Full path.
    pub path: String,
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// The sparsity it was given (pruners).
    pub sparsity: f64,
    /// What the method reported.
    pub report: LinearReport,
    /// Seconds in [`OneShot::compress_linear`].
    pub seconds: f64,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SequentialReport {
    /// The method's registry name.
    pub method: String,
    /// Calibration sequences.
    pub samples: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Every compressed Linear, in order.
    pub linears: Vec<LinearOutcome>,
    /// Each block's sparsity (OWL's ratios, or the uniform one); empty for quantizers.
    pub block_sparsity: Vec<f64>,
    /// The block-level steps' notes, prefixed with the block path.
    pub notes: Vec<String>,
    /// The largest amount of calibration state held at once: the block cache, the statistics
    /// and the kept Linear inputs, in bytes.
    pub peak_bytes: usize,
    /// Wall time of the whole run.
    pub seconds: f64,
}

impl SequentialReport {
    /// Dead input columns over all Linears.
    pub fn dead_columns(&self) -> usize {
        self.linears.iter().map(|l| l.report.dead_columns).sum()
    }

    /// Linears that fell back to round-to-nearest / magnitude selection, with the reason.
    pub fn fallbacks(&self) -> Vec<(&str, &str)> {
        self.linears
            .iter()
            .filter_map(|l| Some((l.path.as_str(), l.report.fallback.as_deref()?)))
            .collect()
    }
}

/// Compress `model` one block at a time with `method` on the calibration token ids `calib`
/// (`[samples, seq]`).
///
/// # Errors
/// [`GraphError::Replay`] for an empty calibration set or a block that does not keep its
/// input's shape; the method's errors ([`GraphError::Core`], naming the layer); capture
/// and replay errors.
pub fn compress_sequential<M: BlockModel>(
    model: M,
    calib: Tensor<2, Int>,
    method: &dyn OneShot,
    options: &SequentialOptions,
) -> Result<(M, SequentialReport)> {
    let start = Instant::now();
    let [samples, seq_len] = calib.dims();
    if samples == 0 || seq_len == 0 {
        return Err(GraphError::Replay(format!(
            "the calibration set is empty ({samples} sequences of {seq_len} tokens)"
        )));
    }
    let chunk = options.chunk.max(1);
    let mut model = model;
    let mut report = SequentialReport {
        method: method.name().to_string(),
        samples,
        seq_len,
        ..SequentialReport::default()
    };
    let needs = method.needs();
    let spec = method.sparsity();
    let blocks = model.num_blocks();
    let ignore = IgnoreRule::parse_all(&options.ignore)?;
    if let Some(unknown) = ignore.iter().find(|rule| {
        !(0..blocks).any(|b| {
            let prefix = model.block_path(b);
            model
                .linear_groups(b)
                .iter()
                .flatten()
                .any(|l| ignored(std::slice::from_ref(*rule), &prefix, l))
        })
    }) {
        return Err(GraphError::Replay(format!(
            "ignore: no block has a Linear '{}' (give it relative to the block, \
             `mlp.down_proj`, as a full path, or as `re:PATTERN`)",
            unknown.text()
        )));
    }
    report.block_sparsity = match spec {
        None => Vec::new(),
        Some(spec) => match spec.profile {
            SparsityProfile::Uniform => vec![spec.sparsity; blocks],
            SparsityProfile::Owl { m, lambda } => {
                let outliers = owl_outliers(&model, calib.clone(), chunk, m, &ignore)?;
                owl_densities(&outliers, lambda, spec.sparsity)
                    .into_iter()
                    .map(|density| 1.0 - density)
                    .collect()
            }
        },
    };
    let mut xs = embed_chunks(&model, calib, chunk);
    let mut peak = 0usize;
    for i in 0..blocks {
        let prefix = model.block_path(i);
        let groups: Vec<Vec<String>> = model
            .linear_groups(i)
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .filter(|l| !ignored(&ignore, &prefix, l))
                    .collect::<Vec<_>>()
            })
            .filter(|g| !g.is_empty())
            .collect();
        let all: Vec<String> = groups.iter().flatten().cloned().collect();
        let (stats, inputs, dense_out) = observe(&model, i, &xs, &all, needs, true)?;
        let mut bytes = cache_bytes(&xs) * 2 + stats_bytes(&stats) + inputs_bytes(&inputs);
        let mappings = model.smooth_mappings(i);
        let mut ctx = BlockCtx {
            model,
            index: i,
            prefix: prefix.clone(),
            mappings,
            linears: all.clone(),
            stats,
            inputs,
            reference: BTreeMap::new(),
        };
        if needs.inputs {
            ctx.capture_references()?;
            bytes += inputs_bytes(&ctx.reference);
        }
        let block_report = method.transform_block(&mut ctx).map_err(GraphError::from)?;
        report.notes.extend(
            block_report
                .notes
                .into_iter()
                .map(|n| format!("{prefix}: {n}")),
        );
        let sparsity = report.block_sparsity.get(i).copied().unwrap_or(0.0);
        for (g, group) in groups.iter().enumerate() {
            if g > 0 && options.true_sequential {
                let (stats, _, _) = observe(&ctx.model, i, &xs, group, needs, false)?;
                ctx.stats.extend(stats);
            }
            for rel in group {
                report.linears.push(ctx.compress(rel, method, sparsity)?);
            }
        }
        peak = peak.max(bytes);
        model = ctx.model;
        xs = if options.propagate_error {
            xs.into_iter().map(|x| model.block_forward(i, x)).collect()
        } else {
            dense_out
        };
    }
    report.peak_bytes = peak;
    report.seconds = start.elapsed().as_secs_f64();
    Ok((model, report))
}

/// Run `model` on token ids with `tap` at the layer inputs and outputs of every block (W8A8's
/// per-token activation quantization, observation): embeddings, each block replayed, then
/// [`BlockModel::head`].
///
/// # Errors
/// Capture, replay and the tap's errors.
pub fn forward_tapped<M: BlockModel>(
    model: &M,
    ids: Tensor<2, Int>,
    tap: &mut dyn Tap,
) -> Result<Tensor<3>> {
    BlockReplays::default().forward(model, ids, tap)
}

/// [`forward_tapped`] for many inputs of one model: each block is captured once per input
/// shape and the captures are reused (a capture copies the model; the replay reads its
/// parameters live, so the cache serves one model, unchanged).
#[derive(Debug, Default)]
pub struct BlockReplays {
    replays: HashMap<(usize, [usize; 3]), Replay>,
}

impl BlockReplays {
    /// [`forward_tapped`] with this cache.
    ///
    /// # Errors
    /// Capture, replay and the tap's errors.
    pub fn forward<M: BlockModel>(
        &mut self,
        model: &M,
        ids: Tensor<2, Int>,
        tap: &mut dyn Tap,
    ) -> Result<Tensor<3>> {
        let mut x = model.embed(ids);
        for i in 0..model.num_blocks() {
            let key = (i, dims3(&x));
            let replay = match self.replays.entry(key) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => v.insert(Replay::capture(model, key.1, |m, x: Tensor<3>| {
                    m.block_forward(i, x)
                })?),
            };
            x = replay.run(model, x, tap)?;
        }
        Ok(model.head(x))
    }
}

fn dims3(x: &Tensor<3>) -> [usize; 3] {
    x.dims()
}

fn ignored(ignore: &[IgnoreRule], prefix: &str, rel: &str) -> bool {
    let full = format!("{prefix}.{rel}");
    ignore.iter().any(|rule| rule.matches(&full, Some(rel)))
}

/// Block 0's inputs, in chunks of `chunk` sequences.
fn embed_chunks<M: BlockModel>(model: &M, calib: Tensor<2, Int>, chunk: usize) -> Vec<Tensor<3>> {
    let [samples, seq] = calib.dims();
    (0..samples)
        .step_by(chunk)
        .map(|s| model.embed(calib.clone().slice([s..(s + chunk).min(samples), 0..seq])))
        .collect()
}

fn cache_bytes(xs: &[Tensor<3>]) -> usize {
    xs.iter().map(|x| x.shape().num_elements() * 4).sum()
}

fn stats_bytes(stats: &BTreeMap<String, InputStats>) -> usize {
    stats.values().map(stat_bytes).sum()
}

/// The bytes one set of statistics holds.
fn stat_bytes(s: &InputStats) -> usize {
    s.hessian.as_ref().map_or(0, |h| h.numel() * 8)
        + s.sq_norm.as_ref().map_or(0, |v| v.len() * 8)
        + s.abs_mean.as_ref().map_or(0, |v| v.len() * 8)
        + s.abs_max.as_ref().map_or(0, |v| v.len() * 4)
}

fn inputs_bytes(inputs: &BTreeMap<String, Vec<Tensor<3>>>) -> usize {
    inputs.values().map(|v| cache_bytes(v)).sum()
}

/// Streaming statistics of one tapped input, for `groups` independent column groups (a grouped
/// convolution's; 1 for a Linear): every statistic carries a leading group axis.
struct Acc {
    needs: StatNeeds,
    /// Column groups (set by the first rows; 1 for a Linear).
    groups: usize,
    samples: usize,
    tokens: usize,
    /// `[groups, d, d]`, f64.
    hessian: Option<Tensor<3>>,
    /// `[groups, d]`, f64.
    sq: Option<Tensor<2>>,
    /// `[groups, d]`, f64.
    abs_sum: Option<Tensor<2>>,
    /// `[groups, d]`.
    abs_max: Option<Tensor<2>>,
    inputs: Vec<Tensor<3>>,
}

impl Acc {
    fn new(needs: StatNeeds) -> Self {
        Self {
            needs,
            groups: 1,
            samples: 0,
            tokens: 0,
            hessian: None,
            sq: None,
            abs_sum: None,
            abs_max: None,
            inputs: Vec::new(),
        }
    }

    /// A Linear's input `[batch, seq, d]`.
    fn add(&mut self, x: Tensor<3>) {
        let [b, t, d] = x.dims();
        if self.needs.inputs {
            self.inputs.push(x.clone());
        }
        self.add_groups(x.reshape([1, b * t, d]), b, b * t);
    }

    /// `rows` `[groups, n, d]`: `n` rows (tokens) of every group, from `samples` inputs.
    fn add_groups(&mut self, rows: Tensor<3>, samples: usize, tokens: usize) {
        let [g, _, d] = rows.dims();
        self.groups = g;
        self.samples += samples;
        self.tokens += tokens;
        let add2 = |acc: Option<Tensor<2>>, v: Tensor<2>| Some(acc.map_or(v.clone(), |a| a + v));
        if self.needs.hessian {
            let x64 = rows.clone().cast(FloatDType::F64);
            let h = x64.clone().swap_dims(1, 2).matmul(x64);
            self.hessian = Some(self.hessian.take().map_or(h.clone(), |a| a + h));
        }
        if self.needs.sq_norm {
            let v = rows.clone().powi_scalar(2).sum_dim(1).reshape([g, d]);
            self.sq = add2(self.sq.take(), v.cast(FloatDType::F64));
        }
        if self.needs.abs_mean {
            let v = rows.clone().abs().sum_dim(1).reshape([g, d]);
            self.abs_sum = add2(self.abs_sum.take(), v.cast(FloatDType::F64));
        }
        if self.needs.abs_max {
            let v = rows.abs().max_dim(1).reshape([g, d]);
            self.abs_max = Some(self.abs_max.take().map_or(v.clone(), |a| a.max_pair(v)));
        }
    }

    /// The statistics of a one-group accumulator, and the kept inputs.
    fn finish(self) -> (InputStats, Vec<Tensor<3>>) {
        let (mut groups, inputs) = self.finish_groups();
        (groups.swap_remove(0), inputs)
    }

    /// The statistics of every group (the reference scalings: `2 / samples` for the Hessian,
    /// `1 / samples` for the squared norms, `1 / tokens` for the mean), and the kept inputs.
    fn finish_groups(self) -> (Vec<InputStats>, Vec<Tensor<3>>) {
        let n = self.samples.max(1) as f64;
        let tokens = self.tokens.max(1) as f64;
        let host64 = |t: Tensor<2>| -> Vec<f64> { t.into_data().iter::<f64>().collect() };
        let groups = self.groups.max(1);
        let hessian = self.hessian.map(|h| {
            let [_, d, _] = h.dims();
            let v: Vec<f64> = h.into_data().iter::<f64>().map(|v| 2.0 * v / n).collect();
            (d, v)
        });
        let per_group = |v: Option<Vec<f64>>, scale: f64| -> Vec<Option<Vec<f64>>> {
            match v {
                None => vec![None; groups],
                Some(v) => {
                    let d = v.len() / groups;
                    v.chunks(d.max(1))
                        .map(|c| Some(c.iter().map(|x| x / scale).collect()))
                        .collect()
                }
            }
        };
        let sq = per_group(self.sq.map(host64), n);
        let mean = per_group(self.abs_sum.map(host64), tokens);
        let max: Vec<Option<Vec<f32>>> = match self.abs_max {
            None => vec![None; groups],
            Some(t) => {
                let v: Vec<f32> = t.into_data().iter::<f32>().collect();
                let d = v.len() / groups;
                v.chunks(d.max(1)).map(|c| Some(c.to_vec())).collect()
            }
        };
        let stats = (0..groups)
            .map(|g| InputStats {
                samples: self.samples,
                tokens: self.tokens,
                hessian: hessian
                    .as_ref()
                    .map(|(d, v)| Dense::new(vec![*d, *d], v[g * d * d..(g + 1) * d * d].to_vec())),
                sq_norm: sq[g].clone(),
                abs_mean: mean[g].clone(),
                abs_max: max[g].clone(),
            })
            .collect();
        (stats, self.inputs)
    }
}

/// Taps the inputs of the wanted Linears (one accumulator per distinct input tensor).
struct StatTap {
    /// Tapped layer (full path) -> accumulator index.
    wanted: HashMap<String, usize>,
    accs: Vec<Acc>,
    /// The current chunk's `[batch, seq]`.
    chunk: [usize; 2],
}

impl Tap for StatTap {
    fn wants(&self, layer: &str, site: Site) -> bool {
        site == Site::Input && self.wanted.contains_key(layer)
    }
    fn tap(&mut self, layer: &str, _: Site, rank: usize, value: Tensor<3>) -> Result<Tensor<3>> {
        let [b, t] = self.chunk;
        let dims = value.dims();
        // Burn's Linear flattens `[batch, seq, d]` to `[batch * seq, d]` (rank 2, tapped as
        // `[n, d, 1]`); a rank-3 input arrives as `[batch, seq, d]`.
        let x = match rank {
            2 if dims[0] == b * t => value.clone().reshape([b, t, dims[1]]),
            3 if dims[0] == b && dims[1] == t => value.clone(),
            _ => {
                return Err(GraphError::Replay(format!(
                    "the input of '{layer}' has shape {dims:?} (rank {rank}); a block's Linears take [{b}, {t}, features]"
                )));
            }
        };
        if let Some(&k) = self.wanted.get(layer) {
            self.accs[k].add(x);
        }
        Ok(value)
    }
}

type Observed = (
    BTreeMap<String, InputStats>,
    BTreeMap<String, Vec<Tensor<3>>>,
    Vec<Tensor<3>>,
);

/// Replay block `i` on `xs` with taps on the inputs of `linears` (relative paths): their
/// statistics and kept inputs by relative path, and the block's outputs (when `outputs`).
fn observe<M: BlockModel>(
    model: &M,
    i: usize,
    xs: &[Tensor<3>],
    linears: &[String],
    needs: StatNeeds,
    outputs: bool,
) -> Result<Observed> {
    let prefix = model.block_path(i);
    let mut replays: Vec<([usize; 3], Replay)> = Vec::new();
    let mut tap = StatTap {
        wanted: HashMap::new(),
        accs: Vec::new(),
        chunk: [0, 0],
    };
    let mut outs = Vec::new();
    // Which tapped layer shares which input tensor (known after the first capture).
    let mut share: BTreeMap<String, String> = BTreeMap::new();
    for x in xs {
        let shape = x.dims();
        let at = match replays.iter().position(|(s, _)| *s == shape) {
            Some(at) => at,
            None => {
                let r = Replay::capture(model, shape, |m, x: Tensor<3>| m.block_forward(i, x))?;
                replays.push((shape, r));
                replays.len() - 1
            }
        };
        let replay = &replays[at].1;
        if tap.accs.is_empty() {
            let mut first_of_input: HashMap<burn_ir::TensorId, String> = HashMap::new();
            for rel in linears {
                let full = format!("{prefix}.{rel}");
                let io = replay
                    .layers()
                    .iter()
                    .find(|l| l.layer == full)
                    .ok_or_else(|| {
                        GraphError::Replay(format!(
                            "block {i} has no Linear '{full}' in its captured forward"
                        ))
                    })?;
                match first_of_input.get(&io.input) {
                    Some(owner) => {
                        share.insert(rel.clone(), owner.clone());
                    }
                    None => {
                        first_of_input.insert(io.input, rel.clone());
                        tap.wanted.insert(full, tap.accs.len());
                        tap.accs.push(Acc::new(needs));
                        share.insert(rel.clone(), rel.clone());
                    }
                }
            }
        }
        tap.chunk = [shape[0], shape[1]];
        let y: Tensor<3> = replay.run(model, x.clone(), &mut tap)?;
        if y.dims() != shape {
            return Err(GraphError::Replay(format!(
                "block {i} ('{prefix}') maps {shape:?} to {:?}; blocks must keep their input's shape",
                y.dims()
            )));
        }
        if outputs {
            outs.push(y);
        }
    }
    let mut by_owner: BTreeMap<String, (InputStats, Vec<Tensor<3>>)> = BTreeMap::new();
    let owners: BTreeMap<usize, String> = tap
        .wanted
        .iter()
        .map(|(full, &k)| (k, full[prefix.len() + 1..].to_string()))
        .collect();
    for (k, acc) in tap.accs.into_iter().enumerate() {
        by_owner.insert(owners[&k].clone(), acc.finish());
    }
    let mut stats = BTreeMap::new();
    let mut inputs = BTreeMap::new();
    for (rel, owner) in &share {
        let (s, x) = &by_owner[owner];
        stats.insert(rel.clone(), s.clone());
        if needs.inputs {
            inputs.insert(rel.clone(), x.clone());
        }
    }
    Ok((stats, inputs, outs))
}

/// OWL's first pass: every block's outlier fraction of Wanda scores on the dense model.
fn owl_outliers<M: BlockModel>(
    model: &M,
    calib: Tensor<2, Int>,
    chunk: usize,
    m: f64,
    ignore: &[IgnoreRule],
) -> Result<Vec<f64>> {
    let needs = StatNeeds {
        sq_norm: true,
        ..StatNeeds::default()
    };
    let mut xs = embed_chunks(model, calib, chunk);
    let mut out = Vec::new();
    for i in 0..model.num_blocks() {
        let prefix = model.block_path(i);
        let linears: Vec<String> = model
            .linear_groups(i)
            .into_iter()
            .flatten()
            .filter(|l| !ignored(ignore, &prefix, l))
            .collect();
        let (stats, _, ys) = observe(model, i, &xs, &linears, needs, true)?;
        let mut scores = Vec::new();
        for rel in &linears {
            let w = linear_weight(model, &format!("{prefix}.{rel}"))?;
            let sq = stats[rel].sq_norm.as_deref().unwrap_or(&[]);
            scores.extend_from_slice(wanda_scores(&w, sq).data());
        }
        out.push(outlier_fraction(&scores, m));
        xs = ys;
    }
    Ok(out)
}

/// A parameter's shape by full path, without reading its values.
fn param_shape(model: &impl Module, path: &str) -> Option<Vec<usize>> {
    struct Find<'a> {
        path: &'a str,
        found: Option<Vec<usize>>,
    }
    impl PathVisitor for Find<'_> {
        fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
            if path == self.path {
                self.found = Some(param.lazy_shape().to_vec());
            }
        }
    }
    let mut f = Find { path, found: None };
    visit_params(model, &mut f);
    f.found
}

/// A parameter's value by full path.
fn param_value(model: &impl Module, path: &str) -> Option<(Vec<usize>, Vec<f32>)> {
    struct Find<'a> {
        path: &'a str,
        found: Option<(Vec<usize>, Vec<f32>)>,
    }
    impl PathVisitor for Find<'_> {
        fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
            if path == self.path {
                let v = param.val();
                let v = if v.dtype() == DType::F32 {
                    v
                } else {
                    v.cast(FloatDType::F32)
                };
                self.found = Some((v.dims().to_vec(), v.into_data().iter::<f32>().collect()));
            }
        }
    }
    let mut f = Find { path, found: None };
    visit_params(model, &mut f);
    f.found
}

/// A Linear's weight `[out, in]` (Burn stores `[in, out]`).
fn linear_weight(model: &impl Module, linear: &str) -> Result<Dense<f32>> {
    let path = format!("{linear}.weight");
    let (shape, v) = param_value(model, &path).ok_or_else(|| unknown(&path))?;
    if shape.len() != 2 {
        return Err(GraphError::Replay(format!(
            "'{path}' has shape {shape:?}; a Linear weight is [in, out]"
        )));
    }
    Ok(transpose(&v, shape[0], shape[1]))
}

/// `[rows, cols]` row-major -> `[cols, rows]`.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Dense<f32> {
    let mut t = vec![0.0; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    Dense::new(vec![cols, rows], t)
}

fn unknown(path: &str) -> GraphError {
    GraphError::Replay(format!("the model has no parameter '{path}'"))
}

/// Replace parameters by full path with `(shape, values)`; the shape must stay.
fn set_params<M: Module>(model: M, values: BTreeMap<String, Vec<f32>>) -> M {
    compress_core::paths::set_param_values(model, &values)
}

/// Multiply a parameter elementwise along `axis` by `factors` (host round trip).
fn scale_axis<M: Module>(model: M, path: &str, axis: usize, factors: &[f32]) -> Result<M> {
    struct Scale<'a> {
        path: &'a str,
        axis: usize,
        factors: &'a [f32],
        error: Option<String>,
    }
    impl PathMapper for Scale<'_> {
        fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if path != self.path {
                return param;
            }
            let dims = param.val().dims();
            if self.axis >= D || dims[self.axis] != self.factors.len() {
                self.error = Some(format!(
                    "'{path}' has shape {dims:?}: {} scales do not fit axis {}",
                    self.factors.len(),
                    self.axis
                ));
                return param;
            }
            let mut shape = [1usize; D];
            shape[self.axis] = self.factors.len();
            let factors = self.factors.to_vec();
            compress_core::mask::map_param_leaf(param, move |t| {
                let device = t.device();
                let f = Tensor::<D>::from_data(TensorData::new(factors, shape), &device);
                t * f
            })
        }
    }
    let mut s = Scale {
        path,
        axis,
        factors,
        error: None,
    };
    let found = param_shape(&model, path).is_some();
    if !found {
        return Err(unknown(path));
    }
    let model = map_params(model, &mut s);
    match s.error {
        Some(e) => Err(GraphError::Replay(e)),
        None => Ok(model),
    }
}

/// The engine's [`BlockOps`] for block `index`.
struct BlockCtx<M: BlockModel> {
    model: M,
    index: usize,
    prefix: String,
    mappings: Vec<SmoothMapping>,
    linears: Vec<String>,
    stats: BTreeMap<String, InputStats>,
    inputs: BTreeMap<String, Vec<Tensor<3>>>,
    /// Full-precision outputs of each mapping's inspected scope.
    reference: BTreeMap<String, Vec<Tensor<3>>>,
}

fn compress_err(algorithm: &str, message: String) -> compress_core::CompressError {
    CompressError::Algorithm {
        algorithm: algorithm.into(),
        message,
    }
}

impl<M: BlockModel> BlockCtx<M> {
    fn full(&self, rel: &str) -> String {
        format!("{}.{rel}", self.prefix)
    }

    /// The cached input of a scope: the input of the first balance Linear of the mapping that
    /// inspects it, or the Linear's own input.
    fn scope_input(&self, scope: &str) -> Option<&Vec<Tensor<3>>> {
        let via = self
            .mappings
            .iter()
            .find(|m| m.inspect == scope)
            .and_then(|m| m.balance.first())
            .map_or(scope, String::as_str);
        self.inputs.get(via)
    }

    fn run_scope(&self, scope: &str) -> compress_core::Result<Vec<Tensor<3>>> {
        let inputs = self.scope_input(scope).ok_or_else(|| {
            compress_err(
                "calibration",
                format!(
                    "no cached input for scope '{}' (the method must ask for inputs)",
                    self.full(scope)
                ),
            )
        })?;
        inputs
            .iter()
            .map(|x| {
                self.model
                    .scope_forward(self.index, scope, x.clone())
                    .ok_or_else(|| {
                        compress_err(
                            "calibration",
                            format!("the model has no scope '{}'", self.full(scope)),
                        )
                    })
            })
            .collect()
    }

    fn capture_references(&mut self) -> Result<()> {
        let scopes: Vec<String> = self.mappings.iter().map(|m| m.inspect.clone()).collect();
        for scope in scopes {
            if self.scope_input(&scope).is_none() {
                continue;
            }
            let out = self.run_scope(&scope).map_err(GraphError::from)?;
            self.reference.insert(scope, out);
        }
        Ok(())
    }

    fn compress(
        &mut self,
        rel: &str,
        method: &dyn OneShot,
        sparsity: f64,
    ) -> Result<LinearOutcome> {
        let full = self.full(rel);
        let mut weight = linear_weight(&self.model, &full)?;
        let bias_path = format!("{full}.bias");
        let mut bias = param_value(&self.model, &bias_path).map(|(_, v)| v);
        let empty = InputStats::default();
        let stats = self.stats.get(rel).unwrap_or(&empty);
        let [out, inp] = [weight.shape()[0], weight.shape()[1]];
        let start = Instant::now();
        let report = method
            .compress_linear(&mut LinearSlot {
                path: &full,
                weight: &mut weight,
                bias: bias.as_mut(),
                stats,
                sparsity,
            })
            .map_err(GraphError::from)?;
        let seconds = start.elapsed().as_secs_f64();
        if weight.shape() != [out, inp] {
            return Err(GraphError::from(compress_err(
                method.name(),
                format!("changed the shape of '{full}' to {:?}", weight.shape()),
            )));
        }
        let mut values = BTreeMap::new();
        values.insert(
            format!("{full}.weight"),
            transpose(weight.data(), out, inp).into_data(),
        );
        if let Some(b) = bias {
            values.insert(bias_path, b);
        }
        self.model = set_params(self.model.clone(), values);
        Ok(LinearOutcome {
            path: full,
            shape: [out, inp],
            sparsity,
            report,
            seconds,
        })
    }
}

impl<M: BlockModel> BlockOps for BlockCtx<M> {
    fn index(&self) -> usize {
        self.index
    }

    fn path(&self) -> &str {
        &self.prefix
    }

    fn mappings(&self) -> &[SmoothMapping] {
        &self.mappings
    }

    fn linears(&self) -> Vec<String> {
        self.linears.clone()
    }

    fn stats(&self, linear: &str) -> compress_core::Result<&InputStats> {
        self.stats.get(linear).ok_or_else(|| {
            compress_err(
                "calibration",
                format!("no statistics for '{}'", self.full(linear)),
            )
        })
    }

    fn weight(&self, linear: &str) -> compress_core::Result<Dense<f32>> {
        linear_weight(&self.model, &self.full(linear)).map_err(to_core)
    }

    fn set_weight(&mut self, linear: &str, weight: Dense<f32>) -> compress_core::Result<()> {
        let full = self.full(linear);
        let path = format!("{full}.weight");
        // Burn's [in, out] against the new [out, in].
        let [inp, out] = match param_shape(&self.model, &path).as_deref() {
            Some(&[inp, out]) => [inp, out],
            _ => return Err(to_core(unknown(&path))),
        };
        if weight.shape() != [out, inp] {
            return Err(compress_err(
                "calibration",
                format!(
                    "'{full}' is {:?}, the new weight {:?}",
                    [out, inp],
                    weight.shape()
                ),
            ));
        }
        let mut values = BTreeMap::new();
        values.insert(path, transpose(weight.data(), out, inp).into_data());
        self.model = set_params(self.model.clone(), values);
        Ok(())
    }

    fn fold_scales(
        &mut self,
        mapping: &SmoothMapping,
        scales: &[f32],
    ) -> compress_core::Result<()> {
        let name = format!(
            "{} -> {}",
            self.full(&mapping.smooth),
            mapping.balance.join(", ")
        );
        if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(compress_err(
                "calibration",
                format!("scale {bad} for {name}: scales must be finite and positive"),
            ));
        }
        let inverse: Vec<f32> = scales.iter().map(|s| 1.0 / s).collect();
        let mut model = self.model.clone();
        let smooth = self.full(&mapping.smooth);
        match mapping.kind {
            SmoothKind::Norm => {
                model =
                    scale_axis(model, &format!("{smooth}.gamma"), 0, &inverse).map_err(to_core)?;
                if param_shape(&model, &format!("{smooth}.beta")).is_some() {
                    model = scale_axis(model, &format!("{smooth}.beta"), 0, &inverse)
                        .map_err(to_core)?;
                }
            }
            SmoothKind::Linear => {
                // Burn's [in, out]: the outputs are axis 1.
                model =
                    scale_axis(model, &format!("{smooth}.weight"), 1, &inverse).map_err(to_core)?;
                if param_shape(&model, &format!("{smooth}.bias")).is_some() {
                    model = scale_axis(model, &format!("{smooth}.bias"), 0, &inverse)
                        .map_err(to_core)?;
                }
            }
        }
        for b in &mapping.balance {
            model = scale_axis(model, &format!("{}.weight", self.full(b)), 0, scales)
                .map_err(to_core)?;
        }
        self.model = model;
        // The balance Linears now read x / s.
        for b in &mapping.balance {
            if let Some(st) = self.stats.get_mut(b) {
                rescale_stats(st, &inverse);
            }
            if let Some(xs) = self.inputs.get_mut(b) {
                let device = xs.first().map(|x| x.device());
                if let Some(device) = device {
                    let f = Tensor::<3>::from_data(
                        TensorData::new(inverse.clone(), [1, 1, inverse.len()]),
                        &device,
                    );
                    for x in xs.iter_mut() {
                        *x = x.clone() * f.clone();
                    }
                }
            }
        }
        Ok(())
    }

    fn inspect_error(
        &mut self,
        scope: &str,
        overrides: &[(String, Dense<f32>)],
    ) -> compress_core::Result<f64> {
        let reference = self.reference.get(scope).cloned().ok_or_else(|| {
            compress_err(
                "calibration",
                format!(
                    "no full-precision output of scope '{}' (the method must ask for inputs, and the scope must be a mapping's inspect)",
                    self.full(scope)
                ),
            )
        })?;
        let saved = self.model.clone();
        for (linear, w) in overrides {
            self.set_weight(linear, w.clone())?;
        }
        let outs = self.run_scope(scope);
        self.model = saved;
        let outs = outs?;
        let mut sum = 0.0f64;
        let mut count = 0usize;
        for (o, r) in outs.into_iter().zip(reference) {
            count += o.shape().num_elements();
            let d = (o - r).powi_scalar(2).sum().cast(FloatDType::F64);
            sum += d.into_scalar::<f64>();
        }
        Ok(sum / count.max(1) as f64)
    }

    fn input_tokens(&self, linear: &str, max_tokens: usize) -> compress_core::Result<Dense<f32>> {
        let xs = self.inputs.get(linear).ok_or_else(|| {
            compress_err(
                "calibration",
                format!(
                    "no cached input of '{}' (the method must ask for inputs)",
                    self.full(linear)
                ),
            )
        })?;
        let d = xs.first().map_or(0, |x| x.dims()[2]);
        let rows: Vec<f32> = xs
            .iter()
            .flat_map(|x| x.clone().into_data().iter::<f32>().collect::<Vec<_>>())
            .collect();
        let total = rows.len().checked_div(d).unwrap_or(0);
        let take = max_tokens.min(total).max(usize::from(total > 0));
        let stride = total.checked_div(take).unwrap_or(1);
        let mut out = Vec::with_capacity(take * d);
        for k in 0..take {
            let r = k * stride;
            out.extend_from_slice(&rows[r * d..(r + 1) * d]);
        }
        Ok(Dense::new(vec![take, d], out))
    }
}

/// Statistics of `x / s` from those of `x` (`inverse` = 1 / s).
fn rescale_stats(st: &mut InputStats, inverse: &[f32]) {
    let inv: Vec<f64> = inverse.iter().map(|&v| f64::from(v)).collect();
    if let Some(h) = st.hessian.as_mut() {
        let d = inv.len();
        for (k, v) in h.data_mut().iter_mut().enumerate() {
            *v *= inv[k / d] * inv[k % d];
        }
    }
    if let Some(v) = st.sq_norm.as_mut() {
        v.iter_mut().zip(&inv).for_each(|(a, s)| *a *= s * s);
    }
    if let Some(v) = st.abs_mean.as_mut() {
        v.iter_mut().zip(&inv).for_each(|(a, s)| *a *= s);
    }
    if let Some(v) = st.abs_max.as_mut() {
        v.iter_mut().zip(inverse).for_each(|(a, s)| *a *= s);
    }
}

fn to_core(e: GraphError) -> compress_core::CompressError {
    match e {
        GraphError::Core(c) => *c,
        other => compress_err("calibration", other.to_string()),
    }
}
