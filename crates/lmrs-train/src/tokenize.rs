//! Tokenizing training text as the `transformers` tokenizers do with `truncation=True`.

use crate::{Result, TrainError};

/// `tokenizer` without the padding and truncation its `tokenizer.json` may carry, as
/// `transformers` ignores them (sentence-transformers folders such as all-MiniLM-L6-v2 ship
/// `Fixed(128)` padding: kept, every input would be 128 tokens of mostly `[PAD]` that attend).
/// Lengths are lmrs-train's to set (`--max-source-length`, dynamic padding per batch).
pub fn plain(mut tokenizer: tokenizers::Tokenizer) -> Result<tokenizers::Tokenizer> {
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    Ok(tokenizer)
}

/// Token ids of `text` (special tokens added when `special`), cut to `max` tokens keeping the
/// trailing special tokens (`</s>`, `[SEP]`), as `truncation=True` does; `true` when cut.
pub fn encode_truncated(
    tokenizer: &tokenizers::Tokenizer,
    text: &str,
    max: usize,
    special: bool,
) -> Result<(Vec<u32>, bool)> {
    let enc = tokenizer
        .encode(text, special)
        .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    let mut ids = enc.get_ids().to_vec();
    if ids.len() <= max {
        return Ok((ids, false));
    }
    let specials = enc.get_special_tokens_mask();
    let tail: Vec<u32> = ids
        .iter()
        .zip(specials)
        .rev()
        .take_while(|(_, &s)| s == 1)
        .map(|(&i, _)| i)
        .collect();
    let keep = max.saturating_sub(tail.len());
    ids.truncate(keep);
    ids.extend(tail.into_iter().rev());
    Ok((ids, true))
}

/// Right-pad rows of ids to the longest: `(ids, mask)` row-major, `pad` and 0 in the padding.
pub fn pad_right(rows: &[&[u32]], pad: u32) -> (Vec<u32>, Vec<u32>, usize) {
    let s = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * s);
    let mut mask = Vec::with_capacity(rows.len() * s);
    for r in rows {
        ids.extend_from_slice(r);
        ids.extend(std::iter::repeat_n(pad, s - r.len()));
        mask.extend(std::iter::repeat_n(1u32, r.len()));
        mask.extend(std::iter::repeat_n(0u32, s - r.len()));
    }
    (ids, mask, s)
}
