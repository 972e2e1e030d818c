//! Parity with `transformers`' `Seq2SeqTrainer` on the tiny T5 fixtures (references from
//! `tools/gen_train_references.py`): every logged loss, grad_norm and learning rate of 20
//! steps, every parameter's gradient after one micro-batch, and the trained model's logits.

use lmrs_io::ModelFiles;
use lmrs_train::seq2seq::{Seq2SeqLimits, Seq2SeqObjective};
use lmrs_train::{train, Objective, Quiet, RunOptions, TrainingArguments};
use serde_json::Value;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn reference(case: &str) -> Value {
    let p = fixtures().join("train").join(format!("{case}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).expect("reference file")).expect("json")
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

struct Setup {
    obj: Seq2SeqObjective,
    examples: Vec<lmrs_train::seq2seq::Seq2SeqExample>,
    args: TrainingArguments,
    _dir: tempfile::TempDir,
}

fn setup(r: &Value) -> Setup {
    let model = fixtures()
        .join("train")
        .join(r["model"].as_str().expect("model"));
    let files = ModelFiles::from_folder(&model).expect("fixture folder");
    let obj = Seq2SeqObjective::load(&files, Some(0.0)).expect("load for training");
    let data = lmrs_train::data::Dataset::read(&fixtures().join("train/zen.jsonl")).expect("data");
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
    let dir = tempfile::tempdir().expect("tmp");
    let mut args: TrainingArguments = serde_json::from_value(r["args"].clone()).expect("args");
    args.logging_steps = 1;
    args.save_strategy = lmrs_train::IntervalStrategy::No;
    args.output_dir = dir.path().join("out").display().to_string();
    Setup {
        obj,
        examples,
        args,
        _dir: dir,
    }
}

fn check_gradients(case: &str) {
    let r = reference(case);
    let s = setup(&r);
    let bs = s.args.per_device_train_batch_size;
    let batch: Vec<_> = s.examples[..bs].iter().collect();
    let l = s.obj.loss(&batch, 0.0).expect("loss");
    let mean = (l.sum / l.count as f64).expect("mean");
    let loss = mean.to_scalar::<f32>().expect("scalar") as f64;
    let want = r["first_batch_loss"].as_f64().expect("loss");
    assert!(rel(loss, want) < 1e-5, "{case}: loss {loss} vs {want}");
    let grads = mean.backward().expect("backward");
    let refs = r["grads"].as_object().expect("grads");
    let params = s.obj.params();
    assert_eq!(params.len(), refs.len(), "{case}: parameter count");
    let mut worst = (0f64, String::new());
    for (name, var) in &params {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
        let want = &refs
            .get(name)
            .unwrap_or_else(|| panic!("{case}: {name} not in torch's parameters"));
        let norm = g
            .sqr()
            .and_then(|x| x.sum_all())
            .and_then(|x| x.to_scalar::<f32>())
            .expect("norm")
            .sqrt() as f64;
        let wn = want["norm"].as_f64().expect("norm");
        let e = rel(norm, wn);
        if e > worst.0 {
            worst = (e, name.clone());
        }
        assert!(e < 1e-4, "{case}: |grad {name}| {norm} vs {wn}");
        let head: Vec<f32> = g.flatten_all().and_then(|x| x.to_vec1()).expect("values");
        for (i, w) in want["head"].as_array().expect("head").iter().enumerate() {
            let w = w.as_f64().expect("value");
            let tol = 1e-4 * wn.max(1e-30) + 1e-4 * w.abs();
            assert!(
                (head[i] as f64 - w).abs() <= tol,
                "{case}: grad {name}[{i}] {} vs {w}",
                head[i]
            );
        }
    }
    eprintln!(
        "{case}: worst gradient-norm relative error {:.2e} ({})",
        worst.0, worst.1
    );
}

fn check_run(case: &str) {
    let r = reference(case);
    let s = setup(&r);
    let opts = RunOptions {
        no_shuffle: true,
        ..Default::default()
    };
    let out = train(&s.obj, &s.args, &s.examples, None, &opts, &mut Quiet).expect("train");
    let ours: Vec<_> = out
        .state
        .log_history
        .iter()
        .filter(|e| e.contains_key("loss"))
        .collect();
    let theirs: Vec<_> = r["log_history"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e.get("loss").is_some())
        .collect();
    assert_eq!(ours.len(), theirs.len(), "{case}: logged steps");
    let mut worst = [0f64; 3];
    for (o, t) in ours.iter().zip(&theirs) {
        let step = t["step"].as_u64().expect("step");
        assert_eq!(o["step"].as_u64(), Some(step));
        for (i, key) in ["loss", "grad_norm", "learning_rate"].iter().enumerate() {
            let (a, b) = (
                o[*key].as_f64().expect("ours"),
                t[*key].as_f64().expect("theirs"),
            );
            let e = if b == 0.0 { a.abs() } else { rel(a, b) };
            worst[i] = worst[i].max(e);
            assert!(e < 1e-4, "{case} step {step}: {key} {a} vs {b}");
        }
        let (a, b) = (
            o["epoch"].as_f64().expect("epoch"),
            t["epoch"].as_f64().expect("epoch"),
        );
        assert!((a - b).abs() < 1e-9, "{case} step {step}: epoch {a} vs {b}");
    }
    eprintln!(
        "{case}: worst relative error over 20 steps: loss {:.2e}, grad_norm {:.2e}, lr {:.2e}",
        worst[0], worst[1], worst[2]
    );
    // The trained weights: logits on the first batch, and the saved folder loads back.
    let bs = s.args.per_device_train_batch_size;
    let batch: Vec<_> = s.examples[..bs].iter().collect();
    let (ids, mask, dec, _) = s.obj.collate(&batch).expect("collate");
    let logits = s
        .obj
        .model()
        .forward_teacher_forced(&ids, &mask, &dec)
        .expect("forward");
    let got: Vec<f32> = logits
        .narrow(0, 0, 1)
        .and_then(|x| x.flatten_all())
        .and_then(|x| x.to_vec1())
        .expect("values");
    let want: Vec<f64> = r["trained_logits_first_batch"]["values"]
        .as_array()
        .expect("logits")
        .iter()
        .map(|v| v.as_f64().expect("f"))
        .collect();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    let max_diff = got
        .iter()
        .zip(&want)
        .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    eprintln!("{case}: trained logits max |diff| {max_diff:.2e} (max |logit| {scale:.1})");
    assert!(
        max_diff <= 1e-4 * scale,
        "{case}: trained logits differ by {max_diff}"
    );
    let root = PathBuf::from(&s.args.output_dir);
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "trainer_state.json",
        "training_args.json",
    ] {
        assert!(
            root.join(f).is_file(),
            "{case}: {f} missing from the output"
        );
    }
    let files = ModelFiles::from_folder(&root).expect("output is a model folder");
    let again = lmrs_models::registry::load_seq2seq(&files, &lmrs_core::Device::Cpu)
        .expect("loads for inference");
    let lmrs_models::registry::Seq2SeqModel::T5(m) = again;
    let l2 = m
        .forward_teacher_forced(&ids, &mask, &dec)
        .expect("forward");
    let d = (l2 - logits)
        .and_then(|x| x.abs())
        .and_then(|x| x.max_all())
        .and_then(|x| x.to_scalar::<f32>())
        .expect("diff");
    assert!(
        d as f64 <= 1e-5 * scale,
        "{case}: reloaded logits differ by {d}"
    );
}

#[test]
fn t5_v1_0_gradients_equal_torch_autograd() {
    check_gradients("t5-v1_0-linear-decay");
}

#[test]
fn t5_v1_1_gradients_equal_torch_autograd() {
    check_gradients("t5-v1_1-cosine-smooth-accum");
}

#[test]
fn t5_v1_0_run_equals_seq2seq_trainer() {
    check_run("t5-v1_0-linear-decay");
}

#[test]
fn t5_v1_1_run_with_smoothing_and_accumulation_equals_seq2seq_trainer() {
    check_run("t5-v1_1-cosine-smooth-accum");
}
