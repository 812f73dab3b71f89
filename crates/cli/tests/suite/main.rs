//! Tests of the `burn-compress` binary, in one integration-test binary (each links all of Burn).

mod auto;
mod cli;
mod eval;
#[cfg(feature = "gpu")]
mod gpu;
mod oneshot;
mod sensitivity;
