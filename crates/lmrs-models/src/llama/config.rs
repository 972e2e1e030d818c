//! `config.json` of a Llama-family checkpoint (`LlamaConfig`, `Qwen2Config`, `MistralConfig`).

use crate::common::{special_tokens, RopeFields};
use crate::error::require_positive;
use crate::{ModelError, Result};
use lmrs_core::SpecialTokens;
use lmrs_nn::RopeScaling;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Llama-family configuration with `transformers`' field names.
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    /// `llama`, `qwen2` or `mistral`.
    pub model_type: String,
    /// Vocabulary rows.
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (default: `num_attention_heads`).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width (default `hidden_size / num_attention_heads`).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon (default 1e-6).
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    /// RoPE settings.
    #[serde(flatten)]
    pub rope: RopeFields,
    /// Longest sequence (default 2048).
    #[serde(default = "d_max_pos")]
    pub max_position_embeddings: usize,
    /// Output layer shares the embedding (default false).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v/o (Llama's flag; Qwen2 always has q/k/v biases).
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases in the MLP (default false).
    #[serde(default)]
    pub mlp_bias: bool,
    /// Must be `silu` (default).
    #[serde(default = "d_act")]
    pub hidden_act: String,
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

fn d_eps() -> f64 {
    1e-6
}
fn d_max_pos() -> usize {
    2048
}
fn d_act() -> String {
    "silu".into()
}

impl LlamaConfig {
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
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        require_positive(
            &self.source,
            &[
                ("vocab_size", self.vocab_size),
                ("hidden_size", self.hidden_size),
                ("intermediate_size", self.intermediate_size),
                ("num_hidden_layers", self.num_hidden_layers),
                ("num_attention_heads", self.num_attention_heads),
                ("num_key_value_heads", self.kv_heads()),
                ("head_dim", self.head_dim()),
            ],
        )?;
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(ModelError::config(
                &self.source,
                format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    self.num_attention_heads,
                    self.kv_heads()
                ),
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(ModelError::config(
                &self.source,
                "head_dim must be even for RoPE",
            ));
        }
        if self.hidden_act != "silu" {
            return Err(ModelError::config(
                &self.source,
                format!("hidden_act '{}' is not supported (silu)", self.hidden_act),
            ));
        }
        crate::sizes::positive_f64(&self.source, "rms_norm_eps", self.rms_norm_eps)?;
        let (theta, scaling) = self.rope()?;
        crate::common::check_rope(&self.source, theta, &scaling)?;
        Ok(())
    }

    /// The sizes to check against the checkpoint before building.
    pub(crate) fn sizes(&self) -> crate::common::DecoderSizes {
        crate::common::DecoderSizes {
            vocab: self.vocab_size,
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.kv_heads(),
            head_dim: self.head_dim(),
            intermediate: self.intermediate_size,
            layers: self.num_hidden_layers,
            head_dim_field: if self.head_dim.is_some() {
                "head_dim"
            } else {
                "(hidden_size / num_attention_heads)"
            },
        }
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Whether q/k/v projections carry biases.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias || self.model_type == "qwen2"
    }

    /// RoPE base and scaling.
    pub fn rope(&self) -> Result<(f64, RopeScaling)> {
        self.rope.resolve(&self.source, None, 10_000.0)
    }

    /// Special token ids.
    pub fn special_tokens(&self) -> SpecialTokens {
        special_tokens(&self.bos_token_id, &self.eos_token_id, &self.pad_token_id)
    }
}
