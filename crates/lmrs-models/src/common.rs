//! What decoder-only architectures share: config pieces, input checks, the output layer.

use crate::{ModelError, Result};
use lmrs_core::{DType, LogitsFor, Module, SpecialTokens, Tensor};
use lmrs_nn::RopeScaling;
use lmrs_nn::{CacheShape, CausalCache, Linear};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// `eos_token_id`: one id or a list.
pub(crate) fn ids(v: &Option<Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64().map(|x| x as u32))
            .collect(),
        _ => Vec::new(),
    }
}

/// Special tokens as most decoder-only configs declare them.
pub(crate) fn special_tokens(
    bos: &Option<Value>,
    eos: &Option<Value>,
    pad: &Option<Value>,
) -> SpecialTokens {
    SpecialTokens {
        pad: ids(pad).first().copied(),
        eos: ids(eos),
        bos: ids(bos).first().copied(),
        decoder_start: None,
    }
}

/// The RoPE settings of a config: `rope_theta` + `rope_scaling` (transformers 4) or
/// `rope_parameters` (transformers 5, which may nest them per layer type).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RopeFields {
    /// Base of the frequencies.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// `{"rope_type": "llama3" | "linear" | "default", "factor": ...}`.
    #[serde(default)]
    pub rope_scaling: Option<Value>,
    /// transformers 5's combined form.
    #[serde(default)]
    pub rope_parameters: Option<Value>,
}

impl RopeFields {
    /// Theta and scaling for `layer_type` (`None` for single-type models), with `default_theta`
    /// when the config states none.
    pub fn resolve(
        &self,
        path: &Path,
        layer_type: Option<&str>,
        default_theta: f64,
    ) -> Result<(f64, RopeScaling)> {
        let mut params = self.rope_parameters.clone();
        if let (Some(Value::Object(map)), Some(lt)) = (&params, layer_type) {
            if let Some(inner) = map.get(lt) {
                params = Some(inner.clone());
            }
        }
        let theta = match params.as_ref().and_then(|p| p.get("rope_theta")) {
            None | Some(Value::Null) => self.rope_theta.unwrap_or(default_theta),
            Some(v) => v.as_f64().ok_or_else(|| {
                crate::error::field_error(
                    path,
                    "rope_parameters.rope_theta",
                    format!("is {v}; expected a number"),
                )
            })?,
        };
        let scaling_src = match (&self.rope_scaling, &params) {
            (Some(s), _) if !s.is_null() => Some(s),
            (_, Some(p)) => Some(p),
            _ => None,
        };
        let scaling = match scaling_src {
            None => RopeScaling::None,
            Some(s) => parse_scaling(path, s)?,
        };
        Ok((theta, scaling))
    }
}

fn parse_scaling(path: &Path, s: &Value) -> Result<RopeScaling> {
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |k: &str| -> Result<f64> {
        s.get(k).and_then(Value::as_f64).ok_or_else(|| {
            ModelError::config(path, format!("rope scaling '{kind}' needs a numeric '{k}'"))
        })
    };
    Ok(match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        },
        other => {
            return Err(ModelError::config(
                path,
                format!("RoPE scaling type '{other}' is not supported (default, linear, llama3)"),
            ))
        }
    })
}

/// Sizes of a Llama-layout decoder (`model.embed_tokens`, `model.layers.N.self_attn.*`,
/// `model.layers.N.mlp.*`; Llama, Qwen2, Mistral, Gemma 3) checked against the checkpoint's
/// tensor directory before anything is built: the embedding, the first layer's q/k
/// projections (so `heads * head_dim` is a real size) and MLP, and the last layer.
pub(crate) struct DecoderSizes {
    pub vocab: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub layers: usize,
    /// Name of the per-head size field (`head_dim`, or the default's source).
    pub head_dim_field: &'static str,
}

impl DecoderSizes {
    pub(crate) fn check(&self, w: &lmrs_io::Weights, source: &Path) -> Result<()> {
        use crate::sizes::{dim, prod, SizeCheck};
        let c = SizeCheck::new(w, source);
        let d = dim(self.hidden, "hidden_size");
        c.tensor(
            "model.embed_tokens.weight",
            &[dim(self.vocab, "vocab_size"), d],
        )?;
        c.layers("num_hidden_layers", self.layers, |i| {
            format!("model.layers.{i}.self_attn.q_proj.weight")
        })?;
        let q = format!("num_attention_heads * {}", self.head_dim_field);
        let k = format!("num_key_value_heads * {}", self.head_dim_field);
        let a = "model.layers.0.self_attn";
        c.tensor(
            &format!("{a}.q_proj.weight"),
            &[prod(self.heads, self.head_dim, &q), d],
        )?;
        c.tensor(
            &format!("{a}.k_proj.weight"),
            &[prod(self.kv_heads, self.head_dim, &k), d],
        )?;
        c.tensor(
            "model.layers.0.mlp.up_proj.weight",
            &[dim(self.intermediate, "intermediate_size"), d],
        )
    }
}

/// RoPE settings that would load and then compute garbage: a base or scaling factor that is
/// 0, negative or NaN, or Llama 3 frequency factors that are equal (a division by zero).
pub(crate) fn check_rope(source: &Path, theta: f64, scaling: &RopeScaling) -> Result<()> {
    use crate::sizes::positive_f64;
    positive_f64(source, "rope_theta", theta)?;
    match *scaling {
        RopeScaling::None => Ok(()),
        RopeScaling::Linear { factor } => positive_f64(source, "rope_scaling.factor", factor),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            positive_f64(source, "rope_scaling.factor", factor)?;
            positive_f64(source, "rope_scaling.low_freq_factor", low_freq_factor)?;
            positive_f64(source, "rope_scaling.high_freq_factor", high_freq_factor)?;
            positive_f64(
                source,
                "rope_scaling.original_max_position_embeddings",
                original_max_position_embeddings,
            )?;
            if low_freq_factor == high_freq_factor {
                return Err(crate::error::field_error(
                    source,
                    "rope_scaling.high_freq_factor",
                    "equals low_freq_factor (the smoothing divides by their difference)",
                ));
            }
            Ok(())
        }
    }
}

/// Final norm and output projection for the positions asked for; shared by the decoder-only
/// models.
pub(crate) fn project_logits(
    x: &Tensor,
    norm: &dyn Module,
    lm_head: &Linear,
    which: LogitsFor,
) -> lmrs_core::Result<Option<Tensor>> {
    let t = x.dim(1)?;
    let x = match which {
        LogitsFor::Nothing => return Ok(None),
        LogitsFor::Last => x.narrow(1, t - 1, 1)?,
        LogitsFor::All => x.clone(),
    };
    let logits = lm_head.forward(&norm.forward(&x)?)?;
    Ok(Some(logits.to_dtype(DType::F32)?))
}

/// Check ids fit the vocabulary and the cache has room; returns `(b, t)`.
pub(crate) fn check_input(
    input_ids: &Tensor,
    cache: &CausalCache,
    vocab: usize,
) -> lmrs_core::Result<(usize, usize)> {
    use lmrs_core::{DecoderCache, Error};
    let (b, t) = input_ids.dims2()?;
    if b != cache.rows() {
        return Err(Error::InvalidInput(format!(
            "{b} input rows for a cache of {} rows",
            cache.rows()
        )));
    }
    if t == 0 {
        return Err(Error::InvalidInput("no input tokens".into()));
    }
    if cache.len() + t > cache.capacity() {
        return Err(Error::InvalidInput(format!(
            "{} positions exceed the cache's {}",
            cache.len() + t,
            cache.capacity()
        )));
    }
    let max = input_ids.flatten_all()?.max(0)?.to_scalar::<u32>()?;
    if max as usize >= vocab {
        return Err(Error::InvalidInput(format!(
            "token id {max} is outside the vocabulary of {vocab}"
        )));
    }
    Ok((b, t))
}

/// An empty f32 cache of `layers` layers for rows with `left_padding`, room for `max_len` slots.
pub(crate) fn new_cache(
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    left_padding: &[usize],
    max_len: usize,
    device: &lmrs_core::Device,
) -> lmrs_core::Result<CausalCache> {
    let shape = CacheShape {
        batch: left_padding.len(),
        layers,
        kv_heads,
        head_dim,
        max_len,
    };
    let mut cache = CausalCache::new(shape, DType::F32, device)?;
    cache.set_left_padding(left_padding)?;
    Ok(cache)
}

/// Checks of a training batch: `(b, t)` ids within the vocabulary, a mask of the same shape,
/// at most `max_positions` positions. Returns `(b, t)` and the row-major positions `(b * t)`.
pub(crate) fn check_train_input(
    ids: &Tensor,
    mask: &Tensor,
    vocab: usize,
    max_positions: usize,
) -> lmrs_core::Result<(usize, usize, Vec<u32>)> {
    let (b, t) = ids.dims2()?;
    let bad = |m: String| lmrs_core::Error::InvalidInput(m);
    if b == 0 || t == 0 {
        return Err(bad("an empty training batch".into()));
    }
    if mask.dims() != [b, t] {
        return Err(bad(format!(
            "attention mask of shape {:?} for ids of shape ({b}, {t})",
            mask.dims()
        )));
    }
    if t > max_positions {
        return Err(bad(format!(
            "a sequence of {t} tokens is longer than the model's {max_positions} positions"
        )));
    }
    let max = ids.flatten_all()?.max(0)?.to_scalar::<u32>()?;
    if max as usize >= vocab {
        return Err(bad(format!(
            "token id {max} is outside the vocabulary of {vocab}"
        )));
    }
    // Every row counts from 0: right padding leaves real tokens where they would be alone.
    Ok((b, t, (0..b).flat_map(|_| 0..t as u32).collect()))
}

/// Additive bias `(b, 1, t, t)` for right-padded rows: query `i` sees key `j` when `j <= i`
/// and `j` is a token (mask 1).
pub(crate) fn causal_padding_bias(mask: &Tensor) -> lmrs_core::Result<Tensor> {
    windowed_padding_bias(mask, None)
}

/// [`causal_padding_bias`] for sliding-window layers as well: with `window` `w`, query `i`
/// sees only keys with `i - j < w` (`transformers`' sliding-window mask).
pub(crate) fn windowed_padding_bias(
    mask: &Tensor,
    window: Option<usize>,
) -> lmrs_core::Result<Tensor> {
    let (b, t) = mask.dims2()?;
    let rows = mask.to_dtype(DType::U32)?.to_vec2::<u32>()?;
    let mut data = Vec::with_capacity(b * t * t);
    for row in &rows {
        for i in 0..t {
            data.extend((0..t).map(|j| {
                if j > i || row[j] == 0 || window.is_some_and(|w| i - j >= w) {
                    lmrs_nn::MASKED
                } else {
                    0.0
                }
            }));
        }
    }
    Ok(Tensor::from_vec(data, (b, 1, t, t), mask.device())?)
}
