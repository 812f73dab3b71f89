pub use compress_core as core;
