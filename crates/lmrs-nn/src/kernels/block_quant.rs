//! `y = x W^T` with `W` in GGUF's Q4_1 or Q5_0 blocks, executed as stored.
//!
//! Why: the backend runs Q4_1 (the default SmolLM2 model's format) and Q5_0 (most of Gemma 3
//! 270M's projections, whose 640-wide rows rule out K-quants) through scalar fallbacks, which
//! made every projection several times slower than llama.cpp. These kernels do what llama.cpp
//! does: activations are quantized per 32-value block to 8 bits (`d`, and `d * Σq` for Q4_1's
//! offset term, like `block_q8_1`), and the low-bit × 8-bit products are summed with integer
//! SIMD (AVX2 `maddubs`, or AVX-VNNI `vpdpbusd`).
//!
//! Q4_1 block (20 bytes, 32 values): `d: f16`, `m: f16`, `qs: [u8; 16]`; value `j` is
//! `d * q_j + m` with `q_j = qs[j] & 15` for `j < 16` and `qs[j - 16] >> 4` above.
//! Dot with an 8-bit block `(dx, sx = dx * Σ qx)`: `d * dx * Σ q_j qx_j + m * sx`.
//!
//! Q5_0 block (22 bytes): `d: f16`, `qh: u32` (bit `j` is value `j`'s fifth bit), `qs` as in
//! Q4_1; value `j` is `d * (q_j | bit_j << 4) - 16 d`. Dot: `d * dx * Σ (q_j - 16) qx_j`.

use super::small_matmul::SharedOut;

/// Values per block.
pub const QK: usize = 32;
/// Bytes per Q4_1 block.
pub const BLOCK_BYTES: usize = 20;
/// Bytes per Q5_0 block.
pub const Q5_0_BLOCK_BYTES: usize = 22;

/// The block formats these kernels execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// 4-bit values with a scale and an offset.
    Q4_1,
    /// 5-bit signed values with a scale.
    Q5_0,
}

impl BlockFormat {
    /// Bytes per 32-value block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => BLOCK_BYTES,
            Self::Q5_0 => Q5_0_BLOCK_BYTES,
        }
    }
}
/// Output rows (weight rows) per unit of parallel work.
const ROWS_PER_TASK: usize = 16;
/// Activation rows that share one unpacked weight block.
const XTILE: usize = 4;

/// An activation block quantized to 8 bits.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Q8Block {
    q: [i8; QK],
    d: f32,
    /// `d * Σ q`.
    s: f32,
}

/// A `(rows, cols)` matrix of quantized blocks (each row is `cols / 32` blocks).
#[derive(Debug, Clone)]
pub struct BlockMatrix {
    format: BlockFormat,
    data: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl BlockMatrix {
    /// Wrap raw GGUF bytes of a `(rows, cols)` tensor. `None` when the sizes disagree.
    pub fn new(format: BlockFormat, data: Vec<u8>, rows: usize, cols: usize) -> Option<Self> {
        let ok = cols.is_multiple_of(QK) && data.len() == rows * (cols / QK) * format.block_bytes();
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
        let (n, k) = (self.rows, self.cols);
        assert_eq!(x.len(), m * k, "input is not (m, {k})");
        let nb = k / QK;
        let avx2 = has_avx2();
        let xq: Vec<Q8Block> = x.chunks_exact(QK).map(|c| quantize(c, avx2)).collect();
        let mut y = vec![0f32; m * n];
        if m == 0 || n == 0 {
            return y;
        }
        let out = SharedOut::new(&mut y);
        let row_bytes = nb * self.format.block_bytes();
        let f = self.format;
        let work = |range: std::ops::Range<usize>| {
            for t in range {
                let rows = t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(n);
                if m == 1 {
                    // Decoding: one activation row, nothing to tile.
                    for j in rows {
                        let w = &self.data[j * row_bytes..(j + 1) * row_bytes];
                        let v = dot_one(f, w, &xq, nb, avx2);
                        // SAFETY: j < n; column j belongs to this task.
                        unsafe { out.write(j, v) };
                    }
                    continue;
                }
                for j in rows {
                    let w = &self.data[j * row_bytes..(j + 1) * row_bytes];
                    for r0 in (0..m).step_by(XTILE) {
                        let rows = (m - r0).min(XTILE);
                        let mut sums = [0f32; XTILE];
                        let xs = &xq[r0 * nb..(r0 + rows) * nb];
                        dot_rows(f, w, xs, nb, rows, avx2, &mut sums);
                        for (r, v) in sums.iter().enumerate().take(rows) {
                            // SAFETY: (r0 + r) < m and j < n; column j belongs to this task.
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
            let (d, m) = scales(self.format, b);
            out.extend((0..QK).map(|j| d * value(self.format, b, j) as f32 + m));
        }
        out
    }
}

/// Value `j` of a block as an integer (`q_j` for Q4_1, `q_j - 16` for Q5_0).
fn value(f: BlockFormat, b: &[u8], j: usize) -> i32 {
    match f {
        BlockFormat::Q4_1 => nibble(&b[4..], j) as i32,
        BlockFormat::Q5_0 => {
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            (nibble(&b[6..], j) as i32 | (((qh >> j) & 1) as i32) << 4) - 16
        }
    }
}

/// `(d, m)`; `m` is 0 for Q5_0.
fn scales(f: BlockFormat, b: &[u8]) -> (f32, f32) {
    let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    match f {
        BlockFormat::Q4_1 => (d, half::f16::from_le_bytes([b[2], b[3]]).to_f32()),
        BlockFormat::Q5_0 => (d, 0.0),
    }
}

fn nibble(qs: &[u8], j: usize) -> u8 {
    if j < 16 {
        qs[j] & 15
    } else {
        qs[j - 16] >> 4
    }
}

/// llama.cpp's `quantize_row_q8_1` rounding: `q = round(x / d)`, `d = max|x| / 127`.
fn quantize_block(x: &[f32]) -> Q8Block {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i8; QK];
    let mut sum = 0i32;
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = (v * id).round() as i8;
        sum += *qi as i32;
    }
    Q8Block {
        q,
        d,
        s: d * sum as f32,
    }
}

/// [`quantize_block`], vectorized where AVX2 is available.
fn quantize(x: &[f32], avx2: bool) -> Q8Block {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: AVX2 was detected at run time; `x` is one block.
        return unsafe { quantize_block_avx2(x) };
    }
    let _ = avx2;
    quantize_block(x)
}

/// The same arithmetic as [`quantize_block`] (round half away from zero), 8 lanes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_block_avx2(x: &[f32]) -> Q8Block {
    use std::arch::x86_64::*;
    assert_eq!(x.len(), QK);
    // SAFETY: four 8-float loads inside the 32-float block.
    let v: [__m256; 4] = unsafe { std::array::from_fn(|i| _mm256_loadu_ps(x.as_ptr().add(8 * i))) };
    let sign = _mm256_set1_ps(-0.0);
    let mut amax = _mm256_setzero_ps();
    for vi in v {
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, vi));
    }
    // SAFETY: AVX2 is enabled for this function.
    let amax = unsafe { hmax(amax) };
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
    let half = _mm256_set1_ps(0.5);
    let mut q = [0i8; QK];
    let mut sum = 0i32;
    for (i, vi) in v.into_iter().enumerate() {
        let y = _mm256_mul_ps(vi, id);
        // round half away from zero: trunc(y + copysign(0.5, y))
        let r = _mm256_round_ps(
            _mm256_add_ps(y, _mm256_or_ps(_mm256_and_ps(y, sign), half)),
            _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC,
        );
        let mut lanes = [0i32; 8];
        // SAFETY: 8 i32 lanes into an 8-element array.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, _mm256_cvtps_epi32(r)) };
        for (l, &val) in lanes.iter().enumerate() {
            q[8 * i + l] = val as i8;
            sum += val;
        }
    }
    Q8Block {
        q,
        d,
        s: d * sum as f32,
    }
}

/// Dot of one weight row with one quantized activation row.
#[inline]
fn dot_one(f: BlockFormat, w: &[u8], xs: &[Q8Block], nb: usize, avx2: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2 && has_avx_vnni() {
        // SAFETY: AVX2, FMA, F16C and AVX-VNNI were detected at run time.
        return unsafe {
            match f {
                BlockFormat::Q4_1 => dot_row_vnni::<false>(w, xs, nb),
                BlockFormat::Q5_0 => dot_row_vnni::<true>(w, xs, nb),
            }
        };
    }
    let mut out = [0f32; 1];
    dot_rows(f, w, xs, nb, 1, avx2, &mut out);
    out[0]
}

/// AVX-VNNI (`vpdpbusd` on 256-bit registers: Zen 4, Alder Lake and later).
fn has_avx_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *VNNI.get_or_init(|| std::arch::is_x86_feature_detected!("avxvnni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Dot weight row `w` (`nb` blocks) with `rows` activation rows of `xs` (row-major blocks).
fn dot_rows(
    f: BlockFormat,
    w: &[u8],
    xs: &[Q8Block],
    nb: usize,
    rows: usize,
    avx2: bool,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: AVX2, FMA and F16C were detected at run time.
        unsafe {
            match (f, rows) {
                (BlockFormat::Q4_1, 1) => out[0] = dot_row_avx2::<false>(w, xs, nb),
                (BlockFormat::Q5_0, 1) => out[0] = dot_row_avx2::<true>(w, xs, nb),
                (BlockFormat::Q4_1, _) => dot_rows_avx2::<false>(w, xs, nb, rows, out),
                (BlockFormat::Q5_0, _) => dot_rows_avx2::<true>(w, xs, nb, rows, out),
            }
        }
        return;
    }
    let _ = avx2;
    for (r, o) in out.iter_mut().enumerate().take(rows) {
        let x = &xs[r * nb..(r + 1) * nb];
        *o = w
            .chunks_exact(f.block_bytes())
            .zip(x)
            .map(|(b, xb)| {
                let (d, m) = scales(f, b);
                let isum: i32 = (0..QK).map(|j| value(f, b, j) * xb.q[j] as i32).sum();
                d * xb.d * isum as f32 + m * xb.s
            })
            .sum();
    }
}

/// A block's `(d, m)` and its 32 values as bytes in the activations' order (values 0..15 in
/// the low lane, 16..31 in the high lane): unsigned for Q4_1, signed for Q5_0 (`SIGNED`).
///
/// # Safety
/// AVX2 and F16C must be available; `blk` must hold a whole block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unpack<const SIGNED: bool>(blk: &[u8]) -> (f32, f32, std::arch::x86_64::__m256i) {
    if SIGNED {
        // SAFETY: forwarded.
        unsafe { unpack_q5_0(blk) }
    } else {
        // SAFETY: forwarded.
        unsafe { unpack_block(blk) }
    }
}

/// Q5_0: nibbles OR the fifth bit, minus 16 (as llama.cpp: `nibble | 0xF0` where the bit is
/// clear is `nibble - 16` as a signed byte).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unpack_q5_0(blk: &[u8]) -> (f32, f32, std::arch::x86_64::__m256i) {
    use std::arch::x86_64::*;
    debug_assert!(blk.len() >= Q5_0_BLOCK_BYTES);
    // SAFETY: the block is 22 bytes: f16 scale, 4 bytes of high bits, 16 bytes of nibbles.
    unsafe {
        let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
            (blk.as_ptr() as *const u16).read_unaligned() as i32,
        )));
        let qh = (blk.as_ptr().add(2) as *const u32).read_unaligned();
        let packed = _mm_loadu_si128(blk.as_ptr().add(6) as *const __m128i);
        let mask = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(packed, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
        let nibbles = _mm256_set_m128i(hi, lo);
        // Byte i of `bits` is 0xFF when bit i of qh is set.
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(qh as i32),
            _mm256_set_epi64x(
                0x0303_0303_0303_0303,
                0x0202_0202_0202_0202,
                0x0101_0101_0101_0101,
                0,
            ),
        );
        let bits = _mm256_cmpeq_epi8(
            _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe)),
            _mm256_set1_epi64x(-1),
        );
        let high = _mm256_andnot_si256(bits, _mm256_set1_epi8(0xF0u8 as i8));
        (d, 0.0, _mm256_or_si256(nibbles, high))
    }
}

/// Q4_1: the unsigned nibbles.
///
/// # Safety
/// AVX2 and F16C must be available; `blk` must hold at least [`BLOCK_BYTES`] bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unpack_block(blk: &[u8]) -> (f32, f32, std::arch::x86_64::__m256i) {
    use std::arch::x86_64::*;
    debug_assert!(blk.len() >= BLOCK_BYTES);
    // SAFETY: the block is 20 bytes: two f16 scales then 16 bytes of nibbles.
    unsafe {
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(
            (blk.as_ptr() as *const i32).read_unaligned(),
        ));
        let packed = _mm_loadu_si128(blk.as_ptr().add(4) as *const __m128i);
        let mask = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(packed, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
        (
            _mm_cvtss_f32(dm),
            _mm_cvtss_f32(_mm_shuffle_ps(dm, dm, 1)),
            _mm256_set_m128i(hi, lo),
        )
    }
}

/// One activation row: two blocks per iteration into independent accumulators (the FMA
/// latency, not the loads, bounds a single chain).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_row_avx2<const SIGNED: bool>(w: &[u8], xs: &[Q8Block], nb: usize) -> f32 {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut off = [0f32; 2];
    let bb = if SIGNED {
        Q5_0_BLOCK_BYTES
    } else {
        BLOCK_BYTES
    };
    for b in 0..nb {
        // SAFETY: block b lies inside the row; `q` is 32 bytes.
        unsafe {
            let (d, m, wq) = unpack::<SIGNED>(&w[b * bb..]);
            let xb = &xs[b];
            let xq = _mm256_loadu_si256(xb.q.as_ptr() as *const __m256i);
            let (wq, xq) = unsigned_pair::<SIGNED>(wq, xq);
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(wq, xq), ones);
            let a = &mut acc[b & 1];
            *a = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(p), *a);
            off[b & 1] += m * xb.s;
        }
    }
    // SAFETY: plain register arithmetic.
    unsafe { hsum(_mm256_add_ps(acc[0], acc[1])) + off[0] + off[1] }
}

/// [`dot_row_avx2`] with `vpdpbusd`: the u8 × i8 products of four neighbours summed into
/// i32 lanes in one instruction instead of `maddubs` + `madd`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn dot_row_vnni<const SIGNED: bool>(w: &[u8], xs: &[Q8Block], nb: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut off = [0f32; 2];
    let bb = if SIGNED {
        Q5_0_BLOCK_BYTES
    } else {
        BLOCK_BYTES
    };
    for b in 0..nb {
        // SAFETY: block b lies inside the row; `q` is 32 bytes.
        unsafe {
            let (d, m, wq) = unpack::<SIGNED>(&w[b * bb..]);
            let xb = &xs[b];
            let xq = _mm256_loadu_si256(xb.q.as_ptr() as *const __m256i);
            let (wq, xq) = unsigned_pair::<SIGNED>(wq, xq);
            let p = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), wq, xq);
            let a = &mut acc[b & 1];
            *a = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(p), *a);
            off[b & 1] += m * xb.s;
        }
    }
    // SAFETY: plain register arithmetic.
    unsafe { hsum(_mm256_add_ps(acc[0], acc[1])) + off[0] + off[1] }
}

/// The byte products need an unsigned first operand: signed weights move their sign onto the
/// activations (`|w| * (x * sign(w))`), as llama.cpp's `mul_sum_i8_pairs` does.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn unsigned_pair<const SIGNED: bool>(
    w: std::arch::x86_64::__m256i,
    x: std::arch::x86_64::__m256i,
) -> (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i) {
    use std::arch::x86_64::*;
    if SIGNED {
        (_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
    } else {
        (w, x)
    }
}

/// The sum of `v`'s 8 lanes (also the K-quant kernels' fold, so both sum in one order).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn hsum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// The largest of `v`'s 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn hmax(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let m4 = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_rows_avx2<const SIGNED: bool>(
    w: &[u8],
    xs: &[Q8Block],
    nb: usize,
    rows: usize,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    // Two accumulators per row, alternating by block like the single-row kernels, so a row
    // sums in the same order whether it is decoded alone or in a batch.
    let mut acc = [[_mm256_setzero_ps(); 2]; XTILE];
    let mut offs = [[0f32; 2]; XTILE];
    let bb = if SIGNED {
        Q5_0_BLOCK_BYTES
    } else {
        BLOCK_BYTES
    };
    for b in 0..nb {
        // SAFETY: block b lies inside the row.
        let (d, m, wq) = unsafe { unpack::<SIGNED>(&w[b * bb..]) };
        for r in 0..rows {
            let xb = &xs[r * nb + b];
            // SAFETY: `q` is 32 bytes.
            let xq = unsafe { _mm256_loadu_si256(xb.q.as_ptr() as *const __m256i) };
            // SAFETY: AVX2 is enabled for this function.
            let (wu, xq) = unsafe { unsigned_pair::<SIGNED>(wq, xq) };
            // u8 × i8 pairs summed to i16 (|16·127·2| fits), then pairs to i32.
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(wu, xq), ones);
            let a = &mut acc[r][b & 1];
            *a = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(p), *a);
            offs[r][b & 1] += m * xb.s;
        }
    }
    for r in 0..rows {
        // SAFETY: plain register arithmetic.
        out[r] = unsafe { hsum(_mm256_add_ps(acc[r][0], acc[r][1])) } + offs[r][0] + offs[r][1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random Q4_1 matrix: scales in a realistic range, random nibbles.
    fn random_format(f: BlockFormat, rows: usize, cols: usize, seed: &mut u64) -> BlockMatrix {
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        let mut data = Vec::new();
        for _ in 0..rows * cols / QK {
            let d = half::f16::from_f32((next() % 1000) as f32 / 1e5 + 1e-4);
            let m = half::f16::from_f32(-((next() % 1000) as f32) / 1e4);
            data.extend(d.to_le_bytes());
            match f {
                BlockFormat::Q4_1 => data.extend(m.to_le_bytes()),
                BlockFormat::Q5_0 => data.extend((next() as u32).to_le_bytes()),
            }
            data.extend((0..16).map(|_| next() as u8));
        }
        BlockMatrix::new(f, data, rows, cols).expect("sizes agree")
    }

    #[test]
    fn matches_dequantized_product_within_activation_rounding() {
        for f in [BlockFormat::Q4_1, BlockFormat::Q5_0] {
            check_against_dequantized(f);
        }
    }

    fn check_against_dequantized(f: BlockFormat) {
        let mut seed = 0x1234_5678_9abc_def1u64;
        let (n, k) = (37, 96);
        let w = random_format(f, n, k, &mut seed);
        let wf = w.dequantize();
        for m in [1, 3, 4, 9] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919 % 201) as f32 - 100.0) / 50.0)
                .collect();
            let y = w.matmul_xwt(&x, m);
            for r in 0..m {
                for j in 0..n {
                    let exact: f32 = (0..k).map(|c| x[r * k + c] * wf[j * k + c]).sum();
                    // 8-bit activations: each block's error is at most d_x / 2 per value.
                    let bound: f32 =
                        (0..k).map(|c| wf[j * k + c].abs()).sum::<f32>() * (2.0 / 127.0) + 1e-4;
                    let got = y[r * n + j];
                    assert!(
                        (got - exact).abs() <= bound,
                        "m {m} r {r} j {j}: {got} vs {exact}"
                    );
                }
            }
        }
    }

    #[test]
    fn vector_quantization_rounds_like_the_scalar_one() {
        let x: Vec<f32> = (0..QK)
            .map(|i| (i as f32 - 15.5) * 0.73 + (i % 3) as f32 * 0.01)
            .collect();
        let a = quantize_block(&x);
        let b = quantize(&x, has_avx2());
        assert_eq!(a.q, b.q);
        assert_eq!((a.d, a.s), (b.d, b.s));
        let zeros = quantize(&[0.0; QK], has_avx2());
        assert_eq!((zeros.d, zeros.s, zeros.q), (0.0, 0.0, [0; QK]));
    }

    #[test]
    fn simd_and_scalar_paths_agree() {
        for f in [BlockFormat::Q4_1, BlockFormat::Q5_0] {
            let mut seed = 42u64;
            let w = random_format(f, 8, 64, &mut seed);
            let x: Vec<f32> = (0..3 * 64).map(|i| (i as f32 * 0.37).sin()).collect();
            let xq: Vec<Q8Block> = x.chunks_exact(QK).map(quantize_block).collect();
            let mut a = [0f32; XTILE];
            let mut b = [0f32; XTILE];
            let row = &w.data[..2 * f.block_bytes()];
            for rows in [1, 3] {
                dot_rows(f, row, &xq, 2, rows, false, &mut a);
                dot_rows(f, row, &xq, 2, rows, has_avx2(), &mut b);
                for r in 0..rows {
                    assert!((a[r] - b[r]).abs() < 1e-4, "{f:?}: {a:?} vs {b:?}");
                }
            }
            // A row gives bit-identical results alone or in a batch (batched == single).
            dot_rows(f, row, &xq, 2, 3, has_avx2(), &mut b);
            let alone = dot_one(f, row, &xq[2..4], 2, has_avx2());
            assert_eq!(
                alone.to_bits(),
                b[1].to_bits(),
                "{f:?}: {alone} vs {}",
                b[1]
            );
            // The single-row entry point (VNNI where available).
            let one = dot_one(f, row, &xq, 2, has_avx2());
            dot_rows(f, row, &xq, 2, 1, false, &mut a);
            assert!((one - a[0]).abs() < 1e-4, "{f:?}: {one} vs {}", a[0]);
        }
    }
}
