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
}

/// One encoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Whether the text was cut to fit the input limit.
    pub truncated: bool,
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
        // Without a tokenizer_config.json, transformers picks the class from config.json's
        // model_type (t5 and mt5 map to T5Tokenizer).
        let class = match cfg.tokenizer_class {
            Some(c) => Some(c),
            None => lmrs_io::model_type(&dir.join("config.json"))
                .ok()
                .flatten()
                .filter(|t| t == "t5" || t == "mt5")
                .map(|_| "T5Tokenizer".to_string()),
        };
        if class
            .as_deref()
            .is_some_and(|c| c.starts_with("T5Tokenizer"))
        {
            // transformers 5 rebuilds T5's pre-tokenizer whatever tokenizer.json says:
            // split on whitespace runs first (SentencePiece's remove_extra_whitespaces), then
            // Metaspace. Doing the same keeps ids identical on text with repeated spaces.
            let pre = Sequence::new(vec![
                PreTokenizerWrapper::WhitespaceSplit(WhitespaceSplit),
                PreTokenizerWrapper::Metaspace(Metaspace::new('▁', PrependScheme::Always, true)),
            ]);
            tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre)));
        }
        tokenizer.with_padding(None);
        Ok(Self {
            tokenizer,
            clean_up_spaces: cfg.clean_up_tokenization_spaces.unwrap_or(false),
        })
    }

    /// Encode with special tokens, keeping at most `max_tokens` ids (special tokens included)
    /// like `truncation=True, max_length=max_tokens`.
    pub fn encode(&self, text: &str, max_tokens: usize) -> Result<Encoded> {
        let err = |e: tokenizers::Error| PipelineError::Tokenize(e.to_string());
        let mut enc = self.tokenizer.encode(text, false).map_err(err)?;
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
        Ok(Encoded {
            truncated,
            ids: enc.get_ids().to_vec(),
        })
    }

    /// Decode generated ids, skipping special tokens (ids beyond the vocabulary are dropped,
    /// as `transformers` does).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text = self
            .tokenizer
            .decode(ids, true)
            .map_err(|e| PipelineError::Tokenize(e.to_string()))?;
        Ok(if self.clean_up_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }
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
