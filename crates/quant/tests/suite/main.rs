//! compress-quant's integration tests, in one binary (each test binary links all of Burn).

mod deploy;
mod export;
mod fold;
mod math;
