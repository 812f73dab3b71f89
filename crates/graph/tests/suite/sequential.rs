//! Layer-sequential calibration on a small random Llama (GQA: 4 query heads, 2 KV heads):
//! statistics against a direct computation, propagation, scale folding, OWL ratios, errors.

use std::sync::Mutex;

use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use compress_core::Dense;
use compress_core::oneshot::{
    BlockModel, BlockOps, BlockReport, InputStats, LinearReport, LinearSlot, OneShot,
    SparsityProfile, SparsitySpec, StatNeeds,
};
use compress_graph::sequential::{SequentialOptions, compress_layerwise, compress_sequential};
use compress_zoo::{Llama, LlamaConfig};

fn tiny(device: &Device) -> Llama {
    LlamaConfig {
        layers: 2,
        hidden: 16,
        ffn: 24,
        heads: 4,
        kv_heads: 2,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        vocab: 40,
    }
    .init(device)
}

fn calib(samples: usize, seq: usize, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = (0..samples * seq)
        .map(|i| ((i * 7 + 3) % 40) as i64)
        .collect();
    Tensor::from_data(TensorData::new(ids, [samples, seq]), device)
}

/// Records every Linear's statistics; zeroes `mlp.down_proj` when `zero_down`.
struct Recorder {
    needs: StatNeeds,
    zero_down: bool,
    seen: Mutex<Vec<(String, InputStats, f64)>>,
}

impl Recorder {
    fn new(needs: StatNeeds, zero_down: bool) -> Self {
        Self {
            needs,
            zero_down,
            seen: Mutex::new(Vec::new()),
        }
    }
    fn stats(&self, path: &str) -> InputStats {
        let seen = self.seen.lock().unwrap();
        seen.iter().find(|(p, ..)| p == path).unwrap().1.clone()
    }
}

impl OneShot for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn needs(&self) -> StatNeeds {
        self.needs
    }
    fn compress_linear(&self, linear: &mut LinearSlot<'_>) -> compress_core::Result<LinearReport> {
        self.seen.lock().unwrap().push((
            linear.path.to_string(),
            linear.stats.clone(),
            linear.sparsity,
        ));
        if self.zero_down && linear.path.ends_with("mlp.down_proj") {
            linear.weight.data_mut().fill(0.0);
        }
        Ok(LinearReport::default())
    }
}

/// `[n, d]` rows of a `[b, t, d]` tensor on the host.
fn rows(x: Tensor<3>) -> (usize, usize, Vec<f64>) {
    let [b, t, d] = x.dims();
    let v = x.into_data().iter::<f32>().map(f64::from).collect();
    (b * t, d, v)
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol * scale, "{what}: {g} vs {w}");
    }
}

#[test]
fn the_statistics_are_the_reference_scalings_of_each_linear_input() {
    let device = Device::flex();
    let model = tiny(&device);
    let ids = calib(3, 5, &device);
    let needs = StatNeeds {
        hessian: true,
        sq_norm: true,
        abs_mean: true,
        abs_max: true,
        inputs: false,
    };
    let method = Recorder::new(needs, false);
    let options = SequentialOptions {
        chunk: 2, // chunks of 2 and 1 sequences: two captures, one accumulator
        ..SequentialOptions::default()
    };
    let (after, report) =
        compress_sequential(model.clone(), ids.clone(), &method, &options).unwrap();
    assert_eq!(report.linears.len(), 14);
    assert_eq!((report.samples, report.seq_len), (3, 5));
    // Block 1's q_proj reads input_layernorm(block 0's output) (the weights did not change).
    let x1 = model.block_forward(0, model.embed(ids.clone()));
    let xq = model.model.layers[1].input_layernorm.forward(x1);
    let (n, d, x) = rows(xq);
    let mut h = vec![0.0; d * d];
    for r in 0..n {
        for i in 0..d {
            for j in 0..d {
                h[i * d + j] += 2.0 * x[r * d + i] * x[r * d + j] / 3.0;
            }
        }
    }
    let sq: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|r| x[r * d + j].powi(2)).sum::<f64>() / 3.0)
        .collect();
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|r| x[r * d + j].abs()).sum::<f64>() / n as f64)
        .collect();
    let max: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|r| x[r * d + j].abs()).fold(0.0, f64::max))
        .collect();
    let s = method.stats("model.layers.1.self_attn.q_proj");
    assert_eq!((s.samples, s.tokens), (3, 15));
    assert_close(s.hessian.as_ref().unwrap().data(), &h, 1e-5, "hessian");
    assert_close(s.sq_norm.as_ref().unwrap(), &sq, 1e-5, "sq_norm");
    assert_close(s.abs_mean.as_ref().unwrap(), &mean, 1e-5, "abs_mean");
    let got_max: Vec<f64> = s.abs_max.unwrap().iter().map(|&v| f64::from(v)).collect();
    assert_close(&got_max, &max, 1e-6, "abs_max");
    // k and v read the same tensor: the same statistics.
    assert_eq!(
        method.stats("model.layers.1.self_attn.k_proj"),
        method.stats("model.layers.1.self_attn.q_proj")
    );
    // o_proj reads the 4 heads' context, down_proj the 24 FFN channels.
    let o = method.stats("model.layers.0.self_attn.o_proj");
    assert_eq!(o.hessian.unwrap().shape(), [16, 16]);
    let down = method.stats("model.layers.0.mlp.down_proj");
    assert_eq!(down.sq_norm.unwrap().len(), 24);
    // Nothing was compressed: the same function.
    let (a, b) = (model.forward(ids.clone()), after.forward(ids));
    assert!((a - b).abs().max().into_scalar::<f32>() < 1e-6);
}

#[test]
fn block_inputs_follow_the_compressed_block_unless_propagation_is_off() {
    let device = Device::flex();
    let model = tiny(&device);
    let ids = calib(2, 4, &device);
    let needs = StatNeeds {
        abs_max: true,
        ..StatNeeds::default()
    };
    let path = "model.layers.1.self_attn.q_proj";
    let expect = |m: &Llama| -> Vec<f64> {
        let x = m.model.layers[1]
            .input_layernorm
            .forward(m.block_forward(0, m.embed(ids.clone())));
        let (n, d, x) = rows(x);
        (0..d)
            .map(|j| (0..n).map(|r| x[r * d + j].abs()).fold(0.0, f64::max))
            .collect()
    };
    for propagate in [true, false] {
        let method = Recorder::new(needs, true);
        let options = SequentialOptions {
            propagate_error: propagate,
            ..SequentialOptions::default()
        };
        let (after, _) =
            compress_sequential(model.clone(), ids.clone(), &method, &options).unwrap();
        let zero = after.model.layers[0].mlp.down_proj.weight.val();
        assert_eq!(zero.abs().sum().into_scalar::<f32>(), 0.0);
        let seen: Vec<f64> = method
            .stats(path)
            .abs_max
            .unwrap()
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let want = if propagate {
            expect(&after)
        } else {
            expect(&model)
        };
        assert_close(&seen, &want, 1e-6, &format!("propagate {propagate}"));
        assert_ne!(expect(&after), expect(&model));
    }
}

/// One fold: the balance input's maxima before and after, and the scales.
type Fold = (Vec<f32>, Vec<f32>, Vec<f32>);

/// Folds scales into every mapping and checks the block's function is unchanged.
struct Folder {
    errors: Mutex<Vec<f64>>,
    maxima: Mutex<Vec<Fold>>,
}

impl OneShot for Folder {
    fn name(&self) -> &str {
        "folder"
    }
    fn needs(&self) -> StatNeeds {
        StatNeeds {
            abs_max: true,
            inputs: true,
            ..StatNeeds::default()
        }
    }
    fn transform_block(&self, block: &mut dyn BlockOps) -> compress_core::Result<BlockReport> {
        let mappings = block.mappings().to_vec();
        for m in &mappings {
            let before = block.stats(&m.balance[0])?.abs_max.clone().unwrap();
            let scales: Vec<f32> = (0..before.len()).map(|j| 0.5 + j as f32 * 0.25).collect();
            block.fold_scales(m, &scales)?;
            let after = block.stats(&m.balance[0])?.abs_max.clone().unwrap();
            self.maxima.lock().unwrap().push((before, after, scales));
            self.errors
                .lock()
                .unwrap()
                .push(block.inspect_error(&m.inspect, &[])?);
        }
        // An override changes the inspected output.
        let q = block.weight("self_attn.q_proj")?;
        let zero = Dense::new(q.shape().to_vec(), vec![0.0; q.numel()]);
        let err = block.inspect_error("self_attn", &[("self_attn.q_proj".into(), zero)])?;
        Ok(BlockReport {
            notes: vec![format!("override error {err:e}")],
        })
    }
    fn compress_linear(&self, _: &mut LinearSlot<'_>) -> compress_core::Result<LinearReport> {
        Ok(LinearReport::default())
    }
}

#[test]
fn folded_scales_leave_the_float_function_unchanged_and_rescale_the_statistics() {
    let device = Device::flex();
    let model = tiny(&device);
    // GQA: input_layernorm -> q,k,v; post_attention_layernorm -> gate,up; up -> down.
    assert_eq!(model.smooth_mappings(0).len(), 3);
    let ids = calib(2, 6, &device);
    let method = Folder {
        errors: Mutex::new(Vec::new()),
        maxima: Mutex::new(Vec::new()),
    };
    let (after, report) = compress_sequential(
        model.clone(),
        ids.clone(),
        &method,
        &SequentialOptions::default(),
    )
    .unwrap();
    for e in method.errors.lock().unwrap().iter() {
        assert!(*e < 1e-9, "{e}");
    }
    for (before, after, s) in method.maxima.lock().unwrap().iter() {
        for ((b, a), s) in before.iter().zip(after).zip(s) {
            assert!(
                (b / s - a).abs() <= 1e-6 * b.abs().max(1.0),
                "{b} / {s} != {a}"
            );
        }
    }
    assert!(report.notes[0].starts_with("model.layers.0: override error"));
    assert!(!report.notes[0].ends_with(" 0e0"), "{}", report.notes[0]);
    let (a, b) = (model.forward(ids.clone()), after.forward(ids));
    let worst = (a.clone() - b).abs().max().into_scalar::<f32>();
    assert!(worst < 1e-4 * a.abs().max().into_scalar::<f32>(), "{worst}");
    let gamma = |m: &Llama| m.model.layers[0].input_layernorm.gamma.val();
    assert!(
        (gamma(&model) - gamma(&after))
            .abs()
            .max()
            .into_scalar::<f32>()
            > 0.1
    );
}

struct Owl;

impl OneShot for Owl {
    fn name(&self) -> &str {
        "owl"
    }
    fn needs(&self) -> StatNeeds {
        StatNeeds::default()
    }
    fn sparsity(&self) -> Option<SparsitySpec> {
        Some(SparsitySpec {
            sparsity: 0.5,
            profile: SparsityProfile::Owl {
                m: 2.0,
                lambda: 0.08,
            },
        })
    }
    fn compress_linear(&self, linear: &mut LinearSlot<'_>) -> compress_core::Result<LinearReport> {
        assert!(linear.sparsity > 0.4 && linear.sparsity < 0.6);
        Ok(LinearReport::default())
    }
}

#[test]
fn owl_gives_blocks_ratios_around_the_target() {
    let device = Device::flex();
    let mut model = tiny(&device);
    // Make block 1's weights heavy-tailed so the blocks' outlier fractions differ.
    let w = &mut model.model.layers[1].mlp.down_proj.weight;
    *w = burn::module::Param::from_tensor(
        w.val() * Tensor::random([24, 16], Distribution::Uniform(0.0, 1.0), &device).powi_scalar(8),
    );
    let (_, report) = compress_sequential(
        model,
        calib(2, 4, &device),
        &Owl,
        &SequentialOptions::default(),
    )
    .unwrap();
    let s = &report.block_sparsity;
    assert_eq!(s.len(), 2);
    assert!(((s[0] + s[1]) / 2.0 - 0.5).abs() < 1e-12, "{s:?}");
    // Two blocks: OWL spreads them by exactly 2 lambda.
    assert!(((s[0] - s[1]).abs() - 0.16).abs() < 1e-12, "{s:?}");
    assert!(
        report
            .linears
            .iter()
            .all(|l| l.sparsity == s[0] || l.sparsity == s[1])
    );
}

#[test]
fn ignored_linears_are_left_alone_and_an_empty_calibration_set_is_refused() {
    let device = Device::flex();
    let model = tiny(&device);
    let method = Recorder::new(StatNeeds::default(), true);
    let options = SequentialOptions {
        ignore: vec![
            "mlp.down_proj".into(),
            "model.layers.0.self_attn.q_proj".into(),
        ],
        ..SequentialOptions::default()
    };
    let (after, report) =
        compress_sequential(model.clone(), calib(1, 3, &device), &method, &options).unwrap();
    assert_eq!(report.linears.len(), 14 - 3);
    let down = after.model.layers[1].mlp.down_proj.weight.val();
    assert!(down.abs().sum().into_scalar::<f32>() > 0.0);
    let empty = Tensor::<2, Int>::zeros([0, 4], &device);
    let err = compress_sequential(model, empty, &method, &options).unwrap_err();
    assert!(
        err.to_string().contains("calibration set is empty"),
        "{err}"
    );
}

/// A CNN without blocks: two convolutions (the second strided), a depthwise 3x3 one, a Linear.
#[derive(Module, Debug)]
struct SmallCnn {
    conv1: burn::nn::conv::Conv2d,
    conv2: burn::nn::conv::Conv2d,
    depthwise: burn::nn::conv::Conv2d,
    fc: burn::nn::Linear,
}

impl SmallCnn {
    fn new(device: &Device) -> Self {
        use burn::nn::PaddingConfig2d;
        use burn::nn::conv::Conv2dConfig;
        Self {
            conv1: Conv2dConfig::new([2, 4], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            conv2: Conv2dConfig::new([4, 4], [3, 3])
                .with_stride([2, 2])
                .init(device),
            depthwise: Conv2dConfig::new([4, 4], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_groups(4)
                .init(device),
            fc: burn::nn::LinearConfig::new(16, 3).init(device),
        }
    }
    fn conv2_input(&self, x: Tensor<4>) -> Tensor<4> {
        burn::tensor::activation::relu(self.conv1.forward(x))
    }
    fn depthwise_input(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv2.forward(self.conv2_input(x))
    }
    fn fc_input(&self, x: Tensor<4>) -> Tensor<2> {
        let y = self.depthwise.forward(self.depthwise_input(x));
        let [n, ..] = y.dims();
        y.reshape([n, 16])
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.fc_input(x))
    }
}

fn images(device: &Device) -> Vec<Tensor<4>> {
    // Two batches of different sizes: two captures.
    vec![
        Tensor::random([3, 2, 6, 6], Distribution::Normal(0.0, 1.0), device),
        Tensor::random([2, 2, 6, 6], Distribution::Normal(0.0, 1.0), device),
    ]
}

/// `2 / n * sum(rows^T rows)` over `[n_rows, d]` row blocks, `n` the number of images.
fn hessian_of(blocks: &[(usize, Vec<f64>)], d: usize, n: usize) -> Vec<f64> {
    let mut h = vec![0.0; d * d];
    for (rows, x) in blocks {
        for r in 0..*rows {
            for i in 0..d {
                for j in 0..d {
                    h[i * d + j] += 2.0 * x[r * d + i] * x[r * d + j] / n as f64;
                }
            }
        }
    }
    h
}

/// A convolution input's im2col rows `[n * positions, c * kh * kw]`.
fn unfolded(x: Tensor<4>, kernel: [usize; 2], stride: usize, padding: usize) -> (usize, Vec<f64>) {
    use burn::tensor::module::unfold4d;
    use burn::tensor::ops::UnfoldOptions;
    let cols = unfold4d(
        x,
        kernel,
        UnfoldOptions::new([stride, stride], [padding, padding], [1, 1]),
    );
    let [n, ckk, l] = cols.dims();
    let rows = cols.swap_dims(1, 2).reshape([n * l, ckk]);
    (
        n * l,
        rows.into_data().iter::<f32>().map(f64::from).collect(),
    )
}

/// Records each layer's statistics and weight; zeroes `conv1` when `zero_conv1`.
struct LayerRecorder {
    zero_conv1: bool,
    seen: Mutex<Vec<(String, InputStats, Dense<f32>)>>,
}

impl LayerRecorder {
    fn new(zero_conv1: bool) -> Self {
        Self {
            zero_conv1,
            seen: Mutex::new(Vec::new()),
        }
    }
    fn get(&self, path: &str) -> (InputStats, Dense<f32>) {
        let seen = self.seen.lock().unwrap();
        let (_, s, w) = seen.iter().find(|(p, ..)| p == path).unwrap();
        (s.clone(), w.clone())
    }
}

impl OneShot for LayerRecorder {
    fn name(&self) -> &str {
        "layer-recorder"
    }
    fn needs(&self) -> StatNeeds {
        StatNeeds {
            hessian: true,
            sq_norm: true,
            ..StatNeeds::default()
        }
    }
    fn compress_linear(&self, linear: &mut LinearSlot<'_>) -> compress_core::Result<LinearReport> {
        self.seen.lock().unwrap().push((
            linear.path.to_string(),
            linear.stats.clone(),
            linear.weight.clone(),
        ));
        if self.zero_conv1 && linear.path == "conv1" {
            linear.weight.data_mut().fill(0.0);
        }
        Ok(LinearReport::default())
    }
}

fn host(x: Tensor<4>) -> Vec<f64> {
    x.into_data().iter::<f32>().map(f64::from).collect()
}

#[test]
fn a_convolution_is_compressed_as_a_linear_on_its_unfolded_input() {
    let device = Device::flex();
    let model = SmallCnn::new(&device);
    let xs = images(&device);
    let method = LayerRecorder::new(false);
    let options = SequentialOptions {
        propagate_error: false,
        ..SequentialOptions::default()
    };
    let (after, report) =
        compress_layerwise(model.clone(), &xs, |m, x| m.forward(x), &method, &options).unwrap();
    let paths: Vec<&str> = report.linears.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(paths, ["conv1", "conv2", "depthwise", "fc"]);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    assert_eq!((report.samples, report.seq_len), (5, 1));
    assert_eq!(report.linears[0].shape, [4, 18]);
    assert_eq!(report.linears[1].shape, [4, 36]);
    assert_eq!(report.linears[2].shape, [4, 9]);
    assert_eq!(report.linears[3].shape, [3, 16]);

    // conv1: the Hessian of its padded 3x3 patches, and the flattened weight times those
    // patches (plus the bias) is the convolution.
    let blocks: Vec<_> = xs
        .iter()
        .map(|x| unfolded(x.clone(), [3, 3], 1, 1))
        .collect();
    let (s, w) = method.get("conv1");
    assert_eq!((s.samples, s.tokens), (5, 5 * 36));
    assert_close(
        s.hessian.as_ref().unwrap().data(),
        &hessian_of(&blocks, 18, 5),
        1e-5,
        "conv1 H",
    );
    // Wanda's norms are the same rows': the Hessian's diagonal over 2.
    let h = s.hessian.as_ref().unwrap().data();
    let diag: Vec<f64> = (0..18).map(|j| h[j * 18 + j] / 2.0).collect();
    // (the norms are summed in f32 per batch, the Hessian in f64)
    assert_close(s.sq_norm.as_ref().unwrap(), &diag, 1e-6, "conv1 sq_norm");
    let (rows, patches) = &blocks[0];
    let out = host(model.conv1.forward(xs[0].clone())); // [3, 4, 6, 6]
    let bias: Vec<f32> = model
        .conv1
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .iter::<f32>()
        .collect();
    for r in 0..*rows {
        let (img, pos) = (r / 36, r % 36);
        for o in 0..4 {
            let dot: f64 = (0..18)
                .map(|k| f64::from(w.data()[o * 18 + k]) * patches[r * 18 + k])
                .sum::<f64>()
                + f64::from(bias[o]);
            let want = out[(img * 4 + o) * 36 + pos];
            assert!(
                (dot - want).abs() < 1e-4,
                "row {r} out {o}: {dot} vs {want}"
            );
        }
    }
    // conv2: stride 2, no padding, on relu(conv1).
    let blocks: Vec<_> = xs
        .iter()
        .map(|x| unfolded(model.conv2_input(x.clone()), [3, 3], 2, 0))
        .collect();
    let (s, _) = method.get("conv2");
    assert_eq!(s.tokens, 5 * 4);
    assert_close(
        s.hessian.as_ref().unwrap().data(),
        &hessian_of(&blocks, 36, 5),
        1e-5,
        "conv2 H",
    );
    // depthwise: each of its 4 groups is a Linear [1, 9] on its own channel's 3x3 patches, with
    // that channel's Hessian.
    let out = host(
        model
            .depthwise
            .forward(model.depthwise_input(xs[0].clone())),
    ); // [3, 4, 2, 2]
    let bias: Vec<f32> = model
        .depthwise
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .iter::<f32>()
        .collect();
    for g in 0..4 {
        let channel = |x: &Tensor<4>| model.depthwise_input(x.clone()).narrow(1, g, 1);
        let blocks: Vec<_> = xs
            .iter()
            .map(|x| unfolded(channel(x), [3, 3], 1, 1))
            .collect();
        let (s, w) = method.get(&format!("depthwise (group {g} of 4)"));
        assert_eq!(w.shape(), [1, 9]);
        assert_close(
            s.hessian.as_ref().unwrap().data(),
            &hessian_of(&blocks, 9, 5),
            1e-5,
            &format!("depthwise group {g} H"),
        );
        let (rows, patches) = &blocks[0];
        for r in 0..*rows {
            let (img, pos) = (r / 4, r % 4);
            let dot: f64 = (0..9)
                .map(|k| f64::from(w.data()[k]) * patches[r * 9 + k])
                .sum::<f64>()
                + f64::from(bias[g]);
            let want = out[(img * 4 + g) * 4 + pos];
            assert!(
                (dot - want).abs() < 1e-4,
                "group {g} row {r}: {dot} vs {want}"
            );
        }
    }
    // fc: one row per image; its weight is Burn's [in, out] transposed.
    let blocks: Vec<_> = xs
        .iter()
        .map(|x| {
            let y = model.fc_input(x.clone());
            (
                y.dims()[0],
                y.into_data().iter::<f32>().map(f64::from).collect(),
            )
        })
        .collect();
    let (s, w) = method.get("fc");
    assert_eq!((s.samples, s.tokens), (5, 5));
    assert_close(
        s.hessian.as_ref().unwrap().data(),
        &hessian_of(&blocks, 16, 5),
        1e-5,
        "fc H",
    );
    let burn_w: Vec<f32> = model.fc.weight.val().into_data().iter::<f32>().collect(); // [16, 3]
    assert_eq!(w.data()[2 * 16 + 5], burn_w[5 * 3 + 2]);
    // Nothing was changed: the same function.
    let (a, b) = (model.forward(xs[0].clone()), after.forward(xs[0].clone()));
    assert!((a - b).abs().max().into_scalar::<f32>() < 1e-6);
}

#[test]
fn each_layer_sees_the_earlier_layers_compressed_unless_propagation_is_off() {
    let device = Device::flex();
    let model = SmallCnn::new(&device);
    let xs = images(&device);
    let conv2_h = |m: &SmallCnn| {
        let blocks: Vec<_> = xs
            .iter()
            .map(|x| unfolded(m.conv2_input(x.clone()), [3, 3], 2, 0))
            .collect();
        hessian_of(&blocks, 36, 5)
    };
    for propagate in [true, false] {
        let method = LayerRecorder::new(true);
        let options = SequentialOptions {
            propagate_error: propagate,
            ..SequentialOptions::default()
        };
        let (after, _) =
            compress_layerwise(model.clone(), &xs, |m, x| m.forward(x), &method, &options).unwrap();
        let zero = after.conv1.weight.val().abs().sum().into_scalar::<f32>();
        assert_eq!(zero, 0.0);
        let want = if propagate {
            conv2_h(&after)
        } else {
            conv2_h(&model)
        };
        let (s, _) = method.get("conv2");
        assert_close(
            s.hessian.as_ref().unwrap().data(),
            &want,
            1e-5,
            &format!("propagate {propagate}"),
        );
        assert_ne!(conv2_h(&after), conv2_h(&model));
    }
}

#[test]
fn layerwise_refuses_block_methods_and_empty_calibration_and_honours_ignore() {
    let device = Device::flex();
    let model = SmallCnn::new(&device);
    let xs = images(&device);
    let options = SequentialOptions {
        ignore: vec!["conv2".into()],
        ..SequentialOptions::default()
    };
    let method = LayerRecorder::new(false);
    let (_, report) =
        compress_layerwise(model.clone(), &xs, |m, x| m.forward(x), &method, &options).unwrap();
    let paths: Vec<&str> = report.linears.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(paths, ["conv1", "depthwise", "fc"]);
    // llm-compressor's `re:` entries, matched from the start of the path.
    let pattern = SequentialOptions {
        ignore: vec!["re:conv".into()],
        ..SequentialOptions::default()
    };
    let (_, report) =
        compress_layerwise(model.clone(), &xs, |m, x| m.forward(x), &method, &pattern).unwrap();
    let paths: Vec<&str> = report.linears.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(paths, ["depthwise", "fc"]);
    // A method that needs no statistics (round-to-nearest) still gets one (empty) set per group.
    let none = Recorder::new(StatNeeds::default(), false);
    let (_, report) =
        compress_layerwise(model.clone(), &xs, |m, x| m.forward(x), &none, &options).unwrap();
    assert_eq!(report.linears.len(), 3);
    let seen = none.seen.lock().unwrap().len();
    assert_eq!(seen, 1 + 4 + 1, "conv1, the 4 depthwise groups, fc");

    let typo = SequentialOptions {
        ignore: vec!["conv3".into()],
        ..SequentialOptions::default()
    };
    let err = compress_layerwise(model.clone(), &xs, |m, x| m.forward(x), &method, &typo)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "graph replay: ignore: the model's forward calls no layer 'conv3'"
    );

    let empty: Vec<Tensor<4>> = vec![Tensor::zeros([0, 2, 6, 6], &device)];
    let err = compress_layerwise(
        model.clone(),
        &empty,
        |m, x| m.forward(x),
        &method,
        &options,
    )
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "graph replay: the calibration set is empty (no inputs)"
    );

    // A method that needs cached inputs (AWQ's smoothing) needs a transformer's blocks.
    let inputs = Recorder::new(
        StatNeeds {
            inputs: true,
            ..StatNeeds::default()
        },
        false,
    );
    let err = compress_layerwise(model, &xs, |m, x| m.forward(x), &inputs, &options)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("'recorder' balances each Linear against the norm or Linear feeding it")
            && err.contains("use magnitude, wanda, sparsegpt, rtn or gptq"),
        "{err}"
    );
}
