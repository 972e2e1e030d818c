//! `--predict-with-generate` for seq2seq evaluation, as `Seq2SeqTrainer` with the
//! `compute_metrics` of `run_summarization.py` / `run_translation.py`: every evaluation
//! example is generated with the model's generation settings (its `generation_config.json`,
//! `--generation-num-beams` and `--generation-max-length` over them), predictions and the
//! labels are decoded without special tokens, and the metrics are
//!
//! - `rouge1`, `rouge2`, `rougeL`, `rougeLsum`: F1 × 100 with the Porter stemmer, rounded to
//!   4 decimals (the exact mean over examples; `evaluate` reports the bootstrap median,
//!   which differs from it in the last decimals);
//! - `bleu`: corpus sacreBLEU (13a tokenizer, exp smoothing), 0..100;
//! - `gen_len`: the mean count of generated tokens (end-of-sequence included, the decoder
//!   start excluded), as `np.count_nonzero(pred != pad)`.

use crate::seq2seq::Seq2SeqExample;
use crate::{Result, TrainError};
use lmrs_core::{Device, Seq2SeqLm, Tensor};
use lmrs_eval::{BleuOptions, RougeOptions};
use lmrs_generate::{generate, GenerationConfig, Seq2SeqSession};
use serde_json::{json, Map, Value};

/// The generation settings of evaluation.
#[derive(Debug, Clone)]
pub struct PredictSettings {
    /// The model's `generation_config.json` with the `--generation-*` overrides applied.
    pub config: GenerationConfig,
}

impl PredictSettings {
    /// The checkpoint's settings (`None`: `transformers`' defaults) with the
    /// `Seq2SeqTrainingArguments` overrides: `generation_max_length` sets `max_length` (and
    /// clears a `max_new_tokens` that would take precedence), `generation_num_beams` sets
    /// `num_beams`.
    pub fn new(
        defaults: Option<GenerationConfig>,
        max_length: Option<usize>,
        num_beams: Option<usize>,
    ) -> Self {
        let mut config = defaults.unwrap_or_default();
        if let Some(m) = max_length {
            config.max_length = Some(m);
            config.max_new_tokens = None;
        }
        if let Some(n) = num_beams {
            config.num_beams = Some(n);
        }
        Self { config }
    }
}

/// Generate for every example in batches of `batch_size`; returns the token ids after the
/// decoder start, per example.
pub fn generate_all<M: Seq2SeqLm>(
    model: &M,
    pad: u32,
    examples: &[Seq2SeqExample],
    batch_size: usize,
    settings: &PredictSettings,
) -> Result<Vec<Vec<u32>>> {
    let special = model.special_tokens();
    let resolved = settings.config.resolve(&special)?;
    let start = resolved
        .decoder_start
        .ok_or_else(|| TrainError::Unsupported("the model has no decoder_start_token_id".into()))?;
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch_size.max(1)) {
        let rows: Vec<&[u32]> = chunk.iter().map(|e| e.input_ids.as_slice()).collect();
        let (ids, mask, s) = crate::tokenize::pad_right(&rows, pad);
        let b = chunk.len();
        let ids = Tensor::from_vec(ids, (b, s), &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, (b, s), &Device::Cpu)?;
        let hidden = model.encode(&ids, &mask)?;
        let max_len = resolved.max_length.total(1);
        let mut session = Seq2SeqSession::new(model, hidden, mask, max_len, resolved.use_cache)?;
        let prompts = vec![vec![start]; b];
        for seqs in generate(&mut session, &prompts, &settings.config, &special, None)? {
            // The best sequence of each input (beam search: best first).
            let best = seqs
                .into_iter()
                .next()
                .map(|s| s.tokens)
                .unwrap_or_default();
            out.push(best.get(1..).unwrap_or_default().to_vec());
        }
    }
    Ok(out)
}

/// ROUGE, BLEU and `gen_len` of `predictions` (generated ids) against the examples' labels.
pub fn text_metrics(
    tokenizer: &tokenizers::Tokenizer,
    predictions: &[Vec<u32>],
    examples: &[Seq2SeqExample],
    pad: u32,
) -> Result<Map<String, Value>> {
    let decode = |ids: &[u32]| -> Result<String> {
        tokenizer
            .decode(ids, true)
            .map(|s| s.trim().to_string())
            .map_err(|e| TrainError::Tokenizer(e.to_string()))
    };
    let preds = predictions
        .iter()
        .map(|p| decode(p))
        .collect::<Result<Vec<_>>>()?;
    let refs = examples
        .iter()
        .map(|e| Ok(vec![decode(&e.labels)?]))
        .collect::<Result<Vec<_>>>()?;
    let mut m = Map::new();
    if preds.is_empty() {
        return Ok(m);
    }
    let opts = RougeOptions {
        use_stemmer: true,
        ..RougeOptions::default()
    };
    let report = lmrs_eval::rouge(&preds, &refs, &opts)?;
    for (t, agg) in report.types.iter().zip(&report.aggregate) {
        let v = (agg.fmeasure.mean * 100.0 * 1e4).round() / 1e4;
        m.insert(t.to_string(), json!(v));
    }
    let bleu = lmrs_eval::corpus_bleu(&preds, &refs, &BleuOptions::default())?;
    m.insert("bleu".into(), json!(bleu.score));
    let lens: usize = predictions
        .iter()
        .map(|p| p.iter().filter(|&&t| t != pad).count())
        .sum();
    m.insert(
        "gen_len".into(),
        json!(lens as f64 / predictions.len() as f64),
    );
    Ok(m)
}
