//! A random-importance pruner, written against burn-compress's public API only: a baseline
//! every real criterion should beat. It is found by name (`random`) as soon as this crate is
//! linked.
//!
//! Run it: `cargo run -p custom-pruner --example random_lenet5`.

use burn_compress::CompressError;
use burn_compress::core::toml::Table;
use burn_compress::core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, Dense, MetricInput, Pruner, Result,
};

/// Scores every block with a seeded pseudo-random number.
#[derive(Debug, Clone, Copy)]
pub struct RandomPruner {
    /// Seed; the same seed, path and block always give the same score.
    pub seed: u64,
}

/// SplitMix64: a tiny, well-mixed hash, enough for reproducible random scores.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Pruner for RandomPruner {
    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        let path = &input.target.path;
        let shape = input
            .scaling
            .shrunk_shape(input.weight.shape(), true, path)?;
        let salt = path.bytes().fold(self.seed, |h, b| splitmix(h ^ b as u64));
        let n: usize = shape.iter().product();
        let values = (0..n as u64)
            .map(|i| (splitmix(salt ^ i) >> 40) as f32 / (1u64 << 24) as f32)
            .collect();
        Ok(Dense::new(shape, values))
    }
}

fn build(options: &Table) -> Result<Algorithm> {
    let seed = match options.get("seed") {
        None => 0,
        Some(v) => v
            .as_integer()
            .filter(|s| *s >= 0)
            .ok_or_else(|| CompressError::Algorithm {
                algorithm: "random".into(),
                message: format!("'seed' must be a non-negative integer, found {v}"),
            })? as u64,
    };
    Ok(Algorithm::Pruner(Box::new(RandomPruner { seed })))
}

inventory::submit! {
    AlgorithmEntry {
        name: "random",
        kind: AlgorithmKind::Pruner,
        summary: "seeded random importance per block (a baseline; example crate)",
        config_keys: &["seed"],
        build,
    }
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;
    use burn_compress::zoo::LeNet5;
    use burn_compress::{AlgorithmEntry, CompressConfig, prune};

    #[test]
    fn the_random_pruner_is_found_by_name_and_prunes_reproducibly() {
        let entry = AlgorithmEntry::find("random").unwrap();
        let names: Vec<&str> = AlgorithmEntry::all().iter().map(|e| e.name).collect();
        // The built-ins, plus this crate's entry.
        assert!(names.contains(&"random") && names.contains(&"l1-norm"));
        assert_eq!(
            names.len(),
            burn_compress::algorithms::BUILT_IN.len() + 1,
            "{names:?}"
        );
        let mut options = burn_compress::core::toml::Table::new();
        options.insert("seed".into(), 7.into());
        let pruner = entry.build_pruner(&options).unwrap();
        let model = LeNet5::new(&Device::flex());
        let config = CompressConfig::from_toml(
            "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\n",
        )
        .unwrap();
        let first = prune(&model, &config, pruner.as_ref()).unwrap();
        let second = prune(&model, &config, pruner.as_ref()).unwrap();
        assert_eq!(first.masks, second.masks);
        assert_eq!(first.masks.stats().sparsity(), 0.5);
    }
}
