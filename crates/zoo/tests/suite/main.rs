//! compress-zoo's integration tests, in one binary (each test binary links all of Burn): the
//! models themselves (EfficientNet-Lite0 with its real weights and images), and compress-core's
//! behaviour on them (masks, allocation parity with NNI, config resolution, bad input). Core's
//! own tests cannot use the zoo: the zoo depends on core.

mod core_bad_input;
mod core_config_resolution;
mod core_driver;
mod core_masks;
mod core_nni_allocation;
mod efficientnet;
mod minilm;
mod models;
mod pruners;
mod smollm;
