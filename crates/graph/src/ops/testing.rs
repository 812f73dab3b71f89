//! Fixtures for the op families' unit tests.

use std::collections::BTreeSet;

use burn::module::Module;
use burn::prelude::*;

use crate::{Analysis, CountMode, FlopsRow, capture, count, count_flops_params};

/// The channel classes of a forward: per class with members, its sorted `(param, axis)` set.
pub fn groups_of<M: Module, const D: usize>(
    model: &M,
    forward: impl FnOnce(&M, &Device) -> Tensor<D>,
) -> Vec<Vec<(String, usize)>> {
    let graph = capture(model, forward).unwrap();
    let mut a = Analysis::run(&graph).unwrap();
    let mut out: Vec<Vec<(String, usize)>> = Vec::new();
    for class in a.classes() {
        let sig: Vec<(String, usize)> = class
            .members
            .into_iter()
            .map(|m| (m.param, m.axis))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !sig.is_empty() && !out.contains(&sig) {
            out.push(sig);
        }
    }
    out
}

/// The pin reasons of every class of a forward.
pub fn pins_of<M: Module, const D: usize>(
    model: &M,
    forward: impl FnOnce(&M, &Device) -> Tensor<D>,
) -> BTreeSet<String> {
    let graph = capture(model, forward).unwrap();
    let mut a = Analysis::run(&graph).unwrap();
    a.classes().into_iter().flat_map(|c| c.pins).collect()
}

/// The MACs of a forward.
pub fn macs<M: Module, const D: usize>(
    model: &M,
    forward: impl FnOnce(&M, &Device) -> Tensor<D>,
) -> u64 {
    count(&capture(model, forward).unwrap()).macs
}

/// The full-mode rows of a forward.
pub fn full_rows<M: Module, const D: usize>(
    model: &M,
    forward: impl FnOnce(&M, &Device) -> Tensor<D>,
) -> Vec<FlopsRow> {
    count_flops_params(&capture(model, forward).unwrap(), CountMode::Full).rows
}
