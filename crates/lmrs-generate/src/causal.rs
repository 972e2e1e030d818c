//! [`CausalSession`]: the [`StepModel`] of any decoder-only model ([`CausalLm`]).
//!
//! Each prompt's tokens but the last are run through the model on their own (prefill, no
//! logits); the prefilled caches are then joined into one left-padded batch
//! ([`JoinRows::join_rows`]) and each step feeds one token per row. Prefilling prompts one by one
//! makes every row's prompt computation exactly its single run: a padded batched prefill goes
//! through other matmul shapes, and with quantized weights (8-bit activation rounding) that
//! was enough to flip near-ties between batched and single runs. Without a cache
//! (`use_cache = false`, the reference for "cached == uncached" parity tests) each step
//! recomputes every row's whole history.

use lmrs_core::{CausalLm, Device, Error, JoinRows, LogitsFor, Result, StepModel, Tensor};

enum Decoding<C> {
    Cached(C),
    Uncached { history: Vec<Vec<u32>> },
}

/// Decoding state of one batch of prompts, driven by [`crate::generate`].
pub struct CausalSession<'m, M: CausalLm> {
    model: &'m M,
    rows: usize,
    device: Device,
    decoding: Decoding<M::Cache>,
}

/// Left-pad `rows` to a common length with id 0 (padding is masked, its id never matters);
/// returns the ids `(b, len)` and each row's padding.
fn left_pad(rows: &[&[u32]], device: &Device) -> Result<(Tensor, Vec<usize>)> {
    let len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut pads = Vec::with_capacity(rows.len());
    for r in rows {
        let pad = len - r.len();
        pads.push(pad);
        ids.extend(std::iter::repeat_n(0u32, pad));
        ids.extend_from_slice(r);
    }
    Ok((Tensor::from_vec(ids, (rows.len(), len), device)?, pads))
}

/// A one-row cache holding `tokens` (none: an empty cache), computed without logits.
pub(crate) fn prefill<M: CausalLm>(model: &M, tokens: &[u32], device: &Device) -> Result<M::Cache> {
    let mut cache = model.new_cache(&[0], tokens.len().max(1))?;
    if !tokens.is_empty() {
        let ids = Tensor::from_slice(tokens, (1, tokens.len()), device)?;
        model.forward(&ids, &mut cache, LogitsFor::Nothing)?;
    }
    Ok(cache)
}

fn last_logits(logits: Option<Tensor>) -> Result<Tensor> {
    let logits =
        logits.ok_or_else(|| Error::InvalidInput("the model returned no logits".into()))?;
    Ok(logits.squeeze(1)?.contiguous()?)
}

impl<'m, M: CausalLm> CausalSession<'m, M> {
    /// Prefill `prompts` (each non-empty) with room for `max_new_tokens` more tokens per row.
    pub fn new(
        model: &'m M,
        prompts: &[Vec<u32>],
        max_new_tokens: usize,
        use_cache: bool,
        device: &Device,
    ) -> Result<Self> {
        if let Some(i) = prompts.iter().position(Vec::is_empty) {
            return Err(Error::InvalidInput(format!("prompt {i} is empty")));
        }
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if longest + max_new_tokens > model.max_positions() {
            return Err(Error::InvalidInput(format!(
                "a prompt of {longest} tokens plus {max_new_tokens} new tokens exceeds the \
                 model's context of {} positions",
                model.max_positions()
            )));
        }
        let decoding = if use_cache {
            // Everything but each row's last token; the first step feeds the last ones.
            let parts = prompts
                .iter()
                .map(|p| prefill(model, &p[..p.len() - 1], device))
                .collect::<Result<Vec<_>>>()?;
            Decoding::Cached(M::Cache::join_rows(parts, max_new_tokens.max(1))?)
        } else {
            Decoding::Uncached {
                history: prompts.iter().map(|p| p[..p.len() - 1].to_vec()).collect(),
            }
        };
        Ok(Self {
            model,
            rows: prompts.len(),
            device: device.clone(),
            decoding,
        })
    }

    /// Whether the session decodes incrementally with a cache.
    pub fn is_cached(&self) -> bool {
        matches!(self.decoding, Decoding::Cached(_))
    }
}

impl<M: CausalLm> StepModel for CausalSession<'_, M> {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        if tokens.len() != self.rows {
            return Err(Error::InvalidInput(format!(
                "step got {} tokens for {} rows",
                tokens.len(),
                self.rows
            )));
        }
        match &mut self.decoding {
            Decoding::Cached(cache) => {
                let ids = Tensor::from_slice(tokens, (self.rows, 1), &self.device)?;
                last_logits(self.model.forward(&ids, cache, LogitsFor::Last)?)
            }
            Decoding::Uncached { history } => {
                for (h, &t) in history.iter_mut().zip(tokens) {
                    h.push(t);
                }
                let rows: Vec<&[u32]> = history.iter().map(Vec::as_slice).collect();
                let (ids, pads) = left_pad(&rows, &self.device)?;
                let mut cache = self.model.new_cache(&pads, ids.dim(1)?)?;
                last_logits(self.model.forward(&ids, &mut cache, LogitsFor::Last)?)
            }
        }
    }

    fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.rows) {
            return Err(Error::InvalidInput(format!(
                "select_rows: row {bad} out of {} rows",
                self.rows
            )));
        }
        match &mut self.decoding {
            Decoding::Cached(cache) => lmrs_core::DecoderCache::reorder(cache, rows)?,
            Decoding::Uncached { history } => {
                *history = rows.iter().map(|&r| history[r].clone()).collect();
            }
        }
        self.rows = rows.len();
        Ok(())
    }

    fn rows(&self) -> usize {
        self.rows
    }
}
