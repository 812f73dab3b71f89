//! # prune-template: copy this crate to write a pruner
//!
//! A complete pruner in one file: the mean absolute value of each block. Copy the folder to
//! `algorithms/<name>`, rename the package in `Cargo.toml`, add it to the workspace members and to
//! the facade's `use ... as _;` list, then replace [`TemplatePruner::metric`].
//! `algorithms/README.md` walks through it.
//!
//! This crate is not linked into the facade (the registry's list stays the real algorithms);
//! its own test proves a copy of it registers.
#![warn(missing_docs)]

use compress_core::{
    Algorithm, AlgorithmEntry, AlgorithmKind, CompressError, Dense, MetricInput, Pruner, Result,
};

/// Options from the `[algorithm]` table, validated in [`TemplateConfig::from_table`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemplateConfig {
    /// Added to every metric; any finite number (default 0).
    pub offset: f32,
}

impl TemplateConfig {
    /// Read and check the options (unknown keys were already refused by the registry).
    ///
    /// # Errors
    /// [`CompressError::Algorithm`] when `offset` is not a finite number.
    pub fn from_table(table: &compress_core::toml::Table) -> Result<Self> {
        let offset = match table.get("offset") {
            None => 0.0,
            Some(v) => v
                .as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .filter(|x| x.is_finite())
                .ok_or_else(|| CompressError::Algorithm {
                    algorithm: "template".into(),
                    message: format!("'offset' must be a finite number, found {v}"),
                })? as f32,
        };
        Ok(Self { offset })
    }
}

/// The pruner: one pure metric function; compress-core does everything else.
#[derive(Debug, Clone, Copy)]
pub struct TemplatePruner {
    config: TemplateConfig,
}

impl Pruner for TemplatePruner {
    fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
        let offset = self.config.offset;
        input.scaling.shrink_with(
            input.weight,
            true,
            &input.target.path,
            0.0f64,
            |acc, x| acc + x.abs() as f64,
            move |acc, n| (acc / n as f64) as f32 + offset,
        )
    }
}

inventory::submit! {
    AlgorithmEntry {
        name: "template",
        kind: AlgorithmKind::Pruner,
        summary: "mean |w| per block (a template to copy)",
        config_keys: &["offset"],
        build: |table| Ok(Algorithm::Pruner(Box::new(TemplatePruner { config: TemplateConfig::from_table(table)? }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_registers_and_refuses_a_bad_option() {
        let entry = AlgorithmEntry::find("template").unwrap();
        assert_eq!(entry.kind, AlgorithmKind::Pruner);
        let mut options = compress_core::toml::Table::new();
        options.insert("offset".into(), "big".into());
        let Err(err) = entry.build_pruner(&options) else {
            panic!("a bad offset must be refused")
        };
        assert!(
            err.to_string().contains("'offset' must be a finite number"),
            "{err}"
        );
    }
}
