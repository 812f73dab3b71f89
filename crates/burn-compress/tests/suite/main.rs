//! Tests through the public API and the CLI, in one binary (each test binary links all of Burn).

mod activation_admm;
mod auto;
mod common;
mod distill;
#[cfg(feature = "gpu")]
mod gpu;
mod learned;
mod mixed;
mod nni_pruners;
mod oneshot_api;
mod onnx;
mod quantize;
mod quantizers;
mod real_lm;
mod real_models;
mod real_oneshot;
mod real_smollm;
mod recipes;
mod registry;
mod robustness;
mod taylor;
