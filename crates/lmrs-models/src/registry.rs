//! Loading encoder-decoder and encoder models: the [`crate::catalogue`] entry of the
//! `model_type` in `config.json` picks the builder.

use crate::bert::{
    BertConfig, BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification,
    BertModel,
};
use crate::catalogue::{self, Family, Role};
use crate::t5::{T5Config, T5ForConditionalGeneration};
use crate::{ModelError, Result};
use lmrs_core::{DType, Device, Encoder, Tensor};
use lmrs_io::{ModelFiles, Weights};

/// The family that builds `model_type` when it has `role`.
fn family(model_type: Option<&str>, role: Role) -> Option<Family> {
    catalogue::by_model_type(model_type?)
        .filter(|a| a.role == role)
        .map(|a| a.family)
}

/// The error for a `model_type` no family of `role` builds.
fn unknown(model_type: Option<String>, files: &ModelFiles, role: Role) -> ModelError {
    ModelError::UnknownModelType {
        found: model_type.unwrap_or_else(|| "(missing)".into()),
        path: files.config.display().to_string(),
        supported: catalogue::model_types(role),
    }
}

/// An encoder-decoder model of any supported architecture.
#[derive(Debug, Clone)]
pub enum Seq2SeqModel {
    /// T5 / mT5 / FLAN-T5.
    T5(T5ForConditionalGeneration),
}

/// Build the encoder-decoder model in `files`, in f32 on `device`.
pub fn load_seq2seq(files: &ModelFiles, device: &Device) -> Result<Seq2SeqModel> {
    load_seq2seq_adapted(files, device, &[])
}

/// [`load_seq2seq`] with PEFT LoRA adapters merged into the weights they adapt; an adapter
/// with modules the model lacks is an error naming them.
pub fn load_seq2seq_adapted(
    files: &ModelFiles,
    device: &Device,
    adapters: &[std::sync::Arc<lmrs_io::Adapter>],
) -> Result<Seq2SeqModel> {
    let model_type = lmrs_io::model_type(&files.config)?;
    let model = match family(model_type.as_deref(), Role::Seq2Seq) {
        Some(Family::T5) => {
            let cfg = T5Config::from_file(&files.config)?;
            let weights = Weights::from_files(&files.weights, device, DType::F32)?
                .with_adapters(adapters.to_vec());
            Seq2SeqModel::T5(T5ForConditionalGeneration::load(&weights, cfg)?)
        }
        _ => return Err(unknown(model_type, files, Role::Seq2Seq)),
    };
    adapters.iter().try_for_each(|a| a.check_all_used())?;
    Ok(model)
}

impl lmrs_core::Seq2SeqLm for Seq2SeqModel {
    type Cache = crate::t5::T5Cache;

    fn encode(
        &self,
        input_ids: &lmrs_core::Tensor,
        attention_mask: &lmrs_core::Tensor,
    ) -> lmrs_core::Result<lmrs_core::Tensor> {
        match self {
            Self::T5(m) => m.encode(input_ids, attention_mask),
        }
    }

    fn new_cache(
        &self,
        encoder_hidden: &lmrs_core::Tensor,
        attention_mask: &lmrs_core::Tensor,
        max_decode_len: usize,
    ) -> lmrs_core::Result<Self::Cache> {
        match self {
            Self::T5(m) => m.new_cache(encoder_hidden, attention_mask, max_decode_len),
        }
    }

    fn decode(
        &self,
        decoder_input_ids: &lmrs_core::Tensor,
        cache: &mut Self::Cache,
    ) -> lmrs_core::Result<lmrs_core::Tensor> {
        match self {
            Self::T5(m) => m.decode(decoder_input_ids, cache),
        }
    }

    fn special_tokens(&self) -> lmrs_core::SpecialTokens {
        match self {
            Self::T5(m) => m.special_tokens(),
        }
    }

    fn vocab_size(&self) -> usize {
        match self {
            Self::T5(m) => m.vocab_size(),
        }
    }
}

impl Seq2SeqModel {
    /// `task_specific_params` of the checkpoint's config (prefixes and per-task settings).
    pub fn task_specific_params(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        match self {
            Self::T5(m) => m.config().task_specific_params.as_ref(),
        }
    }

    /// The longest input the model was trained on, when the config says (T5: `n_positions`).
    pub fn max_input_tokens(&self) -> Option<usize> {
        match self {
            Self::T5(m) => m.config().n_positions,
        }
    }
}

/// An encoder-only model of any supported architecture.
#[derive(Debug, Clone)]
pub enum EncoderModel {
    /// BERT / MiniLM / RoBERTa / XLM-R / DistilBERT (and sentence-transformers models built on
    /// them).
    Bert(BertModel),
}

/// Build the encoder-only model in `files`, in f32 on `device`.
pub fn load_encoder(files: &ModelFiles, device: &Device) -> Result<EncoderModel> {
    let model_type = lmrs_io::model_type(&files.config)?;
    match family(model_type.as_deref(), Role::Encoder) {
        Some(Family::Bert) => {
            let cfg = BertConfig::from_file(&files.config)?;
            let weights = Weights::from_files(&files.weights, device, DType::F32)?;
            Ok(EncoderModel::Bert(BertModel::load(&weights, cfg)?))
        }
        _ => Err(unknown(model_type, files, Role::Encoder)),
    }
}

impl Encoder for EncoderModel {
    fn encode(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        token_type_ids: Option<&Tensor>,
    ) -> lmrs_core::Result<Tensor> {
        match self {
            Self::Bert(m) => m.encode(input_ids, attention_mask, token_type_ids),
        }
    }

    fn hidden_size(&self) -> usize {
        match self {
            Self::Bert(m) => m.hidden_size(),
        }
    }

    fn max_positions(&self) -> usize {
        match self {
            Self::Bert(m) => m.max_positions(),
        }
    }

    fn vocab_size(&self) -> usize {
        match self {
            Self::Bert(m) => m.vocab_size(),
        }
    }
}

/// A sequence-classification model (an encoder with a classifier head).
#[derive(Debug, Clone)]
pub enum SequenceClassifier {
    /// `BertForSequenceClassification`.
    Bert(BertForSequenceClassification),
}

/// Load a BERT-family head: read the config, map the weights, build with `build`; config
/// errors from the head name the config file.
fn load_bert_head<T>(
    files: &ModelFiles,
    device: &Device,
    build: impl FnOnce(&Weights, BertConfig) -> Result<T>,
) -> Result<T> {
    let model_type = lmrs_io::model_type(&files.config)?;
    match family(model_type.as_deref(), Role::Encoder) {
        Some(Family::Bert) => {
            let cfg = BertConfig::from_file(&files.config)?;
            let weights = Weights::from_files(&files.weights, device, DType::F32)?;
            build(&weights, cfg).map_err(|e| match e {
                ModelError::Config { message, .. } => ModelError::Config {
                    path: files.config.display().to_string(),
                    message,
                },
                e => e,
            })
        }
        _ => Err(unknown(model_type, files, Role::Encoder)),
    }
}

/// Build the sequence classifier in `files`, in f32 on `device`. A checkpoint without a
/// classification head is an error saying so.
pub fn load_sequence_classifier(files: &ModelFiles, device: &Device) -> Result<SequenceClassifier> {
    load_bert_head(files, device, |w, cfg| {
        Ok(SequenceClassifier::Bert(
            BertForSequenceClassification::load(w, cfg)?,
        ))
    })
}

impl SequenceClassifier {
    /// Logits `(b, num_labels)` for a right-padded batch.
    pub fn classify(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        token_type_ids: Option<&Tensor>,
    ) -> lmrs_core::Result<Tensor> {
        match self {
            Self::Bert(m) => m.classify(input_ids, attention_mask, token_type_ids),
        }
    }

    /// Label names by index (`id2label`).
    pub fn labels(&self) -> Vec<String> {
        match self {
            Self::Bert(m) => m.config().labels(),
        }
    }

    /// `problem_type` of the config, when set.
    pub fn problem_type(&self) -> Option<&str> {
        match self {
            Self::Bert(m) => m.config().problem_type.as_deref(),
        }
    }

    /// The longest input, in tokens, the model can take.
    pub fn max_positions(&self) -> usize {
        match self {
            Self::Bert(m) => m.bert().max_positions(),
        }
    }
}

/// A token-classification model (NER, POS tagging...).
#[derive(Debug, Clone)]
pub enum TokenClassifier {
    /// `BertForTokenClassification`.
    Bert(BertForTokenClassification),
}

/// Build the token classifier in `files`, in f32 on `device`.
pub fn load_token_classifier(files: &ModelFiles, device: &Device) -> Result<TokenClassifier> {
    load_bert_head(files, device, |w, cfg| {
        Ok(TokenClassifier::Bert(BertForTokenClassification::load(
            w, cfg,
        )?))
    })
}

impl TokenClassifier {
    /// Logits `(b, s, num_labels)` for a right-padded batch.
    pub fn classify_tokens(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        token_type_ids: Option<&Tensor>,
    ) -> lmrs_core::Result<Tensor> {
        match self {
            Self::Bert(m) => m.classify_tokens(input_ids, attention_mask, token_type_ids),
        }
    }

    /// Label names by index (`id2label`).
    pub fn labels(&self) -> Vec<String> {
        match self {
            Self::Bert(m) => m.config().labels(),
        }
    }

    /// The longest input, in tokens, the model can take.
    pub fn max_positions(&self) -> usize {
        match self {
            Self::Bert(m) => m.bert().max_positions(),
        }
    }
}

/// A masked language model (fill-mask).
#[derive(Debug, Clone)]
pub enum MaskedLm {
    /// `BertForMaskedLM`.
    Bert(BertForMaskedLM),
}

/// Build the masked language model in `files`, in f32 on `device`.
pub fn load_masked_lm(files: &ModelFiles, device: &Device) -> Result<MaskedLm> {
    load_bert_head(files, device, |w, cfg| {
        Ok(MaskedLm::Bert(BertForMaskedLM::load(w, cfg)?))
    })
}

impl MaskedLm {
    /// Vocabulary logits `(b, s, vocab)` for a right-padded batch.
    pub fn logits(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        token_type_ids: Option<&Tensor>,
    ) -> lmrs_core::Result<Tensor> {
        match self {
            Self::Bert(m) => m.logits(input_ids, attention_mask, token_type_ids),
        }
    }

    /// The longest input, in tokens, the model can take.
    pub fn max_positions(&self) -> usize {
        match self {
            Self::Bert(m) => m.bert().max_positions(),
        }
    }
}
