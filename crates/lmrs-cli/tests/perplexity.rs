//! `lmrs eval perplexity` as a user drives it: the committed `transformers` references
//! (tools/gen_perplexity_fixture.py) from plain text and from JSON Lines, the text and JSON
//! outputs, and bad input (missing or empty file, stride 0 or above the window, a window
//! longer than the context, a seq2seq model) failing with the problem named and no panic.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn text_file() -> PathBuf {
    fixture("perplexity").join("text.txt")
}

fn expected_config(model: &str, name: &str) -> Value {
    let p = fixture("perplexity").join("expected.json");
    let exp: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    exp["models"][model]["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no config {name}"))
        .clone()
}

fn ppl_json(model: &str, data: &Path, extra: &[&str]) -> Value {
    let mut cmd = lmrs();
    cmd.args(["eval", "perplexity", "--json", "--model"])
        .arg(fixture(model))
        .arg("--data")
        .arg(data)
        .args(extra);
    let (stdout, _) = assert_ok(&mut cmd);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn assert_close(got: &Value, want: &Value, what: &str) {
    let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
    let rel = (g - w).abs() / w.abs();
    assert!(rel < 1e-4, "{what}: {g} vs {w} (rel {rel:e})");
}

fn assert_matches(got: &Value, cfg: &Value) {
    assert_close(&got["ppl"], &cfg["hf_docs"]["ppl"], "ppl");
    assert_close(&got["nll"], &cfg["hf_docs"]["nll"], "nll");
    assert_close(&got["token_ppl"], &cfg["token_level"]["ppl"], "token_ppl");
    assert_eq!(got["loss_tokens"], cfg["hf_docs"]["n_tokens"]);
    assert_eq!(got["scored_tokens"], cfg["scored_tokens"]);
    assert_eq!(got["windows"], cfg["windows"]);
    assert_eq!(got["tokens"], cfg["tokens"]);
}

#[test]
fn overlapping_windows_match_transformers() {
    let cfg = expected_config("llama-tiny", "len64_stride32");
    let got = ppl_json(
        "llama-tiny",
        &text_file(),
        &["--max-length", "64", "--stride", "32"],
    );
    assert_matches(&got, &cfg);
    assert!(got["method"].as_str().unwrap().contains("trg_len - 1"));
    assert_eq!(got["add_bos"], "auto");
}

#[test]
fn disjoint_windows_and_defaults_match_transformers() {
    let cfg = expected_config("gpt2-tiny", "len64_stride64");
    let got = ppl_json(
        "gpt2-tiny",
        &text_file(),
        &["--max-length", "64", "--stride", "64", "--batch-size", "3"],
    );
    assert_matches(&got, &cfg);
    // Defaults: the model's context (128) and half of it.
    let cfg = expected_config("gpt2-tiny", "len128_stride64");
    let got = ppl_json("gpt2-tiny", &text_file(), &[]);
    assert_eq!(
        (got["max_length"].as_u64(), got["stride"].as_u64()),
        (Some(128), Some(64))
    );
    assert_matches(&got, &cfg);
}

#[test]
fn json_lines_documents_are_joined_with_a_blank_line() {
    // Split the text at its blank lines: joined back with "\n\n" it is the same text.
    let text = std::fs::read_to_string(text_file()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("docs.jsonl");
    let lines: String = text
        .split("\n\n")
        .map(|d| format!("{}\n", serde_json::json!({"id": 1, "body": d})))
        .collect();
    std::fs::write(&data, lines).unwrap();
    let cfg = expected_config("gemma3-tiny", "len64_stride32");
    let got = ppl_json(
        "gemma3-tiny",
        &data,
        &["--field", "body", "--max-length", "64", "--stride", "32"],
    );
    assert_matches(&got, &cfg);
}

#[test]
fn text_output_names_both_averages() {
    let mut cmd = lmrs();
    cmd.args(["eval", "perplexity", "--model"])
        .arg(fixture("llama-tiny"))
        .arg("--data")
        .arg(text_file())
        .args(["--max-length", "64", "--stride", "32", "--add-bos", "never"]);
    let (stdout, _) = assert_ok(&mut cmd);
    let cfg = expected_config("llama-tiny", "len64_stride32");
    let first = stdout.lines().next().unwrap();
    let got: f64 = first
        .strip_prefix("perplexity ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no perplexity in {first:?}"));
    let want = cfg["hf_docs"]["ppl"].as_f64().unwrap();
    assert!((got - want).abs() / want < 1e-4, "{got} vs {want}");
    assert!(stdout.contains("per-token perplexity"), "{stdout}");
    assert!(
        stdout.contains("38 windows of up to 64 tokens, stride 32"),
        "{stdout}"
    );
}

#[test]
fn add_bos_always_prepends_the_bos_token() {
    let got = ppl_json(
        "gpt2-tiny",
        &text_file(),
        &["--max-length", "64", "--add-bos", "always"],
    );
    let cfg = expected_config("gpt2-tiny", "len64_stride32");
    assert_eq!(
        got["tokens"].as_u64().unwrap(),
        cfg["tokens"].as_u64().unwrap() + 1
    );
}

#[test]
fn bad_input_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let blank = tmp.path().join("blank.txt");
    std::fs::write(&blank, " \n\n  \n").unwrap();
    let empty_jsonl = tmp.path().join("empty.jsonl");
    std::fs::write(&empty_jsonl, "\n").unwrap();
    let bad_jsonl = tmp.path().join("bad.jsonl");
    std::fs::write(&bad_jsonl, "{\"text\": \"a\"}\n{\"other\": 1}\n").unwrap();
    let one_token = tmp.path().join("one.txt");
    std::fs::write(&one_token, "a").unwrap();
    let missing = tmp.path().join("missing.txt");

    let run = |model: &str, data: &Path, extra: &[&str], needles: &[&str]| {
        let mut cmd = lmrs();
        cmd.args(["eval", "perplexity", "--model"])
            .arg(fixture(model))
            .arg("--data")
            .arg(data)
            .args(extra);
        assert_fails(&mut cmd, needles);
    };
    let text = text_file();
    run("llama-tiny", &missing, &[], &["missing.txt"]);
    run("llama-tiny", &empty, &[], &["empty.txt", "no text"]);
    run("llama-tiny", &blank, &[], &["blank.txt", "no text"]);
    run(
        "llama-tiny",
        &empty_jsonl,
        &[],
        &["empty.jsonl", "no documents"],
    );
    run(
        "llama-tiny",
        &bad_jsonl,
        &[],
        &["bad.jsonl", "line 2", "text"],
    );
    run("llama-tiny", &one_token, &[], &["at least 2"]);
    run("llama-tiny", &text, &["--stride", "0"], &["--stride 0"]);
    run(
        "llama-tiny",
        &text,
        &["--max-length", "32", "--stride", "33"],
        &["--stride 33", "--max-length 32"],
    );
    // Stride above the default window (the context, 128).
    run(
        "llama-tiny",
        &text,
        &["--stride", "200"],
        &["stride 200", "128"],
    );
    run(
        "llama-tiny",
        &text,
        &["--max-length", "4096"],
        &["max_length 4096", "context of 128"],
    );
    run(
        "llama-tiny",
        &text,
        &["--max-length", "0"],
        &["--max-length 0"],
    );
    run(
        "t5-v1_0-tiny",
        &text,
        &[],
        &["t5-v1_0-tiny", "not a decoder-only (causal) language model"],
    );
    run(
        "bert-tiny-mlm",
        &text,
        &[],
        &["not a decoder-only (causal) language model"],
    );
    let mut cmd = lmrs();
    cmd.args(["eval", "perplexity", "--model"])
        .arg(tmp.path().join("no-such-model"))
        .arg("--data")
        .arg(&text);
    assert_fails(&mut cmd, &["no-such-model"]);
}
