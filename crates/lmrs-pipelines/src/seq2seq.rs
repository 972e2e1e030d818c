//! Summarization, translation and text2text with an encoder-decoder model.

use crate::task::Task;
use crate::text::TextTokenizer;
use crate::{PipelineError, Result};
use lmrs_core::{Device, Seq2SeqLm, SpecialTokens, Tensor};
use lmrs_generate::{generate, GenerationConfig, Seq2SeqSession};
use lmrs_io::ModelFiles;
use lmrs_models::registry::{load_seq2seq_adapted, Seq2SeqModel};
use std::path::PathBuf;
use std::time::Instant;

/// Input limit when neither the caller nor the config gives one (T5's training length).
pub const DEFAULT_MAX_INPUT_TOKENS: usize = 512;

/// How to load a pipeline.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Hub cache revision (branch or commit) for hub ids; default `main`.
    pub revision: Option<String>,
    /// Inputs longer than this many tokens are truncated (default: the config's
    /// `n_positions`, else 512).
    pub max_input_tokens: Option<usize>,
    /// PEFT LoRA adapter folders merged into the model at load.
    pub adapters: Vec<PathBuf>,
}

/// Per-call options.
pub struct RunOptions<'a> {
    /// Inputs encoded and decoded together (default 8). Inputs are grouped by length first.
    pub batch_size: usize,
    /// Called with each new piece of text as tokens are decided (single input, greedy or
    /// sampling only).
    pub on_text: Option<&'a mut dyn FnMut(&str)>,
    /// Called with the number of inputs finished so far.
    pub on_progress: Option<&'a mut dyn FnMut(usize)>,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        Self {
            batch_size: 8,
            on_text: None,
            on_progress: None,
        }
    }
}

/// One generated sequence.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GeneratedText {
    /// Decoded text, special tokens skipped.
    pub text: String,
    /// Generated ids (the decoder start token excluded, EOS included when produced).
    pub token_ids: Vec<u32>,
    /// Beam score, for beam search.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

/// The result for one input.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Seq2SeqOutput {
    /// `num_return_sequences` sequences, best first.
    pub sequences: Vec<GeneratedText>,
    /// Token count of the (prefixed, truncated) input.
    pub input_tokens: usize,
    /// Whether the input was truncated to the limit.
    pub truncated: bool,
    /// Milliseconds spent in the encoder for this input's batch.
    pub encode_ms: f64,
    /// Milliseconds spent generating for this input's batch.
    pub generate_ms: f64,
    /// Inputs in this input's batch.
    pub batch_size: usize,
}

/// An encoder-decoder model with its tokenizer and default generation settings.
pub struct Seq2SeqPipeline {
    model: Seq2SeqModel,
    tokenizer: TextTokenizer,
    /// `generation_config.json` (empty when the folder has none).
    defaults: GenerationConfig,
    special: SpecialTokens,
    max_input_tokens: usize,
    dir: PathBuf,
    device: Device,
}

impl Seq2SeqPipeline {
    /// Load from a local folder or a hub id in the Hugging Face cache.
    pub fn load(reference: &str, opts: &LoadOptions) -> Result<Self> {
        let dir = crate::source::model_folder(
            reference,
            opts.revision.as_deref(),
            "encoder-decoder models",
        )?;
        Self::load_folder(dir, opts)
    }

    fn load_folder(dir: PathBuf, opts: &LoadOptions) -> Result<Self> {
        let files = ModelFiles::from_folder(&dir)?;
        let tokenizer = TextTokenizer::load(&dir)?;
        let device = Device::Cpu;
        let adapters = lmrs_io::Adapter::open_all(&opts.adapters)?;
        let model = load_seq2seq_adapted(&files, &device, &adapters)?;
        let defaults = match &files.generation_config {
            Some(p) => GenerationConfig::from_file(p)?,
            None => GenerationConfig::default(),
        };
        let max_input_tokens = opts
            .max_input_tokens
            .or(model.max_input_tokens())
            .unwrap_or(DEFAULT_MAX_INPUT_TOKENS);
        if max_input_tokens < 2 {
            return Err(PipelineError::Task(format!(
                "the input limit must allow at least 2 tokens, got {max_input_tokens}"
            )));
        }
        Ok(Self {
            special: model.special_tokens(),
            model,
            tokenizer,
            defaults,
            max_input_tokens,
            dir,
            device,
        })
    }

    /// The model folder in use.
    pub fn model_dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The loaded model.
    pub fn model(&self) -> &Seq2SeqModel {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The input limit in tokens.
    pub fn max_input_tokens(&self) -> usize {
        self.max_input_tokens
    }

    /// The generation settings a task runs with before the caller's overrides:
    /// `generation_config.json`, then the task's `task_specific_params`. Returns them with the
    /// task's input prefix.
    pub fn task_config(&self, task: &Task) -> Result<(String, GenerationConfig)> {
        let settings = task.settings(self.model.task_specific_params())?;
        let mut cfg = self.defaults.clone();
        cfg.merge(&settings.generation);
        Ok((settings.prefix, cfg))
    }

    /// Run `task` over `texts` with `overrides` applied last.
    pub fn run(
        &self,
        texts: &[String],
        task: &Task,
        overrides: &GenerationConfig,
        opts: RunOptions<'_>,
    ) -> Result<Vec<Seq2SeqOutput>> {
        let (prefix, mut cfg) = self.task_config(task)?;
        cfg.merge(overrides);
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(PipelineError::EmptyInput { index });
        }
        let encoded = texts
            .iter()
            .map(|t| {
                self.tokenizer
                    .encode(&format!("{prefix}{t}"), self.max_input_tokens)
            })
            .collect::<Result<Vec<_>>>()?;
        // Group inputs of similar length to waste little on padding; results go back in order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        let batch_size = opts.batch_size.max(1);
        let mut outputs: Vec<Option<Seq2SeqOutput>> = vec![None; texts.len()];
        let RunOptions {
            mut on_text,
            mut on_progress,
            ..
        } = opts;
        let mut done = 0;
        for chunk in order.chunks(batch_size) {
            let ids: Vec<&[u32]> = chunk.iter().map(|&i| encoded[i].ids.as_slice()).collect();
            let stream: Option<&mut dyn FnMut(&str)> = match on_text {
                Some(ref mut f) if chunk.len() == 1 => Some(&mut **f),
                _ => None,
            };
            let results = self.generate_batch(&ids, &cfg, stream)?;
            for (&i, out) in chunk.iter().zip(results) {
                outputs[i] = Some(Seq2SeqOutput {
                    truncated: encoded[i].truncated,
                    ..out
                });
            }
            done += chunk.len();
            if let Some(p) = on_progress.as_deref_mut() {
                p(done);
            }
        }
        Ok(outputs.into_iter().flatten().collect())
    }

    /// Encode and generate one batch of already tokenized inputs (right padded here).
    pub fn generate_batch(
        &self,
        inputs: &[&[u32]],
        cfg: &GenerationConfig,
        on_text: Option<&mut dyn FnMut(&str)>,
    ) -> Result<Vec<Seq2SeqOutput>> {
        let resolved = cfg.resolve(&self.special)?;
        let start = resolved.decoder_start.ok_or_else(|| {
            PipelineError::Task("the model declares no decoder_start_token_id".into())
        })?;
        let pad = resolved.pad.unwrap_or(0);
        let b = inputs.len();
        let s = inputs.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(b * s);
        let mut mask = Vec::with_capacity(b * s);
        for row in inputs {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(pad, s - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, s - row.len()));
        }
        let ids = Tensor::from_vec(ids, (b, s), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, s), &self.device)?;

        let t0 = Instant::now();
        let hidden = self.model.encode(&ids, &mask)?;
        let encode_ms = t0.elapsed().as_secs_f64() * 1e3;

        let t1 = Instant::now();
        let max_len = resolved.max_length.total(1);
        let mut session =
            Seq2SeqSession::new(&self.model, hidden, mask, max_len, resolved.use_cache)?;
        let prompts = vec![vec![start]; b];
        let results = match on_text {
            Some(sink) if b == 1 && !resolved.is_beam() && resolved.num_return_sequences == 1 => {
                let mut streamer = TextStreamer::new(&self.tokenizer, sink);
                let mut cb = |_: usize, tok: u32| streamer.push(tok);
                generate(&mut session, &prompts, cfg, &self.special, Some(&mut cb))?
            }
            _ => generate(&mut session, &prompts, cfg, &self.special, None)?,
        };
        let generate_ms = t1.elapsed().as_secs_f64() * 1e3;

        results
            .into_iter()
            .zip(inputs)
            .map(|(seqs, input)| {
                let sequences = seqs
                    .into_iter()
                    .map(|seq| {
                        let token_ids = seq.tokens.get(1..).unwrap_or_default().to_vec();
                        Ok(GeneratedText {
                            text: self.tokenizer.decode(&token_ids)?,
                            token_ids,
                            score: seq.score,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Seq2SeqOutput {
                    sequences,
                    input_tokens: input.len(),
                    truncated: false,
                    encode_ms,
                    generate_ms,
                    batch_size: b,
                })
            })
            .collect()
    }
}

/// Turns a stream of token ids into a stream of text pieces: decodes the whole sequence so far
/// and emits what was added, holding back text that ends in an incomplete character.
pub(crate) struct TextStreamer<'a> {
    tokenizer: &'a TextTokenizer,
    sink: &'a mut dyn FnMut(&str),
    tokens: Vec<u32>,
    emitted: usize,
}

impl<'a> TextStreamer<'a> {
    pub(crate) fn new(tokenizer: &'a TextTokenizer, sink: &'a mut dyn FnMut(&str)) -> Self {
        Self {
            tokenizer,
            sink,
            tokens: Vec::new(),
            emitted: 0,
        }
    }

    pub(crate) fn push(&mut self, token: u32) {
        self.tokens.push(token);
        let Ok(text) = self.tokenizer.decode(&self.tokens) else {
            return;
        };
        if text.ends_with('\u{FFFD}')
            || text.len() <= self.emitted
            || !text.is_char_boundary(self.emitted)
        {
            return;
        }
        (self.sink)(&text[self.emitted..]);
        self.emitted = text.len();
    }
}
