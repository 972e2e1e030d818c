//! Every generation flag of every generating command, run at least once on the tiny fixtures:
//! each value must parse and run to a clean result (exit 0), or, for values out of range, to a
//! clean error (exit 1 with a message), never a panic (exit 101) or an abort. The list below is
//! checked against `--help`, so a new flag without a case here fails the test.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

/// One invocation per flag under the "Generation" and "Sampling" headings of `--help`.
const CASES: &[(&str, &[&str])] = &[
    ("--max-length", &["--max-length", "6"]),
    ("--max-new-tokens", &["--max-new-tokens", "3"]),
    ("--min-length", &["--min-length", "4"]),
    ("--min-new-tokens", &["--min-new-tokens", "2"]),
    ("--num-beams", &["--num-beams", "3"]),
    (
        "--num-return-sequences",
        &["--num-beams", "3", "--num-return-sequences", "2"],
    ),
    (
        "--length-penalty",
        &["--num-beams", "2", "--length-penalty", "1.5"],
    ),
    (
        "--early-stopping",
        &["--num-beams", "2", "--early-stopping", "never"],
    ),
    ("--no-repeat-ngram-size", &["--no-repeat-ngram-size", "2"]),
    ("--repetition-penalty", &["--repetition-penalty", "1.3"]),
    ("--bad-words-ids", &["--bad-words-ids", "5 7;12"]),
    ("--stop", &["--stop", "zz", "--stop", "q"]),
    ("--forced-bos-token-id", &["--forced-bos-token-id", "9"]),
    ("--forced-eos-token-id", &["--forced-eos-token-id", "3"]),
    ("--no-cache", &["--no-cache"]),
    ("--do-sample", &["--do-sample", "--seed", "1"]),
    (
        "--temperature",
        &["--do-sample", "--temperature", "0.7", "--seed", "1"],
    ),
    ("--top-k", &["--do-sample", "--top-k", "5", "--seed", "1"]),
    ("--top-p", &["--do-sample", "--top-p", "0.9", "--seed", "1"]),
    (
        "--min-p",
        &["--do-sample", "--min-p", "0.05", "--seed", "1"],
    ),
    ("--seed", &["--do-sample", "--seed", "7"]),
];

/// The flags `lmrs COMMAND --help` lists under the generation headings.
fn generation_flags(command: &str) -> BTreeSet<String> {
    let out = lmrs().args([command, "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags = BTreeSet::new();
    let mut in_section = false;
    for line in help.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_section = matches!(line, "Generation:" | "Sampling:");
            continue;
        }
        if let Some(flag) = line.trim_start().strip_prefix("--").filter(|_| in_section) {
            flags.insert(format!("--{}", flag.split_whitespace().next().unwrap()));
        }
    }
    flags
}

fn covered() -> BTreeSet<String> {
    CASES.iter().map(|(f, _)| f.to_string()).collect()
}

/// Run `args` and return the generated token ids of each returned sequence.
fn run_json(args: &[&str]) -> Vec<Vec<u64>> {
    let out = lmrs().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?} failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    json_lines(&stdout)
        .iter()
        .flat_map(|r: &Value| {
            let seqs = r
                .get("sequences")
                .or_else(|| r.get("completions"))
                .and_then(Value::as_array)
                .cloned();
            seqs.unwrap_or_else(|| vec![r.clone()])
        })
        .map(|s| serde_json::from_value(s["token_ids"].clone()).expect("token_ids"))
        .collect()
}

#[test]
fn every_generation_flag_of_generate_runs() {
    let listed = generation_flags("generate");
    assert!(listed.len() >= 20, "help parsing found {listed:?}");
    let covered = covered();
    let missing: Vec<_> = listed.difference(&covered).collect();
    assert!(missing.is_empty(), "flags without a case: {missing:?}");
    let model = fixture("llama-tiny");
    let model = model.to_str().unwrap();
    for (flag, extra) in CASES {
        let mut args = vec!["generate", "--model", model, "--json"];
        if !extra.contains(&"--max-new-tokens") && !extra.contains(&"--max-length") {
            args.extend(["--max-new-tokens", "4"]);
        }
        args.extend_from_slice(extra);
        args.push("hello world");
        let seqs = run_json(&args);
        assert!(!seqs.is_empty(), "{flag}: no output");
        if *flag == "--bad-words-ids" {
            for ids in &seqs {
                assert!(!ids.contains(&12), "{flag}: banned token 12 in {ids:?}");
            }
        }
    }
}

#[test]
fn every_generation_flag_of_text2text_runs() {
    let listed = generation_flags("text2text");
    let covered = covered();
    let missing: Vec<_> = listed.difference(&covered).collect();
    assert!(missing.is_empty(), "flags without a case: {missing:?}");
    let model = fixture("t5-v1_0-tiny");
    let model = model.to_str().unwrap();
    for (flag, extra) in CASES {
        let mut args = vec!["text2text", "--model", model, "--json"];
        if !extra.contains(&"--max-new-tokens") && !extra.contains(&"--max-length") {
            args.extend(["--max-new-tokens", "4"]);
        }
        args.extend_from_slice(extra);
        args.push("hello world");
        let seqs = run_json(&args);
        assert!(!seqs.is_empty(), "{flag}: no output");
    }
}

/// Values the flags' parsers accept but the options refuse: exit 1 with a message.
#[test]
fn out_of_range_generation_values_are_clean_errors() {
    let model = fixture("llama-tiny");
    let model = model.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--do-sample", "--temperature", "1e-40"], "temperature"),
        (&["--do-sample", "--temperature", "0"], "temperature"),
        (&["--do-sample", "--top-p", "1.5"], "top_p"),
        (&["--max-new-tokens", "0"], "max_new_tokens"),
        (&["--max-new-tokens", "18446744073709551615"], "context"),
        (
            &["--num-beams", "2", "--num-return-sequences", "3"],
            "num_return_sequences",
        ),
        (&["--repetition-penalty", "0"], "repetition_penalty"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["generate", "--model", model];
        args.extend_from_slice(extra);
        args.push("hi");
        let out = lmrs().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}:\n{stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
    }
    // Values the parsers refuse: clap's usage error (exit 2), never a panic.
    for extra in [
        &["--bad-words-ids", ";"][..],
        &["--bad-words-ids", "x"],
        &["--batch-size", "0"],
    ] {
        let mut args = vec!["generate", "--model", model];
        args.extend_from_slice(extra);
        args.push("hi");
        let out = lmrs().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
    }
}

/// T5 has no position limit: an output longer than the decoder cache allocated up front (1024
/// slots) grows the cache, and its first 1000 tokens equal a run that never grows it (greedy
/// prefixes agree); an absurd `--max-new-tokens` no longer allocates its bound at the start.
#[test]
fn t5_outputs_past_the_initial_cache_grow_it() {
    let model = fixture("t5-v1_0-tiny");
    let model = model.to_str().unwrap();
    let run = |n: &str| {
        let args = [
            "text2text",
            "--model",
            model,
            "--json",
            "--min-new-tokens",
            n,
            "--max-new-tokens",
            n,
            "hello world",
        ];
        run_json(&args).remove(0)
    };
    let long = run("1100");
    assert_eq!(long.len(), 1100);
    assert_eq!(long[..1000], run("1000")[..]);
    let huge = [
        "text2text",
        "--model",
        model,
        "--json",
        "--max-new-tokens",
        "100000000",
        "hi",
    ];
    assert!(!run_json(&huge).is_empty());
}
