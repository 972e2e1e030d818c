//! `y = x W^T (+ b)` for a few rows of `x`: the shape of every projection while decoding
//! (one row per sequence or beam).
//!
//! Why: the generic GEMM packs its operands on every call; with 1–16 rows that packing of the
//! weight matrix costs more than the multiplication (t5-small, 4 beams: ~40% of decode time).
//! Here each weight row is streamed from memory once and dotted with every input row while
//! it sits in L1, which is what bounds decoding anyway (memory bandwidth).

use rayon::prelude::*;

/// Largest row count this kernel is used for; beyond it the blocked GEMM wins.
pub const MAX_ROWS: usize = 16;

/// Output columns computed per parallel task.
const COLS_PER_TASK: usize = 128;

/// `x`: `(rows, k)` row-major; `w`: `(n, k)` row-major (PyTorch `Linear` layout);
/// `bias`: `(n,)`. Returns `y`: `(rows, n)` row-major.
pub fn matmul_xwt(
    x: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    debug_assert_eq!(x.len(), rows * k);
    debug_assert_eq!(w.len(), n * k);
    // Each task computes a block of output columns for every row, laid out (cols, rows).
    let blocks: Vec<Vec<f32>> = (0..n.div_ceil(COLS_PER_TASK))
        .into_par_iter()
        .map(|t| {
            let j0 = t * COLS_PER_TASK;
            let j1 = (j0 + COLS_PER_TASK).min(n);
            let mut out = vec![0f32; (j1 - j0) * rows];
            for (jj, j) in (j0..j1).enumerate() {
                let wrow = &w[j * k..(j + 1) * k];
                let dst = &mut out[jj * rows..(jj + 1) * rows];
                dot_rows(x, rows, k, wrow, dst);
                if let Some(b) = bias {
                    dst.iter_mut().for_each(|v| *v += b[j]);
                }
            }
            out
        })
        .collect();
    let mut y = vec![0f32; rows * n];
    for (t, block) in blocks.iter().enumerate() {
        let j0 = t * COLS_PER_TASK;
        for (jj, vals) in block.chunks_exact(rows).enumerate() {
            for (r, v) in vals.iter().enumerate() {
                y[r * n + j0 + jj] = *v;
            }
        }
    }
    y
}

/// `dst[r] = dot(x[r], w)` for every row `r`.
fn dot_rows(x: &[f32], rows: usize, k: usize, w: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            let mut r = 0;
            while r < rows {
                let take = (rows - r).min(4);
                // SAFETY: the CPU supports AVX2 and FMA (checked above); slices are in bounds
                // (x holds rows * k values, w holds k).
                unsafe {
                    avx2::dot_up_to_4(&x[r * k..(r + take) * k], take, k, w, &mut dst[r..r + take])
                };
                r += take;
            }
            return;
        }
    }
    for (r, d) in dst.iter_mut().enumerate().take(rows) {
        *d = dot_portable(&x[r * k..(r + 1) * k], w);
    }
}

/// A dot product the compiler vectorises: eight independent partial sums.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Dot products of `rows` (≤ 4) rows of `x` with `w`, two 8-wide accumulators per row so
    /// that up to eight FMA chains are in flight.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_up_to_4(x: &[f32], rows: usize, k: usize, w: &[f32], dst: &mut [f32]) {
        let mut acc0 = [_mm256_setzero_ps(); 4];
        let mut acc1 = [_mm256_setzero_ps(); 4];
        let wp = w.as_ptr();
        let xp = x.as_ptr();
        let mut i = 0;
        while i + 16 <= k {
            let w0 = _mm256_loadu_ps(wp.add(i));
            let w1 = _mm256_loadu_ps(wp.add(i + 8));
            for r in 0..rows {
                let row = xp.add(r * k + i);
                acc0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(row), w0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(row.add(8)), w1, acc1[r]);
            }
            i += 16;
        }
        for r in 0..rows {
            let s = _mm256_add_ps(acc0[r], acc1[r]);
            let hi = _mm256_extractf128_ps(s, 1);
            let lo = _mm256_castps256_ps128(s);
            let q = _mm_add_ps(hi, lo);
            let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
            let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
            let mut total = _mm_cvtss_f32(q);
            for j in i..k {
                total += *xp.add(r * k + j) * *wp.add(j);
            }
            dst[r] = total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(
        x: &[f32],
        rows: usize,
        k: usize,
        w: &[f32],
        n: usize,
        b: Option<&[f32]>,
    ) -> Vec<f32> {
        let mut y = vec![0f32; rows * n];
        for r in 0..rows {
            for j in 0..n {
                let mut s = 0f64;
                for i in 0..k {
                    s += x[r * k + i] as f64 * w[j * k + i] as f64;
                }
                y[r * n + j] = s as f32 + b.map_or(0.0, |b| b[j]);
            }
        }
        y
    }

    fn pseudo(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2000) as f32
                    / 1000.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_reference_on_awkward_shapes() {
        for &(rows, k, n) in &[
            (1, 512, 300),
            (3, 37, 129),
            (4, 64, 256),
            (5, 100, 7),
            (9, 16, 1),
            (16, 513, 130),
        ] {
            let x = pseudo(rows * k, 1);
            let w = pseudo(n * k, 2);
            let b = pseudo(n, 3);
            for bias in [None, Some(b.as_slice())] {
                let got = matmul_xwt(&x, rows, k, &w, n, bias);
                let want = reference(&x, rows, k, &w, n, bias);
                let d = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(d < 1e-4, "rows {rows} k {k} n {n}: max diff {d}");
            }
        }
    }

    #[test]
    fn portable_dot_matches() {
        let a = pseudo(45, 4);
        let b = pseudo(45, 5);
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot_portable(&a, &b) - want).abs() < 1e-4);
    }
}
