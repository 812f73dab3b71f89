//! The `burn-compress` command line: `list`, `check`, `prune`, `speedup`, `quantize`, `export`, `run`,
//! `sensitivity`, `auto`, `eval`.
//! One file per subcommand under `commands/`; `cli.rs` parses and dispatches.
// Argument docs are `--help` text (clap shows them verbatim), so TOML table names such as
// `[algorithm]` stay bare there rather than becoming rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

mod cli;
mod commands;
mod table;

fn main() -> std::process::ExitCode {
    cli::run()
}
