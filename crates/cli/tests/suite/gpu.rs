//! The command line on a Vulkan device (feature `gpu`; lavapipe runs it without a GPU).

/// `burn-compress speedup --device vulkan` loads, shrinks and times the model on the Vulkan device
/// and reports the shapes the CPU run reports.
#[test]
fn the_speedup_cli_runs_on_a_vulkan_device() {
    let out = crate::cli::speedup_json(&["--device", "vulkan"], "gpu");
    assert_eq!(out["device"], "vulkan");
    assert_eq!(out["params_after"], 15738);
    for key in ["latency_ms_before", "latency_ms_after"] {
        assert!(out[key].as_f64().unwrap() > 0.0, "{key}");
    }
}
