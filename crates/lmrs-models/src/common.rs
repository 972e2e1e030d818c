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
        let theta = params
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .or(self.rope_theta)
            .unwrap_or(default_theta);
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
