//! [`GenerationConfig`]: the `generation_config.json` of `transformers`, with its field names.
//!
//! Every field is optional so configurations can be layered: the model's file, then a
//! request ([`GenerationConfig::merge`]; set fields of the later layer win). Keys this crate
//! does not know (HF files carry many) are ignored. [`GenerationConfig::resolve`] fills the
//! unset fields with the defaults of `transformers` v5
//! (`GenerationConfig._get_default_generation_params` in `generation/configuration_utils.py`)
//! and validates the combination, producing a [`ResolvedConfig`].

use std::fmt;
use std::path::{Path, PathBuf};

use lmrs_core::{Error, Result, SpecialTokens};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// When beam search stops for an input (HF `early_stopping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// `false` (HF default): stop once no running beam can beat the worst kept hypothesis,
    /// estimating the best reachable score at the current length.
    #[default]
    Heuristic,
    /// `true`: stop as soon as `num_beams` finished hypotheses exist.
    Enabled,
    /// `"never"`: like [`EarlyStopping::Heuristic`], but with a positive length penalty the
    /// best reachable score is estimated at `max_length` (canonical beam search).
    Never,
}

impl Serialize for EarlyStopping {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Heuristic => s.serialize_bool(false),
            Self::Enabled => s.serialize_bool(true),
            Self::Never => s.serialize_str("never"),
        }
    }
}

impl<'de> Deserialize<'de> for EarlyStopping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = EarlyStopping;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or \"never\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Self::Value, E> {
                Ok(if v {
                    EarlyStopping::Enabled
                } else {
                    EarlyStopping::Heuristic
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                if v == "never" {
                    Ok(EarlyStopping::Never)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Accepts `7`, `[7, 8]` or `null` (HF allows an int or a list for token-id fields).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Vec<u32>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(u32),
        Many(Vec<u32>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(id)) => Some(vec![id]),
        Some(OneOrMany::Many(ids)) => Some(ids),
    })
}

/// Generation options with `transformers` field names; `None` means "not set at this layer".
///
/// Defaults listed are those [`GenerationConfig::resolve`] applies (HF v5 global defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    /// Maximum total length (prompt, or decoder start token, included). Default: prompt + 20
    /// (HF v5 turns an unset `max_length` into "20 new tokens").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Maximum number of generated tokens; takes precedence over `max_length`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    /// Minimum total length before EOS may be produced. Default 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_length: Option<usize>,
    /// Minimum number of generated tokens before EOS; takes precedence over `min_length`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_new_tokens: Option<usize>,
    /// Sample instead of taking the most likely token. Default `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub do_sample: Option<bool>,
    /// Beams for beam search; 1 means greedy or sampling. Default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_beams: Option<usize>,
    /// Sequences returned per input. Default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_return_sequences: Option<usize>,
    /// Sampling temperature (sampling only). Default 1.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Keep the `top_k` most likely tokens (sampling only; 0 disables). Default 50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Nucleus sampling mass (sampling only; 1.0 disables). Default 1.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Penalty on tokens already in the sequence (1.0 disables). Default 1.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f64>,
    /// Forbid repeating any n-gram of this size (0 disables). Default 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_repeat_ngram_size: Option<usize>,
    /// Token sequences that must never be generated. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bad_words_ids: Option<Vec<Vec<u32>>>,
    /// Exponent on the generated length dividing a finished beam's score. Default 1.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length_penalty: Option<f64>,
    /// Beam search stopping rule. Default `false` ([`EarlyStopping::Heuristic`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// End-of-sequence id(s); JSON int or list. Default: the model's.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "one_or_many"
    )]
    pub eos_token_id: Option<Vec<u32>>,
    /// Padding id. Default: the model's, else the first EOS id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    /// Beginning-of-sequence id. Default: the model's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// First decoder token of an encoder-decoder. Default: the model's, else `bos_token_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoder_start_token_id: Option<u32>,
    /// Token forced as the first generated one (when the sequence has length 1). Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forced_bos_token_id: Option<u32>,
    /// Token(s) forced when the sequence reaches `max_length - 1`; JSON int or list. Default none.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "one_or_many"
    )]
    pub forced_eos_token_id: Option<Vec<u32>>,
    /// Seed of the sampling RNG (lmrs extension; `transformers` uses torch's global RNG).
    /// Default: a random seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Min-p sampling (`MinPLogitsWarper`): drop tokens whose probability is below `min_p`
    /// times the top token's. Default: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f64>,
    /// Stop a row once its generated text ends with one of these strings (applied by the
    /// pipeline that decodes text; HF `stop_strings`). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_strings: Option<Vec<String>>,
    /// Whether the caller should decode with a KV cache (read by whoever builds the
    /// [`lmrs_core::StepModel`], e.g. [`crate::Seq2SeqSession`]). Default `true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_cache: Option<bool>,
}

/// Reading a `generation_config.json` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read generation config {path}: {source}")]
    Read {
        /// The file at fault.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid generation config.
    #[error("invalid generation config {path}: {source}")]
    Parse {
        /// The file at fault.
        path: PathBuf,
        /// The JSON error (with line and column).
        source: serde_json::Error,
    },
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::InvalidInput(e.to_string())
    }
}

/// Smallest sampling temperature accepted (vLLM's sampling epsilon): logits divided by less
/// overflow f32 to infinity and the distribution becomes NaN.
pub const MIN_TEMPERATURE: f64 = 1e-5;

macro_rules! merge_fields {
    ($dst:expr, $src:expr, $($f:ident),* $(,)?) => {
        $( if $src.$f.is_some() { $dst.$f = $src.$f.clone(); } )*
    };
}

impl GenerationConfig {
    /// Parse a `generation_config.json`; errors name the file.
    pub fn from_file(path: impl AsRef<Path>) -> std::result::Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Overlay `other`: each field set in `other` replaces the one in `self`.
    pub fn merge(&mut self, other: &GenerationConfig) {
        merge_fields!(
            self,
            other,
            max_length,
            max_new_tokens,
            min_length,
            min_new_tokens,
            do_sample,
            num_beams,
            num_return_sequences,
            temperature,
            top_k,
            top_p,
            repetition_penalty,
            no_repeat_ngram_size,
            bad_words_ids,
            length_penalty,
            early_stopping,
            eos_token_id,
            pad_token_id,
            bos_token_id,
            decoder_start_token_id,
            forced_bos_token_id,
            forced_eos_token_id,
            seed,
            min_p,
            stop_strings,
            use_cache,
        );
    }

    /// What `transformers` warns about when this layer (a request's or the command line's
    /// settings) is put over `base` (the model's files): a `max_length` (`min_length`) given
    /// here loses to a `max_new_tokens` (`min_new_tokens`) that `base` sets, since the
    /// new-token bound takes precedence wherever it comes from. One sentence per shadowed
    /// field, naming the flag that would win.
    pub fn shadowed_lengths(&self, base: &GenerationConfig) -> Vec<String> {
        let mut notes = Vec::new();
        let pairs = [
            (
                "max_length",
                self.max_length,
                self.max_new_tokens,
                base.max_new_tokens,
                "max_new_tokens",
            ),
            (
                "min_length",
                self.min_length,
                self.min_new_tokens,
                base.min_new_tokens,
                "min_new_tokens",
            ),
        ];
        for (total, given, own_new, base_new, new_name) in pairs {
            if let (Some(given), None, Some(base_new)) = (given, own_new, base_new) {
                notes.push(format!(
                    "both `{new_name}` (={base_new}, from the model's generation settings) and \
                     `{total}` (={given}) are set; `{new_name}` takes precedence, as in \
                     transformers (set `{new_name}` to change the length)"
                ));
            }
        }
        notes
    }

    /// Apply HF defaults, take unset special tokens from `special` (the model's config) and
    /// validate. Errors are [`Error::InvalidOption`] naming the field.
    pub fn resolve(&self, special: &SpecialTokens) -> Result<ResolvedConfig> {
        let bad = |msg: String| Err(Error::InvalidOption(msg));
        let do_sample = self.do_sample.unwrap_or(false);
        let num_beams = self.num_beams.unwrap_or(1);
        let num_return_sequences = self.num_return_sequences.unwrap_or(1);
        if num_beams == 0 {
            return bad("`num_beams` must be at least 1".into());
        }
        if num_return_sequences == 0 {
            return bad("`num_return_sequences` must be at least 1".into());
        }
        if num_beams == 1 && !do_sample && num_return_sequences > 1 {
            return bad(format!(
                "greedy search (do_sample=false, num_beams=1) cannot return {num_return_sequences} \
                 sequences (`num_return_sequences` must be 1)"
            ));
        }
        if num_beams > 1 && num_return_sequences > num_beams {
            return bad(format!(
                "`num_return_sequences` ({num_return_sequences}) must be <= `num_beams` ({num_beams})"
            ));
        }
        let max_length = match (self.max_new_tokens, self.max_length) {
            (Some(0), _) => return bad("`max_new_tokens` must be greater than 0".into()),
            (Some(n), _) => LengthLimit::NewTokens(n),
            (None, Some(n)) => LengthLimit::Total(n),
            (None, None) => LengthLimit::NewTokens(20),
        };
        let min_length = match (self.min_new_tokens, self.min_length) {
            (Some(n), _) => LengthLimit::NewTokens(n),
            (None, n) => LengthLimit::Total(n.unwrap_or(0)),
        };
        let temperature = self.temperature.unwrap_or(1.0);
        if do_sample && !(temperature > 0.0 && temperature.is_finite()) {
            return bad(format!(
                "`temperature` must be a strictly positive number when sampling, got {temperature} \
                 (for greedy decoding set do_sample=false)"
            ));
        }
        if do_sample && temperature < MIN_TEMPERATURE {
            return bad(format!(
                "`temperature` {temperature:e} is below the smallest supported value \
                 {MIN_TEMPERATURE:e} (scores divided by it overflow); for greedy decoding set \
                 do_sample=false"
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if do_sample && !(0.0..=1.0).contains(&top_p) {
            return bad(format!("`top_p` must be in [0, 1], got {top_p}"));
        }
        let min_p = self.min_p.filter(|&p| p > 0.0);
        if let Some(p) = min_p {
            if do_sample && p > 1.0 {
                return bad(format!("`min_p` must be in [0, 1], got {p}"));
            }
        }
        if self
            .stop_strings
            .as_ref()
            .is_some_and(|s| s.iter().any(String::is_empty))
        {
            return bad("`stop_strings` must not contain an empty string".into());
        }
        let repetition_penalty = self.repetition_penalty.unwrap_or(1.0);
        if !(repetition_penalty > 0.0 && repetition_penalty.is_finite()) {
            return bad(format!(
                "`repetition_penalty` must be a strictly positive number, got {repetition_penalty}"
            ));
        }
        let length_penalty = self.length_penalty.unwrap_or(1.0);
        if !length_penalty.is_finite() {
            return bad(format!(
                "`length_penalty` must be finite, got {length_penalty}"
            ));
        }
        let bad_words_ids = self.bad_words_ids.clone().unwrap_or_default();
        if self.bad_words_ids.is_some() && bad_words_ids.is_empty() {
            return bad("`bad_words_ids` must be a non-empty list of token-id lists".into());
        }
        if bad_words_ids.iter().any(Vec::is_empty) {
            return bad("`bad_words_ids` must not contain an empty list".into());
        }
        let eos = self
            .eos_token_id
            .clone()
            .unwrap_or_else(|| special.eos.clone());
        let bos = self.bos_token_id.or(special.bos);
        Ok(ResolvedConfig {
            max_length,
            min_length,
            do_sample,
            num_beams,
            num_return_sequences,
            temperature: temperature as f32,
            top_k: self.top_k.unwrap_or(50),
            top_p,
            min_p,
            stop_strings: self.stop_strings.clone().unwrap_or_default(),
            repetition_penalty: repetition_penalty as f32,
            no_repeat_ngram_size: self.no_repeat_ngram_size.unwrap_or(0),
            bad_words_ids,
            length_penalty,
            early_stopping: self.early_stopping.unwrap_or_default(),
            pad: self.pad_token_id.or(special.pad).or(eos.first().copied()),
            eos,
            bos,
            decoder_start: self
                .decoder_start_token_id
                .or(special.decoder_start)
                .or(bos),
            forced_bos: self.forced_bos_token_id,
            forced_eos: self.forced_eos_token_id.clone().unwrap_or_default(),
            seed: self.seed,
            use_cache: self.use_cache.unwrap_or(true),
        })
    }
}

/// A length bound as configured: absolute, or relative to the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthLimit {
    /// Counts the whole sequence, prompt (or decoder start token) included.
    Total(usize),
    /// Counts generated tokens only.
    NewTokens(usize),
}

impl LengthLimit {
    /// The bound on the total length for a prompt of `prompt_len` tokens.
    pub fn total(self, prompt_len: usize) -> usize {
        match self {
            Self::Total(n) => n,
            Self::NewTokens(n) => prompt_len.saturating_add(n),
        }
    }
}

/// A validated configuration with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedConfig {
    /// Maximum length (`max_new_tokens` wins over `max_length`; default 20 new tokens).
    pub max_length: LengthLimit,
    /// Minimum length before EOS (`min_new_tokens` wins over `min_length`; default 0).
    pub min_length: LengthLimit,
    /// Sampling (`true`) or argmax / beam search (`false`).
    pub do_sample: bool,
    /// Number of beams (1: no beam search).
    pub num_beams: usize,
    /// Sequences returned per input.
    pub num_return_sequences: usize,
    /// Sampling temperature (1.0: off).
    pub temperature: f32,
    /// Top-k filter size (0: off).
    pub top_k: usize,
    /// Nucleus mass (1.0: off).
    pub top_p: f64,
    /// Min-p threshold relative to the top token (`None`: off).
    pub min_p: Option<f64>,
    /// Strings that end a row's generation (checked by the text-decoding caller).
    pub stop_strings: Vec<String>,
    /// Repetition penalty (1.0: off).
    pub repetition_penalty: f32,
    /// No-repeat n-gram size (0: off).
    pub no_repeat_ngram_size: usize,
    /// Forbidden token sequences.
    pub bad_words_ids: Vec<Vec<u32>>,
    /// Beam length penalty exponent.
    pub length_penalty: f64,
    /// Beam search stopping rule.
    pub early_stopping: EarlyStopping,
    /// End-of-sequence ids (may be empty: then only the length stops generation).
    pub eos: Vec<u32>,
    /// Padding id (defaults to the first EOS id like HF).
    pub pad: Option<u32>,
    /// Beginning-of-sequence id.
    pub bos: Option<u32>,
    /// Decoder start id for encoder-decoders (falls back to `bos`).
    pub decoder_start: Option<u32>,
    /// Forced first generated token.
    pub forced_bos: Option<u32>,
    /// Token(s) forced at `max_length - 1`.
    pub forced_eos: Vec<u32>,
    /// Sampling seed (`None`: from OS entropy).
    pub seed: Option<u64>,
    /// Whether the caller should decode with a cache.
    pub use_cache: bool,
}

impl ResolvedConfig {
    /// Beam search (with or without sampling) is used.
    pub fn is_beam(&self) -> bool {
        self.num_beams > 1
    }
}
