//! Token-exact parity of decoder-only generation against `transformers` `model.generate()` on
//! the tiny fixtures of `tools/gen_decoder_fixtures.py` (greedy, beam search, length penalty,
//! early stopping, no-repeat n-grams, repetition penalty, num_return_sequences, min_new_tokens,
//! left-padded batches, no cache), through [`CausalSession`] and [`lmrs_generate::generate`]
//! with the fixture's `generation_config.json` under each case's kwargs. Every batched case is
//! also run row by row (batch == single) and every case without the cache (cached == uncached).
//! Plus the llama-tiny GGUF greedy cases.

use lmrs_core::{CausalLm, Device};
use lmrs_generate::{CausalSession, GenerationConfig};
use lmrs_io::{GgufFile, ModelFiles};
use lmrs_models::{load_causal, load_causal_gguf, CausalModel};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

const FIXTURES: [&str; 5] = [
    "llama-tiny",
    "llama3-tiny",
    "qwen2-tiny",
    "gpt2-tiny",
    "gemma3-tiny",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> Value {
    let path = fixture(name).join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn rows(v: &Value) -> Vec<Vec<u32>> {
    serde_json::from_value(v.clone()).unwrap()
}

/// A model with the `generation_config.json` its generate calls start from.
struct Fixture {
    model: CausalModel,
    defaults: GenerationConfig,
}

fn load(name: &str) -> Fixture {
    let dir = fixture(name);
    let files = ModelFiles::from_folder(&dir).unwrap();
    Fixture {
        model: load_causal(&files, &Device::Cpu).unwrap(),
        defaults: GenerationConfig::from_file(dir.join("generation_config.json")).unwrap(),
    }
}

/// The case's configuration: the model's `generation_config.json`, then the generate() kwargs
/// (their names are `GenerationConfig`'s, HF's), then `use_cache` when given.
fn config(defaults: &GenerationConfig, case: &Value, use_cache: Option<bool>) -> GenerationConfig {
    let kwargs: GenerationConfig = serde_json::from_value(case["kwargs"].clone())
        .unwrap_or_else(|e| panic!("{}: kwargs: {e}", case["name"]));
    let mut cfg = defaults.clone();
    cfg.merge(&kwargs);
    if use_cache.is_some() {
        cfg.use_cache = use_cache;
    }
    cfg
}

/// Generate for `prompts`; returns every returned sequence (prompt included), input by input,
/// as HF lists them.
fn run(model: &CausalModel, prompts: &[Vec<u32>], cfg: &GenerationConfig) -> Vec<Vec<u32>> {
    let special = model.special_tokens();
    let resolved = cfg.resolve(&special).unwrap();
    let max_new = prompts
        .iter()
        .map(|p| resolved.max_length.total(p.len()) - p.len())
        .max()
        .unwrap();
    let mut session =
        CausalSession::new(model, prompts, max_new, resolved.use_cache, &Device::Cpu).unwrap();
    assert_eq!(session.is_cached(), resolved.use_cache);
    let out = lmrs_generate::generate(&mut session, prompts, cfg, &special, None).unwrap();
    out.into_iter()
        .flat_map(|seqs| seqs.into_iter().map(|s| s.tokens))
        .collect()
}

/// Counts of what was checked.
#[derive(Default, Debug)]
struct Checked {
    cases: usize,
    batched_rows: usize,
    uncached: usize,
}

fn check_fixture(name: &str) -> Checked {
    let f = load(name);
    let exp = expected(name);
    let cases = exp["generate"].as_array().unwrap();
    assert!(cases.len() >= 20, "{name}: {} generate cases", cases.len());
    let mut failures = Vec::new();
    let mut checked = Checked::default();
    for case in cases {
        let case_name = case["name"].as_str().unwrap();
        let inputs = rows(&case["input_ids"]);
        let want = rows(&case["output_ids"]);
        let got = run(&f.model, &inputs, &config(&f.defaults, case, None));
        if got != want {
            failures.push(format!("{case_name}: got {got:?}, want {want:?}"));
            continue;
        }
        checked.cases += 1;

        // cached == uncached (the fixture's `greedy_no_cache_1` already asks for no cache)
        let uncached = run(&f.model, &inputs, &config(&f.defaults, case, Some(false)));
        if uncached != want {
            failures.push(format!(
                "{case_name} without cache: got {uncached:?}, want {want:?}"
            ));
        } else {
            checked.uncached += 1;
        }

        // batch == single
        if inputs.len() > 1 {
            let per_input = want.len() / inputs.len();
            for (i, row) in inputs.iter().enumerate() {
                let single = run(
                    &f.model,
                    std::slice::from_ref(row),
                    &config(&f.defaults, case, None),
                );
                let part = &want[i * per_input..(i + 1) * per_input];
                if single != part {
                    failures.push(format!(
                        "{case_name} row {i} alone: got {single:?}, want {part:?}"
                    ));
                } else {
                    checked.batched_rows += 1;
                }
            }
        }
    }
    eprintln!(
        "{name}: {} of {} generate cases equal ({} uncached, {} batch rows alone)",
        checked.cases,
        cases.len(),
        checked.uncached,
        checked.batched_rows
    );
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
    checked
}

#[test]
fn llama_generation_matches_transformers() {
    check_fixture("llama-tiny");
}

#[test]
fn llama3_generation_matches_transformers() {
    check_fixture("llama3-tiny");
}

#[test]
fn qwen2_generation_matches_transformers() {
    check_fixture("qwen2-tiny");
}

#[test]
fn gpt2_generation_matches_transformers() {
    check_fixture("gpt2-tiny");
}

#[test]
fn gemma3_generation_matches_transformers() {
    check_fixture("gemma3-tiny");
}

#[test]
fn fixtures_cover_the_generation_modes() {
    // Guards the list above and the case kinds the parity tests rely on.
    for name in FIXTURES {
        let exp = expected(name);
        let names: Vec<&str> = exp["generate"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        for want in [
            "greedy_generation_config",
            "beam3_length_penalty_2",
            "beam3_early_stopping",
            "beam3_return2_batch2",
            "greedy_min_new_tokens",
            "greedy_repetition_penalty_1_3",
            "greedy_no_repeat_ngram_2",
            "greedy_batch3_left_padded",
            "beam3_batch3_left_padded",
            "greedy_no_cache_1",
        ] {
            assert!(names.contains(&want), "{name} lacks {want}");
        }
    }
}

#[test]
fn gguf_greedy_cases_match_transformers() {
    let dir = fixture("llama-tiny-gguf");
    let exp = expected("llama-tiny-gguf");
    let defaults =
        GenerationConfig::from_file(fixture("llama-tiny").join("generation_config.json")).unwrap();
    for entry in exp["files"].as_array().unwrap() {
        let file = entry["file"].as_str().unwrap();
        let gguf = Arc::new(GgufFile::open(&dir.join(file)).unwrap());
        let model = load_causal_gguf(gguf, &Device::Cpu).unwrap();
        for case in entry["generate"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let inputs = rows(&case["input_ids"]);
            let want = rows(&case["output_ids"]);
            let cfg = config(&defaults, case, None);
            let got = run(&model, &inputs, &cfg);
            let uncached = run(&model, &inputs, &config(&defaults, case, Some(false)));
            assert_eq!(got, uncached, "{file} {name}: cached vs uncached");
            if file.ends_with("f32.gguf") {
                // f32: the same numbers as the safetensors model, so the same ids.
                assert_eq!(got, want, "{file} {name}");
                eprintln!("{file} {name}: equal");
                continue;
            }
            // Quantized: lmrs quantizes activations to 8 bits (like llama.cpp) where
            // transformers runs the dequantized weights in f32, so greedy paths may part at a
            // step with a narrow top-2 gap (see lmrs-models/tests/decoder_parity.rs, which
            // checks the clear-margin prefix). Here: the first token (lmrs's top-2 gap there is
            // 0.56-3.97 on these cases, above the measured logit noise of 0.53) and the
            // shared prefix is printed.
            let (g, w) = (&got[0], &want[0]);
            let p = inputs[0].len();
            let shared = g.iter().zip(w).take_while(|(a, b)| a == b).count();
            eprintln!(
                "{file} {name}: {} of {} new ids equal before the paths part",
                shared.saturating_sub(p),
                w.len() - p
            );
            assert!(shared > p, "{file} {name}: first new token differs");
        }
    }
}
