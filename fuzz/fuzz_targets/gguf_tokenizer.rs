//! A tokenizer described by GGUF metadata (GPT-2 BPE or SentencePiece vocabularies rebuilt as
//! `transformers` does, `lmrs-io` gguf_tokenizer.rs). The input is JSON in the shape of
//! `tests/fixtures/gguf_tokenizer_synthetic.json` (`{"metadata": [{key, type, value}]}`), so the
//! fuzzer mutates keys, types and values rather than GGUF framing (the `gguf` target does that).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrs_core::candle::quantized::gguf_file::{Content, Value};
use lmrs_io::tokenizer_from_gguf;
use serde_json::Value as Json;
use std::collections::HashMap;

/// One `{key, type, value}` entry as a GGUF value; `None` for shapes GGUF has no type for.
fn value(ty: &str, v: &Json) -> Option<Value> {
    let scalar = |ty: &str, v: &Json| -> Option<Value> {
        Some(match ty {
            "string" => Value::String(v.as_str()?.to_string()),
            "u8" => Value::U8(v.as_u64()? as u8),
            "u32" => Value::U32(v.as_u64()? as u32),
            "u64" => Value::U64(v.as_u64()?),
            "i32" => Value::I32(v.as_i64()? as i32),
            "i64" => Value::I64(v.as_i64()?),
            "f32" => Value::F32(v.as_f64()? as f32),
            "f64" => Value::F64(v.as_f64()?),
            "bool" => Value::Bool(v.as_bool()?),
            _ => return None,
        })
    };
    match ty.strip_suffix("_array") {
        Some(elem) => Some(Value::Array(
            v.as_array()?
                .iter()
                .map(|x| scalar(elem, x))
                .collect::<Option<Vec<_>>>()?,
        )),
        None => scalar(ty, v),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<Json>(data) else {
        return;
    };
    let Some(entries) = json.get("metadata").and_then(Json::as_array) else {
        return;
    };
    let mut metadata = HashMap::new();
    for e in entries {
        let (Some(key), Some(ty)) = (e["key"].as_str(), e["type"].as_str()) else {
            continue;
        };
        if let Some(v) = value(ty, &e["value"]) {
            metadata.insert(key.to_string(), v);
        }
    }
    let content = Content {
        magic: lmrs_core::candle::quantized::gguf_file::VersionedMagic::GgufV3,
        metadata,
        tensor_infos: HashMap::new(),
        tensor_data_offset: 0,
    };
    let Ok(tk) = tokenizer_from_gguf(&content) else {
        return;
    };
    for text in lmrs_fuzz::TEXTS {
        if let Ok(enc) = tk.encode(*text, true) {
            let _ = tk.decode(enc.get_ids(), false);
            let _ = tk.decode(enc.get_ids(), true);
        }
    }
    let vocab = tk.get_vocab_size(true) as u32;
    let _ = tk.decode(&[0, 1, 2, vocab, vocab.saturating_add(1), u32::MAX], false);
});
