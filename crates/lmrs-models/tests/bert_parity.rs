//! Parity of the BERT encoder against `transformers`' `BertModel` on the tiny random checkpoints
//! written by `tools/encoder_fixtures.py`: hidden states and pooler output for single inputs and
//! a padded batch, with the trunk stored at the root (`bert-tiny-st`) and under `bert.`
//! (`bert-tiny-cls`, a `BertForSequenceClassification` with the same trunk).

use lmrs_core::{Device, Encoder, Tensor};
use lmrs_io::ModelFiles;
use lmrs_models::registry::{load_encoder, EncoderModel};
use serde_json::Value;
use std::path::PathBuf;

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn load(name: &str) -> EncoderModel {
    let files = ModelFiles::from_folder(&fixture(name)).unwrap();
    load_encoder(&files, &Device::Cpu).unwrap()
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("bert-tiny-st").join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids_tensor(v: &Value) -> Tensor {
    let rows: Vec<Vec<u32>> = serde_json::from_value(v.clone()).unwrap();
    let (b, t) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (b, t), &Device::Cpu).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check_hidden(name: &str) {
    let model = load(name);
    let EncoderModel::Bert(bert) = &model;
    let exp = expected();
    let cases = exp["hidden"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let ids = ids_tensor(&case["input_ids"]);
        let mask = ids_tensor(&case["attention_mask"]);
        let h = model.encode(&ids, &mask, None).unwrap();
        let want_shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).unwrap();
        assert_eq!(h.dims(), want_shape.as_slice());
        let got = h.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let d = max_abs_diff(&got, &floats(&case["hidden_states"]));
        assert!(d <= TOL, "{name} {}: hidden max abs diff {d}", case["name"]);
        let pooled = bert.pool(&h).unwrap().expect("the fixture has a pooler");
        let got = pooled.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let d = max_abs_diff(&got, &floats(&case["pooler_output"]));
        assert!(d <= TOL, "{name} {}: pooler max abs diff {d}", case["name"]);
    }
}

#[test]
fn hidden_states_match_transformers_without_prefix() {
    check_hidden("bert-tiny-st");
}

#[test]
fn hidden_states_match_transformers_with_bert_prefix() {
    check_hidden("bert-tiny-cls");
}

#[test]
fn padded_batch_rows_equal_single_runs() {
    let model = load("bert-tiny-st");
    let exp = expected();
    let batch = exp["hidden"].as_array().unwrap()[2].clone();
    let rows: Vec<Vec<u32>> = serde_json::from_value(batch["input_ids"].clone()).unwrap();
    let masks: Vec<Vec<u32>> = serde_json::from_value(batch["attention_mask"].clone()).unwrap();
    let ids = ids_tensor(&batch["input_ids"]);
    let mask = ids_tensor(&batch["attention_mask"]);
    let h = model.encode(&ids, &mask, None).unwrap();
    for (i, m) in masks.iter().enumerate() {
        let n = m.iter().filter(|&&v| v == 1).count();
        let single = Tensor::new(&rows[i][..n], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let hs = model
            .encode(&single, &single.ones_like().unwrap(), None)
            .unwrap();
        let a = h.get(i).unwrap().narrow(0, 0, n).unwrap();
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = hs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let d = max_abs_diff(&a, &b);
        assert!(d <= 1e-5, "row {i}: {d}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let model = load("bert-tiny-st");
    let dev = Device::Cpu;
    let too_long = Tensor::zeros((1, 41), lmrs_core::DType::U32, &dev).unwrap();
    let err = model
        .encode(&too_long, &too_long.ones_like().unwrap(), None)
        .unwrap_err();
    assert!(err.to_string().contains("40 positions"), "{err}");
    let bad_id = Tensor::new(&[[2u32, 9999, 3]], &dev).unwrap();
    let err = model
        .encode(&bad_id, &bad_id.ones_like().unwrap(), None)
        .unwrap_err();
    assert!(err.to_string().contains("9999"), "{err}");
    let ids = Tensor::new(&[[2u32, 5, 3]], &dev).unwrap();
    let types = Tensor::new(&[[0u32, 2, 0]], &dev).unwrap();
    let err = model
        .encode(&ids, &ids.ones_like().unwrap(), Some(&types))
        .unwrap_err();
    assert!(err.to_string().contains("token type"), "{err}");
}

#[test]
fn roberta_hidden_states_match_transformers() {
    // RobertaModel: keys under `roberta.`, positions numbered after padding_idx 1, no pooler.
    let model = load("roberta-tiny-cls");
    let text = std::fs::read_to_string(fixture("roberta-tiny-cls").join("expected.json")).unwrap();
    let exp: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        model.max_positions(),
        40,
        "514-style table: 42 rows - padding_idx - 1"
    );
    for case in exp["hidden"].as_array().unwrap() {
        let ids = ids_tensor(&case["input_ids"]);
        let mask = ids_tensor(&case["attention_mask"]);
        let h = model.encode(&ids, &mask, None).unwrap();
        let got = h.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let d = max_abs_diff(&got, &floats(&case["hidden_states"]));
        assert!(
            d <= TOL,
            "roberta {}: hidden max abs diff {d}",
            case["name"]
        );
    }
}

#[test]
fn distilbert_hidden_states_match_transformers() {
    // DistilBertModel: `distilbert.` keys, `transformer.layer.N` with q_lin/sa_layer_norm...,
    // no token type table.
    let model = load("distilbert-tiny-cls");
    let text =
        std::fs::read_to_string(fixture("distilbert-tiny-cls").join("expected.json")).unwrap();
    let exp: Value = serde_json::from_str(&text).unwrap();
    for case in exp["hidden"].as_array().unwrap() {
        let ids = ids_tensor(&case["input_ids"]);
        let mask = ids_tensor(&case["attention_mask"]);
        let h = model.encode(&ids, &mask, None).unwrap();
        let got = h.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let d = max_abs_diff(&got, &floats(&case["hidden_states"]));
        assert!(
            d <= TOL,
            "distilbert {}: hidden max abs diff {d}",
            case["name"]
        );
    }
}
