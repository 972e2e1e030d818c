//! `config.json` of a Gemma 3 text checkpoint (`Gemma3TextConfig`).

use crate::common::{special_tokens, RopeFields};
use crate::error::require_positive;
use crate::{ModelError, Result};
use lmrs_core::SpecialTokens;
use lmrs_nn::RopeScaling;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Gemma 3 text configuration with `transformers`' field names.
#[derive(Debug, Clone, Deserialize)]
pub struct Gemma3Config {
    /// Vocabulary rows (default 262208).
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width (default 256).
    #[serde(default = "d_head_dim")]
    pub head_dim: usize,
    /// Attention scores are scaled by `query_pre_attn_scalar ^ -0.5` (default 256).
    #[serde(default = "d_head_dim_f")]
    pub query_pre_attn_scalar: f64,
    /// RMSNorm epsilon (default 1e-6).
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    /// RoPE settings of the global layers (and, in transformers 5, per layer type).
    #[serde(flatten)]
    pub rope: RopeFields,
    /// RoPE base of the sliding-window layers (default 10000).
    #[serde(default)]
    pub rope_local_base_freq: Option<f64>,
    /// Window of the local layers (default 4096).
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// `sliding_attention` / `full_attention` per layer.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Every n-th layer is global when `layer_types` is absent (default 6).
    #[serde(default)]
    pub sliding_window_pattern: Option<usize>,
    /// Longest sequence (default 131072).
    #[serde(default = "d_max_pos")]
    pub max_position_embeddings: usize,
    /// Soft cap of the output logits (`None`: off).
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    /// Soft cap of attention scores (`None`: off).
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    /// Must be a GELU-tanh name (default `gelu_pytorch_tanh`).
    #[serde(default = "d_act")]
    pub hidden_activation: String,
    /// Biases on q/k/v/o (default false).
    #[serde(default)]
    pub attention_bias: bool,
    /// Output layer shares the embedding (default true).
    #[serde(default = "d_true")]
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<Value>,
    /// End-of-sequence id(s).
    #[serde(default)]
    pub eos_token_id: Option<Value>,
    /// Padding id.
    #[serde(default)]
    pub pad_token_id: Option<Value>,
    /// Where the config came from (for error messages).
    #[serde(skip)]
    pub source: PathBuf,
}

fn d_vocab() -> usize {
    262_208
}
fn d_head_dim() -> usize {
    256
}
fn d_head_dim_f() -> f64 {
    256.0
}
fn d_eps() -> f64 {
    1e-6
}
fn d_max_pos() -> usize {
    131_072
}
fn d_act() -> String {
    "gelu_pytorch_tanh".into()
}
fn d_true() -> bool {
    true
}

/// What one layer attends to and how it rotates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerKind {
    /// `Some(window)` for sliding-window layers.
    pub window: Option<usize>,
    /// RoPE base.
    pub theta: f64,
    /// RoPE scaling.
    pub scaling: RopeScaling,
}

impl Gemma3Config {
    /// Parse and validate a config value read from `source`.
    pub fn from_value(value: Value, source: &Path) -> Result<Self> {
        let mut cfg: Self = crate::error::from_value(value, source)?;
        cfg.source = source.to_path_buf();
        for (field, v) in [
            ("bos_token_id", &cfg.bos_token_id),
            ("eos_token_id", &cfg.eos_token_id),
            ("pad_token_id", &cfg.pad_token_id),
        ] {
            crate::error::check_token_ids(source, field, v)?;
        }
        require_positive(
            source,
            &[
                ("vocab_size", cfg.vocab_size),
                ("hidden_size", cfg.hidden_size),
                ("intermediate_size", cfg.intermediate_size),
                ("num_hidden_layers", cfg.num_hidden_layers),
                ("num_attention_heads", cfg.num_attention_heads),
                ("num_key_value_heads", cfg.kv_heads()),
                ("head_dim", cfg.head_dim),
            ],
        )?;
        if !cfg.num_attention_heads.is_multiple_of(cfg.kv_heads())
            || !cfg.head_dim.is_multiple_of(2)
        {
            return Err(ModelError::config(
                source,
                "num_attention_heads must be a multiple of num_key_value_heads and head_dim even",
            ));
        }
        if !matches!(
            cfg.hidden_activation.as_str(),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast"
        ) {
            return Err(ModelError::config(
                source,
                format!(
                    "hidden_activation '{}' is not supported (gelu_pytorch_tanh)",
                    cfg.hidden_activation
                ),
            ));
        }
        if let Some(types) = &cfg.layer_types {
            if types.len() != cfg.num_hidden_layers {
                return Err(ModelError::config(
                    source,
                    format!(
                        "layer_types has {} entries for {} layers",
                        types.len(),
                        cfg.num_hidden_layers
                    ),
                ));
            }
        }
        crate::sizes::positive_f64(source, "rms_norm_eps", cfg.rms_norm_eps)?;
        crate::sizes::positive_f64(source, "query_pre_attn_scalar", cfg.query_pre_attn_scalar)?;
        for (field, cap) in [
            ("final_logit_softcapping", cfg.final_logit_softcapping),
            ("attn_logit_softcapping", cfg.attn_logit_softcapping),
        ] {
            if let Some(v) = cap {
                crate::sizes::positive_f64(source, field, v)?;
            }
        }
        for (field, v) in [
            ("sliding_window", cfg.sliding_window),
            ("sliding_window_pattern", cfg.sliding_window_pattern),
        ] {
            if v == Some(0) {
                // A window of 0 would mask every key of the local layers.
                return Err(crate::error::field_error(source, field, "must be positive"));
            }
        }
        // Layer kinds repeat with the pattern: checking one period covers every layer without
        // looping over a layer count the checkpoint has not been checked against yet.
        let period = match &cfg.layer_types {
            Some(t) => t.len(),
            None => cfg.sliding_window_pattern.unwrap_or(6),
        };
        for i in 0..cfg.num_hidden_layers.min(period) {
            let kind = cfg.layer(i)?;
            crate::common::check_rope(source, kind.theta, &kind.scaling)?;
        }
        Ok(cfg)
    }

    /// The sizes to check against the checkpoint before building.
    pub(crate) fn sizes(&self) -> crate::common::DecoderSizes {
        crate::common::DecoderSizes {
            vocab: self.vocab_size,
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.kv_heads(),
            head_dim: self.head_dim,
            intermediate: self.intermediate_size,
            layers: self.num_hidden_layers,
            head_dim_field: "head_dim",
        }
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Attention window and RoPE of layer `i`.
    pub fn layer(&self, i: usize) -> Result<LayerKind> {
        let sliding = match &self.layer_types {
            Some(t) => match t[i].as_str() {
                "sliding_attention" => true,
                "full_attention" => false,
                other => {
                    return Err(ModelError::config(
                        &self.source,
                        format!("layer type '{other}' is not supported"),
                    ))
                }
            },
            None => !(i + 1).is_multiple_of(self.sliding_window_pattern.unwrap_or(6).max(1)),
        };
        if sliding {
            // Local layers always use plain RoPE with their own base.
            let (theta, _) = self.rope.resolve(
                &self.source,
                Some("sliding_attention"),
                self.rope_local_base_freq.unwrap_or(10_000.0),
            )?;
            let theta = if self.rope.rope_parameters.is_some() {
                theta
            } else {
                self.rope_local_base_freq.unwrap_or(10_000.0)
            };
            Ok(LayerKind {
                window: Some(self.sliding_window.unwrap_or(4096)),
                theta,
                scaling: RopeScaling::None,
            })
        } else {
            let (theta, scaling) =
                self.rope
                    .resolve(&self.source, Some("full_attention"), 1_000_000.0)?;
            Ok(LayerKind {
                window: None,
                theta,
                scaling,
            })
        }
    }

    /// Special token ids.
    pub fn special_tokens(&self) -> SpecialTokens {
        special_tokens(&self.bos_token_id, &self.eos_token_id, &self.pad_token_id)
    }
}
