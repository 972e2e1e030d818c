//! Capability traits. A model implements only what it can do.

use crate::{Result, Tensor};

/// The contract every decoding cache honours.
///
/// Caches are preallocated: writing a step stores into place, it never concatenates.
pub trait DecoderCache {
    /// Number of positions already stored (identical for every row).
    fn len(&self) -> usize;
    /// `true` when nothing is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Forget every stored position (keeps the allocation and any per-input state such as
    /// encoder-decoder cross-attention keys/values).
    fn reset(&mut self);
    /// Keep only the first `len` positions.
    fn truncate(&mut self, len: usize);
    /// Keep and reorder rows: new row `i` is old row `rows[i]`. `rows` may be shorter than the
    /// batch (finished rows leave) or repeat entries (beam expansion and reordering).
    fn reorder(&mut self, rows: &[usize]) -> Result<()>;
}

/// A decoding cache whose rows can be gathered from several caches into one batch: prompts
/// prefilled one by one then decode together, and a request joins a running batch between two
/// steps.
pub trait JoinRows: Sized {
    /// One cache holding the rows of `parts` in order, aligned on their last stored slot (a row
    /// with less history gets more left padding), with room for `room` more positions. Slots
    /// that only padding occupies in every row of a part are dropped, so a long-running batch
    /// does not grow with the history of rows that already left.
    fn join_rows(parts: Vec<Self>, room: usize) -> Result<Self>;
}

/// Token ids a model's configuration declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Padding id (also T5's decoder start id).
    pub pad: Option<u32>,
    /// End-of-sequence ids (a model may declare several).
    pub eos: Vec<u32>,
    /// Beginning-of-sequence id.
    pub bos: Option<u32>,
    /// First token fed to an encoder-decoder's decoder.
    pub decoder_start: Option<u32>,
}

/// An encoder-decoder language model (T5, BART, Marian...).
///
/// Shapes: `input_ids`/`attention_mask` are `(batch, src_len)` u32; encoder output is
/// `(batch, src_len, d_model)`; decoder logits are `(batch, new_tokens, vocab)` f32.
pub trait Seq2SeqLm {
    /// The decoding state of one batch: self-attention cache plus cross-attention keys/values.
    type Cache: DecoderCache;

    /// Run the encoder. `attention_mask` holds 1 for real tokens and 0 for padding.
    fn encode(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor>;

    /// Build a decoding state for an encoded batch, with room for `max_decode_len` decoder
    /// positions. Cross-attention keys/values are computed here, once per input.
    fn new_cache(
        &self,
        encoder_hidden: &Tensor,
        attention_mask: &Tensor,
        max_decode_len: usize,
    ) -> Result<Self::Cache>;

    /// Run the decoder over `decoder_input_ids` `(batch, new_tokens)` following what the cache
    /// holds, append them to the cache and return logits `(batch, new_tokens, vocab)`.
    fn decode(&self, decoder_input_ids: &Tensor, cache: &mut Self::Cache) -> Result<Tensor>;

    /// Special token ids from the model's configuration.
    fn special_tokens(&self) -> SpecialTokens;

    /// Size of the output vocabulary (the logits' last dimension).
    fn vocab_size(&self) -> usize;
}

/// Which positions a causal forward pass returns logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    /// None: only fill the cache (prompt prefill).
    Nothing,
    /// The last new position of each row (`(b, 1, vocab)`).
    Last,
    /// Every new position (`(b, t, vocab)`; teacher forcing, perplexity).
    All,
}

/// A decoder-only language model (Llama, GPT-2, Gemma...).
///
/// Shapes: `input_ids` `(batch, new_tokens)` u32, written after what the cache holds; rows
/// may be left-padded (the cache knows each row's padding); logits are f32.
pub trait CausalLm {
    /// The decoding state of one batch.
    type Cache: DecoderCache + JoinRows;

    /// An empty cache for `batch` rows with room for `max_len` positions (padding included),
    /// `left_padding[i]` leading padding slots in row `i`.
    fn new_cache(&self, left_padding: &[usize], max_len: usize) -> Result<Self::Cache>;

    /// Run the model over `input_ids`, append them to the cache and return the logits asked
    /// for: `(batch, 1 or new_tokens, vocab)`, or `None` for [`LogitsFor::Nothing`].
    fn forward(
        &self,
        input_ids: &Tensor,
        cache: &mut Self::Cache,
        logits: LogitsFor,
    ) -> Result<Option<Tensor>>;

    /// Special token ids from the model's configuration.
    fn special_tokens(&self) -> SpecialTokens;

    /// Size of the output vocabulary.
    fn vocab_size(&self) -> usize;

    /// The longest sequence the model's positions allow (`max_position_embeddings`).
    fn max_positions(&self) -> usize;
}

/// What the generation loop drives: a model state that has consumed every prompt token except
/// the last one of each row, and produces next-token logits one step at a time.
///
/// Rows are independent sequences; generation may drop rows (finished) or reorder and repeat
/// them (beam search) through [`StepModel::select_rows`].
pub trait StepModel {
    /// Feed one token per current row and return next-token logits `(rows, vocab)` as f32.
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor>;
    /// New row `i` becomes old row `rows[i]`.
    fn select_rows(&mut self, rows: &[usize]) -> Result<()>;
    /// Current number of rows.
    fn rows(&self) -> usize;
}

/// A bidirectional encoder (BERT, RoBERTa, DistilBERT...): token ids in, one hidden state per
/// token out.
///
/// Shapes: `input_ids`, `attention_mask` and `token_type_ids` are `(batch, seq)` u32 (mask: 1
/// for real tokens, 0 for padding; padding on the right); the result is
/// `(batch, seq, hidden_size)` f32.
pub trait Encoder {
    /// Run the encoder. `token_type_ids` default to all zeros (segment A) when `None`.
    fn encode(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        token_type_ids: Option<&Tensor>,
    ) -> Result<Tensor>;

    /// Width of each token's hidden state.
    fn hidden_size(&self) -> usize;

    /// The longest input, in tokens, the model can take (its position table).
    fn max_positions(&self) -> usize;

    /// Rows of the token embedding table (valid ids are below this).
    fn vocab_size(&self) -> usize;
}
