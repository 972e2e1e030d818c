//! Text classification against `transformers`' `BertForSequenceClassification` on the tiny
//! `bert-tiny-cls` fixture (written by `tools/encoder_fixtures.py`): logits for every batch
//! size, softmax scores and label names, and a checkpoint without a head refused clearly.

use lmrs_pipelines::{ClassificationPipeline, ClassifyOptions, ScoreFunction};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn cases() -> Vec<(String, Vec<f32>)> {
    cases_of("bert-tiny-cls")
}

fn cases_of(name: &str) -> Vec<(String, Vec<f32>)> {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    let exp: Value = serde_json::from_str(&text).unwrap();
    exp["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["text"].as_str().unwrap().to_string(),
                serde_json::from_value(c["logits"].clone()).unwrap(),
            )
        })
        .collect()
}

fn load(opts: &ClassifyOptions) -> ClassificationPipeline {
    ClassificationPipeline::load(fixture("bert-tiny-cls").to_str().unwrap(), opts).unwrap()
}

#[test]
fn logits_match_transformers_for_every_batch_size() {
    let p = load(&ClassifyOptions::default());
    assert_eq!(p.labels(), ["negative", "neutral", "positive"]);
    assert_eq!(p.function(), ScoreFunction::Softmax);
    let cases = cases();
    let texts: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    for batch in [1, 4, 10] {
        let got = p.logits(&texts, batch).unwrap();
        for ((_, g), (t, w)) in got.iter().zip(&cases) {
            let d = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(d <= 1e-4, "batch {batch}, {t:?}: max abs diff {d}");
        }
    }
}

#[test]
fn top_k_labels_are_softmax_scores_best_first() {
    let p = load(&ClassifyOptions::default());
    let cases = cases();
    let texts: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    let all = p.classify(&texts, 4, None).unwrap();
    let top1 = p.classify(&texts, 4, Some(1)).unwrap();
    for ((c, t), (_, logits)) in all.iter().zip(&top1).zip(&cases) {
        assert_eq!(c.labels.len(), 3);
        assert_eq!(t.labels.len(), 1);
        assert_eq!(t.labels[0], c.labels[0]);
        let sum: f32 = c.labels.iter().map(|l| l.score).sum();
        assert!((sum - 1.0).abs() < 1e-5);
        let best = (0..3)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        assert_eq!(c.labels[0].label, ["negative", "neutral", "positive"][best]);
        assert!(c.labels.windows(2).all(|w| w[0].score >= w[1].score));
    }
    let sig = load(&ClassifyOptions {
        function: Some(ScoreFunction::Sigmoid),
        ..Default::default()
    });
    let s = sig.classify(&texts[..1], 1, None).unwrap();
    let want = 1.0 / (1.0 + (-cases[0].1.iter().copied().fold(f32::MIN, f32::max)).exp());
    assert!((s[0].labels[0].score - want).abs() < 1e-4);
}

#[test]
fn checkpoint_without_head_is_refused() {
    let err = ClassificationPipeline::load(
        fixture("bert-tiny-st").to_str().unwrap(),
        &ClassifyOptions::default(),
    )
    .err()
    .expect("no classification head")
    .to_string();
    assert!(
        err.contains("no sequence-classification head") && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn roberta_tokens_and_logits_match_transformers() {
    let dir = fixture("roberta-tiny-cls");
    let p =
        ClassificationPipeline::load(dir.to_str().unwrap(), &ClassifyOptions::default()).unwrap();
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let exp: Value = serde_json::from_str(&text).unwrap();
    let cases = cases_of("roberta-tiny-cls");
    let texts: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    for batch in [1, 10] {
        let got = p.logits(&texts, batch).unwrap();
        for (i, ((enc, g), (t, w))) in got.iter().zip(&cases).enumerate() {
            let ids: Vec<u32> =
                serde_json::from_value(exp["tokenization"][i]["ids"].clone()).unwrap();
            assert_eq!(enc.ids, ids, "token ids of {t:?}");
            let d = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(d <= 1e-4, "batch {batch}, {t:?}: max abs diff {d}");
        }
    }
}

#[test]
fn distilbert_logits_match_transformers() {
    let dir = fixture("distilbert-tiny-cls");
    let p =
        ClassificationPipeline::load(dir.to_str().unwrap(), &ClassifyOptions::default()).unwrap();
    let cases = cases_of("distilbert-tiny-cls");
    let texts: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    for batch in [1, 10] {
        for ((_, g), (t, w)) in p.logits(&texts, batch).unwrap().iter().zip(&cases) {
            let d = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(d <= 1e-4, "batch {batch}, {t:?}: max abs diff {d}");
        }
    }
}

#[test]
fn xlm_roberta_tokens_logits_and_labels_match_transformers() {
    // model_type "xlm-roberta", a Unigram tokenizer whose tokenizer.json has the Metaspace-only
    // pre-tokenizer real checkpoints ship (transformers splits on whitespace runs first).
    let name = "xlm-roberta-tiny-cls";
    let dir = fixture(name);
    let p =
        ClassificationPipeline::load(dir.to_str().unwrap(), &ClassifyOptions::default()).unwrap();
    assert_eq!(p.labels(), ["negative", "neutral", "positive"]);
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let exp: Value = serde_json::from_str(&text).unwrap();
    let cases = cases_of(name);
    let texts: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    for batch in [1, 3, 10] {
        let got = p.logits(&texts, batch).unwrap();
        for (i, ((enc, g), (t, w))) in got.iter().zip(&cases).enumerate() {
            let ids: Vec<u32> =
                serde_json::from_value(exp["tokenization"][i]["ids"].clone()).unwrap();
            assert_eq!(enc.ids, ids, "token ids of {t:?}");
            let d = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(d <= 1e-4, "batch {batch}, {t:?}: max abs diff {d}");
        }
    }
    // The text-classification pipeline's labels and softmax scores, best first.
    let got = p.classify(&texts, 4, None).unwrap();
    for (c, want) in got.iter().zip(exp["classify"].as_array().unwrap()) {
        let want = want["outputs"].as_array().unwrap();
        assert_eq!(c.labels.len(), want.len());
        for (g, w) in c.labels.iter().zip(want) {
            assert_eq!(g.label, w["label"].as_str().unwrap(), "{}", want[0]);
            let s = w["score"].as_f64().unwrap() as f32;
            assert!((g.score - s).abs() <= 1e-4, "{} vs {s}", g.score);
        }
    }
}
