//! Replays `transformers` `model.generate()` outputs recorded by
//! `tools/check_generate_semantics.py` on a toy hash-logits model: token ids must match exactly
//! and beam scores to f32 rounding.

mod common;

use common::{hash_logits, MockModel};
use lmrs_core::SpecialTokens;
use lmrs_generate::{generate, GenerationConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    transformers: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    vocab: usize,
    prompts: Vec<Vec<u32>>,
    /// The `generate()` keyword arguments, HF names: parsed as our `GenerationConfig`.
    config: GenerationConfig,
    expected: Vec<Vec<Expected>>,
}

#[derive(Deserialize)]
struct Expected {
    tokens: Vec<u32>,
    score: Option<f32>,
}

#[test]
fn matches_transformers_generate() {
    let text = include_str!("fixtures/hf_generate.json");
    let fixture: Fixture = serde_json::from_str(text).unwrap();
    assert!(fixture.transformers.starts_with('5'));
    assert!(fixture.cases.len() >= 10);
    for case in &fixture.cases {
        let vocab = case.vocab;
        let f = move |h: &[u32]| hash_logits(h, vocab, Some(1));
        let mut model = MockModel::new(&case.prompts, f);
        let out = generate(
            &mut model,
            &case.prompts,
            &case.config,
            &SpecialTokens::default(),
            None,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(out.len(), case.expected.len(), "{}", case.name);
        for (i, (got, want)) in out.iter().zip(&case.expected).enumerate() {
            assert_eq!(got.len(), want.len(), "{} input {i}", case.name);
            for (j, (g, w)) in got.iter().zip(want).enumerate() {
                assert_eq!(g.tokens, w.tokens, "{} input {i} sequence {j}", case.name);
                match (g.score, w.score) {
                    (Some(g), Some(w)) => assert!(
                        (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{} input {i} sequence {j}: score {g} vs {w}",
                        case.name
                    ),
                    (None, None) => {}
                    other => panic!("{} input {i}: scores {other:?}", case.name),
                }
            }
        }
    }
}
