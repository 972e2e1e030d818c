//! Causal language-model fine-tuning (the Llama family: Llama, SmolLM2, Mistral, Qwen2; GPT-2;
//! Gemma 3), from an HF folder or a GGUF file dequantized to f32, with the data layout of
//! TRL's `SFTTrainer` and the loss of `transformers`' `Trainer`:
//!
//! - plain text (`--input-field` only): the text's tokens as the tokenizer adds special
//!   tokens (a BOS for most), then EOS unless already last; the loss on every token;
//! - prompt/completion (`--input-field` and `--target-field`): the tokens of
//!   `prompt + completion`, then EOS; labels `-100` on the prompt's tokens, so the loss is on
//!   the completion only (TRL's `completion_only_loss`);
//! - truncated to `max_source_length` tokens from the start;
//! - right-padded with the pad id (the EOS id when the model has none), labels `-100` there;
//! - the loss: next-token cross-entropy (`logits[:, :-1]` against `labels[:, 1:]`), summed
//!   and divided by the step's count of `labels[:, 1:] != -100`, as the `*ForCausalLM` losses
//!   (Llama, GPT-2, Gemma 3) do with the Trainer's `num_items_in_batch`;
//! - conversations (the input field holds lists of `{"role", "content"}` messages, TRL's
//!   conversational format): rendered with the model's chat template and tokenized without
//!   added special tokens (the template writes them), no EOS appended (the template ends
//!   the turns); a `messages` list alone takes the loss on every token, a `prompt` list with
//!   a `completion` list on the completion only: the prompt rendered with
//!   `add_generation_prompt`, the whole conversation rendered, labels `-100` on the
//!   prompt's tokens;
//! - dropout: GPT-2's `embd_pdrop`/`attn_pdrop`/`resid_pdrop` (`--dropout` sets all three);
//!   the Llama family and Gemma 3 have none to apply (`attention_dropout` 0).

use crate::lora::LoraOptions;
use crate::loss::{token_loss, TokenLoss, IGNORE_INDEX};
use crate::objective::Objective;
use crate::tokenize::pad_right;
use crate::{Result, TrainError};
use lmrs_core::candle::Var;
use lmrs_core::{DType, Device, Tensor};
use lmrs_io::{GgufFile, GgufModel, LoraSpec, ModelFiles, ModelSource, ParamStore, Weights};
use lmrs_models::CausalModel;
use lmrs_pipelines::{ChatMessage, ChatTemplate};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A tokenized sequence and its labels (`-100` where no loss is taken).
#[derive(Debug, Clone)]
pub struct CausalExample {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
}

impl CausalExample {
    /// `input_ids` with the loss on every token from position `masked` on.
    fn new(input_ids: Vec<u32>, masked: usize) -> Self {
        let labels = input_ids
            .iter()
            .enumerate()
            .map(|(j, &t)| if j < masked { IGNORE_INDEX } else { t as i64 })
            .collect();
        Self { input_ids, labels }
    }

    /// [`Self::new`] on `input_ids` cut to `max_length` from the start (counted in `cut`).
    fn cut(mut input_ids: Vec<u32>, masked: usize, max_length: usize, cut: &mut usize) -> Self {
        if input_ids.len() > max_length {
            input_ids.truncate(max_length);
            *cut += 1;
        }
        Self::new(input_ids, masked)
    }
}

/// Where the chat template is read from once the model (and its special tokens) is loaded.
enum ChatSource {
    Folder(Option<Box<ChatTemplate>>),
    Gguf(Arc<GgufFile>),
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
    /// `config` differs from the source's `config.json` (a `--dropout` override): written
    /// instead of copied.
    config_changed: bool,
    /// The chat template of the folder or file, for conversational data.
    chat: Option<ChatTemplate>,
    /// Set for a LoRA run: only the adapters train, and `save` writes an adapter folder.
    lora: Option<LoraSpec>,
    /// The base model as the user named it (`base_model_name_or_path` of an adapter).
    base: String,
    pad: u32,
    eos: Option<u32>,
}

impl CausalObjective {
    /// Load an HF folder or a GGUF file for training in f32: every weight a variable (GGUF
    /// blocks dequantized). `dropout` overrides GPT-2's dropout probabilities; the other
    /// families apply none, and refuse a non-zero one.
    ///
    /// With `lora`, the base is frozen and the targeted projections get PEFT adapters
    /// (seeded by `seed`), started from `lora.adapter` when given; the run saves an adapter
    /// folder instead of the model.
    pub fn load(
        source: &ModelSource,
        dropout: Option<f64>,
        lora: Option<&LoraOptions>,
        seed: u64,
    ) -> Result<Self> {
        let (config, origin, weights, tokenizer, files, chat) = match source {
            ModelSource::HfFolder(dir) => {
                let files = ModelFiles::from_folder(dir)?;
                let config: Value = lmrs_io::read_json(&files.config)?;
                let w = Weights::from_files(&files.weights, &Device::Cpu, DType::F32)?;
                let tok = files.tokenizer.as_ref().ok_or_else(|| {
                    TrainError::Unsupported(format!("{} has no tokenizer.json", dir.display()))
                })?;
                let tokenizer = crate::tokenize::plain(lmrs_io::load_tokenizer(tok)?)?;
                let chat =
                    ChatSource::Folder(lmrs_pipelines::folder_chat_template(dir)?.map(Box::new));
                (
                    config,
                    files.config.clone(),
                    w,
                    tokenizer,
                    Some(files),
                    chat,
                )
            }
            ModelSource::Gguf(path) => {
                let file = Arc::new(GgufFile::open(path)?);
                let tokenizer =
                    crate::tokenize::plain(lmrs_io::tokenizer_from_gguf(file.content())?)?;
                let gguf = GgufModel::new(file.clone())?;
                let w = Weights::from_gguf(
                    gguf.file.clone(),
                    gguf.names.clone(),
                    &Device::Cpu,
                    DType::F32,
                );
                let chat = ChatSource::Gguf(file);
                (gguf.config, PathBuf::from(path), w, tokenizer, None, chat)
            }
        };
        let mut config = config;
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let lora_spec = lora.map(|o| o.spec(model_type, seed)).transpose()?;
        let params = Arc::new(match &lora_spec {
            Some(spec) => ParamStore::with_lora(spec.clone()),
            None => ParamStore::new(),
        });
        let config_changed = match dropout {
            Some(p) if !(0.0..1.0).contains(&p) => {
                return Err(TrainError::Args(format!("--dropout {p} is not in [0, 1)")));
            }
            Some(p) if config.get("model_type").and_then(Value::as_str) == Some("gpt2") => {
                for key in ["embd_pdrop", "attn_pdrop", "resid_pdrop"] {
                    config[key] = serde_json::json!(p);
                }
                true
            }
            Some(p) if p != 0.0 => {
                return Err(TrainError::Args(format!(
                    "--dropout {p}: {} has no dropout to set (the Llama family and Gemma 3 train without; GPT-2 takes it); pass 0 or leave it out",
                    origin.display()
                )));
            }
            _ => false,
        };
        let model = lmrs_models::load_causal_from(
            config.clone(),
            &origin,
            &weights.trainable(params.clone()),
        )?;
        if lora_spec.is_some() {
            crate::lora::check_and_init(&params, lora.and_then(|o| o.adapter.as_deref()))?;
        }
        let special = lmrs_core::CausalLm::special_tokens(&model);
        let chat = match chat {
            ChatSource::Folder(t) => t.map(|t| *t),
            ChatSource::Gguf(file) => {
                lmrs_pipelines::gguf_chat_template(&file, &tokenizer, &special)?
            }
        };
        let eos = special.eos.first().copied();
        let pad = special.pad.or(eos).unwrap_or(0);
        Ok(Self {
            model,
            params,
            tokenizer,
            files,
            config,
            config_changed,
            chat,
            lora: lora_spec,
            base: origin.display().to_string(),
            pad,
            eos,
        })
    }

    /// Token ids of `text`, with the tokenizer's special tokens when `special`.
    fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, special)
            .map_err(|e| TrainError::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec())
    }

    /// The LoRA settings when this is a LoRA run.
    pub fn lora(&self) -> Option<&LoraSpec> {
        self.lora.as_ref()
    }

    /// Tokenize texts (`completions` `None`) or prompt/completion pairs; returns the
    /// examples and how many were truncated.
    pub fn tokenize(
        &self,
        prompts: &[String],
        completions: Option<&[String]>,
        max_length: usize,
    ) -> Result<(Vec<CausalExample>, usize)> {
        let encode = |text: &str| self.encode(text, true);
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
            out.push(CausalExample::cut(ids, masked, max_length, &mut cut));
        }
        Ok((out, cut))
    }

    /// Tokenize conversations through the chat template: `messages` alone (loss on every
    /// token), or prompt conversations with their completions (loss on the completion only);
    /// returns the examples and how many were truncated. A model without a chat template is
    /// an error.
    pub fn tokenize_chat(
        &self,
        messages: &[Vec<ChatMessage>],
        completions: Option<&[Vec<ChatMessage>]>,
        max_length: usize,
    ) -> Result<(Vec<CausalExample>, usize)> {
        let template = self.chat.as_ref().ok_or_else(|| {
            TrainError::Unsupported(
                "conversational data needs a chat template, and the model has none (tokenizer_config.json chat_template, chat_template.jinja or GGUF tokenizer.chat_template); give plain text or prompt/completion strings".into(),
            )
        })?;
        // The template writes BOS and the turn markers: no special tokens added on top, as
        // `apply_chat_template(tokenize=True)` does.
        let encode = |text: &str| self.encode(text, false);
        let mut cut = 0;
        let mut out = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let (ids, masked) = match completions {
                Some(c) => {
                    let prompt = encode(&template.render(m, true)?)?;
                    let whole: Vec<ChatMessage> = m.iter().chain(&c[i]).cloned().collect();
                    (encode(&template.render(&whole, false)?)?, prompt.len())
                }
                None => (encode(&template.render(m, false)?)?, 0),
            };
            out.push(CausalExample::cut(ids, masked, max_length, &mut cut));
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

    fn in_layer_norm(&self, key: &str) -> bool {
        self.params.in_layer_norm(key)
    }

    fn params(&self) -> Vec<(String, Var)> {
        self.params.vars()
    }

    fn load_weights(&self, dir: &Path) -> Result<()> {
        crate::lora::load_trained(&self.params.vars(), self.lora.is_some(), dir)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        if let Some(spec) = &self.lora {
            crate::lora::save_adapter(&self.params.vars(), spec, "CAUSAL_LM", &self.base, dir)?;
            // The tokenizer beside the adapter, as Trainer.save_model leaves it.
            return match &self.files {
                Some(files) => crate::checkpoint::copy_tokenizer_files(files, dir),
                None => {
                    let tok = dir.join("tokenizer.json");
                    self.tokenizer
                        .save(&tok, false)
                        .map_err(|e| TrainError::Tokenizer(format!("{}: {e}", tok.display())))
                }
            };
        }
        match &self.files {
            Some(files) => {
                crate::checkpoint::save_hf_folder(&self.params.vars(), files, dir)?;
                if self.config_changed {
                    crate::state::write_json(&self.config, &dir.join("config.json"))?;
                }
                Ok(())
            }
            None => {
                // From a GGUF file: the weights, and the config and tokenizer its metadata
                // describes, as an HF folder. GPT-2 GGUFs store the projections `(out, in)`
                // (the config says so with `gguf_architecture`); HF's `Conv1D` layout is
                // `(in, out)`, so they are transposed back and the marker dropped.
                let mut config = self.config.clone();
                let transpose = config.get("model_type").and_then(Value::as_str) == Some("gpt2")
                    && config
                        .as_object_mut()
                        .and_then(|c| c.remove("gguf_architecture"))
                        .is_some();
                let conv1d = |k: &str| {
                    [".c_attn.weight", ".c_proj.weight", ".c_fc.weight"]
                        .iter()
                        .any(|s| k.ends_with(s))
                };
                let tensors = self
                    .params
                    .vars()
                    .into_iter()
                    .map(|(k, v)| {
                        let t = v.as_tensor();
                        let t = if transpose && conv1d(&k) {
                            t.t()?
                        } else {
                            t.clone()
                        };
                        Ok((k, t.contiguous()?))
                    })
                    .collect::<Result<_>>()?;
                std::fs::create_dir_all(dir).map_err(crate::error::file_err(dir))?;
                let mut meta = std::collections::HashMap::new();
                meta.insert("format".to_string(), "pt".to_string());
                crate::checkpoint::write_safetensors(
                    &tensors,
                    Some(meta),
                    &dir.join("model.safetensors"),
                )?;
                crate::state::write_json(&config, &dir.join("config.json"))?;
                let tok = dir.join("tokenizer.json");
                self.tokenizer
                    .save(&tok, false)
                    .map_err(|e| TrainError::Tokenizer(format!("{}: {e}", tok.display())))
            }
        }
    }
}
