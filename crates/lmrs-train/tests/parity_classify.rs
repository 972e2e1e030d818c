//! Parity with `transformers`' `Trainer` on the tiny `BertForSequenceClassification` fixture
//! (reference from `tools/gen_train_references.py`): the first micro-batch's loss and every
//! parameter's gradient, every logged loss, grad_norm and learning rate of 20 steps with label
//! smoothing and gradient accumulation, the trained logits, and the saved folder reloading for
//! inference with the same logits and labels.

mod common;

use common::*;
use lmrs_io::ModelFiles;
use lmrs_train::classify::{ClassificationObjective, LabelOptions, Target};
use serde_json::Value;

const CASE: &str = "bert-cls-smooth-accum";

fn setup(r: &Value) -> Setup<ClassificationObjective> {
    let files = ModelFiles::from_folder(&model_dir(r)).expect("fixture folder");
    let data = zen();
    let obj = ClassificationObjective::load(
        &files,
        Some(0.0),
        &LabelOptions::default(),
        &[(&data, "label")],
        42,
    )
    .expect("load for training");
    // The checkpoint's head and its id2label order are kept, not re-made from the data.
    assert!(obj.kept_head());
    assert_eq!(obj.labels(), ["better", "other"]);
    let max = r["max_length"].as_u64().expect("max_length") as usize;
    let (examples, _) = obj
        .tokenize(&data, "document", "label", max)
        .expect("tokenize");
    assert!(examples.iter().all(|e| e.input_ids.len() <= max));
    Setup::new(r, obj, examples)
}

#[test]
fn bert_classifier_gradients_equal_torch_autograd() {
    let r = reference(CASE);
    setup(&r).check_gradients(CASE, &r);
}

#[test]
fn bert_classifier_run_with_smoothing_and_accumulation_equals_trainer() {
    let r = reference(CASE);
    let s = setup(&r);
    s.train_and_check_log(CASE, &r);
    let batch = s.first_batch();
    let logits = s.obj.logits(&batch).expect("logits");
    let scale = check_logits(CASE, &r, &logits);

    // The folder reloads as an inference classifier with the same logits and labels.
    let files = ModelFiles::from_folder(&s.output(CASE)).expect("output is a model folder");
    let again = lmrs_models::registry::load_sequence_classifier(&files, &lmrs_core::Device::Cpu)
        .expect("loads for inference");
    assert_eq!(again.labels(), ["better", "other"]);
    assert_eq!(again.problem_type(), Some("single_label_classification"));
    let (ids, mask, types) = s.obj.collate(&batch).expect("collate");
    let l2 = again.classify(&ids, &mask, Some(&types)).expect("classify");
    let d = max_abs_diff(&l2, &logits);
    assert!(d <= 1e-5 * scale, "{CASE}: reloaded logits differ by {d}");

    // Evaluation metrics over the training set are those of the argmax predictions.
    let metrics = lmrs_train::Objective::eval_metrics(&s.obj, &s.examples, 8).expect("metrics");
    let all: Vec<_> = s.examples.iter().collect();
    let pred: Vec<u32> = s
        .obj
        .logits(&all)
        .and_then(|l| Ok(l.argmax(1)?.to_vec1::<u32>()?))
        .expect("predictions");
    let right = s
        .examples
        .iter()
        .zip(&pred)
        .filter(|(e, p)| matches!(e.target, Target::Class(c) if c == **p))
        .count();
    let acc = right as f64 / s.examples.len() as f64;
    assert!((metrics["accuracy"].as_f64().expect("accuracy") - acc).abs() < 1e-12);
    for k in ["precision", "recall", "f1"] {
        let v = metrics[k].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
}
