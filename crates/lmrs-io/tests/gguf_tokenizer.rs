//! Tokenizers built from GGUF metadata against `transformers`' own GGUF loading
//! (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`), references made by
//! `tools/gen_tokenizer_references.py`.
//!
//! - Always: small synthetic vocabularies (`tests/fixtures/gguf_tokenizer_synthetic.json` holds
//!   their metadata; each is written to an in-memory GGUF and read back), and malformed metadata.
//! - Real-model tier (`LMRS_REAL_MODELS=1`, after `scripts/fetch-models.sh`): SmolLM2 135M
//!   Instruct (byte-level BPE) and Gemma 3 270M (SentencePiece) against
//!   `tests/fixtures/real/gguf_tokenizers.json`. With the variable set, a missing model is a
//!   failure, not a skip.

use lmrs_core::candle::quantized::gguf_file::{self, Content, Value};
use lmrs_io::{tokenizer_from_gguf, IoError};
use serde_json::Value as Json;
use std::io::Cursor;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_json(rel: &str) -> Json {
    let path = repo().join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A GGUF path when the real tier is enabled; `None` (with a note) when it is not.
fn real_model(path: PathBuf) -> Option<PathBuf> {
    if std::env::var("LMRS_REAL_MODELS").ok().as_deref() != Some("1") {
        eprintln!(
            "real-model tier disabled (set LMRS_REAL_MODELS=1 after scripts/fetch-models.sh)"
        );
        return None;
    }
    assert!(
        path.is_file(),
        "LMRS_REAL_MODELS=1 but {} is missing: run scripts/fetch-models.sh",
        path.display()
    );
    Some(path)
}

fn smollm2_path() -> PathBuf {
    let home = std::env::var_os("LMRS_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/lmrs")
        });
    home.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn gemma3_path() -> PathBuf {
    let root = std::env::var_os("LMRS_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models"));
    root.join("gemma-3-270m-q4_k_m.gguf")
}

fn read_gguf(path: &std::path::Path) -> Content {
    let mut f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    Content::read(&mut f).unwrap()
}

/// Write metadata to an in-memory GGUF and read it back, as a file would be.
fn in_memory(metadata: &[(String, Value)]) -> Content {
    let refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &refs, &[]).unwrap();
    buf.set_position(0);
    Content::read(&mut buf).unwrap()
}

/// The fixture's `{key, type, value}` entries as GGUF values.
fn metadata_from_json(entries: &[Json]) -> Vec<(String, Value)> {
    entries
        .iter()
        .map(|e| {
            let v = &e["value"];
            let value = match e["type"].as_str().unwrap() {
                "string" => Value::String(v.as_str().unwrap().to_string()),
                "u32" => Value::U32(v.as_u64().unwrap() as u32),
                "f32" => Value::F32(v.as_f64().unwrap() as f32),
                "bool" => Value::Bool(v.as_bool().unwrap()),
                "string_array" => Value::Array(
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|s| Value::String(s.as_str().unwrap().to_string()))
                        .collect(),
                ),
                "f32_array" => Value::Array(
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| Value::F32(x.as_f64().unwrap() as f32))
                        .collect(),
                ),
                "i32_array" => Value::Array(
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| Value::I32(x.as_i64().unwrap() as i32))
                        .collect(),
                ),
                other => panic!("unknown metadata type {other}"),
            };
            (e["key"].as_str().unwrap().to_string(), value)
        })
        .collect()
}

fn ids(v: &Json) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Every case of one model: ids with and without special tokens, and both decodings.
/// Returns the number of texts checked.
fn check_model(name: &str, tk: &tokenizers::Tokenizer, model: &Json) -> usize {
    assert_eq!(
        tk.get_vocab_size(true),
        model["vocab_size"].as_u64().unwrap() as usize,
        "{name}: vocabulary size with added tokens"
    );
    let cases = model["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let with = tk.encode(text, true).unwrap();
        let without = tk.encode(text, false).unwrap();
        let want = ids(&case["ids"]);
        if with.get_ids() != want.as_slice() {
            failures.push(format!(
                "{text:?} with special tokens:\n  got  {:?}\n  want {want:?}",
                with.get_ids()
            ));
        }
        let want_plain = ids(&case["ids_no_special"]);
        if without.get_ids() != want_plain.as_slice() {
            failures.push(format!(
                "{text:?} without special tokens:\n  got  {:?}\n  want {want_plain:?}",
                without.get_ids()
            ));
        }
        for (skip, key) in [(false, "decoded"), (true, "decoded_skip_special")] {
            let got = tk.decode(&want, skip).unwrap();
            let exp = case[key].as_str().unwrap();
            if got != exp {
                failures.push(format!("{text:?} {key}: got {got:?}, want {exp:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} mismatches\n{}",
        failures.len(),
        failures.join("\n")
    );
    cases.len()
}

#[test]
fn synthetic_vocabularies_match_transformers() {
    let fixture = read_json("tests/fixtures/gguf_tokenizer_synthetic.json");
    for model in fixture["models"].as_array().unwrap() {
        let name = model["name"].as_str().unwrap();
        let content = in_memory(&metadata_from_json(model["metadata"].as_array().unwrap()));
        let tk = tokenizer_from_gguf(&content).unwrap_or_else(|e| panic!("{name}: {e}"));
        let n = check_model(name, &tk, model);
        eprintln!("{name}: {n} texts match transformers");
    }
}

#[test]
fn smollm2_gguf_tokenizer_matches_transformers() {
    let Some(path) = real_model(smollm2_path()) else {
        return;
    };
    check_real("SmolLM2-135M-Instruct.Q4_1", &path);
}

#[test]
fn gemma3_gguf_tokenizer_matches_transformers() {
    let Some(path) = real_model(gemma3_path()) else {
        return;
    };
    check_real("gemma-3-270m-q4_k_m", &path);
}

fn check_real(name: &str, path: &std::path::Path) {
    let fixture = read_json("tests/fixtures/real/gguf_tokenizers.json");
    let model = fixture["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the fixture"));
    let start = std::time::Instant::now();
    let tk = tokenizer_from_gguf(&read_gguf(path)).unwrap();
    eprintln!("{name}: tokenizer built in {:.2?}", start.elapsed());
    for key in ["bos_token", "eos_token"] {
        let token = model[key].as_str().unwrap();
        assert!(tk.token_to_id(token).is_some(), "{name}: {key} {token}");
    }
    let n = check_model(name, &tk, model);
    eprintln!("{name}: {n} texts match transformers (ids with/without special tokens, decode)");
}

fn small_vocab() -> Vec<(String, Value)> {
    let strings =
        |v: &[&str]| Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect());
    vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            strings(&["<|endoftext|>", "a", "b", "ab", "Ġ", "Ġab"]),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array([3, 1, 1, 1, 1, 1].iter().map(|&t| Value::I32(t)).collect()),
        ),
        ("tokenizer.ggml.merges".into(), strings(&["a b", "Ġ ab"])),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
    ]
}

fn error_for(metadata: Vec<(String, Value)>) -> (String, String) {
    match tokenizer_from_gguf(&in_memory(&metadata)) {
        Err(IoError::GgufTokenizer { key, message }) => (key, message),
        Err(other) => panic!("expected a GgufTokenizer error, got {other}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn in_memory_byte_level_vocabulary() {
    let tk = tokenizer_from_gguf(&in_memory(&small_vocab())).unwrap();
    let enc = tk.encode("ab ab<|endoftext|>", true).unwrap();
    assert_eq!(enc.get_ids(), [3, 5, 0]);
    assert_eq!(tk.decode(enc.get_ids(), true).unwrap(), "ab ab");
}

#[test]
fn missing_or_malformed_metadata_names_the_key() {
    let without = |key: &str| -> Vec<(String, Value)> {
        small_vocab()
            .into_iter()
            .filter(|(k, _)| k != key)
            .collect()
    };
    let replaced = |key: &str, value: Value| -> Vec<(String, Value)> {
        small_vocab()
            .into_iter()
            .map(|(k, v)| if k == key { (k, value.clone()) } else { (k, v) })
            .collect()
    };

    let (key, message) = error_for(without("tokenizer.ggml.tokens"));
    assert_eq!(key, "tokenizer.ggml.tokens");
    assert_eq!(message, "missing");

    let (key, _) = error_for(without("tokenizer.ggml.model"));
    assert_eq!(key, "tokenizer.ggml.model");

    let (key, message) = error_for(replaced(
        "tokenizer.ggml.model",
        Value::String("rwkv".into()),
    ));
    assert_eq!(key, "tokenizer.ggml.model");
    assert!(message.contains("rwkv"), "{message}");

    let (key, message) = error_for(replaced("tokenizer.ggml.tokens", Value::U32(3)));
    assert_eq!(key, "tokenizer.ggml.tokens");
    assert!(message.contains("expected an array"), "{message}");

    let (key, message) = error_for(replaced("tokenizer.ggml.eos_token_id", Value::U32(99)));
    assert_eq!(key, "tokenizer.ggml.eos_token_id");
    assert!(message.contains("outside the vocabulary"), "{message}");

    let (key, message) = error_for(replaced(
        "tokenizer.ggml.token_type",
        Value::Array(vec![Value::I32(1)]),
    ));
    assert_eq!(key, "tokenizer.ggml.token_type");
    assert!(message.contains("1 entries"), "{message}");

    let (key, _) = error_for(replaced(
        "tokenizer.ggml.merges",
        Value::Array(vec![Value::String("a b c".into())]),
    ));
    assert_eq!(key, "tokenizer.ggml.merges");

    // A merge whose parts are not in the vocabulary is the BPE model's error, under the key.
    let (key, _) = error_for(replaced(
        "tokenizer.ggml.merges",
        Value::Array(vec![Value::String("x y".into())]),
    ));
    assert_eq!(key, "tokenizer.ggml.merges");

    // A SentencePiece vocabulary without scores cannot derive its merges.
    let mut sp = replaced("tokenizer.ggml.model", Value::String("llama".into()));
    sp.retain(|(k, _)| k != "tokenizer.ggml.merges");
    let (key, _) = error_for(sp);
    assert_eq!(key, "tokenizer.ggml.scores");
}
