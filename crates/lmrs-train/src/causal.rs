//! Causal language-model fine-tuning (the Llama family: Llama, SmolLM2, Mistral, Qwen2), from
//! an HF folder or a GGUF file dequantized to f32, with the data layout of TRL's
//! `SFTTrainer` and the loss of `transformers`' `Trainer`:
//!
//! - plain text (`--input-field` only): the text's tokens as the tokenizer adds special
//!   tokens (a BOS for most), then EOS unless already last; the loss on every token;
//! - prompt/completion (`--input-field` and `--target-field`): the tokens of
//!   `prompt + completion`, then EOS; labels `-100` on the prompt's tokens, so the loss is on
//!   the completion only (TRL's `completion_only_loss`);
//! - truncated to `max_source_length` tokens from the start;
//! - right-padded with the pad id (the EOS id when the model has none), labels `-100` there;
//! - the loss: next-token cross-entropy (`logits[:, :-1]` against `labels[:, 1:]`), summed
//!   and divided by the step's count of `labels[:, 1:] != -100`, as `LlamaForCausalLM`'s loss
//!   does with the Trainer's `num_items_in_batch`.

use crate::loss::{token_loss, TokenLoss, IGNORE_INDEX};
use crate::objective::Objective;
use crate::tokenize::pad_right;
use crate::{Result, TrainError};
use lmrs_core::candle::Var;
use lmrs_core::{DType, Device, Tensor};
use lmrs_io::{GgufFile, GgufModel, ModelFiles, ModelSource, ParamStore, Weights};
use lmrs_models::CausalModel;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A tokenized sequence and its labels (`-100` where no loss is taken).
#[derive(Debug, Clone)]
pub struct CausalExample {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
}

/// A decoder-only model being fine-tuned.
pub struct CausalObjective {
    model: CausalModel,
    params: Arc<ParamStore>,
    tokenizer: tokenizers::Tokenizer,
    /// The HF folder it came from (`None` for a GGUF file: config and tokenizer are
    /// written from the file's metadata).
    files: Option<ModelFiles>,
    config: Value,
    pad: u32,
    eos: Option<u32>,
}

impl CausalObjective {
    /// Load an HF folder or a GGUF file for training in f32: every weight a variable (GGUF
    /// blocks dequantized).
    pub fn load(source: &ModelSource) -> Result<Self> {
        let params = Arc::new(ParamStore::new());
        let (config, origin, weights, tokenizer, files) = match source {
            ModelSource::HfFolder(dir) => {
                let files = ModelFiles::from_folder(dir)?;
                let config: Value = lmrs_io::read_json(&files.config)?;
                let w = Weights::from_files(&files.weights, &Device::Cpu, DType::F32)?;
                let tok = files.tokenizer.as_ref().ok_or_else(|| {
                    TrainError::Unsupported(format!("{} has no tokenizer.json", dir.display()))
                })?;
                let tokenizer = lmrs_io::load_tokenizer(tok)?;
                (config, files.config.clone(), w, tokenizer, Some(files))
            }
            ModelSource::Gguf(path) => {
                let file = Arc::new(GgufFile::open(path)?);
                let tokenizer = lmrs_io::tokenizer_from_gguf(file.content())?;
                let gguf = GgufModel::new(file)?;
                let w = Weights::from_gguf(
                    gguf.file.clone(),
                    gguf.names.clone(),
                    &Device::Cpu,
                    DType::F32,
                );
                (gguf.config, PathBuf::from(path), w, tokenizer, None)
            }
        };
        let model = lmrs_models::load_causal_from(
            config.clone(),
            &origin,
            &weights.trainable(params.clone()),
        )?;
        if !matches!(model, CausalModel::Llama(_)) {
            return Err(TrainError::Unsupported(format!(
                "{}: causal-lm training is built for the Llama family (Llama, SmolLM2, Mistral, Qwen2); GPT-2 and Gemma 3 are not yet",
                origin.display()
            )));
        }
        let special = lmrs_core::CausalLm::special_tokens(&model);
        let eos = special.eos.first().copied();
        let pad = special.pad.or(eos).unwrap_or(0);
        Ok(Self {
            model,
            params,
            tokenizer,
            files,
            config,
            pad,
            eos,
        })
    }

    /// Tokenize texts (`completions` `None`) or prompt/completion pairs; returns the
    /// examples and how many were truncated.
    pub fn tokenize(
        &self,
        prompts: &[String],
        completions: Option<&[String]>,
        max_length: usize,
    ) -> Result<(Vec<CausalExample>, usize)> {
        let encode = |text: &str| -> Result<Vec<u32>> {
            Ok(self
                .tokenizer
                .encode(text, true)
                .map_err(|e| TrainError::Tokenizer(e.to_string()))?
                .get_ids()
                .to_vec())
        };
        let mut cut = 0;
        let mut out = Vec::with_capacity(prompts.len());
        for (i, p) in prompts.iter().enumerate() {
            let (mut ids, masked) = match completions {
                Some(c) => (encode(&format!("{p}{}", c[i]))?, encode(p)?.len()),
                None => (encode(p)?, 0),
            };
            if let Some(e) = self.eos {
                if ids.last() != Some(&e) {
                    ids.push(e);
                }
            }
            if ids.len() > max_length {
                ids.truncate(max_length);
                cut += 1;
            }
            let labels = ids
                .iter()
                .enumerate()
                .map(|(j, &t)| if j < masked { IGNORE_INDEX } else { t as i64 })
                .collect();
            out.push(CausalExample {
                input_ids: ids,
                labels,
            });
        }
        Ok((out, cut))
    }

    /// `(input_ids, attention_mask)` `(b, t)` and the `b * (t - 1)` shifted labels.
    pub fn collate(&self, batch: &[&CausalExample]) -> Result<(Tensor, Tensor, Vec<i64>)> {
        if batch.is_empty() || batch.iter().any(|e| e.input_ids.len() < 2) {
            return Err(TrainError::Args(
                "a sequence of fewer than 2 tokens has nothing to predict".into(),
            ));
        }
        let rows: Vec<&[u32]> = batch.iter().map(|e| e.input_ids.as_slice()).collect();
        let (ids, mask, t) = pad_right(&rows, self.pad);
        let mut labels = Vec::with_capacity(batch.len() * (t - 1));
        for e in batch {
            // Position j predicts token j + 1.
            labels.extend(&e.labels[1..]);
            labels.extend(std::iter::repeat_n(IGNORE_INDEX, t - e.labels.len()));
        }
        let dev = Device::Cpu;
        let b = batch.len();
        Ok((
            Tensor::from_vec(ids, (b, t), &dev)?,
            Tensor::from_vec(mask, (b, t), &dev)?,
            labels,
        ))
    }

    /// The model.
    pub fn model(&self) -> &CausalModel {
        &self.model
    }
}

impl Objective for CausalObjective {
    type Example = CausalExample;

    fn counted_tokens(&self, ex: &CausalExample) -> usize {
        ex.labels[1.min(ex.labels.len())..]
            .iter()
            .filter(|&&l| l != IGNORE_INDEX)
            .count()
    }

    fn length(&self, ex: &CausalExample) -> usize {
        ex.input_ids.len()
    }

    fn loss(&self, batch: &[&CausalExample], label_smoothing: f64) -> Result<TokenLoss> {
        let (ids, mask, labels) = self.collate(batch)?;
        let logits = self.model.forward_train(&ids, &mask)?;
        let (b, t, v) = logits.dims3()?;
        // (b, t, vocab) -> the first t - 1 positions of each row -> (b * (t - 1), vocab).
        let shifted = logits.narrow(1, 0, t - 1)?.reshape((b * (t - 1), v))?;
        token_loss(&shifted, &labels, label_smoothing)
    }

    fn params(&self) -> Vec<(String, Var)> {
        self.params.vars()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        match &self.files {
            Some(files) => crate::checkpoint::save_hf_folder(&self.params.vars(), files, dir),
            None => {
                // From a GGUF file: the weights, and the config and tokenizer its metadata
                // describes, as an HF folder.
                let tensors = self
                    .params
                    .vars()
                    .into_iter()
                    .map(|(k, v)| Ok((k, v.as_tensor().contiguous()?)))
                    .collect::<Result<_>>()?;
                std::fs::create_dir_all(dir).map_err(crate::error::file_err(dir))?;
                let mut meta = std::collections::HashMap::new();
                meta.insert("format".to_string(), "pt".to_string());
                crate::checkpoint::write_safetensors(
                    &tensors,
                    Some(meta),
                    &dir.join("model.safetensors"),
                )?;
                crate::state::write_json(&self.config, &dir.join("config.json"))?;
                let tok = dir.join("tokenizer.json");
                self.tokenizer
                    .save(&tok, false)
                    .map_err(|e| TrainError::Tokenizer(format!("{}: {e}", tok.display())))
            }
        }
    }
}
