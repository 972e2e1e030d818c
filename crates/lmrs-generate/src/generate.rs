//! The entry point: [`generate`] picks greedy search, sampling, beam search or beam sampling
//! from the configuration (HF `GenerationConfig.get_generation_mode`) and runs it over any
//! [`StepModel`].
//!
//! Lengths follow HF `GenerationMixin._prepare_generated_length`: `max_new_tokens` wins over
//! `max_length`, `min_new_tokens` over `min_length`, and an unset maximum means 20 new tokens.
//! Bounds are computed per input from its own prompt length (for encoder-decoders the prompt is
//! `[decoder_start_token_id]`, length 1). HF computes them from the padded batch length, so for
//! decoder-only batches with prompts of unequal length an absolute `max_length`/`min_length`
//! behaves here as if each input ran alone; `max_new_tokens` behaves identically either way.

use lmrs_core::{DType, Error, Result, SpecialTokens, StepModel, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::config::{GenerationConfig, ResolvedConfig};
use crate::processors::LogitsProcessors;
use crate::warpers::LogitsWarpers;
use crate::{beam, search};

/// One returned sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedSequence {
    /// The whole sequence: prompt (or decoder start token) then generated tokens, EOS included
    /// when generation stopped on it; never padded.
    pub tokens: Vec<u32>,
    /// Beam score (sum of processed log-probabilities divided by `generated_len ^
    /// length_penalty`, HF `sequences_scores`); `None` for greedy search and sampling.
    pub score: Option<f32>,
}

/// Called with `(input index, token)` as each token is decided.
pub type TokenCallback<'a> = &'a mut dyn FnMut(usize, u32);

/// Called with `(input index, sequence so far)` after each decided token; `true` ends that
/// row (stop strings, a client that went away...). Greedy search and sampling only.
pub type StopCheck<'a> = &'a mut dyn FnMut(usize, &[u32]) -> bool;

/// Optional callbacks of a generation run.
#[derive(Default)]
pub struct Hooks<'a> {
    /// Streams each decided token.
    pub on_token: Option<TokenCallback<'a>>,
    /// Ends rows early.
    pub stop: Option<StopCheck<'a>>,
}

/// Generate continuations of `prompts` with `model`.
///
/// * `prompts[i]` is input `i`'s initial sequence (for an encoder-decoder
///   `[decoder_start_token_id]`); `model` has one row per prompt and has consumed all but the
///   last token of each.
/// * `cfg` is the layered configuration; unset special tokens come from `special`.
/// * `on_token` streams each decided token (greedy search and sampling with
///   `num_return_sequences == 1` only; an error otherwise).
///
/// Returns, per input, `num_return_sequences` sequences (beam search: best score first).
/// Rows that finish are dropped from `model` through [`StepModel::select_rows`], so they stop
/// costing compute; beam search drops an input's beams once HF would consider it done.
pub fn generate<M: StepModel + ?Sized>(
    model: &mut M,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    special: &SpecialTokens,
    on_token: Option<TokenCallback<'_>>,
) -> Result<Vec<Vec<GeneratedSequence>>> {
    let cfg = cfg.resolve(special)?;
    generate_resolved(model, prompts, &cfg, on_token)
}

/// [`generate`] with an already resolved configuration.
pub fn generate_resolved<M: StepModel + ?Sized>(
    model: &mut M,
    prompts: &[Vec<u32>],
    cfg: &ResolvedConfig,
    on_token: Option<TokenCallback<'_>>,
) -> Result<Vec<Vec<GeneratedSequence>>> {
    generate_hooked(
        model,
        prompts,
        cfg,
        Hooks {
            on_token,
            stop: None,
        },
    )
}

/// [`generate_resolved`] with every callback ([`Hooks`]).
pub fn generate_hooked<M: StepModel + ?Sized>(
    model: &mut M,
    prompts: &[Vec<u32>],
    cfg: &ResolvedConfig,
    hooks: Hooks<'_>,
) -> Result<Vec<Vec<GeneratedSequence>>> {
    let Hooks { on_token, stop } = hooks;
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    if model.rows() != prompts.len() {
        return Err(Error::InvalidInput(format!(
            "the model holds {} rows but {} prompts were given",
            model.rows(),
            prompts.len()
        )));
    }
    let mut limits = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(Error::InvalidInput(format!("prompt {i} is empty")));
        }
        let row = RowLimits::new(cfg, p.len());
        if p.len() >= row.max_length {
            return Err(Error::InvalidOption(format!(
                "input {i} has length {} but `max_length` is {}; increase `max_length` or set \
                 `max_new_tokens`",
                p.len(),
                row.max_length
            )));
        }
        limits.push(row);
    }
    let processors = LogitsProcessors::new(cfg);
    let warpers = cfg.do_sample.then(|| LogitsWarpers::new(cfg));
    let mut seeds = SeedSource::new(cfg.seed);
    let run = Run {
        cfg,
        processors: &processors,
        warpers: warpers.as_ref(),
    };
    if cfg.is_beam() {
        if stop.is_some() {
            return Err(Error::InvalidOption(
                "stop strings are not available with beam search (num_beams > 1)".into(),
            ));
        }
        if on_token.is_some() {
            return Err(Error::InvalidOption(
                "token streaming is not available with beam search (num_beams > 1)".into(),
            ));
        }
        beam::beam_search(model, prompts, &limits, &run, &mut seeds)
    } else {
        if on_token.is_some() && cfg.num_return_sequences > 1 {
            return Err(Error::InvalidOption(
                "token streaming needs num_return_sequences == 1".into(),
            ));
        }
        search::greedy_or_sample(model, prompts, &limits, &run, &mut seeds, on_token, stop)
    }
}

/// Everything a strategy needs besides the model and the prompts.
pub(crate) struct Run<'a> {
    pub cfg: &'a ResolvedConfig,
    pub processors: &'a LogitsProcessors,
    /// Present when sampling.
    pub warpers: Option<&'a LogitsWarpers>,
}

/// Length bounds of one input, as totals (prompt included).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowLimits {
    pub prompt_len: usize,
    pub max_length: usize,
    pub min_length: usize,
}

impl RowLimits {
    pub(crate) fn new(cfg: &ResolvedConfig, prompt_len: usize) -> Self {
        Self {
            prompt_len,
            max_length: cfg.max_length.total(prompt_len),
            min_length: cfg.min_length.total(prompt_len),
        }
    }
}

/// Per-row random generators: row `r` always gets the same stream for a given seed, so a row's
/// samples do not depend on which other rows share the batch.
pub(crate) struct SeedSource {
    seed: u64,
}

impl SeedSource {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Self {
            seed: seed.unwrap_or_else(rand::random),
        }
    }

    /// The generator of row `row` (SplitMix64 of seed and row).
    pub fn rng(&mut self, row: usize) -> StdRng {
        let mut z = self
            .seed
            .wrapping_add((row as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        StdRng::seed_from_u64(z ^ (z >> 31))
    }
}

/// Logits `(rows, vocab)` as one flat f32 vector, checked for shape and finiteness.
pub(crate) fn logits_to_vec(logits: &Tensor, rows: usize) -> Result<(Vec<f32>, usize)> {
    let (r, vocab) = logits.dims2()?;
    if r != rows || vocab == 0 {
        return Err(Error::InvalidInput(format!(
            "step returned logits of shape ({r}, {vocab}) for {rows} rows"
        )));
    }
    let data = logits
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    crate::select::check_finite(&data, "next-token logits")?;
    Ok((data, vocab))
}

/// The vocabulary size must not change between steps.
pub(crate) fn check_same_vocab(expected: &mut Option<usize>, vocab: usize) -> Result<()> {
    match *expected {
        Some(v) if v != vocab => Err(Error::InvalidInput(format!(
            "step returned {vocab} logits per row after {v} before"
        ))),
        _ => {
            *expected = Some(vocab);
            Ok(())
        }
    }
}
