//! Branch-free `exp`, `erf` and `tanh` for f32 that the compiler vectorizes, and the
//! element-wise activations built on them.
//!
//! Why: libm's scalar `erff`/`expf` were ~15% of an encoder forward (GELU over every
//! feed-forward activation, `exp` in every attention softmax). These polynomial forms have no
//! branches or table lookups, so a loop over a slice compiles to AVX2/FMA code (see
//! `multiversion!`). Accuracy (checked in the tests against f64 references): `exp` within
//! 2 ulp, `erf` within 5e-7 absolute, `tanh` within 3e-7 absolute, far below the 1e-4
//! parity the models are held to.

/// Compile a function body twice, for AVX2/FMA and for the baseline target, and pick the
/// variant once per call from the CPU's features. The body is written as plain slice loops;
/// the AVX2 copy lets the compiler use 8-wide vectors and fused multiply-adds.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident : $t:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) {
            #[inline(always)]
            fn imp($($a: $t),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($a: $t),*) {
                    imp($($a),*)
                }
                if $crate::kernels::vmath::has_avx2_fma() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($a),*) };
                }
            }
            imp($($a),*)
        }
    };
}
pub(crate) use multiversion;

/// Whether the CPU has AVX2 and FMA (cached by the standard library after the first call).
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `e^x`. Inputs below -87.3 give 0 (as the exact function rounds to in f32, almost), inputs
/// above 88.3 give `e^88.3`; NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n * LN2_HI` is exact (Cody–Waite reduction).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to the nearest integer in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let xc = x.clamp(-87.3, 88.3);
    let t = xc * LOG2E + SHIFTER;
    let n = t - SHIFTER;
    let r = xc - n * LN2_HI - n * LN2_LO;
    // Cephes' expf polynomial for e^r - 1 - r on [-ln2/2, ln2/2].
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let er = p * (r * r) + r + 1.0;
    // 2^n from the integer left in t's mantissa bits.
    let bits = (t.to_bits() as i32 - SHIFTER.to_bits() as i32 + 127) << 23;
    let y = er * f32::from_bits(bits as u32);
    if x < -87.3 {
        0.0
    } else {
        y
    }
}

/// The error function: a rational approximation on [-4, 4], held at its value there
/// outside (`erf(4)` is 1 - 1.5e-8).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_6e-3;
    p = p * x2 + -1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329_3e-3;
    q = q * x2 + -1.426_474e-2;
    x * p / q
}

/// `tanh(x)` as `1 - 2 / (e^{2x} + 1)`, with the sign restored so that small inputs keep
/// their absolute accuracy.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs().min(20.0);
    let t = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
    t.copysign(x)
}

/// Element-wise activations applied in place (`Identity` does nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// No activation.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// The exact GELU, `0.5 · x · (1 + erf(x / √2))` (`gelu`).
    GeluErf,
    /// The tanh GELU (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// `x · sigmoid(x)` (`silu`, `swish`).
    Silu,
}

multiversion! {
    /// Apply `act` to every element of `xs` in place.
    pub fn apply_act(xs: &mut [f32], act: Act) {
        match act {
            Act::Identity => {}
            Act::Relu => xs.iter_mut().for_each(|v| *v = v.max(0.0)),
            Act::GeluErf => xs.iter_mut().for_each(|v| {
                *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
            }),
            Act::GeluTanh => xs.iter_mut().for_each(|v| {
                // sqrt(2 / pi)
                const C: f32 = 0.797_884_6;
                let x = *v;
                *v = 0.5 * x * (1.0 + tanh(C * (x + 0.044_715 * x * x * x)));
            }),
            Act::Silu => xs.iter_mut().for_each(|v| *v /= 1.0 + exp(-*v)),
        }
    }
}

multiversion! {
    /// Softmax of each `width`-long row of `xs` in place (max subtracted first, as every
    /// framework does, so large scores do not overflow).
    pub fn softmax_rows(xs: &mut [f32], width: usize) {
        if width == 0 {
            return;
        }
        for row in xs.chunks_exact_mut(width) {
            let max = lane_max(row);
            row.iter_mut().for_each(|v| *v = exp(*v - max));
            let inv = 1.0 / lane_sum(row);
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// Lanes used by the reductions: independent partial results the compiler keeps in vector
/// registers (a plain sequential fold over floats cannot be vectorized: reassociation
/// changes the result).
const LANES: usize = 16;

/// Sum of `xs` over `LANES` partial sums.
#[inline(always)]
pub fn lane_sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let mut s = chunks.remainder().iter().sum::<f32>();
    for a in acc {
        s += a;
    }
    s
}

/// Maximum of `xs` (`-inf` when empty; NaN-ignoring like `f32::max`).
#[inline(always)]
pub fn lane_max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = a.max(*v);
        }
    }
    let mut m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for a in acc {
        m = m.max(a);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmrs_core::candle::cpu::erf::erf_f64;

    fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        (0..=n)
            .map(|i| lo + (hi - lo) * i as f32 / n as f32)
            .collect()
    }

    #[test]
    fn exp_is_within_two_ulp() {
        for x in grid(-87.0, 88.0, 200_003) {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            let ulp = (want as f32).abs() * f32::EPSILON;
            assert!(
                (got - want).abs() <= 2.0 * ulp as f64,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn erf_and_tanh_are_accurate() {
        for x in grid(-6.0, 6.0, 120_001) {
            let e = (erf(x) as f64 - erf_f64(x as f64)).abs();
            assert!(e < 5e-7, "erf({x}): error {e}");
            let t = (tanh(x) as f64 - (x as f64).tanh()).abs();
            assert!(t < 3e-7, "tanh({x}): error {t}");
        }
        assert!((erf(100.0) - 1.0).abs() < 5e-7);
        assert!((erf(-100.0) + 1.0).abs() < 5e-7);
    }

    #[test]
    fn activations_match_their_definitions() {
        let xs = grid(-9.0, 9.0, 5_001);
        for act in [
            Act::Identity,
            Act::Relu,
            Act::GeluErf,
            Act::GeluTanh,
            Act::Silu,
        ] {
            let mut got = xs.clone();
            apply_act(&mut got, act);
            for (&x, &g) in xs.iter().zip(&got) {
                let x64 = x as f64;
                let want = match act {
                    Act::Identity => x64,
                    Act::Relu => x64.max(0.0),
                    Act::GeluErf => 0.5 * x64 * (1.0 + erf_f64(x64 / 2f64.sqrt())),
                    Act::GeluTanh => {
                        let c = (2.0 / std::f64::consts::PI).sqrt();
                        0.5 * x64 * (1.0 + (c * (x64 + 0.044715 * x64.powi(3))).tanh())
                    }
                    Act::Silu => x64 / (1.0 + (-x64).exp()),
                };
                assert!(
                    (g as f64 - want).abs() < 3e-6,
                    "{act:?}({x}) = {g}, want {want}"
                );
            }
        }
    }

    #[test]
    fn softmax_matches_reference_including_masked_rows() {
        // Widths around the lane count; one row fully masked (uniform, as the backend gives).
        for width in [1, 7, 16, 33, 128] {
            let mut xs: Vec<f32> = (0..3 * width)
                .map(|i| ((i * 37) % 23) as f32 / 3.0 - 4.0)
                .collect();
            xs[width..2 * width].fill(f32::MIN);
            if width > 2 {
                xs[2 * width + 1] = f32::MIN; // one masked key
            }
            let orig = xs.clone();
            softmax_rows(&mut xs, width);
            for r in 0..3 {
                let row = &orig[r * width..(r + 1) * width];
                let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
                let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
                for (j, &v) in row.iter().enumerate() {
                    let want = (v as f64 - m).exp() / z;
                    let got = xs[r * width + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-6,
                        "w{width} r{r} j{j}: {got} vs {want}"
                    );
                }
            }
        }
        assert_eq!(lane_max(&[]), f32::NEG_INFINITY);
        assert_eq!(lane_sum(&[]), 0.0);
    }
}
