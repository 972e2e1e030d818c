//! `y = x W^T` with `W` in GGUF's Q4_K or Q6_K super-blocks (256 values), executed as stored.
//!
//! Why: the backend multiplies K-quants with one kernel for a single activation row (a fused
//! mat-vec) and another for several (repacked tiles) that sum in a different order, so a
//! sequence decoded in a batch drifted from the same sequence decoded alone (Gemma 3 270M).
//! Here every output element `(r, j)` is computed by the same arithmetic whatever the number
//! of rows, the tiling or the threading: the activation row is quantized to 8 bits per
//! super-block (like ggml's `block_q8_K`), the low-bit × 8-bit products are summed exactly
//! in integers, and the per-super-block sums are folded into floats in block order.
//!
//! Q4_K block (144 bytes): `d: f16`, `dmin: f16`, `scales: [u8; 12]` (eight 6-bit scales
//! and eight 6-bit mins), `qs: [u8; 128]`. Values `64 i .. 64 i + 32` are the low nibbles of
//! `qs[32 i .. 32 i + 32]` (sub-block `2 i`), the next 32 their high nibbles (sub-block
//! `2 i + 1`); value = `d * sc_s * q - dmin * m_s`.
//!
//! Q6_K block (210 bytes): `ql: [u8; 128]`, `qh: [u8; 64]`, `scales: [i8; 16]` (one per 16
//! values), `d: f16` last. Each half `h` (128 values) uses `ql[64 h..]` and `qh[32 h..]`; for
//! `l < 32` its values `l`, `32 + l`, `64 + l`, `96 + l` take their low 4 bits from
//! `ql[l] & 15`, `ql[32 + l] & 15`, `ql[l] >> 4`, `ql[32 + l] >> 4` and their top 2 bits
//! from bits 0-1, 2-3, 4-5, 6-7 of `qh[l]`; value = `d * sc * (q - 32)`.

#[cfg(target_arch = "x86_64")]
use super::block_quant::{hmax, hsum};
use super::small_matmul::SharedOut;

/// Values per super-block.
pub const QK_K: usize = 256;
/// Bytes per Q4_K super-block.
pub const Q4K_BLOCK_BYTES: usize = 144;
/// Bytes per Q6_K super-block.
pub const Q6K_BLOCK_BYTES: usize = 210;
/// Output rows (weight rows) per unit of parallel work.
const ROWS_PER_TASK: usize = 16;
/// Activation rows that share one unpacked weight super-block.
const XTILE: usize = 8;

/// The K-quant formats these kernels execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KFormat {
    /// 4-bit values, 6-bit scales and mins per 32 values.
    Q4K,
    /// 6-bit values, 8-bit scales per 16 values.
    Q6K,
}

impl KFormat {
    /// Bytes per 256-value super-block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4K => Q4K_BLOCK_BYTES,
            Self::Q6K => Q6K_BLOCK_BYTES,
        }
    }
}

/// A 256-value activation block quantized to 8 bits.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Q8KBlock {
    q: [i8; QK_K],
    /// Sum of each 16 consecutive `q`.
    bsums: [i16; 16],
    d: f32,
}

/// Which kernels this CPU runs; one choice for every row count, so a row's result does not
/// depend on how many rows came with it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Scalar,
    Avx2,
    /// AVX2 with AVX-VNNI's `vpdpwssd` (Zen 4, Alder Lake and later).
    AvxVnni,
}

fn detect_path() -> Path {
    #[cfg(target_arch = "x86_64")]
    {
        static PATH: std::sync::OnceLock<Path> = std::sync::OnceLock::new();
        *PATH.get_or_init(|| {
            let ok = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            if ok && std::arch::is_x86_feature_detected!("avxvnni") {
                Path::AvxVnni
            } else if ok {
                Path::Avx2
            } else {
                Path::Scalar
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Path::Scalar
    }
}

/// A `(rows, cols)` matrix of K-quant super-blocks (each row is `cols / 256` blocks).
#[derive(Debug, Clone)]
pub struct KQuantMatrix {
    format: KFormat,
    data: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl KQuantMatrix {
    /// Wrap raw GGUF bytes of a `(rows, cols)` tensor. `None` when the sizes disagree or
    /// `cols` is not a multiple of 256.
    pub fn new(format: KFormat, data: Vec<u8>, rows: usize, cols: usize) -> Option<Self> {
        let ok = cols.is_multiple_of(QK_K)
            && rows
                .checked_mul(cols / QK_K * format.block_bytes())
                .is_some_and(|len| len == data.len());
        ok.then_some(Self {
            format,
            data,
            rows,
            cols,
        })
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `x`: `(m, cols)` row-major → `(m, rows)` row-major.
    pub fn matmul_xwt(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.matmul_with(x, m, detect_path())
    }

    fn matmul_with(&self, x: &[f32], m: usize, path: Path) -> Vec<f32> {
        let (n, k) = (self.rows, self.cols);
        assert_eq!(x.len(), m * k, "input is not (m, {k})");
        let nb = k / QK_K;
        let xq: Vec<Q8KBlock> = x.chunks_exact(QK_K).map(|c| quantize(c, path)).collect();
        let mut y = vec![0f32; m * n];
        if m == 0 || n == 0 {
            return y;
        }
        let out = SharedOut::new(&mut y);
        let row_bytes = nb * self.format.block_bytes();
        let f = self.format;
        let work = |range: std::ops::Range<usize>| {
            let mut sums = [0f32; XTILE];
            for t in range {
                let rows = t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(n);
                // Activation tile outermost: its rows stay in L1 while the task's weight rows
                // stream past them.
                for r0 in (0..m).step_by(XTILE) {
                    let tile = (m - r0).min(XTILE);
                    let xs = &xq[r0 * nb..(r0 + tile) * nb];
                    for j in rows.clone() {
                        let w = &self.data[j * row_bytes..(j + 1) * row_bytes];
                        dot_rows(f, path, w, xs, nb, tile, &mut sums);
                        for (r, v) in sums.iter().enumerate().take(tile) {
                            // SAFETY: (r0 + r) < m and j < n; row j belongs to this task.
                            unsafe { out.write((r0 + r) * n + j, *v) };
                        }
                    }
                }
            }
        };
        lmrs_core::candle::utils::barrier_pool().execute_chunked(n.div_ceil(ROWS_PER_TASK), work);
        y
    }

    /// The values, dequantized (reference for tests).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for b in self.data.chunks_exact(self.format.block_bytes()) {
            let p = Plain::new(self.format, b);
            out.extend(
                (0..QK_K).map(|i| {
                    p.d * p.sc[i / 16] as f32 * p.q[i] as f32 - p.dmin * p.m[i / 32] as f32
                }),
            );
        }
        out
    }
}

/// A super-block in plain integers: value `i` is `d·sc[i / 16]·q[i] - dmin·m[i / 32]`.
struct Plain {
    d: f32,
    /// 0 for Q6_K.
    dmin: f32,
    /// Q4_K: 0..15; Q6_K: `q - 32`, -32..31.
    q: [i8; QK_K],
    /// Per 16 values (Q4_K's 32-value scales twice).
    sc: [i8; 16],
    /// Q4_K's mins per 32 values; 0 for Q6_K.
    m: [u8; 8],
}

impl Plain {
    fn new(f: KFormat, b: &[u8]) -> Self {
        let f16_at = |at: usize| half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32();
        match f {
            KFormat::Q4K => {
                let words = q4k_scale_words(b);
                let mut bytes = [0u8; 16];
                for (chunk, w) in bytes.chunks_exact_mut(4).zip(words) {
                    chunk.copy_from_slice(&w.to_le_bytes());
                }
                let qs = &b[16..Q4K_BLOCK_BYTES];
                Self {
                    d: f16_at(0),
                    dmin: f16_at(2),
                    q: std::array::from_fn(|i| {
                        let byte = qs[32 * (i / 64) + i % 32];
                        (if i % 64 < 32 { byte & 15 } else { byte >> 4 }) as i8
                    }),
                    sc: std::array::from_fn(|g| bytes[g / 2] as i8),
                    m: std::array::from_fn(|s| bytes[8 + s]),
                }
            }
            KFormat::Q6K => Self {
                d: f16_at(208),
                dmin: 0.0,
                q: std::array::from_fn(|i| {
                    let (h, part, l) = (i / 128, (i % 128) / 32, i % 32);
                    let ql = b[64 * h + 32 * (part & 1) + l];
                    let low = if part < 2 { ql & 15 } else { ql >> 4 };
                    let high = (b[128 + 32 * h + l] >> (2 * part)) & 3;
                    (low | high << 4) as i8 - 32
                }),
                sc: std::array::from_fn(|g| b[192 + g] as i8),
                m: [0; 8],
            },
        }
    }
}

/// Q4_K's 12 scale bytes as four words of four 6-bit values: scales 0..3, scales 4..7, mins
/// 0..3, mins 4..7 (ggml's `get_scale_min_k4`: entries 0..3 are the low 6 bits of bytes 0..7;
/// entries 4..7 join the nibbles of bytes 8..11 with the top 2 bits of bytes 0..7).
fn q4k_scale_words(b: &[u8]) -> [u32; 4] {
    let word = |i: usize| u32::from_le_bytes([b[4 + i], b[5 + i], b[6 + i], b[7 + i]]);
    let (lo, mid, hi) = (word(0), word(4), word(8));
    [
        lo & 0x3f3f_3f3f,
        (hi & 0x0f0f_0f0f) | ((lo >> 6) & 0x0303_0303) << 4,
        mid & 0x3f3f_3f3f,
        ((hi >> 4) & 0x0f0f_0f0f) | ((mid >> 6) & 0x0303_0303) << 4,
    ]
}

/// `q = round(x / d)` (half away from zero), `d = max|x| / 127`, and the sums per 16.
fn quantize_block(x: &[f32]) -> Q8KBlock {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let q: [i8; QK_K] = std::array::from_fn(|i| (x[i] * id).round() as i8);
    let bsums = std::array::from_fn(|g| q[16 * g..16 * g + 16].iter().map(|&v| v as i16).sum());
    Q8KBlock { q, bsums, d }
}

fn quantize(x: &[f32], path: Path) -> Q8KBlock {
    #[cfg(target_arch = "x86_64")]
    if path != Path::Scalar {
        // SAFETY: AVX2 was detected at run time; `x` is one block.
        return unsafe { quantize_block_avx2(x) };
    }
    let _ = path;
    quantize_block(x)
}

/// Dot weight row `w` (`nb` super-blocks) with `rows` activation rows of `xs` (row-major).
fn dot_rows(
    f: KFormat,
    path: Path,
    w: &[u8],
    xs: &[Q8KBlock],
    nb: usize,
    rows: usize,
    out: &mut [f32; XTILE],
) {
    #[cfg(target_arch = "x86_64")]
    if path != Path::Scalar {
        // SAFETY: the features of `path` were detected at run time; `w` holds `nb` blocks and
        // `xs` holds `rows * nb` blocks.
        unsafe {
            match (f, path == Path::AvxVnni) {
                (KFormat::Q4K, false) => tiles::<false, false>(w, xs, nb, rows, out),
                (KFormat::Q4K, true) => tiles::<false, true>(w, xs, nb, rows, out),
                (KFormat::Q6K, false) => tiles::<true, false>(w, xs, nb, rows, out),
                (KFormat::Q6K, true) => tiles::<true, true>(w, xs, nb, rows, out),
            }
        }
        return;
    }
    let _ = path;
    for (r, o) in out.iter_mut().enumerate().take(rows) {
        *o = dot_scalar(f, w, &xs[r * nb..(r + 1) * nb]);
    }
}

/// [`tile`] for `rows` (1..=[`XTILE`]) activation rows.
///
/// # Safety
/// As [`tile`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tiles<const Q6: bool, const VNNI: bool>(
    w: &[u8],
    xs: &[Q8KBlock],
    nb: usize,
    rows: usize,
    out: &mut [f32; XTILE],
) {
    // SAFETY: forwarded.
    unsafe {
        match rows {
            1 => tile::<Q6, VNNI, 1>(w, xs, nb, out),
            2 => tile::<Q6, VNNI, 2>(w, xs, nb, out),
            3 => tile::<Q6, VNNI, 3>(w, xs, nb, out),
            4 => tile::<Q6, VNNI, 4>(w, xs, nb, out),
            5 => tile::<Q6, VNNI, 5>(w, xs, nb, out),
            6 => tile::<Q6, VNNI, 6>(w, xs, nb, out),
            7 => tile::<Q6, VNNI, 7>(w, xs, nb, out),
            _ => tile::<Q6, VNNI, XTILE>(w, xs, nb, out),
        }
    }
}

/// The portable path: exact integer sums per super-block, folded in block order.
fn dot_scalar(f: KFormat, w: &[u8], xs: &[Q8KBlock]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in w.chunks_exact(f.block_bytes()).zip(xs) {
        let p = Plain::new(f, b);
        let s: i32 = (0..16)
            .map(|g| {
                let v = (16 * g..16 * g + 16).map(|i| p.q[i] as i32 * x.q[i] as i32);
                p.sc[g] as i32 * v.sum::<i32>()
            })
            .sum();
        let o: i32 = (0..8)
            .map(|s| p.m[s] as i32 * (x.bsums[2 * s] as i32 + x.bsums[2 * s + 1] as i32))
            .sum();
        acc += p.d * x.d * s as f32 - p.dmin * x.d * o as f32;
    }
    acc
}

/// [`quantize_block`] 8 lanes at a time, with the same rounding.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_block_avx2(x: &[f32]) -> Q8KBlock {
    use std::arch::x86_64::*;
    assert_eq!(x.len(), QK_K);
    let p = x.as_ptr();
    let sign = _mm256_set1_ps(-0.0);
    let mut amax = _mm256_setzero_ps();
    for i in 0..QK_K / 8 {
        // SAFETY: 8 floats at 8 i < 256.
        let v = unsafe { _mm256_loadu_ps(p.add(8 * i)) };
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v));
    }
    // SAFETY: AVX2 is enabled for this function.
    let d = unsafe { hmax(amax) } / 127.0;
    let id = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
    let half = _mm256_set1_ps(0.5);
    let mut out = Q8KBlock {
        q: [0; QK_K],
        bsums: [0; 16],
        d,
    };
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    for c in 0..QK_K / 32 {
        let q: [__m256i; 4] = std::array::from_fn(|i| {
            // SAFETY: 8 floats at 32 c + 8 i < 256.
            let y = _mm256_mul_ps(unsafe { _mm256_loadu_ps(p.add(32 * c + 8 * i)) }, id);
            // Round half away from zero: trunc(y + copysign(0.5, y)).
            let r = _mm256_round_ps(
                _mm256_add_ps(y, _mm256_or_ps(_mm256_and_ps(y, sign), half)),
                _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC,
            );
            _mm256_cvtps_epi32(r)
        });
        // The packs interleave 128-bit lanes; the permute puts the 32 bytes back in order.
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let bytes = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: 32 bytes at 32 c < 256.
        unsafe { _mm256_storeu_si256(out.q.as_mut_ptr().add(32 * c) as *mut __m256i, bytes) };
        // Sums of 16: |q| <= 127, so pairs and quads stay exact.
        let quads = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, bytes), ones16);
        let s = _mm256_hadd_epi32(quads, quads);
        let s = _mm256_hadd_epi32(s, s);
        out.bsums[2 * c] = _mm256_extract_epi32(s, 0) as i16;
        out.bsums[2 * c + 1] = _mm256_extract_epi32(s, 4) as i16;
    }
    out
}

/// Weight row `w` against `R` activation rows, one super-block at a time: the weights are
/// unpacked once per block and dotted with every row. Each row's result is a function of
/// that row alone (the same instructions for any `R`), which is what makes batched and
/// single-row results bit-identical.
///
/// # Safety
/// AVX2, FMA and F16C (and AVX-VNNI when `VNNI`) must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile<const Q6: bool, const VNNI: bool, const R: usize>(
    w: &[u8],
    xs: &[Q8KBlock],
    nb: usize,
    out: &mut [f32; XTILE],
) {
    use std::arch::x86_64::*;
    let bb = if Q6 { Q6K_BLOCK_BYTES } else { Q4K_BLOCK_BYTES };
    assert!(w.len() >= nb * bb && xs.len() >= R * nb && R <= XTILE);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = &w[b * bb..(b + 1) * bb];
        let x: [&Q8KBlock; R] = std::array::from_fn(|r| &xs[r * nb + b]);
        // SAFETY: `blk` is one whole block; the features are forwarded.
        unsafe {
            if Q6 {
                block_q6k::<VNNI, R>(blk, &x, &mut acc)
            } else {
                block_q4k::<VNNI, R>(blk, &x, &mut acc)
            }
        }
    }
    for r in 0..R {
        // SAFETY: plain register arithmetic.
        out[r] = unsafe { hsum(acc[r]) };
    }
}

/// `acc + Σ pairs p·s` into i32 lanes: `madd` + `add`, or one `vpdpwssd` with AVX-VNNI. The
/// lanes are identical either way (exact integers), so the choice never changes a result.
///
/// # Safety
/// AVX2 must be available, and AVX-VNNI when `VNNI`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn mac<const VNNI: bool>(
    acc: std::arch::x86_64::__m256i,
    p: std::arch::x86_64::__m256i,
    s: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    if VNNI {
        let mut acc = acc;
        // SAFETY: the caller checked AVX-VNNI. Written as assembly because the intrinsic needs
        // the `avxvnni` feature on the whole (const-generic, shared) kernel.
        unsafe {
            std::arch::asm!(
                "{{vex}} vpdpwssd {acc}, {p}, {s}",
                acc = inout(ymm_reg) acc,
                p = in(ymm_reg) p,
                s = in(ymm_reg) s,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    } else {
        _mm256_add_epi32(acc, _mm256_madd_epi16(p, s))
    }
}

/// One Q4_K block against `R` rows: `acc_r += dx_r · (d · Σ sc·q·x - dmin · Σ m·Σx)`, the
/// integer sums spread over 8 i32 lanes in a fixed assignment.
///
/// # Safety
/// AVX2, FMA and F16C (and AVX-VNNI when `VNNI`) must be available; `blk` must be 144 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_q4k<const VNNI: bool, const R: usize>(
    blk: &[u8],
    x: &[&Q8KBlock; R],
    acc: &mut [std::arch::x86_64::__m256; R],
) {
    use std::arch::x86_64::*;
    assert!(blk.len() >= Q4K_BLOCK_BYTES);
    let p = blk.as_ptr();
    // SAFETY: `d` and `dmin` are the first 4 bytes of the block.
    let dm = unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned())) };
    let (d, dmin) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
    let [sc_lo, sc_hi, m_lo, m_hi] = q4k_scale_words(blk).map(|w| w as i32);
    let sm = _mm256_cvtepu8_epi16(_mm_set_epi32(m_hi, m_lo, sc_hi, sc_lo));
    let scales = _mm256_permute2x128_si256::<0x00>(sm, sm);
    let mins = _mm256_permute2x128_si256::<0x11>(sm, sm);
    // Each 32-value min twice, against the activations' sums of 16.
    let m16 = _mm256_shuffle_epi8(
        mins,
        _mm256_setr_epi8(
            0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12,
            13, 14, 15, 14, 15,
        ),
    );
    // A lone row sums even and odd sub-blocks apart (two dependency chains for `vpdpwssd`'s
    // latency); several rows are chains enough. Integer sums: the lanes are the same either way.
    let mut sums = [[_mm256_setzero_si256(); 2]; R];
    let mask = _mm256_set1_epi8(15);
    for i in 0..4 {
        // SAFETY: 32 bytes at 16 + 32 i <= 112 inside the 144-byte block.
        let packed = unsafe { _mm256_loadu_si256(p.add(16 + 32 * i) as *const __m256i) };
        let q = [
            _mm256_and_si256(packed, mask),
            _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask),
        ];
        for (half, qv) in q.into_iter().enumerate() {
            let s = 2 * i + half;
            let sc = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(0x0100 + 0x0202 * s as i16));
            for r in 0..R {
                // SAFETY: 32 bytes at 32 s < 256 of `q`.
                let xv =
                    unsafe { _mm256_loadu_si256(x[r].q.as_ptr().add(32 * s) as *const __m256i) };
                // u8 × i8 pairs fit i16 (15·127·2); the scales (< 64) sum pairs into i32.
                // SAFETY: features forwarded.
                let a = &mut sums[r][if R == 1 { half } else { 0 }];
                *a = unsafe { mac::<VNNI>(*a, _mm256_maddubs_epi16(qv, xv), sc) };
            }
        }
    }
    // acc += dx · (d·S - dmin·O): the block's factors are shared by the rows.
    let (dv, mv) = (_mm256_set1_ps(d), _mm256_set1_ps(dmin));
    for r in 0..R {
        // SAFETY: `bsums` is 32 bytes.
        let bs = unsafe { _mm256_loadu_si256(x[r].bsums.as_ptr() as *const __m256i) };
        let offs = _mm256_cvtepi32_ps(_mm256_madd_epi16(m16, bs));
        let s = _mm256_cvtepi32_ps(_mm256_add_epi32(sums[r][0], sums[r][1]));
        let t = _mm256_fnmadd_ps(mv, offs, _mm256_mul_ps(dv, s));
        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(x[r].d), t, acc[r]);
    }
}

/// One Q6_K block against `R` rows: `acc_r += d·dx_r · Σ sc·(q - 32)·x`. The weights are
/// used unsigned (`q` in 0..63); the `- 32` comes off as `32 · Σ sc·Σx` from the sums of 16.
///
/// # Safety
/// AVX2, FMA and F16C (and AVX-VNNI when `VNNI`) must be available; `blk` must be 210 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_q6k<const VNNI: bool, const R: usize>(
    blk: &[u8],
    x: &[&Q8KBlock; R],
    acc: &mut [std::arch::x86_64::__m256; R],
) {
    use std::arch::x86_64::*;
    assert!(blk.len() >= Q6K_BLOCK_BYTES);
    let p = blk.as_ptr();
    // SAFETY: the scales are bytes 192..208 and `d` bytes 208..210 of the block.
    let (sc8, d) = unsafe {
        let d = (p.add(208) as *const u16).read_unaligned();
        (
            _mm_loadu_si128(p.add(192) as *const __m128i),
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(d as i32))),
        )
    };
    let sc32 = _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc8), 5);
    // Two chains for a lone row, as in `block_q4k`.
    let mut sums = [[_mm256_setzero_si256(); 2]; R];
    for r in 0..R {
        // SAFETY: `bsums` is 32 bytes. |32 sc| <= 4096 and |bsum| <= 2032: fits i32.
        let bs = unsafe { _mm256_loadu_si256(x[r].bsums.as_ptr() as *const __m256i) };
        sums[r][0] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(sc32, bs));
    }
    let m4 = _mm256_set1_epi8(15);
    let m2 = _mm256_set1_epi8(3);
    for h in 0..2 {
        // SAFETY: ql halves at 64 h and 64 h + 32, qh at 128 + 32 h: all inside the block.
        let (ql1, ql2, qh) = unsafe {
            (
                _mm256_loadu_si256(p.add(64 * h) as *const __m256i),
                _mm256_loadu_si256(p.add(64 * h + 32) as *const __m256i),
                _mm256_loadu_si256(p.add(128 + 32 * h) as *const __m256i),
            )
        };
        let high = [
            qh,
            _mm256_srli_epi16(qh, 2),
            _mm256_srli_epi16(qh, 4),
            _mm256_srli_epi16(qh, 6),
        ];
        let low = [
            ql1,
            ql2,
            _mm256_srli_epi16(ql1, 4),
            _mm256_srli_epi16(ql2, 4),
        ];
        for part in 0..4 {
            let c = 4 * h + part;
            let hb = _mm256_slli_epi16(_mm256_and_si256(high[part], m2), 4);
            let qv = _mm256_or_si256(_mm256_and_si256(low[part], m4), hb);
            // Scales of values 32c..32c+16 (low lane) and 32c+16..32c+32 (high lane).
            let sel = _mm_set_epi64x(
                0x0101_0101_0101_0101 * (2 * c as i64 + 1),
                0x0101_0101_0101_0101 * (2 * c as i64),
            );
            let scv = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, sel));
            for r in 0..R {
                // SAFETY: 32 bytes at 32 c < 256 of `q`.
                let xv =
                    unsafe { _mm256_loadu_si256(x[r].q.as_ptr().add(32 * c) as *const __m256i) };
                // u8 × i8 pairs fit i16 (63·127·2 < 32768).
                // SAFETY: features forwarded.
                let a = &mut sums[r][if R == 1 { c & 1 } else { 0 }];
                *a = unsafe { mac::<VNNI>(*a, _mm256_maddubs_epi16(qv, xv), scv) };
            }
        }
    }
    for r in 0..R {
        let s = _mm256_add_epi32(sums[r][0], sums[r][1]);
        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[r].d), _mm256_cvtepi32_ps(s), acc[r]);
    }
}

#[cfg(test)]
mod tests;
