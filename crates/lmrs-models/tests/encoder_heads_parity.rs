//! Parity of the encoder heads against `transformers` on the tiny random checkpoints written
//! by `tools/encoder_fixtures.py`: `roberta-tiny-{ner,mlm}` (byte-level BPE),
//! `xlm-roberta-tiny-{cls,ner,mlm}` (`model_type` "xlm-roberta"; the NER checkpoint stores the
//! trunk without the `roberta.` prefix) and `distilbert-tiny-ner`. Hidden states,
//! token-classification logits, masked-LM logits at the masks and sequence-classification
//! logits to 1e-4; a padded batch equals each row run alone.

use lmrs_core::{Device, Encoder, Tensor};
use lmrs_io::ModelFiles;
use lmrs_models::registry::{
    load_encoder, load_masked_lm, load_sequence_classifier, load_token_classifier,
};
use serde_json::Value;
use std::path::PathBuf;

const TOL: f32 = 1e-4;

/// The padding id of a fixture's tokenizer (RoBERTa's `<pad>` is 1, BERT's `[PAD]` 0).
fn pad_of(name: &str) -> u32 {
    if name.starts_with("distilbert") {
        0
    } else {
        1
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn files(name: &str) -> ModelFiles {
    ModelFiles::from_folder(&fixture(name)).unwrap()
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rows_of(v: &Value) -> Vec<Vec<u32>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Token ids of every text (special tokens included), from `expected.json`.
fn token_rows(exp: &Value) -> Vec<Vec<u32>> {
    exp["tokenization"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| serde_json::from_value(t["ids"].clone()).unwrap())
        .collect()
}

/// `(ids, mask)` of rows right-padded with `pad`.
fn padded(rows: &[Vec<u32>], pad: u32) -> (Tensor, Tensor) {
    let n = rows.iter().map(Vec::len).max().unwrap();
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for r in rows {
        ids.extend(
            r.iter()
                .copied()
                .chain(std::iter::repeat_n(pad, n - r.len())),
        );
        mask.extend((0..n).map(|i| u32::from(i < r.len())));
    }
    let dev = Device::Cpu;
    (
        Tensor::from_vec(ids, (rows.len(), n), &dev).unwrap(),
        Tensor::from_vec(mask, (rows.len(), n), &dev).unwrap(),
    )
}

const FIXTURES: [&str; 6] = [
    "roberta-tiny-ner",
    "roberta-tiny-mlm",
    "xlm-roberta-tiny-cls",
    "xlm-roberta-tiny-ner",
    "xlm-roberta-tiny-mlm",
    "distilbert-tiny-ner",
];

#[test]
fn hidden_states_match_transformers() {
    for name in FIXTURES {
        let model = load_encoder(&files(name), &Device::Cpu).unwrap();
        // RoBERTa: 42 rows - padding_idx - 1; DistilBERT: 40 rows.
        assert_eq!(model.max_positions(), 40, "{name}");
        let exp = expected(name);
        let cases = exp["hidden"].as_array().unwrap();
        assert_eq!(cases.len(), 2);
        let mut worst = 0.0f32;
        for case in cases {
            let rows = rows_of(&case["input_ids"]);
            let masks = rows_of(&case["attention_mask"]);
            let (ids, _) = padded(&rows, pad_of(name));
            let mask =
                Tensor::from_vec(masks.concat(), ids.dims2().unwrap(), &Device::Cpu).unwrap();
            let h = model.encode(&ids, &mask, None).unwrap();
            let shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).unwrap();
            assert_eq!(h.dims(), shape.as_slice(), "{name}");
            let d = max_abs_diff(&flat(&h), &floats(&case["hidden_states"]));
            assert!(d <= TOL, "{name} {}: hidden max abs diff {d}", case["name"]);
            worst = worst.max(d);
        }
        eprintln!("{name}: hidden states max abs diff {worst:e}");
    }
}

#[test]
fn padded_batch_rows_equal_single_runs() {
    for name in FIXTURES {
        let model = load_encoder(&files(name), &Device::Cpu).unwrap();
        let rows = token_rows(&expected(name));
        let (ids, mask) = padded(&rows, pad_of(name));
        let batch = model.encode(&ids, &mask, None).unwrap();
        for (i, r) in rows.iter().enumerate() {
            let (ids, mask) = padded(std::slice::from_ref(r), pad_of(name));
            let single = flat(&model.encode(&ids, &mask, None).unwrap());
            let row = flat(&batch.get(i).unwrap().narrow(0, 0, r.len()).unwrap());
            let d = max_abs_diff(&row, &single);
            assert!(d <= 1e-5, "{name} row {i}: batch vs single {d}");
        }
    }
}

#[test]
fn token_classification_logits_match_transformers() {
    for name in [
        "roberta-tiny-ner",
        "xlm-roberta-tiny-ner",
        "distilbert-tiny-ner",
    ] {
        let model = load_token_classifier(&files(name), &Device::Cpu).unwrap();
        assert_eq!(model.labels().len(), 7);
        let exp = expected(name);
        let rows = token_rows(&exp);
        let want = exp["token_logits"].as_array().unwrap();
        assert_eq!(want.len(), rows.len());
        let (ids, mask) = padded(&rows, pad_of(name));
        let batch = model.classify_tokens(&ids, &mask, None).unwrap();
        let mut worst = 0.0f32;
        for (i, (r, w)) in rows.iter().zip(want).enumerate() {
            let (ids, mask) = padded(std::slice::from_ref(r), pad_of(name));
            let single = flat(&model.classify_tokens(&ids, &mask, None).unwrap());
            let row = flat(&batch.get(i).unwrap().narrow(0, 0, r.len()).unwrap());
            for (what, got) in [("batch", &row), ("single", &single)] {
                let d = max_abs_diff(got, &floats(&w["logits"]));
                assert!(
                    d <= TOL,
                    "{name} text {i} ({what}): logits max abs diff {d}"
                );
                worst = worst.max(d);
            }
        }
        eprintln!("{name}: token logits max abs diff {worst:e}");
    }
}

#[test]
fn masked_lm_logits_match_transformers() {
    for name in ["roberta-tiny-mlm", "xlm-roberta-tiny-mlm"] {
        let model = load_masked_lm(&files(name), &Device::Cpu).unwrap();
        let exp = expected(name);
        let rows = token_rows(&exp);
        let (ids, mask) = padded(&rows, pad_of(name));
        let batch = model.logits(&ids, &mask, None).unwrap();
        let mut worst = 0.0f32;
        for (i, (r, case)) in rows
            .iter()
            .zip(exp["mask_logits"].as_array().unwrap())
            .enumerate()
        {
            let (ids, mask) = padded(std::slice::from_ref(r), pad_of(name));
            let single = model.logits(&ids, &mask, None).unwrap();
            let positions: Vec<usize> = serde_json::from_value(case["positions"].clone()).unwrap();
            let want = case["logits"].as_array().unwrap();
            assert_eq!(positions.len(), want.len());
            for (&p, w) in positions.iter().zip(want) {
                let from_batch = flat(&batch.get(i).unwrap().get(p).unwrap());
                let alone = flat(&single.get(0).unwrap().get(p).unwrap());
                for (what, got) in [("batch", &from_batch), ("single", &alone)] {
                    let d = max_abs_diff(got, &floats(w));
                    assert!(d <= TOL, "{name} text {i} mask at {p} ({what}): {d}");
                    worst = worst.max(d);
                }
            }
        }
        eprintln!("{name}: masked-LM logits max abs diff {worst:e}");
    }
}

#[test]
fn xlm_roberta_sequence_logits_match_transformers() {
    let name = "xlm-roberta-tiny-cls";
    let model = load_sequence_classifier(&files(name), &Device::Cpu).unwrap();
    assert_eq!(model.labels(), ["negative", "neutral", "positive"]);
    let exp = expected(name);
    let rows = token_rows(&exp);
    let (ids, mask) = padded(&rows, pad_of(name));
    let batch = model.classify(&ids, &mask, None).unwrap();
    let mut worst = 0.0f32;
    for (i, (r, w)) in rows
        .iter()
        .zip(exp["logits"].as_array().unwrap())
        .enumerate()
    {
        let (ids, mask) = padded(std::slice::from_ref(r), pad_of(name));
        let single = flat(&model.classify(&ids, &mask, None).unwrap());
        let row = flat(&batch.get(i).unwrap());
        for (what, got) in [("batch", &row), ("single", &single)] {
            let d = max_abs_diff(got, &floats(&w["logits"]));
            assert!(
                d <= TOL,
                "{name} text {i} ({what}): logits max abs diff {d}"
            );
            worst = worst.max(d);
        }
    }
    eprintln!("{name}: logits max abs diff {worst:e}");
}

#[test]
fn trunk_without_prefix_loads_like_with_prefix() {
    // xlm-roberta-tiny-ner keeps the trunk at the root (`embeddings.`, `encoder.layer.N`)
    // beside the head's `classifier.*`; the others under `roberta.`.
    let st = lmrs_io::Weights::from_files(
        &files("xlm-roberta-tiny-ner").weights,
        &Device::Cpu,
        lmrs_core::DType::F32,
    )
    .unwrap();
    assert!(st.contains("embeddings.word_embeddings.weight"));
    assert!(!st.contains("roberta.embeddings.word_embeddings.weight"));
    assert!(st.contains("classifier.weight"));
}
