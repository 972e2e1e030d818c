//! Sequence classification fine-tuning of BERT-family checkpoints (BERT, MiniLM, DistilBERT,
//! RoBERTa, XLM-R), as `transformers`' `run_classification.py` with `Trainer`:
//!
//! - the label set: `--labels` in the order given, else the checkpoint's `id2label` when it
//!   has a head and names every label of the data, else the data's labels sorted (numbers
//!   numerically); written back as `id2label`/`label2id`;
//! - the head: a checkpoint's own head when it has one for the same labels (as
//!   `from_pretrained` keeps it), otherwise a new one initialized as `transformers`'
//!   `_init_weights` does (normal with `initializer_range`, zero biases; a BERT trunk
//!   without a pooler gets a new pooler too);
//! - `problem_type` as `*ForSequenceClassification` reads it: cross-entropy for
//!   `single_label_classification`, BCE-with-logits over multi-hot targets for
//!   `multi_label_classification` (a list of labels per example), MSE for `regression`
//!   (one output, a number per example);
//! - inputs tokenized with special tokens, truncated to `max_source_length` keeping the
//!   final `[SEP]`, right-padded (`DataCollatorWithPadding`).

use crate::data::{Dataset, Record};
use crate::loss::{log_softmax, token_loss, TokenLoss};
use crate::objective::Objective;
use crate::tokenize::{encode_truncated, pad_right};
use crate::{Result, TrainError};
use lmrs_core::candle::Var;
use lmrs_core::{Device, Tensor, D};
use lmrs_io::{ModelFiles, ParamStore, Weights};
use lmrs_models::bert::{BertConfig, BertForSequenceClassification, Family};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;

/// `problem_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    SingleLabel,
    MultiLabel,
    Regression,
}

impl ProblemType {
    /// Parse a `problem_type` value.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "single_label_classification" | "single-label" | "single_label" => Self::SingleLabel,
            "multi_label_classification" | "multi-label" | "multi_label" => Self::MultiLabel,
            "regression" => Self::Regression,
            _ => {
                return Err(TrainError::Args(format!(
                "unknown problem type '{s}' (single_label_classification, multi_label_classification, regression)"
            )))
            }
        })
    }

    /// The `config.json` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::SingleLabel => "single_label_classification",
            Self::MultiLabel => "multi_label_classification",
            Self::Regression => "regression",
        }
    }
}

/// What an example is labelled with.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The label's index.
    Class(u32),
    /// One 0/1 value per label.
    Classes(Vec<f32>),
    /// A regression value.
    Value(f32),
}

/// A tokenized example.
#[derive(Debug, Clone)]
pub struct ClassifyExample {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    pub target: Target,
}

/// How labels are chosen: `--labels` and `--problem-type` as given.
#[derive(Debug, Clone, Default)]
pub struct LabelOptions {
    pub labels: Option<Vec<String>>,
    pub problem_type: Option<ProblemType>,
}

/// A raw label of a record.
enum RawLabel {
    One(String),
    Many(Vec<String>),
}

/// A BERT-family classifier being fine-tuned.
pub struct ClassificationObjective {
    model: BertForSequenceClassification,
    params: Arc<ParamStore>,
    tokenizer: tokenizers::Tokenizer,
    files: ModelFiles,
    pad: u32,
    labels: Vec<String>,
    problem: ProblemType,
    /// Prefix given to trunk keys when saving (`bert.` for a bare encoder checkpoint, so the
    /// folder has the layout of `BertForSequenceClassification`); empty otherwise.
    save_prefix: String,
    /// `true` when the checkpoint's own head is trained on.
    kept_head: bool,
    config: Map<String, Value>,
}

/// Checkpoint keys of a head, per family: `(key, is_output_layer)` for each linear layer.
fn head_layers(family: Family) -> &'static [(&'static str, bool)] {
    match family {
        Family::Bert => &[("classifier", true)],
        Family::Roberta => &[("classifier.dense", false), ("classifier.out_proj", true)],
        Family::DistilBert => &[("pre_classifier", false), ("classifier", true)],
    }
}

/// The `transformers` class a family's classifier is saved as.
fn architecture(model_type: &str) -> &'static str {
    match model_type {
        "roberta" => "RobertaForSequenceClassification",
        "xlm-roberta" => "XLMRobertaForSequenceClassification",
        "camembert" => "CamembertForSequenceClassification",
        "distilbert" => "DistilBertForSequenceClassification",
        _ => "BertForSequenceClassification",
    }
}

impl ClassificationObjective {
    /// Load `files` for training a classifier over the labels of `data` (every dataset the
    /// run uses, so a label only in the validation file is known): every weight a variable.
    /// `seed` initializes a new head.
    pub fn load(
        files: &ModelFiles,
        dropout: Option<f64>,
        opts: &LabelOptions,
        data: &[(&Dataset, &str)],
        seed: u64,
    ) -> Result<Self> {
        let model_type = lmrs_io::model_type(&files.config)?.unwrap_or_default();
        let family = lmrs_models::catalogue::by_model_type(&model_type).map(|a| a.family);
        if family != Some(lmrs_models::Family::Bert) {
            return Err(TrainError::Unsupported(format!(
                "text-classification training supports the BERT family (BERT, MiniLM, DistilBERT, RoBERTa, XLM-R); {} is model_type {}",
                files.dir.display(),
                if model_type.is_empty() { "(missing)" } else { &model_type }
            )));
        }
        let mut cfg = BertConfig::from_file(&files.config)?;
        if let Some(p) = dropout {
            if !(0.0..1.0).contains(&p) {
                return Err(TrainError::Args(format!("--dropout {p} is not in [0, 1)")));
            }
            cfg.set_dropout(p);
        }
        let weights = Weights::from_files(&files.weights, &Device::Cpu, lmrs_core::DType::F32)?;
        let layers = head_layers(cfg.family());
        let has_head = layers
            .iter()
            .all(|(k, _)| weights.file_contains(&format!("{k}.weight")));
        let raw: Vec<Vec<(usize, RawLabel)>> = data
            .iter()
            .map(|(d, field)| raw_labels(d, field))
            .collect::<Result<_>>()?;
        let any_list = raw
            .iter()
            .flatten()
            .any(|(_, l)| matches!(l, RawLabel::Many(_)));
        let problem = match (opts.problem_type, cfg.problem_type.as_deref()) {
            (Some(p), _) => p,
            (None, Some(p)) if has_head => ProblemType::parse(p)?,
            _ if any_list => ProblemType::MultiLabel,
            _ => ProblemType::SingleLabel,
        };
        let ckpt_labels = cfg.labels();
        let default_names = ckpt_labels
            .iter()
            .enumerate()
            .all(|(i, l)| *l == format!("LABEL_{i}"));
        let labels = match (problem, &opts.labels) {
            (ProblemType::Regression, _) => vec!["LABEL_0".to_string()],
            (_, Some(l)) => {
                check_unique(l)?;
                l.clone()
            }
            _ => {
                let mut seen: Vec<String> = Vec::new();
                for (_, l) in raw.iter().flatten() {
                    let names = match l {
                        RawLabel::One(s) => std::slice::from_ref(s),
                        RawLabel::Many(v) => v.as_slice(),
                    };
                    for n in names {
                        if !seen.contains(n) {
                            seen.push(n.clone());
                        }
                    }
                }
                if has_head && !default_names && seen.iter().all(|s| ckpt_labels.contains(s)) {
                    ckpt_labels.clone()
                } else {
                    sort_labels(&mut seen);
                    seen
                }
            }
        };
        if labels.is_empty() {
            return Err(TrainError::Args(
                "no labels: give --labels or label the data".into(),
            ));
        }
        let kept_head = has_head
            && ckpt_labels.len() == labels.len()
            && (default_names || ckpt_labels == labels);
        let params = Arc::new(ParamStore::new());
        let trunk = ["bert", "roberta", "distilbert"]
            .into_iter()
            .find(|p| weights.file_contains(&format!("{p}.embeddings.word_embeddings.weight")));
        let save_prefix = match trunk {
            Some(_) => String::new(),
            None => format!("{}.", base_model_prefix(cfg.family())),
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let d = cfg.hidden_size;
        let mut init = |key: &str, rows: usize, cols: usize| -> Result<()> {
            let w = normal(&mut rng, rows * cols, cfg.initializer_range);
            params.insert(
                &format!("{key}.weight"),
                &Tensor::from_vec(w, (rows, cols), &Device::Cpu)?,
            )?;
            params.insert(
                &format!("{key}.bias"),
                &Tensor::zeros(rows, lmrs_core::DType::F32, &Device::Cpu)?,
            )?;
            Ok(())
        };
        if !kept_head {
            for (key, output) in layers {
                init(key, if *output { labels.len() } else { d }, d)?;
            }
        }
        let pooler = match trunk {
            Some(p) => format!("{p}.pooler.dense"),
            None => "pooler.dense".to_string(),
        };
        if cfg.family() == Family::Bert && !weights.file_contains(&format!("{pooler}.weight")) {
            init(&pooler, d, d)?;
        }
        // The config the model is built from says how many outputs the head has.
        cfg.id2label = Some(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), l.clone()))
                .collect(),
        );
        let model =
            BertForSequenceClassification::load(&weights.trainable(params.clone()), cfg.clone())?;
        let tok_path = files.tokenizer.as_ref().ok_or_else(|| {
            TrainError::Unsupported(format!("{} has no tokenizer.json", files.dir.display()))
        })?;
        let tokenizer = crate::tokenize::plain(lmrs_io::load_tokenizer(tok_path)?)?;
        let mut config: Map<String, Value> = lmrs_io::read_json(&files.config)?;
        config.insert("architectures".into(), json!([architecture(&model_type)]));
        let id2label: Map<String, Value> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), json!(l)))
            .collect();
        let label2id: Map<String, Value> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), json!(i)))
            .collect();
        config.insert("id2label".into(), Value::Object(id2label));
        config.insert("label2id".into(), Value::Object(label2id));
        config.insert("problem_type".into(), json!(problem.name()));
        Ok(Self {
            model,
            params,
            tokenizer,
            files: files.clone(),
            pad: cfg.pad_token_id.unwrap_or(0),
            labels,
            problem,
            save_prefix,
            kept_head,
            config,
        })
    }

    /// Labels by index.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The problem type in use.
    pub fn problem_type(&self) -> ProblemType {
        self.problem
    }

    /// `true` when the checkpoint's own head is trained on (else a new one was made).
    pub fn kept_head(&self) -> bool {
        self.kept_head
    }

    /// Tokenize the texts and targets of `data`; returns the examples and how many inputs
    /// were truncated.
    pub fn tokenize(
        &self,
        data: &Dataset,
        input_field: &str,
        label_field: &str,
        max_length: usize,
    ) -> Result<(Vec<ClassifyExample>, usize)> {
        let texts = data.texts(input_field)?;
        let raw = raw_labels(data, label_field)?;
        let mut cut = 0;
        let mut out = Vec::with_capacity(texts.len());
        for (text, (line, raw)) in texts.iter().zip(raw) {
            let (input_ids, was_cut) = encode_truncated(&self.tokenizer, text, max_length, true)?;
            cut += usize::from(was_cut);
            let target = self.target(&data.name, line, raw)?;
            out.push(ClassifyExample {
                token_type_ids: vec![0; input_ids.len()],
                input_ids,
                target,
            });
        }
        Ok((out, cut))
    }

    fn target(&self, file: &str, line: usize, raw: RawLabel) -> Result<Target> {
        let err = |message: String| TrainError::Data {
            file: file.to_string(),
            line,
            message,
        };
        let index = |l: &str| -> Result<u32> {
            self.labels
                .iter()
                .position(|x| x == l)
                .map(|i| i as u32)
                .ok_or_else(|| {
                    err(format!(
                        "label '{l}' is not one of the labels ({})",
                        self.labels.join(", ")
                    ))
                })
        };
        Ok(match (self.problem, raw) {
            (ProblemType::Regression, RawLabel::One(s)) => {
                let v: f32 = s
                    .parse()
                    .ok()
                    .filter(|v: &f32| v.is_finite())
                    .ok_or_else(|| err(format!("regression label '{s}' is not a number")))?;
                Target::Value(v)
            }
            (ProblemType::SingleLabel, RawLabel::One(s)) => Target::Class(index(&s)?),
            (ProblemType::MultiLabel, raw) => {
                let names = match raw {
                    RawLabel::One(s) => vec![s],
                    RawLabel::Many(v) => v,
                };
                let mut hot = vec![0f32; self.labels.len()];
                for n in &names {
                    hot[index(n)? as usize] = 1.0;
                }
                Target::Classes(hot)
            }
            (_, RawLabel::Many(_)) => {
                return Err(err(format!(
                "a list of labels needs --problem-type multi_label_classification (this run is {})",
                self.problem.name()
            )))
            }
        })
    }

    /// `(input_ids, attention_mask, token_type_ids)` `(b, s)` each.
    pub fn collate(&self, batch: &[&ClassifyExample]) -> Result<(Tensor, Tensor, Tensor)> {
        if batch.is_empty() || batch.iter().any(|e| e.input_ids.is_empty()) {
            return Err(TrainError::Args("an empty input in a batch".into()));
        }
        let rows: Vec<&[u32]> = batch.iter().map(|e| e.input_ids.as_slice()).collect();
        let (ids, mask, s) = pad_right(&rows, self.pad);
        let type_rows: Vec<&[u32]> = batch.iter().map(|e| e.token_type_ids.as_slice()).collect();
        let (types, _, _) = pad_right(&type_rows, 0);
        let dev = Device::Cpu;
        let b = batch.len();
        Ok((
            Tensor::from_vec(ids, (b, s), &dev)?,
            Tensor::from_vec(mask, (b, s), &dev)?,
            Tensor::from_vec(types, (b, s), &dev)?,
        ))
    }

    /// Logits `(b, num_labels)`.
    pub fn logits(&self, batch: &[&ClassifyExample]) -> Result<Tensor> {
        let (ids, mask, types) = self.collate(batch)?;
        Ok(self.model.classify(&ids, &mask, Some(&types))?)
    }
}

/// `base_model_prefix` of a family's task models.
fn base_model_prefix(f: Family) -> &'static str {
    match f {
        Family::Bert => "bert",
        Family::Roberta => "roberta",
        Family::DistilBert => "distilbert",
    }
}

fn check_unique(labels: &[String]) -> Result<()> {
    for (i, l) in labels.iter().enumerate() {
        if labels[..i].contains(l) {
            return Err(TrainError::Args(format!("--labels repeats '{l}'")));
        }
    }
    Ok(())
}

/// Labels as numbers when every one is an integer, else as text (numpy's `unique` order).
fn sort_labels(labels: &mut [String]) {
    let numeric: Option<Vec<i128>> = labels.iter().map(|l| l.parse().ok()).collect();
    match numeric {
        Some(_) => labels.sort_by_key(|l| l.parse::<i128>().unwrap_or(0)),
        None => labels.sort(),
    }
}

/// `n` draws of a normal distribution with mean 0 and `std` (Box-Muller).
fn normal(rng: &mut StdRng, n: usize, std: f64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
        })
        .collect()
}

/// The label field of every record, with its line: a string, number or boolean (one label)
/// or a list of them (several).
fn raw_labels(data: &Dataset, field: &str) -> Result<Vec<(usize, RawLabel)>> {
    let one = |r: &Record, v: &Value| -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
            other => Err(TrainError::Data {
                file: data.name.clone(),
                line: r.line,
                message: format!("label field '{field}' holds {other}, not a label"),
            }),
        }
    };
    data.records
        .iter()
        .map(|r| {
            let v = r.fields.get(field).ok_or_else(|| TrainError::Data {
                file: data.name.clone(),
                line: r.line,
                message: format!("no field '{field}' (give --label-field)"),
            })?;
            Ok((
                r.line,
                match v {
                    Value::Array(items) => {
                        RawLabel::Many(items.iter().map(|i| one(r, i)).collect::<Result<_>>()?)
                    }
                    v => RawLabel::One(one(r, v)?),
                },
            ))
        })
        .collect()
}

impl Objective for ClassificationObjective {
    type Example = ClassifyExample;

    fn counted_tokens(&self, _ex: &ClassifyExample) -> usize {
        1
    }

    fn length(&self, ex: &ClassifyExample) -> usize {
        ex.input_ids.len()
    }

    fn loss(&self, batch: &[&ClassifyExample], label_smoothing: f64) -> Result<TokenLoss> {
        let logits = self.logits(batch)?;
        let b = batch.len();
        let dev = Device::Cpu;
        match self.problem {
            ProblemType::SingleLabel => {
                let labels: Vec<i64> = batch
                    .iter()
                    .map(|e| match e.target {
                        Target::Class(c) => Ok(c as i64),
                        _ => Err(TrainError::Args("a non-class target".into())),
                    })
                    .collect::<Result<_>>()?;
                token_loss(&logits, &labels, label_smoothing)
            }
            ProblemType::MultiLabel => {
                let k = self.labels.len();
                let y: Vec<f32> = batch
                    .iter()
                    .flat_map(|e| match &e.target {
                        Target::Classes(v) => v.clone(),
                        _ => vec![0.0; k],
                    })
                    .collect();
                let y = Tensor::from_vec(y, (b, k), &dev)?;
                // BCEWithLogits: max(x, 0) - x y + log(1 + exp(-|x|)), as log-sigmoid of the
                // pair (x, 0) for stability; the mean over labels, summed over examples.
                let zeros = logits.zeros_like()?;
                let pair = Tensor::stack(&[&logits, &zeros], D::Minus1)?;
                let lse = log_softmax(&pair)?; // log(sigmoid(x)), log(sigmoid(-x))
                let log_p = lse.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
                let log_q = lse.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?;
                let ones = y.ones_like()?;
                let per = ((&y * log_p)? + ((ones - &y)? * log_q)?)?.neg()?;
                let sum = (per.sum_all()? / k as f64)?;
                Ok(TokenLoss { sum, count: b })
            }
            ProblemType::Regression => {
                let y: Vec<f32> = batch
                    .iter()
                    .map(|e| match e.target {
                        Target::Value(v) => v,
                        _ => 0.0,
                    })
                    .collect();
                let y = Tensor::from_vec(y, b, &dev)?;
                let x = logits.squeeze(1)?;
                let sum = (x - y)?.sqr()?.sum_all()?;
                Ok(TokenLoss { sum, count: b })
            }
        }
    }

    /// Single-label: accuracy and macro-averaged precision, recall and F1 over the labels.
    /// Multi-label: subset accuracy (every label of an example right) and micro-averaged
    /// precision, recall and F1 over the (example, label) decisions at sigmoid 0.5.
    /// Regression: `mse`.
    fn eval_metrics(
        &self,
        eval: &[ClassifyExample],
        batch_size: usize,
    ) -> Result<Map<String, Value>> {
        let mut refs = Vec::with_capacity(eval.len());
        let mut preds = Vec::with_capacity(eval.len());
        let (mut sq_err, mut exact) = (0f64, 0usize);
        let (mut tp, mut fp, mut fn_) = (0f64, 0f64, 0f64);
        for chunk in eval.chunks(batch_size.max(1)) {
            let batch: Vec<&ClassifyExample> = chunk.iter().collect();
            let rows = self.logits(&batch)?.to_vec2::<f32>()?;
            for (e, row) in chunk.iter().zip(rows) {
                match &e.target {
                    Target::Class(c) => {
                        refs.push(self.labels[*c as usize].clone());
                        preds.push(self.labels[argmax(&row)].clone());
                    }
                    Target::Classes(hot) => {
                        let mut all = true;
                        for (&y, &x) in hot.iter().zip(&row) {
                            // sigmoid(x) > 0.5 exactly when x > 0.
                            let (truth, pred) = (y > 0.5, x > 0.0);
                            all &= truth == pred;
                            tp += f64::from(u8::from(truth && pred));
                            fp += f64::from(u8::from(!truth && pred));
                            fn_ += f64::from(u8::from(truth && !pred));
                        }
                        exact += usize::from(all);
                    }
                    Target::Value(v) => sq_err += (row[0] as f64 - *v as f64).powi(2),
                }
            }
        }
        let n = eval.len().max(1) as f64;
        let mut m = Map::new();
        match self.problem {
            ProblemType::Regression => {
                m.insert("mse".into(), json!(sq_err / n));
            }
            ProblemType::MultiLabel => {
                let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
                let (p, r) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
                m.insert("accuracy".into(), json!(exact as f64 / n));
                m.insert("precision".into(), json!(p));
                m.insert("recall".into(), json!(r));
                m.insert("f1".into(), json!(ratio(2.0 * p * r, p + r)));
            }
            ProblemType::SingleLabel => {
                let r = lmrs_eval::classification_report(
                    &refs,
                    &preds,
                    Some(&self.labels),
                    lmrs_eval::ZeroDivision::Zero,
                )
                .map_err(|e| TrainError::Args(e.to_string()))?;
                m.insert("accuracy".into(), json!(r.accuracy));
                m.insert("precision".into(), json!(r.macro_avg.precision));
                m.insert("recall".into(), json!(r.macro_avg.recall));
                m.insert("f1".into(), json!(r.macro_avg.f1));
            }
        }
        Ok(m)
    }

    fn in_layer_norm(&self, key: &str) -> bool {
        self.params.in_layer_norm(key)
    }

    fn params(&self) -> Vec<(String, Var)> {
        self.params
            .vars()
            .into_iter()
            .map(|(k, v)| {
                let head = k.starts_with("classifier.") || k.starts_with("pre_classifier.");
                if head || self.save_prefix.is_empty() {
                    (k, v)
                } else {
                    (format!("{}{k}", self.save_prefix), v)
                }
            })
            .collect()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        crate::checkpoint::save_hf_folder(&self.params(), &self.files, dir)?;
        crate::state::write_json(
            &Value::Object(self.config.clone()),
            &dir.join("config.json"),
        )
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}
