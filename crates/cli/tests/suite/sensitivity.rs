//! `burn-compress sensitivity`: the LeNet-5 table against an independent computation
//! (`scripts/sensitivity-check.py`, numpy), early stop, config targets, CSV, plots, errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use crate::cli::{refused, root, run, stderr, stdout};

/// `burn-compress sensitivity` on the bundled LeNet-5 and MNIST-5k, then `rest`.
fn sensitivity(rest: &[&str]) -> Output {
    let base = [
        "sensitivity",
        "--arch",
        "lenet5",
        "--weights",
        "data/lenet5-mnist5k.safetensors",
        "--data",
        "data/mnist5k.safetensors",
    ];
    run(&[&base[..], rest].concat())
}

fn temp(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bc-sens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The table of the independent check: `{"baseline", "layers", "test_images", ..}`.
fn fixture() -> Value {
    let path = root().join("crates/cli/tests/fixtures/lenet5-l1-sensitivity.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `layers` of a table as nested maps.
fn layers(table: &Value) -> BTreeMap<String, BTreeMap<String, f64>> {
    serde_json::from_value(table["layers"].clone()).unwrap()
}

#[test]
fn lenet5_l1_table_equals_the_independent_numpy_computation() {
    let (csv, svg) = (temp("lenet5.csv"), temp("lenet5.svg"));
    let out = sensitivity(&[
        "--json",
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // The documented one-line shape, keys in this order, Python's spacing.
    assert!(
        text.starts_with(r#"{"metric": "accuracy", "baseline": 0.971, "layers": {"conv1": {"0.1": 0.971, "0.2": "#),
        "{text}"
    );
    let ours: Value = serde_json::from_str(&text).unwrap();
    let reference = fixture();
    assert_eq!(ours["baseline"], reference["baseline"]);
    let (ours, reference_layers) = (layers(&ours), layers(&reference));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        ["conv1", "conv2", "fc1", "fc2", "fc3"]
    );
    // Every point equal to the numpy float32 forward (the check's float64 forward agrees on
    // every point as well, so no test image sits on a tie that rounding could flip).
    let n = reference["test_images"].as_f64().unwrap();
    assert_eq!(n, 1000.0);
    for (layer, row) in &reference_layers {
        assert_eq!(
            ours[layer].keys().collect::<Vec<_>>(),
            row.keys().collect::<Vec<_>>(),
            "{layer}"
        );
        for (s, expected) in row {
            let got = ours[layer][s];
            assert_eq!(got, *expected, "{layer} at {s}: {got} vs numpy {expected}");
        }
    }

    // NNI's CSV: the same numbers.
    let csv = std::fs::read_to_string(&csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("layername,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    );
    for (line, (layer, row)) in lines.zip(&reference_layers) {
        let expected: Vec<String> = row.values().map(|v| v.to_string()).collect();
        assert_eq!(line, format!("{layer},{}", expected.join(",")));
    }

    // The plot: one line and legend entry per layer, axis labels.
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
    for label in [
        "conv1",
        "conv2",
        "fc1",
        "fc2",
        "fc3",
        "unpruned (0.971)",
        "sparsity of the pruned layer",
        "accuracy",
    ] {
        // plotters writes each text on a line of its own.
        assert!(
            svg.contains(&format!("\n{label}\n</text>")),
            "no text '{label}' in the SVG"
        );
    }
    // Width-2 polylines: one per layer, and one per legend entry.
    assert_eq!(svg.matches(r#"stroke-width="2" points"#).count(), 5 + 5);
    // A marker per point.
    assert_eq!(svg.matches("<circle").count(), 45);
}

#[test]
fn early_stop_records_the_point_that_stops_each_layer() {
    let out = sensitivity(&["--json", "--early-stop", "dropped:0.05"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ours = layers(&serde_json::from_str(&stdout(&out)).unwrap());
    let reference = fixture();
    let baseline = reference["baseline"].as_f64().unwrap();
    for (layer, row) in layers(&reference) {
        // The reference row up to and including its first point below baseline - 0.05.
        let mut expected = BTreeMap::new();
        for (s, v) in row {
            expected.insert(s, v);
            if v < baseline - 0.05 {
                break;
            }
        }
        assert_eq!(ours[&layer], expected, "{layer}");
    }
    // conv1 drops below 0.921 at 0.4 (0.916): four points; fc3 at its first point.
    assert_eq!(ours["conv1"].len(), 4);
    assert_eq!(ours["fc3"].len(), 1);
}

#[test]
fn a_config_restricts_the_layers_and_a_png_plot_is_written() {
    let png = temp("fc.png");
    let out = sensitivity(&[
        "--config",
        "configs/lenet5-l1.toml",
        "--sparsities",
        "0.5,0.25",
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("l1-norm sensitivity of lenet5: test accuracy 97.10% unpruned"),
        "{text}"
    );
    // fc3 is excluded by the config; columns in ascending order.
    for layer in ["conv1", "conv2", "fc1", "fc2"] {
        assert!(text.contains(layer), "{text}");
    }
    assert!(!text.contains("fc3"), "{text}");
    assert!(
        text.find("0.25").unwrap() < text.find("0.5").unwrap(),
        "{text}"
    );
    // conv1 at 0.5 is 93.40% in the reference table.
    assert!(text.contains("93.40%"), "{text}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, right after the chunk header.
    assert_eq!(&bytes[16..24], &[0, 0, 3, 132, 0, 0, 2, 48]);
    assert!(
        bytes.len() > 10_000,
        "a plot with lines and text, {} bytes",
        bytes.len()
    );
}

#[test]
fn bad_input_is_refused_naming_the_value() {
    refused(
        &sensitivity(&["--algorithm", "l1-nrom"]),
        "unknown algorithm 'l1-nrom' (did you mean 'l1-norm'?)",
    );
    refused(
        &sensitivity(&["--algorithm", "qat"]),
        "algorithm 'qat' is a quantizer, not a pruner",
    );
    refused(
        &sensitivity(&["--algorithm", "taylor"]),
        "'taylor' scores weights from training (gradients or learned scores)",
    );
    refused(
        &sensitivity(&["--sparsities", "0.1,1.5"]),
        "key 'sparsities' in sensitivity analysis: 1.5 is outside (0, 1)",
    );
    refused(
        &sensitivity(&["--sparsities", "0.1,half"]),
        "invalid value 'half' (not a number",
    );
    refused(
        &sensitivity(&["--early-stop", "drop:0.1"]),
        "unknown mode 'drop' (did you mean 'dropped'?)",
    );
    refused(
        &sensitivity(&["--plot", "out.jpg"]),
        "--plot 'out.jpg': the file name must end in .svg or .png",
    );

    // A dataset with images and no labels.
    let images = vec![0u8; 10 * 28 * 28];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![10, 28, 28], &images)
            .unwrap();
    let unlabelled = temp("unlabelled.safetensors");
    safetensors::serialize_to_file([("images", view)], &None, &unlabelled).unwrap();
    let out = run(&[
        "sensitivity",
        "--arch",
        "lenet5",
        "--weights",
        "data/lenet5-mnist5k.safetensors",
        "--data",
        unlabelled.to_str().unwrap(),
    ]);
    refused(
        &out,
        &format!(
            "dataset '{}' is invalid: it has no 'labels' tensor, and the accuracy metric needs labels",
            unlabelled.display()
        ),
    );
}
