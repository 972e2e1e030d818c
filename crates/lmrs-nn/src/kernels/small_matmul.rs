//! `y = x W^T (+ b)` for a few rows of `x`: the shape of every projection while decoding
//! (one row per sequence or beam).
//!
//! Why: the generic GEMM packs its operands on every call; with a few rows that packing of
//! the weight matrix costs more than the multiplication (t5-small, 4 beams: ~40% of decode
//! time). Here the weight is streamed from memory once: a block of 4 weight rows stays in L1
//! while it is dotted with every input row, 4 rows × 4 columns per register tile.

/// Largest row count this kernel is used for (measured on t5-small: still ahead of the
/// packing GEMM at 32 rows, 8 inputs x 4 beams); beyond it the blocked GEMM wins.
pub const MAX_ROWS: usize = 64;

/// Output columns per unit of parallel work.
const COLS_PER_TASK: usize = 64;

/// Register tile: input rows × output columns computed together.
const TILE: usize = 4;

/// An output buffer shared by the workers; each writes a disjoint set of elements.
pub(crate) struct SharedOut(*mut f32);
// SAFETY: workers write disjoint elements (distinct columns) and the buffer outlives them.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(crate) fn new(buf: &mut [f32]) -> Self {
        Self(buf.as_mut_ptr())
    }

    /// # Safety
    /// `i` must be in bounds and no other thread may write element `i`.
    pub(crate) unsafe fn write(&self, i: usize, v: f32) {
        unsafe { *self.0.add(i) = v };
    }
}

/// `x`: `(rows, k)` row-major; `w`: `(n, k)` row-major (PyTorch `Linear` layout);
/// `bias`: `(n,)`. Returns `y`: `(rows, n)` row-major.
///
/// Work is split over output columns on the backend's own worker pool (the one its
/// element-wise ops use), so decoding does not keep a second set of threads spinning.
pub fn matmul_xwt(
    x: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert!(x.len() == rows * k && w.len() == n * k && bias.is_none_or(|b| b.len() == n));
    let mut y = vec![0f32; rows * n];
    if rows == 0 || n == 0 {
        return y;
    }
    let out = SharedOut(y.as_mut_ptr());
    let tasks = n.div_ceil(COLS_PER_TASK);
    // One row (greedy decoding): one weight row at a time streams best; several rows: tiles of
    // TILE weight rows reuse each loaded input vector TILE times.
    let col_step = if rows == 1 { 1 } else { TILE };
    let work = |range: std::ops::Range<usize>| {
        for t in range {
            let (j0, j1) = (t * COLS_PER_TASK, ((t + 1) * COLS_PER_TASK).min(n));
            if rows == 1 {
                for j in j0..j1 {
                    let v = dot(x, &w[j * k..(j + 1) * k]);
                    // SAFETY: j < n; column j belongs to this task only.
                    unsafe { out.write(j, v + bias.map_or(0.0, |b| b[j])) };
                }
                continue;
            }
            for jt in (j0..j1).step_by(col_step) {
                let cols = (j1 - jt).min(col_step);
                for rt in (0..rows).step_by(TILE) {
                    let nrows = (rows - rt).min(TILE);
                    let tile = dot_tile(x, rt, nrows, w, jt, cols, k);
                    for (r, row) in tile.iter().enumerate().take(nrows) {
                        for (c, v) in row.iter().enumerate().take(cols) {
                            let j = jt + c;
                            let b = bias.map_or(0.0, |b| b[j]);
                            // SAFETY: rt + r < rows and j < n, so the index is in bounds;
                            // column j belongs to this task only.
                            unsafe { out.write((rt + r) * n + j, v + b) };
                        }
                    }
                }
            }
        }
    };
    lmrs_core::candle::utils::barrier_pool().execute_chunked(tasks, work);
    y
}

/// Dot products of input rows `r0..r0+nrows` with weight rows `j0..j0+ncols` (each ≤ TILE).
/// Missing columns of a partial tile repeat the last real one and are ignored; row counts
/// below TILE get their own instantiation so a single decoding row costs no extra FMAs.
fn dot_tile(
    x: &[f32],
    r0: usize,
    nrows: usize,
    w: &[f32],
    j0: usize,
    ncols: usize,
    k: usize,
) -> [[f32; TILE]; TILE] {
    let xr: [&[f32]; TILE] = std::array::from_fn(|i| {
        let r = r0 + i.min(nrows - 1);
        &x[r * k..(r + 1) * k]
    });
    let wr: [&[f32]; TILE] = std::array::from_fn(|i| {
        let j = j0 + i.min(ncols - 1);
        &w[j * k..(j + 1) * k]
    });
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked above); every slice holds k values.
            return unsafe {
                match nrows {
                    1 => avx2::tile::<1>(xr, wr, k),
                    2 => avx2::tile::<2>(xr, wr, k),
                    3 => avx2::tile::<3>(xr, wr, k),
                    _ => avx2::tile::<4>(xr, wr, k),
                }
            };
        }
    }
    std::array::from_fn(|r| std::array::from_fn(|c| dot_portable(xr[r], wr[c])))
}

/// One dot product, vectorised when the CPU allows.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { avx2::dot(a, b) };
        }
    }
    dot_portable(a, b)
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
    use super::TILE;
    use std::arch::x86_64::*;

    /// One dot product with four independent 8-wide accumulators (32 values per iteration).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let k = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= k {
            for (u, a) in acc.iter_mut().enumerate() {
                let o = i + 8 * u;
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(o)), _mm256_loadu_ps(pb.add(o)), *a);
            }
            i += 32;
        }
        while i + 8 <= k {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut total = hsum(s);
        while i < k {
            total += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        total
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(s: __m256) -> f32 {
        let q = _mm_add_ps(_mm256_extractf128_ps(s, 1), _mm256_castps256_ps128(s));
        let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)))
    }

    /// `R` × 4 dot products with independent 8-wide accumulators (16 for `R` = 4: per 8
    /// elements, 8 loads feed 16 FMAs). Rows beyond `R` in the result are zero.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile<const R: usize>(
        x: [&[f32]; TILE],
        w: [&[f32]; TILE],
        k: usize,
    ) -> [[f32; TILE]; TILE] {
        let mut acc = [[_mm256_setzero_ps(); TILE]; TILE];
        let mut i = 0;
        while i + 8 <= k {
            // Plain loops, not closures: a closure would not inherit this function's target
            // features and its loads would not be inlined.
            let mut wv = [_mm256_setzero_ps(); TILE];
            for c in 0..TILE {
                wv[c] = _mm256_loadu_ps(w[c].as_ptr().add(i));
            }
            for r in 0..R {
                let xv = _mm256_loadu_ps(x[r].as_ptr().add(i));
                for c in 0..TILE {
                    acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
                }
            }
            i += 8;
        }
        let mut out = [[0f32; TILE]; TILE];
        for r in 0..R {
            for c in 0..TILE {
                let mut total = hsum(acc[r][c]);
                for j in i..k {
                    total += x[r][j] * w[c][j];
                }
                out[r][c] = total;
            }
        }
        out
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
