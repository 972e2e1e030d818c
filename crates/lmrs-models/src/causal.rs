//! Decoder-only models behind one type: [`CausalModel`], built from an HF folder
//! (`config.json` + safetensors) or a GGUF file, whichever the user points at.

use crate::catalogue::{self, Family, Role};
use crate::gemma3::{Gemma3, Gemma3Config};
use crate::gpt2::{Gpt2, Gpt2Config};
use crate::llama::{Llama, LlamaConfig};
use crate::{ModelError, Result};
use lmrs_core::{CausalLm, DType, Device, LogitsFor, SpecialTokens, Tensor};
use lmrs_io::{Adapter, GgufFile, GgufModel, ModelFiles, Weights};
use lmrs_nn::CausalCache;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// A loaded decoder-only language model.
#[derive(Debug, Clone)]
pub enum CausalModel {
    /// Llama, SmolLM2, TinyLlama, Mistral, Qwen2.
    Llama(Llama),
    /// GPT-2.
    Gpt2(Gpt2),
    /// Gemma 3 (text).
    Gemma3(Gemma3),
}

/// Build the model a config describes, reading tensors from `w`.
fn build(config: Value, source: &Path, w: &Weights) -> Result<CausalModel> {
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("(missing)")
        .to_string();
    let family = catalogue::by_model_type(&model_type)
        .filter(|a| a.role == Role::Causal)
        .map(|a| a.family);
    match family {
        Some(Family::Llama) => Ok(CausalModel::Llama(Llama::load(
            w,
            LlamaConfig::from_value(config, source)?,
        )?)),
        Some(Family::Gpt2) => Ok(CausalModel::Gpt2(Gpt2::load(
            w,
            Gpt2Config::from_value(config, source)?,
        )?)),
        Some(Family::Gemma3) => Ok(CausalModel::Gemma3(Gemma3::load(
            w,
            Gemma3Config::from_value(text_config(config), source)?,
        )?)),
        _ => Err(ModelError::UnknownModelType {
            found: model_type,
            path: source.display().to_string(),
            supported: catalogue::model_types(Role::Causal),
        }),
    }
}

/// Build a decoder-only model from a config and the weights a caller prepared (training
/// loads through trainable [`Weights`]).
pub fn load_causal_from(config: Value, source: &Path, w: &Weights) -> Result<CausalModel> {
    build(config, source, w)
}

/// Multimodal Gemma 3 configs nest the language model under `text_config`.
fn text_config(config: Value) -> Value {
    match config.get("text_config") {
        Some(t) if t.is_object() => t.clone(),
        _ => config,
    }
}

/// Load a decoder-only model from an HF folder.
pub fn load_causal(files: &ModelFiles, device: &Device) -> Result<CausalModel> {
    load_causal_adapted(files, device, &[])
}

/// [`load_causal`] with LoRA adapters merged into the weights they adapt (PEFT folders,
/// applied in order); an adapter with modules the model lacks is an error naming them.
pub fn load_causal_adapted(
    files: &ModelFiles,
    device: &Device,
    adapters: &[Arc<Adapter>],
) -> Result<CausalModel> {
    let config: Value = lmrs_io::read_json(&files.config)?;
    let w =
        Weights::from_files(&files.weights, device, DType::F32)?.with_adapters(adapters.to_vec());
    let model = build(config, &files.config, &w)?;
    adapters.iter().try_for_each(|a| a.check_all_used())?;
    Ok(model)
}

/// Load a decoder-only model from a GGUF file (quantized projections stay quantized).
pub fn load_causal_gguf(file: Arc<GgufFile>, device: &Device) -> Result<CausalModel> {
    load_causal_gguf_adapted(file, device, &[])
}

/// [`load_causal_gguf`] with LoRA adapters merged in: the projections they adapt are
/// dequantized and run dense, the others stay quantized.
pub fn load_causal_gguf_adapted(
    file: Arc<GgufFile>,
    device: &Device,
    adapters: &[Arc<Adapter>],
) -> Result<CausalModel> {
    let path = file.path().to_path_buf();
    let gguf = GgufModel::new(file)?;
    let w = Weights::from_gguf(gguf.file.clone(), gguf.names.clone(), device, DType::F32)
        .with_adapters(adapters.to_vec());
    let model = build(gguf.config, &path, &w)?;
    adapters.iter().try_for_each(|a| a.check_all_used())?;
    Ok(model)
}

/// Run `$body` with `$m` bound to the inner model, whatever the architecture.
macro_rules! each {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            CausalModel::Llama($m) => $body,
            CausalModel::Gpt2($m) => $body,
            CausalModel::Gemma3($m) => $body,
        }
    };
}

impl CausalModel {
    /// The training forward pass: logits `(b, t, vocab)` at every position of right-padded
    /// `input_ids` with `attention_mask` (both `(b, t)`), no cache.
    pub fn forward_train(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> lmrs_core::Result<Tensor> {
        each!(self, m => m.forward_train(input_ids, attention_mask))
    }
}

impl CausalLm for CausalModel {
    type Cache = CausalCache;

    fn new_cache(&self, left_padding: &[usize], max_len: usize) -> lmrs_core::Result<CausalCache> {
        each!(self, m => m.new_cache(left_padding, max_len))
    }

    fn forward(
        &self,
        input_ids: &Tensor,
        cache: &mut CausalCache,
        logits: LogitsFor,
    ) -> lmrs_core::Result<Option<Tensor>> {
        each!(self, m => m.forward(input_ids, cache, logits))
    }

    fn special_tokens(&self) -> SpecialTokens {
        each!(self, m => m.special_tokens())
    }

    fn vocab_size(&self) -> usize {
        each!(self, m => m.vocab_size())
    }

    fn max_positions(&self) -> usize {
        each!(self, m => m.max_positions())
    }
}
