//! Rotary position embeddings (RoPE, Su et al. 2021) in the "rotate half" layout of
//! `transformers` (`LlamaRotaryEmbedding`, `apply_rotary_pos_emb`): dimension `i` of a head pairs
//! with dimension `i + d/2`.
//!
//! Frequencies follow `transformers`' `ROPE_INIT_FUNCTIONS` for the scalings lmrs supports
//! (`default`, `linear`, `llama3`).

use lmrs_core::candle::Result;
use lmrs_core::{Device, Tensor};

/// How frequencies are stretched for long contexts (`rope_scaling` / `rope_parameters`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor` (equivalently, frequencies).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 {
        /// Scale applied to low frequencies.
        factor: f64,
        /// Wavelengths above `original_max / low_freq_factor` are fully scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original_max / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// Context length the model was pre-trained with.
        original_max_position_embeddings: f64,
    },
}

/// Inverse frequencies of one head and the cos/sin tables they give.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    inv_freq: Vec<f32>,
}

impl RotaryEmbedding {
    /// Frequencies for heads of `dim` rotated dimensions and base `theta`.
    pub fn new(dim: usize, theta: f64, scaling: RopeScaling) -> Self {
        // transformers computes inv_freq in f32: 1 / theta^(2i / dim).
        let mut inv_freq: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / dim as f32) as f64)
            .collect();
        match scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => inv_freq.iter_mut().for_each(|f| *f /= factor),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f64::consts::PI / *f;
                    let scaled = if wavelen > low_wavelen {
                        *f / factor
                    } else {
                        *f
                    };
                    // NaN-free here, so "not below and not above" is a plain range check.
                    let medium = (high_wavelen..=low_wavelen).contains(&wavelen);
                    *f = if medium {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    } else {
                        scaled
                    };
                }
            }
        }
        Self {
            inv_freq: inv_freq.into_iter().map(|f| f as f32).collect(),
        }
    }

    /// Half the rotated dimension.
    pub fn half_dim(&self) -> usize {
        self.inv_freq.len()
    }

    /// `cos` and `sin` tables `(b, t, dim/2)` for `positions` given row-major as `b` rows of
    /// `t` positions.
    pub fn cos_sin(
        &self,
        positions: &[u32],
        b: usize,
        t: usize,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let h = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * h);
        let mut sin = Vec::with_capacity(positions.len() * h);
        for &p in positions {
            for &f in &self.inv_freq {
                // f32 product as in transformers, then cos/sin of it.
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok((
            Tensor::from_vec(cos, (b, t, h), device)?,
            Tensor::from_vec(sin, (b, t, h), device)?,
        ))
    }
}

/// Rotate `x` `(b, heads, t, dim)` with tables `(b, t, dim/2)` from
/// [`RotaryEmbedding::cos_sin`].
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if crate::mode::tracks_grad(&[x]) {
        return rope_differentiable(x, cos, sin);
    }
    candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)
}

/// [`apply_rope`] from plain tensor ops, for training: the backend's fused rope has no
/// backward pass. `transformers`' `q * cos + rotate_half(q) * sin`, written per half:
/// `(x1 cos - x2 sin, x2 cos + x1 sin)`.
fn rope_differentiable(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (b, _h, t, d) = x.dims4()?;
    let half = d / 2;
    // (b, t, d/2) -> (b, 1, t, d/2), broadcast over heads.
    let cos = cos.reshape((b, 1, t, half))?;
    let sin = sin.reshape((b, 1, t, half))?;
    let x1 = x.narrow(3, 0, half)?;
    let x2 = x.narrow(3, half, half)?;
    let a = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let c = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Tensor::cat(&[&a, &c], 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_half_matches_the_formula() -> Result<()> {
        let dev = Device::Cpu;
        let rope = RotaryEmbedding::new(4, 10_000.0, RopeScaling::None);
        let x = Tensor::new(&[[[[1f32, 2., 3., 4.]]]], &dev)?;
        let (c, s) = rope.cos_sin(&[3], 1, 1, &dev)?;
        let y = apply_rope(&x, &c, &s)?.flatten_all()?.to_vec1::<f32>()?;
        let f = [1.0f32, 1.0 / 100.0];
        let (a0, a1) = (3.0 * f[0], 3.0 * f[1]);
        let want = [
            1.0 * a0.cos() - 3.0 * a0.sin(),
            2.0 * a1.cos() - 4.0 * a1.sin(),
            3.0 * a0.cos() + 1.0 * a0.sin(),
            4.0 * a1.cos() + 2.0 * a1.sin(),
        ];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{y:?} vs {want:?}");
        }
        Ok(())
    }

    #[test]
    fn llama3_keeps_high_frequencies_and_scales_low_ones() {
        let plain = RotaryEmbedding::new(64, 500_000.0, RopeScaling::None);
        let scaled = RotaryEmbedding::new(
            64,
            500_000.0,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
        );
        assert_eq!(plain.inv_freq[0], scaled.inv_freq[0]);
        let last = plain.inv_freq.len() - 1;
        assert!((plain.inv_freq[last] / 8.0 - scaled.inv_freq[last]).abs() < 1e-12);
    }
}
