//! Text classification (sentiment, topics...) with a sequence-classification encoder: the
//! behaviour of `transformers`' text-classification pipeline.

use crate::text::{pad_right, Encoded, TextTokenizer};
use crate::{PipelineError, Result};
use lmrs_core::Device;
use lmrs_io::ModelFiles;
use lmrs_models::registry::{load_sequence_classifier, SequenceClassifier};
use std::path::{Path, PathBuf};

/// How logits become scores (`transformers`' `function_to_apply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreFunction {
    /// Probabilities over the labels (single-label classification).
    Softmax,
    /// An independent probability per label (multi-label classification, or one label).
    Sigmoid,
    /// The raw logits (regression).
    None,
}

impl ScoreFunction {
    /// Parse `softmax`, `sigmoid` or `none`.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "softmax" => Self::Softmax,
            "sigmoid" => Self::Sigmoid,
            "none" => Self::None,
            _ => return None,
        })
    }

    /// What `transformers` applies by default for a config: none for `regression`, sigmoid for
    /// `multi_label_classification` or a single label, softmax otherwise.
    pub fn default_for(problem_type: Option<&str>, num_labels: usize) -> Self {
        match problem_type {
            Some("regression") => Self::None,
            Some("multi_label_classification") => Self::Sigmoid,
            _ if num_labels == 1 => Self::Sigmoid,
            _ => Self::Softmax,
        }
    }

    /// Apply to one row of logits.
    pub fn apply(&self, logits: &[f32]) -> Vec<f32> {
        match self {
            Self::Softmax => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
                let sum: f32 = exp.iter().sum();
                exp.iter().map(|e| e / sum).collect()
            }
            Self::Sigmoid => logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect(),
            Self::None => logits.to_vec(),
        }
    }
}

/// How to load a [`ClassificationPipeline`].
#[derive(Debug, Clone, Default)]
pub struct ClassifyOptions {
    /// Hub cache revision (branch or commit) for hub ids; default `main`.
    pub revision: Option<String>,
    /// Score function; default from the config (see [`ScoreFunction::default_for`]).
    pub function: Option<ScoreFunction>,
    /// Truncate inputs to this many tokens; default: the smaller of the tokenizer's
    /// `model_max_length` and the model's position table.
    pub max_seq_length: Option<usize>,
}

/// One label and its score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelScore {
    /// The label name (`id2label`).
    pub label: String,
    /// Its score under the pipeline's [`ScoreFunction`].
    pub score: f32,
}

/// The result for one text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Classification {
    /// Labels, best first (the `top_k` asked for).
    pub labels: Vec<LabelScore>,
    /// Tokens the model saw.
    pub tokens: usize,
    /// Whether the text was truncated.
    pub truncated: bool,
}

/// A sequence classifier with its tokenizer and label names.
pub struct ClassificationPipeline {
    model: SequenceClassifier,
    tokenizer: TextTokenizer,
    labels: Vec<String>,
    function: ScoreFunction,
    max_seq_length: usize,
    dir: PathBuf,
    device: Device,
}

impl ClassificationPipeline {
    /// Load from a local folder or a hub id in the Hugging Face cache.
    pub fn load(reference: &str, opts: &ClassifyOptions) -> Result<Self> {
        let dir =
            crate::source::model_folder(reference, opts.revision.as_deref(), "encoder models")?;
        let files = ModelFiles::from_folder(&dir)?;
        let tokenizer = TextTokenizer::load(&dir)?;
        let device = Device::Cpu;
        let model = load_sequence_classifier(&files, &device)?;
        let limit = crate::text::tokenizer_max_length(&dir)?
            .map_or(model.max_positions(), |l| l.min(model.max_positions()));
        let max_seq_length = opts.max_seq_length.unwrap_or(limit);
        if max_seq_length < 2 || max_seq_length > model.max_positions() {
            return Err(PipelineError::Task(format!(
                "the input limit must be between 2 and the model's {} positions, got {max_seq_length}",
                model.max_positions()
            )));
        }
        let labels = model.labels();
        Ok(Self {
            function: opts
                .function
                .unwrap_or_else(|| ScoreFunction::default_for(model.problem_type(), labels.len())),
            labels,
            model,
            tokenizer,
            max_seq_length,
            dir,
            device,
        })
    }

    /// The model folder in use.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// Label names by index.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The score function in use.
    pub fn function(&self) -> ScoreFunction {
        self.function
    }

    /// Inputs are truncated to this many tokens.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Raw logits `(texts, labels)`, `batch_size` texts at a time.
    pub fn logits(&self, texts: &[String], batch_size: usize) -> Result<Vec<(Encoded, Vec<f32>)>> {
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(PipelineError::EmptyInput { index });
        }
        let encoded = texts
            .iter()
            .map(|t| self.tokenizer.encode(t, self.max_seq_length))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        let mut logits: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let rows: Vec<&Encoded> = chunk.iter().map(|&i| &encoded[i]).collect();
            let (ids, types, mask) = pad_right(&rows, &self.device)?;
            let out = self.model.classify(&ids, &mask, Some(&types))?;
            for (&i, row) in chunk.iter().zip(out.to_vec2::<f32>()?) {
                if row.iter().any(|v| !v.is_finite()) {
                    return Err(lmrs_core::Error::NonFinite("classification logits".into()).into());
                }
                logits[i] = row;
            }
        }
        Ok(encoded.into_iter().zip(logits).collect())
    }

    /// Classify `texts`: the `top_k` best labels of each (all labels when `None`), best first.
    pub fn classify(
        &self,
        texts: &[String],
        batch_size: usize,
        top_k: Option<usize>,
    ) -> Result<Vec<Classification>> {
        let k = top_k.unwrap_or(self.labels.len());
        Ok(self
            .logits(texts, batch_size)?
            .into_iter()
            .map(|(enc, logits)| {
                let scores = self.function.apply(&logits);
                let mut labels: Vec<LabelScore> = scores
                    .into_iter()
                    .enumerate()
                    .map(|(i, score)| LabelScore {
                        label: self.labels[i].clone(),
                        score,
                    })
                    .collect();
                labels.sort_by(|a, b| b.score.total_cmp(&a.score));
                labels.truncate(k);
                Classification {
                    labels,
                    tokens: enc.ids.len(),
                    truncated: enc.truncated,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_functions() {
        let p = ScoreFunction::Softmax.apply(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((p[2] - 0.66524096).abs() < 1e-6);
        assert_eq!(ScoreFunction::Sigmoid.apply(&[0.0]), vec![0.5]);
        assert_eq!(ScoreFunction::None.apply(&[-3.0]), vec![-3.0]);
        assert_eq!(
            ScoreFunction::default_for(Some("multi_label_classification"), 3),
            ScoreFunction::Sigmoid
        );
        assert_eq!(ScoreFunction::default_for(None, 1), ScoreFunction::Sigmoid);
        assert_eq!(ScoreFunction::default_for(None, 3), ScoreFunction::Softmax);
        assert_eq!(
            ScoreFunction::default_for(Some("regression"), 1),
            ScoreFunction::None
        );
    }
}
