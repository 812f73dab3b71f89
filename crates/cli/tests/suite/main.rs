//! Tests of the `burn-compress` binary, in one integration-test binary (each links all of Burn).

mod cli;
mod sensitivity;
#[cfg(feature = "gpu")]
mod gpu;
