//! Bidirectional self-attention over a fused query/key/value projection, for encoders:
//! per (sequence, head), `softmax(q k^T · scale + key_bias) v` written straight into the
//! merged-heads output.
//!
//! Why: the tensor path split the heads into transposed copies, multiplied them with the
//! backend GEMM (on its own rayon threads, which then competed with the worker pool for the
//! cores), scaled, added the mask and ran softmax as separate passes, and merged the heads
//! with another copy. Here each task reads its head's columns in place, packs keys and values
//! for the GEMM tile (`gemm.rs`), and keeps the scores in a per-task buffer that stays in
//! cache. One task per (sequence, head) spreads even a single sequence over the threads.

use super::gemm::{gemm_block, pack_kn, pack_nk, packed_len, SyncPtr, NR};
use super::vmath::softmax_rows;

/// Sizes of one [`self_attention`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence (queries = keys).
    pub seq: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// `qkv`: `(batch · seq, 3 · heads · head_dim)` rows holding `[q | k | v]`, head `h` at
/// columns `h · head_dim..` of each third; `key_bias`: `(batch, seq)` additive bias per key
/// (0, or [`crate::MASKED`] for padding); `out`: `(batch · seq, heads · head_dim)`, written
/// in the merged-heads layout. Scores are `q·k · scale + bias`.
///
/// # Panics
/// When a slice length disagrees with `shape`.
pub fn self_attention(
    qkv: &[f32],
    key_bias: &[f32],
    shape: AttentionShape,
    scale: f32,
    out: &mut [f32],
) {
    let AttentionShape {
        batch,
        seq: s,
        heads,
        head_dim: dh,
    } = shape;
    let hd = heads * dh;
    let stride = 3 * hd;
    assert!(qkv.len() == batch * s * stride && key_bias.len() == batch * s);
    assert!(out.len() == batch * s * hd);
    if batch * s * hd == 0 {
        return;
    }
    let dst = SyncPtr(out.as_mut_ptr());
    lmrs_core::candle::utils::barrier_pool().execute_chunked(batch * heads, |range| {
        // Scratch reused by the tasks of this chunk.
        let mut q = vec![0f32; s * dh];
        let mut kp = vec![0f32; packed_len(s, dh)];
        let mut vp = vec![0f32; packed_len(dh, s)];
        let mut bias = vec![0f32; s.div_ceil(NR) * NR];
        let mut scores = vec![0f32; s * s];
        for t in range {
            let (b, h) = (t / heads, t % heads);
            let rows = &qkv[b * s * stride..(b + 1) * s * stride];
            for (i, qi) in q.chunks_exact_mut(dh).enumerate() {
                let src = &rows[i * stride + h * dh..i * stride + (h + 1) * dh];
                for (d, v) in qi.iter_mut().zip(src) {
                    *d = v * scale;
                }
            }
            pack_nk(&rows[hd + h * dh..], s, dh, stride, &mut kp);
            pack_kn(&rows[2 * hd + h * dh..], s, dh, stride, &mut vp);
            bias[..s].copy_from_slice(&key_bias[b * s..(b + 1) * s]);
            // SAFETY: q holds s rows of dh; kp holds the s keys packed with depth dh; bias
            // covers every key panel; scores is s x s and private to this task.
            unsafe {
                gemm_block(
                    q.as_ptr(),
                    dh,
                    0..s,
                    dh,
                    &kp,
                    Some(&bias),
                    0..s.div_ceil(NR),
                    s,
                    scores.as_mut_ptr(),
                    s,
                );
            }
            softmax_rows(&mut scores, s);
            // SAFETY: scores holds s rows of s probabilities; vp the values packed with depth
            // s; the output block (rows of sequence b, columns of head h) belongs to this
            // task only and lies inside `out`.
            unsafe {
                gemm_block(
                    scores.as_ptr(),
                    s,
                    0..s,
                    s,
                    &vp,
                    None,
                    0..dh.div_ceil(NR),
                    dh,
                    dst.get().add(b * s * hd + h * dh),
                    hd,
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MASKED;

    /// Straightforward f64 attention over the same layout.
    fn reference(qkv: &[f32], bias: &[f32], sh: AttentionShape, scale: f32) -> Vec<f32> {
        let (s, dh, hd) = (sh.seq, sh.head_dim, sh.heads * sh.head_dim);
        let mut out = vec![0f32; sh.batch * s * hd];
        for b in 0..sh.batch {
            for h in 0..sh.heads {
                let at = |i: usize, part: usize, d: usize| {
                    qkv[(b * s + i) * 3 * hd + part * hd + h * dh + d] as f64
                };
                for i in 0..s {
                    let scores: Vec<f64> = (0..s)
                        .map(|j| {
                            let dot: f64 = (0..dh).map(|d| at(i, 0, d) * at(j, 1, d)).sum();
                            dot * scale as f64 + bias[b * s + j] as f64
                        })
                        .collect();
                    let m = scores.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v));
                    let e: Vec<f64> = scores.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for d in 0..dh {
                        let v: f64 = (0..s).map(|j| e[j] / z * at(j, 2, d)).sum();
                        out[(b * s + i) * hd + h * dh + d] = v as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_reference_with_padding_and_odd_sizes() {
        for &(batch, seq, heads, head_dim) in
            &[(2, 7, 3, 5), (1, 1, 1, 1), (3, 19, 2, 32), (2, 40, 4, 17)]
        {
            let sh = AttentionShape {
                batch,
                seq,
                heads,
                head_dim,
            };
            let hd = heads * head_dim;
            let qkv: Vec<f32> = (0..batch * seq * 3 * hd)
                .map(|i| ((i * 7919) % 211) as f32 / 50.0 - 2.0)
                .collect();
            // Sequence 0 unpadded, later ones padded at the end; a fully padded row too.
            let mut bias = vec![0f32; batch * seq];
            for b in 1..batch {
                let keep = if b == 2 { 0 } else { seq / 2 + 1 };
                bias[b * seq + keep.min(seq)..(b + 1) * seq].fill(MASKED);
            }
            let scale = 1.0 / (head_dim as f32).sqrt();
            let mut out = vec![f32::NAN; batch * seq * hd];
            self_attention(&qkv, &bias, sh, scale, &mut out);
            let want = reference(&qkv, &bias, sh, scale);
            for (i, (g, w)) in out.iter().zip(&want).enumerate() {
                assert!((g - w).abs() < 2e-5, "{sh:?} [{i}]: {g} vs {w}");
            }
        }
    }
}
