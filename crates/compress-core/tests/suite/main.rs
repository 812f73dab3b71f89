//! compress-core's integration tests, in one binary (each test binary links all of Burn). Tests
//! that need the zoo's models live in compress-zoo's suite (the zoo depends on core).

mod dataset;
mod index;
