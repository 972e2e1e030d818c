//! Sequence-to-sequence fine-tuning (summarization, translation, text2text) of T5-family
//! checkpoints, as `transformers`' `run_summarization.py` example with `Seq2SeqTrainer`:
//!
//! - inputs: `source_prefix + text`, tokenized with the model's tokenizer (special tokens
//!   added, so `</s>` ends each), truncated to `max_source_length`;
//! - labels: the target, tokenized the same way, truncated to `max_target_length`;
//! - collation as `DataCollatorForSeq2Seq`: inputs padded with the pad id (mask 0), labels
//!   padded with -100, `decoder_input_ids` = labels shifted right behind the decoder start
//!   id, with -100 read as pad (`T5ForConditionalGeneration._shift_right`);
//! - the loss: token cross-entropy over non-ignored labels (see [`crate::loss`]).

use crate::lora::LoraOptions;
use crate::loss::{token_loss, TokenLoss, IGNORE_INDEX};
use crate::objective::Objective;
use crate::predict::PredictSettings;
use crate::{Result, TrainError};
use lmrs_core::candle::Var;
use lmrs_core::{Device, Tensor};
use lmrs_generate::GenerationConfig;
use lmrs_io::{LoraSpec, ModelFiles, ParamStore, Weights};
use lmrs_models::t5::{T5Config, T5ForConditionalGeneration};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Arc;

/// A tokenized pair.
#[derive(Debug, Clone)]
pub struct Seq2SeqExample {
    pub input_ids: Vec<u32>,
    pub labels: Vec<u32>,
}

/// Sizes and the prefix applied when tokenizing.
#[derive(Debug, Clone)]
pub struct Seq2SeqLimits {
    pub source_prefix: String,
    pub max_source_length: usize,
    pub max_target_length: usize,
}

/// A T5 model being fine-tuned, with its tokenizer and the folder it came from.
pub struct Seq2SeqObjective {
    model: T5ForConditionalGeneration,
    params: Arc<ParamStore>,
    tokenizer: tokenizers::Tokenizer,
    files: ModelFiles,
    pad: u32,
    decoder_start: u32,
    /// `--predict-with-generate`: evaluation also generates and scores ROUGE/BLEU.
    predict: Option<PredictSettings>,
    /// Set for a LoRA run: only the adapters train, and `save` writes an adapter folder.
    lora: Option<LoraSpec>,
    /// The base model as the user named it (`base_model_name_or_path` of an adapter).
    base: String,
}

impl Seq2SeqObjective {
    /// Load `files` for training in f32 on the CPU: every weight becomes a variable. `dropout`
    /// overrides the checkpoint's `dropout_rate`. With `lora`, the base is frozen and the
    /// targeted projections (PEFT's default for T5: `q`, `v`) get adapters seeded by `seed`.
    pub fn load(
        files: &ModelFiles,
        dropout: Option<f64>,
        lora: Option<&LoraOptions>,
        seed: u64,
    ) -> Result<Self> {
        let model_type = lmrs_io::model_type(&files.config)?;
        let family = model_type
            .as_deref()
            .and_then(lmrs_models::catalogue::by_model_type)
            .map(|a| a.family);
        if family != Some(lmrs_models::Family::T5) {
            return Err(TrainError::Unsupported(format!(
                "seq2seq training supports the T5 family; {} is model_type {}",
                files.dir.display(),
                model_type.unwrap_or_else(|| "(missing)".into())
            )));
        }
        let mut cfg = T5Config::from_file(&files.config)?;
        if let Some(p) = dropout {
            if !(0.0..1.0).contains(&p) {
                return Err(TrainError::Args(format!("--dropout {p} is not in [0, 1)")));
            }
            cfg.dropout_rate = p;
        }
        let lora_spec = lora.map(|o| o.spec("t5", seed)).transpose()?;
        let params = Arc::new(match &lora_spec {
            Some(spec) => ParamStore::with_lora(spec.clone()),
            None => ParamStore::new(),
        });
        let weights = Weights::from_files(&files.weights, &Device::Cpu, lmrs_core::DType::F32)?
            .trainable(params.clone());
        let model = T5ForConditionalGeneration::load(&weights, cfg)?;
        if lora_spec.is_some() {
            crate::lora::check_and_init(&params, lora.and_then(|o| o.adapter.as_deref()))?;
        }
        let tok_path = files.tokenizer.as_ref().ok_or_else(|| {
            TrainError::Unsupported(format!("{} has no tokenizer.json", files.dir.display()))
        })?;
        let tokenizer = crate::tokenize::plain(lmrs_io::load_tokenizer(tok_path)?)?;
        let special = lmrs_core::Seq2SeqLm::special_tokens(&model);
        let pad = special.pad.unwrap_or(0);
        Ok(Self {
            decoder_start: special.decoder_start.unwrap_or(pad),
            pad,
            model,
            params,
            tokenizer,
            files: files.clone(),
            predict: None,
            lora: lora_spec,
            base: files.dir.display().to_string(),
        })
    }

    /// The LoRA settings when this is a LoRA run.
    pub fn lora(&self) -> Option<&LoraSpec> {
        self.lora.as_ref()
    }

    /// Generate during evaluation with these settings (`--predict-with-generate`).
    pub fn set_predict(&mut self, settings: Option<PredictSettings>) {
        self.predict = settings;
    }

    /// The checkpoint's `generation_config.json`, when it has one.
    pub fn generation_config(&self) -> Result<Option<GenerationConfig>> {
        self.files
            .generation_config
            .as_ref()
            .map(|p| GenerationConfig::from_file(p).map_err(|e| TrainError::Args(e.to_string())))
            .transpose()
    }

    /// The model (for evaluation with generation).
    pub fn model(&self) -> &T5ForConditionalGeneration {
        &self.model
    }

    /// The checkpoint's task prefix for `task` (`summarization`, `translation_en_to_de`...)
    /// from its `task_specific_params`, when it has one.
    pub fn task_prefix(&self, task: &str) -> Option<String> {
        let params = self.model.config().task_specific_params.as_ref()?;
        let entry = match params.get(task) {
            Some(e) => e,
            // `translation` alone: the checkpoint's only translation entry, if unambiguous.
            None => {
                let mut it = params.iter().filter(|(k, _)| k.starts_with(task));
                let first = it.next()?;
                if it.next().is_some() {
                    return None;
                }
                first.1
            }
        };
        entry.get("prefix")?.as_str().map(str::to_string)
    }

    /// Tokenize pairs; returns the examples and how many sources and targets were truncated.
    pub fn tokenize(
        &self,
        sources: &[String],
        targets: &[String],
        limits: &Seq2SeqLimits,
    ) -> Result<(Vec<Seq2SeqExample>, usize, usize)> {
        let (mut cut_src, mut cut_tgt) = (0, 0);
        let mut out = Vec::with_capacity(sources.len());
        for (s, t) in sources.iter().zip(targets) {
            let (input_ids, a) = self.encode(
                &format!("{}{s}", limits.source_prefix),
                limits.max_source_length,
            )?;
            let (labels, b) = self.encode(t, limits.max_target_length)?;
            cut_src += a as usize;
            cut_tgt += b as usize;
            out.push(Seq2SeqExample { input_ids, labels });
        }
        Ok((out, cut_src, cut_tgt))
    }

    /// Token ids of `text` with special tokens, cut to `max`; `true` when cut.
    fn encode(&self, text: &str, max: usize) -> Result<(Vec<u32>, bool)> {
        crate::tokenize::encode_truncated(&self.tokenizer, text, max, true)
    }

    /// Collate a micro-batch: `(input_ids, attention_mask, decoder_input_ids)` as `(b, s)`,
    /// `(b, s)`, `(b, t)` tensors and the `b * t` labels (row-major, -100 padded).
    pub fn collate(&self, batch: &[&Seq2SeqExample]) -> Result<(Tensor, Tensor, Tensor, Vec<i64>)> {
        let b = batch.len();
        let s = batch.iter().map(|e| e.input_ids.len()).max().unwrap_or(0);
        let t = batch.iter().map(|e| e.labels.len()).max().unwrap_or(0);
        if b == 0 || s == 0 || t == 0 {
            return Err(TrainError::Args(
                "an empty input or target in a batch".into(),
            ));
        }
        let rows: Vec<&[u32]> = batch.iter().map(|e| e.input_ids.as_slice()).collect();
        let (ids, mask, _) = crate::tokenize::pad_right(&rows, self.pad);
        let mut dec = Vec::with_capacity(b * t);
        let mut labels = Vec::with_capacity(b * t);
        for e in batch {
            let row: Vec<i64> = e
                .labels
                .iter()
                .map(|&l| l as i64)
                .chain(std::iter::repeat_n(IGNORE_INDEX, t - e.labels.len()))
                .collect();
            dec.push(self.decoder_start);
            dec.extend(row[..t - 1].iter().map(|&l| {
                if l == IGNORE_INDEX {
                    self.pad
                } else {
                    l as u32
                }
            }));
            labels.extend(row);
        }
        let dev = Device::Cpu;
        Ok((
            Tensor::from_vec(ids, (b, s), &dev)?,
            Tensor::from_vec(mask, (b, s), &dev)?,
            Tensor::from_vec(dec, (b, t), &dev)?,
            labels,
        ))
    }
}

impl Objective for Seq2SeqObjective {
    type Example = Seq2SeqExample;

    fn counted_tokens(&self, ex: &Seq2SeqExample) -> usize {
        ex.labels.len()
    }

    fn length(&self, ex: &Seq2SeqExample) -> usize {
        ex.input_ids.len()
    }

    fn loss(&self, batch: &[&Seq2SeqExample], label_smoothing: f64) -> Result<TokenLoss> {
        let (ids, mask, dec, labels) = self.collate(batch)?;
        let logits = self.model.forward_teacher_forced(&ids, &mask, &dec)?;
        let (b, t, v) = logits.dims3()?;
        // (b, t, vocab) -> (b * t, vocab), rows in label order.
        token_loss(&logits.reshape((b * t, v))?, &labels, label_smoothing)
    }

    fn eval_metrics(
        &self,
        eval: &[Seq2SeqExample],
        batch_size: usize,
    ) -> Result<Map<String, Value>> {
        let Some(settings) = &self.predict else {
            return Ok(Map::new());
        };
        let preds =
            crate::predict::generate_all(&self.model, self.pad, eval, batch_size, settings)?;
        crate::predict::text_metrics(&self.tokenizer, &preds, eval, self.pad)
    }

    fn in_layer_norm(&self, key: &str) -> bool {
        self.params.in_layer_norm(key)
    }

    fn params(&self) -> Vec<(String, Var)> {
        self.params.vars()
    }

    fn load_weights(&self, dir: &Path) -> Result<()> {
        crate::lora::load_trained(&self.params.vars(), self.lora.is_some(), dir)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        if let Some(spec) = &self.lora {
            let vars = self.params.vars();
            crate::lora::save_adapter(&vars, spec, "SEQ_2_SEQ_LM", &self.base, dir)?;
            return crate::checkpoint::copy_tokenizer_files(&self.files, dir);
        }
        crate::checkpoint::save_hf_folder(&self.params.vars(), &self.files, dir)
    }
}
