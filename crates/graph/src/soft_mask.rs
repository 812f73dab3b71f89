//! The replay's rebuild of compress-core's [`SoftMask`]: the effective value of a soft-masked
//! parameter is `base * mask`, the mask (a parameter that never requires gradients) reshaped to
//! the base's shape, exactly as `SoftMask::apply` computes it; gradients reach the base.

use burn::prelude::*;
use burn_dispatch::DispatchTensor;
use compress_core::mask::SoftMask;

use crate::replay::{ReparamParts, ReparamRebuild};

fn rebuild_soft_mask(
    base: DispatchTensor,
    rank: usize,
    parts: &ReparamParts,
) -> std::result::Result<DispatchTensor, String> {
    let mask = parts
        .get("mask")
        .cloned()
        .ok_or_else(|| "the soft mask lacks its 'mask'".to_string())?;
    let mask: Tensor<1> = Tensor::from_dispatch(mask);
    macro_rules! rebuild {
        ($d:literal) => {{
            let base: Tensor<$d> = Tensor::from_dispatch(base);
            let shape = base.shape();
            if shape.num_elements() != mask.shape().num_elements() {
                return Err(format!(
                    "the soft mask has {} values for a parameter of shape {:?}",
                    mask.shape().num_elements(),
                    shape.as_slice()
                ));
            }
            (base * mask.reshape(shape)).into_dispatch()
        }};
    }
    Ok(match rank {
        1 => rebuild!(1),
        2 => rebuild!(2),
        3 => rebuild!(3),
        4 => rebuild!(4),
        r => return Err(format!("soft masks of rank {r} are not supported")),
    })
}

inventory::submit! {
    ReparamRebuild { name: <SoftMask as burn::module::Reparameterization>::NAME, rebuild: rebuild_soft_mask }
}
