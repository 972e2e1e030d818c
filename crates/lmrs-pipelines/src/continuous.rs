//! [`ContinuousGeneration`]: requests join a running decoder batch between two steps and leave
//! it as soon as they finish (continuous batching, what `lmrs serve` runs completions and chat
//! on).
//!
//! A request is one or more tokenized prompts with their own generation options (greedy search
//! or sampling; beam search needs [`TextGenerationPipeline::generate_ids`]). Its prompts are
//! prefilled when it is added and its rows join the batch at the next [`step`]; each step
//! streams the text every row added and returns the requests that finished, with the same
//! [`CompletionOutput`]s [`TextGenerationPipeline::generate_ids`] gives. A row's tokens do not
//! depend on the rows it decodes with: greedy results equal the request's single run.
//!
//! [`step`]: ContinuousGeneration::step

use crate::generation::RowText;
use crate::{Completion, CompletionOutput, PipelineError, Result, TextGenerationPipeline};
use lmrs_generate::{DecodeBatch, GenerationConfig, RowPolicy};
use lmrs_models::CausalModel;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Names a request of a [`ContinuousGeneration`].
pub type RequestId = u64;

/// Called with `(request, prompt index, new text)` as rows decode.
pub type RequestTextSink<'a> = &'a mut dyn FnMut(RequestId, usize, &str);

struct Request {
    policy: Arc<RowPolicy>,
    prompt_lens: Vec<usize>,
    truncated: Vec<bool>,
    /// `[prompt][sequence]`, filled as rows finish.
    results: Vec<Vec<Option<Completion>>>,
    /// Rows not finished yet.
    open: usize,
    /// Stream each row's text (one sequence per prompt only).
    streams: bool,
    prefill_ms: f64,
    started: Instant,
    /// Most rows decoding together while this request ran.
    peak_rows: usize,
}

struct RowInfo {
    request: RequestId,
    prompt: usize,
    sequence: usize,
    text: RowText,
}

/// A decoder batch that requests join and leave between steps.
pub struct ContinuousGeneration<'p> {
    pipeline: &'p TextGenerationPipeline,
    batch: DecodeBatch<'p, CausalModel>,
    requests: HashMap<RequestId, Request>,
    rows: HashMap<usize, RowInfo>,
    next_request: RequestId,
    next_row: usize,
}

impl<'p> ContinuousGeneration<'p> {
    /// An empty batch over `pipeline`'s model.
    pub fn new(pipeline: &'p TextGenerationPipeline) -> Self {
        Self {
            pipeline,
            batch: DecodeBatch::new(pipeline.model(), pipeline.device()),
            requests: HashMap::new(),
            rows: HashMap::new(),
            next_request: 0,
            next_row: 0,
        }
    }

    /// Whether a request with `overrides` can decode here: greedy search or sampling (beam
    /// search moves an input's beams together and runs through
    /// [`TextGenerationPipeline::generate_ids`]).
    pub fn accepts(pipeline: &TextGenerationPipeline, overrides: &GenerationConfig) -> bool {
        pipeline
            .resolved_config(overrides)
            .is_ok_and(|cfg| !cfg.is_beam())
    }

    /// Rows decoding or about to join.
    pub fn rows(&self) -> usize {
        self.batch.rows()
    }

    /// `true` when no request is running.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Add a request: prefill `prompts` (each `num_return_sequences` rows) with the pipeline's
    /// defaults layered under `overrides`; its rows join at the next step. An error (an empty
    /// or over-long prompt, beam search, a bad option) concerns this request only.
    pub fn add(&mut self, prompts: &[Vec<u32>], overrides: &GenerationConfig) -> Result<RequestId> {
        let p = self.pipeline;
        let resolved = p.resolved_config(overrides)?;
        let policy = Arc::new(RowPolicy::new(resolved)?);
        let cfg = policy.config();
        let per_prompt = cfg.num_return_sequences.max(1);
        let mut fitted = Vec::with_capacity(prompts.len());
        let mut truncated = Vec::with_capacity(prompts.len());
        for (i, prompt) in prompts.iter().enumerate() {
            if prompt.is_empty() {
                return Err(PipelineError::EmptyInput { index: i });
            }
            let new = cfg
                .max_length
                .total(prompt.len())
                .saturating_sub(prompt.len());
            let (ids, cut) = p.fit(prompt, new)?;
            fitted.push(ids);
            truncated.push(cut);
        }
        let id = self.next_request;
        let t0 = Instant::now();
        let mut admitted = Vec::new();
        for (i, ids) in fitted.iter().enumerate() {
            for j in 0..per_prompt {
                let row = self.next_row;
                let admit = self
                    .batch
                    .admit(row, ids.clone(), policy.clone(), i * per_prompt + j);
                if let Err(e) = admit {
                    for r in admitted {
                        self.batch.remove(r)?;
                    }
                    return Err(e.into());
                }
                self.next_row += 1;
                admitted.push(row);
                self.rows.insert(
                    row,
                    RowInfo {
                        request: id,
                        prompt: i,
                        sequence: j,
                        text: RowText::default(),
                    },
                );
            }
        }
        self.next_request += 1;
        self.requests.insert(
            id,
            Request {
                prompt_lens: fitted.iter().map(Vec::len).collect(),
                truncated,
                results: vec![vec![None; per_prompt]; fitted.len()],
                open: admitted.len(),
                streams: per_prompt == 1,
                prefill_ms: t0.elapsed().as_secs_f64() * 1e3,
                started: Instant::now(),
                peak_rows: 0,
                policy,
            },
        );
        Ok(id)
    }

    /// Stop request `id` and drop its rows (a client that went away); `false` when it is not
    /// running.
    pub fn cancel(&mut self, id: RequestId) -> Result<bool> {
        if self.requests.remove(&id).is_none() {
            return Ok(false);
        }
        self.drop_rows_of(id)?;
        Ok(true)
    }

    /// One decoding step for every row. Text each row adds goes to `on_text` (requests with
    /// one sequence per prompt). Returns the requests that finished at this step, each with
    /// one output per prompt, or its own error (non-finite logits). An `Err` is the forward
    /// pass failing: every request ends with it and the batch is empty afterwards.
    pub fn step(
        &mut self,
        on_text: Option<RequestTextSink<'_>>,
    ) -> Result<Vec<(RequestId, Result<Vec<CompletionOutput>>)>> {
        let rows_now = self.batch.rows();
        for r in self.requests.values_mut() {
            r.peak_rows = r.peak_rows.max(rows_now);
        }
        let (pipeline, requests, rows) = (self.pipeline, &self.requests, &self.rows);
        let mut stop = |row: usize, seq: &[u32]| -> bool {
            let Some(info) = rows.get(&row) else {
                return true;
            };
            let Some(req) = requests.get(&info.request) else {
                return true;
            };
            let new = &seq[req.prompt_lens[info.prompt].min(seq.len())..];
            pipeline.hits_stop(new, &req.policy.config().stop_strings)
        };
        let outcome = match self.batch.step(&mut stop) {
            Ok(o) => o,
            Err(e) => {
                self.requests.clear();
                self.rows.clear();
                return Err(e.into());
            }
        };
        if let Some(sink) = on_text {
            for &(row, token) in &outcome.tokens {
                let Some(info) = self.rows.get_mut(&row) else {
                    continue;
                };
                if !self.requests.get(&info.request).is_some_and(|r| r.streams) {
                    continue;
                }
                if let Some(piece) = info.text.push(pipeline.tokenizer(), token) {
                    sink(info.request, info.prompt, piece);
                }
            }
        }
        let mut done = Vec::new();
        for (row, error) in outcome.failed {
            if let Some(info) = self.rows.remove(&row) {
                if self.requests.remove(&info.request).is_some() {
                    self.drop_rows_of(info.request)?;
                    done.push((info.request, Err(error.into())));
                }
            }
        }
        for (row, tokens) in outcome.finished {
            let Some(info) = self.rows.remove(&row) else {
                continue;
            };
            let Some(req) = self.requests.get_mut(&info.request) else {
                continue;
            };
            let cfg = req.policy.config();
            let new = tokens
                .get(req.prompt_lens[info.prompt]..)
                .unwrap_or_default()
                .to_vec();
            match pipeline.completion(new, &cfg.eos, &cfg.stop_strings, None) {
                Ok(completion) => {
                    req.results[info.prompt][info.sequence] = Some(completion);
                    req.open -= 1;
                    if req.open == 0 {
                        if let Some(req) = self.requests.remove(&info.request) {
                            done.push((info.request, Ok(req.finish())));
                        }
                    }
                }
                Err(e) => {
                    self.requests.remove(&info.request);
                    self.drop_rows_of(info.request)?;
                    done.push((info.request, Err(e)));
                }
            }
        }
        Ok(done)
    }

    /// Drop the remaining rows of a request that already left `requests`.
    fn drop_rows_of(&mut self, id: RequestId) -> Result<()> {
        let rows: Vec<usize> = self
            .rows
            .iter()
            .filter(|(_, r)| r.request == id)
            .map(|(&row, _)| row)
            .collect();
        for row in rows {
            self.rows.remove(&row);
            self.batch.remove(row)?;
        }
        Ok(())
    }
}

impl Request {
    fn finish(self) -> Vec<CompletionOutput> {
        let generate_ms = self.started.elapsed().as_secs_f64() * 1e3;
        self.results
            .into_iter()
            .zip(self.prompt_lens)
            .zip(self.truncated)
            .map(|((seqs, prompt_tokens), truncated)| CompletionOutput {
                completions: seqs.into_iter().flatten().collect(),
                prompt_tokens,
                truncated,
                prefill_ms: self.prefill_ms,
                generate_ms,
                batch_size: self.peak_rows,
            })
            .collect()
    }
}
