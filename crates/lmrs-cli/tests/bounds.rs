//! Sizes and counts a user controls are bounded with a clear message, never a panic, an abort
//! on allocation, or a silent surprise (issue 12's reproducers for the CLI).

mod common;

use common::*;

/// `(exit code, stderr, stdout)` of `lmrs args`.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = lmrs().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn model(name: &str) -> String {
    fixture(name).to_str().unwrap().to_string()
}

#[test]
fn threads_beyond_the_cores_are_capped_with_a_warning() {
    let llama = model("llama-tiny");
    let (code, stderr, stdout) = run(&[
        "--threads",
        "2500",
        "generate",
        "--model",
        &llama,
        "--max-new-tokens",
        "2",
        "hi",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("--threads 2500 is more than the"),
        "{stderr}"
    );
    assert!(!stdout.is_empty());
    let (code, _, _) = run(&["--threads", "0", "generate", "--model", &llama, "hi"]);
    assert_eq!(code, Some(2), "--threads 0 is a usage error");
}

#[test]
fn zero_batch_sizes_are_refused_alike_by_every_command() {
    let t5 = model("t5-v1_0-tiny");
    let llama = model("llama-tiny");
    let bert = model("bert-tiny-st");
    let cls = model("bert-tiny-cls");
    let cases: Vec<Vec<&str>> = vec![
        vec!["generate", "--model", &llama],
        vec!["text2text", "--model", &t5],
        vec!["summarize", "--model", &t5],
        vec!["embed", "--model", &bert],
        vec!["classify", "--model", &cls],
    ];
    for mut args in cases {
        args.extend(["--batch-size", "0", "hi"]);
        let (code, stderr, _) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("must be at least 1"), "{args:?}: {stderr}");
    }
    let (code, stderr, _) = run(&["bench", "--model", &llama, "--batch", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("must be at least 1"), "{stderr}");
}

#[test]
fn bench_lengths_are_bounded_by_the_model() {
    let llama = model("llama-tiny");
    let (code, stderr, _) = run(&["bench", "--model", &llama, "--input-tokens", "1000000000"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("exceed the model's context"), "{stderr}");
    let t5 = model("t5-v1_0-tiny");
    let (code, stderr, _) = run(&["bench", "--model", &t5, "--input-tokens", "1000000000"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("at most 16384"), "{stderr}");
}

#[test]
fn bootstrap_samples_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.txt");
    std::fs::write(&p, "a cat sat\n").unwrap();
    let p = p.to_str().unwrap();
    let (code, stderr, _) = run(&[
        "eval",
        "metrics",
        "--metric",
        "rouge",
        "--predictions",
        p,
        "--references",
        p,
        "--bootstrap-samples",
        "1000000000",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("at most 1000000"), "{stderr}");
}

#[test]
fn similarity_top_k_zero_prints_every_candidate() {
    let bert = model("bert-tiny-st");
    let (code, stderr, stdout) = run(&[
        "similarity",
        "--model",
        &bert,
        "--top-k",
        "0",
        "query",
        "one",
        "two",
        "three",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

/// transformers warns when `max_length` loses to `max_new_tokens`; so does lmrs (llama-tiny's
/// generation_config.json sets max_new_tokens 10).
#[test]
fn a_max_length_shadowed_by_the_models_max_new_tokens_is_warned_about() {
    let llama = model("llama-tiny");
    let (code, stderr, _) = run(&["generate", "--model", &llama, "--max-length", "3", "hi"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("`max_new_tokens` (=10") && stderr.contains("takes precedence"),
        "{stderr}"
    );
    let (_, stderr, _) = run(&[
        "generate",
        "--model",
        &llama,
        "--max-length",
        "3",
        "--max-new-tokens",
        "2",
        "hi",
    ]);
    assert!(!stderr.contains("takes precedence"), "{stderr}");
}
