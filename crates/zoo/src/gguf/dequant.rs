//! Dequantizing GGML tensor blocks to `f32`.

use burn::tensor::{bf16, f16};

use super::GgmlType;

/// Dequantize `n` values of type `ty` from `bytes` (exactly the tensor's blocks), or `None`
/// for an unsupported type.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Option<Vec<f32>> {
    let half = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
    let mut out = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        GgmlType::F16 => out.extend(bytes.chunks_exact(2).map(half)),
        GgmlType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let with_min = ty == GgmlType::Q4_1;
            for block in bytes.chunks_exact(if with_min { 20 } else { 18 }) {
                let d = half(&block[0..2]);
                let (m, qs) = if with_min {
                    (half(&block[2..4]), &block[4..20])
                } else {
                    (-8.0 * d, &block[2..18])
                };
                out.extend(qs.iter().map(|&q| f32::from(q & 0x0F) * d + m));
                out.extend(qs.iter().map(|&q| f32::from(q >> 4) * d + m));
            }
        }
        GgmlType::Q8_0 => {
            for block in bytes.chunks_exact(34) {
                let d = half(&block[0..2]);
                out.extend(block[2..].iter().map(|&q| f32::from(q as i8) * d));
            }
        }
        GgmlType::Q6_K => {
            for block in bytes.chunks_exact(210) {
                let (ql, rest) = block.split_at(128);
                let (qh, rest) = rest.split_at(64);
                let (scales, d) = rest.split_at(16);
                let d = half(d);
                let mut y = [0f32; 256];
                // ggml's dequantize_row_q6_K: two halves of 128 values.
                for half_block in 0..2 {
                    let (ql, qh) = (&ql[64 * half_block..], &qh[32 * half_block..]);
                    let sc = &scales[8 * half_block..];
                    let y = &mut y[128 * half_block..];
                    for l in 0..32 {
                        let is = l / 16;
                        let q = |low: u8, shift: u8| {
                            f32::from(((low | (((qh[l] >> shift) & 3) << 4)) as i8) - 32)
                        };
                        let s = |k: usize| d * f32::from(sc[is + k] as i8);
                        y[l] = s(0) * q(ql[l] & 0xF, 0);
                        y[l + 32] = s(2) * q(ql[l + 32] & 0xF, 2);
                        y[l + 64] = s(4) * q(ql[l] >> 4, 4);
                        y[l + 96] = s(6) * q(ql[l + 32] >> 4, 6);
                    }
                }
                out.extend_from_slice(&y);
            }
        }
        _ => return None,
    }
    out.truncate(n);
    Some(out)
}
