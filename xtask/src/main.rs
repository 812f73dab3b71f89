//! `cargo xtask test`: the test suite on the CPU backend, then the GPU-path tests (feature `gpu`,
//! Vulkan) when a Vulkan driver is installed (lavapipe works: `apt-get install mesa-vulkan-drivers`);
//! with `BC_REQUIRE_GPU=1` a missing driver is an error.
//! `cargo xtask ci`: format check, clippy with warnings as errors, then `test`.
//! `cargo xtask bench`: every criterion bench (release).

use std::process::{Command, ExitCode};

fn cargo(args: &[&str]) -> bool {
    eprintln!("$ cargo {}", args.join(" "));
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether a Vulkan ICD (driver manifest) is installed where the loader looks.
fn vulkan_driver() -> bool {
    [
        "/usr/share/vulkan/icd.d",
        "/etc/vulkan/icd.d",
        "/usr/local/share/vulkan/icd.d",
    ]
    .iter()
    .filter_map(|d| std::fs::read_dir(d).ok())
    .flatten()
    .flatten()
    .any(|e| e.path().extension().is_some_and(|x| x == "json"))
}

const TESTS: &[&str] = &["test", "--workspace", "--locked"];
const GPU_TESTS: &[&str] = &[
    "test",
    "--locked",
    "-p",
    "burn-compress",
    "--features",
    "gpu",
    "--test",
    "suite",
    "gpu",
];

fn test() -> bool {
    if !cargo(TESTS) {
        return false;
    }
    if vulkan_driver() {
        return cargo(GPU_TESTS);
    }
    if std::env::var("BC_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        eprintln!(
            "xtask test: BC_REQUIRE_GPU=1 but no Vulkan driver is installed (apt-get install mesa-vulkan-drivers)"
        );
        return false;
    }
    eprintln!(
        "xtask test: skipping the GPU-path tests: no Vulkan driver (apt-get install mesa-vulkan-drivers)"
    );
    true
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let steps: Vec<Vec<&str>> = match task.as_str() {
        "test" => {
            return if test() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        "ci" => vec![
            vec!["fmt", "--all", "--", "--check"],
            vec![
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ],
        "bench" => vec![vec!["bench", "-p", "burn-compress-benches"]],
        _ => {
            eprintln!(
                "usage: cargo xtask <test|ci|bench>\n  test   tests (CPU, then the GPU path when Vulkan is installed)\n  ci     fmt --check, clippy -D warnings, then test\n  bench  criterion benches"
            );
            return ExitCode::from(2);
        }
    };
    for step in steps {
        if !cargo(&step) {
            eprintln!("xtask {task}: `cargo {}` failed", step.join(" "));
            return ExitCode::FAILURE;
        }
    }
    if task == "ci" && !test() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
