//! `T5Attention`: unscaled dot-product attention with an optional learned relative position
//! bias (only the first block of each stack owns one; the others reuse its output).

use crate::Result as LoadResult;
use lmrs_core::{Module, Result, Tensor};
use lmrs_io::Weights;
use lmrs_nn::{
    attend_with_dropout, merge_heads, relative_position_bucket, split_heads, Embedding, Linear,
};

/// Bucketing parameters of a relative position bias.
#[derive(Debug, Clone, Copy)]
pub struct BucketSpec {
    pub num_buckets: usize,
    pub max_distance: usize,
    pub bidirectional: bool,
}

#[derive(Debug, Clone)]
pub struct T5Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    relative_attention_bias: Option<Embedding>,
    buckets: BucketSpec,
    /// Dropout on the attention probabilities (training only).
    dropout: f64,
}

impl T5Attention {
    pub fn load(
        w: &Weights,
        d_model: usize,
        heads: usize,
        d_kv: usize,
        has_bias: bool,
        buckets: BucketSpec,
        dropout: f64,
    ) -> LoadResult<Self> {
        let inner = heads * d_kv;
        Ok(Self {
            q: Linear::load(&w.pp("q"), d_model, inner, false)?,
            k: Linear::load(&w.pp("k"), d_model, inner, false)?,
            v: Linear::load(&w.pp("v"), d_model, inner, false)?,
            o: Linear::load(&w.pp("o"), inner, d_model, false)?,
            heads,
            relative_attention_bias: if has_bias {
                Some(Embedding::load(
                    &w.pp("relative_attention_bias"),
                    buckets.num_buckets,
                    heads,
                )?)
            } else {
                None
            },
            buckets,
            dropout,
        })
    }

    /// Position bias `(1, heads, q_len, k_len)` for `q_len` queries that follow `offset`
    /// earlier positions. Only valid on the layer that owns the bias table.
    pub fn compute_bias(&self, q_len: usize, k_len: usize, offset: usize) -> Result<Tensor> {
        let table = self.relative_attention_bias.as_ref().ok_or_else(|| {
            lmrs_core::Error::InvalidInput("this T5 layer has no relative attention bias".into())
        })?;
        let b = self.buckets;
        let ids: Vec<u32> = (0..q_len)
            .flat_map(|i| {
                (0..k_len).map(move |j| {
                    relative_position_bucket(
                        j as i64 - (i + offset) as i64,
                        b.bidirectional,
                        b.num_buckets,
                        b.max_distance,
                    ) as u32
                })
            })
            .collect();
        let ids = Tensor::from_vec(ids, (q_len, k_len), &table.device())?;
        // (q, k, heads) -> (1, heads, q, k)
        let values = table.forward(&ids)?;
        Ok(values.permute((2, 0, 1))?.unsqueeze(0)?.contiguous()?)
    }

    /// Project `x` `(b, t, d_model)` to keys and values `(b, heads, t, d_kv)`.
    pub fn project_kv(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            split_heads(&self.k.forward(x)?, self.heads)?,
            split_heads(&self.v.forward(x)?, self.heads)?,
        ))
    }

    /// Project `x` `(b, t, d_model)` to queries `(b, heads, t, d_kv)`.
    pub fn project_q(&self, x: &Tensor) -> Result<Tensor> {
        Ok(split_heads(&self.q.forward(x)?, self.heads)?)
    }

    /// Attend `q` over `k`/`v` with an additive `bias`, then the output projection.
    /// `q`: `(b, heads, t, d_kv)` → `(b, t, d_model)`.
    pub fn attend_and_project(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        // T5 folds the 1/sqrt(d) scaling into its initialisation: no scaling here.
        let ctx = attend_with_dropout(q, k, v, bias, None, self.dropout)?;
        Ok(self.o.forward(&merge_heads(&ctx)?)?)
    }

    /// The output projection of already merged heads `(b, t, heads * d_kv)`.
    pub fn attend_and_project_merged(&self, ctx: &Tensor) -> Result<Tensor> {
        Ok(self.o.forward(ctx)?)
    }
}
