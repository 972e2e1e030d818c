//! What a seq2seq pipeline is asked to do, and the checkpoint settings each task picks up.
//!
//! As in `transformers`' pipelines, `config.json` `task_specific_params.<task>` supplies an
//! input prefix (`"summarize: "`) and generation settings that override
//! `generation_config.json`; the caller's options override both.

use crate::{PipelineError, Result};
use lmrs_generate::GenerationConfig;
use serde_json::{Map, Value};

/// A seq2seq task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Plain `generate`: the user writes any prefix; only `generation_config.json` applies.
    Text2Text,
    /// `task_specific_params.summarization` (T5: prefix `summarize: `, 4 beams...).
    Summarization,
    /// `task_specific_params.translation_XX_to_YY`, or T5's `translate X to Y: ` prefix.
    Translation {
        /// Source language, a name (`English`) or code (`en`).
        source: String,
        /// Target language, a name (`German`) or code (`de`).
        target: String,
    },
}

/// The prefix and generation settings a task takes from the checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskSettings {
    /// Text prepended to every input.
    pub prefix: String,
    /// Generation settings of the task (empty for text2text).
    pub generation: GenerationConfig,
}

const LANGUAGES: &[(&str, &str)] = &[
    ("en", "English"),
    ("de", "German"),
    ("fr", "French"),
    ("ro", "Romanian"),
    ("es", "Spanish"),
    ("it", "Italian"),
    ("pt", "Portuguese"),
    ("nl", "Dutch"),
    ("ru", "Russian"),
    ("zh", "Chinese"),
    ("ja", "Japanese"),
];

/// ISO code and English name of a language given as either (case-insensitive).
pub fn language_code(lang: &str) -> Option<(&'static str, &'static str)> {
    LANGUAGES
        .iter()
        .find(|(code, name)| code.eq_ignore_ascii_case(lang) || name.eq_ignore_ascii_case(lang))
        .copied()
}

impl Task {
    /// The settings this task takes from a checkpoint's `task_specific_params`.
    pub fn settings(&self, params: Option<&Map<String, Value>>) -> Result<TaskSettings> {
        let (key, fallback_prefix) = match self {
            Task::Text2Text => return Ok(TaskSettings::default()),
            Task::Summarization => ("summarization".to_string(), String::new()),
            Task::Translation { source, target } => {
                let (src, tgt) = match (language_code(source), language_code(target)) {
                    (Some(s), Some(t)) => (s, t),
                    _ => {
                        let known: Vec<String> = LANGUAGES
                            .iter()
                            .map(|(c, n)| format!("{n} ({c})"))
                            .collect();
                        return Err(PipelineError::Task(format!(
                            "unknown language in '{source}' -> '{target}'; known: {}",
                            known.join(", ")
                        )));
                    }
                };
                (
                    format!("translation_{}_to_{}", src.0, tgt.0),
                    format!("translate {} to {}: ", src.1, tgt.1),
                )
            }
        };
        let Some(task_params) = params.and_then(|p| p.get(&key)).and_then(|v| v.as_object()) else {
            return Ok(TaskSettings {
                prefix: fallback_prefix,
                generation: GenerationConfig::default(),
            });
        };
        let prefix = task_params
            .get("prefix")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or(fallback_prefix);
        let generation: GenerationConfig =
            serde_json::from_value(Value::Object(task_params.clone())).map_err(|e| {
                PipelineError::Task(format!("config.json task_specific_params.{key}: {e}"))
            })?;
        Ok(TaskSettings { prefix, generation })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t5_params() -> Map<String, Value> {
        serde_json::from_str(
            r#"{"summarization": {"early_stopping": true, "length_penalty": 2.0, "max_length": 200,
                "min_length": 30, "no_repeat_ngram_size": 3, "num_beams": 4, "prefix": "summarize: "},
                "translation_en_to_de": {"early_stopping": true, "max_length": 300, "num_beams": 4,
                "prefix": "translate English to German: "}}"#,
        )
        .unwrap()
    }

    #[test]
    fn summarization_takes_prefix_and_settings() {
        let s = Task::Summarization.settings(Some(&t5_params())).unwrap();
        assert_eq!(s.prefix, "summarize: ");
        assert_eq!(s.generation.num_beams, Some(4));
        assert_eq!(s.generation.min_length, Some(30));
        assert_eq!(s.generation.no_repeat_ngram_size, Some(3));
    }

    #[test]
    fn translation_by_name_or_code_and_fallback_prefix() {
        let t = Task::Translation {
            source: "English".into(),
            target: "de".into(),
        };
        let s = t.settings(Some(&t5_params())).unwrap();
        assert_eq!(s.prefix, "translate English to German: ");
        assert_eq!(s.generation.max_length, Some(300));
        let t = Task::Translation {
            source: "en".into(),
            target: "French".into(),
        };
        let s = t.settings(Some(&t5_params())).unwrap();
        assert_eq!(s.prefix, "translate English to French: ");
        assert_eq!(s.generation, GenerationConfig::default());
        let bad = Task::Translation {
            source: "Klingon".into(),
            target: "de".into(),
        };
        assert!(bad
            .settings(None)
            .unwrap_err()
            .to_string()
            .contains("Klingon"));
    }

    #[test]
    fn text2text_takes_nothing() {
        assert_eq!(
            Task::Text2Text.settings(Some(&t5_params())).unwrap(),
            TaskSettings::default()
        );
    }
}
