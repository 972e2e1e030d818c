//! `y = act(x W^T + b)` for many rows (encoders, prompt processing): a packed GEMM with a
//! 6 × 16 AVX2/FMA register tile.
//!
//! Why: the generic backend GEMM reached ~47% of the FMA peak on the shapes encoders use
//! (k = 384–2048, n = 384–2048, a hundred to a few thousand rows). Here the weight is packed
//! into 16-column panels (contiguous along k; once at load time with [`PackedMatrix`], or per
//! call with [`matmul_xwt`]); the 12 accumulators of a 6 × 16 output tile never leave
//! registers while a `KC`-long slice of the panel (32 KiB) streams past them. The
//! bias is the accumulators' starting value and an activation can be applied to each task's
//! output while it is still in cache ([`Act`]), so neither costs a pass over memory.
//!
//! Work is split in two dimensions (row blocks × column groups) so that a single 128-token
//! sequence still keeps every thread busy. The same serial block routine multiplies the
//! per-head score and value matrices of the encoder attention (`encoder_attention.rs`).
//!
//! CPUs without AVX2/FMA run a portable tile of the same shape (what the compiler makes of
//! plain loops); [`matmul_xwt`] declines there so callers keep the backend GEMM.

use super::vmath::{self, Act};
use std::ops::Range;

/// Output columns per packed panel (two 8-wide vectors).
pub(crate) const NR: usize = 16;
/// Rows per register tile.
const MR: usize = 6;
/// Depth of one pass over a panel: KC × NR floats (32 KiB) stay in L1/L2 across a row block.
/// (256 and 512 measured alike on encoder shapes; 512 was ~8% faster on a 32000-wide LM head.)
const KC: usize = 512;
/// Rows per parallel task (a multiple of MR).
const MB: usize = 48;
/// Panels per parallel task (64 output columns).
const CG: usize = 4;
/// Fewer tasks than this and each task gets a single panel.
const MIN_TASKS: usize = 64;

/// Whether the fast (AVX2/FMA) tile is available on this CPU.
pub fn accelerated() -> bool {
    vmath::has_avx2_fma()
}

/// A raw output pointer that parallel tasks share; each writes a disjoint region.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub(crate) *mut f32);
// SAFETY: users guarantee that concurrent tasks write disjoint elements and that the buffer
// outlives the tasks.
unsafe impl Sync for SyncPtr {}
unsafe impl Send for SyncPtr {}

impl SyncPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper and not the field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Number of floats the packed form of an `n`-column, depth-`k` operand takes.
pub(crate) fn packed_len(n: usize, k: usize) -> usize {
    n.div_ceil(NR) * k * NR
}

/// Pack `n` rows of `k` values (row `j` at `src[j * stride..]`: a PyTorch `(out, in)` weight,
/// or the keys of one attention head) into panels: panel `q`, depth `p`, lane `c` holds
/// row `q * NR + c`, element `p`; lanes past `n` are zero.
pub(crate) fn pack_nk(src: &[f32], n: usize, k: usize, stride: usize, dst: &mut [f32]) {
    assert!(dst.len() >= packed_len(n, k));
    assert!(n == 0 || src.len() >= (n - 1) * stride + k);
    for q in 0..n.div_ceil(NR) {
        let panel = &mut dst[q * k * NR..(q + 1) * k * NR];
        let cols = NR.min(n - q * NR);
        if cols < NR {
            panel.fill(0.0);
        }
        for c in 0..cols {
            let row = &src[(q * NR + c) * stride..(q * NR + c) * stride + k];
            for (p, &v) in row.iter().enumerate() {
                panel[p * NR + c] = v;
            }
        }
    }
}

/// Pack a `(k, n)` operand whose row `p` is at `src[p * stride..]` (the values of one
/// attention head, multiplied from the left by the probabilities) into the same panels.
pub(crate) fn pack_kn(src: &[f32], k: usize, n: usize, stride: usize, dst: &mut [f32]) {
    assert!(dst.len() >= packed_len(n, k));
    assert!(k == 0 || src.len() >= (k - 1) * stride + n);
    for q in 0..n.div_ceil(NR) {
        let cols = NR.min(n - q * NR);
        for p in 0..k {
            let to = &mut dst[(q * k + p) * NR..(q * k + p + 1) * NR];
            to[..cols].copy_from_slice(&src[p * stride + q * NR..p * stride + q * NR + cols]);
            to[cols..].fill(0.0);
        }
    }
}

/// A `(n, k)` weight (and optional bias) packed once for [`PackedMatrix::matmul`].
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    n: usize,
    k: usize,
    data: Vec<f32>,
    /// Padded to whole panels with zeros.
    bias: Option<Vec<f32>>,
}

impl PackedMatrix {
    /// Pack `w` `(n, k)` row-major (PyTorch `Linear` layout) and `bias` `(n,)`.
    ///
    /// # Panics
    /// When the slice lengths disagree with `n` and `k`.
    pub fn pack(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        assert!(w.len() == n * k && bias.is_none_or(|b| b.len() == n));
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; packed_len(n, k)];
        let dst = SyncPtr(data.as_mut_ptr());
        lmrs_core::candle::utils::barrier_pool().execute_chunked(panels, |range| {
            for q in range {
                let cols = NR.min(n - q * NR);
                // SAFETY: panel q (k * NR floats inside `data`) is written by this task only.
                let panel =
                    unsafe { std::slice::from_raw_parts_mut(dst.get().add(q * k * NR), k * NR) };
                pack_nk(&w[q * NR * k..], cols, k, k, panel);
            }
        });
        let bias = bias.map(|b| {
            let mut padded = vec![0f32; panels * NR];
            padded[..n].copy_from_slice(b);
            padded
        });
        Self { n, k, data, bias }
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// `out = act(x W^T + b)`: `x` `(m, k)` and `out` `(m, n)` row-major, on the backend's
    /// worker pool.
    ///
    /// # Panics
    /// When the slice lengths disagree with `m` and the packed shape.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32], act: Act) {
        let (n, k) = (self.n, self.k);
        assert!(x.len() == m * k && out.len() == m * n);
        if m == 0 || n == 0 {
            return;
        }
        let panels = n.div_ceil(NR);
        // Narrower column groups when there are few row blocks (one 128-token sequence), so
        // that the pool's chunks of tasks still balance over the threads.
        let row_blocks = m.div_ceil(MB);
        let cg = if row_blocks * panels.div_ceil(CG) >= MIN_TASKS {
            CG
        } else {
            1
        };
        let groups = panels.div_ceil(cg);
        let tasks = row_blocks * groups;
        let dst = SyncPtr(out.as_mut_ptr());
        lmrs_core::candle::utils::barrier_pool().execute_chunked(tasks, |range| {
            for t in range {
                // Consecutive tasks share a row block, which stays in L2 while the column
                // groups change.
                let (rb, g) = (t / groups, t % groups);
                let rows = rb * MB..((rb + 1) * MB).min(m);
                let cols = g * cg..((g + 1) * cg).min(panels);
                // SAFETY: x holds m rows of k; the block (rows × the columns of `cols`)
                // belongs to this task only; out holds m rows of n.
                unsafe {
                    gemm_block(
                        x.as_ptr(),
                        k,
                        rows.clone(),
                        k,
                        &self.data,
                        self.bias.as_deref(),
                        cols.clone(),
                        n,
                        dst.get(),
                        n,
                    );
                }
                if act != Act::Identity {
                    let (c0, c1) = (cols.start * NR, (cols.end * NR).min(n));
                    for r in rows {
                        // SAFETY: row r, columns c0..c1 are this task's (see above).
                        let row = unsafe {
                            std::slice::from_raw_parts_mut(dst.get().add(r * n + c0), c1 - c0)
                        };
                        vmath::apply_act(row, act);
                    }
                }
            }
        });
    }
}

/// `x`: `(m, k)` row-major; `w`: `(n, k)` row-major; `bias`: `(n,)`. Returns `(m, n)`.
/// `None` when the CPU lacks AVX2/FMA (callers fall back to the backend GEMM).
pub fn matmul_xwt(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
) -> Option<Vec<f32>> {
    if !accelerated() {
        return None;
    }
    let packed = PackedMatrix::pack(w, n, k, bias);
    let mut y = vec![0f32; m * n];
    packed.matmul(x, m, &mut y, Act::Identity);
    Some(y)
}

/// How a tile's accumulators start.
#[derive(Clone, Copy)]
enum Init {
    /// From zero.
    Zero,
    /// From NR bias values (padded).
    Bias(*const f32),
    /// From the output already there (a later depth slice).
    Accumulate,
}

/// Serial `out[rows, cols of panels] = a[rows] · panels (+ bias)`, depth sliced by [`KC`].
///
/// # Safety
/// `a` points to rows `rows` of `k` values each, `lda` apart; `panels` holds
/// `ceil(n / NR) * k * NR` packed values and `bias` (when given) `ceil(n / NR) * NR`; `out`
/// points to a matrix with rows `ldo` apart whose elements in `rows` × (the columns of
/// `panel_range`, clipped to `n`) may be written by this call alone.
#[allow(clippy::too_many_arguments)] // a BLAS-style block call: pointers, strides, ranges
pub(crate) unsafe fn gemm_block(
    a: *const f32,
    lda: usize,
    rows: Range<usize>,
    k: usize,
    panels: &[f32],
    bias: Option<&[f32]>,
    panel_range: Range<usize>,
    n: usize,
    out: *mut f32,
    ldo: usize,
) {
    let fast = accelerated();
    if k == 0 {
        // Empty products: the bias alone.
        for r in rows {
            for j in panel_range.start * NR..(panel_range.end * NR).min(n) {
                unsafe { *out.add(r * ldo + j) = bias.map_or(0.0, |b| b[j]) };
            }
        }
        return;
    }
    for kb in (0..k).step_by(KC) {
        let kc = KC.min(k - kb);
        for q in panel_range.clone() {
            let cols = NR.min(n - q * NR);
            let panel = unsafe { panels.as_ptr().add(q * k * NR + kb * NR) };
            let init = match (kb, bias) {
                (0, Some(b)) => Init::Bias(unsafe { b.as_ptr().add(q * NR) }),
                (0, None) => Init::Zero,
                _ => Init::Accumulate,
            };
            for r0 in rows.clone().step_by(MR) {
                let r = MR.min(rows.end - r0);
                let a = unsafe { a.add(r0 * lda + kb) };
                let c = unsafe { out.add(r0 * ldo + q * NR) };
                let t = Tile {
                    a,
                    lda,
                    kc,
                    panel,
                    init,
                    out: c,
                    ldo,
                    cols,
                };
                #[cfg(target_arch = "x86_64")]
                if fast {
                    unsafe { avx2::tile(t, r) };
                    continue;
                }
                let _ = fast;
                unsafe { portable_tile(t, r) };
            }
        }
    }
}

/// One register tile's operands (see [`gemm_block`] for the layout).
#[derive(Clone, Copy)]
struct Tile {
    a: *const f32,
    lda: usize,
    kc: usize,
    panel: *const f32,
    init: Init,
    out: *mut f32,
    ldo: usize,
    /// Valid output columns (≤ NR).
    cols: usize,
}

/// The tile in plain Rust, for CPUs without AVX2/FMA.
///
/// # Safety
/// As [`gemm_block`], for `rows` rows of one tile.
unsafe fn portable_tile(t: Tile, rows: usize) {
    let mut acc = [[0f32; NR]; MR];
    for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
        match t.init {
            Init::Zero => {}
            Init::Bias(b) => {
                for (c, v) in acc_r.iter_mut().enumerate() {
                    *v = unsafe { *b.add(c) };
                }
            }
            Init::Accumulate => {
                for (c, v) in acc_r.iter_mut().enumerate().take(t.cols) {
                    *v = unsafe { *t.out.add(r * t.ldo + c) };
                }
            }
        }
    }
    for p in 0..t.kc {
        let b = unsafe { std::slice::from_raw_parts(t.panel.add(p * NR), NR) };
        for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
            let x = unsafe { *t.a.add(r * t.lda + p) };
            for (v, w) in acc_r.iter_mut().zip(b) {
                *v += x * w;
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate().take(rows) {
        for (c, v) in acc_r.iter().enumerate().take(t.cols) {
            unsafe { *t.out.add(r * t.ldo + c) = *v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Init, Tile, MR, NR};
    use std::arch::x86_64::*;

    /// Dispatch on the row count (the accumulator arrays must have a constant size to live
    /// in registers).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(t: Tile, rows: usize) {
        unsafe {
            match rows {
                6 => tile_r::<6>(t),
                5 => tile_r::<5>(t),
                4 => tile_r::<4>(t),
                3 => tile_r::<3>(t),
                2 => tile_r::<2>(t),
                _ => tile_r::<1>(t),
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)] // fixed-size register arrays; indices unroll
    unsafe fn tile_r<const R: usize>(t: Tile) {
        unsafe {
            let full = t.cols == NR;
            // Lane masks for a partial last panel (maskload/maskstore touch no memory in
            // masked-off lanes).
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(t.cols as i32), lanes);
            let m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(t.cols as i32 - 8), lanes);
            let mut acc0 = [_mm256_setzero_ps(); MR];
            let mut acc1 = [_mm256_setzero_ps(); MR];
            match t.init {
                Init::Zero => {}
                Init::Bias(b) => {
                    let (b0, b1) = (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)));
                    for r in 0..R {
                        acc0[r] = b0;
                        acc1[r] = b1;
                    }
                }
                Init::Accumulate => {
                    for r in 0..R {
                        let o = t.out.add(r * t.ldo);
                        if full {
                            acc0[r] = _mm256_loadu_ps(o);
                            acc1[r] = _mm256_loadu_ps(o.add(8));
                        } else {
                            acc0[r] = _mm256_maskload_ps(o, m0);
                            acc1[r] = _mm256_maskload_ps(o.wrapping_add(8), m1);
                        }
                    }
                }
            }
            let (xp, bp) = (t.a, t.panel);
            for p in 0..t.kc {
                let b0 = _mm256_loadu_ps(bp.add(p * NR));
                let b1 = _mm256_loadu_ps(bp.add(p * NR + 8));
                for r in 0..R {
                    let a = _mm256_broadcast_ss(&*xp.add(r * t.lda + p));
                    acc0[r] = _mm256_fmadd_ps(a, b0, acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(a, b1, acc1[r]);
                }
            }
            for r in 0..R {
                let o = t.out.add(r * t.ldo);
                if full {
                    _mm256_storeu_ps(o, acc0[r]);
                    _mm256_storeu_ps(o.add(8), acc1[r]);
                } else {
                    _mm256_maskstore_ps(o, m0, acc0[r]);
                    _mm256_maskstore_ps(o.wrapping_add(8), m1, acc1[r]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i + seed) * 7919) % 201) as f32 / 100.0 - 1.0)
            .collect()
    }

    fn naive(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, b: Option<&[f32]>) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|p| x[r * k + p] as f64 * w[j * k + p] as f64)
                    .sum();
                y[r * n + j] = dot as f32 + b.map_or(0.0, |b| b[j]);
            }
        }
        y
    }

    fn check(got: &[f32], want: &[f32], k: usize, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        let tol = 1e-5 * (k as f32).max(1.0);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol, "{what} [{i}]: {g} vs {w}");
        }
    }

    #[test]
    fn matches_naive_product_on_awkward_shapes() {
        // Row counts around MR and MB, columns around NR and a column group, depths around KC
        // (several depth slices), and empty edges.
        for &(m, k, n) in &[
            (23, 37, 41),
            (1, 1, 1),
            (6, 16, 16),
            (7, 300, 17),
            (49, 513, 65),
            (130, 40, 200),
            (5, 0, 9),
            (0, 8, 8),
            (4, 8, 0),
        ] {
            let (x, w, b) = (pseudo(m * k, 1), pseudo(n * k, 2), pseudo(n, 3));
            for bias in [None, Some(&b[..])] {
                let p = PackedMatrix::pack(&w, n, k, bias);
                let mut y = vec![f32::NAN; m * n];
                p.matmul(&x, m, &mut y, Act::Identity);
                check(
                    &y,
                    &naive(&x, m, k, &w, n, bias),
                    k,
                    &format!("{m}x{k}x{n}"),
                );
                if let Some(y) = matmul_xwt(&x, m, k, &w, n, bias) {
                    check(&y, &naive(&x, m, k, &w, n, bias), k, "matmul_xwt");
                }
            }
        }
    }

    #[test]
    fn fused_activation_matches_separate_pass() {
        let (m, k, n) = (50, 70, 90);
        let (x, w, b) = (pseudo(m * k, 4), pseudo(n * k, 5), pseudo(n, 6));
        let p = PackedMatrix::pack(&w, n, k, Some(&b));
        let mut want = vec![0f32; m * n];
        p.matmul(&x, m, &mut want, Act::Identity);
        vmath::apply_act(&mut want, Act::GeluErf);
        let mut got = vec![0f32; m * n];
        p.matmul(&x, m, &mut got, Act::GeluErf);
        assert_eq!(got, want);
    }

    #[test]
    fn portable_tile_matches_naive_product() {
        // The fallback for CPUs without AVX2, exercised here whatever this CPU has (two depth
        // slices, so the accumulating start is covered too).
        let (k, n) = (KC + 188, 13);
        let (x, w, b) = (pseudo(5 * k, 7), pseudo(n * k, 8), pseudo(n, 9));
        let mut panels = vec![0f32; packed_len(n, k)];
        pack_nk(&w, n, k, k, &mut panels);
        let mut bias = b.clone();
        bias.resize(NR, 0.0);
        let mut y = vec![0f32; 5 * n];
        for kb in (0..k).step_by(KC) {
            let t = Tile {
                a: x[kb..].as_ptr(),
                lda: k,
                kc: KC.min(k - kb),
                panel: panels[kb * NR..].as_ptr(),
                init: if kb == 0 {
                    Init::Bias(bias.as_ptr())
                } else {
                    Init::Accumulate
                },
                out: y.as_mut_ptr(),
                ldo: n,
                cols: n,
            };
            // SAFETY: shapes as documented: 5 rows of k, one panel, 5 x n output.
            unsafe { portable_tile(t, 5) };
        }
        check(&y, &naive(&x, 5, k, &w, n, Some(&b)), k, "portable");
    }

    #[test]
    fn pack_kn_is_the_transpose_of_pack_nk() {
        let (k, n) = (11, 21);
        let w = pseudo(n * k, 10); // (n, k)
        let mut wt = vec![0f32; k * n]; // (k, n)
        for j in 0..n {
            for p in 0..k {
                wt[p * n + j] = w[j * k + p];
            }
        }
        let (mut a, mut b) = (vec![1f32; packed_len(n, k)], vec![2f32; packed_len(n, k)]);
        pack_nk(&w, n, k, k, &mut a);
        pack_kn(&wt, k, n, n, &mut b);
        assert_eq!(a, b);
    }
}
