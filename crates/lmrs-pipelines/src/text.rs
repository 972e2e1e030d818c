//! Text ⇄ token ids with the checkpoint's tokenizer and `transformers`' conventions.

use crate::{PipelineError, Result};
use std::path::Path;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::{PreTokenizerWrapper, Tokenizer, TruncationDirection};

/// The bits of `tokenizer_config.json` that change behaviour.
#[derive(Debug, Default, serde::Deserialize)]
struct TokenizerConfig {
    #[serde(default)]
    tokenizer_class: Option<String>,
    #[serde(default)]
    clean_up_tokenization_spaces: Option<bool>,
    #[serde(default)]
    add_prefix_space: Option<bool>,
}

/// `transformers` 5 classes that rebuild a SentencePiece-style pre-tokenizer (whitespace
/// runs split first, then Metaspace) whatever `tokenizer.json` says, and whether they follow
/// `add_prefix_space` (T5 always prepends `▁`).
const REBUILT_METASPACE: &[(&str, bool)] = &[
    ("T5Tokenizer", false),
    ("XLMRobertaTokenizer", true),
    ("CamembertTokenizer", true),
];

/// One encoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Segment (token type) ids, one per id (all 0 for a single text).
    pub type_ids: Vec<u32>,
    /// Whether the text was cut to fit the input limit.
    pub truncated: bool,
}

/// One encoded input with offsets and token strings (token-level tasks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detailed {
    /// Ids, type ids and truncation.
    pub encoded: Encoded,
    /// `(start, end)` character offsets into the text; `(0, 0)` for special tokens.
    pub offsets: Vec<(usize, usize)>,
    /// `true` for tokens the post-processor added (`[CLS]`, `[SEP]`).
    pub special: Vec<bool>,
    /// Token strings (`##ing` for WordPiece continuations).
    pub tokens: Vec<String>,
}

/// A tokenizer with the options `transformers` would apply for this checkpoint.
#[derive(Clone)]
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    clean_up_spaces: bool,
}

impl TextTokenizer {
    /// Load `tokenizer.json` (and `tokenizer_config.json` beside it when present).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(PipelineError::NoTokenizer(dir.display().to_string()));
        }
        let mut tokenizer = lmrs_io::load_tokenizer(&path)?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: TokenizerConfig = if cfg_path.is_file() {
            lmrs_io::read_json(&cfg_path)?
        } else {
            TokenizerConfig::default()
        };
        // Without a tokenizer_config.json (or without `tokenizer_class` in it, as in
        // xlm-roberta-base), transformers picks the class from config.json's model_type.
        let class = match cfg.tokenizer_class {
            Some(c) => Some(c),
            None => lmrs_io::model_type(&dir.join("config.json"))
                .ok()
                .flatten()
                .and_then(|t| lmrs_models::catalogue::tokenizer_class(&t))
                .map(String::from),
        };
        let rebuilt = class.as_deref().and_then(|c| {
            REBUILT_METASPACE
                .iter()
                .find(|(name, _)| c.starts_with(name))
        });
        if let Some(&(_, follows_prefix_space)) = rebuilt {
            // transformers 5 rebuilds these pre-tokenizers whatever tokenizer.json says (real
            // T5 and XLM-R checkpoints ship Metaspace alone): split on whitespace runs first
            // (SentencePiece's remove_extra_whitespaces), then Metaspace. Doing the same keeps
            // ids identical on text with repeated spaces, and offsets off the spaces.
            let scheme = if follows_prefix_space && cfg.add_prefix_space == Some(false) {
                PrependScheme::Never
            } else {
                PrependScheme::Always
            };
            let pre = Sequence::new(vec![
                PreTokenizerWrapper::WhitespaceSplit(WhitespaceSplit),
                PreTokenizerWrapper::Metaspace(Metaspace::new('▁', scheme, true)),
            ]);
            tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre)));
        }
        // transformers ignores the padding and truncation saved in tokenizer.json (some
        // checkpoints ship `Fixed(128)` padding and a 128-token limit); so do we.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| PipelineError::Tokenize(e.to_string()))?;
        Ok(Self {
            tokenizer,
            clean_up_spaces: cfg.clean_up_tokenization_spaces.unwrap_or(false),
        })
    }

    /// Wrap a tokenizer built elsewhere (e.g. from GGUF metadata); `clean_up_spaces` is
    /// `clean_up_tokenization_spaces`.
    pub fn from_tokenizer(mut tokenizer: Tokenizer, clean_up_spaces: bool) -> Self {
        tokenizer.with_padding(None);
        // Removing truncation cannot fail.
        let _ = tokenizer.with_truncation(None);
        Self {
            tokenizer,
            clean_up_spaces,
        }
    }

    /// Encode the whole text, with the tokenizer's special tokens (`add_special`, e.g. a
    /// BOS) or without (text that already spells them, such as a rendered chat template).
    pub fn encode_plain(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, add_special)
            .map_err(|e| PipelineError::Tokenize(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encode with special tokens, keeping at most `max_tokens` ids (special tokens included)
    /// like `truncation=True, max_length=max_tokens`.
    pub fn encode(&self, text: &str, max_tokens: usize) -> Result<Encoded> {
        let (enc, truncated) = self.encode_raw(text, max_tokens, false)?;
        Ok(Encoded {
            truncated,
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
        })
    }

    /// [`TextTokenizer::encode`] plus what token-level tasks need: character offsets into
    /// `text` (`(0, 0)` for special tokens), the special-token mask and the token strings.
    pub fn encode_detailed(&self, text: &str, max_tokens: usize) -> Result<Detailed> {
        let err = |e: tokenizers::Error| PipelineError::Tokenize(e.to_string());
        // One pass with special tokens: post-processors that trim offsets (RoBERTa's, byte-level
        // BPE's) do it once, as transformers does. `encode_raw` post-processes twice (the second
        // time to add the special tokens after truncation), which would trim `Ġname` twice.
        let full = self
            .tokenizer
            .encode_char_offsets(text, true)
            .map_err(err)?;
        // Offsets of the text's tokens from the one-pass encoding, in order (a truncated
        // encoding keeps a prefix of them); (0, 0) for special tokens.
        let text_offsets: Vec<(usize, usize)> = full
            .get_offsets()
            .iter()
            .zip(full.get_special_tokens_mask())
            .filter(|(_, &special)| special == 0)
            .map(|(&o, _)| o)
            .collect();
        let (enc, truncated) = if full.len() <= max_tokens.max(1) {
            (full, false)
        } else {
            self.encode_raw(text, max_tokens, true)?
        };
        let mut text_offsets = text_offsets.into_iter();
        let offsets = enc
            .get_special_tokens_mask()
            .iter()
            .map(|&special| match special {
                0 => text_offsets.next().unwrap_or((0, 0)),
                _ => (0, 0),
            })
            .collect();
        Ok(Detailed {
            encoded: Encoded {
                truncated,
                ids: enc.get_ids().to_vec(),
                type_ids: enc.get_type_ids().to_vec(),
            },
            offsets,
            special: enc
                .get_special_tokens_mask()
                .iter()
                .map(|&m| m == 1)
                .collect(),
            tokens: enc.get_tokens().to_vec(),
        })
    }

    fn encode_raw(
        &self,
        text: &str,
        max_tokens: usize,
        char_offsets: bool,
    ) -> Result<(tokenizers::Encoding, bool)> {
        let err = |e: tokenizers::Error| PipelineError::Tokenize(e.to_string());
        let mut enc = if char_offsets {
            self.tokenizer.encode_char_offsets(text, false)
        } else {
            self.tokenizer.encode(text, false)
        }
        .map_err(err)?;
        // Room left once the post-processor has added its special tokens (T5: `</s>`).
        let added = self
            .tokenizer
            .get_post_processor()
            .map_or(0, |p| tokenizers::PostProcessor::added_tokens(p, false));
        let room = max_tokens.saturating_sub(added).max(1);
        let truncated = enc.len() > room;
        if truncated {
            enc.truncate(room, 0, TruncationDirection::Right);
        }
        let enc = self.tokenizer.post_process(enc, None, true).map_err(err)?;
        Ok((enc, truncated))
    }

    /// Decode ids; `skip_special` drops special tokens (the WordPiece/Metaspace decoder's own
    /// clean-up applies, plus `clean_up_tokenization_spaces` when the config asks).
    pub fn decode_with(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let text = self
            .tokenizer
            .decode(ids, skip_special)
            .map_err(|e| PipelineError::Tokenize(e.to_string()))?;
        Ok(if self.clean_up_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// Join token strings into text with the tokenizer's decoder (`transformers`'
    /// `convert_tokens_to_string`).
    pub fn tokens_to_string(&self, tokens: &[String]) -> Result<String> {
        match self.tokenizer.get_decoder() {
            Some(d) => tokenizers::Decoder::decode(d, tokens.to_vec())
                .map_err(|e| PipelineError::Tokenize(e.to_string())),
            None => Ok(tokens.join(" ")),
        }
    }

    /// Decode generated ids, skipping special tokens (ids beyond the vocabulary are dropped,
    /// as `transformers` does).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_with(ids, true)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

/// Right-pad encoded rows into `(ids, token_type_ids, attention_mask)` tensors `(b, s)`
/// (padding id 0, mask 0 on padding).
pub(crate) fn pad_right(
    rows: &[&Encoded],
    device: &lmrs_core::Device,
) -> Result<(lmrs_core::Tensor, lmrs_core::Tensor, lmrs_core::Tensor)> {
    use lmrs_core::Tensor;
    let b = rows.len();
    let s = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    if b == 0 || s == 0 {
        return Err(PipelineError::Core(lmrs_core::Error::InvalidInput(
            "empty batch".into(),
        )));
    }
    let (mut ids, mut types, mut mask) = (vec![0u32; b * s], vec![0u32; b * s], vec![0u32; b * s]);
    for (r, row) in rows.iter().enumerate() {
        let n = row.ids.len();
        ids[r * s..r * s + n].copy_from_slice(&row.ids);
        types[r * s..r * s + n].copy_from_slice(&row.type_ids);
        mask[r * s..r * s + n].fill(1);
    }
    Ok((
        Tensor::from_vec(ids, (b, s), device)?,
        Tensor::from_vec(types, (b, s), device)?,
        Tensor::from_vec(mask, (b, s), device)?,
    ))
}

#[derive(Default, serde::Deserialize)]
struct TokenizerLimits {
    #[serde(default)]
    model_max_length: Option<f64>,
}

/// `model_max_length` of the folder's `tokenizer_config.json`, when it is a real limit
/// (transformers writes 1e30 for "none").
pub(crate) fn tokenizer_max_length(dir: &Path) -> Result<Option<usize>> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let cfg: TokenizerLimits = lmrs_io::read_json(&path)?;
    Ok(cfg
        .model_max_length
        .filter(|l| (1.0..1e9).contains(l))
        .map(|l| l as usize))
}

/// `transformers`' `clean_up_tokenization`: drop spaces before punctuation and contractions.
pub fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

#[cfg(test)]
mod tests {
    use super::clean_up_tokenization;

    #[test]
    fn clean_up_matches_transformers_rules() {
        assert_eq!(
            clean_up_tokenization("Hello , world ! I 'm sure it 's fine . Do n't ?"),
            "Hello, world! I'm sure it's fine. Don't?"
        );
    }
}
