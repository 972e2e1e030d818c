//! Sentence embeddings against `sentence-transformers` on the tiny sentence-transformers folder
//! written by `tools/encoder_fixtures.py` (mean pooling + Normalize, max_seq_length 24):
//! tokenization with truncation, embeddings for every batch size, the other pooling modes on
//! the plain model, and similarity ranking.

use lmrs_pipelines::{rank_by_similarity, EmbedOptions, EmbeddingPipeline, Pooling};
use serde_json::Value;
use std::path::PathBuf;

const TOL: f32 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("bert-tiny-st").join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn texts(exp: &Value) -> Vec<String> {
    exp["tokenization"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap().to_string())
        .collect()
}

fn rows(v: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn load(opts: &EmbedOptions) -> EmbeddingPipeline {
    EmbeddingPipeline::load(fixture("bert-tiny-st").to_str().unwrap(), opts).unwrap()
}

#[test]
fn folder_settings_are_read() {
    let p = load(&EmbedOptions::default());
    assert_eq!(p.pooling(), &[Pooling::Mean]);
    assert!(p.normalize());
    assert_eq!(p.max_seq_length(), 24);
    assert_eq!(p.dimension(), 32);
}

#[test]
fn tokenization_truncates_like_sentence_transformers() {
    let p = load(&EmbedOptions::default());
    for case in expected()["tokenization"].as_array().unwrap() {
        let enc = p.encode_text(case["text"].as_str().unwrap()).unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(enc.ids, want, "{}", case["text"]);
        assert_eq!(enc.truncated, case["truncated"].as_bool().unwrap());
    }
}

#[test]
fn embeddings_match_for_every_batch_size() {
    let exp = expected();
    let p = load(&EmbedOptions::default());
    let want = rows(&exp["embeddings"]);
    for batch in [1, 3, 10] {
        let got: Vec<Vec<f32>> = p
            .embed(&texts(&exp), batch)
            .unwrap()
            .into_iter()
            .map(|e| e.embedding)
            .collect();
        let d = max_abs_diff(&got, &want);
        assert!(d <= TOL, "batch {batch}: max abs diff {d}");
    }
}

#[test]
fn other_pooling_modes_match() {
    let exp = expected();
    for case in exp["pooling"].as_array().unwrap() {
        let modes: Vec<Pooling> = case["pooling"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Pooling::from_name(m.as_str().unwrap()).unwrap())
            .collect();
        let p = load(&EmbedOptions {
            pooling: Some(modes.clone()),
            normalize: Some(false),
            ..Default::default()
        });
        let got: Vec<Vec<f32>> = p
            .embed(&texts(&exp), 4)
            .unwrap()
            .into_iter()
            .map(|e| e.embedding)
            .collect();
        let d = max_abs_diff(&got, &rows(&case["embeddings"]));
        assert!(d <= 1e-4, "{modes:?}: max abs diff {d}");
    }
}

#[test]
fn similarity_ranking_matches() {
    let exp = expected();
    let case = &exp["similarity"][0];
    let p = load(&EmbedOptions::default());
    let query = p
        .embed(&[case["query"].as_str().unwrap().to_string()], 1)
        .unwrap()
        .remove(0)
        .embedding;
    let cands: Vec<Vec<f32>> = p
        .embed(&texts(&exp), 8)
        .unwrap()
        .into_iter()
        .map(|e| e.embedding)
        .collect();
    let ranked = rank_by_similarity(&query, &cands);
    let order: Vec<usize> = ranked.iter().map(|r| r.index).collect();
    let want: Vec<usize> = serde_json::from_value(case["ranking"].clone()).unwrap();
    assert_eq!(order, want);
    let scores: Vec<f32> = serde_json::from_value(case["scores"].clone()).unwrap();
    for r in &ranked {
        assert!((r.score - scores[r.index]).abs() <= TOL, "{r:?}");
    }
}

#[test]
fn empty_text_is_an_error_naming_it() {
    let p = load(&EmbedOptions::default());
    let err = p
        .embed(&["fine".into(), "  ".into()], 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("input 1 is empty"), "{err}");
}
