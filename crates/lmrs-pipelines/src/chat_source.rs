//! Where a model's chat template comes from: an HF folder's `chat_template.jinja`
//! (transformers 5) or `tokenizer_config.json` `chat_template`, or a GGUF file's
//! `tokenizer.chat_template`, with the BOS/EOS token strings the template is rendered with.

use crate::chat_template::ChatTemplate;
use crate::Result;
use lmrs_core::SpecialTokens;
use lmrs_io::GgufFile;
use std::path::Path;

/// The chat template of an HF folder: `chat_template.jinja` (transformers 5), else
/// `tokenizer_config.json`'s `chat_template`; `None` when it has neither.
pub fn folder_chat_template(dir: &Path) -> Result<Option<ChatTemplate>> {
    let cfg_path = dir.join("tokenizer_config.json");
    let cfg: serde_json::Value = if cfg_path.is_file() {
        lmrs_io::read_json(&cfg_path)?
    } else {
        serde_json::Value::Null
    };
    let token = |key: &str| -> Option<String> {
        match cfg.get(key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            v => v.get("content")?.as_str().map(str::to_string),
        }
    };
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let src = std::fs::read_to_string(&jinja).map_err(|source| lmrs_io::IoError::Read {
            path: jinja.clone(),
            source,
        })?;
        return Ok(Some(ChatTemplate::new(
            &src,
            token("bos_token").as_deref(),
            token("eos_token").as_deref(),
        )?));
    }
    if cfg.is_null() {
        return Ok(None);
    }
    ChatTemplate::from_tokenizer_config(&cfg)
}

/// The chat template of a GGUF file (`tokenizer.chat_template`), rendered with the strings of
/// the model's BOS and first EOS token; `None` when the file has none.
pub fn gguf_chat_template(
    file: &GgufFile,
    tokenizer: &tokenizers::Tokenizer,
    special: &SpecialTokens,
) -> Result<Option<ChatTemplate>> {
    let token = |id: Option<u32>| id.and_then(|i| tokenizer.id_to_token(i));
    match file.opt_str("tokenizer.chat_template")? {
        Some(src) => Ok(Some(ChatTemplate::new(
            &src,
            token(special.bos).as_deref(),
            token(special.eos.first().copied()).as_deref(),
        )?)),
        None => Ok(None),
    }
}
