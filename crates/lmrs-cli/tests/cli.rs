//! The `lmrs` binary as a user drives it: bad models, bad input and bad flags fail with a clear
//! message and no panic; the happy paths reproduce the `transformers` reference ids committed
//! beside the tiny fixtures.

mod common;

use common::*;
use predicates::prelude::*;
use std::path::Path;

const V1_0: &str = "t5-v1_0-tiny";
const V1_1: &str = "t5-v1_1-tiny";

/// Arguments for a greedy `text2text --json` run of `text` on `model` with max length 20.
fn text2text_json(model: &Path, text: &str) -> assert_cmd::Command {
    let mut cmd = lmrs();
    cmd.args(["text2text", "--json", "--max-length", "20", "--model"])
        .arg(model)
        .arg("--")
        .arg(text);
    cmd
}

/// The single `--json` record of a run.
fn single_record(cmd: &mut assert_cmd::Command) -> serde_json::Value {
    let (stdout, _) = assert_ok(cmd);
    let mut records = json_lines(&stdout);
    assert_eq!(records.len(), 1, "one record expected:\n{stdout}");
    records.remove(0)
}

// ---------------------------------------------------------------------------------------------
// Broken model folders

#[test]
fn missing_model_folder_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-model");
    assert_fails(
        lmrs()
            .arg("text2text")
            .arg("--model")
            .arg(&missing)
            .arg("hi"),
        &[&missing.display().to_string()],
    );
}

#[test]
fn folder_without_config_names_config_json() {
    let (_tmp, dir) = copy_fixture(V1_1);
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert_fails(
        lmrs().arg("text2text").arg("--model").arg(&dir).arg("hi"),
        &["config.json", &dir.display().to_string()],
    );
}

#[test]
fn folder_without_weights_names_the_weights() {
    let (_tmp, dir) = copy_fixture(V1_1);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert_fails(
        lmrs().arg("text2text").arg("--model").arg(&dir).arg("hi"),
        &["model.safetensors", &dir.display().to_string()],
    );
}

#[test]
fn folder_without_tokenizer_names_tokenizer_json() {
    let (_tmp, dir) = copy_fixture(V1_1);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    assert_fails(
        lmrs().arg("text2text").arg("--model").arg(&dir).arg("hi"),
        &["tokenizer.json", &dir.display().to_string()],
    );
}

#[test]
fn corrupt_safetensors_names_the_file() {
    let (_tmp, dir) = copy_fixture(V1_1);
    let weights = dir.join("model.safetensors");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&weights, garbage).unwrap();
    assert_fails(
        lmrs().arg("text2text").arg("--model").arg(&dir).arg("hi"),
        &["safetensors", &weights.display().to_string()],
    );
}

#[test]
fn truncated_safetensors_names_the_file() {
    let (_tmp, dir) = copy_fixture(V1_1);
    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails(
        lmrs().arg("text2text").arg("--model").arg(&dir).arg("hi"),
        &["safetensors", &weights.display().to_string()],
    );
}

#[test]
fn missing_tensor_is_named() {
    let (_tmp, dir) = copy_fixture(V1_1);
    let weights = dir.join("model.safetensors");
    let tensor = "encoder.block.1.layer.0.SelfAttention.q.weight";
    write_safetensors_without(&fixture(V1_1).join("model.safetensors"), &weights, tensor);
    assert_fails(
        lmrs().arg("text2text").arg("--model").arg(&dir).arg("hi"),
        &[tensor, "not found"],
    );
}

#[test]
fn wrong_tensor_shape_names_tensor_and_both_shapes() {
    // v1.0 has one `wi`, v1.1 the gated `wi_0`/`wi_1`.
    for name in [V1_0, V1_1] {
        let (_tmp, dir) = copy_fixture(name);
        let mut d_ff = 0;
        let mut d_model = 0;
        edit_config(&dir, |cfg| {
            d_ff = cfg["d_ff"].as_u64().unwrap();
            d_model = cfg["d_model"].as_u64().unwrap();
            cfg.insert("d_ff".into(), (d_ff + 4).into());
        });
        let stderr = assert_fails(
            lmrs().arg("text2text").arg("--model").arg(&dir).arg("hi"),
            &["DenseReluDense.w"],
        );
        // The feed-forward weights are [d_ff, d_model] (wi) or [d_model, d_ff] (wo).
        let (stored, wanted) = if stderr.contains(".wo.") {
            (
                format!("[{d_model}, {d_ff}]"),
                format!("[{d_model}, {}]", d_ff + 4),
            )
        } else {
            (
                format!("[{d_ff}, {d_model}]"),
                format!("[{}, {d_model}]", d_ff + 4),
            )
        };
        assert!(
            stderr.contains(&stored) && stderr.contains(&wanted),
            "{name}: both shapes {stored} and {wanted} expected:\n{stderr}"
        );
    }
}

#[test]
fn unknown_model_type_lists_supported_ones() {
    let (_tmp, dir) = copy_fixture(V1_1);
    edit_config(&dir, |cfg| {
        cfg.insert("model_type".into(), "gpt-martian".into());
    });
    assert_fails(
        lmrs().arg("text2text").arg("--model").arg(&dir).arg("hi"),
        &["gpt-martian", "t5", "config.json"],
    );
}

#[test]
fn invalid_config_json_names_the_file() {
    let (_tmp, dir) = copy_fixture(V1_1);
    let config = dir.join("config.json");
    std::fs::write(&config, "{\"model_type\": \"t5\", \"d_model\": ").unwrap();
    assert_fails(
        lmrs().arg("text2text").arg("--model").arg(&dir).arg("hi"),
        &[&config.display().to_string()],
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn empty_text_is_an_error() {
    assert_fails(
        lmrs()
            .args(["text2text", "--model"])
            .arg(fixture(V1_1))
            .arg(""),
        &["empty"],
    );
}

#[test]
fn whitespace_only_text_is_an_error() {
    assert_fails(
        lmrs()
            .args(["text2text", "--model"])
            .arg(fixture(V1_1))
            .arg(" \t "),
        &["empty"],
    );
}

#[test]
fn invalid_utf8_input_file_names_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("docs.txt");
    std::fs::write(&input, b"Hello world!\nbad \xff\xfe bytes\n").unwrap();
    assert_fails(
        lmrs()
            .args(["text2text", "--model"])
            .arg(fixture(V1_1))
            .arg("--input")
            .arg(&input),
        &["docs.txt", "line 2", "UTF-8"],
    );
}

#[test]
fn jsonl_missing_field_names_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("docs.jsonl");
    std::fs::write(
        &input,
        "{\"body\": \"Hello world!\"}\n{\"body\": \"ok\"}\n{\"title\": \"no body\"}\n",
    )
    .unwrap();
    assert_fails(
        lmrs()
            .args(["text2text", "--model"])
            .arg(fixture(V1_1))
            .arg("--input")
            .arg(&input)
            .args(["--field", "body"]),
        &["docs.jsonl", "line 3", "body"],
    );
}

#[test]
fn unknown_flag_is_a_usage_error() {
    lmrs()
        .args(["text2text", "--model"])
        .arg(fixture(V1_1))
        .args(["--bogus-flag", "hi"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("--bogus-flag")
                .and(predicate::str::contains("panicked").not()),
        );
}

#[test]
fn more_return_sequences_than_beams_is_an_error() {
    assert_fails(
        lmrs()
            .args(["text2text", "--model"])
            .arg(fixture(V1_1))
            .args(["--num-beams", "2", "--num-return-sequences", "3", "hi"]),
        &["num_return_sequences", "num_beams"],
    );
}

#[test]
fn zero_temperature_with_sampling_is_an_error() {
    assert_fails(
        lmrs()
            .args(["text2text", "--model"])
            .arg(fixture(V1_1))
            .args(["--temperature", "0", "--do-sample", "hi"]),
        &["temperature"],
    );
}

#[test]
fn input_limit_below_two_tokens_is_an_error() {
    assert_fails(
        lmrs()
            .args(["text2text", "--model"])
            .arg(fixture(V1_1))
            .args(["--max-input-tokens", "1", "hi"]),
        &["at least 2 tokens"],
    );
}

#[test]
fn texts_and_input_file_together_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("docs.txt");
    std::fs::write(&input, "Hello world!\n").unwrap();
    assert_fails(
        lmrs()
            .args(["text2text", "--model"])
            .arg(fixture(V1_1))
            .arg("--input")
            .arg(&input)
            .arg("hi"),
        &["--input"],
    );
}

#[test]
fn unknown_language_is_an_error() {
    assert_fails(
        lmrs()
            .args(["translate", "--model"])
            .arg(fixture(V1_1))
            .args(["--source", "English", "--target", "Klingon", "Hello."]),
        &["Klingon", "German"],
    );
}

// ---------------------------------------------------------------------------------------------
// Hub ids in a local Hugging Face cache

/// `HUB/models--org--tiny-t5/snapshots/abc/` holding the v1.1 fixture, `refs/main` = `abc`.
fn make_hub_cache(hub: &Path) {
    let repo = hub.join("models--org--tiny-t5");
    let snapshot = repo.join("snapshots/abc");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc").unwrap();
    for entry in std::fs::read_dir(fixture(V1_1)).unwrap() {
        let src = entry.unwrap().path().canonicalize().unwrap();
        let dst = snapshot.join(src.file_name().unwrap());
        // The real cache links snapshot files to blobs; do the same where we can.
        #[cfg(unix)]
        std::os::unix::fs::symlink(&src, &dst).unwrap();
        #[cfg(not(unix))]
        std::fs::copy(&src, &dst).unwrap();
    }
}

#[test]
fn hub_id_resolves_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    make_hub_cache(&hub);
    let (text, want) = plain_greedy_cases(V1_1).remove(0);
    let mut cmd = lmrs();
    cmd.env("HF_HUB_CACHE", &hub)
        .env("HOME", tmp.path())
        .args(["text2text", "--json", "--max-length", "20"])
        .args(["--model", "org/tiny-t5", "--", &text]);
    assert_eq!(token_ids(&single_record(&mut cmd)), want);
}

#[test]
fn unknown_hub_id_lists_the_searched_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    make_hub_cache(&hub);
    assert_fails(
        lmrs()
            .env("HF_HUB_CACHE", &hub)
            .env("HOME", tmp.path())
            .args(["text2text", "--model", "org/not-cached", "hi"]),
        &["org/not-cached", &hub.display().to_string()],
    );
}

// ---------------------------------------------------------------------------------------------
// Happy paths against the transformers references

#[test]
fn greedy_text2text_matches_reference_on_every_fixture() {
    for name in FIXTURES {
        let cases = plain_greedy_cases(name);
        assert!(!cases.is_empty(), "{name}: no plain greedy cases");
        for (text, want) in cases {
            let record = single_record(&mut text2text_json(&fixture(name), &text));
            assert_eq!(token_ids(&record), want, "{name}: {text:?}");
        }
    }
}

#[test]
fn summarize_matches_task_summarization_reference() {
    let case = generate_case(V1_1, "task_summarization");
    let text = case["texts"][0].as_str().unwrap();
    let text = text
        .strip_prefix("summarize: ")
        .expect("the reference text carries the summarize prefix");
    let mut cmd = lmrs();
    cmd.args(["summarize", "--json", "--model"])
        .arg(fixture(V1_1))
        .args(["--", text]);
    let record = single_record(&mut cmd);
    assert_eq!(token_ids(&record), reference_ids(&case, 0));
    assert_eq!(
        record["input_tokens"].as_u64().unwrap() as usize,
        case["input_ids"][0].as_array().unwrap().len(),
        "the summarize prefix is added once"
    );
}

/// Three documents and the ids each gets on its own.
fn three_documents() -> Vec<(String, Vec<u64>)> {
    let cases = plain_greedy_cases(V1_1);
    assert!(cases.len() >= 3, "need three plain greedy cases");
    cases
        .into_iter()
        .filter(|(t, _)| !t.contains('\n'))
        .take(3)
        .map(|(text, _)| {
            let ids = token_ids(&single_record(&mut text2text_json(&fixture(V1_1), &text)));
            (text, ids)
        })
        .collect()
}

#[track_caller]
fn assert_in_order(stdout: &str, docs: &[(String, Vec<u64>)]) {
    let records = json_lines(stdout);
    assert_eq!(
        records.len(),
        docs.len(),
        "one line per document:\n{stdout}"
    );
    for (i, (record, (text, ids))) in records.iter().zip(docs).enumerate() {
        assert_eq!(record["index"], i, "{stdout}");
        assert_eq!(&token_ids(record), ids, "document {i}: {text:?}");
    }
}

#[test]
fn text_file_input_gives_one_line_per_document_in_order() {
    let docs = three_documents();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("docs.txt");
    let body: String = docs.iter().map(|(t, _)| format!("{t}\n")).collect();
    std::fs::write(&input, body).unwrap();
    let (stdout, _) = assert_ok(
        lmrs()
            .args(["text2text", "--json", "--max-length", "20", "--model"])
            .arg(fixture(V1_1))
            .arg("--input")
            .arg(&input),
    );
    assert_in_order(&stdout, &docs);
}

#[test]
fn jsonl_input_with_field_gives_one_line_per_document_in_order() {
    let docs = three_documents();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("docs.jsonl");
    let body: String = docs
        .iter()
        .enumerate()
        .map(|(i, (t, _))| format!("{}\n", serde_json::json!({"id": i, "body": t})))
        .collect();
    std::fs::write(&input, body).unwrap();
    let (stdout, _) = assert_ok(
        lmrs()
            .args(["text2text", "--json", "--max-length", "20", "--model"])
            .arg(fixture(V1_1))
            .arg("--input")
            .arg(&input)
            .args(["--field", "body", "--batch-size", "2"]),
    );
    assert_in_order(&stdout, &docs);
}

#[test]
fn stdin_input_works() {
    let (text, want) = plain_greedy_cases(V1_1).remove(0);
    let mut cmd = lmrs();
    cmd.args(["text2text", "--json", "--max-length", "20", "--model"])
        .arg(fixture(V1_1))
        .write_stdin(format!("{text}\n"));
    assert_eq!(token_ids(&single_record(&mut cmd)), want);
}

#[test]
fn beam_search_returns_the_requested_sequences() {
    let case = generate_case(V1_1, "beam4_return2");
    let text = case["texts"][0].as_str().unwrap();
    let mut cmd = lmrs();
    cmd.args(["text2text", "--json", "--max-length", "20"])
        .args(["--num-beams", "4", "--num-return-sequences", "2", "--model"])
        .arg(fixture(V1_1))
        .args(["--", text]);
    let record = single_record(&mut cmd);
    let sequences = record["sequences"].as_array().unwrap();
    assert_eq!(sequences.len(), 2, "{record}");
    for (row, seq) in sequences.iter().enumerate() {
        assert_eq!(token_ids(seq), reference_ids(&case, row), "sequence {row}");
    }
    assert_eq!(token_ids(&record), token_ids(&sequences[0]));
}

#[test]
fn translate_adds_the_language_prefix() {
    // greedy_0 holds "translate English to German: ..."; translate must build the same input.
    let case = generate_case(V1_1, "greedy_0");
    let text = case["texts"][0].as_str().unwrap();
    let text = text
        .strip_prefix("translate English to German: ")
        .expect("greedy_0 is an English to German case");
    let mut cmd = lmrs();
    cmd.args([
        "translate",
        "--json",
        "--source",
        "English",
        "--target",
        "German",
    ])
    .arg("--model")
    .arg(fixture(V1_1))
    .args(["--", text]);
    let record = single_record(&mut cmd);
    assert_eq!(
        record["input_tokens"].as_u64().unwrap() as usize,
        case["input_ids"][0].as_array().unwrap().len()
    );
    assert!(!token_ids(&record).is_empty());

    // Plain text output, language codes.
    let (stdout, _) = assert_ok(
        lmrs()
            .args(["translate", "--source", "en", "--target", "de", "--model"])
            .arg(fixture(V1_1))
            .arg(text),
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
}

#[test]
fn truncation_warns_once() {
    let long = "The tower is 324 metres tall, about the same height as an 81-storey building.";
    let (stdout, stderr) = assert_ok(
        lmrs()
            .args([
                "text2text",
                "--json",
                "--max-length",
                "5",
                "--max-input-tokens",
                "8",
            ])
            .arg("--model")
            .arg(fixture(V1_1))
            .args([long, long]),
    );
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("truncated")).collect();
    assert_eq!(warnings.len(), 1, "stderr:\n{stderr}");
    for record in json_lines(&stdout) {
        assert_eq!(record["truncated"], true, "{record}");
        assert_eq!(record["input_tokens"], 8, "{record}");
    }

    // No warning when nothing is cut.
    let (_, stderr) = assert_ok(
        lmrs()
            .args(["text2text", "--max-length", "5", "--model"])
            .arg(fixture(V1_1))
            .arg("Hello world!"),
    );
    assert!(!stderr.contains("truncated"), "{stderr}");
}

#[test]
fn help_lists_commands_and_flags() {
    lmrs().arg("--help").assert().success().stdout(
        predicate::str::contains("summarize")
            .and(predicate::str::contains("translate"))
            .and(predicate::str::contains("text2text"))
            .and(predicate::str::contains("bench")),
    );
    lmrs()
        .args(["summarize", "--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("--model")
                .and(predicate::str::contains("--input"))
                .and(predicate::str::contains("--json"))
                .and(predicate::str::contains("--num-beams"))
                .and(predicate::str::contains("--max-length"))
                .and(predicate::str::contains("--max-input-tokens")),
        );
}
