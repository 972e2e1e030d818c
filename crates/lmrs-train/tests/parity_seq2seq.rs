//! Parity with `transformers`' `Seq2SeqTrainer` on the tiny T5 fixtures (references from
//! `tools/gen_train_references.py`): every logged loss, grad_norm and learning rate of 20
//! steps, every parameter's gradient after one micro-batch, and the trained model's logits.

mod common;

use common::*;
use lmrs_io::ModelFiles;
use lmrs_train::seq2seq::{Seq2SeqLimits, Seq2SeqObjective};
use serde_json::Value;

fn setup(r: &Value) -> Setup<Seq2SeqObjective> {
    let files = ModelFiles::from_folder(&model_dir(r)).expect("fixture folder");
    // A LoRA case starts from the adapter PEFT initialized.
    let lora = r["adapter"]
        .as_str()
        .map(|a| lmrs_train::lora::LoraOptions {
            adapter: Some(model_dir(r).with_file_name(a)),
            ..Default::default()
        });
    let obj =
        Seq2SeqObjective::load(&files, Some(0.0), lora.as_ref(), 42).expect("load for training");
    let data = zen();
    let limits = Seq2SeqLimits {
        source_prefix: r["source_prefix"].as_str().expect("prefix").into(),
        max_source_length: r["max_source_length"].as_u64().expect("len") as usize,
        max_target_length: r["max_target_length"].as_u64().expect("len") as usize,
    };
    let (examples, _, _) = obj
        .tokenize(
            &data.texts("document").expect("docs"),
            &data.texts("summary").expect("sums"),
            &limits,
        )
        .expect("tokenize");
    Setup::new(r, obj, examples)
}

fn gradients(case: &str) {
    let r = reference(case);
    setup(&r).check_gradients(case, &r);
}

fn run(case: &str) {
    let r = reference(case);
    let s = setup(&r);
    s.train_and_check_log(case, &r);
    // The trained weights: logits on the first batch, and the saved folder loads back.
    let (ids, mask, dec, _) = s.obj.collate(&s.first_batch()).expect("collate");
    let logits = s
        .obj
        .model()
        .forward_teacher_forced(&ids, &mask, &dec)
        .expect("forward");
    let scale = check_logits(case, &r, &logits);
    let files = ModelFiles::from_folder(&s.output(case)).expect("output is a model folder");
    let again = lmrs_models::registry::load_seq2seq(&files, &lmrs_core::Device::Cpu)
        .expect("loads for inference");
    let lmrs_models::registry::Seq2SeqModel::T5(m) = again;
    let l2 = m
        .forward_teacher_forced(&ids, &mask, &dec)
        .expect("forward");
    let d = max_abs_diff(&l2, &logits);
    assert!(d <= 1e-5 * scale, "{case}: reloaded logits differ by {d}");
}

#[test]
fn t5_v1_0_gradients_equal_torch_autograd() {
    gradients("t5-v1_0-linear-decay");
}

#[test]
fn t5_v1_1_gradients_equal_torch_autograd() {
    gradients("t5-v1_1-cosine-smooth-accum");
}

#[test]
fn t5_v1_0_run_equals_seq2seq_trainer() {
    run("t5-v1_0-linear-decay");
}

#[test]
fn t5_v1_1_run_with_smoothing_and_accumulation_equals_seq2seq_trainer() {
    run("t5-v1_1-cosine-smooth-accum");
}

/// LoRA on the tiny T5 against `Seq2SeqTrainer` + PEFT (`t5-lora`: q and v, rsLoRA, label
/// smoothing): gradients, 20 logged steps and the trained logits; the output is an adapter.
#[test]
fn t5_lora_run_equals_seq2seq_trainer_with_peft() {
    let case = "t5-lora";
    let r = reference(case);
    let s = setup(&r);
    let params = lmrs_train::Objective::params(&s.obj);
    // q and v in 2 encoder self-attentions, 2 decoder self- and 2 cross-attentions: 12
    // projections, two matrices each.
    assert_eq!(params.len(), 24);
    s.check_gradients(case, &r);
    s.train_and_check_log(case, &r);
    let (ids, mask, dec, _) = s.obj.collate(&s.first_batch()).expect("collate");
    let logits = s
        .obj
        .model()
        .forward_teacher_forced(&ids, &mask, &dec)
        .expect("forward");
    check_logits(case, &r, &logits);
    let root = std::path::PathBuf::from(&s.args.output_dir);
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["task_type"], "SEQ_2_SEQ_LM");
    assert_eq!(cfg["use_rslora"], true);
    assert!(root.join("adapter_model.safetensors").is_file());
}
