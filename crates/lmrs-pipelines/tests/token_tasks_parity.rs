//! Token classification (every aggregation strategy) and fill-mask against `transformers`'
//! pipelines on the tiny `{bert,roberta,xlm-roberta,distilbert}-tiny-ner` / `-mlm`
//! fixtures (written by `tools/encoder_fixtures.py`): labels, words,
//! character offsets and token ids exactly; scores to 1e-4.

use lmrs_pipelines::{Aggregation, FillMaskPipeline, TokenClassificationPipeline};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Compare a serialized result with a reference: scores within 1e-4, everything else equal.
fn assert_matches(got: &Value, want: &Value, what: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let mut gk: Vec<&String> = g.keys().collect();
            let mut wk: Vec<&String> = w.keys().collect();
            gk.sort();
            wk.sort();
            assert_eq!(gk, wk, "{what}: keys");
            for (k, wv) in w {
                if k == "score" {
                    let (a, b) = (g[k].as_f64().unwrap(), wv.as_f64().unwrap());
                    assert!((a - b).abs() <= 1e-4, "{what}: score {a} vs {b}");
                } else {
                    assert_matches(&g[k], wv, &format!("{what}.{k}"));
                }
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{what}: length\n got {got}\nwant {want}");
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                assert_matches(a, b, &format!("{what}[{i}]"));
            }
        }
        _ => assert_eq!(got, want, "{what}"),
    }
}

#[test]
fn ner_matches_transformers_for_every_aggregation() {
    check_ner("bert-tiny-ner");
}

/// Byte-level BPE (no `continuing_subword_prefix`): words come from transformers' whitespace
/// heuristic, `Ġ` tokens, `<unk>`-free.
#[test]
fn roberta_ner_matches_transformers_for_every_aggregation() {
    check_ner("roberta-tiny-ner");
}

/// Unigram (SentencePiece) tokenizer: `▁` tokens, `<unk>` for unknown characters, whitespace
/// runs, a checkpoint without the `roberta.` prefix.
#[test]
fn xlm_roberta_ner_matches_transformers_for_every_aggregation() {
    check_ner("xlm-roberta-tiny-ner");
}

/// DistilBERT (`distilbert.` keys) on the WordPiece tokenizer.
#[test]
fn distilbert_ner_matches_transformers_for_every_aggregation() {
    check_ner("distilbert-tiny-ner");
}

fn check_ner(fixture_name: &str) {
    let exp = expected(fixture_name);
    let texts: Vec<String> = serde_json::from_value(exp["texts"].clone()).unwrap();
    let p =
        TokenClassificationPipeline::load(fixture(fixture_name).to_str().unwrap(), None).unwrap();
    for case in exp["ner"].as_array().unwrap() {
        let name = case["aggregation"].as_str().unwrap();
        let agg = Aggregation::from_name(name).unwrap();
        for batch in [1, 4] {
            let got = serde_json::to_value(p.run(&texts, agg, batch).unwrap()).unwrap();
            assert_matches(
                &got,
                &case["outputs"],
                &format!("{fixture_name} {name} (batch {batch})"),
            );
        }
    }
}

#[test]
fn fill_mask_matches_transformers() {
    check_fill_mask("bert-tiny-mlm");
}

#[test]
fn distilbert_fill_mask_matches_transformers() {
    check_fill_mask("distilbert-tiny-mlm");
}

#[test]
fn roberta_fill_mask_matches_transformers() {
    check_fill_mask("roberta-tiny-mlm");
}

#[test]
fn xlm_roberta_fill_mask_matches_transformers() {
    check_fill_mask("xlm-roberta-tiny-mlm");
}

fn check_fill_mask(name: &str) {
    let exp = expected(name);
    let p = FillMaskPipeline::load(fixture(name).to_str().unwrap(), None).unwrap();
    let cases = exp["fill_mask"].as_array().unwrap();
    let texts: Vec<String> = cases
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect();
    let got = p.run(&texts, 5, 2).unwrap();
    for (g, c) in got.iter().zip(cases) {
        // transformers returns a flat list for a single mask, one list per mask otherwise.
        let g = if g.len() == 1 {
            serde_json::to_value(&g[0]).unwrap()
        } else {
            serde_json::to_value(g).unwrap()
        };
        assert_matches(&g, &c["outputs"], c["text"].as_str().unwrap());
    }
}

#[test]
fn fill_mask_without_a_mask_is_an_error() {
    let p = FillMaskPipeline::load(fixture("bert-tiny-mlm").to_str().unwrap(), None).unwrap();
    let err = p
        .run(&["no mask here".into()], 5, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("input 0 has no [MASK]"), "{err}");
}

#[test]
fn roberta_family_mask_token_is_angle_bracketed() {
    for name in ["roberta-tiny-mlm", "xlm-roberta-tiny-mlm"] {
        let p = FillMaskPipeline::load(fixture(name).to_str().unwrap(), None).unwrap();
        assert_eq!(p.mask_token(), "<mask>");
        let err = p
            .run(&["a [MASK] here".into()], 5, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("input 0 has no <mask>"), "{name}: {err}");
    }
}
