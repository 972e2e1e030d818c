//! Checks shared by the parity tests: a reference written by `tools/gen_train_references.py`
//! against `transformers`' `Trainer`, compared with what lmrs computes on the same fixture.

#![allow(dead_code)] // each test binary uses its own subset

use lmrs_core::candle::Tensor;
use lmrs_train::{Objective, TrainingArguments};
use serde_json::Value;
use std::path::PathBuf;

/// `tests/fixtures` of the repository.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The reference JSON of `case`.
pub fn reference(case: &str) -> Value {
    let p = fixtures().join("train").join(format!("{case}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).expect("reference file")).expect("json")
}

/// The fixture model folder a reference names.
pub fn model_dir(r: &Value) -> PathBuf {
    fixtures()
        .join("train")
        .join(r["model"].as_str().expect("model"))
}

/// The shared dataset, the Zen of Python as JSON Lines.
pub fn zen() -> lmrs_train::data::Dataset {
    lmrs_train::data::Dataset::read(&fixtures().join("train/zen.jsonl")).expect("data")
}

/// Relative error of `a` against `b`.
pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// The reference's arguments, logging every step, saving only at the end, into `dir`.
pub fn args(r: &Value, dir: &std::path::Path) -> TrainingArguments {
    let mut args: TrainingArguments = serde_json::from_value(r["args"].clone()).expect("args");
    args.logging_steps = 1;
    args.save_strategy = lmrs_train::IntervalStrategy::No;
    args.output_dir = dir.join("out").display().to_string();
    args
}

/// The mean loss of the first micro-batch equals the reference's `first_batch_loss`, and every
/// parameter's gradient of it equals torch autograd's (norm and first values, relative 1e-4).
pub fn check_gradients<O: Objective>(case: &str, r: &Value, obj: &O, batch: &[&O::Example]) {
    let l = obj.loss(batch, 0.0).expect("loss");
    let mean = (l.sum / l.count as f64).expect("mean");
    let loss = mean.to_scalar::<f32>().expect("scalar") as f64;
    let want = r["first_batch_loss"].as_f64().expect("loss");
    assert!(rel(loss, want) < 1e-5, "{case}: loss {loss} vs {want}");
    let grads = mean.backward().expect("backward");
    let refs = r["grads"].as_object().expect("grads");
    let params = obj.params();
    assert_eq!(params.len(), refs.len(), "{case}: parameter count");
    // Gradients that are zero in exact arithmetic (an attention key bias: softmax ignores a
    // shift) come out as float noise on both sides; they are held to a floor of the whole
    // gradient's norm instead of to their own.
    let total = refs
        .values()
        .map(|g| g["norm"].as_f64().expect("norm").powi(2))
        .sum::<f64>()
        .sqrt();
    let floor = 1e-6 * total;
    let mut worst = (0f64, String::new());
    for (name, var) in &params {
        let want = refs
            .get(name)
            .unwrap_or_else(|| panic!("{case}: {name} not in torch's parameters"));
        let wn = want["norm"].as_f64().expect("norm");
        let Some(g) = grads.get(var.as_tensor()) else {
            // A parameter the loss does not reach (a BERT pooler under a head that skips it).
            assert!(
                wn == 0.0,
                "{case}: no gradient for {name}, torch's norm {wn}"
            );
            continue;
        };
        let norm = g
            .sqr()
            .and_then(|x| x.sum_all())
            .and_then(|x| x.to_scalar::<f32>())
            .expect("norm")
            .sqrt() as f64;
        if wn < floor {
            assert!(
                norm < 2.0 * floor,
                "{case}: |grad {name}| {norm} vs {wn} (noise)"
            );
            continue;
        }
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
        "{case}: first loss {loss:.6} vs {want:.6}; worst gradient-norm relative error {:.2e} ({})",
        worst.0, worst.1
    );
}

/// Every logged step's loss, grad_norm and learning rate equal the Trainer's (relative 1e-4),
/// and so does its epoch.
pub fn check_log(case: &str, r: &Value, log: &[serde_json::Map<String, Value>]) {
    let ours: Vec<_> = log.iter().filter(|e| e.contains_key("loss")).collect();
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
        "{case}: worst relative error over {} steps: loss {:.2e}, grad_norm {:.2e}, lr {:.2e}",
        ours.len(),
        worst[0],
        worst[1],
        worst[2]
    );
}

/// The first row of `logits` (the trained model on the first batch) equals the reference's,
/// within 1e-4 of the largest logit; returns that scale.
pub fn check_logits(case: &str, r: &Value, logits: &Tensor) -> f64 {
    let reference = &r["trained_logits_first_batch"];
    let shape: Vec<usize> = reference["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|v| v.as_u64().expect("dim") as usize)
        .collect();
    let first = logits.narrow(0, 0, 1).expect("first row");
    assert_eq!(first.dims(), shape.as_slice(), "{case}: logits shape");
    let got: Vec<f32> = first
        .flatten_all()
        .and_then(|x| x.to_vec1())
        .expect("values");
    let want: Vec<f64> = reference["values"]
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
    eprintln!("{case}: trained logits max |diff| {max_diff:.2e} (max |logit| {scale:.2})");
    assert!(
        max_diff <= 1e-4 * scale,
        "{case}: trained logits differ by {max_diff}"
    );
    scale
}

/// Largest absolute difference of two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .and_then(|x| x.abs())
        .and_then(|x| x.max_all())
        .and_then(|x| x.to_scalar::<f32>())
        .expect("diff") as f64
}

/// The output folder holds what `transformers` loads.
pub fn check_output_files(case: &str, root: &std::path::Path) {
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
}

/// An objective, its tokenized examples and the reference's arguments, writing into a
/// temporary folder that lives as long as this.
pub struct Setup<O: Objective> {
    pub obj: O,
    pub examples: Vec<O::Example>,
    pub args: TrainingArguments,
    _dir: tempfile::TempDir,
}

impl<O: Objective> Setup<O> {
    /// Arguments from `r`, output in a fresh temporary folder.
    pub fn new(r: &Value, obj: O, examples: Vec<O::Example>) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        Self {
            obj,
            examples,
            args: args(r, dir.path()),
            _dir: dir,
        }
    }

    /// The first micro-batch, in file order.
    pub fn first_batch(&self) -> Vec<&O::Example> {
        self.examples[..self.args.per_device_train_batch_size]
            .iter()
            .collect()
    }

    /// The gradient check of `case` on the first micro-batch.
    pub fn check_gradients(&self, case: &str, r: &Value) {
        check_gradients(case, r, &self.obj, &self.first_batch());
    }

    /// Train in file order as the reference did and check the log against it.
    pub fn train_and_check_log(&self, case: &str, r: &Value) {
        let opts = lmrs_train::RunOptions {
            no_shuffle: true,
            ..Default::default()
        };
        let out = lmrs_train::train(
            &self.obj,
            &self.args,
            &self.examples,
            None,
            &opts,
            &mut lmrs_train::Quiet,
        )
        .expect("train");
        check_log(case, r, &out.state.log_history);
    }

    /// The trained model's folder, checked for the files `transformers` loads.
    pub fn output(&self, case: &str) -> PathBuf {
        let root = PathBuf::from(&self.args.output_dir);
        check_output_files(case, &root);
        root
    }
}
