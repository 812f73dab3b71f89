//! `cargo xtask test`: the test suite on the CPU backend, then the GPU-path tests (feature `gpu`,
//! Vulkan) when a Vulkan driver is installed (lavapipe works: `apt-get install mesa-vulkan-drivers`);
//! with `BC_REQUIRE_GPU=1` a missing driver is an error.
//! `cargo xtask ci`: format check, clippy with warnings as errors, then `test`.
//! `cargo xtask bench`: every criterion bench (release).
//! `cargo xtask device-bundle`: the speedup bench built with the GPU backend (release), stripped
//! and xz-compressed into `.device/speedup.xz`, plus the Vulkan loader debs in `.gl/`, for
//! `scripts/device-bench.sh` on a GPU machine that has no Rust toolchain.

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

/// Runs a tool other than cargo, echoing it.
fn tool(program: &str, args: &[&str]) -> bool {
    eprintln!("$ {program} {}", args.join(" "));
    Command::new(program)
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The path of the bench executable named `name` in cargo's JSON messages (`--message-format
/// json`), whose lines are one object each: `{"reason":"compiler-artifact",...,"executable":"…"}`.
fn bench_executable(messages: &str, name: &str) -> Option<String> {
    messages
        .lines()
        .filter(|l| l.contains(&format!("\"name\":\"{name}\"")) && l.contains("\"bench\""))
        .find_map(|l| {
            let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = start + l[start..].find('"')?;
            Some(l[start..end].to_string())
        })
}

/// Downloads the Vulkan loader (and GL dispatch) packages into `.gl/` for a GPU machine that has
/// the NVIDIA driver but no loader.
const LOADER_DEBS: &str = "mkdir -p .gl /tmp/amd64/partial && \
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64' && \
    apt-get $o update -qq && \
    cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2";

/// Builds the GPU speedup bench and packs it into `.device/speedup.xz` at the workspace root,
/// then fetches the Vulkan loader debs into `.gl/` unless they are there.
fn device_bundle() -> bool {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!("xtask device-bundle: entering {}: {e}", root.display());
        return false;
    }
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args = [
        "bench",
        "--locked",
        "-p",
        "burn-compress-benches",
        "--features",
        "gpu",
        "--bench",
        "speedup",
        "--no-run",
        "--message-format",
        "json",
    ];
    eprintln!("$ cargo {}", args.join(" "));
    let output = match Command::new(cargo_bin).args(args).output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("{}", String::from_utf8_lossy(&o.stderr));
            return false;
        }
        Err(e) => {
            eprintln!("xtask device-bundle: cargo did not run: {e}");
            return false;
        }
    };
    let Some(exe) = bench_executable(&String::from_utf8_lossy(&output.stdout), "speedup") else {
        eprintln!("xtask device-bundle: cargo built no `speedup` bench executable");
        return false;
    };
    if let Err(e) = std::fs::create_dir_all(".device") {
        eprintln!("xtask device-bundle: creating .device: {e}");
        return false;
    }
    let _ = std::fs::remove_file(".device/speedup.xz");
    if !(tool("strip", &["-o", ".device/speedup", &exe]) && tool("xz", &["-T2", ".device/speedup"]))
    {
        return false;
    }
    // The Vulkan loader the GPU machine lacks, as Debian packages unpacked there by the script.
    let has_debs = std::fs::read_dir(".gl")
        .map(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "deb"))
        })
        .unwrap_or(false);
    if !has_debs && !tool("sh", &["-c", LOADER_DEBS]) {
        eprintln!("xtask device-bundle: could not download the Vulkan loader debs into .gl");
        return false;
    }
    eprintln!(
        "xtask device-bundle: wrote .device/speedup.xz; on a lent GPU machine run \
         `sh scripts/device-bench.sh` with `.device` and `.gl` carried (see the script's header)"
    );
    true
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let steps: Vec<Vec<&str>> = match task.as_str() {
        "device-bundle" => {
            return if device_bundle() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
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
                "usage: cargo xtask <test|ci|bench|device-bundle>\n  test           tests (CPU, then the GPU path when Vulkan is installed)\n  ci             fmt --check, clippy -D warnings, then test\n  bench          criterion benches\n  device-bundle  the GPU speedup bench, stripped and xz'd into .device/ for a GPU machine"
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
