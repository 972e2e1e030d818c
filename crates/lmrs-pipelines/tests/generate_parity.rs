//! Token-exact parity of generation against `transformers` `model.generate()` on the tiny T5
//! fixtures (greedy, beam search in every early-stopping mode, num_return_sequences, length
//! edges, processors, batches, uncached decoding), plus tokenizer parity.

use lmrs_generate::GenerationConfig;
use lmrs_pipelines::{LoadOptions, Seq2SeqPipeline, Task};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn load(name: &str) -> (Seq2SeqPipeline, Value) {
    let dir = fixture(name);
    let p = Seq2SeqPipeline::load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let exp =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    (p, exp)
}

/// Run one fixture case; returns the generated rows as HF prints them (decoder start first).
fn run_case(p: &Seq2SeqPipeline, case: &Value) -> Vec<Vec<u32>> {
    let inputs: Vec<Vec<u32>> = serde_json::from_value(case["input_ids"].clone()).unwrap();
    let kwargs: GenerationConfig = serde_json::from_value(case["kwargs"].clone()).unwrap();
    let (_, mut cfg) = p.task_config(&Task::Text2Text).unwrap();
    cfg.merge(&kwargs);
    let rows: Vec<&[u32]> = inputs.iter().map(|r| r.as_slice()).collect();
    let out = p.generate_batch(&rows, &cfg, None).unwrap();
    out.iter()
        .flat_map(|o| o.sequences.iter())
        .map(|s| {
            let mut v = vec![0u32];
            v.extend(&s.token_ids);
            v
        })
        .collect()
}

fn check_generate(name: &str) {
    let (p, exp) = load(name);
    let cases = exp["generate"].as_array().unwrap();
    assert!(cases.len() >= 4, "{name}: too few generate cases");
    let mut failures = Vec::new();
    for case in cases {
        let want: Vec<Vec<u32>> = serde_json::from_value(case["output_ids"].clone()).unwrap();
        let got = run_case(&p, case);
        if got != want {
            failures.push(format!("{}: got {:?}, want {:?}", case["name"], got, want));
        }
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

#[test]
fn t5_v1_0_generation_matches_transformers() {
    check_generate("t5-v1_0-tiny");
}

#[test]
fn t5_v1_1_generation_matches_transformers() {
    check_generate("t5-v1_1-tiny");
}

#[test]
fn bf16_generation_matches_transformers() {
    check_generate("t5-v1_0-tiny-bf16");
}

#[test]
fn batch_rows_equal_single_runs() {
    for name in ["t5-v1_0-tiny", "t5-v1_1-tiny"] {
        let (p, exp) = load(name);
        for case in exp["generate"].as_array().unwrap() {
            let n = case["input_ids"].as_array().unwrap().len();
            if n < 2 {
                continue;
            }
            let batch = run_case(&p, case);
            let per_input = batch.len() / n;
            for i in 0..n {
                let mut single = case.clone();
                single["input_ids"] = Value::Array(vec![case["input_ids"][i].clone()]);
                assert_eq!(
                    run_case(&p, &single),
                    batch[i * per_input..(i + 1) * per_input].to_vec(),
                    "{name} {} row {i}",
                    case["name"]
                );
            }
        }
    }
}

#[test]
fn cached_equals_uncached_on_every_case() {
    let (p, exp) = load("t5-v1_1-tiny");
    for case in exp["generate"].as_array().unwrap() {
        let mut uncached = case.clone();
        uncached["kwargs"]["use_cache"] = Value::Bool(false);
        assert_eq!(
            run_case(&p, case),
            run_case(&p, &uncached),
            "{}",
            case["name"]
        );
    }
}

#[test]
fn tokenizer_matches_transformers() {
    let (p, exp) = load("t5-v1_0-tiny");
    for case in exp["tokenization"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let got = p.tokenizer().encode(text, 10_000).unwrap();
        assert_eq!(got.ids, want, "tokenizing {text:?}");
        assert!(!got.truncated);
    }
    for case in exp["decoded"].as_array().unwrap() {
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(
            p.tokenizer().decode(&ids).unwrap(),
            case["text"].as_str().unwrap(),
            "decoding {ids:?}"
        );
    }
}

#[test]
fn t5_tokenizer_rules_apply_without_tokenizer_config() {
    // Hub T5 folders often have no tokenizer_config.json; transformers then picks
    // T5Tokenizer from config.json's model_type and its whitespace handling must still apply.
    let tmp = std::env::temp_dir().join(format!("lmrs-no-tokcfg-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["config.json", "model.safetensors", "generation_config.json"] {
        std::fs::copy(fixture("t5-v1_0-tiny").join(f), tmp.join(f)).unwrap();
    }
    // Hub T5 tokenizer.json files carry a Metaspace-only pre-tokenizer; transformers 5
    // replaces it, so lmrs must too (texts with runs of spaces tokenize differently otherwise).
    let mut tok: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("t5-v1_0-tiny").join("tokenizer.json")).unwrap(),
    )
    .unwrap();
    tok["pre_tokenizer"] = serde_json::json!({
        "type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true
    });
    std::fs::write(tmp.join("tokenizer.json"), tok.to_string()).unwrap();
    let p = Seq2SeqPipeline::load(tmp.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let (_, exp) = load("t5-v1_0-tiny");
    for case in exp["tokenization"].as_array().unwrap() {
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            p.tokenizer().encode(text, 10_000).unwrap().ids,
            want,
            "{text:?}"
        );
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn truncation_keeps_eos_and_reports_it() {
    let (p, _) = load("t5-v1_0-tiny");
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    let full = p.tokenizer().encode(&long, 10_000).unwrap();
    let cut = p.tokenizer().encode(&long, 16).unwrap();
    assert!(cut.truncated && !full.truncated);
    assert_eq!(cut.ids.len(), 16);
    assert_eq!(cut.ids[..15], full.ids[..15]);
    assert_eq!(cut.ids[15], 1, "</s> stays last");
}

#[test]
fn summarization_task_uses_checkpoint_defaults() {
    let (p, exp) = load("t5-v1_1-tiny");
    let case = exp["generate"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "task_summarization")
        .unwrap();
    let text = case["texts"][0].as_str().expect("fixture stores the text");
    let out = p
        .run(
            &[text.strip_prefix("summarize: ").unwrap_or(text).to_string()],
            &Task::Summarization,
            &GenerationConfig::default(),
            Default::default(),
        )
        .unwrap();
    let want: Vec<Vec<u32>> = serde_json::from_value(case["output_ids"].clone()).unwrap();
    let mut got = vec![0u32];
    got.extend(&out[0].sequences[0].token_ids);
    assert_eq!(vec![got], want);
}
