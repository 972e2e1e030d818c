//! Request and response types of the task routes: `/v1/summarize`, `/v1/translate`,
//! `/v1/text2text`, `/v1/classify`, `/v1/ner` and `/v1/fill-mask`.
//!
//! Requests reject unknown fields (a misspelt option must not be silently ignored). The
//! generation fields carry `transformers` names and semantics, the same set as the `lmrs`
//! generation flags.

use crate::openai::{Texts, Usage};
use lmrs_generate::{EarlyStopping, GenerationConfig};
use lmrs_pipelines::{Entity, GeneratedText, LabelScore, MaskFill};
use serde::{Deserialize, Serialize};

/// A token id or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// One id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

/// Body of `/v1/summarize`, `/v1/translate` and `/v1/text2text`. Unset options keep the
/// checkpoint's task settings (`task_specific_params`, then `generation_config.json`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seq2SeqTaskRequest {
    /// Optional; when given it must name the served model.
    #[serde(default)]
    pub model: Option<String>,
    /// Text(s) to process, each one document.
    pub input: Texts,
    /// `/v1/translate`: source language by name or code (default English).
    #[serde(default)]
    pub source: Option<String>,
    /// `/v1/translate`: target language by name or code (required there).
    #[serde(default)]
    pub target: Option<String>,
    /// Stream text pieces as server-sent events (one input, greedy or sampling).
    #[serde(default)]
    pub stream: Option<bool>,
    /// Maximum total output length (the decoder start token counts).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Maximum number of generated tokens (wins over `max_length`).
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    /// Minimum total length before the end token may appear.
    #[serde(default)]
    pub min_length: Option<usize>,
    /// Minimum number of generated tokens (wins over `min_length`).
    #[serde(default)]
    pub min_new_tokens: Option<usize>,
    /// Beams for beam search (1: greedy or sampling).
    #[serde(default)]
    pub num_beams: Option<usize>,
    /// Sequences returned per input.
    #[serde(default)]
    pub num_return_sequences: Option<usize>,
    /// Beam score length exponent.
    #[serde(default)]
    pub length_penalty: Option<f64>,
    /// `true`, `false` or `"never"`.
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Forbid repeating any n-gram of this size.
    #[serde(default)]
    pub no_repeat_ngram_size: Option<usize>,
    /// Penalise tokens already generated.
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
    /// Token sequences never to generate.
    #[serde(default)]
    pub bad_words_ids: Option<Vec<Vec<u32>>>,
    /// Sample instead of picking the most likely tokens.
    #[serde(default)]
    pub do_sample: Option<bool>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Sample among the k most likely tokens (0: all).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Nucleus sampling mass.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Seed for reproducible sampling.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Token forced as the first generated one.
    #[serde(default)]
    pub forced_bos_token_id: Option<u32>,
    /// Token(s) forced when the maximum length is reached.
    #[serde(default)]
    pub forced_eos_token_id: Option<TokenIds>,
    /// Decode with the KV cache (default true; false recomputes, same output).
    #[serde(default)]
    pub use_cache: Option<bool>,
}

impl Seq2SeqTaskRequest {
    /// The generation options as a configuration layer (unset fields stay unset).
    pub fn overrides(&self) -> GenerationConfig {
        GenerationConfig {
            max_length: self.max_length,
            max_new_tokens: self.max_new_tokens,
            min_length: self.min_length,
            min_new_tokens: self.min_new_tokens,
            num_beams: self.num_beams,
            num_return_sequences: self.num_return_sequences,
            length_penalty: self.length_penalty,
            early_stopping: self.early_stopping,
            no_repeat_ngram_size: self.no_repeat_ngram_size,
            repetition_penalty: self.repetition_penalty,
            bad_words_ids: self.bad_words_ids.clone(),
            do_sample: self.do_sample,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
            forced_bos_token_id: self.forced_bos_token_id,
            forced_eos_token_id: self.forced_eos_token_id.clone().map(|t| match t {
                TokenIds::One(id) => vec![id],
                TokenIds::Many(ids) => ids,
            }),
            use_cache: self.use_cache,
            ..Default::default()
        }
    }

    /// Whether the request sets a length limit itself.
    pub fn sets_max_length(&self) -> bool {
        self.max_length.is_some() || self.max_new_tokens.is_some()
    }
}

/// One input's result of a seq2seq task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Seq2SeqData {
    /// Position of the input.
    pub index: usize,
    /// The best sequence's text.
    pub text: String,
    /// All returned sequences, best first.
    pub sequences: Vec<SequenceData>,
    /// Tokens of the (prefixed) input.
    pub input_tokens: usize,
    /// Tokens of the best sequence.
    pub output_tokens: usize,
    /// Whether the input was truncated.
    pub truncated: bool,
}

/// One generated sequence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SequenceData {
    /// Decoded text.
    pub text: String,
    /// Generated ids (EOS included when produced).
    pub token_ids: Vec<u32>,
    /// Beam score (beam search only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

impl From<&GeneratedText> for SequenceData {
    fn from(g: &GeneratedText) -> Self {
        Self {
            text: g.text.clone(),
            token_ids: g.token_ids.clone(),
            score: g.score,
        }
    }
}

/// Response of a seq2seq task (also the last event of a stream).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Seq2SeqResponse {
    /// `summarization`, `translation` or `text2text`.
    pub object: String,
    /// The model id.
    pub model: String,
    /// Unix time.
    pub created: u64,
    /// One entry per input, in order.
    pub data: Vec<Seq2SeqData>,
    /// Token counts (completion: every returned sequence).
    pub usage: Usage,
}

/// Body of `/v1/classify`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// Optional; when given it must name the served model.
    #[serde(default)]
    pub model: Option<String>,
    /// Text(s) to classify.
    pub input: Texts,
    /// Labels returned per text, best first (default 1; 0: all).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// `softmax`, `sigmoid` or `none` (default: from the model's config).
    #[serde(default)]
    pub function: Option<String>,
}

/// One input's labels.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassifyData {
    /// Position of the input.
    pub index: usize,
    /// Labels, best first.
    pub labels: Vec<LabelScore>,
    /// Tokens the model saw.
    pub tokens: usize,
    /// Whether the text was truncated.
    pub truncated: bool,
}

/// Body of `/v1/ner`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NerRequest {
    /// Optional; when given it must name the served model.
    #[serde(default)]
    pub model: Option<String>,
    /// Text(s).
    pub input: Texts,
    /// `none`, `simple` (default), `first`, `average` or `max`.
    #[serde(default)]
    pub aggregation: Option<String>,
}

/// One input's entities.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NerData {
    /// Position of the input.
    pub index: usize,
    /// Entities (label `O` left out).
    pub entities: Vec<Entity>,
}

/// Body of `/v1/fill-mask`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FillMaskRequest {
    /// Optional; when given it must name the served model.
    #[serde(default)]
    pub model: Option<String>,
    /// Text(s), each with at least one mask token.
    pub input: Texts,
    /// Proposals per mask (default 5).
    #[serde(default)]
    pub top_k: Option<usize>,
}

/// One input's proposals.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FillMaskData {
    /// Position of the input.
    pub index: usize,
    /// For each mask in the text, the proposals best first.
    pub masks: Vec<Vec<MaskFill>>,
}

/// Response of `/v1/classify`, `/v1/ner` and `/v1/fill-mask`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskResponse<T> {
    /// `classification`, `ner` or `fill-mask`.
    pub object: &'static str,
    /// The model id.
    pub model: String,
    /// Unix time.
    pub created: u64,
    /// One entry per input, in order.
    pub data: Vec<T>,
    /// Token counts.
    pub usage: Usage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_str::<Seq2SeqTaskRequest>(r#"{"input": "x", "num_beam": 2}"#)
            .unwrap_err();
        assert!(e.to_string().contains("num_beam"), "{e}");
        let r: Seq2SeqTaskRequest = serde_json::from_str(
            r#"{"input": ["a", "b"], "num_beams": 2, "early_stopping": "never", "forced_eos_token_id": 3}"#,
        )
        .unwrap();
        let c = r.overrides();
        assert_eq!(c.num_beams, Some(2));
        assert_eq!(c.early_stopping, Some(EarlyStopping::Never));
        assert_eq!(c.forced_eos_token_id, Some(vec![3]));
        assert!(!r.sets_max_length());
    }
}
