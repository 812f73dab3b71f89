//! The subcommands, one file each.

pub mod auto;
pub mod check;
pub mod eval;
pub mod export;
pub mod list;
pub mod oneshot;
pub mod prune;
pub mod quantize;
pub mod run;
pub mod sensitivity;
pub mod speedup;
