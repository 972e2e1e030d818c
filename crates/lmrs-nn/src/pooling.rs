//! Pooling token states into one vector per sequence, with `sentence-transformers`' `Pooling`
//! semantics, and L2 normalization (its `Normalize` module).

use lmrs_core::candle::Result;
use lmrs_core::{DType, Tensor, D};

/// How token states `(b, s, d)` become one `(b, d)` vector (names as in
/// `sentence-transformers`' `1_Pooling/config.json`, `pooling_mode_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token's state (`[CLS]`).
    Cls,
    /// Mean over real tokens (padding excluded).
    Mean,
    /// Element-wise maximum over real tokens.
    Max,
    /// Sum over real tokens divided by the square root of their count.
    MeanSqrtLen,
    /// The last real token's state.
    LastToken,
}

impl Pooling {
    /// Parse a name: `cls`, `mean`, `max`, `mean_sqrt_len` (or `mean_sqrt_len_tokens`),
    /// `lasttoken` (or `last`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "cls" | "cls_token" => Self::Cls,
            "mean" | "mean_tokens" => Self::Mean,
            "max" | "max_tokens" => Self::Max,
            "mean_sqrt_len" | "mean_sqrt_len_tokens" => Self::MeanSqrtLen,
            "lasttoken" | "last" | "last_token" => Self::LastToken,
            _ => return None,
        })
    }

    /// The canonical name ([`Pooling::from_name`] accepts it).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Cls => "cls",
            Self::Mean => "mean",
            Self::Max => "max",
            Self::MeanSqrtLen => "mean_sqrt_len",
            Self::LastToken => "lasttoken",
        }
    }

    /// Pool `hidden` `(b, s, d)` under `mask` `(b, s)` (1 real, 0 padding; right padding) to
    /// `(b, d)`.
    pub fn apply(&self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (_b, s, _d) = hidden.dims3()?;
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (b, s, 1)
        match self {
            Self::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
            Self::Mean | Self::MeanSqrtLen => {
                let sum = hidden.broadcast_mul(&m)?.sum(1)?; // (b, d)
                                                             // sentence-transformers clamps the count at 1e-9.
                let count = m.sum(1)?.clamp(1e-9, f64::MAX)?; // (b, 1)
                let denom = if *self == Self::Mean {
                    count
                } else {
                    count.sqrt()?
                };
                sum.broadcast_div(&denom)
            }
            Self::Max => {
                // Padding set to -1e9 as sentence-transformers does, then the maximum.
                let fill = ((m.ones_like()? - &m)? * -1e9)?;
                hidden.broadcast_mul(&m)?.broadcast_add(&fill)?.max(1)
            }
            Self::LastToken => {
                let lens: Vec<f32> = mask.to_dtype(DType::F32)?.sum(1)?.to_vec1()?;
                let rows = lens
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| {
                        let last = (n as usize).clamp(1, s) - 1;
                        hidden.get(i)?.narrow(0, last, 1)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&rows, 0)
            }
        }
    }
}

/// Pool with several modes and concatenate the results in the given order (what
/// `sentence-transformers` does when more than one `pooling_mode_*` is true).
pub fn pool(hidden: &Tensor, mask: &Tensor, modes: &[Pooling]) -> Result<Tensor> {
    let parts = modes
        .iter()
        .map(|p| p.apply(hidden, mask))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, D::Minus1)
}

/// Divide each row of `x` `(b, d)` by its L2 norm (at least 1e-12, as `F.normalize`).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmrs_core::Device;

    #[test]
    fn modes_ignore_padding() -> Result<()> {
        let dev = Device::Cpu;
        // Two rows of 3 tokens, dim 2; row 1 has one padding position holding large values.
        let h = Tensor::new(
            &[
                [[1f32, -2.], [3., 4.], [5., 0.]],
                [[2f32, 2.], [-4., 6.], [100., 100.]],
            ],
            &dev,
        )?;
        let mask = Tensor::new(&[[1u32, 1, 1], [1, 1, 0]], &dev)?;
        let get = |p: Pooling| -> Result<Vec<Vec<f32>>> { p.apply(&h, &mask)?.to_vec2() };
        assert_eq!(get(Pooling::Cls)?, vec![vec![1., -2.], vec![2., 2.]]);
        assert_eq!(get(Pooling::Mean)?, vec![vec![3., 2. / 3.], vec![-1., 4.]]);
        assert_eq!(get(Pooling::Max)?, vec![vec![5., 4.], vec![2., 6.]]);
        assert_eq!(get(Pooling::LastToken)?, vec![vec![5., 0.], vec![-4., 6.]]);
        let s = get(Pooling::MeanSqrtLen)?;
        assert!((s[1][1] - 8. / 2f32.sqrt()).abs() < 1e-6);
        let both = pool(&h, &mask, &[Pooling::Cls, Pooling::Mean])?;
        assert_eq!(both.dims(), &[2, 4]);
        let n = l2_normalize(&Tensor::new(&[[3f32, 4.], [0., 0.]], &dev)?)?;
        assert_eq!(n.to_vec2::<f32>()?, vec![vec![0.6, 0.8], vec![0., 0.]]);
        Ok(())
    }
}
