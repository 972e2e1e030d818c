//! Malformed model files through the `lmrs` binary, as a user meets them: each is a committed
//! fixture with one field or header value changed, and each run exits 1 with an error naming
//! what is wrong, not 101 (panic) or 134 (abort on allocation), and never blocks.

mod common;

use common::*;
use lmrs_core::candle::quantized::gguf_file::{self, Content, Value};
use lmrs_core::candle::quantized::QTensor;
use lmrs_core::Device;
use serde_json::json;
use std::path::Path;

/// Run and require exit status 1 with every needle on stderr.
fn exits_1(cmd: &mut assert_cmd::Command, needles: &[&str]) {
    cmd.env_remove("RUST_BACKTRACE")
        .timeout(std::time::Duration::from_secs(120));
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "'{n}' missing from: {stderr}");
    }
}

#[test]
fn t5_without_decoder_layers() {
    let (_tmp, dir) = copy_fixture("t5-v1_0-tiny");
    edit_config(&dir, |c| {
        c.insert("num_decoder_layers".into(), json!(0));
    });
    exits_1(
        lmrs()
            .args(["summarize", "--model"])
            .arg(&dir)
            .arg("some text"),
        &["'num_decoder_layers' must be positive"],
    );
}

#[test]
fn gemma3_head_dim_beyond_the_tensors() {
    let (_tmp, dir) = copy_fixture("gemma3-tiny");
    edit_config(&dir, |c| {
        c.insert("head_dim".into(), json!(1_000_000_000_000u64));
    });
    exits_1(
        lmrs().args(["generate", "--model"]).arg(&dir).arg("hi"),
        &["'num_attention_heads * head_dim'", "q_proj.weight"],
    );
}

#[test]
fn t5_num_layers_of_the_wrong_type() {
    let (_tmp, dir) = copy_fixture("t5-v1_0-tiny");
    edit_config(&dir, |c| {
        c.insert("num_layers".into(), json!("six"));
    });
    exits_1(
        lmrs()
            .args(["summarize", "--model"])
            .arg(&dir)
            .arg("some text"),
        &[
            "'num_layers'",
            "invalid type: string \"six\", expected usize",
        ],
    );
}

/// The f32 llama-tiny GGUF rewritten with one metadata entry added.
fn gguf_with(path: &Path, key: &str, value: Value) {
    let src = fixture("llama-tiny-gguf").join("llama-tiny-f32.gguf");
    let mut f = std::fs::File::open(src).unwrap();
    let content = Content::read(&mut f).unwrap();
    let mut meta: Vec<(String, Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    meta.push((key.to_string(), value));
    let tensors: Vec<(String, QTensor)> = content
        .tensor_infos
        .keys()
        .map(|n| (n.clone(), content.tensor(&mut f, n, &Device::Cpu).unwrap()))
        .collect();
    let m: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut out, &m, &t).unwrap();
}

#[test]
fn gguf_with_alignment_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.gguf");
    gguf_with(&path, "general.alignment", Value::U32(0));
    exits_1(
        lmrs().args(["generate", "--model"]).arg(&path).arg("hi"),
        &["general.alignment", "power of two"],
    );
}

#[test]
fn special_files_as_the_model_path() {
    exits_1(
        lmrs().args(["generate", "--model", "/dev/zero", "hi"]),
        &["/dev/zero is a character device"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("model.gguf");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // Opening the FIFO would block until a writer appears: the timeout above catches that.
    exits_1(
        lmrs().args(["generate", "--model"]).arg(&fifo).arg("hi"),
        &["is a FIFO"],
    );
}
