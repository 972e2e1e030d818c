//! A `sentence-transformers` model folder: `modules.json` (Transformer → Pooling →
//! Normalize), `1_Pooling/config.json` and `sentence_bert_config.json`.

use crate::{PipelineError, Result};
use lmrs_nn::Pooling;
use std::path::{Path, PathBuf};

/// What a sentence-transformers folder says about turning token states into an embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceConfig {
    /// The folder holding the transformer (`config.json`, weights, tokenizer): the module
    /// path of the `Transformer` entry, usually the root.
    pub transformer_dir: PathBuf,
    /// Pooling modes, concatenated in this order (empty when there is no Pooling module).
    pub pooling: Vec<Pooling>,
    /// Whether a `Normalize` module follows.
    pub normalize: bool,
    /// `sentence_bert_config.json` `max_seq_length`, when set.
    pub max_seq_length: Option<usize>,
    /// `sentence_bert_config.json` `do_lower_case` (inputs are lowercased first).
    pub do_lower_case: bool,
}

#[derive(serde::Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Default, serde::Deserialize)]
struct SentenceBertConfig {
    #[serde(default)]
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

/// `1_Pooling/config.json`: the `pooling_mode` of sentence-transformers ≥ 5.2 (a name or a
/// list), or the older `pooling_mode_*` booleans.
#[derive(serde::Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode: Option<serde_json::Value>,
    #[serde(flatten)]
    legacy: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The legacy booleans in sentence-transformers' concatenation order.
const LEGACY_MODES: &[(&str, &str)] = &[
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
];

impl SentenceConfig {
    /// Read the folder's `modules.json`; `None` when the folder is a plain model.
    pub fn from_folder(dir: &Path) -> Result<Option<Self>> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(None);
        }
        let modules: Vec<ModuleEntry> = lmrs_io::read_json(&modules_path)?;
        let mut cfg = Self {
            transformer_dir: dir.to_path_buf(),
            pooling: Vec::new(),
            normalize: false,
            max_seq_length: None,
            do_lower_case: false,
        };
        let mut seen_transformer = false;
        for m in &modules {
            let module_dir = dir.join(&m.path);
            match m.kind.rsplit('.').next().unwrap_or_default() {
                "Transformer" => {
                    seen_transformer = true;
                    cfg.transformer_dir = module_dir.clone();
                    let sb = module_dir.join("sentence_bert_config.json");
                    let sb: SentenceBertConfig = if sb.is_file() {
                        lmrs_io::read_json(&sb)?
                    } else {
                        SentenceBertConfig::default()
                    };
                    cfg.max_seq_length = sb.max_seq_length;
                    cfg.do_lower_case = sb.do_lower_case;
                }
                "Pooling" => cfg.pooling = read_pooling(&module_dir.join("config.json"))?,
                "Normalize" => cfg.normalize = true,
                other => {
                    return Err(PipelineError::Task(format!(
                        "{}: module type '{other}' ({}) is not supported (supported: Transformer, Pooling, Normalize)",
                        modules_path.display(),
                        m.kind
                    )))
                }
            }
        }
        if !seen_transformer {
            return Err(PipelineError::Task(format!(
                "{} lists no Transformer module",
                modules_path.display()
            )));
        }
        Ok(Some(cfg))
    }
}

fn read_pooling(path: &Path) -> Result<Vec<Pooling>> {
    let cfg: PoolingConfig = lmrs_io::read_json(path)?;
    let names: Vec<String> = match &cfg.pooling_mode {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad_pooling(path, "'pooling_mode' must be a name or a list of names"))?,
        Some(_) => {
            return Err(bad_pooling(
                path,
                "'pooling_mode' must be a name or a list of names",
            ))
        }
        None => {
            let on: Vec<String> = LEGACY_MODES
                .iter()
                .filter(|(key, _)| cfg.legacy.get(*key).and_then(|v| v.as_bool()) == Some(true))
                .map(|(_, mode)| mode.to_string())
                .collect();
            // sentence-transformers falls back to mean pooling when no mode is set.
            if on.is_empty() {
                vec!["mean".to_string()]
            } else {
                on
            }
        }
    };
    names
        .iter()
        .map(|n| {
            Pooling::from_name(n).ok_or_else(|| {
                bad_pooling(
                    path,
                    &format!("pooling mode '{n}' is not supported (cls, mean, max, mean_sqrt_len_tokens, lasttoken)"),
                )
            })
        })
        .collect()
}

fn bad_pooling(path: &Path, message: &str) -> PipelineError {
    PipelineError::Task(format!("{}: {message}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_new_pooling_configs() {
        let tmp = std::env::temp_dir().join(format!("lmrs-pool-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let p = tmp.join("config.json");
        std::fs::write(
            &p,
            r#"{"word_embedding_dimension": 4, "pooling_mode_cls_token": true,
                "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false}"#,
        )
        .unwrap();
        assert_eq!(read_pooling(&p).unwrap(), vec![Pooling::Cls, Pooling::Mean]);
        std::fs::write(&p, r#"{"pooling_mode": ["max", "cls"]}"#).unwrap();
        assert_eq!(read_pooling(&p).unwrap(), vec![Pooling::Max, Pooling::Cls]);
        std::fs::write(&p, r#"{"pooling_mode": "weightedmean"}"#).unwrap();
        let err = read_pooling(&p).unwrap_err().to_string();
        assert!(err.contains("weightedmean"), "{err}");
        std::fs::write(&p, r#"{"embedding_dimension": 4}"#).unwrap();
        assert_eq!(read_pooling(&p).unwrap(), vec![Pooling::Mean]);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
