//! Sentence embeddings with an encoder: tokenize → encoder → pooling → optional L2
//! normalization, the behaviour of `sentence-transformers`' `SentenceTransformer.encode`.
//!
//! A sentence-transformers folder brings its own settings (`modules.json`,
//! `1_Pooling/config.json`, `2_Normalize`, `sentence_bert_config.json`); a plain model folder
//! gets mean pooling without normalization, as sentence-transformers gives it. Options
//! override both.

use crate::sentence::SentenceConfig;
use crate::text::{Encoded, TextTokenizer};
use crate::{PipelineError, Result};
use lmrs_core::{Device, Encoder, Tensor};
use lmrs_io::ModelFiles;
use lmrs_models::registry::{load_encoder, EncoderModel};
use lmrs_nn::{l2_normalize, pool, Pooling};
use std::path::{Path, PathBuf};

/// How to load an [`EmbeddingPipeline`]; `None` fields keep the folder's settings.
#[derive(Debug, Clone, Default)]
pub struct EmbedOptions {
    /// Hub cache revision (branch or commit) for hub ids; default `main`.
    pub revision: Option<String>,
    /// Pooling modes (concatenated in order); default: the folder's, else mean.
    pub pooling: Option<Vec<Pooling>>,
    /// L2-normalize embeddings; default: whether the folder has a Normalize module.
    pub normalize: Option<bool>,
    /// Truncate inputs to this many tokens, special tokens included; default:
    /// `sentence_bert_config.json` `max_seq_length`, else the smaller of the tokenizer's
    /// `model_max_length` and the model's position table.
    pub max_seq_length: Option<usize>,
}

/// One text's embedding.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TextEmbedding {
    /// The vector (`dimension` values).
    pub embedding: Vec<f32>,
    /// Tokens the model saw, special tokens included.
    pub tokens: usize,
    /// Whether the text was cut to `max_seq_length` tokens.
    pub truncated: bool,
}

/// Whether `reference` (a folder or hub id) is an encoder-only model of the
/// [`lmrs_models::catalogue`]; GGUF files are not.
pub fn is_encoder_model(reference: &str, revision: Option<&str>) -> Result<bool> {
    Ok(match lmrs_io::resolve(reference, revision)? {
        lmrs_io::ModelSource::Gguf(_) => false,
        lmrs_io::ModelSource::HfFolder(dir) => lmrs_io::model_type(&dir.join("config.json"))?
            .and_then(|t| lmrs_models::catalogue::by_model_type(&t))
            .is_some_and(|a| a.role == lmrs_models::Role::Encoder),
    })
}

/// An encoder with its tokenizer, pooling and normalization.
pub struct EmbeddingPipeline {
    model: EncoderModel,
    tokenizer: TextTokenizer,
    pooling: Vec<Pooling>,
    normalize: bool,
    max_seq_length: usize,
    lowercase: bool,
    dir: PathBuf,
    device: Device,
}

impl EmbeddingPipeline {
    /// Load from a local folder or a hub id in the Hugging Face cache.
    pub fn load(reference: &str, opts: &EmbedOptions) -> Result<Self> {
        let dir =
            crate::source::model_folder(reference, opts.revision.as_deref(), "encoder models")?;
        let st = SentenceConfig::from_folder(&dir)?;
        let model_dir = st
            .as_ref()
            .map_or_else(|| dir.clone(), |s| s.transformer_dir.clone());
        let files = ModelFiles::from_folder(&model_dir)?;
        let tokenizer = TextTokenizer::load(&model_dir)?;
        let device = Device::Cpu;
        let model = load_encoder(&files, &device)?;
        let default_limit = crate::text::tokenizer_max_length(&model_dir)?
            .map_or(model.max_positions(), |l| l.min(model.max_positions()));
        let max_seq_length = opts
            .max_seq_length
            .or(st.as_ref().and_then(|s| s.max_seq_length))
            .unwrap_or(default_limit);
        if max_seq_length < 2 || max_seq_length > model.max_positions() {
            return Err(PipelineError::Task(format!(
                "the input limit must be between 2 and the model's {} positions, got {max_seq_length}",
                model.max_positions()
            )));
        }
        let pooling = match (&opts.pooling, &st) {
            (Some(p), _) => p.clone(),
            (None, Some(s)) if !s.pooling.is_empty() => s.pooling.clone(),
            _ => vec![Pooling::Mean],
        };
        if pooling.is_empty() {
            return Err(PipelineError::Task("no pooling mode given".into()));
        }
        Ok(Self {
            normalize: opts
                .normalize
                .unwrap_or(st.as_ref().is_some_and(|s| s.normalize)),
            lowercase: st.as_ref().is_some_and(|s| s.do_lower_case),
            model,
            tokenizer,
            pooling,
            max_seq_length,
            dir,
            device,
        })
    }

    /// The model folder in use.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// The loaded encoder.
    pub fn model(&self) -> &EncoderModel {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Pooling modes in use.
    pub fn pooling(&self) -> &[Pooling] {
        &self.pooling
    }

    /// Whether embeddings are L2-normalized.
    pub fn normalize(&self) -> bool {
        self.normalize
    }

    /// Inputs are truncated to this many tokens (special tokens included).
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Length of each embedding.
    pub fn dimension(&self) -> usize {
        self.model.hidden_size() * self.pooling.len()
    }

    /// Tokenize one text with the pipeline's truncation (and lowercasing, when configured).
    pub fn encode_text(&self, text: &str) -> Result<Encoded> {
        if self.lowercase {
            self.tokenizer
                .encode(&text.to_lowercase(), self.max_seq_length)
        } else {
            self.tokenizer.encode(text, self.max_seq_length)
        }
    }

    /// Embed `texts`, `batch_size` at a time (grouped by length; each result equals its
    /// single run). Empty texts are an error naming the input.
    pub fn embed(&self, texts: &[String], batch_size: usize) -> Result<Vec<TextEmbedding>> {
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(PipelineError::EmptyInput { index });
        }
        let encoded = texts
            .iter()
            .map(|t| self.encode_text(t))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        let mut out: Vec<Option<TextEmbedding>> = vec![None; texts.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let rows: Vec<&Encoded> = chunk.iter().map(|&i| &encoded[i]).collect();
            let vectors = self.embed_encoded(&rows)?.to_vec2::<f32>()?;
            for (&i, embedding) in chunk.iter().zip(vectors) {
                out[i] = Some(TextEmbedding {
                    embedding,
                    tokens: encoded[i].ids.len(),
                    truncated: encoded[i].truncated,
                });
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Embed already tokenized rows as one right-padded batch: `(rows, dimension)`.
    pub fn embed_encoded(&self, rows: &[&Encoded]) -> Result<Tensor> {
        let (ids, types, mask) = crate::text::pad_right(rows, &self.device)?;
        let hidden = self.model.encode(&ids, &mask, Some(&types))?;
        let mut pooled = pool(&hidden, &mask, &self.pooling)?;
        if self.normalize {
            pooled = l2_normalize(&pooled)?;
        }
        let finite = pooled.flatten_all()?.to_vec1::<f32>()?;
        if finite.iter().any(|v| !v.is_finite()) {
            return Err(lmrs_core::Error::NonFinite("sentence embeddings".into()).into());
        }
        Ok(pooled)
    }
}

/// Cosine similarity of two vectors (0 when either is all zeros).
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        dot += x as f64 * y as f64;
        na += x as f64 * x as f64;
        nb += y as f64 * y as f64;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (dot / (na.sqrt() * nb.sqrt())) as f32
}

/// One candidate's score against a query.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ranked {
    /// Position of the candidate in the input.
    pub index: usize,
    /// Cosine similarity with the query.
    pub score: f32,
}

/// Candidates ranked by cosine similarity with `query`, best first (ties keep input order).
pub fn rank_by_similarity(query: &[f32], candidates: &[Vec<f32>]) -> Vec<Ranked> {
    let mut ranked: Vec<Ranked> = candidates
        .iter()
        .enumerate()
        .map(|(index, c)| Ranked {
            index,
            score: cosine_similarity(query, c),
        })
        .collect();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_ranking() {
        assert!((cosine_similarity(&[1., 0.], &[1., 1.]) - 0.70710677).abs() < 1e-6);
        assert_eq!(cosine_similarity(&[0., 0.], &[1., 1.]), 0.0);
        let r = rank_by_similarity(&[1., 0.], &[vec![0., 1.], vec![1., 0.1], vec![-1., 0.]]);
        let order: Vec<usize> = r.iter().map(|x| x.index).collect();
        assert_eq!(order, vec![1, 0, 2]);
    }
}
