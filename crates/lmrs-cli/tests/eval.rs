//! `lmrs eval` as a user drives it: metrics from files (plain and JSON Lines) reproduce the
//! committed sacreBLEU / rouge-score references, bad input fails with the file and line named,
//! and `eval run` writes its three files, matches `lmrs summarize` and resumes.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn metrics_fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture("metrics").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn eval_json(args: &[&str], pred: &Path, reference: &Path) -> Value {
    let mut cmd = lmrs();
    cmd.args(["eval", "metrics", "--json", "--predictions"])
        .arg(pred)
        .arg("--references")
        .arg(reference)
        .args(args);
    let (stdout, _) = assert_ok(&mut cmd);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn bleu_and_chrf_from_text_files_match_sacrebleu() {
    let bleu = metrics_fixture("bleu.json");
    let chrf = metrics_fixture("chrf.json");
    let corpus = &bleu["corpora"]["random_corpus"];
    let tmp = tempfile::tempdir().unwrap();
    let lines = |v: &Value, f: &dyn Fn(&Value) -> &str| -> String {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| format!("{}\n", f(x)))
            .collect()
    };
    let pred = write(
        tmp.path(),
        "pred.txt",
        &lines(&corpus["hypotheses"], &|x| x.as_str().unwrap()),
    );
    let refs = write(
        tmp.path(),
        "ref.txt",
        &lines(&corpus["references"], &|x| x[0].as_str().unwrap()),
    );
    let got = eval_json(&["--metric", "bleu,chrf"], &pred, &refs);
    let want_bleu = bleu["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "random_corpus/default")
        .unwrap();
    let want_chrf = chrf["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "random_corpus/default")
        .unwrap();
    let d = (got["bleu"]["score"].as_f64().unwrap() - want_bleu["score"].as_f64().unwrap()).abs();
    assert!(d < 1e-6, "{got}");
    assert_eq!(got["bleu"]["signature"], want_bleu["signature"]);
    let d = (got["chrf"]["score"].as_f64().unwrap() - want_chrf["score"].as_f64().unwrap()).abs();
    assert!(d < 1e-6, "{got}");

    // The plain output is sacreBLEU's line.
    let mut cmd = lmrs();
    cmd.args(["eval", "metrics", "--metric", "bleu", "--predictions"])
        .arg(&pred)
        .arg("--references")
        .arg(&refs);
    let (stdout, _) = assert_ok(&mut cmd);
    assert_eq!(stdout.trim(), want_bleu["formatted"].as_str().unwrap());
}

#[test]
fn rouge_from_jsonl_with_fields_matches_rouge_score() {
    let fx = metrics_fixture("rouge.json");
    let case = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "hand_stem1")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut pred = String::new();
    let mut refs = String::new();
    for (p, r) in case["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(case["references"].as_array().unwrap())
    {
        pred.push_str(&format!("{}\n", serde_json::json!({"summary": p})));
        refs.push_str(&format!(
            "{}\n\n",
            serde_json::json!({"highlights": r[0], "id": 1})
        ));
    }
    let pred = write(tmp.path(), "pred.jsonl", &pred);
    let refs = write(tmp.path(), "ref.jsonl", &refs);
    let got = eval_json(
        &[
            "--metric",
            "rouge",
            "--use-stemmer",
            "--prediction-field",
            "summary",
            "--reference-field",
            "highlights",
        ],
        &pred,
        &refs,
    );
    let n = case["scores"].as_array().unwrap().len();
    assert_eq!(got["rouge"]["examples"], n);
    for t in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
        for (k, m) in ["precision", "recall", "fmeasure"].iter().enumerate() {
            let want: f64 = case["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s[t][k].as_f64().unwrap())
                .sum::<f64>()
                / n as f64;
            let iv = &got["rouge"]["scores"][t][m];
            let mean = iv["mean"].as_f64().unwrap();
            assert!((mean - want).abs() < 1e-9, "{t} {m}: {mean} vs {want}");
            assert!(
                iv["low"].as_f64().unwrap() <= mean && mean <= iv["high"].as_f64().unwrap(),
                "{iv}"
            );
        }
    }
}

#[test]
fn classification_metrics_and_unseen_label_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let refs = write(tmp.path(), "y.txt", "cat\ndog\ncat\nbird\n");
    let pred = write(tmp.path(), "p.txt", "cat\ncat\ncat\nfish\n");
    let mut cmd = lmrs();
    cmd.args([
        "eval",
        "metrics",
        "--json",
        "--metric",
        "accuracy,f1",
        "--predictions",
    ])
    .arg(&pred)
    .arg("--references")
    .arg(&refs);
    let (stdout, stderr) = assert_ok(&mut cmd);
    assert!(
        stderr.contains("fish") && stderr.contains("never occur"),
        "{stderr}"
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["accuracy"], 0.5);
    let classes: Vec<&str> = v["classification"]["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["bird", "cat", "dog", "fish"]);
    // cat: tp 2, predicted 3, true 2 → F1 0.8; macro over 4 classes = 0.2.
    assert!(
        (v["classification"]["macro_avg"]["f1"].as_f64().unwrap() - 0.2).abs() < 1e-12,
        "{v}"
    );
    // zero_division=nan leaves the undefined entries out of the macro average and prints null.
    let v = eval_json(
        &["--metric", "precision", "--zero-division", "nan"],
        &pred,
        &refs,
    );
    let fish = &v["classification"]["per_class"][3];
    assert!(
        fish["recall"].is_null() && fish["precision"] == 0.0,
        "{fish}"
    );
}

#[test]
fn mismatched_line_counts_name_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let pred = write(tmp.path(), "pred.txt", "a\nb\n");
    let refs = write(tmp.path(), "ref.txt", "a\nb\nc\n");
    assert_fails(
        lmrs()
            .args(["eval", "metrics", "--metric", "rouge", "--predictions"])
            .arg(&pred)
            .arg("--references")
            .arg(&refs),
        &["pred.txt", "ref.txt", "2", "3"],
    );
}

#[test]
fn missing_json_field_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let pred = write(
        tmp.path(),
        "pred.jsonl",
        "{\"prediction\": \"a\"}\n{\"text\": \"b\"}\n",
    );
    let refs = write(tmp.path(), "ref.txt", "a\nb\n");
    assert_fails(
        lmrs()
            .args(["eval", "metrics", "--metric", "bleu", "--predictions"])
            .arg(&pred)
            .arg("--references")
            .arg(&refs),
        &["pred.jsonl", "line 2", "prediction"],
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "f.txt", "a\n");
    for (args, needle) in [
        (vec!["--metric", "meteor"], "meteor"),
        (
            vec!["--metric", "rouge", "--rouge-types", "rougeX"],
            "rougeX",
        ),
        (
            vec!["--metric", "f1", "--zero-division", "2"],
            "zero_division",
        ),
        (vec!["--metric", "bleu", "--bleu-tokenize", "intl"], "intl"),
    ] {
        assert_fails(
            lmrs()
                .args(["eval", "metrics", "--predictions"])
                .arg(&f)
                .arg("--references")
                .arg(&f)
                .args(&args),
            &[needle],
        );
    }
}

/// `eval run --task summarization` on the tiny T5: three files, the same texts as
/// `lmrs summarize --json`, and a rerun that skips what predictions.jsonl already holds.
#[test]
fn eval_run_summarization_writes_files_matches_summarize_and_resumes() {
    let texts = [
        "The tower is tall and old.",
        "Rain fell on the quiet town all day.",
        "A cat sat on the warm mat.",
    ];
    let tmp = tempfile::tempdir().unwrap();
    let data: String = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "{}\n",
                serde_json::json!({"article": t, "highlights": format!("summary {i}")})
            )
        })
        .collect();
    let data = write(tmp.path(), "data.jsonl", &data);
    let out = tmp.path().join("out");
    let run = || {
        let mut cmd = lmrs();
        cmd.args([
            "eval",
            "run",
            "--task",
            "summarization",
            "--input-field",
            "article",
            "--reference-field",
            "highlights",
            "--max-new-tokens",
            "8",
            "--model",
        ])
        .arg(fixture("t5-v1_1-tiny"))
        .arg("--data")
        .arg(&data)
        .arg("--output")
        .arg(&out);
        assert_ok(&mut cmd)
    };
    let (stdout, _) = run();
    assert!(stdout.contains("rougeL"), "{stdout}");
    for f in ["predictions.jsonl", "metrics.json", "report.md"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let preds = json_lines(&std::fs::read_to_string(out.join("predictions.jsonl")).unwrap());
    assert_eq!(preds.len(), 3);

    let mut cmd = lmrs();
    cmd.args(["summarize", "--json", "--max-new-tokens", "8", "--model"])
        .arg(fixture("t5-v1_1-tiny"))
        .arg("--")
        .args(texts);
    let (stdout, _) = assert_ok(&mut cmd);
    let expected: Vec<Value> = json_lines(&stdout);
    for (i, (p, e)) in preds.iter().zip(&expected).enumerate() {
        assert_eq!(p["index"], i);
        assert_eq!(p["input"], texts[i]);
        assert_eq!(p["prediction"], e["text"], "example {i}");
    }
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["examples"], 3);
    assert!(
        metrics["metrics"]["rouge"]["scores"]["rouge1"]["fmeasure"]["mean"].is_f64(),
        "{metrics}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| rougeL |") && report.contains("Worst examples"),
        "{report}"
    );

    // Interrupted run: example 0 done (with a marker text, so a regeneration would show), the
    // rest lost, the last line cut mid-write.
    let mut first = preds[0].clone();
    first["prediction"] = "MARKER".into();
    std::fs::write(
        out.join("predictions.jsonl"),
        format!("{first}\n{{\"index\": 2, \"inp"),
    )
    .unwrap();
    let (_, stderr) = run();
    assert!(stderr.contains("resuming: 1 of 3"), "{stderr}");
    let again = json_lines(&std::fs::read_to_string(out.join("predictions.jsonl")).unwrap());
    assert_eq!(again.len(), 3);
    assert_eq!(
        again[0]["prediction"], "MARKER",
        "done example was regenerated"
    );
    assert_eq!(again[1]["prediction"], expected[1]["text"]);
    assert_eq!(again[2]["prediction"], expected[2]["text"]);
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(
        (metrics["resumed"].as_u64(), metrics["generated"].as_u64()),
        (Some(1), Some(2))
    );

    // A predictions file from another dataset is refused.
    std::fs::write(
        out.join("predictions.jsonl"),
        "{\"index\": 0, \"input\": \"other\", \"prediction\": \"x\"}\n",
    )
    .unwrap();
    let mut cmd = lmrs();
    cmd.args([
        "eval",
        "run",
        "--task",
        "summarization",
        "--input-field",
        "article",
        "--reference-field",
        "highlights",
        "--model",
    ])
    .arg(fixture("t5-v1_1-tiny"))
    .arg("--data")
    .arg(&data)
    .arg("--output")
    .arg(&out);
    assert_fails(&mut cmd, &["predictions.jsonl", "line 1", "does not match"]);
}

#[test]
fn eval_run_classification_scores_the_top_label() {
    let texts = [
        "a good movie",
        "terrible plot and bad acting",
        "it was fine",
        "the best film of the year",
    ];
    let gold = ["positive", "negative", "neutral", "positive"];
    let tmp = tempfile::tempdir().unwrap();
    let data: String = texts
        .iter()
        .zip(gold)
        .map(|(t, g)| format!("{}\n", serde_json::json!({"sentence": t, "label": g})))
        .collect();
    let data = write(tmp.path(), "data.jsonl", &data);
    let out = tmp.path().join("out");
    let mut cmd = lmrs();
    cmd.args([
        "eval",
        "run",
        "--task",
        "classification",
        "--input-field",
        "sentence",
        "--reference-field",
        "label",
        "--model",
    ])
    .arg(fixture("bert-tiny-cls"))
    .arg("--data")
    .arg(&data)
    .arg("--output")
    .arg(&out);
    let (stdout, _) = assert_ok(&mut cmd);
    assert!(stdout.to_lowercase().contains("accuracy"), "{stdout}");

    // Predictions are `lmrs classify`'s top labels, and accuracy counts them against the gold.
    let mut cmd = lmrs();
    cmd.args(["classify", "--json", "--model"])
        .arg(fixture("bert-tiny-cls"))
        .arg("--")
        .args(texts);
    let (stdout, _) = assert_ok(&mut cmd);
    let top: Vec<String> = json_lines(&stdout)
        .iter()
        .map(|v| v["labels"][0]["label"].as_str().unwrap().to_string())
        .collect();
    let preds = json_lines(&std::fs::read_to_string(out.join("predictions.jsonl")).unwrap());
    let got: Vec<String> = preds
        .iter()
        .map(|p| p["prediction"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, top);
    let correct = top
        .iter()
        .zip(gold)
        .filter(|(p, g)| p.as_str() == *g)
        .count();
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["task"], "classification");
    let acc = correct as f64 / texts.len() as f64;
    assert_eq!(
        metrics["metrics"]["accuracy"].as_f64(),
        Some(acc),
        "{metrics}"
    );
    assert_eq!(
        metrics["metrics"]["classification"]["examples"].as_u64(),
        Some(texts.len() as u64)
    );
    assert!(out.join("report.md").is_file());
}
