//! Multiply-accumulates of a captured forward pass, and parameter counts.

use burn_ir::{FloatOperationIr, ModuleOperationIr, OperationIr};

use crate::graph::Graph;

/// The cost of one forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Multiply-accumulates of convs, transposed convs and matmuls.
    pub macs: u64,
    /// Parameters used by the pass (running statistics excluded).
    pub params: u64,
}

/// Count a captured forward pass.
pub fn count(graph: &Graph) -> Cost {
    let mut macs = 0u64;
    let numel = |s: &burn_ir::TensorIr| s.shape.num_elements() as u64;
    for op in &graph.ops {
        match op {
            OperationIr::Module(m) => {
                let conv = |out: u64, w: &burn_ir::TensorIr| {
                    // out elements x (in / groups x kernel) per output element.
                    out * w.shape.as_slice()[1..].iter().product::<usize>() as u64
                };
                macs += match m {
                    ModuleOperationIr::Conv1d(c) => conv(numel(&c.out), &c.weight),
                    ModuleOperationIr::Conv2d(c) => conv(numel(&c.out), &c.weight),
                    ModuleOperationIr::Conv3d(c) => conv(numel(&c.out), &c.weight),
                    ModuleOperationIr::ConvTranspose1d(c) => {
                        numel(&c.x)
                            * c.weight.shape.as_slice()[1..].iter().product::<usize>() as u64
                    }
                    ModuleOperationIr::ConvTranspose2d(c) => {
                        numel(&c.x)
                            * c.weight.shape.as_slice()[1..].iter().product::<usize>() as u64
                    }
                    ModuleOperationIr::ConvTranspose3d(c) => {
                        numel(&c.x)
                            * c.weight.shape.as_slice()[1..].iter().product::<usize>() as u64
                    }
                    _ => 0,
                };
            }
            OperationIr::Float(_, FloatOperationIr::Matmul(m)) => {
                let k = *m.lhs.shape.as_slice().last().unwrap_or(&1) as u64;
                macs += numel(&m.out) * k;
            }
            _ => {}
        }
    }
    let params = graph
        .ops
        .iter()
        .filter_map(|op| match op {
            OperationIr::Init(i) => graph.params.get(&i.out.id).map(|p| (p, numel(&i.out))),
            _ => None,
        })
        .filter(|(p, _)| !p.ends_with("running_mean") && !p.ends_with("running_var"))
        .map(|(_, n)| n)
        .sum();
    Cost { macs, params }
}
