//! The JSON bodies of every `lmrs serve` route, deserialized as the server's extractor does
//! (serde through `serde_path_to_error`, trailing bytes refused) and run through every
//! validation the handlers apply before queueing work: `/v1/completions`,
//! `/v1/chat/completions`, `/v1/embeddings`, `/v1/summarize` / `/v1/translate` /
//! `/v1/text2text`, `/v1/classify`, `/v1/ner` and `/v1/fill-mask`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrs_core::SpecialTokens;
use lmrs_server::openai::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest};
use lmrs_server::tasks::{ClassifyRequest, FillMaskRequest, NerRequest, Seq2SeqTaskRequest};
use serde::de::DeserializeOwned;

/// As `routes.rs` `JsonBody` parses a body.
fn parse<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| e.path().to_string())
        .ok()?;
    de.end().ok()?;
    Some(value)
}

fn special() -> SpecialTokens {
    SpecialTokens {
        pad: Some(0),
        eos: vec![2],
        bos: Some(1),
        decoder_start: None,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(req) = parse::<CompletionRequest>(data) {
        if req.validate().is_ok() {
            let s = &req.sampling;
            let _ = (s.stream(), s.choices(), s.stop_sequences());
            if let Ok(cfg) = s.generation_config(16, 4096) {
                let _ = cfg.resolve(&special());
            }
        }
    }
    if let Some(req) = parse::<ChatCompletionRequest>(data) {
        if req.validate().is_ok() {
            for m in &req.messages {
                let _ = m.text();
            }
            let s = req.sampling();
            let _ = (s.stream(), s.choices(), s.stop_sequences());
            if let Ok(cfg) = s.generation_config(4096, 4096) {
                let _ = cfg.resolve(&special());
            }
        }
    }
    let _ = parse::<EmbeddingRequest>(data);
    if let Some(req) = parse::<Seq2SeqTaskRequest>(data) {
        let _ = req.sets_max_length();
        let _ = req.overrides().resolve(&special());
    }
    let _ = parse::<ClassifyRequest>(data);
    let _ = parse::<NerRequest>(data);
    let _ = parse::<FillMaskRequest>(data);
});
