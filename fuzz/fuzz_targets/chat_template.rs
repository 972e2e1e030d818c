//! Chat templates (minijinja with `transformers`' environment, lmrs-pipelines chat_template.rs).
//! Input: the template source, then optionally a NUL byte and a JSON list of `{role, content}`
//! messages (a fixed conversation otherwise). Rendered with and without a generation prompt,
//! and through `from_tokenizer_config` as a `tokenizer_config.json` would carry it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrs_pipelines::{ChatMessage, ChatTemplate};

fuzz_target!(|data: &[u8]| {
    let (template, messages) = lmrs_fuzz::split_nul(data);
    let Ok(source) = std::str::from_utf8(template) else {
        return;
    };
    let messages: Vec<ChatMessage> = serde_json::from_slice(messages).unwrap_or_else(|_| {
        vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hello!"),
            ChatMessage::new("assistant", "Hi."),
            ChatMessage::new("user", "What is 2+2?"),
        ]
    });
    if let Ok(t) = ChatTemplate::new(source, Some("<s>"), Some("</s>")) {
        let _ = t.render(&messages, true);
        let _ = t.render(&messages, false);
    }
    let cfg = serde_json::json!({ "chat_template": source, "eos_token": {"content": "</s>"} });
    if let Ok(Some(t)) = ChatTemplate::from_tokenizer_config(&cfg) {
        let _ = t.render(&messages[..messages.len().min(1)], true);
    }
});
