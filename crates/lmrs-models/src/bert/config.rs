//! `config.json` of a BERT checkpoint, typed once.

use crate::{ModelError, Result};
use lmrs_nn::Activation;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// BERT's `config.json` (field names and defaults as in `transformers`' `BertConfig`); RoBERTa
/// and XLM-RoBERTa checkpoints use the same fields, DistilBERT its own names (`dim`, `n_layers`,
/// `n_heads`, `hidden_dim`, `activation`), read as aliases.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// `bert`, `roberta` or `xlm-roberta` (decides how positions are numbered).
    #[serde(default)]
    pub model_type: Option<String>,
    /// Token vocabulary rows (default 30522).
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Hidden size (default 768).
    #[serde(default = "d_hidden", alias = "dim")]
    pub hidden_size: usize,
    /// Encoder layers (default 12).
    #[serde(default = "d_layers", alias = "n_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads (default 12).
    #[serde(default = "d_heads", alias = "n_heads")]
    pub num_attention_heads: usize,
    /// Feed-forward inner size (default 3072).
    #[serde(default = "d_inter", alias = "hidden_dim")]
    pub intermediate_size: usize,
    /// Feed-forward activation (default `"gelu"`, the exact erf form).
    #[serde(default = "d_act", alias = "activation")]
    pub hidden_act: String,
    /// Rows of the absolute position table: the longest input (default 512).
    #[serde(default = "d_pos")]
    pub max_position_embeddings: usize,
    /// Segment (token type) table rows (default 2).
    #[serde(default = "d_types")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (default 1e-12).
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// Padding id (default 0).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Only `"absolute"` (the default) is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    /// Class names of a classification head, by index (keys are decimal strings in the file).
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    /// `"single_label_classification"` (softmax), `"multi_label_classification"` (sigmoid) or
    /// `"regression"`, when the checkpoint says.
    #[serde(default)]
    pub problem_type: Option<String>,
    /// The `transformers` classes the checkpoint was saved from (`BertModel`,
    /// `BertForSequenceClassification`...).
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    /// Dropout after the embeddings and inside every layer, in training only (default 0.1;
    /// DistilBERT's `dropout`).
    #[serde(default = "d_dropout", alias = "dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on the attention probabilities, in training only (default 0.1; DistilBERT's
    /// `attention_dropout`).
    #[serde(default = "d_dropout", alias = "attention_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Dropout before a classification head's output layer; `None` falls back to
    /// `hidden_dropout_prob` (DistilBERT's `seq_classif_dropout`, default 0.2 there).
    #[serde(default, alias = "seq_classif_dropout")]
    pub classifier_dropout: Option<f64>,
    /// Standard deviation of the normal initialization of new layers (default 0.02).
    #[serde(default = "d_init_range")]
    pub initializer_range: f64,
    /// Where the config came from (for error messages).
    #[serde(skip)]
    pub source: std::path::PathBuf,
}

fn d_vocab() -> usize {
    30522
}
fn d_hidden() -> usize {
    768
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_inter() -> usize {
    3072
}
fn d_act() -> String {
    "gelu".into()
}
fn d_pos() -> usize {
    512
}
fn d_types() -> usize {
    2
}
fn d_eps() -> f64 {
    1e-12
}
fn d_dropout() -> f64 {
    0.1
}
fn d_init_range() -> f64 {
    0.02
}

/// The member of the BERT family a `model_type` names; decides key names, position numbering
/// and whether there is a token type table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `bert` (and anything unnamed).
    Bert,
    /// `roberta`, `xlm-roberta`, `camembert`.
    Roberta,
    /// `distilbert`: no token types; `transformer.layer.N` with `q_lin`... names.
    DistilBert,
}

/// How token positions are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionIds {
    /// `0..len` (BERT).
    FromZero,
    /// `padding_idx + 1 ..` for real tokens, `padding_idx` for padding (RoBERTa, XLM-R: fairseq's
    /// `make_positions`); the table's first `padding_idx + 1` rows are never used by text.
    AfterPadding(u32),
}

impl BertConfig {
    /// Read and validate a BERT `config.json`.
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
                ("hidden_size", self.hidden_size),
                ("num_hidden_layers", self.num_hidden_layers),
                ("num_attention_heads", self.num_attention_heads),
                ("intermediate_size", self.intermediate_size),
                ("max_position_embeddings", self.max_position_embeddings),
            ],
        )?;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(err(format!(
                "'hidden_size' {} is not a multiple of 'num_attention_heads' {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        crate::sizes::positive_f64(path, "layer_norm_eps", self.layer_norm_eps)?;
        for (name, p) in [
            ("hidden_dropout_prob", Some(self.hidden_dropout_prob)),
            (
                "attention_probs_dropout_prob",
                Some(self.attention_probs_dropout_prob),
            ),
            ("classifier_dropout", self.classifier_dropout),
        ] {
            if let Some(p) = p.filter(|p| !(0.0..1.0).contains(p)) {
                return Err(err(format!("'{name}' = {p} is not in [0, 1)")));
            }
        }
        self.activation().map_err(err)?;
        if let PositionIds::AfterPadding(p) = self.position_ids() {
            if self.max_position_embeddings <= p as usize + 2 {
                return Err(err(format!(
                    "'max_position_embeddings' {} leaves no positions after padding_idx {p}",
                    self.max_position_embeddings
                )));
            }
        }
        match self.position_embedding_type.as_deref() {
            None | Some("absolute") => {}
            Some(other) => {
                return Err(err(format!(
                    "'position_embedding_type' = '{other}' is not supported (only 'absolute')"
                )))
            }
        }
        Ok(())
    }

    /// The feed-forward activation parsed from `hidden_act`.
    pub fn activation(&self) -> std::result::Result<Activation, String> {
        Activation::from_hf_name(&self.hidden_act)
            .ok_or_else(|| format!("'hidden_act' = '{}' is not supported", self.hidden_act))
    }

    /// Number of labels of a classification head: the size of `id2label` (default 2, as in
    /// `transformers`).
    pub fn num_labels(&self) -> usize {
        self.id2label.as_ref().map_or(2, |m| m.len().max(1))
    }

    /// Label names by index; `LABEL_i` where `id2label` has no entry.
    pub fn labels(&self) -> Vec<String> {
        (0..self.num_labels())
            .map(|i| {
                self.id2label
                    .as_ref()
                    .and_then(|m| m.get(&i.to_string()).cloned())
                    .unwrap_or_else(|| format!("LABEL_{i}"))
            })
            .collect()
    }

    /// The dropout of a classification head: `classifier_dropout`, else DistilBERT's
    /// default 0.2, else `hidden_dropout_prob` (as each `*ForSequenceClassification` reads it).
    pub fn head_dropout(&self) -> f64 {
        match (self.classifier_dropout, self.family()) {
            (Some(p), _) => p,
            (None, Family::DistilBert) => 0.2,
            (None, _) => self.hidden_dropout_prob,
        }
    }

    /// Every dropout probability set to `p` (`lmrs train --dropout`).
    pub fn set_dropout(&mut self, p: f64) {
        self.hidden_dropout_prob = p;
        self.attention_probs_dropout_prob = p;
        self.classifier_dropout = Some(p);
    }

    /// The family member `model_type` names.
    pub fn family(&self) -> Family {
        match self.model_type.as_deref() {
            Some("roberta" | "xlm-roberta" | "camembert") => Family::Roberta,
            Some("distilbert") => Family::DistilBert,
            _ => Family::Bert,
        }
    }

    /// The position numbering of this `model_type`.
    pub fn position_ids(&self) -> PositionIds {
        match self.family() {
            Family::Roberta => PositionIds::AfterPadding(self.pad_token_id.unwrap_or(1)),
            _ => PositionIds::FromZero,
        }
    }

    /// The longest input in tokens: the position table, less the rows RoBERTa-style numbering
    /// skips (514 → 512).
    pub fn max_input_tokens(&self) -> usize {
        match self.position_ids() {
            PositionIds::FromZero => self.max_position_embeddings,
            PositionIds::AfterPadding(p) => self.max_position_embeddings - p as usize - 1,
        }
    }

    /// Per-head size.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
