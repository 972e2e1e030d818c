//! [`DecodeBatch`]: greedy search and sampling over a batch that rows join and leave between
//! steps (continuous batching, as a server needs it).
//!
//! A row is admitted with its own configuration ([`RowPolicy`]): its prompt is prefilled on its
//! own, then the row waits to join the running batch at the next step, where the caches are
//! joined ([`JoinRows::join_rows`]). Each step feeds one token per row and decides each row's
//! next token exactly as [`crate::generate`] does for that row alone; a finished row leaves at
//! once. Rows never interact, so a row's tokens do not depend on the rows it shares steps with
//! (up to the floating-point rounding of batched matmuls).
//!
//! Beam search is not available here: its beams of one input must move together.

use std::sync::Arc;

use lmrs_core::{CausalLm, DecoderCache, Device, Error, JoinRows, LogitsFor, Result, Tensor};
use rand::rngs::StdRng;

use crate::causal::prefill;
use crate::config::ResolvedConfig;
use crate::generate::{RowLimits, Run, SeedSource};
use crate::processors::LogitsProcessors;
use crate::search::advance;
use crate::select::check_finite;
use crate::warpers::LogitsWarpers;

/// How the rows of one request decode: its resolved configuration with the processors and
/// warpers built from it, shared by the request's rows.
pub struct RowPolicy {
    cfg: ResolvedConfig,
    processors: LogitsProcessors,
    warpers: Option<LogitsWarpers>,
    seed: u64,
}

impl RowPolicy {
    /// A policy for greedy search or sampling; beam search is refused.
    pub fn new(cfg: ResolvedConfig) -> Result<Self> {
        if cfg.is_beam() {
            return Err(Error::InvalidOption(
                "a continuous batch decodes with greedy search or sampling, not beam search \
                 (num_beams > 1)"
                    .into(),
            ));
        }
        let seed = cfg.seed.unwrap_or_else(rand::random);
        Ok(Self {
            processors: LogitsProcessors::new(&cfg),
            warpers: cfg.do_sample.then(|| LogitsWarpers::new(&cfg)),
            seed,
            cfg,
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &ResolvedConfig {
        &self.cfg
    }

    fn run(&self) -> Run<'_> {
        Run {
            cfg: &self.cfg,
            processors: &self.processors,
            warpers: self.warpers.as_ref(),
        }
    }
}

/// One decoding row.
struct Row {
    id: usize,
    tokens: Vec<u32>,
    limits: RowLimits,
    policy: Arc<RowPolicy>,
    rng: Option<StdRng>,
}

impl Row {
    /// Positions still to be fed, this step's included (one per token it may yet decide).
    fn room(&self) -> usize {
        self.limits
            .max_length
            .saturating_sub(self.tokens.len())
            .max(1)
    }
}

/// What one [`DecodeBatch::step`] did.
#[derive(Debug, Default)]
pub struct StepOutcome {
    /// `(row id, token)` for every row that decided a token, in batch order.
    pub tokens: Vec<(usize, u32)>,
    /// `(row id, whole sequence)` of the rows that finished and left: prompt then generated
    /// tokens, EOS included when the row stopped on it.
    pub finished: Vec<(usize, Vec<u32>)>,
    /// `(row id, error)` of rows whose logits were not finite; they left the batch.
    pub failed: Vec<(usize, Error)>,
}

/// A batch of rows decoding together; rows join ([`DecodeBatch::admit`]) and leave between
/// steps.
pub struct DecodeBatch<'m, M: CausalLm> {
    model: &'m M,
    device: Device,
    /// Cache of `rows`, in order; `None` while no row runs.
    cache: Option<M::Cache>,
    rows: Vec<Row>,
    /// Prefilled rows that join at the next step.
    waiting: Vec<(Row, M::Cache)>,
}

impl<'m, M: CausalLm> DecodeBatch<'m, M> {
    /// An empty batch over `model`.
    pub fn new(model: &'m M, device: &Device) -> Self {
        Self {
            model,
            device: device.clone(),
            cache: None,
            rows: Vec::new(),
            waiting: Vec::new(),
        }
    }

    /// Rows decoding or waiting to join.
    pub fn rows(&self) -> usize {
        self.rows.len() + self.waiting.len()
    }

    /// `true` when no row decodes or waits.
    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }

    /// Prefill `prompt` (non-empty, within the model's context with the policy's length) as
    /// row `id`, which joins the batch at the next step. `sample_index` picks the row's random
    /// stream when sampling: a request's `j`-th row uses `j`, as [`crate::generate`] numbers
    /// rows, so a seeded request draws the same tokens here as there. An error concerns this
    /// row only; the batch goes on.
    pub fn admit(
        &mut self,
        id: usize,
        prompt: Vec<u32>,
        policy: Arc<RowPolicy>,
        sample_index: usize,
    ) -> Result<()> {
        if prompt.is_empty() {
            return Err(Error::InvalidInput(format!(
                "row {id}: the prompt is empty"
            )));
        }
        let vocab = self.model.vocab_size();
        if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::InvalidInput(format!(
                "row {id}: token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let limits = RowLimits::new(&policy.cfg, prompt.len());
        if prompt.len() >= limits.max_length {
            return Err(Error::InvalidOption(format!(
                "row {id}: the prompt has {} tokens but `max_length` is {}; increase \
                 `max_length` or set `max_new_tokens`",
                prompt.len(),
                limits.max_length
            )));
        }
        if limits.max_length > self.model.max_positions() {
            return Err(Error::InvalidInput(format!(
                "row {id}: a prompt of {} tokens plus {} new tokens exceeds the model's context \
                 of {} positions",
                prompt.len(),
                limits.max_length - prompt.len(),
                self.model.max_positions()
            )));
        }
        let cache = prefill(self.model, &prompt[..prompt.len() - 1], &self.device)?;
        let rng = policy
            .warpers
            .is_some()
            .then(|| SeedSource::new(Some(policy.seed)).rng(sample_index));
        let row = Row {
            id,
            tokens: prompt,
            limits,
            policy,
            rng,
        };
        self.waiting.push((row, cache));
        Ok(())
    }

    /// Drop row `id` (waiting or decoding) without finishing it; `false` when there is none.
    pub fn remove(&mut self, id: usize) -> Result<bool> {
        if let Some(i) = self.waiting.iter().position(|(r, _)| r.id == id) {
            self.waiting.remove(i);
            return Ok(true);
        }
        match self.rows.iter().position(|r| r.id == id) {
            Some(i) => {
                let keep: Vec<usize> = (0..self.rows.len()).filter(|&j| j != i).collect();
                self.keep(&keep)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// One decoding step for every row: waiting rows join, each row is fed its last token
    /// and decides the next. `stop(id, sequence)` is asked after each decided token and ends
    /// the row when `true` (stop strings, a client that left). An error of the forward pass
    /// is the whole batch's (every row ends; the batch is empty after it); non-finite logits
    /// fail only their row.
    pub fn step(&mut self, stop: &mut dyn FnMut(usize, &[u32]) -> bool) -> Result<StepOutcome> {
        let result = self.step_rows(stop);
        if result.is_err() {
            // The rows' state is unknown after a failed forward pass: they all end.
            self.rows.clear();
            self.waiting.clear();
            self.cache = None;
        }
        result
    }

    /// [`Self::step`] without the cleanup after an error.
    fn step_rows(&mut self, stop: &mut dyn FnMut(usize, &[u32]) -> bool) -> Result<StepOutcome> {
        self.join_waiting()?;
        let mut out = StepOutcome::default();
        let Some(cache) = self.cache.as_mut() else {
            return Ok(out);
        };
        let b = self.rows.len();
        let last: Vec<u32> = self
            .rows
            .iter()
            .map(|r| r.tokens.last().copied().unwrap_or_default())
            .collect();
        let ids = Tensor::from_slice(&last, (b, 1), &self.device)?;
        let logits = self
            .model
            .forward(&ids, cache, LogitsFor::Last)?
            .ok_or_else(|| Error::InvalidInput("the model returned no logits".into()))?;
        let mut data = logits
            .squeeze(1)?
            .to_dtype(lmrs_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let vocab = data.len() / b.max(1);
        if vocab == 0 || data.len() != b * vocab {
            return Err(Error::InvalidInput(format!(
                "step returned {} logits for {b} rows",
                data.len()
            )));
        }
        let mut keep = Vec::with_capacity(b);
        for (slot, (row, scores)) in self.rows.iter_mut().zip(data.chunks_mut(vocab)).enumerate() {
            if let Err(e) = check_finite(scores, "next-token logits")
                .and_then(|()| row.policy.processors.check_vocab(vocab))
            {
                out.failed.push((row.id, e));
                continue;
            }
            let policy = row.policy.clone();
            let (token, done) = advance(
                &policy.run(),
                &mut row.tokens,
                &row.limits,
                row.rng.as_mut(),
                scores,
            )?;
            out.tokens.push((row.id, token));
            if done || stop(row.id, &row.tokens) {
                out.finished.push((row.id, std::mem::take(&mut row.tokens)));
            } else {
                keep.push(slot);
            }
        }
        if keep.len() != b {
            self.keep(&keep)?;
        }
        Ok(out)
    }

    /// Keep the rows at `slots` (in order), dropping the others from the cache.
    fn keep(&mut self, slots: &[usize]) -> Result<()> {
        if slots.is_empty() {
            self.rows.clear();
            self.cache = None;
            return Ok(());
        }
        if let Some(cache) = self.cache.as_mut() {
            cache.reorder(slots)?;
        }
        let mut rows: Vec<Option<Row>> = std::mem::take(&mut self.rows)
            .into_iter()
            .map(Some)
            .collect();
        self.rows = slots.iter().filter_map(|&s| rows[s].take()).collect();
        Ok(())
    }

    /// Join the waiting rows' caches to the running one, with room for every row's budget.
    fn join_waiting(&mut self) -> Result<()> {
        if self.waiting.is_empty() {
            return Ok(());
        }
        let waiting = std::mem::take(&mut self.waiting);
        let room = self
            .rows
            .iter()
            .chain(waiting.iter().map(|(r, _)| r))
            .map(Row::room)
            .max()
            .unwrap_or(1);
        let mut parts = Vec::with_capacity(waiting.len() + 1);
        parts.extend(self.cache.take());
        for (row, cache) in waiting {
            self.rows.push(row);
            parts.push(cache);
        }
        self.cache = Some(M::Cache::join_rows(parts, room)?);
        Ok(())
    }
}
