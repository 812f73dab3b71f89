//! compress-graph's integration tests, in one binary (each test binary links all of Burn).

mod ops;
mod replay;
mod sequential;
