//! Encoder commands (`embed`, `similarity`) as a user drives them: outputs equal the
//! `sentence-transformers` references committed beside the tiny BERT fixtures, and bad models,
//! bad input and bad flags fail with a clear message and no panic.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const ST: &str = "bert-tiny-st";

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture(ST).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn texts() -> Vec<String> {
    expected()["tokenization"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap().to_string())
        .collect()
}

/// A copy of a fixture folder, subfolders included: `(guard, folder)`.
fn copy_tree(name: &str) -> (tempfile::TempDir, PathBuf) {
    fn copy(src: &Path, dst: &Path) {
        std::fs::create_dir_all(dst).unwrap();
        for entry in std::fs::read_dir(src).unwrap() {
            let path = entry.unwrap().path();
            let to = dst.join(path.file_name().unwrap());
            if path.is_dir() {
                copy(&path, &to);
            } else {
                std::fs::copy(&path, &to).unwrap();
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    copy(&fixture(name), &dir);
    (tmp, dir)
}

fn vectors(stdout: &str) -> Vec<Vec<f32>> {
    json_lines(stdout)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(r["index"], i);
            serde_json::from_value(r["embedding"].clone()).unwrap()
        })
        .collect()
}

fn assert_close(got: &[Vec<f32>], want: &Value, tol: f32) {
    let want: Vec<Vec<f32>> = serde_json::from_value(want.clone()).unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), w.len());
        let d = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d <= tol, "row {i}: max abs diff {d}");
    }
}

#[test]
fn embed_matches_sentence_transformers() {
    let (stdout, stderr) = assert_ok(
        lmrs()
            .args(["embed", "--batch-size", "3", "--model"])
            .arg(fixture(ST))
            .arg("--")
            .args(texts()),
    );
    assert_close(&vectors(&stdout), &expected()["embeddings"], 1e-5);
    assert!(stderr.contains("truncated"), "{stderr}");
}

#[test]
fn embed_reads_a_file_and_writes_npy() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("texts.txt");
    let texts = texts();
    // One text per line: the multi-line text cannot be given this way.
    let lines: Vec<&String> = texts.iter().filter(|t| !t.contains('\n')).collect();
    std::fs::write(
        &input,
        lines.iter().map(|t| format!("{t}\n")).collect::<String>(),
    )
    .unwrap();
    let npy = tmp.path().join("out.npy");
    assert_ok(
        lmrs()
            .args(["embed", "--format", "npy", "--model"])
            .arg(fixture(ST))
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&npy),
    );
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0, "data is 64-byte aligned");
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains(&format!("'shape': ({}, 32)", lines.len())),
        "{header}"
    );
    assert_eq!(bytes.len() - 10 - header_len, lines.len() * 32 * 4);
}

#[test]
fn pooling_and_normalize_overrides() {
    let exp = expected();
    let cls = exp["pooling"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pooling"] == serde_json::json!(["cls"]))
        .unwrap()
        .clone();
    let (stdout, _) = assert_ok(
        lmrs()
            .args(["embed", "--pooling", "cls", "--no-normalize", "--model"])
            .arg(fixture(ST))
            .arg("--")
            .args(texts()),
    );
    assert_close(&vectors(&stdout), &cls["embeddings"], 1e-4);
}

#[test]
fn similarity_ranks_like_sentence_transformers() {
    let exp = expected();
    let case = &exp["similarity"][0];
    let (stdout, _) = assert_ok(
        lmrs()
            .args(["similarity", "--json", "--model"])
            .arg(fixture(ST))
            .arg("--")
            .arg(case["query"].as_str().unwrap())
            .args(texts()),
    );
    let records = json_lines(&stdout);
    let order: Vec<u64> = records
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = serde_json::from_value(case["ranking"].clone()).unwrap();
    assert_eq!(order, want);
    assert_eq!(records[0]["rank"], 1);
    let (plain, _) = assert_ok(
        lmrs()
            .args(["similarity", "--top-k", "2", "--model"])
            .arg(fixture(ST))
            .args([
                "A man plays a guitar.",
                "A guitar player.",
                "Hello world!",
                "x",
            ]),
    );
    assert_eq!(plain.lines().count(), 2, "{plain}");
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn empty_text_in_a_batch_is_named() {
    assert_fails(
        lmrs()
            .args(["embed", "--model"])
            .arg(fixture(ST))
            .args(["fine", "", "also fine"]),
        &["input 1 is empty"],
    );
}

#[test]
fn folder_without_tokenizer_names_tokenizer_json() {
    let (_tmp, dir) = copy_tree(ST);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    assert_fails(
        lmrs().args(["embed", "--model"]).arg(&dir).arg("hi"),
        &["tokenizer.json", &dir.display().to_string()],
    );
}

#[test]
fn seq2seq_checkpoint_is_not_an_encoder() {
    assert_fails(
        lmrs()
            .args(["embed", "--model"])
            .arg(fixture("t5-v1_1-tiny"))
            .arg("hi"),
        &["model_type 't5'", "bert"],
    );
}

#[test]
fn unsupported_sentence_transformers_module_is_named() {
    let (_tmp, dir) = copy_tree(ST);
    let path = dir.join("modules.json");
    let mut modules: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    modules.push(serde_json::json!({"idx": 3, "name": "3", "path": "3_Dense",
        "type": "sentence_transformers.models.Dense"}));
    std::fs::write(&path, serde_json::to_string(&modules).unwrap()).unwrap();
    assert_fails(
        lmrs().args(["embed", "--model"]).arg(&dir).arg("hi"),
        &["Dense", "modules.json"],
    );
}

#[test]
fn bad_flags_fail_cleanly() {
    assert_fails(
        lmrs()
            .args(["embed", "--pooling", "median", "--model"])
            .arg(fixture(ST))
            .arg("hi"),
        &["median", "pooling"],
    );
    assert_fails(
        lmrs()
            .args(["embed", "--max-seq-length", "1000", "--model"])
            .arg(fixture(ST))
            .arg("hi"),
        &["40 positions"],
    );
    assert_fails(
        lmrs()
            .args(["similarity", "--model"])
            .arg(fixture(ST))
            .arg("only a query"),
        &["candidate"],
    );
    assert_fails(
        lmrs()
            .args(["embed", "--normalize", "--no-normalize", "--model"])
            .arg(fixture(ST))
            .arg("hi"),
        &["--no-normalize"],
    );
}

#[test]
fn corrupt_pooling_config_names_the_file() {
    let (_tmp, dir) = copy_tree(ST);
    std::fs::write(dir.join("1_Pooling/config.json"), "{ not json").unwrap();
    assert_fails(
        lmrs().args(["embed", "--model"]).arg(&dir).arg("hi"),
        &["1_Pooling", "config.json"],
    );
}

// ---------------------------------------------------------------------------------------------
// classify

#[test]
fn classify_prints_the_best_label_of_each_text() {
    let text = std::fs::read_to_string(fixture("bert-tiny-cls").join("expected.json")).unwrap();
    let exp: Value = serde_json::from_str(&text).unwrap();
    let labels = ["negative", "neutral", "positive"];
    let cases = exp["logits"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let (stdout, _) = assert_ok(
        lmrs()
            .args(["classify", "--json", "--top-k", "0", "--model"])
            .arg(fixture("bert-tiny-cls"))
            .arg("--")
            .args(&texts),
    );
    let records = json_lines(&stdout);
    assert_eq!(records.len(), cases.len());
    for (r, c) in records.iter().zip(cases) {
        let logits: Vec<f32> = serde_json::from_value(c["logits"].clone()).unwrap();
        let best = (0..3)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        assert_eq!(r["labels"][0]["label"], labels[best]);
        assert_eq!(r["labels"].as_array().unwrap().len(), 3);
    }
    let (plain, _) = assert_ok(
        lmrs()
            .args(["classify", "--model"])
            .arg(fixture("bert-tiny-cls"))
            .args(["Hello world!", "x"]),
    );
    assert_eq!(plain.lines().count(), 2);
    assert!(plain.lines().all(|l| l.split('\t').count() == 2), "{plain}");
}

#[test]
fn classify_without_a_head_says_so() {
    assert_fails(
        lmrs()
            .args(["classify", "--model"])
            .arg(fixture(ST))
            .arg("hi"),
        &["no sequence-classification head", "classifier.weight"],
    );
}

#[test]
fn classify_bad_input_fails_cleanly() {
    assert_fails(
        lmrs()
            .args(["classify", "--function", "tanh", "--model"])
            .arg(fixture("bert-tiny-cls"))
            .arg("hi"),
        &["tanh", "softmax"],
    );
    assert_fails(
        lmrs()
            .args(["classify", "--model"])
            .arg(fixture("bert-tiny-cls"))
            .args(["ok", "   "]),
        &["input 1 is empty"],
    );
    let (_tmp, dir) = copy_tree("bert-tiny-cls");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    assert_fails(
        lmrs().args(["classify", "--model"]).arg(&dir).arg("hi"),
        &["tokenizer.json"],
    );
}

// ---------------------------------------------------------------------------------------------
// ner and fill-mask

#[test]
fn ner_json_matches_transformers_first_aggregation() {
    check_ner_json("bert-tiny-ner", "first");
}

/// RoBERTa (byte-level BPE) and XLM-R (Unigram, whitespace runs, `<unk>`, trunk stored without
/// the `roberta.` prefix): entity groups with character offsets as transformers gives them.
#[test]
fn roberta_family_ner_json_matches_transformers() {
    for name in ["roberta-tiny-ner", "xlm-roberta-tiny-ner"] {
        for aggregation in ["simple", "first"] {
            check_ner_json(name, aggregation);
        }
    }
}

fn check_ner_json(name: &str, aggregation: &str) {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    let exp: Value = serde_json::from_str(&text).unwrap();
    let texts: Vec<String> = serde_json::from_value(exp["texts"].clone()).unwrap();
    let case = exp["ner"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["aggregation"] == aggregation)
        .unwrap()
        .clone();
    let (stdout, _) = assert_ok(
        lmrs()
            .args(["ner", "--json", "--aggregation", aggregation, "--model"])
            .arg(fixture(name))
            .arg("--")
            .args(&texts),
    );
    let records = json_lines(&stdout);
    assert_eq!(records.len(), texts.len());
    for (r, want) in records.iter().zip(case["outputs"].as_array().unwrap()) {
        let got = r["entities"].as_array().unwrap();
        let want = want.as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{name} {aggregation}");
        for (g, w) in got.iter().zip(want) {
            for key in ["entity_group", "word", "start", "end"] {
                assert_eq!(g[key], w[key], "{name} {aggregation}: {key}");
            }
        }
    }
}

/// `<mask>` checkpoints: the proposals (ids, decoded tokens, sequences) and scores of
/// transformers' fill-mask pipeline.
#[test]
fn roberta_family_fill_mask_json_matches_transformers() {
    for name in ["roberta-tiny-mlm", "xlm-roberta-tiny-mlm"] {
        let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
        let exp: Value = serde_json::from_str(&text).unwrap();
        let cases = exp["fill_mask"].as_array().unwrap();
        let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
        let (stdout, _) = assert_ok(
            lmrs()
                .args(["fill-mask", "--json", "--top-k", "5", "--model"])
                .arg(fixture(name))
                .arg("--")
                .args(&texts),
        );
        let records = json_lines(&stdout);
        assert_eq!(records.len(), cases.len());
        for (r, c) in records.iter().zip(cases) {
            let masks = r["masks"].as_array().unwrap();
            // transformers: a flat list for one mask, one list per mask otherwise.
            let want: Vec<Value> = if masks.len() == 1 {
                vec![c["outputs"].clone()]
            } else {
                c["outputs"].as_array().unwrap().clone()
            };
            assert_eq!(masks.len(), want.len(), "{name}");
            for (g, w) in masks.iter().zip(&want) {
                let (g, w) = (g.as_array().unwrap(), w.as_array().unwrap());
                assert_eq!(g.len(), w.len());
                for (g, w) in g.iter().zip(w) {
                    for key in ["token", "token_str", "sequence"] {
                        assert_eq!(g[key], w[key], "{name}: {key}");
                    }
                    let (a, b) = (g["score"].as_f64().unwrap(), w["score"].as_f64().unwrap());
                    assert!((a - b).abs() <= 1e-4, "{name}: score {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn xlm_roberta_classify_prints_transformers_labels() {
    let name = "xlm-roberta-tiny-cls";
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    let exp: Value = serde_json::from_str(&text).unwrap();
    let cases = exp["classify"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let (stdout, _) = assert_ok(
        lmrs()
            .args(["classify", "--json", "--top-k", "0", "--model"])
            .arg(fixture(name))
            .arg("--")
            .args(&texts),
    );
    let records = json_lines(&stdout);
    assert_eq!(records.len(), cases.len());
    for (r, c) in records.iter().zip(cases) {
        let got = r["labels"].as_array().unwrap();
        let want = c["outputs"].as_array().unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g["label"], w["label"]);
            let (a, b) = (g["score"].as_f64().unwrap(), w["score"].as_f64().unwrap());
            assert!((a - b).abs() <= 1e-4, "score {a} vs {b}");
        }
    }
}

#[test]
fn fill_mask_prints_top_k_per_mask() {
    let (stdout, _) = assert_ok(
        lmrs()
            .args(["fill-mask", "--top-k", "3", "--model"])
            .arg(fixture("bert-tiny-mlm"))
            .args(["[MASK] is a [MASK] test.", "hello [MASK]!"]),
    );
    // Two masks in the first text, one in the second: three lines of three proposals.
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(
        stdout.lines().all(|l| l.split('\t').count() == 6),
        "{stdout}"
    );
}

#[test]
fn token_tasks_bad_input_fails_cleanly() {
    assert_fails(
        lmrs()
            .args(["fill-mask", "--model"])
            .arg(fixture("bert-tiny-mlm"))
            .arg("no mask here"),
        &["input 0 has no [MASK]"],
    );
    assert_fails(
        lmrs()
            .args(["fill-mask", "--model"])
            .arg(fixture("bert-tiny-cls"))
            .arg("a [MASK]"),
        &["no masked-language-modelling head"],
    );
    assert_fails(
        lmrs().args(["ner", "--model"]).arg(fixture(ST)).arg("hi"),
        &["no token-classification head"],
    );
    assert_fails(
        lmrs()
            .args(["ner", "--aggregation", "mean", "--model"])
            .arg(fixture("bert-tiny-ner"))
            .arg("hi"),
        &["mean", "aggregation"],
    );
    assert_fails(
        lmrs()
            .args(["ner", "--model"])
            .arg(fixture("bert-tiny-ner"))
            .args(["ok", ""]),
        &["input 1 is empty"],
    );
}

#[test]
fn bench_measures_embeddings_of_an_encoder() {
    let (out, _) = assert_ok(lmrs().args([
        "bench",
        "--model",
        fixture(ST).to_str().unwrap(),
        "--input-tokens",
        "16",
        "--batch",
        "1,4",
        "--repeat",
        "1",
        "--json",
    ]));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["tokens"], 16);
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(
        cases
            .iter()
            .map(|c| c["batch"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 4]
    );
    assert!(cases
        .iter()
        .all(|c| c["embeddings_per_s"].as_f64().unwrap() > 0.0));
    // Longer than the fixture's position table: a clear error.
    assert_fails(
        lmrs().args([
            "bench",
            "--model",
            fixture(ST).to_str().unwrap(),
            "--input-tokens",
            "100000",
        ]),
        &["exceeds"],
    );
}
