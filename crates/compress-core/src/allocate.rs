//! Sparsity allocation: the one place where metrics become masks.
//!
//! Every pruner only computes metrics (smaller = pruned first); this module applies NNI's rules
//! (`nni/compression/pruning/tools/sparse_gen.py`) in NNI's order and ANDs the masks of rules
//! that hit the same target:
//!
//! 1. **threshold**: keep where `metric >= sparse_threshold`; if the resulting sparsity is
//!    below `min_sparse_ratio` or above `max_sparse_ratio`, redo it by ratio at that bound.
//! 2. **dependency**: members of a `dependency_group_id` get one mask from the mean of their
//!    metrics, split into `lcm(internal_metric_block)` equal blocks with equal sparsity each.
//! 3. **global**: members of a `global_group_id` are ranked together, each metric entry weighted
//!    by its block size, masking the smallest entries while the masked element count stays
//!    within `floor(total * sparse_ratio)`.
//! 4. **ratio**: mask the `floor(numel(metric) * ratio)` smallest entries, ratio clamped to
//!    `[min_sparse_ratio, max_sparse_ratio]`.
//! 5. **align**: targets without a metric (biases) take the mask of another target, kept
//!    wherever any element of that slice is kept.
//!
//! Ties are broken by position: of equal metric values, the earlier (row-major) entry is masked
//! first, so results are deterministic. One deliberate difference from NNI: when a global group
//! asks for at least the sum of its members' `max_sparse_ratio`, NNI falls back to ratio 0.0
//! for members without a max (masking nothing); we use 1.0, which is what the request means.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::config::GroupId;
use crate::granularity::Scaling;
use crate::mask::MaskSet;
use crate::targets::Target;
use crate::{CompressError, Dense, Result};

/// A metric for one target: the values in the kept-dim shrunk shape of its granularity.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The granularity the values were reduced with.
    pub scaling: Scaling,
    /// One value per block; smaller values are pruned first.
    pub values: Dense<f32>,
}

/// Turn metrics into masks for `targets` (pruning targets, as resolved from a config).
///
/// `metrics` holds one entry per active target (`sparse_ratio` or `sparse_threshold` set),
/// keyed by parameter path. Aligned targets (biases) need no metric.
///
/// # Errors
/// A missing or misshaped metric, a non-finite metric value, group members whose shapes or
/// ratios differ, a block count that does not divide a group's metric, or an align source of
/// another shape.
pub fn allocate(targets: &[Target], metrics: &BTreeMap<String, Metric>) -> Result<MaskSet> {
    let active: Vec<&Target> = targets.iter().filter(|t| t.is_active()).collect();
    for t in &active {
        check_metric(t, metrics.get(&t.path))?;
    }
    let metric = |t: &Target| &metrics[&t.path].values;
    let mut small: BTreeMap<String, Dense<u8>> = BTreeMap::new();
    let mut and_into = |path: &str, mask: Dense<u8>| match small.get_mut(path) {
        Some(existing) => existing
            .data_mut()
            .iter_mut()
            .zip(mask.data())
            .for_each(|(a, b)| *a &= *b),
        None => {
            small.insert(path.to_string(), mask);
        }
    };

    // 1. threshold
    for t in active
        .iter()
        .filter(|t| t.setting.sparse_threshold.is_some())
    {
        and_into(&t.path, threshold_mask(t, metric(t)));
    }

    // 2. dependency groups
    let mut dependency: BTreeMap<&GroupId, Vec<&Target>> = BTreeMap::new();
    for t in &active {
        if let Some(g) = &t.setting.dependency_group_id {
            dependency.entry(g).or_default().push(t);
        }
    }
    for (group, members) in &dependency {
        let values: Vec<&Dense<f32>> = members.iter().map(|t| metric(t)).collect();
        let mask = dependency_mask(group, members, &values)?;
        for t in members {
            and_into(&t.path, mask.clone());
        }
    }

    // 3. global groups (targets not taken by a dependency group)
    let mut global: BTreeMap<&GroupId, Vec<&Target>> = BTreeMap::new();
    for t in &active {
        if let (Some(g), None) = (&t.setting.global_group_id, &t.setting.dependency_group_id) {
            global.entry(g).or_default().push(t);
        }
    }
    for (group, members) in &global {
        let values: Vec<&Dense<f32>> = members.iter().map(|t| metric(t)).collect();
        for (t, mask) in members.iter().zip(global_masks(group, members, &values)?) {
            and_into(&t.path, mask);
        }
    }

    // 4. plain ratio (targets are independent: rank them in parallel)
    let ratio_masks: Vec<(&str, Dense<u8>)> = active
        .par_iter()
        .filter_map(|t| {
            let s = &t.setting;
            match (s.sparse_ratio, &s.dependency_group_id, &s.global_group_id) {
                (Some(ratio), None, None) => {
                    let ratio = clamp_ratio(ratio, s.min_sparse_ratio, s.max_sparse_ratio);
                    Some((t.path.as_str(), ratio_mask(metric(t), ratio)))
                }
                _ => None,
            }
        })
        .collect();
    for (path, mask) in ratio_masks {
        and_into(path, mask);
    }

    // Expand metric-shaped masks to parameter shape.
    let expanded = active
        .par_iter()
        .map(|t| {
            let full = metrics[&t.path]
                .scaling
                .expand(&small[&t.path], &t.shape, &t.path)?;
            Ok((t.path.clone(), full))
        })
        .collect::<Vec<Result<_>>>();
    let mut masks = MaskSet::default();
    for entry in expanded {
        let (path, full) = entry?;
        masks.insert(path, full);
    }

    // 5. align
    for t in targets.iter().filter(|t| !t.is_active()) {
        let Some(align) = &t.setting.align else {
            continue;
        };
        let layer = align.module_name.as_deref().unwrap_or(&t.layer);
        let Some(source) = targets.iter().find(|s| {
            s.layer == layer
                && (s.name == align.target_name
                    || crate::layers::LayerSpec::find(&s.layer_type)
                        .and_then(|spec| spec.param(&align.target_name).map(|p| p.name == s.name))
                        .unwrap_or(false))
        }) else {
            continue;
        };
        let Some(source_mask) = masks.get(&source.path) else {
            continue;
        };
        let dims = match &align.dims {
            Some(d) => d.clone(),
            None => source.out_axis.into_iter().collect(),
        };
        let mask = any_over_other_dims(source_mask, &dims, &source.path)?;
        if mask.shape() != t.shape.as_slice() {
            return Err(CompressError::ShapeMismatch {
                path: t.path.clone(),
                expected: t.shape.clone(),
                found: mask.shape().to_vec(),
            });
        }
        masks.insert(t.path.clone(), mask);
    }
    Ok(masks)
}

fn check_metric(t: &Target, metric: Option<&Metric>) -> Result<()> {
    let Some(m) = metric else {
        return Err(CompressError::MetricShape {
            path: t.path.clone(),
            expected: t.shape.clone(),
            found: Vec::new(),
        });
    };
    let expected = m.scaling.shrunk_shape(&t.shape, true, &t.path)?;
    if m.values.shape() != expected.as_slice() {
        return Err(CompressError::MetricShape {
            path: t.path.clone(),
            expected,
            found: m.values.shape().to_vec(),
        });
    }
    if let Some(bad) = m.values.data().iter().find(|v| !v.is_finite()) {
        return Err(CompressError::NonFiniteMetric {
            path: t.path.clone(),
            value: *bad,
        });
    }
    Ok(())
}

fn clamp_ratio(ratio: f64, min: Option<f64>, max: Option<f64>) -> f64 {
    ratio.max(min.unwrap_or(0.0)).min(max.unwrap_or(1.0))
}

/// A key that orders `(value, position)` as a single integer: total order on finite floats,
/// ties by position.
fn rank_key(value: f32, position: usize) -> u64 {
    let value = if value == 0.0 { 0.0f32 } else { value };
    let bits = value.to_bits();
    let ordered = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    ((ordered as u64) << 32) | position as u64
}

/// Indices of the `k` smallest values (ties: earliest first), in no particular order.
pub(crate) fn smallest_k(values: &[f32], k: usize) -> Vec<usize> {
    if k == 0 {
        return Vec::new();
    }
    if k >= values.len() {
        return (0..values.len()).collect();
    }
    let mut keys: Vec<u64> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| rank_key(v, i))
        .collect();
    keys.select_nth_unstable(k - 1);
    keys[..k]
        .iter()
        .map(|key| (key & 0xFFFF_FFFF) as usize)
        .collect()
}

/// Mask (0) the `floor(numel * ratio)` smallest entries.
pub fn ratio_mask(metric: &Dense<f32>, ratio: f64) -> Dense<u8> {
    let values = metric.data();
    let k = (values.len() as f64 * ratio).floor() as usize;
    let mut mask = vec![1u8; values.len()];
    for i in smallest_k(values, k) {
        mask[i] = 0;
    }
    Dense::new(metric.shape().to_vec(), mask)
}

fn threshold_mask(t: &Target, metric: &Dense<f32>) -> Dense<u8> {
    let s = &t.setting;
    let threshold = s.sparse_threshold.unwrap_or(f64::NEG_INFINITY);
    let mask: Vec<u8> = metric
        .data()
        .iter()
        .map(|&v| u8::from(v as f64 >= threshold))
        .collect();
    let masked = mask.iter().filter(|&&m| m == 0).count() as f64 / mask.len().max(1) as f64;
    match (s.min_sparse_ratio, s.max_sparse_ratio) {
        (Some(min), _) if masked < min => ratio_mask(metric, min),
        (_, Some(max)) if masked > max => ratio_mask(metric, max),
        _ => Dense::new(metric.shape().to_vec(), mask),
    }
}

fn same_ratio(kind: &'static str, group: &GroupId, members: &[&Target]) -> Result<f64> {
    let mut ratio = None;
    for t in members {
        let r = t
            .setting
            .sparse_ratio
            .ok_or_else(|| CompressError::GroupMismatch {
                kind,
                group: group.to_string(),
                reason: format!("'{}' has no sparse_ratio (groups rank by ratio)", t.path),
            })?;
        match ratio {
            None => ratio = Some((r, &t.path)),
            Some((first, path)) if first != r => {
                return Err(CompressError::GroupMismatch {
                    kind,
                    group: group.to_string(),
                    reason: format!(
                        "members need one sparse_ratio, but '{path}' has {first} and '{}' has {r}",
                        t.path
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(ratio.map_or(0.0, |(r, _)| r))
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn dependency_mask(
    group: &GroupId,
    members: &[&Target],
    values: &[&Dense<f32>],
) -> Result<Dense<u8>> {
    let ratio = same_ratio("dependency", group, members)?;
    let shape = values[0].shape();
    for (t, v) in members.iter().zip(values).skip(1) {
        if v.shape() != shape {
            return Err(CompressError::GroupMismatch {
                kind: "dependency",
                group: group.to_string(),
                reason: format!(
                    "metric shapes differ: '{}' has {:?}, '{}' has {:?}",
                    members[0].path,
                    shape,
                    t.path,
                    v.shape()
                ),
            });
        }
    }
    let n = values.len() as f32;
    let mut fused = vec![0.0f32; values[0].numel()];
    for v in values {
        fused.iter_mut().zip(v.data()).for_each(|(a, b)| *a += b);
    }
    fused.iter_mut().for_each(|a| *a /= n);
    let blocks = members
        .iter()
        .map(|t| t.setting.internal_metric_block.unwrap_or(1))
        .fold(1, |acc, b| acc / gcd(acc, b) * b);
    if !fused.len().is_multiple_of(blocks) {
        return Err(CompressError::GroupMismatch {
            kind: "dependency",
            group: group.to_string(),
            reason: format!(
                "{} metric entries cannot be split into {blocks} equal blocks (internal_metric_block)",
                fused.len()
            ),
        });
    }
    let block_len = fused.len() / blocks;
    let mut mask = Vec::with_capacity(fused.len());
    for chunk in fused.chunks(block_len.max(1)) {
        let m = ratio_mask(&Dense::new(vec![chunk.len()], chunk.to_vec()), ratio);
        mask.extend_from_slice(m.data());
    }
    Ok(Dense::new(shape.to_vec(), mask))
}

fn global_masks(
    group: &GroupId,
    members: &[&Target],
    values: &[&Dense<f32>],
) -> Result<Vec<Dense<u8>>> {
    let ratio = same_ratio("global", group, members)?;
    let total: usize = members.iter().map(|t| t.numel()).sum();
    let goal = (total as f64 * ratio).floor() as usize;
    let min_sum: f64 = members
        .iter()
        .map(|t| (t.numel() as f64 * t.setting.min_sparse_ratio.unwrap_or(0.0)).floor())
        .sum();
    let max_sum: f64 = members
        .iter()
        .map(|t| t.numel() as f64 * t.setting.max_sparse_ratio.unwrap_or(1.0))
        .sum();
    let per_target = |pick: &dyn Fn(&Target) -> f64| -> Vec<Dense<u8>> {
        members
            .iter()
            .zip(values)
            .map(|(t, v)| ratio_mask(v, pick(t)))
            .collect()
    };
    if (goal as f64) <= min_sum && min_sum > 0.0 {
        return Ok(per_target(&|t| t.setting.min_sparse_ratio.unwrap_or(0.0)));
    }
    if goal as f64 >= max_sum {
        return Ok(per_target(&|t| t.setting.max_sparse_ratio.unwrap_or(1.0)));
    }
    // Rank every entry of every member; each entry stands for `grain` elements.
    let mut entries: Vec<(f32, usize, usize)> = Vec::new();
    for (m, v) in values.iter().enumerate() {
        let grain = members[m].numel() / v.numel().max(1);
        entries.extend(v.data().iter().map(|&x| (x, grain, m)));
    }
    entries.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut masked = 0usize;
    let mut threshold = f32::INFINITY;
    for &(value, grain, _) in &entries {
        if masked + grain > goal {
            threshold = value;
            break;
        }
        masked += grain;
    }
    Ok(values
        .iter()
        .map(|v| {
            Dense::new(
                v.shape().to_vec(),
                v.data().iter().map(|&x| u8::from(x >= threshold)).collect(),
            )
        })
        .collect())
}

/// Keep an entry of the reduced mask where any element of its slice is kept.
fn any_over_other_dims(mask: &Dense<u8>, dims: &[usize], path: &str) -> Result<Dense<u8>> {
    let shape = mask.shape();
    if let Some(&bad) = dims.iter().find(|&&d| d >= shape.len()) {
        return Err(CompressError::InvalidValue {
            key: "align.dims".into(),
            context: format!("align on '{path}'"),
            value: bad.to_string(),
            reason: format!("the source has rank {}", shape.len()),
        });
    }
    let kernel: Vec<i64> = (0..shape.len())
        .map(|d| if dims.contains(&d) { 1 } else { -1 })
        .collect();
    let scaling = Scaling::new(kernel, crate::granularity::KernelPadding::Front, 1);
    let as_f32 = Dense::new(
        shape.to_vec(),
        mask.data().iter().map(|&m| m as f32).collect(),
    );
    let any = scaling.shrink_with(&as_f32, false, path, 0.0f32, |a, x| a.max(x), |a, _| a)?;
    let out_shape: Vec<usize> = dims.iter().map(|&d| shape[d]).collect();
    Ok(Dense::new(
        out_shape,
        any.data().iter().map(|&x| u8::from(x > 0.0)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_masks_the_floor_of_numel_times_ratio_smallest() {
        let m = Dense::new(vec![5], vec![3.0, 1.0, 4.0, 1.5, 9.0]);
        assert_eq!(ratio_mask(&m, 0.5).data(), &[1, 0, 1, 0, 1]);
        assert_eq!(ratio_mask(&m, 0.0).data(), &[1; 5]);
        assert_eq!(ratio_mask(&m, 1.0).data(), &[0; 5]);
    }

    #[test]
    fn equal_metrics_mask_the_earliest_first() {
        let m = Dense::new(vec![4], vec![2.0, 2.0, 2.0, 2.0]);
        assert_eq!(ratio_mask(&m, 0.5).data(), &[0, 0, 1, 1]);
    }

    #[test]
    fn negative_metrics_rank_below_positive_ones() {
        let m = Dense::new(vec![4], vec![0.5, -3.0, -0.0, 0.25]);
        assert_eq!(ratio_mask(&m, 0.5).data(), &[1, 0, 0, 1]);
    }
}
