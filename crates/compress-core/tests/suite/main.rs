//! compress-core's integration tests, in one binary (each test binary links all of Burn).

mod bad_input;
mod config_resolution;
mod dataset;
mod driver;
mod index;
mod masks;
mod nni_allocation;
mod quant;
mod quantize;
