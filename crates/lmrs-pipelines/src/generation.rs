//! Text generation, chat and instruction-following with a decoder-only model
//! (`transformers`' text-generation pipeline, `apply_chat_template` + `generate`).
//!
//! The model comes from a GGUF file (tokenizer and chat template read from its metadata) or an
//! HF folder (`tokenizer.json`, `tokenizer_config.json` / `chat_template.jinja`). With no model
//! given, front ends use [`default_model_path`]: SmolLM2-135M-Instruct, fetched by
//! `scripts/fetch-models.sh`.

use crate::chat_template::{ChatMessage, ChatTemplate};
use crate::seq2seq::{LoadOptions, RunOptions};
use crate::text::TextTokenizer;
use crate::{PipelineError, Result};
use lmrs_core::{CausalLm, Device, SpecialTokens};
use lmrs_generate::{generate_hooked, CausalSession, GenerationConfig, Hooks, ResolvedConfig};
use lmrs_io::{Adapter, GgufFile, ModelFiles, ModelSource};
use lmrs_models::{load_causal_adapted, load_causal_gguf_adapted, CausalModel};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// File name of the default model in lmrs's model cache.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// New tokens when neither the model's `generation_config.json` nor the caller sets a length
/// (transformers would stop after 20, which cuts most answers short).
pub const DEFAULT_MAX_NEW_TOKENS: usize = 256;

/// lmrs's model cache: `$LMRS_HOME/models`, else `~/.cache/lmrs/models`.
pub fn model_cache_dir() -> PathBuf {
    let home = std::env::var_os("LMRS_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lmrs")))
        .unwrap_or_else(|| PathBuf::from(".cache/lmrs"));
    home.join("models")
}

/// Where the default model lives (it may not have been fetched yet).
pub fn default_model_path() -> PathBuf {
    model_cache_dir().join(DEFAULT_MODEL_FILE)
}

/// The default model's path, or an error telling how to fetch it.
pub fn default_model() -> Result<PathBuf> {
    let path = default_model_path();
    if path.is_file() {
        Ok(path)
    } else {
        Err(PipelineError::Task(format!(
            "no --model given and the default model is not fetched yet ({}); fetch it with \
             `scripts/fetch-models.sh --default-only`",
            path.display()
        )))
    }
}

/// Why a sequence ended (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// The length limit.
    Length,
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Completion {
    /// Decoded new text (special tokens skipped; a matched stop string and what follows it
    /// removed).
    pub text: String,
    /// New token ids (EOS included when produced).
    pub token_ids: Vec<u32>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Beam score, for beam search.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

/// The result for one prompt.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CompletionOutput {
    /// `num_return_sequences` continuations, best first for beam search.
    pub completions: Vec<Completion>,
    /// Prompt length in tokens (after any truncation).
    pub prompt_tokens: usize,
    /// Whether the prompt was cut to fit the context window.
    pub truncated: bool,
    /// Milliseconds spent on the prompt (prefill) for this prompt's batch.
    pub prefill_ms: f64,
    /// Milliseconds spent generating (first step to last) for this prompt's batch.
    pub generate_ms: f64,
    /// Prompts in this prompt's batch.
    pub batch_size: usize,
}

/// Instruction used by [`TextGenerationPipeline::summarize`].
pub const SUMMARIZE_INSTRUCTION: &str =
    "Summarize the following text in a few sentences. Reply with the summary only.";

/// A decoder-only model with its tokenizer, chat template and default generation settings.
pub struct TextGenerationPipeline {
    model: CausalModel,
    tokenizer: TextTokenizer,
    chat_template: Option<ChatTemplate>,
    defaults: GenerationConfig,
    special: SpecialTokens,
    source: PathBuf,
    device: Device,
    /// Keep the last tokens of prompts that do not fit instead of failing.
    truncate_prompts: bool,
}

impl TextGenerationPipeline {
    /// Load from a GGUF file, a local folder or a hub id in the Hugging Face cache.
    pub fn load(reference: &str, opts: &LoadOptions) -> Result<Self> {
        let device = Device::Cpu;
        let adapters = Adapter::open_all(&opts.adapters)?;
        let mut p = match lmrs_io::resolve(reference, opts.revision.as_deref())? {
            ModelSource::Gguf(path) => Self::load_gguf(&path, &device, &adapters)?,
            ModelSource::HfFolder(dir) => Self::load_folder(&dir, &device, &adapters)?,
        };
        p.truncate_prompts = opts.max_input_tokens.is_some();
        Ok(p)
    }

    fn load_gguf(path: &Path, device: &Device, adapters: &[Arc<Adapter>]) -> Result<Self> {
        let file = Arc::new(GgufFile::open(path)?);
        // The model first: an unsupported architecture is the error to report, not the
        // tokenizer metadata such a file may lack.
        let model = load_causal_gguf_adapted(file.clone(), device, adapters)?;
        let tokenizer = lmrs_io::tokenizer_from_gguf(file.content())?;
        let special = model.special_tokens();
        let chat_template = crate::chat_source::gguf_chat_template(&file, &tokenizer, &special)?;
        // A generation_config.json beside the file is honoured (GGUF has no such metadata).
        let defaults = match path.parent().map(|d| d.join("generation_config.json")) {
            Some(g) if g.is_file() => GenerationConfig::from_file(&g)?,
            _ => GenerationConfig::default(),
        };
        Ok(Self {
            model,
            tokenizer: TextTokenizer::from_tokenizer(tokenizer, false),
            chat_template,
            defaults,
            special,
            source: path.to_path_buf(),
            device: device.clone(),
            truncate_prompts: false,
        })
    }

    fn load_folder(dir: &Path, device: &Device, adapters: &[Arc<Adapter>]) -> Result<Self> {
        let files = ModelFiles::from_folder(dir)?;
        let tokenizer = TextTokenizer::load(dir)?;
        let model = load_causal_adapted(&files, device, adapters)?;
        let defaults = match &files.generation_config {
            Some(p) => GenerationConfig::from_file(p)?,
            None => GenerationConfig::default(),
        };
        let chat_template = crate::chat_source::folder_chat_template(dir)?;
        Ok(Self {
            special: model.special_tokens(),
            model,
            tokenizer,
            chat_template,
            defaults,
            source: dir.to_path_buf(),
            device: device.clone(),
            truncate_prompts: false,
        })
    }

    /// The file or folder the model came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The loaded model.
    pub fn model(&self) -> &CausalModel {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The chat template, when the model has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// The model's own defaults (`generation_config.json`).
    pub fn defaults(&self) -> &GenerationConfig {
        &self.defaults
    }

    /// Keep the last tokens of over-long prompts instead of failing.
    pub fn set_truncate_prompts(&mut self, on: bool) {
        self.truncate_prompts = on;
    }

    /// The settings a run uses: the model's defaults, [`DEFAULT_MAX_NEW_TOKENS`] when no length
    /// is set anywhere, then `overrides`.
    pub fn effective_config(&self, overrides: &GenerationConfig) -> GenerationConfig {
        let mut cfg = self.defaults.clone();
        cfg.merge(overrides);
        if cfg.max_new_tokens.is_none() && cfg.max_length.is_none() {
            cfg.max_new_tokens = Some(DEFAULT_MAX_NEW_TOKENS);
        }
        cfg
    }

    /// [`Self::effective_config`] resolved against the model's special tokens.
    pub fn resolved_config(&self, overrides: &GenerationConfig) -> Result<ResolvedConfig> {
        Ok(self.effective_config(overrides).resolve(&self.special)?)
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Render `messages` with the chat template (generation prompt appended) and tokenize
    /// the result without adding special tokens again, like `apply_chat_template(...,
    /// tokenize=True)`.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            PipelineError::Task(format!(
                "{} has no chat template; use plain generation instead",
                self.source.display()
            ))
        })?;
        let text = template.render(messages, true)?;
        self.tokenizer.encode_plain(&text, false)
    }

    /// Continue raw `prompts` (tokenized with the tokenizer's special tokens, e.g. a BOS).
    pub fn complete(
        &self,
        prompts: &[String],
        overrides: &GenerationConfig,
        opts: RunOptions<'_>,
    ) -> Result<Vec<CompletionOutput>> {
        if let Some(index) = prompts.iter().position(|t| t.is_empty()) {
            return Err(PipelineError::EmptyInput { index });
        }
        let ids = prompts
            .iter()
            .map(|p| self.tokenizer.encode_plain(p, true))
            .collect::<Result<Vec<_>>>()?;
        self.generate_ids(&ids, overrides, opts)
    }

    /// Answer the last user turn of `messages` (one conversation).
    pub fn chat(
        &self,
        messages: &[ChatMessage],
        overrides: &GenerationConfig,
        opts: RunOptions<'_>,
    ) -> Result<CompletionOutput> {
        if messages.is_empty() {
            return Err(PipelineError::EmptyInput { index: 0 });
        }
        let ids = self.chat_prompt(messages)?;
        let mut out = self.generate_ids(&[ids], overrides, opts)?;
        out.pop()
            .ok_or_else(|| PipelineError::Task("generation returned nothing".into()))
    }

    /// Summarize each text by asking the model through its chat template (a plain
    /// "Summary:" completion prompt when the model has no template).
    pub fn summarize(
        &self,
        texts: &[String],
        overrides: &GenerationConfig,
        opts: RunOptions<'_>,
    ) -> Result<Vec<CompletionOutput>> {
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(PipelineError::EmptyInput { index });
        }
        let prompts = texts
            .iter()
            .map(|t| match &self.chat_template {
                Some(_) => self.chat_prompt(&[ChatMessage {
                    role: "user".into(),
                    content: format!("{SUMMARIZE_INSTRUCTION}\n\n{}", t.trim()),
                }]),
                None => self
                    .tokenizer
                    .encode_plain(&format!("{}\n\nSummary:", t.trim()), true),
            })
            .collect::<Result<Vec<_>>>()?;
        self.generate_ids(&prompts, overrides, opts)
    }

    /// Generate from tokenized prompts, `opts.batch_size` prompts at a time (grouped by length).
    pub fn generate_ids(
        &self,
        prompts: &[Vec<u32>],
        overrides: &GenerationConfig,
        opts: RunOptions<'_>,
    ) -> Result<Vec<CompletionOutput>> {
        self.generate_ids_hooked(prompts, overrides, opts, None, None)
    }

    /// [`Self::generate_ids`] seen from a server, where each prompt belongs to its own client.
    /// Indices are positions in `prompts`.
    ///
    /// * `on_prompt_text` is called with `(prompt index, new text)` as each prompt's continuation
    ///   grows, for every prompt of every batch (greedy search or sampling with one sequence
    ///   per prompt; nothing is streamed otherwise). A prompt's pieces join to its text before
    ///   any stop-string cut.
    /// * `cancel` is consulted after each decided token; `true` ends that prompt's rows at once
    ///   (its client went away) and leaves the other rows of the batch unchanged (greedy
    ///   search and sampling; beam search ignores it).
    pub fn generate_ids_hooked(
        &self,
        prompts: &[Vec<u32>],
        overrides: &GenerationConfig,
        opts: RunOptions<'_>,
        mut on_prompt_text: Option<TextSink<'_>>,
        cancel: Option<&dyn Fn(usize) -> bool>,
    ) -> Result<Vec<CompletionOutput>> {
        let cfg = self.effective_config(overrides);
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
        let mut outputs: Vec<Option<CompletionOutput>> = vec![None; prompts.len()];
        let RunOptions {
            batch_size,
            mut on_text,
            mut on_progress,
        } = opts;
        let mut done = 0;
        for chunk in order.chunks(batch_size.max(1)) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| prompts[i].as_slice()).collect();
            // `opts.on_text` streams single-prompt batches only (a CLI's one answer).
            let mut single = match on_text {
                Some(ref mut f) if chunk.len() == 1 => Some(&mut **f),
                _ => None,
            };
            let streaming = single.is_some() || on_prompt_text.is_some();
            let mut sink = |row: usize, piece: &str| {
                if let Some(f) = on_prompt_text.as_deref_mut() {
                    f(chunk[row], piece);
                }
                if let Some(f) = single.as_deref_mut() {
                    f(piece);
                }
            };
            let cancel_row = |row: usize| cancel.is_some_and(|c| c(chunk[row]));
            let hooks = RowHooks {
                on_text: streaming.then_some(&mut sink as _),
                cancel: cancel.is_some().then_some(&cancel_row as _),
            };
            for (&i, out) in chunk.iter().zip(self.generate_batch(&batch, &cfg, hooks)?) {
                outputs[i] = Some(out);
            }
            done += chunk.len();
            if let Some(p) = on_progress.as_deref_mut() {
                p(done);
            }
        }
        Ok(outputs.into_iter().flatten().collect())
    }

    /// Whether the text of `new` tokens contains one of `stops`.
    pub(crate) fn hits_stop(&self, new: &[u32], stops: &[String]) -> bool {
        !stops.is_empty()
            && self
                .tokenizer
                .decode(new)
                .map(|t| stops.iter().any(|s| t.contains(s.as_str())))
                .unwrap_or(false)
    }

    /// The completion of generated `token_ids`: decoded, cut at the first stop string, with
    /// its finish reason (an EOS id or a stop string: stop; else the length limit).
    pub(crate) fn completion(
        &self,
        token_ids: Vec<u32>,
        eos: &[u32],
        stops: &[String],
        score: Option<f32>,
    ) -> Result<Completion> {
        let mut text = self.tokenizer.decode(&token_ids)?;
        let mut finish = match token_ids.last() {
            Some(t) if eos.contains(t) => FinishReason::Stop,
            _ => FinishReason::Length,
        };
        if let Some(cut) = stops.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(cut);
            finish = FinishReason::Stop;
        }
        Ok(Completion {
            text,
            token_ids,
            finish_reason: finish,
            score,
        })
    }

    /// Fit a prompt into the context window with room for `max_new` tokens.
    pub(crate) fn fit(&self, prompt: &[u32], max_new: usize) -> Result<(Vec<u32>, bool)> {
        let room = self.model.max_positions().saturating_sub(max_new);
        if prompt.len() <= room {
            return Ok((prompt.to_vec(), false));
        }
        if !self.truncate_prompts || room == 0 {
            return Err(PipelineError::Task(format!(
                "the prompt has {} tokens but the context window of {} positions leaves room \
                 for {room} with {max_new} new tokens; shorten it, lower max_new_tokens, or \
                 allow truncation (--truncate)",
                prompt.len(),
                self.model.max_positions()
            )));
        }
        // Keep the end of the prompt: that is what the continuation follows.
        Ok((prompt[prompt.len() - room..].to_vec(), true))
    }

    /// Generate one batch with a fully layered configuration.
    fn generate_batch(
        &self,
        prompts: &[&[u32]],
        cfg: &GenerationConfig,
        hooks: RowHooks<'_>,
    ) -> Result<Vec<CompletionOutput>> {
        let resolved = cfg.resolve(&self.special)?;
        let mut fitted = Vec::with_capacity(prompts.len());
        let mut truncated = Vec::with_capacity(prompts.len());
        let mut max_new = 0;
        for (i, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(PipelineError::EmptyInput { index: i });
            }
            let new = resolved.max_length.total(p.len()).saturating_sub(p.len());
            let (ids, cut) = self.fit(p, new)?;
            max_new = max_new.max(new);
            fitted.push(ids);
            truncated.push(cut);
        }
        let b = fitted.len();
        let t0 = Instant::now();
        let mut session = CausalSession::new(
            &self.model,
            &fitted,
            max_new,
            resolved.use_cache,
            &self.device,
        )?;
        let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;

        let stops = &resolved.stop_strings;
        let lens: Vec<usize> = fitted.iter().map(Vec::len).collect();
        let RowHooks { on_text, cancel } = hooks;
        // Beam search cannot end single rows; it ignores cancellation.
        let cancel = cancel.filter(|_| !resolved.is_beam());
        let mut stop_check = |input: usize, seq: &[u32]| -> bool {
            cancel.is_some_and(|c| c(input)) || self.hits_stop(&seq[lens[input]..], stops)
        };
        let stop = (!stops.is_empty() || cancel.is_some()).then_some(&mut stop_check as _);
        let stream_ok = !resolved.is_beam() && resolved.num_return_sequences == 1;
        let t1 = Instant::now();
        let results = match on_text {
            Some(sink) if stream_ok => {
                let mut streams = vec![RowText::default(); b];
                let mut cb = |input: usize, tok: u32| {
                    if let Some(piece) = streams[input].push(&self.tokenizer, tok) {
                        sink(input, piece);
                    }
                };
                let hooks = Hooks {
                    on_token: Some(&mut cb),
                    stop,
                };
                generate_hooked(&mut session, &fitted, &resolved, hooks)?
            }
            _ => {
                let hooks = Hooks {
                    on_token: None,
                    stop,
                };
                generate_hooked(&mut session, &fitted, &resolved, hooks)?
            }
        };
        let generate_ms = t1.elapsed().as_secs_f64() * 1e3;

        results
            .into_iter()
            .enumerate()
            .map(|(i, seqs)| {
                let completions = seqs
                    .into_iter()
                    .map(|seq| {
                        let token_ids = seq.tokens.get(lens[i]..).unwrap_or_default().to_vec();
                        self.completion(token_ids, &resolved.eos, stops, seq.score)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(CompletionOutput {
                    completions,
                    prompt_tokens: lens[i],
                    truncated: truncated[i],
                    prefill_ms,
                    generate_ms,
                    batch_size: b,
                })
            })
            .collect()
    }
}

/// Called with `(prompt or row index, new text)`.
type TextSink<'a> = &'a mut dyn FnMut(usize, &str);

/// The callbacks of one batch, indexed by row.
struct RowHooks<'a> {
    on_text: Option<TextSink<'a>>,
    cancel: Option<&'a dyn Fn(usize) -> bool>,
}

/// One row's streamed text: decodes the row's tokens so far and yields what was added, holding
/// back text that ends in an incomplete character.
#[derive(Clone, Default)]
pub(crate) struct RowText {
    tokens: Vec<u32>,
    text: String,
    emitted: usize,
}

impl RowText {
    pub(crate) fn push(&mut self, tokenizer: &TextTokenizer, token: u32) -> Option<&str> {
        self.tokens.push(token);
        self.text = tokenizer.decode(&self.tokens).ok()?;
        if self.text.ends_with('\u{FFFD}')
            || self.text.len() <= self.emitted
            || !self.text.is_char_boundary(self.emitted)
        {
            return None;
        }
        let start = std::mem::replace(&mut self.emitted, self.text.len());
        Some(&self.text[start..])
    }
}

/// Whether `reference` names a decoder-only model: a GGUF file, or a folder whose
/// `config.json` `model_type` is a causal family of the [`lmrs_models::catalogue`] (the
/// multimodal Gemma 3 layout included).
pub fn is_causal_model(reference: &str, revision: Option<&str>) -> Result<bool> {
    Ok(match lmrs_io::resolve(reference, revision)? {
        ModelSource::Gguf(_) => true,
        ModelSource::HfFolder(dir) => lmrs_io::model_type(&dir.join("config.json"))?
            .and_then(|t| lmrs_models::catalogue::by_model_type(&t))
            .is_some_and(|a| a.role == lmrs_models::Role::Causal),
    })
}
