//! Helpers for driving the `lmrs` binary against the committed tiny fixtures.

#![allow(dead_code)]

use assert_cmd::Command;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The tiny random T5 checkpoints under `tests/fixtures/`.
pub const FIXTURES: &[&str] = &["t5-v1_0-tiny", "t5-v1_1-tiny", "t5-v1_0-tiny-bf16"];

/// The `lmrs` binary with a clean Hugging Face environment: no cache variables from the host,
/// one compute thread so parallel tests do not fight over the cores.
pub fn lmrs() -> Command {
    let mut cmd = Command::cargo_bin("lmrs").expect("the lmrs binary is built");
    cmd.env_remove("HF_HUB_CACHE")
        .env_remove("HF_HOME")
        .env("RAYON_NUM_THREADS", "1");
    cmd
}

/// `tests/fixtures/NAME` of the workspace.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// A copy of fixture `name` in a fresh temporary folder: `(guard, model folder)`.
pub fn copy_fixture(name: &str) -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    copy_dir(&fixture(name), &dir);
    (tmp, dir)
}

/// Copy the files of `src` (no subfolders) into `dst`, creating it.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dst.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// Run `cmd`, which must fail cleanly: a non-zero exit code, no panic, and every one of
/// `needles` in stderr. Returns stderr.
#[track_caller]
pub fn assert_fails(cmd: &mut Command, needles: &[&str]) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected failure, got {:?}\nstderr: {stderr}",
        out.status
    );
    assert!(out.status.code().is_some(), "killed by a signal: {stderr}");
    assert!(
        !stderr.contains("panicked"),
        "panic on bad input:\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr should mention {needle:?}:\n{stderr}"
        );
    }
    stderr
}

/// Run `cmd`, which must succeed, and return `(stdout, stderr)`.
#[track_caller]
pub fn assert_ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "lmrs failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (stdout, stderr)
}

/// Parse `--json` output: one JSON object per line.
pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The `token_ids` of a `--json` record (or of one of its `sequences`).
pub fn token_ids(record: &Value) -> Vec<u64> {
    record["token_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no token_ids in {record}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// The `generate` reference cases of a fixture's `expected.json`.
pub fn generate_cases(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    expected["generate"].as_array().unwrap().clone()
}

/// The reference case called `case` of fixture `name`.
pub fn generate_case(name: &str, case: &str) -> Value {
    generate_cases(name)
        .into_iter()
        .find(|c| c["name"] == case)
        .unwrap_or_else(|| panic!("{name}: no generate case {case}"))
}

/// Row `row` of a case's `output_ids`, without the decoder start token (lmrs leaves it out).
pub fn reference_ids(case: &Value, row: usize) -> Vec<u64> {
    let ids: Vec<u64> = case["output_ids"][row]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        ids.first(),
        Some(&0),
        "rows start with the decoder start token"
    );
    ids[1..].to_vec()
}

/// Plain greedy cases (`greedy_<n>`, only `max_length: 20`) with one non-blank text:
/// `(text, reference ids)`.
pub fn plain_greedy_cases(name: &str) -> Vec<(String, Vec<u64>)> {
    generate_cases(name)
        .iter()
        .filter(|c| {
            c["name"]
                .as_str()
                .and_then(|n| n.strip_prefix("greedy_"))
                .is_some_and(|n| n.chars().all(|ch| ch.is_ascii_digit()))
        })
        .filter(|c| c["kwargs"] == json!({"max_length": 20}))
        .filter_map(|c| {
            let texts = c["texts"].as_array()?;
            let text = texts.first()?.as_str()?;
            (texts.len() == 1 && !text.trim().is_empty())
                .then(|| (text.to_string(), reference_ids(c, 0)))
        })
        .collect()
}

/// Rewrite the safetensors file `src` into `dst` without tensor `drop` (data re-packed so the
/// file stays valid).
pub fn write_safetensors_without(src: &Path, dst: &Path, drop: &str) {
    let bytes = std::fs::read(src).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Map<String, Value> = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    assert!(
        header.contains_key(drop),
        "{} has no tensor {drop}",
        src.display()
    );

    let mut tensors: Vec<(String, Value)> = header
        .into_iter()
        .filter(|(name, _)| name != drop)
        .collect();
    let offsets = |info: &Value| {
        let o = info["data_offsets"].as_array().unwrap();
        (
            o[0].as_u64().unwrap() as usize,
            o[1].as_u64().unwrap() as usize,
        )
    };
    tensors.sort_by_key(|(name, info)| {
        if name == "__metadata__" {
            0
        } else {
            offsets(info).0
        }
    });
    let mut new_header = Map::new();
    let mut new_data = Vec::new();
    for (name, mut info) in tensors {
        if name != "__metadata__" {
            let (start, end) = offsets(&info);
            let new_start = new_data.len();
            new_data.extend_from_slice(&data[start..end]);
            info["data_offsets"] = json!([new_start, new_data.len()]);
        }
        new_header.insert(name, info);
    }
    let mut header_bytes = serde_json::to_vec(&new_header).unwrap();
    // Keep the data 8-byte aligned, as the format recommends.
    while !header_bytes.len().is_multiple_of(8) {
        header_bytes.push(b' ');
    }
    let mut out = (header_bytes.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(&new_data);
    std::fs::write(dst, out).unwrap();
}

/// Edit a model folder's `config.json` in place.
pub fn edit_config(dir: &Path, edit: impl FnOnce(&mut Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut cfg: Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
}

/// `lmrs train --task TASK --model MODEL` on the Zen of Python fixture
/// (`tests/fixtures/train/zen.jsonl`) with small settings (lr 1e-3, batch 4, a log every 2
/// steps, `--json`), into `out`, then `extra`.
pub fn train_cmd(task: &str, model: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = lmrs();
    c.args(["train", "--task", task, "--model"])
        .arg(model)
        .arg("--train")
        .arg(fixture("train/zen.jsonl"))
        .arg("--output")
        .arg(out)
        .args([
            "--learning-rate",
            "1e-3",
            "--per-device-train-batch-size",
            "4",
        ])
        .args(["--logging-steps", "2", "--json"])
        .args(extra);
    c
}
