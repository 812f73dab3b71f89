//! The search space of a model: its prunable Conv2d / Linear layers with their real sizes.

use std::collections::BTreeSet;

use burn::module::Module;
use compress_core::config::Mode;
use compress_core::search::{SearchLayer, SearchSpace};
use compress_core::{CompressConfig, CompressError, ModuleIndex};
use compress_graph::{CountMode, Graph, count_flops_params};

use super::AutoError;

/// The layers of `model` (captured as `graph`) a search allocates ratios to.
///
/// With `config`, the Conv2d / Linear layers whose weight one of its pruning rules resolves
/// (the rules' ratios are not used). Without, every Conv2d and Linear except the classifier
/// (the last layer of the forward, whose outputs are the classes), as the repo's LeNet-5
/// configs do. Each layer's params are its weight elements, its MACs the captured graph's
/// count (per sample), its channels and kernel read off the weight (Burn's layout), its stride
/// and input size off the counted row's shapes.
///
/// # Errors
/// Config resolution errors; [`CompressError::EmptySearchSpace`] when no layer is selected.
pub fn search_space<M: Module>(
    model: &M,
    graph: &Graph,
    config: Option<&CompressConfig>,
    max_ratio: f64,
) -> Result<SearchSpace, AutoError> {
    let rows: Vec<_> = count_flops_params(graph, CountMode::Default)
        .rows
        .into_iter()
        .filter(|r| matches!(r.module_type.as_str(), "Conv2d" | "Linear"))
        .collect();
    let selected: BTreeSet<String> = match config {
        Some(config) => {
            let index = ModuleIndex::from_module(model);
            let pruning: BTreeSet<usize> = config
                .rules
                .iter()
                .filter(|r| r.mode == Mode::Pruning)
                .map(|r| r.index)
                .collect();
            config
                .resolve(&index)?
                .targets
                .into_iter()
                .filter(|t| pruning.contains(&t.rule) && t.is_active() && t.name == "weight")
                .map(|t| t.layer)
                .collect()
        }
        None => {
            let classifier = rows.last().map(|r| r.name.clone());
            rows.iter()
                .map(|r| r.name.clone())
                .filter(|n| Some(n) != classifier.as_ref())
                .collect()
        }
    };
    let batch = |shape: &[usize]| shape.first().copied().unwrap_or(1).max(1) as u64;
    let layers: Vec<SearchLayer> = rows
        .iter()
        .filter(|r| selected.contains(&r.name))
        .map(|r| {
            let w = &r.weight_shape;
            let conv = r.module_type == "Conv2d";
            let (in_channels, out_channels, kernel) = if conv {
                (w[1], w[0], w.get(2).copied().unwrap_or(1))
            } else {
                (w[0], w[1], 1)
            };
            let spatial = |s: &[usize]| s.iter().skip(2).product::<usize>().max(1);
            let stride = if conv {
                let (i, o) = (r.input_size.get(2), r.output_size.get(2));
                match (i, o) {
                    (Some(&i), Some(&o)) if o > 0 => (i / o).max(1),
                    _ => 1,
                }
            } else {
                1
            };
            SearchLayer {
                name: r.name.clone(),
                op_type: r.module_type.clone(),
                params: w.iter().product::<usize>() as u64,
                macs: r.flops / batch(&r.input_size),
                in_channels,
                out_channels,
                kernel,
                stride,
                input_size: if conv { spatial(&r.input_size) } else { 1 },
                max_ratio,
                current_ratio: 0.0,
            }
        })
        .collect();
    if layers.is_empty() {
        return Err(CompressError::EmptySearchSpace.into());
    }
    Ok(SearchSpace::new(layers))
}
