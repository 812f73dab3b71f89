//! compress-speedup's integration tests, in one binary (each test binary links all of Burn).

mod bad_input;
mod common;
mod efficientnet;
mod equivalence;
mod groups;
mod module_linear;
mod nni_parity;
mod persist;
mod real_minilm;
mod real_smollm;
mod transformer;
