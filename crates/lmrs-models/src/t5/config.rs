//! `config.json` of a T5 checkpoint, typed once; quirks become enums at load time.

use crate::{ModelError, Result};
use lmrs_nn::Activation;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// T5's `config.json` (field names and defaults as in `transformers`' `T5Config`).
#[derive(Debug, Clone, Deserialize)]
pub struct T5Config {
    /// Output vocabulary rows (default 32128).
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Hidden size (default 512).
    #[serde(default = "d_model")]
    pub d_model: usize,
    /// Per-head size (default 64).
    #[serde(default = "d_kv")]
    pub d_kv: usize,
    /// Feed-forward inner size (default 2048).
    #[serde(default = "d_ff")]
    pub d_ff: usize,
    /// Encoder blocks (default 6).
    #[serde(default = "d_layers")]
    pub num_layers: usize,
    /// Decoder blocks (default: `num_layers`).
    #[serde(default)]
    pub num_decoder_layers: Option<usize>,
    /// Attention heads (default 8).
    #[serde(default = "d_heads")]
    pub num_heads: usize,
    /// Relative position buckets (default 32).
    #[serde(default = "d_buckets")]
    pub relative_attention_num_buckets: usize,
    /// Distance beyond which all positions share a bucket (default 128).
    #[serde(default = "d_max_distance")]
    pub relative_attention_max_distance: usize,
    /// RMS norm epsilon (default 1e-6).
    #[serde(default = "d_eps")]
    pub layer_norm_epsilon: f64,
    /// `"relu"` (v1.0) or `"gated-gelu"` (v1.1/FLAN/mT5), generally `[gated-]ACT`.
    #[serde(default = "d_ff_proj")]
    pub feed_forward_proj: String,
    /// `false` on v1.1-style checkpoints with their own `lm_head` and no output scaling.
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    /// Padding id (default 0).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// End-of-sequence id(s) (default 1).
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    /// Decoder start id (default: `pad_token_id`).
    #[serde(default)]
    pub decoder_start_token_id: Option<u32>,
    /// Per-task generation settings and prefixes (`summarization`, `translation_en_to_de`...).
    #[serde(default)]
    pub task_specific_params: Option<serde_json::Map<String, serde_json::Value>>,
    /// Dropout probability of every dropout layer, active in training only (default 0.1).
    #[serde(default = "d_dropout")]
    pub dropout_rate: f64,
    /// Input length the model was trained with, when the config states it.
    #[serde(default)]
    pub n_positions: Option<usize>,
    /// Where the config came from (for error messages).
    #[serde(skip)]
    pub source: PathBuf,
}

fn d_vocab() -> usize {
    32128
}
fn d_model() -> usize {
    512
}
fn d_kv() -> usize {
    64
}
fn d_ff() -> usize {
    2048
}
fn d_layers() -> usize {
    6
}
fn d_heads() -> usize {
    8
}
fn d_buckets() -> usize {
    32
}
fn d_max_distance() -> usize {
    128
}
fn d_eps() -> f64 {
    1e-6
}
fn d_dropout() -> f64 {
    0.1
}
fn d_ff_proj() -> String {
    "relu".into()
}

/// The feed-forward block variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedForwardKind {
    /// `wo(act(wi(x)))` (T5 v1.0).
    Dense(Activation),
    /// `wo(act(wi_0(x)) * wi_1(x))` (T5 v1.1, FLAN-T5, mT5).
    Gated(Activation),
}

impl T5Config {
    /// Read and validate a T5 `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut cfg: Self = lmrs_io::read_json(path)?;
        cfg.source = path.to_path_buf();
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let err = |message: String| ModelError::config(path, message);
        crate::error::require_positive(
            path,
            &[
                ("vocab_size", self.vocab_size),
                ("d_model", self.d_model),
                ("d_kv", self.d_kv),
                ("d_ff", self.d_ff),
                ("num_heads", self.num_heads),
                ("num_layers", self.num_layers),
                ("num_decoder_layers", self.decoder_layers()),
                (
                    "relative_attention_num_buckets",
                    self.relative_attention_num_buckets,
                ),
            ],
        )?;
        if self.relative_attention_max_distance < self.relative_attention_num_buckets / 2 {
            return Err(err(
                "'relative_attention_max_distance' is smaller than half the bucket count".into(),
            ));
        }
        crate::error::check_token_ids(path, "eos_token_id", &self.eos_token_id)?;
        crate::sizes::positive_f64(path, "layer_norm_epsilon", self.layer_norm_epsilon)?;
        if !(0.0..1.0).contains(&self.dropout_rate) {
            return Err(err(format!(
                "'dropout_rate' = {} is not in [0, 1)",
                self.dropout_rate
            )));
        }
        self.feed_forward().map_err(err)?;
        Ok(())
    }

    /// Decoder block count.
    pub fn decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    /// Whether decoder outputs are scaled by `d_model^-0.5` before the (tied) output layer:
    /// every checkpoint but those saying `"tie_word_embeddings": false`.
    pub fn scale_decoder_outputs(&self) -> bool {
        self.tie_word_embeddings != Some(false)
    }

    /// Parse `feed_forward_proj` (`gated-gelu` means the tanh GELU, `gelu_new`).
    pub fn feed_forward(&self) -> std::result::Result<FeedForwardKind, String> {
        let proj = self.feed_forward_proj.as_str();
        let (gated, act) = match proj.split_once('-') {
            Some(("gated", act)) => (true, act),
            None => (false, proj),
            Some(_) => return Err(format!("'feed_forward_proj' = '{proj}' is not [gated-]ACT")),
        };
        let act = if proj == "gated-gelu" {
            "gelu_new"
        } else {
            act
        };
        let act = Activation::from_hf_name(act)
            .ok_or_else(|| format!("'feed_forward_proj' = '{proj}': unknown activation '{act}'"))?;
        Ok(if gated {
            FeedForwardKind::Gated(act)
        } else {
            FeedForwardKind::Dense(act)
        })
    }

    /// Declared end-of-sequence ids (an int or a list in the file; default `[1]`).
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|v| vec![v as u32]).unwrap_or_default()
            }
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as u32)
                .collect(),
            _ => vec![1],
        }
    }
}
