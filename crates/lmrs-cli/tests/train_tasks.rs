//! `lmrs train --task text-classification` and `--task causal-lm` as a user runs them: the
//! folder each leaves is served by the inference commands (`classify`, `generate`), labels and
//! layouts come from the checkpoint or the flags, a GGUF file trains, and bad input is a clear
//! error naming the file and line. Numerical parity with `Trainer` is in lmrs-train's tests.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn a_classifier_trains_evaluates_and_classifies_with_the_checkpoints_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cls");
    let (stdout, _) = assert_ok(&mut train_cmd(
        "text-classification",
        &fixture("train/bert-train"),
        &out,
        &[
            "--input-field",
            "document",
            "--max-steps",
            "8",
            "--validation-split",
            "0.25",
            "--eval-strategy",
            "steps",
            "--eval-steps",
            "4",
            "--metric-for-best-model",
            "f1",
            "--load-best-model-at-end",
        ],
    ));
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["global_step"], 8);
    let state = read_json(&out.join("trainer_state.json"));
    let evals: Vec<&Value> = state["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("eval_loss").is_some())
        .collect();
    assert_eq!(evals.len(), 2);
    for e in &evals {
        for k in ["eval_accuracy", "eval_precision", "eval_recall", "eval_f1"] {
            let v = e[k].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&v), "{k} in {e}");
        }
    }
    assert!(state["best_metric"].is_number(), "best f1 kept");
    let cfg = read_json(&out.join("config.json"));
    assert_eq!(cfg["architectures"][0], "BertForSequenceClassification");
    assert_eq!(cfg["id2label"]["0"], "better");
    assert_eq!(cfg["label2id"]["other"], 1);
    let args = read_json(&out.join("training_args.json"));
    assert_eq!(args["lmrs_labels"], serde_json::json!(["better", "other"]));
    assert_eq!(args["lmrs_kept_head"], true);
    // The folder is a classifier `lmrs classify` loads, with the labels it was trained on.
    let (s, _) = assert_ok(lmrs().args(["classify", "--model"]).arg(&out).args([
        "--json",
        "--top-k",
        "2",
        "Flat is better than nested.",
    ]));
    let labels: Vec<String> = s
        .lines()
        .flat_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let mut names: Vec<String> = Vec::new();
            collect_labels(&v, &mut names);
            names
        })
        .collect();
    assert!(
        labels.contains(&"better".to_string()) && labels.contains(&"other".to_string()),
        "{s}"
    );
}

/// Every `"label"` string anywhere in `v`.
fn collect_labels(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("label", Value::String(s)) => out.push(s.clone()),
                    _ => collect_labels(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_labels(x, out)),
        _ => {}
    }
}

#[test]
fn new_labels_get_a_new_head_and_a_distilbert_layout_transformers_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cls");
    // The fixture's head has other labels: --labels makes a new one over these, in this order.
    let (_, stderr) = assert_ok(&mut train_cmd(
        "text-classification",
        &fixture("distilbert-tiny-cls"),
        &out,
        &[
            "--input-field",
            "document",
            "--labels",
            "other,better",
            "--max-steps",
            "3",
        ],
    ));
    assert!(
        stderr.contains("a new classification head for 2 labels"),
        "{stderr}"
    );
    let cfg = read_json(&out.join("config.json"));
    assert_eq!(
        cfg["architectures"][0],
        "DistilBertForSequenceClassification"
    );
    assert_eq!(cfg["id2label"]["0"], "other");
    assert_eq!(cfg["id2label"]["1"], "better");
    assert_eq!(cfg["problem_type"], "single_label_classification");
    assert_ok(
        lmrs()
            .args(["classify", "--model"])
            .arg(&out)
            .args(["--json", "Readability counts."]),
    );
}

#[test]
fn a_causal_lm_trains_on_completions_and_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sft");
    let (stdout, _) = assert_ok(&mut train_cmd(
        "causal-lm",
        &fixture("train/llama-train"),
        &out,
        &[
            "--input-field",
            "prompt",
            "--target-field",
            "completion",
            "--max-source-length",
            "24",
            "--max-steps",
            "6",
            "--validation-split",
            "0.2",
            "--eval-strategy",
            "steps",
            "--eval-steps",
            "3",
        ],
    ));
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["global_step"], 6);
    let state = read_json(&out.join("trainer_state.json"));
    let log = state["log_history"].as_array().unwrap();
    let losses: Vec<f64> = log
        .iter()
        .filter_map(|e| e.get("loss").and_then(Value::as_f64))
        .collect();
    assert_eq!(losses.len(), 3);
    assert!(
        losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );
    assert_eq!(
        log.iter().filter(|e| e.get("eval_loss").is_some()).count(),
        2
    );
    let args = read_json(&out.join("training_args.json"));
    assert_eq!(args["lmrs_completion_field"], "completion");
    let (s, _) = assert_ok(lmrs().args(["generate", "--model"]).arg(&out).args([
        "--max-new-tokens",
        "4",
        "--json",
        "Beautiful is better than",
    ]));
    assert!(!json_lines(&s).is_empty(), "{s}");
}

/// Conversational JSON Lines built from the Zen rows: `{"messages": [user, assistant]}` or
/// `{"prompt": [user], "completion": [assistant]}`.
fn write_conversations(path: &Path, pairs: bool) {
    let text = std::fs::read_to_string(fixture("train/zen.jsonl")).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let user = serde_json::json!({"role": "user", "content": r["prompt"]});
        let reply = r["completion"].as_str().unwrap().trim();
        let assistant = serde_json::json!({"role": "assistant", "content": reply});
        let rec = if pairs {
            serde_json::json!({"prompt": [user], "completion": [assistant]})
        } else {
            serde_json::json!({"messages": [user, assistant]})
        };
        out.push_str(&format!("{rec}\n"));
    }
    std::fs::write(path, out).unwrap();
}

fn chat_train(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut c = lmrs();
    c.args(["train", "--task", "causal-lm", "--model"])
        .arg(model)
        .arg("--train")
        .arg(data)
        .arg("--output")
        .arg(out)
        .args(["--max-steps", "2", "--per-device-train-batch-size", "4"])
        .args(["--max-source-length", "64", "--json"])
        .args(extra);
    c
}

#[test]
fn chat_data_trains_through_the_chat_template() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("train/llama-train");
    // `messages` is found without --input-field (TRL's default), the loss on every token.
    let data = tmp.path().join("messages.jsonl");
    write_conversations(&data, false);
    let out = tmp.path().join("chat");
    assert_ok(&mut chat_train(&model, &data, &out, &[]));
    let args = read_json(&out.join("training_args.json"));
    assert_eq!(args["lmrs_input_field"], "messages");
    assert_eq!(args["lmrs_chat_template"], true);
    // Prompt and completion conversations: the loss on the completion only.
    let data = tmp.path().join("pairs.jsonl");
    write_conversations(&data, true);
    let out = tmp.path().join("pairs");
    assert_ok(&mut chat_train(
        &model,
        &data,
        &out,
        &["--input-field", "prompt", "--target-field", "completion"],
    ));
    let args = read_json(&out.join("training_args.json"));
    assert_eq!(args["lmrs_chat_template"], true);
    assert_eq!(args["lmrs_completion_field"], "completion");

    // A model without a chat template, and a malformed message, are clear errors.
    let (_guard, bare) = copy_fixture("train/llama-train");
    std::fs::remove_file(bare.join("chat_template.jinja")).unwrap();
    let out = tmp.path().join("bare");
    assert_fails(
        &mut chat_train(&bare, &tmp.path().join("messages.jsonl"), &out, &[]),
        &["needs a chat template"],
    );
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n{\"messages\": [{\"role\": \"user\"}]}\n",
    )
    .unwrap();
    assert_fails(
        &mut chat_train(&model, &bad, &tmp.path().join("bad"), &[]),
        &["bad.jsonl:2", "has no 'content'"],
    );
}

/// `eval_loss` at step 0 (`--eval-on-start`) of a run's `trainer_state.json`.
fn start_eval_loss(out: &Path) -> f64 {
    let state = read_json(&out.join("trainer_state.json"));
    state["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["step"] == 0 && e.get("eval_loss").is_some())
        .and_then(|e| e["eval_loss"].as_f64())
        .expect("an eval at step 0")
}

#[test]
fn lora_trains_an_adapter_that_starts_from_the_base_model() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("train/llama-train");
    let common = [
        "--input-field",
        "prompt",
        "--target-field",
        "completion",
        "--max-steps",
        "4",
        "--validation-split",
        "0.2",
        "--eval-on-start",
        "--eval-strategy",
        "steps",
        "--eval-steps",
        "4",
    ];
    let full = tmp.path().join("full");
    assert_ok(&mut train_cmd("causal-lm", &model, &full, &common));
    let lora = tmp.path().join("lora");
    let mut args = common.to_vec();
    args.extend(["--lora", "--lora-r", "4", "--lora-alpha", "16"]);
    assert_ok(&mut train_cmd("causal-lm", &model, &lora, &args));
    // B starts at zero: before training, the adapted model is the base model exactly.
    assert_eq!(start_eval_loss(&lora), start_eval_loss(&full));
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
    ] {
        assert!(lora.join(f).is_file(), "{f} missing");
    }
    assert!(!lora.join("model.safetensors").exists());
    let cfg = read_json(&lora.join("adapter_config.json"));
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 16.0);
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    let targs = read_json(&lora.join("training_args.json"));
    assert_eq!(targs["lmrs_lora"]["peft_type"], "LORA");
    // Inference applies it to the base (merged at load); another base is refused.
    let (s, _) = assert_ok(
        lmrs()
            .args(["generate", "--model"])
            .arg(&model)
            .arg("--adapter")
            .arg(&lora)
            .args(["--max-new-tokens", "3", "--json", "Beautiful is"]),
    );
    let with_adapter = json_lines(&s);
    assert!(!with_adapter.is_empty(), "{s}");
    // Merged into a plain folder, the model generates the same tokens without the adapter.
    let merged = tmp.path().join("merged");
    let (m, _) = assert_ok(
        lmrs()
            .args(["merge", "--model"])
            .arg(&model)
            .arg("--adapter")
            .arg(&lora)
            .arg("--output")
            .arg(&merged)
            .arg("--json"),
    );
    let report: Value = serde_json::from_str(m.trim()).unwrap();
    assert_eq!(report["merged_projections"], 4, "{report}");
    let (s2, _) = assert_ok(lmrs().args(["generate", "--model"]).arg(&merged).args([
        "--max-new-tokens",
        "3",
        "--json",
        "Beautiful is",
    ]));
    assert_eq!(
        token_ids(&json_lines(&s2)[0]),
        token_ids(&with_adapter[0]),
        "merged and applied at load agree"
    );
    assert_fails(
        lmrs()
            .args(["merge", "--model"])
            .arg(&model)
            .arg("--adapter")
            .arg(&lora)
            .arg("--output")
            .arg(&merged),
        &["not empty"],
    );
    assert_fails(
        lmrs()
            .args(["generate", "--model"])
            .arg(fixture("train/gemma3-train"))
            .arg("--adapter")
            .arg(&lora)
            .args(["--max-new-tokens", "3", "Beautiful is"]),
        &["LoRA adapter", "another base model"],
    );
    // Continuing from the adapter it wrote takes its settings.
    let more = tmp.path().join("more");
    let mut args = common.to_vec();
    args.push("--adapter");
    let adapter = lora.display().to_string();
    args.push(&adapter);
    assert_ok(&mut train_cmd("causal-lm", &model, &more, &args));
    assert_eq!(read_json(&more.join("adapter_config.json"))["r"], 4);
    assert!(
        start_eval_loss(&more) < start_eval_loss(&full),
        "it continues from the adapter"
    );

    // Bad input: an unknown target, a flag without --lora, a task LoRA is not built for, an
    // adapter of a kind lmrs does not build.
    let out = |n: &str| tmp.path().join(n);
    assert_fails(
        &mut train_cmd(
            "causal-lm",
            &model,
            &out("e1"),
            &[
                "--input-field",
                "document",
                "--lora",
                "--lora-target-modules",
                "q_proj,qkv",
            ],
        ),
        &["qkv", "matched no projection"],
    );
    assert_fails(
        &mut train_cmd(
            "causal-lm",
            &model,
            &out("e2"),
            &["--input-field", "document", "--lora-r", "4"],
        ),
        &["need --lora"],
    );
    assert_fails(
        &mut train_cmd(
            "text-classification",
            &fixture("train/bert-train"),
            &out("e3"),
            &["--input-field", "document", "--lora"],
        ),
        &[
            "--lora is built for causal-lm and the seq2seq tasks",
            "not text-classification",
        ],
    );
    let (_g, dora) = copy_fixture("train/llama-lora-init");
    let mut c = read_json(&dora.join("adapter_config.json"));
    c["use_dora"] = serde_json::json!(true);
    std::fs::write(dora.join("adapter_config.json"), c.to_string()).unwrap();
    let dora_arg = dora.display().to_string();
    assert_fails(
        &mut train_cmd(
            "causal-lm",
            &model,
            &out("e4"),
            &["--input-field", "document", "--adapter", &dora_arg],
        ),
        &["DoRA", "adapter_config.json"],
    );
}

#[test]
fn a_gguf_file_trains_into_an_hf_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("from-gguf");
    let gguf = fixture("llama-tiny-gguf/llama-tiny-q8_0.gguf");
    // Plain text: the loss on every token of the document.
    assert_ok(&mut train_cmd(
        "causal-lm",
        &gguf,
        &out,
        &["--input-field", "document", "--max-steps", "2"],
    ));
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let cfg = read_json(&out.join("config.json"));
    assert_eq!(cfg["model_type"], "llama");
    let (s, _) = assert_ok(lmrs().args(["generate", "--model"]).arg(&out).args([
        "--max-new-tokens",
        "3",
        "--json",
        "Hello",
    ]));
    assert!(!json_lines(&s).is_empty(), "{s}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = |n: &str| tmp.path().join(n);
    let bert = fixture("train/bert-train");
    // A label outside --labels names the file and the line.
    assert_fails(
        &mut train_cmd(
            "text-classification",
            &bert,
            &out("a"),
            &["--input-field", "document", "--labels", "better,worse"],
        ),
        &["zen.jsonl:7", "'other' is not one of the labels"],
    );
    assert_fails(
        &mut train_cmd(
            "text-classification",
            &bert,
            &out("b"),
            &["--input-field", "document", "--problem-type", "regression"],
        ),
        &["regression label", "is not a number"],
    );
    assert_fails(
        &mut train_cmd(
            "text-classification",
            &bert,
            &out("c"),
            &["--input-field", "document", "--problem-type", "ordinal"],
        ),
        &["ordinal"],
    );
    assert_fails(
        &mut train_cmd(
            "text-classification",
            &bert,
            &out("d"),
            &["--input-field", "document", "--label-field", "grade"],
        ),
        &["grade"],
    );
    // Flags of another task are refused, not ignored.
    assert_fails(
        &mut train_cmd(
            "causal-lm",
            &fixture("train/llama-train"),
            &out("e"),
            &["--labels", "a,b"],
        ),
        &["--labels"],
    );
    assert_fails(
        &mut train_cmd(
            "causal-lm",
            &fixture("train/llama-train"),
            &out("f"),
            &["--input-field", "document", "--dropout", "0.1"],
        ),
        &["--dropout", "no dropout"],
    );
    assert_fails(
        &mut train_cmd(
            "causal-lm",
            &fixture("gpt2-tiny"),
            &out("g"),
            &["--input-field", "document", "--dropout", "1.5"],
        ),
        &["--dropout 1.5 is not in [0, 1)"],
    );
    assert_fails(
        &mut train_cmd(
            "text-classification",
            &fixture("llama-tiny-gguf/llama-tiny-f32.gguf"),
            &out("h"),
            &["--input-field", "document"],
        ),
        &["GGUF files train with --task causal-lm"],
    );
}
