//! Logits processors of `transformers`, applied to one row of scores given that row's token
//! history (prompt or decoder start token included, exactly the `input_ids` row HF passes).
//!
//! Order (HF `GenerationMixin._get_logits_processor` in `generation/utils.py`):
//! 1. repetition penalty (`RepetitionPenaltyLogitsProcessor`)
//! 2. no-repeat n-gram (`NoRepeatNGramLogitsProcessor`)
//! 3. bad words (`NoBadWordsLogitsProcessor`)
//! 4. min length / min new tokens (`MinLengthLogitsProcessor`, `MinNewTokensLengthLogitsProcessor`)
//! 5. forced BOS (`ForcedBOSTokenLogitsProcessor`)
//! 6. forced EOS (`ForcedEOSTokenLogitsProcessor`)
//!
//! then, when sampling only, the warpers of [`crate::warpers`]: temperature → top-k → top-p.
//!
//! Greedy search and sampling apply them to the raw logits. Beam search (HF `_beam_search`)
//! applies them to `log_softmax(logits)` and only then adds the running beam scores.

use lmrs_core::{Error, Result};

use crate::config::ResolvedConfig;

/// What a processor needs to know about the row besides its scores.
#[derive(Debug, Clone, Copy)]
pub struct RowContext<'a> {
    /// Every token of the row so far (HF `input_ids[row]`).
    pub history: &'a [u32],
    /// Total length below which EOS is forbidden (0: no constraint).
    pub min_length: usize,
    /// Total length the row stops at (forced EOS fires at `max_length - 1`).
    pub max_length: usize,
}

/// The non-warping processors, built once per generation.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitsProcessors {
    repetition_penalty: f32,
    no_repeat_ngram_size: usize,
    bad_words: Vec<Vec<u32>>,
    eos: Vec<u32>,
    forced_bos: Option<u32>,
    forced_eos: Vec<u32>,
}

impl LogitsProcessors {
    /// Processors for a resolved configuration.
    ///
    /// Like HF, a bad word that is exactly one EOS id is dropped (EOS stays allowed).
    pub fn new(cfg: &ResolvedConfig) -> Self {
        let bad_words = cfg
            .bad_words_ids
            .iter()
            .filter(|w| !(w.len() == 1 && cfg.eos.contains(&w[0])))
            .cloned()
            .collect();
        Self {
            repetition_penalty: cfg.repetition_penalty,
            no_repeat_ngram_size: cfg.no_repeat_ngram_size,
            bad_words,
            eos: cfg.eos.clone(),
            forced_bos: cfg.forced_bos,
            forced_eos: cfg.forced_eos.clone(),
        }
    }

    /// Check that every configured token id fits a vocabulary of `vocab` (HF raises too).
    pub fn check_vocab(&self, vocab: usize) -> Result<()> {
        let fits = |t: &u32| (*t as usize) < vocab;
        if let Some(w) = self.bad_words.iter().find(|w| !w.iter().all(fits)) {
            return Err(Error::InvalidOption(format!(
                "`bad_words_ids` entry {w:?} has an id outside the vocabulary of {vocab}"
            )));
        }
        if let Some(t) = self.forced_bos.filter(|t| !fits(t)) {
            return Err(Error::InvalidOption(format!(
                "`forced_bos_token_id` {t} is outside the vocabulary of {vocab}"
            )));
        }
        if let Some(t) = self.forced_eos.iter().find(|t| !fits(t)) {
            return Err(Error::InvalidOption(format!(
                "`forced_eos_token_id` {t} is outside the vocabulary of {vocab}"
            )));
        }
        Ok(())
    }

    /// Apply every processor, in HF order, to `scores` (one row, length = vocabulary).
    pub fn apply(&self, row: &RowContext<'_>, scores: &mut [f32]) {
        if self.repetition_penalty != 1.0 {
            repetition_penalty(scores, row.history, self.repetition_penalty);
        }
        if self.no_repeat_ngram_size > 0 {
            for t in banned_ngram_tokens(row.history, self.no_repeat_ngram_size) {
                ban(scores, t);
            }
        }
        for word in &self.bad_words {
            if let Some(t) = bad_word_completion(row.history, word) {
                ban(scores, t);
            }
        }
        if row.history.len() < row.min_length {
            for &t in &self.eos {
                ban(scores, t);
            }
        }
        if let Some(bos) = self.forced_bos {
            if row.history.len() == 1 {
                force(scores, &[bos]);
            }
        }
        if !self.forced_eos.is_empty() && row.history.len() + 1 == row.max_length {
            force(scores, &self.forced_eos);
        }
    }
}

/// Set a token's score to `-inf` (ids past the vocabulary are ignored, like HF's clamping).
fn ban(scores: &mut [f32], token: u32) {
    if let Some(s) = scores.get_mut(token as usize) {
        *s = f32::NEG_INFINITY;
    }
}

/// Every score becomes `-inf` except `tokens`, which become 0.
fn force(scores: &mut [f32], tokens: &[u32]) {
    scores.fill(f32::NEG_INFINITY);
    for &t in tokens {
        if let Some(s) = scores.get_mut(t as usize) {
            *s = 0.0;
        }
    }
}

/// HF `RepetitionPenaltyLogitsProcessor`: each distinct token of `history` gets its score
/// multiplied by `penalty` when negative, divided by it otherwise.
pub fn repetition_penalty(scores: &mut [f32], history: &[u32], penalty: f32) {
    let mut seen: Vec<u32> = history.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for t in seen {
        if let Some(s) = scores.get_mut(t as usize) {
            *s = if *s < 0.0 { *s * penalty } else { *s / penalty };
        }
    }
}

/// HF `NoRepeatNGramLogitsProcessor`: the tokens that would complete an n-gram already present
/// in `history`. The last `n - 1` tokens form the prefix; every earlier window of `n` tokens
/// starting with that prefix bans its last token. Nothing is banned before `n` tokens exist.
pub fn banned_ngram_tokens(history: &[u32], n: usize) -> Vec<u32> {
    let len = history.len();
    if n == 0 || len < n {
        return Vec::new();
    }
    let prefix = &history[len + 1 - n..];
    history
        .windows(n)
        .filter(|w| &w[..n - 1] == prefix)
        .map(|w| w[n - 1])
        .collect()
}

/// HF `NoBadWordsLogitsProcessor` (a `SequenceBiasLogitsProcessor` with `-inf` bias): the
/// token to ban for `word` — its last token when `history` ends with the rest of it (always,
/// for a one-token word), `None` otherwise.
pub fn bad_word_completion(history: &[u32], word: &[u32]) -> Option<u32> {
    let (&last, prefix) = word.split_last()?;
    if history.ends_with(prefix) {
        Some(last)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_penalty_counts_each_token_once() {
        let mut s = vec![2.0, -2.0, 1.0];
        repetition_penalty(&mut s, &[0, 1, 0, 0], 2.0);
        assert_eq!(s, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn ngram_bans_follow_hf() {
        // history 1 2 3 1 2: prefix (1, 2) appeared followed by 3.
        assert_eq!(banned_ngram_tokens(&[1, 2, 3, 1, 2], 3), vec![3]);
        // n = 1 bans every token seen.
        assert_eq!(banned_ngram_tokens(&[4, 5, 4], 1), vec![4, 5, 4]);
        // Too short: nothing.
        assert!(banned_ngram_tokens(&[1, 2], 3).is_empty());
        // The prefix window itself never bans its own successor.
        assert!(banned_ngram_tokens(&[7, 7], 2).contains(&7));
        assert!(banned_ngram_tokens(&[7, 8], 2).is_empty());
    }

    #[test]
    fn bad_words_match_suffix() {
        assert_eq!(bad_word_completion(&[1, 2, 3], &[9]), Some(9));
        assert_eq!(bad_word_completion(&[1, 2, 3], &[2, 3, 4]), Some(4));
        assert_eq!(bad_word_completion(&[1, 2, 3], &[2, 4]), None);
        assert_eq!(bad_word_completion(&[3], &[1, 3, 4]), None);
    }
}
