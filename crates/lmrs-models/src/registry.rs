//! Which architectures lmrs builds, by the `model_type` of their `config.json`.

use crate::t5::{T5Config, T5ForConditionalGeneration};
use crate::{ModelError, Result};
use lmrs_core::{DType, Device};
use lmrs_io::{ModelFiles, Weights};

/// `model_type` values of encoder-decoder checkpoints lmrs can load.
pub const SEQ2SEQ_MODEL_TYPES: &[&str] = &["t5", "mt5"];

/// An encoder-decoder model of any supported architecture.
#[derive(Debug, Clone)]
pub enum Seq2SeqModel {
    /// T5 / mT5 / FLAN-T5.
    T5(T5ForConditionalGeneration),
}

/// Build the encoder-decoder model in `files`, in f32 on `device`.
pub fn load_seq2seq(files: &ModelFiles, device: &Device) -> Result<Seq2SeqModel> {
    let model_type = lmrs_io::model_type(&files.config)?;
    match model_type.as_deref() {
        Some("t5") | Some("mt5") => {
            let cfg = T5Config::from_file(&files.config)?;
            let weights = Weights::from_files(&files.weights, device, DType::F32)?;
            Ok(Seq2SeqModel::T5(T5ForConditionalGeneration::load(
                &weights, cfg,
            )?))
        }
        other => Err(ModelError::UnknownModelType {
            found: other.unwrap_or("(missing)").to_string(),
            path: files.config.display().to_string(),
            supported: SEQ2SEQ_MODEL_TYPES.join(", "),
        }),
    }
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
