//! `lmrs generate`, `lmrs chat` and `lmrs summarize` with decoder-only models, as a user runs
//! them: the llama-tiny fixture as a GGUF file and as an HF folder give the `transformers`
//! reference ids; broken GGUF files, unsupported architectures, over-long and empty prompts
//! and a missing default model fail with a clear message and no panic.

mod common;

use common::*;
use lmrs_core::candle::quantized::gguf_file::{self, Value as GgufValue};
use lmrs_core::candle::quantized::{GgmlDType, QTensor};
use lmrs_core::{Device, Tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};

const LLAMA: &str = "llama-tiny";

fn gguf(file: &str) -> PathBuf {
    fixture("llama-tiny-gguf").join(file)
}

/// `lmrs` with an empty model cache, so nothing falls back to a model fetched on this machine.
fn lmrs_isolated(home: &Path) -> assert_cmd::Command {
    let mut cmd = lmrs();
    cmd.env("LMRS_HOME", home).env_remove("RUST_BACKTRACE");
    cmd
}

/// The single `--json` record of a successful run.
fn single_record(cmd: &mut assert_cmd::Command) -> Value {
    let (stdout, _) = assert_ok(cmd);
    let mut records = json_lines(&stdout);
    assert_eq!(records.len(), 1, "one record expected:\n{stdout}");
    records.remove(0)
}

/// The new ids of reference case `case` of llama-tiny (the part after its prompt).
fn reference_new_ids(case: &str) -> Vec<u64> {
    let case = generate_case(LLAMA, case);
    let prompt = case["input_ids"][0].as_array().unwrap().len();
    case["output_ids"][0].as_array().unwrap()[prompt..]
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// `generate --json --max-new-tokens N` of one prompt.
fn generate_json(model: &Path, max_new: usize, prompt: &str) -> assert_cmd::Command {
    let mut cmd = lmrs();
    cmd.arg("generate")
        .arg("--model")
        .arg(model)
        .args(["--json", "--max-new-tokens", &max_new.to_string(), "--"])
        .arg(prompt);
    cmd
}

// ---------------------------------------------------------------------------------------------
// Happy paths

#[test]
fn generate_gguf_and_folder_give_the_reference_ids() {
    // llama-tiny's `greedy_3` prompt; its first new tokens in transformers.
    let prompt = "What is the capital of France?";
    let want = &reference_new_ids("greedy_3")[..5];
    let from_gguf = single_record(&mut generate_json(&gguf("llama-tiny-f32.gguf"), 5, prompt));
    let from_folder = single_record(&mut generate_json(&fixture(LLAMA), 5, prompt));
    assert_eq!(token_ids(&from_gguf), want, "GGUF: {from_gguf}");
    assert_eq!(token_ids(&from_folder), want, "folder: {from_folder}");
    assert_eq!(from_gguf["text"], from_folder["text"]);
    assert_eq!(from_gguf["prompt_tokens"], 9);
    assert_eq!(from_gguf["output_tokens"], 5);
    assert_eq!(from_gguf["finish_reason"], "length");
    assert_eq!(from_gguf["truncated"], false);
}

#[test]
fn generate_prints_text_without_json() {
    let (stdout, _) = assert_ok(
        lmrs()
            .arg("generate")
            .arg("--model")
            .arg(gguf("llama-tiny-q8_0.gguf"))
            .args(["--max-new-tokens", "3", "The old man"]),
    );
    assert_eq!(stdout.lines().count(), 1, "one line per prompt:\n{stdout}");
}

#[test]
fn chat_answers_a_message() {
    let (stdout, _) = assert_ok(lmrs().arg("chat").arg("--model").arg(fixture(LLAMA)).args([
        "--message",
        "hi",
        "--max-new-tokens",
        "4",
    ]));
    assert!(stdout.lines().count() <= 1, "{stdout}");
    let record = single_record(lmrs().arg("chat").arg("--model").arg(fixture(LLAMA)).args([
        "--message",
        "hi",
        "--max-new-tokens",
        "4",
        "--json",
    ]));
    assert!(token_ids(&record).len() <= 4, "{record}");
}

#[test]
fn chat_uses_the_template_like_transformers() {
    // `greedy_chat_0` is greedy decoding of the ChatML rendering of this one user message.
    let record = single_record(
        lmrs()
            .arg("chat")
            .arg("--model")
            .arg(fixture(LLAMA))
            .args(["--json", "--max-new-tokens", "12"])
            .args(["--message", "What is the capital of France?"]),
    );
    let case = generate_case(LLAMA, "greedy_chat_0");
    assert_eq!(
        record["prompt_tokens"].as_u64().unwrap() as usize,
        case["input_ids"][0].as_array().unwrap().len()
    );
    assert_eq!(token_ids(&record), reference_new_ids("greedy_chat_0"));
}

#[test]
fn summarize_with_a_decoder_only_model() {
    let record = single_record(
        lmrs()
            .arg("summarize")
            .arg("--model")
            .arg(fixture(LLAMA))
            .args(["--json", "--max-new-tokens", "6"])
            .arg(
                "The farmer looked at the sky and said that it would rain before the evening. \
                 His daughter laughed and told him that he always said the same thing.",
            ),
    );
    let n = token_ids(&record).len();
    assert!((1..=6).contains(&n), "{record}");
    assert_eq!(record["output_tokens"].as_u64().unwrap() as usize, n);
}

// ---------------------------------------------------------------------------------------------
// Prompts

/// A prompt of well over llama-tiny's 128 positions.
fn long_prompt() -> String {
    "The fox went to the river to drink, and he met a friendly old turtle. ".repeat(20)
}

#[test]
fn prompt_longer_than_the_context_window_asks_for_truncate() {
    let stderr = assert_fails(
        lmrs()
            .arg("generate")
            .arg("--model")
            .arg(fixture(LLAMA))
            .args(["--max-new-tokens", "4", "--"])
            .arg(long_prompt()),
        &["context window", "128", "--truncate"],
    );
    assert_eq!(stderr.lines().count(), 1, "one clear line:\n{stderr}");
}

#[test]
fn truncate_keeps_the_end_of_a_long_prompt() {
    let record = single_record(
        lmrs()
            .arg("generate")
            .arg("--model")
            .arg(gguf("llama-tiny-f32.gguf"))
            .args(["--json", "--truncate", "--max-new-tokens", "4", "--"])
            .arg(long_prompt()),
    );
    assert_eq!(record["truncated"], true);
    assert_eq!(
        record["prompt_tokens"], 124,
        "128 positions minus 4 new tokens"
    );
    assert_eq!(token_ids(&record).len(), 4);
}

#[test]
fn empty_prompt_is_refused() {
    for model in [fixture(LLAMA), gguf("llama-tiny-f32.gguf")] {
        assert_fails(
            lmrs()
                .arg("generate")
                .arg("--model")
                .arg(&model)
                .args(["--max-new-tokens", "4", ""]),
            &["empty"],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Broken and unsupported GGUF files

#[test]
fn truncated_gguf_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(gguf("llama-tiny-q8_0.gguf")).unwrap();
    // Cut inside the header, and inside the tensor data.
    for (name, len, needle) in [
        ("header.gguf", 100, "truncated"),
        ("data.gguf", bytes.len() / 2, "truncated"),
        ("magic.gguf", 3, "GGUF"),
    ] {
        let path = tmp.path().join(name);
        std::fs::write(&path, &bytes[..len]).unwrap();
        let stderr = assert_fails(
            lmrs_isolated(tmp.path())
                .arg("generate")
                .arg("--model")
                .arg(&path)
                .arg("hi"),
            &[&path.display().to_string(), needle],
        );
        assert!(stderr.lines().count() <= 2, "{stderr}");
    }
}

#[test]
fn garbage_gguf_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    // Deterministic noise after no magic, the magic alone, and magic plus version 3.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let cases: [(&str, &[u8]); 3] = [
        ("noise.gguf", b""),
        ("magic.gguf", b"GGUF"),
        ("v3.gguf", b"GGUF\x03\x00\x00\x00"),
    ];
    for (name, head) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, [head, &noise].concat()).unwrap();
        // Even with RUST_BACKTRACE set the reason is one line, not the backend's stack.
        let stderr = assert_fails(
            lmrs_isolated(tmp.path())
                .env("RUST_BACKTRACE", "1")
                .arg("generate")
                .arg("--model")
                .arg(&path)
                .arg("hi"),
            &[&path.display().to_string(), "GGUF"],
        );
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
    }
}

/// A tiny GGUF file declaring `architecture` (one small tensor, a few metadata keys).
fn write_gguf(path: &Path, architecture: &str) {
    let tensor = Tensor::zeros((4, 32), lmrs_core::DType::F32, &Device::Cpu).unwrap();
    let q = QTensor::quantize(&tensor, GgmlDType::F32).unwrap();
    let arch = GgufValue::String(architecture.to_string());
    let ctx = GgufValue::U32(64);
    let name = GgufValue::String("tiny".to_string());
    let key = format!("{architecture}.context_length");
    let metadata = [
        ("general.architecture", &arch),
        ("general.name", &name),
        (key.as_str(), &ctx),
    ];
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &metadata, &[("token_embd.weight", &q)]).unwrap();
}

#[test]
fn unsupported_gguf_architecture_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("mamba-tiny.gguf");
    write_gguf(&path, "mamba");
    for cmd in ["generate", "chat", "summarize"] {
        let mut c = lmrs_isolated(tmp.path());
        c.arg(cmd).arg("--model").arg(&path);
        if cmd == "chat" {
            c.args(["--message", "hi"]);
        } else {
            c.arg("hi there");
        }
        assert_fails(
            &mut c,
            &[
                &path.display().to_string(),
                "unsupported architecture 'mamba'",
                "llama",
            ],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The default model

#[test]
fn missing_default_model_says_how_to_fetch_it() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        vec!["generate", "hi"],
        vec!["chat", "--message", "hi"],
        vec!["summarize", "Some text to summarize."],
    ] {
        let stderr = assert_fails(
            lmrs_isolated(home.path()).args(&args),
            &["scripts/fetch-models.sh", "SmolLM2-135M-Instruct"],
        );
        assert!(
            stderr.contains(&home.path().display().to_string()),
            "names where it looked: {stderr}"
        );
    }
}
