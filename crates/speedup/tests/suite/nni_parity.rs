//! Parity with NNI 3.0's ModelSpeedup on the oracle models: the same shapes, the same outputs.

use burn::prelude::*;
use compress_core::ModuleIndex;
use compress_core::testing::oracle::{burn_path, fixture, nni_pruning, tensors, transpose};
use compress_graph::{CountMode, capture, count, count_flops_params};
use compress_speedup::SpeedupError;
use compress_zoo::{Mlp, SmallCnn, load_pytorch_safetensors};

use crate::common::{input, max_abs_diff, nni_masks, speedup};

fn cnn(device: &Device) -> SmallCnn {
    load_pytorch_safetensors(
        SmallCnn::new(device),
        &fixture("cnn_weights.safetensors"),
        "small-cnn",
    )
    .unwrap()
}

fn mlp(device: &Device) -> Mlp {
    load_pytorch_safetensors(Mlp::new(device), &fixture("mlp_weights.safetensors"), "mlp").unwrap()
}

/// The oracle CNN on a zero image: the forward a speedup traces.
fn cnn_trace(m: &SmallCnn, d: &Device) -> Tensor<2> {
    m.forward(Tensor::zeros([1, 1, 8, 8], d))
}

/// The oracle MLP on a zero feature vector: the forward a speedup traces.
fn mlp_trace(m: &Mlp, d: &Device) -> Tensor<2> {
    m.forward(Tensor::zeros([1, 64], d))
}

/// Asserts the sped-up `small` has NNI's `speedup_shapes` of `spec` (case `what`).
fn assert_nni_shapes<M: Module>(small: &M, spec: &serde_json::Value, what: &str) {
    let index = ModuleIndex::from_module(small);
    for (path, shape) in nni_shapes(spec) {
        assert_eq!(index.param(&path).unwrap().shape, shape, "{what}: {path}");
    }
}

/// Asserts two outputs agree within 1e-5.
fn assert_same_output(ours: Tensor<2>, expected: Tensor<2>, what: &str) {
    let diff = max_abs_diff(ours, expected);
    assert!(diff < 1e-5, "{what} differ by {diff}");
}

/// NNI's `speedup_shapes` in Burn's names and layout.
fn nni_shapes(case: &serde_json::Value) -> Vec<(String, Vec<usize>)> {
    case["speedup_shapes"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .map(|(k, v)| {
            let (path, linear) = compress_core::testing::oracle::burn_path(k);
            let mut shape: Vec<usize> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            if linear {
                shape.reverse();
            }
            (path, shape)
        })
        .collect()
}

fn logits(v: &serde_json::Value, device: &Device) -> Tensor<2> {
    let rows: Vec<Vec<f32>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let (n, c) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [n, c]), device)
}

/// NNI's sped-up parameters of one case, in Burn's names and layout.
fn nni_speedup_weights(model: &str, case: &str) -> Vec<(String, compress_core::Dense<f32>)> {
    let prefix = format!("{model}/{case}/");
    tensors("nni_speedup_weights.safetensors")
        .into_iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(&prefix)?.to_string();
            if name.ends_with("num_batches_tracked") {
                return None;
            }
            let (path, linear) = burn_path(&name);
            Some((path, if linear { transpose(&v) } else { v }))
        })
        .collect()
}

#[test]
fn small_cnn_speedup_matches_nni_channels_shapes_and_outputs() {
    let device = Device::flex();
    let oracle = nni_pruning();
    let model = cnn(&device);
    let x = input("cnn_x", [4, 1, 8, 8], &device);
    for case in [
        "l1",
        "l2",
        "fpgm",
        "l1_exclude",
        "l1_opnames",
        "l1_dependency",
        "slim",
        "taylor",
    ] {
        let spec = &oracle["cnn"]["cases"][case];
        let masks = nni_masks("cnn", case);
        let (small, report, _) = speedup(&model, &masks, cnn_trace).unwrap();
        assert_nni_shapes(&small, spec, &format!("cnn/{case}"));
        // Every parameter equals NNI's sped-up parameter: the same channels, in the same order.
        let ours = compress_core::testing::oracle::module_tensors(&small);
        for (path, expected) in nni_speedup_weights("cnn", case) {
            assert_eq!(
                ours[&path], expected,
                "cnn/{case}: {path} differs from NNI's sped-up tensor"
            );
        }
        // And the sped-up model computes exactly what the masked model with propagated masks
        // computes (the channels it removes contribute nothing there).
        let propagated = report.plan.to_masks().apply_hard(&model).unwrap();
        assert_same_output(
            small.forward(x.clone()),
            propagated.forward(x.clone()),
            &format!("cnn/{case}: sped-up vs propagated-mask output"),
        );
    }
}

#[test]
fn mlp_speedup_matches_nni_shapes_and_outputs() {
    let device = Device::flex();
    let oracle = nni_pruning();
    let model = mlp(&device);
    let x = input("mlp_x", [4, 64], &device);
    for case in ["l1", "l2", "fpgm", "l1_exclude", "taylor"] {
        let spec = &oracle["mlp"]["cases"][case];
        let (small, report, _) = speedup(&model, &nni_masks("mlp", case), mlp_trace).unwrap();
        assert_nni_shapes(&small, spec, &format!("mlp/{case}"));
        assert_eq!(report.removed, 16 + 8, "mlp/{case}");
        assert_same_output(
            small.forward(x.clone()),
            logits(&spec["speedup_output"], &device),
            &format!("mlp/{case}: sped-up output vs NNI's"),
        );
    }
}

#[test]
fn global_pruning_that_empties_a_layer_is_nnis_empty_layer_error() {
    let device = Device::flex();
    let model = cnn(&device);
    for case in ["l1_global", "l1_global_max"] {
        let Err(err) = speedup(&model, &nni_masks("cnn", case), cnn_trace) else {
            panic!("{case}: an emptied layer must be refused");
        };
        assert!(
            matches!(err, SpeedupError::EmptyLayer { ref layer, .. } if layer == "conv1"),
            "{case}: {err}"
        );
        assert!(
            err.to_string().contains("'conv1' with no channels"),
            "{err}"
        );
    }
}

#[test]
fn fine_grained_masks_remove_no_channels() {
    let device = Device::flex();
    let model = cnn(&device);
    let (small, report, graph) = speedup(&model, &nni_masks("cnn", "level"), cnn_trace).unwrap();
    assert_eq!(report.removed, 0);
    assert!(report.plan.params.is_empty());
    assert_eq!(small.conv2.weight.dims(), [16, 8, 3, 3]);
    // NNI's count_flops_params counts 62464 conv/linear MACs; Torch-Pruning counts 6218
    // learnable parameters (BatchNorm's affine ones included, running statistics not).
    let cost = count(&graph);
    assert_eq!(cost.macs, 62464);
    assert_eq!(cost.params, 6218);
}

#[test]
fn flops_and_params_per_layer_match_nnis_counter() {
    let device = Device::flex();
    let text = std::fs::read_to_string(fixture("nni_flops.json")).unwrap();
    let oracle: serde_json::Value = serde_json::from_str(&text).unwrap();
    let graphs = [
        ("cnn", capture(&cnn(&device), cnn_trace).unwrap()),
        ("mlp", capture(&mlp(&device), mlp_trace).unwrap()),
    ];
    for (name, graph) in graphs {
        let expected = &oracle[name];
        let report = count_flops_params(&graph, CountMode::Default);
        assert_eq!(
            report.flops,
            expected["flops"].as_u64().unwrap(),
            "{name} flops"
        );
        assert_eq!(
            report.params,
            expected["params"].as_u64().unwrap(),
            "{name} params"
        );
        let rows = expected["per_layer"].as_array().unwrap();
        assert_eq!(report.rows.len(), rows.len(), "{name} rows");
        for (ours, theirs) in report.rows.iter().zip(rows) {
            let dims = |v: &serde_json::Value| -> Vec<usize> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect()
            };
            assert_eq!(ours.name, theirs["name"].as_str().unwrap());
            assert_eq!(ours.module_type, theirs["module_type"].as_str().unwrap());
            assert_eq!(
                ours.flops,
                theirs["flops"].as_u64().unwrap(),
                "{name}/{}",
                ours.name
            );
            assert_eq!(
                ours.params,
                theirs["params"].as_u64().unwrap(),
                "{name}/{}",
                ours.name
            );
            assert_eq!(
                ours.input_size,
                dims(&theirs["input_size"]),
                "{name}/{}",
                ours.name
            );
            assert_eq!(
                ours.output_size,
                dims(&theirs["output_size"]),
                "{name}/{}",
                ours.name
            );
            let mut w = dims(&theirs["weight_shape"]);
            if ours.module_type == "Linear" {
                w.reverse(); // PyTorch [out, in] -> Burn [in, out]
            }
            assert_eq!(ours.weight_shape, w, "{name}/{}", ours.name);
        }
        // Full mode adds BatchNorm, activations and the residual add on top.
        let full = count_flops_params(&graph, CountMode::Full);
        assert!(full.flops > report.flops, "{name}: full mode counts more");
    }
}
