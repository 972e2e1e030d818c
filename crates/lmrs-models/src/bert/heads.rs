//! Task heads on the BERT (and RoBERTa) trunk: `BertForSequenceClassification`, `BertForTokenClassification`
//! and `BertForMaskedLM`.

use super::config::BertConfig;
use super::model::BertModel;
use crate::{ModelError, Result as LoadResult};
use lmrs_core::{Encoder, Module, Result, Tensor};
use lmrs_io::Weights;
use lmrs_nn::{Activation, LayerNorm, Linear};

/// The classification head variants.
#[derive(Debug, Clone)]
enum SequenceHead {
    /// BERT: `classifier(pooler(h))`, the pooler being `tanh(dense(h[CLS]))`.
    Pooler(Linear),
    /// RoBERTa's `RobertaClassificationHead`: `out_proj(tanh(dense(h[<s>])))`, no pooler.
    Roberta { dense: Linear, out_proj: Linear },
    /// DistilBERT: `classifier(relu(pre_classifier(h[CLS])))`.
    DistilBert {
        pre_classifier: Linear,
        classifier: Linear,
    },
}

/// `BertForSequenceClassification` (and `RobertaForSequenceClassification`): one logit per
/// label from the first token.
#[derive(Debug, Clone)]
pub struct BertForSequenceClassification {
    bert: BertModel,
    head: SequenceHead,
    /// The head's dropout ([`BertConfig::head_dropout`]), in training only: before the
    /// classifier (BERT, DistilBERT), before both head layers (RoBERTa).
    dropout: f64,
}

impl BertForSequenceClassification {
    /// Build from a checkpoint with `classifier.weight` and a pooler (BERT) or
    /// `classifier.dense` + `classifier.out_proj` (RoBERTa). A checkpoint without them (a bare
    /// encoder, a sentence-transformers folder) is an error saying so.
    pub fn load(w: &Weights, cfg: BertConfig) -> LoadResult<Self> {
        let (labels, d) = (cfg.num_labels(), cfg.hidden_size);
        let head = if w.contains("pre_classifier.weight") {
            SequenceHead::DistilBert {
                pre_classifier: Linear::load(&w.pp("pre_classifier"), d, d, true)?,
                classifier: Linear::load(&w.pp("classifier"), d, labels, true)?,
            }
        } else if w.contains("classifier.out_proj.weight") {
            SequenceHead::Roberta {
                dense: Linear::load(&w.pp("classifier.dense"), d, d, true)?,
                out_proj: Linear::load(&w.pp("classifier.out_proj"), d, labels, true)?,
            }
        } else {
            let no_head = |what: &str| missing_head(&cfg, "sequence-classification", what);
            if !w.contains("classifier.weight") {
                return Err(no_head("classifier.weight"));
            }
            if !BertModel::trunk(w).contains("pooler.dense.weight") {
                return Err(no_head("pooler.dense.weight"));
            }
            SequenceHead::Pooler(Linear::load(&w.pp("classifier"), d, labels, true)?)
        };
        Ok(Self {
            head,
            dropout: cfg.head_dropout(),
            bert: BertModel::load(w, cfg)?,
        })
    }

    /// Logits `(b, num_labels)` for a right-padded batch (shapes as in [`Encoder::encode`]).
    pub fn classify(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        token_type_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        let hidden = self
            .bert
            .encode(input_ids, attention_mask, token_type_ids)?;
        let drop = |x: &Tensor| lmrs_nn::mode::dropout(x, self.dropout);
        match &self.head {
            SequenceHead::Pooler(classifier) => {
                let pooled = self.bert.pool(&hidden)?.ok_or_else(|| {
                    lmrs_core::Error::InvalidInput("the model has no pooler".into())
                })?;
                Ok(classifier.forward(&drop(&pooled)?)?)
            }
            SequenceHead::Roberta { dense, out_proj } => {
                let first = drop(&hidden.narrow(1, 0, 1)?.squeeze(1)?)?;
                Ok(out_proj.forward(&drop(&dense.forward(&first)?.tanh()?)?)?)
            }
            SequenceHead::DistilBert {
                pre_classifier,
                classifier,
            } => {
                let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
                let h = drop(&pre_classifier.forward(&first)?.relu()?)?;
                Ok(classifier.forward(&h)?)
            }
        }
    }

    /// The model's configuration.
    pub fn config(&self) -> &BertConfig {
        self.bert.config()
    }

    /// The trunk.
    pub fn bert(&self) -> &BertModel {
        &self.bert
    }
}

/// The error for a checkpoint that lacks the head a task needs.
fn missing_head(cfg: &BertConfig, head: &str, what: &str) -> ModelError {
    ModelError::Config {
        path: "config.json".into(),
        message: format!(
            "this checkpoint has no {head} head ({what} missing; saved from {})",
            cfg.architectures
                .as_ref()
                .map_or("an unnamed class".to_string(), |a| a.join(", "))
        ),
    }
}

/// `BertForTokenClassification`: a `classifier` linear layer on every token's hidden state.
#[derive(Debug, Clone)]
pub struct BertForTokenClassification {
    bert: BertModel,
    classifier: Linear,
}

impl BertForTokenClassification {
    /// Build from a checkpoint with `classifier.weight` `(num_labels, hidden)`.
    pub fn load(w: &Weights, cfg: BertConfig) -> LoadResult<Self> {
        if !w.contains("classifier.weight") {
            return Err(missing_head(
                &cfg,
                "token-classification",
                "classifier.weight",
            ));
        }
        let (labels, hidden) = (cfg.num_labels(), cfg.hidden_size);
        Ok(Self {
            classifier: Linear::load(&w.pp("classifier"), hidden, labels, true)?,
            bert: BertModel::load(w, cfg)?,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &BertConfig {
        self.bert.config()
    }

    /// Logits `(b, s, num_labels)`.
    pub fn classify_tokens(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        token_type_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        let hidden = self
            .bert
            .encode(input_ids, attention_mask, token_type_ids)?;
        Ok(self.classifier.forward(&hidden)?)
    }

    /// The trunk.
    pub fn bert(&self) -> &BertModel {
        &self.bert
    }
}

/// `BertForMaskedLM` / `RobertaForMaskedLM`: `cls.predictions` (`lm_head`) — dense, activation,
/// LayerNorm, then the decoder tied to the word embeddings (or its own `decoder.weight`) plus
/// the output bias.
#[derive(Debug, Clone)]
pub struct BertForMaskedLM {
    bert: BertModel,
    dense: Linear,
    act: Activation,
    layer_norm: LayerNorm,
    decoder: Linear,
}

impl BertForMaskedLM {
    /// Build from a checkpoint with a `cls.predictions` head (BERT), an `lm_head` (RoBERTa,
    /// whose head always uses the erf GELU) or `vocab_transform`/`vocab_projector`
    /// (DistilBERT).
    pub fn load(w: &Weights, cfg: BertConfig) -> LoadResult<Self> {
        let config_act = || {
            cfg.activation().map_err(|message| ModelError::Config {
                path: "config.json".into(),
                message,
            })
        };
        // (dense, layer norm, output bias, own decoder weight) keys and the activation.
        let (names, act) = if w.contains("lm_head.dense.weight") {
            let n = [
                "lm_head.dense",
                "lm_head.layer_norm",
                "lm_head.bias",
                "lm_head.decoder",
            ];
            (n, Activation::GeluErf)
        } else if w.contains("vocab_transform.weight") {
            let n = [
                "vocab_transform",
                "vocab_layer_norm",
                "vocab_projector.bias",
                "vocab_projector",
            ];
            (n, config_act()?)
        } else if w.contains("cls.predictions.transform.dense.weight") {
            let n = [
                "cls.predictions.transform.dense",
                "cls.predictions.transform.LayerNorm",
                "cls.predictions.bias",
                "cls.predictions.decoder",
            ];
            (n, config_act()?)
        } else {
            return Err(missing_head(
                &cfg,
                "masked-language-modelling",
                "cls.predictions.transform.dense.weight",
            ));
        };
        let [dense, norm, bias, decoder] = names;
        let (d, v) = (cfg.hidden_size, cfg.vocab_size);
        let dense = Linear::load(&w.pp(dense), d, d, true)?;
        let layer_norm = LayerNorm::load(&w.pp(norm), d, cfg.layer_norm_eps)?;
        let bias = if w.contains(bias) {
            w.get(bias, &[v])?
        } else {
            w.pp(decoder).get("bias", &[v])?
        };
        let bert = BertModel::load(w, cfg)?;
        let weight = if w.pp(decoder).contains("weight") {
            lmrs_io::MatrixWeight::Dense(w.pp(decoder).get("weight", &[v, d])?)
        } else {
            bert.word_embeddings()
        };
        Ok(Self {
            decoder: Linear::from_matrix(weight, Some(bias))?,
            bert,
            dense,
            act,
            layer_norm,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &BertConfig {
        self.bert.config()
    }

    /// Vocabulary logits `(b, s, vocab)`.
    pub fn logits(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        token_type_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        let hidden = self
            .bert
            .encode(input_ids, attention_mask, token_type_ids)?;
        let h = self.act.apply(&self.dense.forward(&hidden)?)?;
        Ok(self.decoder.forward(&self.layer_norm.forward(&h)?)?)
    }

    /// The trunk.
    pub fn bert(&self) -> &BertModel {
        &self.bert
    }
}
