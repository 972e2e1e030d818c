//! Attention core and the additive masks it takes.
//!
//! Masks are additive biases: 0 where attention is allowed and `f32::MIN` where it is not
//! (the `torch.finfo(float32).min` convention of `transformers`), so a fully masked row still
//! yields finite numbers.

use lmrs_core::candle::Result;
use lmrs_core::{DType, Device, Tensor};

/// Value added to scores at masked positions.
pub const MASKED: f32 = f32::MIN;

/// `softmax(q k^T * scale + bias) v`.
///
/// Shapes: `q` `(b, h, tq, d)`, `k`/`v` `(b, h, tk, d)` (may be strided views of a cache),
/// `bias` broadcastable to `(b, h, tq, tk)`. Returns `(b, h, tq, d)`.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: Option<f64>,
) -> Result<Tensor> {
    attend_with_dropout(q, k, v, bias, scale, 0.0)
}

/// Attention probabilities: the fused softmax, or differentiable ops (with dropout in
/// training mode, `dropout` the model's attention dropout) when the scores take part in
/// autograd.
fn probs(scores: &Tensor, dropout: f64) -> Result<Tensor> {
    if scores.track_op() {
        crate::mode::dropout(&crate::mode::softmax_last_dim(scores)?, dropout)
    } else {
        candle_nn::ops::softmax_last_dim(scores)
    }
}

/// [`attend`] with dropout `p` on the attention probabilities in training mode (T5's and
/// BERT's `attn_weights = dropout(softmax(scores))`).
pub fn attend_with_dropout(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: Option<f64>,
    p: f64,
) -> Result<Tensor> {
    let mut scores = q.matmul(&k.t()?)?;
    if let Some(s) = scale {
        scores = (scores * s)?;
    }
    if let Some(b) = bias {
        scores = scores.broadcast_add(b)?;
    }
    probs(&scores, p)?.matmul(v)
}

/// Attention with grouped key/value heads (GQA/MQA; plain multi-head when `h == kv_heads`):
/// query head `i` uses key/value head `i / (h / kv_heads)`, as `transformers`' `repeat_kv`.
/// Keys and values are never repeated in memory: the query heads of one group are stacked
/// and share one product.
///
/// Shapes: `q` `(b, h, tq, d)`, `k`/`v` `(b, kv_heads, tk, d)` (may be views of a cache),
/// `bias` `(b, 1, tq, tk)`. `softcap` applies Gemma 2's `tanh(s / c) * c` to the scores.
/// Returns `(b, h, tq, d)`.
pub fn attend_grouped(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
    softcap: Option<f64>,
) -> Result<Tensor> {
    let (b, h, tq, d) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let tk = k.dim(2)?;
    let tracked = crate::mode::tracks_grad(&[q, k, v]);
    if !tracked {
        if let Some(y) = attend_cached_fast(q, k, v, bias, scale, softcap)? {
            return Ok(y);
        }
    }
    if kv_heads == 0 || h % kv_heads != 0 {
        lmrs_core::candle::bail!("{h} query heads do not group over {kv_heads} key/value heads");
    }
    let rep = h / kv_heads;
    // (b, h, tq, d) -> (b, kv, rep * tq, d): the heads of a group follow each other.
    let q = q.contiguous()?.reshape((b, kv_heads, rep * tq, d))?;
    let mut scores = (q.matmul(&k.t()?)? * scale)?;
    if let Some(c) = softcap {
        scores = ((scores / c)?.tanh()? * c)?;
    }
    if let Some(bias) = bias {
        scores = scores
            .reshape((b, kv_heads, rep, tq, tk))?
            .broadcast_add(&bias.reshape((b, 1, 1, tq, tk))?)?
            .reshape((b, kv_heads, rep * tq, tk))?;
    }
    probs(&scores, 0.0)?.matmul(v)?.reshape((b, h, tq, d))
}

/// Decoding fast path of [`attend_grouped`]: a few queries against keys/values that are row-
/// contiguous views of an f32 CPU cache (see `kernels/attention_decode.rs`). `None` when the
/// inputs do not have that form.
fn attend_cached_fast(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
    softcap: Option<f64>,
) -> Result<Option<Tensor>> {
    use crate::kernels::attention_decode::{attend, Dims, KvView, MAX_QUERIES};
    use lmrs_core::candle::{CpuStorage, Storage};
    let (b, heads, tq, d) = q.dims4()?;
    let (_, kv_heads, tk, _) = k.dims4()?;
    let f32_cpu = |t: &Tensor| t.dtype() == DType::F32 && t.device().is_cpu();
    if tq > MAX_QUERIES
        || kv_heads == 0
        || heads % kv_heads != 0
        || !(f32_cpu(q) && f32_cpu(k) && f32_cpu(v))
        || k.dims() != v.dims()
    {
        return Ok(None);
    }
    let q = q.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let bias = match bias {
        Some(x) if x.dims() == [b, 1, tq, tk] && f32_cpu(x) => {
            Some(x.contiguous()?.flatten_all()?.to_vec1::<f32>()?)
        }
        Some(_) => return Ok(None),
        None => None,
    };
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let view = |s: &Storage, l: &lmrs_core::candle::Layout| -> Option<(usize, usize, usize)> {
        let st = l.stride();
        match s {
            Storage::Cpu(CpuStorage::F32(_)) if st[3] == 1 && st[2] == d => {
                Some((l.start_offset(), st[0], st[1]))
            }
            _ => None,
        }
    };
    let (Some(kv), Some(vv)) = (view(&ks, kl), view(&vs, vl)) else {
        return Ok(None);
    };
    let (Storage::Cpu(CpuStorage::F32(kd)), Storage::Cpu(CpuStorage::F32(vd))) = (&*ks, &*vs)
    else {
        return Ok(None);
    };
    let mk = |data, (offset, batch_stride, head_stride): (usize, usize, usize)| KvView {
        data,
        offset,
        batch_stride,
        head_stride,
    };
    let dims = Dims {
        b,
        heads,
        kv_heads,
        tq,
        tk,
        d,
    };
    let out = attend(
        &q,
        mk(kd, kv),
        mk(vd, vv),
        bias.as_deref(),
        dims,
        scale as f32,
        softcap.map(|c| c as f32),
    );
    drop((ks, vs));
    Ok(Some(Tensor::from_vec(
        out,
        (b, heads, tq, d),
        &Device::Cpu,
    )?))
}

/// `(b, s)` mask of 1 (real token) / 0 (padding) → additive bias `(b, 1, 1, s)`.
pub fn padding_mask_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, s) = mask.dims2()?;
    let m = mask.to_dtype(DType::F32)?;
    // (1 - m) * MASKED: 0 for tokens, MASKED for padding.
    let bias = ((m.ones_like()? - m)? * MASKED as f64)?;
    bias.reshape((b, 1, 1, s))
}

/// Additive causal bias `(tq, tk)` for `tq` new queries that follow `offset` cached positions
/// (`tk = offset + tq`): query `i` may see keys `0..=offset + i`.
pub fn causal_mask_bias(tq: usize, tk: usize, offset: usize, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..tq)
        .flat_map(|i| (0..tk).map(move |j| if j > offset + i { MASKED } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (tq, tk), device)
}

/// `(b, t, h * d)` → `(b, h, t, d)` (contiguous).
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, hd) = x.dims3()?;
    x.reshape((b, t, heads, hd / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// `(b, h, t, d)` → `(b, t, h * d)`.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    x.transpose(1, 2)?.reshape((b, t, h * d))
}
