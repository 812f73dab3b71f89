//! `cargo xtask ci`: format check, clippy with warnings as errors, the test suite.
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

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let steps: Vec<Vec<&str>> = match task.as_str() {
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
            vec!["test", "--workspace"],
        ],
        "bench" => vec![vec!["bench", "-p", "burn-compress-benches"]],
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|bench>\n  ci     fmt --check, clippy -D warnings, tests\n  bench  criterion benches"
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
    ExitCode::SUCCESS
}
