//! The decoding state of a decoder-only model: one preallocated [`KvCache`] per layer plus each
//! row's left padding, from which positions and attention masks are derived.
//!
//! Prompts of different lengths share a batch by left padding: slot `j` of row `r` holds a
//! real token when `j >= pad[r]`, and that token's position is `j - pad[r]`. Padding slots are
//! never attended to, so a row computes exactly what it would alone.

use crate::attention::MASKED;
use crate::KvCache;
use lmrs_core::{DType, DecoderCache, Device, Error, JoinRows, Result, Tensor};

/// Per-layer key/value caches and per-row left padding.
#[derive(Debug, Clone)]
pub struct CausalCache {
    layers: Vec<KvCache>,
    pad: Vec<usize>,
    device: Device,
}

/// Shape of the caches to allocate.
#[derive(Debug, Clone, Copy)]
pub struct CacheShape {
    /// Rows.
    pub batch: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Key/value heads per layer.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Slots to allocate (longest padded prompt plus new tokens).
    pub max_len: usize,
}

impl CausalCache {
    /// Allocate empty caches.
    pub fn new(shape: CacheShape, dtype: DType, device: &Device) -> Result<Self> {
        // All layers at once: each layer alone may fit where the whole cache does not.
        crate::memory::check_allocation(
            crate::memory::tensor_bytes(
                &[
                    2,
                    shape.layers,
                    shape.batch,
                    shape.kv_heads,
                    shape.max_len,
                    shape.head_dim,
                ],
                dtype,
            ),
            "the key/value cache",
        )?;
        let layers = (0..shape.layers)
            .map(|_| {
                KvCache::new(
                    shape.batch,
                    shape.kv_heads,
                    shape.max_len,
                    shape.head_dim,
                    dtype,
                    device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            pad: vec![0; shape.batch],
            device: device.clone(),
        })
    }

    /// Declare each row's left padding before the first forward pass.
    pub fn set_left_padding(&mut self, pad: &[usize]) -> Result<()> {
        if pad.len() != self.pad.len() {
            return Err(Error::InvalidInput(format!(
                "{} padding counts for {} rows",
                pad.len(),
                self.pad.len()
            )));
        }
        self.pad = pad.to_vec();
        Ok(())
    }

    /// Each row's left padding.
    pub fn left_padding(&self) -> &[usize] {
        &self.pad
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.pad.len()
    }

    /// Allocated slots.
    pub fn capacity(&self) -> usize {
        self.layers.first().map_or(0, KvCache::capacity)
    }

    /// The cache of layer `i`.
    pub fn layer(&mut self, i: usize) -> Result<&mut KvCache> {
        let n = self.layers.len();
        self.layers
            .get_mut(i)
            .ok_or_else(|| Error::InvalidInput(format!("layer {i} of a {n}-layer cache")))
    }

    /// Positions `(b, t)` row-major of `t` new tokens written after the stored slots.
    pub fn positions(&self, t: usize) -> Vec<u32> {
        let past = self.len();
        self.pad
            .iter()
            .flat_map(|&p| (past..past + t).map(move |j| j.saturating_sub(p) as u32))
            .collect()
    }

    /// Additive attention bias `(b, 1, t, past + t)` for `t` new tokens: causal, padding
    /// slots hidden, and with `window` only the last `window` positions visible (sliding-window
    /// layers). A query in a padding slot sees itself only (its output is never used).
    pub fn attention_bias(&self, t: usize, window: Option<usize>) -> Result<Tensor> {
        let past = self.len();
        let tk = past + t;
        let b = self.pad.len();
        let mut data = Vec::with_capacity(b * t * tk);
        for &p in &self.pad {
            for i in 0..t {
                let q = past + i;
                for j in 0..tk {
                    let visible =
                        j == q || (j >= p && j <= q && window.is_none_or(|w| q - j < w) && q >= p);
                    data.push(if visible { 0.0 } else { MASKED });
                }
            }
        }
        Ok(Tensor::from_vec(data, (b, 1, t, tk), &self.device)?)
    }
}

impl DecoderCache for CausalCache {
    fn len(&self) -> usize {
        self.layers.first().map_or(0, KvCache::len)
    }

    fn reset(&mut self) {
        self.layers.iter_mut().for_each(KvCache::reset);
    }

    fn truncate(&mut self, len: usize) {
        self.layers.iter_mut().for_each(|l| l.truncate(len));
    }

    fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.pad.len()) {
            return Err(Error::InvalidInput(format!(
                "reorder: row {bad} of {} rows",
                self.pad.len()
            )));
        }
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::from_vec(idx, rows.len(), &self.device)?;
        for l in &mut self.layers {
            l.reorder(&idx)?;
        }
        self.pad = rows.iter().map(|&r| self.pad[r]).collect();
        Ok(())
    }
}

impl JoinRows for CausalCache {
    fn join_rows(parts: Vec<Self>, room: usize) -> Result<Self> {
        let first = parts
            .first()
            .ok_or_else(|| Error::InvalidInput("join_rows: no caches to join".into()))?;
        let layers = first.layers.len();
        let device = first.device.clone();
        if let Some(c) = parts.iter().find(|c| c.layers.len() != layers) {
            return Err(Error::InvalidInput(format!(
                "join_rows: a {}-layer cache with a {layers}-layer one",
                c.layers.len()
            )));
        }
        // Per part: the leading slots every row pads (dropped) and the slots kept.
        let spans: Vec<(usize, usize)> = parts
            .iter()
            .map(|c| {
                let len = c.len();
                let trim = c.pad.iter().copied().min().unwrap_or(0).min(len);
                (trim, len - trim)
            })
            .collect();
        let len = spans.iter().map(|&(_, kept)| kept).max().unwrap_or(0);
        let capacity = len.saturating_add(room);
        if let Some(k) = first.layers.first().map(|l| l.key_dims()) {
            let rows: usize = parts.iter().map(|c| c.pad.len()).sum();
            crate::memory::check_allocation(
                crate::memory::tensor_bytes(&[2, layers, rows, k.1, capacity, k.3], k.4),
                "the key/value cache",
            )?;
        }
        let joined = (0..layers)
            .map(|i| {
                let placed: Vec<(&KvCache, usize, usize)> = parts
                    .iter()
                    .zip(&spans)
                    .map(|(c, &(trim, kept))| (&c.layers[i], trim, len - kept))
                    .collect();
                KvCache::gather(&placed, capacity, len)
            })
            .collect::<Result<Vec<_>>>()?;
        let pad = parts
            .iter()
            .zip(&spans)
            .flat_map(|(c, &(trim, kept))| c.pad.iter().map(move |&p| p - trim + (len - kept)))
            .collect();
        Ok(Self {
            layers: joined,
            pad,
            device,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_positions_and_windows() -> Result<()> {
        let shape = CacheShape {
            batch: 2,
            layers: 1,
            kv_heads: 1,
            head_dim: 2,
            max_len: 8,
        };
        let mut c = CausalCache::new(shape, DType::F32, &Device::Cpu)?;
        c.set_left_padding(&[0, 2])?;
        assert_eq!(c.positions(3), vec![0, 1, 2, 0, 0, 0]);
        let bias = c.attention_bias(3, None)?.to_vec3::<f32>().ok();
        assert!(bias.is_none(), "bias is 4-D");
        let bias = c.attention_bias(4, Some(2))?;
        let rows: Vec<Vec<Vec<f32>>> = bias.squeeze(1)?.to_vec3()?;
        let vis = |r: usize, q: usize| -> Vec<usize> {
            (0..4).filter(|&j| rows[r][q][j] == 0.0).collect()
        };
        assert_eq!(vis(0, 3), vec![2, 3], "window of 2");
        assert_eq!(vis(1, 1), vec![1], "a padding query sees itself only");
        assert_eq!(vis(1, 3), vec![2, 3]);
        c.reorder(&[1, 1, 0])?;
        assert_eq!(c.left_padding(), &[2, 2, 0]);
        Ok(())
    }

    #[test]
    fn joined_rows_keep_their_positions() -> Result<()> {
        let shape = |batch, max_len| CacheShape {
            batch,
            layers: 2,
            kv_heads: 1,
            head_dim: 1,
            max_len,
        };
        let fill = |c: &mut CausalCache, t: usize| -> Result<()> {
            let b = c.rows();
            for i in 0..2 {
                let x = Tensor::ones((b, 1, t, 1), DType::F32, &Device::Cpu)?;
                c.layer(i)?.append(&x, &x)?;
            }
            Ok(())
        };
        // Two rows with 3 and 1 real tokens, left-padded by one more slot than needed.
        let mut a = CausalCache::new(shape(2, 8), DType::F32, &Device::Cpu)?;
        a.set_left_padding(&[1, 3])?;
        fill(&mut a, 4)?;
        // One row with 5 tokens; one with none yet (a one-token prompt).
        let mut b = CausalCache::new(shape(1, 5), DType::F32, &Device::Cpu)?;
        fill(&mut b, 5)?;
        let c = CausalCache::new(shape(1, 1), DType::F32, &Device::Cpu)?;
        let mut j = CausalCache::join_rows(vec![a, b, c], 4)?;
        assert_eq!(j.len(), 5);
        assert_eq!(j.capacity(), 9);
        assert_eq!(j.left_padding(), &[2, 4, 0, 5]);
        // Each row's next position is its own history length.
        assert_eq!(j.positions(1), vec![3, 1, 5, 0]);
        // Stored slots are ones (the fill wrote padding slots too, as a model does); slots no
        // part held are zeros.
        let k = j.layer(1)?.append(
            &Tensor::zeros((4, 1, 1, 1), DType::F32, &Device::Cpu)?,
            &Tensor::zeros((4, 1, 1, 1), DType::F32, &Device::Cpu)?,
        )?;
        let rows: Vec<Vec<f32>> = k.0.squeeze(3)?.squeeze(1)?.to_vec2()?;
        assert_eq!(rows[0], vec![0., 0., 1., 1., 1., 0.]);
        assert_eq!(rows[1], vec![0., 0., 1., 1., 1., 0.]);
        assert_eq!(rows[2], vec![1., 1., 1., 1., 1., 0.]);
        assert_eq!(rows[3], vec![0.; 6]);
        assert!(CausalCache::join_rows(vec![], 1).is_err());
        Ok(())
    }
}
