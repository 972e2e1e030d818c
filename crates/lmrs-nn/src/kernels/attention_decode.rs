//! Attention for a few new queries against a key/value cache, read in place.
//!
//! Why: while decoding, keys and values are a view of the first `len` slots of a preallocated
//! cache. The backend's matmul copies such strided views into contiguous buffers on every
//! step (the whole cache, every layer), which made decode speed fall with context length.
//! Here each query row walks the cached rows directly: scores, softmax and the weighted sum of
//! values in one pass per head, with the query heads of a group sharing their key/value head.

use super::small_matmul::SharedOut;

/// Largest number of new queries per row this kernel is used for.
pub const MAX_QUERIES: usize = 8;

/// A strided `(b, heads, len, d)` view whose rows are contiguous (`row stride == d`).
#[derive(Clone, Copy)]
pub struct KvView<'a> {
    /// The backing buffer.
    pub data: &'a [f32],
    /// Element offset of `[0, 0, 0, 0]`.
    pub offset: usize,
    /// Stride between batch rows.
    pub batch_stride: usize,
    /// Stride between heads.
    pub head_stride: usize,
}

impl KvView<'_> {
    fn row(&self, b: usize, h: usize, j: usize, d: usize) -> &[f32] {
        let start = self.offset + b * self.batch_stride + h * self.head_stride + j * d;
        &self.data[start..start + d]
    }
}

/// Shapes of one call.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// Batch rows.
    pub b: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (`heads` is a multiple).
    pub kv_heads: usize,
    /// New queries per row.
    pub tq: usize,
    /// Keys per row.
    pub tk: usize,
    /// Head width.
    pub d: usize,
}

/// `softmax(q k^T * scale [softcapped] + bias) v` for contiguous `q` `(b, heads, tq, d)`,
/// cached `k`/`v` views `(b, kv_heads, tk, d)` and an optional contiguous additive `bias`
/// `(b, tq, tk)`. Returns `(b, heads, tq, d)`.
pub fn attend(
    q: &[f32],
    k: KvView<'_>,
    v: KvView<'_>,
    bias: Option<&[f32]>,
    dims: Dims,
    scale: f32,
    softcap: Option<f32>,
) -> Vec<f32> {
    let Dims {
        b,
        heads,
        kv_heads,
        tq,
        tk,
        d,
    } = dims;
    assert_eq!(q.len(), b * heads * tq * d, "query shape");
    assert!(bias.is_none_or(|x| x.len() == b * tq * tk), "bias shape");
    let rep = heads / kv_heads.max(1);
    let mut out = vec![0f32; b * heads * tq * d];
    let shared = SharedOut::new(&mut out);
    // One task per (batch row, query head).
    let work = |range: std::ops::Range<usize>| {
        let mut scores = vec![0f32; tk];
        let mut acc = vec![0f32; d];
        for task in range {
            let (bi, h) = (task / heads, task % heads);
            let g = h / rep;
            for t in 0..tq {
                let qrow = &q[((bi * heads + h) * tq + t) * d..][..d];
                let brow = bias.map(|x| &x[(bi * tq + t) * tk..][..tk]);
                let mut max = f32::NEG_INFINITY;
                for (j, s) in scores.iter_mut().enumerate() {
                    let mut x = dot(qrow, k.row(bi, g, j, d)) * scale;
                    if let Some(c) = softcap {
                        x = (x / c).tanh() * c;
                    }
                    if let Some(br) = brow {
                        x += br[j];
                    }
                    *s = x;
                    max = max.max(x);
                }
                let mut sum = 0f32;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                acc.iter_mut().for_each(|a| *a = 0.0);
                for (j, &p) in scores.iter().enumerate() {
                    axpy(&mut acc, p, v.row(bi, g, j, d));
                }
                let inv = 1.0 / sum;
                let base = ((bi * heads + h) * tq + t) * d;
                for (i, a) in acc.iter().enumerate() {
                    // SAFETY: each (row, head, query) output slice belongs to one task.
                    unsafe { shared.write(base + i, a * inv) };
                }
            }
        }
    };
    lmrs_core::candle::utils::barrier_pool().execute_chunked(b * heads, work);
    out
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { dot_avx2(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[inline]
fn axpy(acc: &mut [f32], p: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { axpy_avx2(acc, p, x) };
    }
    acc.iter_mut().zip(x).for_each(|(a, v)| *a += p * v);
}

#[inline]
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The same loops, compiled for AVX2/FMA so they vectorize 8-wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums: independent chains the compiler maps onto vector lanes.
    let mut s = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            s[l] = a[c * 8 + l].mul_add(b[c * 8 + l], s[l]);
        }
    }
    let mut total: f32 = s.iter().sum();
    for i in chunks * 8..a.len() {
        total += a[i] * b[i];
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_avx2(acc: &mut [f32], p: f32, x: &[f32]) {
    for (a, v) in acc.iter_mut().zip(x) {
        *a = p.mul_add(*v, *a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_direct_softmax_over_a_strided_cache() {
        // b 2, 4 query heads over 2 kv heads, 2 queries, 5 keys in a cache of capacity 7.
        let (b, heads, kvh, tq, tk, d, cap) = (2, 4, 2, 2, 5, 8, 7);
        let val = |i: usize| ((i * 37 % 101) as f32 - 50.0) / 40.0;
        let q: Vec<f32> = (0..b * heads * tq * d).map(val).collect();
        let kc: Vec<f32> = (0..b * kvh * cap * d).map(|i| val(i + 3)).collect();
        let vc: Vec<f32> = (0..b * kvh * cap * d).map(|i| val(i + 11)).collect();
        let bias: Vec<f32> = (0..b * tq * tk)
            .map(|i| if i % 4 == 1 { f32::MIN } else { 0.0 })
            .collect();
        let view = |data| KvView {
            data,
            offset: 0,
            batch_stride: kvh * cap * d,
            head_stride: cap * d,
        };
        let dims = Dims {
            b,
            heads,
            kv_heads: kvh,
            tq,
            tk,
            d,
        };
        let got = attend(&q, view(&kc), view(&vc), Some(&bias), dims, 0.3, Some(5.0));
        for bi in 0..b {
            for h in 0..heads {
                let g = h / 2;
                for t in 0..tq {
                    let qr = &q[((bi * heads + h) * tq + t) * d..][..d];
                    let row =
                        |c: &[f32], j: usize| c[((bi * kvh + g) * cap + j) * d..][..d].to_vec();
                    let s: Vec<f32> = (0..tk)
                        .map(|j| {
                            let x: f32 = qr.iter().zip(row(&kc, j)).map(|(a, b)| a * b).sum();
                            ((x * 0.3) / 5.0).tanh() * 5.0 + bias[(bi * tq + t) * tk + j]
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = s.iter().map(|x| (x - m).exp()).collect();
                    let z: f32 = e.iter().sum();
                    for i in 0..d {
                        let want: f32 = (0..tk).map(|j| e[j] / z * row(&vc, j)[i]).sum();
                        let g2 = got[((bi * heads + h) * tq + t) * d + i];
                        assert!((g2 - want).abs() < 1e-5, "{g2} vs {want}");
                    }
                }
            }
        }
    }
}
