//! Continuous batching ([`ContinuousGeneration`]): requests that join a running decoder batch
//! at different steps, with different prompts and options, get exactly what they get alone
//! ([`TextGenerationPipeline::generate_ids`] on the request by itself): same token ids, text
//! and finish reasons. Covers every decoder fixture (Gemma 3 with prompts longer than its
//! sliding window), the quantized llama-tiny GGUFs, cancellation, per-request errors and the
//! refusal of beam search.

use lmrs_generate::GenerationConfig;
use lmrs_pipelines::{
    CompletionOutput, ContinuousGeneration, LoadOptions, RequestId, RunOptions,
    TextGenerationPipeline,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn load(path: PathBuf) -> TextGenerationPipeline {
    TextGenerationPipeline::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap()
}

fn config(fields: Value) -> GenerationConfig {
    serde_json::from_value(fields).unwrap()
}

/// A request: prompts, options, and the step before which it is added.
struct Case {
    prompts: Vec<Vec<u32>>,
    cfg: GenerationConfig,
    at_step: usize,
}

/// Prompts of 1 to 23 tokens made of ids below `vocab`, varied by `seed`.
fn prompt(seed: u32, len: usize, vocab: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| 1 + (seed * 31 + i * 17 + i * i) % (vocab - 1))
        .collect()
}

fn cases(vocab: u32) -> Vec<Case> {
    let greedy = |n: usize| config(json!({"max_new_tokens": n, "min_new_tokens": n / 2}));
    vec![
        Case {
            prompts: vec![prompt(1, 5, vocab)],
            cfg: greedy(16),
            at_step: 0,
        },
        Case {
            prompts: vec![prompt(2, 12, vocab), prompt(3, 1, vocab)],
            cfg: greedy(10),
            at_step: 0,
        },
        // Joins after 3 steps with a longer prompt than any running row.
        Case {
            prompts: vec![prompt(4, 23, vocab)],
            cfg: config(json!({"max_new_tokens": 9, "repetition_penalty": 1.3})),
            at_step: 3,
        },
        // Seeded sampling, two sequences: the same draws as alone.
        Case {
            prompts: vec![prompt(5, 7, vocab)],
            cfg: config(json!({
                "max_new_tokens": 8, "min_new_tokens": 8, "do_sample": true, "temperature": 0.9,
                "top_k": 20, "top_p": 0.95, "seed": 11, "num_return_sequences": 2
            })),
            at_step: 3,
        },
        Case {
            prompts: vec![prompt(6, 2, vocab)],
            cfg: config(json!({"max_new_tokens": 3, "no_repeat_ngram_size": 2})),
            at_step: 5,
        },
        // Joins a batch that has emptied in between, or a nearly finished one.
        Case {
            prompts: vec![prompt(7, 9, vocab)],
            cfg: greedy(12),
            at_step: 14,
        },
    ]
}

/// Run `cases` through one continuous batch; outputs by case.
fn run_continuous(
    p: &TextGenerationPipeline,
    cases: &[Case],
) -> HashMap<usize, Vec<CompletionOutput>> {
    let mut live = ContinuousGeneration::new(p);
    let mut ids: HashMap<RequestId, usize> = HashMap::new();
    let mut out = HashMap::new();
    let mut streamed: HashMap<(RequestId, usize), String> = HashMap::new();
    let mut step = 0;
    while out.len() < cases.len() {
        for (i, c) in cases.iter().enumerate() {
            if c.at_step == step {
                ids.insert(live.add(&c.prompts, &c.cfg).unwrap(), i);
            }
        }
        let mut sink = |r: RequestId, prompt: usize, piece: &str| {
            streamed.entry((r, prompt)).or_default().push_str(piece);
        };
        for (r, result) in live.step(Some(&mut sink)).unwrap() {
            let outputs = result.unwrap();
            // Streamed text is the final text but for a held-back incomplete character.
            for (k, o) in outputs.iter().enumerate() {
                if o.completions.len() == 1 {
                    let got = streamed.get(&(r, k)).cloned().unwrap_or_default();
                    let text = &o.completions[0].text;
                    assert!(
                        text.starts_with(&got)
                            && text[got.len()..].chars().all(|c| c == '\u{FFFD}'),
                        "streamed text of request {r}: {got:?} vs {text:?}"
                    );
                }
            }
            out.insert(ids[&r], outputs);
        }
        step += 1;
        assert!(step < 200, "the batch never finished");
    }
    assert!(live.is_empty() && live.rows() == 0);
    out
}

fn check_equal_to_single_runs(p: &TextGenerationPipeline, name: &str) {
    let vocab = lmrs_core::CausalLm::vocab_size(p.model()) as u32;
    let cases = cases(vocab);
    let got = run_continuous(p, &cases);
    let mut shared = 0;
    for (i, c) in cases.iter().enumerate() {
        let want = p
            .generate_ids(&c.prompts, &c.cfg, RunOptions::default())
            .unwrap();
        let got = &got[&i];
        assert_eq!(got.len(), want.len(), "{name} case {i}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.completions, w.completions, "{name} case {i}");
            assert_eq!(g.prompt_tokens, w.prompt_tokens);
            shared += usize::from(g.batch_size > g.completions.len());
        }
    }
    assert!(shared >= 4, "{name}: requests should have decoded together");
}

#[test]
fn joining_requests_equal_their_single_runs() {
    for name in [
        "llama-tiny",
        "llama3-tiny",
        "qwen2-tiny",
        "gpt2-tiny",
        "gemma3-tiny",
    ] {
        check_equal_to_single_runs(&load(fixture(name)), name);
    }
}

#[test]
fn quantized_gguf_requests_equal_their_single_runs() {
    // Q8_0 and Q4_0 run candle's quantized matmul: one decode step of several rows gives each
    // row what a one-row step gives it.
    for file in ["llama-tiny-q8_0.gguf", "llama-tiny-q4_0.gguf"] {
        check_equal_to_single_runs(&load(fixture("llama-tiny-gguf").join(file)), file);
    }
}

#[test]
fn cancelled_requests_leave_and_others_go_on() {
    let p = load(fixture("llama-tiny"));
    let cfg = config(json!({"max_new_tokens": 12, "min_new_tokens": 12}));
    let a = vec![3, 4, 5];
    let b = vec![7, 8, 9, 10];
    let mut live = ContinuousGeneration::new(&p);
    let ra = live.add(std::slice::from_ref(&a), &cfg).unwrap();
    let rb = live.add(std::slice::from_ref(&b), &cfg).unwrap();
    assert_eq!(live.rows(), 2);
    live.step(None).unwrap();
    assert!(live.cancel(ra).unwrap());
    assert!(!live.cancel(ra).unwrap(), "already gone");
    assert_eq!(live.rows(), 1);
    let mut done = Vec::new();
    while !live.is_empty() {
        done.extend(live.step(None).unwrap());
    }
    assert_eq!(done.len(), 1);
    let (r, out) = done.pop().unwrap();
    assert_eq!(r, rb);
    let want = p.generate_ids(&[b], &cfg, RunOptions::default()).unwrap();
    assert_eq!(out.unwrap()[0].completions, want[0].completions);
}

#[test]
fn bad_requests_fail_alone() {
    let p = load(fixture("llama-tiny"));
    let greedy = config(json!({"max_new_tokens": 4}));
    let beam = config(json!({"max_new_tokens": 4, "num_beams": 2}));
    assert!(ContinuousGeneration::accepts(&p, &greedy));
    assert!(!ContinuousGeneration::accepts(&p, &beam));
    let mut live = ContinuousGeneration::new(&p);
    let ok = live.add(&[vec![1, 2, 3]], &greedy).unwrap();
    let e = live.add(&[vec![1, 2, 3]], &beam).unwrap_err().to_string();
    assert!(e.contains("beam"), "{e}");
    let e = live.add(&[vec![1, 2], vec![]], &greedy).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    // Over the context window (128 positions) without truncation.
    let long = vec![5u32; 126];
    let e = live.add(&[long], &greedy).unwrap_err().to_string();
    assert!(e.contains("context window"), "{e}");
    assert!(
        live.add(&[vec![1, 999_999]], &greedy).is_err(),
        "id outside the vocabulary"
    );
    assert_eq!(live.rows(), 1, "only the good request holds rows");
    let mut done = Vec::new();
    while !live.is_empty() {
        done.extend(live.step(None).unwrap());
    }
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, ok);
}
