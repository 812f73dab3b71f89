//! The `burn-compress` command line: `list`, `check`, `prune`, `speedup`, `quantize`, `run`.
//! One file per subcommand under `commands/`; `cli.rs` parses and dispatches.

mod cli;
mod commands;
mod table;

fn main() -> std::process::ExitCode {
    cli::run()
}
