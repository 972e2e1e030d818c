//! `lmrs train` as a user runs it: outputs, resume, dropout repeatability, the trained model
//! served by the inference commands, and bad input.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

const MODEL: &str = "train/t5-v1_0-train";

fn data() -> String {
    fixture("train/zen.jsonl").display().to_string()
}

/// `lmrs train --task summarization` on the T5 fixture with small settings, into `out`.
fn train_cmd(out: &Path, extra: &[&str]) -> assert_cmd::Command {
    common::train_cmd("summarization", &fixture(MODEL), out, extra)
}

fn state(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("trainer_state.json")).unwrap()).unwrap()
}

#[test]
fn a_run_leaves_an_hf_folder_state_report_and_picture_and_the_model_summarizes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (stdout, stderr) = assert_ok(&mut train_cmd(
        &out,
        &[
            "--max-steps",
            "12",
            "--validation-split",
            "0.2",
            "--eval-strategy",
            "steps",
            "--eval-steps",
            "4",
            "--save-steps",
            "4",
            "--save-total-limit",
            "2",
            "--load-best-model-at-end",
        ],
    ));
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["global_step"], 12);
    assert_eq!(summary["eval_examples"], 4);
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "generation_config.json",
        "trainer_state.json",
        "training_args.json",
        "report.md",
        "loss.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // save_total_limit 2 keeps the newest checkpoints, and the best is never deleted.
    let mut kept: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    kept.sort();
    assert!(
        kept.len() <= 2 && kept.contains(&"checkpoint-12".to_string()),
        "{kept:?}"
    );
    let st = state(&out);
    let best = st["best_model_checkpoint"].as_str().unwrap();
    assert!(Path::new(best).is_dir(), "best checkpoint {best} kept");
    for f in [
        "optimizer.safetensors",
        "trainer_state.json",
        "model.safetensors",
    ] {
        assert!(Path::new(best).join(f).is_file());
    }
    let log = st["log_history"].as_array().unwrap();
    let train_entries = log.iter().filter(|e| e.get("loss").is_some()).count();
    let eval_entries = log.iter().filter(|e| e.get("eval_loss").is_some()).count();
    assert_eq!((train_entries, eval_entries), (6, 3));
    for e in log.iter().filter(|e| e.get("loss").is_some()) {
        for k in ["step", "epoch", "loss", "grad_norm", "learning_rate"] {
            assert!(e.get(k).is_some(), "{k} in {e}");
        }
    }
    let args: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training_args.json")).unwrap())
            .unwrap();
    assert_eq!(args["learning_rate"], 1e-3);
    // This fixture's config has no task_specific_params: no prefix, and a warning says so.
    assert_eq!(args["lmrs_source_prefix"], "");
    assert!(stderr.contains("no 'summarization' prefix"), "{stderr}");
    let svg = std::fs::read_to_string(out.join("loss.svg")).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("polyline"),
        "a drawn curve"
    );
    // The trained folder is a model the inference commands load.
    let (s, _) = assert_ok(lmrs().args(["summarize", "--model"]).arg(&out).args([
        "--max-length",
        "8",
        "--num-beams",
        "1",
        "--json",
        "Beautiful is better than ugly.",
    ]));
    let rec = &json_lines(&s)[0];
    assert!(!token_ids(rec).is_empty(), "{rec}");
}

/// `--predict-with-generate`: every evaluation logs ROUGE, BLEU and gen_len from generated
/// text, `--metric-for-best-model rouge1` picks the checkpoint by it, and the chosen model
/// scores the same ROUGE-1 under `lmrs eval run` (generation and scoring done independently).
#[test]
fn predict_with_generate_logs_rouge_and_picks_the_best_checkpoint_by_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let d = data();
    let gen = [
        "--generation-max-length",
        "8",
        "--generation-num-beams",
        "2",
    ];
    // 40 steps at 1e-2: the tiny model goes from blank outputs to "... is better than".
    let mut args = vec![
        "--max-steps",
        "40",
        "--validation",
        &d,
        "--eval-strategy",
        "steps",
        "--eval-steps",
        "8",
        "--save-steps",
        "8",
        "--load-best-model-at-end",
        "--metric-for-best-model",
        "rouge1",
        "--predict-with-generate",
        "--eval-on-start",
    ];
    args.extend(gen);
    let mut cmd = lmrs();
    cmd.args(["train", "--task", "summarization", "--model"])
        .arg(fixture(MODEL))
        .args(["--train", &d, "--output"])
        .arg(&out)
        .args([
            "--learning-rate",
            "1e-2",
            "--per-device-train-batch-size",
            "4",
        ])
        .args(&args);
    assert_ok(&mut cmd);
    let st = state(&out);
    let evals: Vec<&Value> = st["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("eval_loss").is_some())
        .collect();
    // --eval-on-start logs step 0 (where the model starts); it is not a best candidate.
    assert_eq!(evals.len(), 6);
    assert_eq!(evals[0]["step"], 0);
    for e in &evals {
        for k in ["rouge1", "rouge2", "rougeL", "rougeLsum", "bleu"] {
            let v = e[format!("eval_{k}")].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&v), "{k} {v} in {e}");
        }
        // At most 7 tokens after the decoder start (max_length 8).
        let len = e["eval_gen_len"].as_f64().unwrap();
        assert!(len > 0.0 && len <= 7.0, "{e}");
    }
    // The best is the first strict maximum of eval_rouge1 (the Trainer compares with `>`).
    let mut best = (0, f64::NEG_INFINITY);
    for e in &evals[1..] {
        let v = e["eval_rouge1"].as_f64().unwrap();
        if v > best.1 {
            best = (e["step"].as_u64().unwrap(), v);
        }
    }
    assert!(best.1 > 0.0, "the model learned some words: {evals:?}");
    assert_eq!(st["best_global_step"], best.0, "{st}");
    assert_eq!(st["best_metric"].as_f64().unwrap(), best.1);
    // The root folder holds the best model: lmrs eval run generates the same way and scores.
    let scored = tmp.path().join("scored");
    let mut cmd = lmrs();
    cmd.args(["eval", "run", "--task", "summarization", "--model"])
        .arg(&out)
        .args(["--input-field", "document", "--reference-field", "summary"])
        .args(["--max-length", "8", "--num-beams", "2", "--data"])
        .arg(data())
        .arg("--output")
        .arg(&scored);
    assert_ok(&mut cmd);
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(scored.join("metrics.json")).unwrap())
            .unwrap();
    let mean = m["metrics"]["rouge"]["scores"]["rouge1"]["fmeasure"]["mean"]
        .as_f64()
        .unwrap();
    assert!((mean * 100.0 - best.1).abs() < 1e-3, "{mean} vs {}", best.1);

    // A generated-text metric without generation is refused before any work.
    assert_fails(
        &mut train_cmd(
            &tmp.path().join("no"),
            &["--metric-for-best-model", "rougeL", "--max-steps", "1"],
        ),
        &["rougeL", "predict_with_generate"],
    );
    // A metric the evaluation does not have names the ones it has.
    assert_fails(
        &mut train_cmd(
            &tmp.path().join("missing"),
            &[
                "--max-steps",
                "2",
                "--validation",
                &d,
                "--eval-strategy",
                "steps",
                "--eval-steps",
                "2",
                "--metric-for-best-model",
                "accuracy",
            ],
        ),
        &["no 'eval_accuracy'", "eval_loss"],
    );
}

/// `--augment`: augmented copies join the training set only, and the settings are recorded.
#[test]
fn augment_adds_seeded_copies_to_the_training_set_only() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let spec = "delete=0.2,swap=0.1,copies=2";
    let (stdout, _) = assert_ok(&mut train_cmd(
        &out,
        &[
            "--max-steps",
            "2",
            "--validation-split",
            "0.2",
            "--augment",
            spec,
        ],
    ));
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    // 19 records, 4 held out; each of the 15 left gets 2 copies.
    assert_eq!(summary["eval_examples"], 4);
    assert_eq!(summary["train_examples"], 45);
    let args: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training_args.json")).unwrap())
            .unwrap();
    assert_eq!(
        args["lmrs_augment"],
        serde_json::json!({"delete": 0.2, "swap": 0.1, "copies": 2})
    );
    assert_fails(
        &mut train_cmd(&tmp.path().join("bad"), &["--augment", "insert=0.1"]),
        &["--augment 'insert=0.1'", "unknown operation"],
    );
}

#[test]
fn resume_reaches_the_weights_of_an_uninterrupted_run_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let flags = ["--max-steps", "10", "--save-steps", "4", "--dropout", "0.1"];
    assert_ok(&mut train_cmd(&full, &flags));
    // A second run stopped at step 4 (its checkpoint-4 is the full run's), then resumed.
    let part = tmp.path().join("part");
    std::fs::create_dir_all(&part).unwrap();
    let ck = part.join("checkpoint-4");
    copy_dir(&full.join("checkpoint-4"), &ck);
    assert_ok(&mut train_cmd(&part, &[&flags[..], &["--resume"]].concat()));
    let a = std::fs::read(full.join("model.safetensors")).unwrap();
    let b = std::fs::read(part.join("model.safetensors")).unwrap();
    assert!(a == b, "resumed weights differ from the uninterrupted run");
    let losses = |d: &Path| -> Vec<Value> {
        state(d)["log_history"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e.get("loss").cloned())
            .collect()
    };
    assert_eq!(losses(&full), losses(&part));
}

#[test]
fn dropout_with_a_fixed_seed_repeats_and_changes_the_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let losses = |name: &str, dropout: &str| -> Vec<f64> {
        let out = tmp.path().join(name);
        assert_ok(&mut train_cmd(
            &out,
            &[
                "--max-steps",
                "4",
                "--save-strategy",
                "no",
                "--dropout",
                dropout,
            ],
        ));
        state(&out)["log_history"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e.get("loss").and_then(Value::as_f64))
            .collect()
    };
    let (a, b, off) = (losses("a", "0.3"), losses("b", "0.3"), losses("c", "0"));
    assert_eq!(a, b, "one seed, one run");
    assert_ne!(a, off, "dropout is active in training");
}

#[test]
fn bad_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("x"), "").unwrap();
    assert_fails(
        &mut train_cmd(&out, &["--max-steps", "1"]),
        &["exists and is not empty", "--overwrite-output-dir"],
    );
    let fresh = tmp.path().join("f");
    assert_fails(
        &mut train_cmd(&fresh, &["--max-steps", "1", "--input-field", "text"]),
        &["zen.jsonl:1: no field 'text'", "document"],
    );
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    assert_fails(
        lmrs()
            .args(["train", "--task", "summarization", "--model"])
            .arg(fixture(MODEL))
            .arg("--train")
            .arg(&empty)
            .arg("--output")
            .arg(&fresh),
        &["no examples"],
    );
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"document\": \"a\", \"summary\": \"b\"}\n{\"document\": 3.5e, \"summary\": 1}\n",
    )
    .unwrap();
    assert_fails(
        lmrs()
            .args(["train", "--task", "summarization", "--model"])
            .arg(fixture(MODEL))
            .arg("--train")
            .arg(&bad)
            .arg("--output")
            .arg(&fresh),
        &["bad.jsonl:2: invalid JSON"],
    );
    let cfg = tmp.path().join("args.json");
    std::fs::write(&cfg, "{\"learning_rat\": 1}").unwrap();
    assert_fails(
        &mut train_cmd(&fresh, &["--config", cfg.to_str().unwrap()]),
        &["unknown field `learning_rat`"],
    );
    assert_fails(
        &mut train_cmd(&fresh, &["--lr-scheduler-type", "cosin"]),
        &["unknown lr scheduler 'cosin'"],
    );
    assert_fails(
        &mut train_cmd(&fresh, &["--eval-strategy", "steps"]),
        &["needs a validation set"],
    );
    assert_fails(
        &mut train_cmd(&fresh, &["--early-stopping-patience", "2"]),
        &["--early-stopping-patience needs --eval-strategy"],
    );
    assert_fails(
        &mut train_cmd(&fresh, &["--resume"]),
        &["no checkpoint-STEP folder"],
    );
    // A checkpoint of another model (v1.1, untied) for --resume.
    let other = tmp.path().join("other");
    assert_ok(
        lmrs()
            .args(["train", "--task", "summarization", "--model"])
            .arg(fixture("train/t5-v1_1-train"))
            .args(["--train", &data(), "--output"])
            .arg(&other)
            .args(["--max-steps", "2", "--save-steps", "2"]),
    );
    assert_fails(
        &mut train_cmd(
            &fresh,
            &[
                "--max-steps",
                "4",
                "--resume-from",
                other.join("checkpoint-2").to_str().unwrap(),
            ],
        ),
        &["cannot resume from", "another model"],
    );
    assert_fails(
        lmrs()
            .args(["train", "--task", "text-classification", "--model"])
            .arg(fixture(MODEL))
            .args(["--train", &data(), "--output"])
            .arg(&fresh),
        &["supports the BERT family", "model_type t5"],
    );
}

#[test]
fn a_t5_lora_adapter_summarizes_applied_at_load_and_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let lora = tmp.path().join("lora");
    assert_ok(&mut train_cmd(&lora, &["--max-steps", "4", "--lora"]));
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(lora.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["task_type"], "SEQ_2_SEQ_LM");
    assert_eq!(cfg["target_modules"], serde_json::json!(["q", "v"]));
    let text = "Beautiful is better than ugly.";
    let summarize = |model: &Path, adapter: Option<&Path>| -> Vec<u64> {
        let mut c = lmrs();
        c.args(["summarize", "--model"]).arg(model);
        if let Some(a) = adapter {
            c.arg("--adapter").arg(a);
        }
        let (s, _) = assert_ok(c.args(["--max-new-tokens", "6", "--json", text]));
        token_ids(&json_lines(&s)[0])
    };
    let applied = summarize(&fixture(MODEL), Some(&lora));
    let merged = tmp.path().join("merged");
    assert_ok(
        lmrs()
            .args(["merge", "--model"])
            .arg(fixture(MODEL))
            .arg("--adapter")
            .arg(&lora)
            .arg("--output")
            .arg(&merged),
    );
    assert_eq!(
        summarize(&merged, None),
        applied,
        "merged and applied at load agree"
    );
    // An adapter of a decoder-only base is refused by name.
    let (_g, other) = copy_fixture("train/llama-lora-init");
    assert_fails(
        lmrs()
            .args(["summarize", "--model"])
            .arg(fixture(MODEL))
            .arg("--adapter")
            .arg(&other)
            .arg(text),
        &["LoRA adapter"],
    );
}
