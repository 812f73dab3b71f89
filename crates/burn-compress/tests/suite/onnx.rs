//! ONNX export checked in a real runtime: every exported model is loaded in tract (pure Rust)
//! and run at batch 2 (captured at batch 1, so the dynamic batch dimension is exercised); its
//! output must match Burn's on the same input.

use burn::prelude::*;
use burn_compress::CompressConfig;
use burn_compress::graph::onnx::{OnnxOptions, export};
use burn_compress::zoo::{AnyModel, Arch, dispatch};
use burn_compress::zoo_capture::capture_zoo;
use tract_onnx::prelude::{self as tract, Framework, InferenceModelExt, IntoRunnable, tvec};

/// Deterministic inputs in [-1, 1).
pub fn inputs(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Run an exported model in tract on one input tensor.
pub fn run_tract(bytes: &[u8], input: tract::Tensor) -> Vec<f32> {
    let shape = input.shape().to_vec();
    let fact = tract::InferenceFact::dt_shape(input.datum_type(), shape);
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .expect("tract reads the model")
        .with_input_fact(0, fact)
        .unwrap()
        .into_optimized()
        .expect("tract optimizes the model")
        .into_runnable()
        .unwrap();
    let out = model
        .run(tvec!(input.into()))
        .expect("tract runs the model");
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Export `model` captured at batch 1 of `shape`, run Burn and tract at batch 2, compare.
fn check(model: &AnyModel, shape: &[usize]) -> f32 {
    let graph = capture_zoo(model, shape).unwrap();
    let bytes = dispatch!(model, m => export(&graph, m, &OnnxOptions::default())).unwrap();
    let mut shape2 = shape.to_vec();
    shape2[0] = 2;
    let n: usize = shape2.iter().product();
    let device = Device::flex();
    let (burn_out, input) = if model.arch().takes_tokens() {
        let ids: Vec<i64> = inputs(n, 7)
            .iter()
            .map(|v| ((v + 1.0) * 40.0) as i64)
            .collect();
        let x = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [2, shape[1]]), &device);
        let out = model.forward_tokens(x).unwrap();
        (out, tract::Tensor::from_shape(&shape2, &ids).unwrap())
    } else {
        let data = inputs(n, 3);
        let dims: [usize; 4] = shape2.clone().try_into().unwrap();
        let x = Tensor::<4>::from_data(TensorData::new(data.clone(), dims), &device);
        (
            model.forward(x),
            tract::Tensor::from_shape(&shape2, &data).unwrap(),
        )
    };
    let expected: Vec<f32> = burn_out.into_data().try_to_vec().unwrap();
    let got = run_tract(&bytes, input);
    max_diff(&expected, &got)
}

fn assert_close(arch: Arch, shape: &[usize]) {
    let model = AnyModel::init(arch, &Device::flex());
    let d = check(&model, shape);
    assert!(d <= 1e-4, "{arch}: max |burn - tract| = {d}");
}

#[test]
fn lenet5_exported_to_onnx_matches_burn_in_tract() {
    assert_close(Arch::LeNet5, &[1, 1, 28, 28]);
}

#[test]
fn small_cnn_exported_to_onnx_matches_burn_in_tract() {
    assert_close(Arch::SmallCnn, &Arch::SmallCnn.input_shape(1));
}

#[test]
fn resnet18_exported_to_onnx_matches_burn_in_tract() {
    assert_close(Arch::ResNet18, &[1, 3, 64, 64]);
}

#[test]
fn mobilenet_v2_exported_to_onnx_matches_burn_in_tract() {
    assert_close(Arch::MobileNetV2, &[1, 3, 64, 64]);
}

#[test]
fn tiny_transformer_exported_to_onnx_matches_burn_in_tract() {
    assert_close(Arch::TinyTransformer, &[1, 8]);
}

#[test]
fn minilm_exported_to_onnx_matches_burn_in_tract() {
    // BERT's token-type ids are an integer `zeros` inside the forward.
    assert_close(Arch::MiniLmL6, &[1, 8]);
}

#[path = "../../../../benches/src/pruned.rs"]
mod pruned;

/// ResNet-18 with half of every coupled conv channel group removed (L1 norm), sped up.
pub fn resnet18_half(device: &Device) -> AnyModel {
    let model = AnyModel::init(Arch::ResNet18, device);
    let graph = capture_zoo(&model, &[1, 3, 64, 64]).unwrap();
    pruned::resnet18_half(&model, &graph)
}

#[test]
fn a_half_channel_sped_up_resnet18_exported_to_onnx_matches_burn_in_tract() {
    let small = resnet18_half(&Device::flex());
    let AnyModel::ResNet18(m) = &small else {
        unreachable!()
    };
    assert!(m.conv1.weight.dims()[0] < 64, "{:?}", m.conv1.weight.dims());
    let d = check(&small, &[1, 3, 64, 64]);
    assert!(d <= 1e-4, "sped-up resnet18: max |burn - tract| = {d}");
}

/// The quickstart's LeNet-5 quantized by PTQ (int8), exported as QDQ and run by tract on the
/// whole MNIST-5k test split: its accuracy is the simulation's within 0.3 points.
#[test]
fn an_int8_qdq_lenet5_in_tract_reaches_the_accuracy_of_our_quant_sim() {
    use burn_compress::core::dataset::ImageDataset;
    use burn_compress::quant::export_qdq;
    use burn_compress::quantize::{QuantizeJob, quantize_classifier};
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let device = Device::flex();
    let (train, test) = ImageDataset::load(root.join("data/mnist5k.safetensors"), 255.0)
        .unwrap()
        .split();
    let AnyModel::LeNet5(model) = AnyModel::load(
        Arch::LeNet5,
        &root.join("data/lenet5-mnist5k.safetensors"),
        &device,
    )
    .unwrap() else {
        unreachable!()
    };
    let config = CompressConfig::from_file(root.join("configs/lenet5-ptq-int8.toml")).unwrap();
    let q = quantize_classifier(&model, &train, &QuantizeJob::new("ptq", config)).unwrap();
    let sim = q.accuracy(&test).unwrap();
    let plain = AnyModel::LeNet5(burn_compress::core::mask::deep_copy(&q.model).materialize());
    let graph = capture_zoo(&plain, &[1, 1, 28, 28]).unwrap();
    let AnyModel::LeNet5(m) = &plain else {
        unreachable!()
    };
    let bytes = export_qdq(&graph, m, &q.calibration(), OnnxOptions::default()).unwrap();
    let (images, labels) = test.batch(0, test.len(), &device);
    let shape = images.dims().to_vec();
    let pixels: Vec<f32> = images.into_data().try_to_vec().unwrap();
    let labels: Vec<i64> = labels.into_data().convert::<i64>().try_to_vec().unwrap();
    let logits = run_tract(&bytes, tract::Tensor::from_shape(&shape, &pixels).unwrap());
    let correct = logits
        .chunks(10)
        .zip(&labels)
        .filter(|(row, l)| {
            let best = (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            best as i64 == **l
        })
        .count();
    let acc = correct as f64 / labels.len() as f64;
    assert!(
        (acc - sim).abs() <= 0.003,
        "tract QDQ {acc} vs QuantSim {sim}"
    );
    println!("QDQ LeNet-5: tract {acc:.4}, QuantSim {sim:.4}");
}

/// SmolLM2's structure at a small size: GQA (4 query heads, 2 KV heads), RoPE, RMSNorm, SiLU
/// gating, the causal mask and the tied head.
fn tiny_llama(device: &Device) -> burn_compress::zoo::Llama {
    burn_compress::zoo::LlamaConfig {
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

#[test]
fn a_llama_decoder_exported_to_onnx_matches_burn_in_tract() {
    let device = Device::flex();
    let model = tiny_llama(&device);
    let graph =
        compress_graph::capture(&model, |m, d| m.forward(Tensor::<2, Int>::zeros([1, 6], d)))
            .unwrap();
    let bytes = export(&graph, &model, &OnnxOptions::default()).unwrap();
    let ids: Vec<i64> = inputs(12, 5)
        .iter()
        .map(|v| ((v + 1.0) * 19.9) as i64)
        .collect();
    let x = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [2, 6]), &device);
    let expected: Vec<f32> = model.forward(x).into_data().try_to_vec().unwrap();
    let got = run_tract(&bytes, tract::Tensor::from_shape(&[2, 6], &ids).unwrap());
    let d = max_diff(&expected, &got);
    assert!(d <= 1e-4, "llama: max |burn - tract| = {d}");
}

#[test]
fn a_w8a8_llama_exported_with_per_token_activations_matches_the_tapped_burn_forward() {
    use burn_compress::core::oneshot::ActivationQuant;
    use burn_compress::oneshot::{
        ActivationQuantTap, forward_tapped, onnx_options_with_activations,
    };
    let device = Device::flex();
    let model = tiny_llama(&device);
    let graph =
        compress_graph::capture(&model, |m, d| m.forward(Tensor::<2, Int>::zeros([1, 6], d)))
            .unwrap();
    let quant = ActivationQuant::PerTokenDynamic { bits: 8 };
    let options =
        onnx_options_with_activations(&model, &graph, quant, OnnxOptions::default()).unwrap();
    // q, k and v read one tensor, gate and up another: 4 distinct inputs per block.
    assert_eq!(options.per_token.len(), 2 * 4);
    let bytes = export(&graph, &model, &options).unwrap();
    let ids: Vec<i64> = inputs(12, 9)
        .iter()
        .map(|v| ((v + 1.0) * 19.9) as i64)
        .collect();
    let x = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [2, 6]), &device);
    let mut tap = ActivationQuantTap::new(&model, quant);
    // (`forward_tapped` ends with the model's head: these are logits)
    let tapped = forward_tapped(&model, x.clone(), &mut tap).unwrap();
    let want: Vec<f32> = tapped.into_data().try_to_vec().unwrap();
    let float: Vec<f32> = model.forward(x).into_data().try_to_vec().unwrap();
    let got = run_tract(&bytes, tract::Tensor::from_shape(&[2, 6], &ids).unwrap());
    let (d, moved) = (max_diff(&want, &got), max_diff(&want, &float));
    assert!(d <= 1e-4, "max |burn int8 - tract int8| = {d}");
    assert!(
        moved > 100.0 * d.max(1e-7),
        "int8 activations moved the logits by {moved}"
    );
}
