//! [`Seq2SeqSession`]: the [`StepModel`] of any encoder-decoder ([`Seq2SeqLm`]).
//!
//! With a cache each step feeds one token per row through the decoder and the cache; without
//! one (`use_cache = false`, the reference for "cached == uncached" parity tests) each step
//! rebuilds a fresh cache and feeds every row's whole decoder history, keeping the logits of the
//! last position. Every row advances once per step, so histories always have equal length.

use lmrs_core::{DType, DecoderCache, Device, Error, Result, Seq2SeqLm, StepModel, Tensor};

enum Decoding<C> {
    /// Incremental decoding; cross-attention keys/values live in the cache.
    Cached(C),
    /// Full recomputation from the kept encoder states and decoder histories.
    Uncached {
        encoder_hidden: Tensor,
        attention_mask: Tensor,
        history: Vec<Vec<u32>>,
    },
}

/// Decoding state of one encoded batch, driven by [`crate::generate`].
pub struct Seq2SeqSession<'m, M: Seq2SeqLm> {
    model: &'m M,
    max_decode_len: usize,
    rows: usize,
    device: Device,
    decoding: Decoding<M::Cache>,
}

impl<'m, M: Seq2SeqLm> Seq2SeqSession<'m, M> {
    /// A session over `encoder_hidden` `(batch, src_len, d_model)` and its `attention_mask`
    /// `(batch, src_len)`, with room for `max_decode_len` decoder positions (the generation's
    /// `max_length`). `use_cache = false` recomputes the whole decoder every step.
    pub fn new(
        model: &'m M,
        encoder_hidden: Tensor,
        attention_mask: Tensor,
        max_decode_len: usize,
        use_cache: bool,
    ) -> Result<Self> {
        let (rows, _, _) = encoder_hidden.dims3()?;
        let device = encoder_hidden.device().clone();
        let decoding = if use_cache {
            Decoding::Cached(model.new_cache(&encoder_hidden, &attention_mask, max_decode_len)?)
        } else {
            Decoding::Uncached {
                encoder_hidden,
                attention_mask,
                history: vec![Vec::new(); rows],
            }
        };
        Ok(Self {
            model,
            max_decode_len,
            rows,
            device,
            decoding,
        })
    }

    /// Whether the session decodes incrementally with a cache.
    pub fn is_cached(&self) -> bool {
        matches!(self.decoding, Decoding::Cached(_))
    }
}

/// `(rows, t, vocab)` logits → the last position's `(rows, vocab)`, f32 and contiguous.
fn last_position(logits: &Tensor) -> Result<Tensor> {
    let t = logits.dim(1)?;
    Ok(logits
        .narrow(1, t - 1, 1)?
        .squeeze(1)?
        .to_dtype(DType::F32)?
        .contiguous()?)
}

impl<M: Seq2SeqLm> StepModel for Seq2SeqSession<'_, M> {
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
                last_position(&self.model.decode(&ids, cache)?)
            }
            Decoding::Uncached {
                encoder_hidden,
                attention_mask,
                history,
            } => {
                for (h, &t) in history.iter_mut().zip(tokens) {
                    h.push(t);
                }
                let len = history.first().map_or(0, Vec::len);
                let flat: Vec<u32> = history.iter().flatten().copied().collect();
                let ids = Tensor::from_vec(flat, (self.rows, len), &self.device)?;
                let mut cache =
                    self.model
                        .new_cache(encoder_hidden, attention_mask, self.max_decode_len)?;
                last_position(&self.model.decode(&ids, &mut cache)?)
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
            Decoding::Cached(cache) => cache.reorder(rows)?,
            Decoding::Uncached {
                encoder_hidden,
                attention_mask,
                history,
            } => {
                let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
                let idx = Tensor::from_vec(idx, rows.len(), &self.device)?;
                *encoder_hidden = encoder_hidden.index_select(&idx, 0)?;
                *attention_mask = attention_mask.index_select(&idx, 0)?;
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
