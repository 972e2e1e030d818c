//! Token classification (named entities, POS tags...): `transformers`' token-classification
//! pipeline, with its aggregation strategies and character offsets into the input text.

use crate::text::{pad_right, Detailed, Encoded, TextTokenizer};
use crate::{PipelineError, Result};
use lmrs_core::Device;
use lmrs_generate::select::argmax;
use lmrs_io::ModelFiles;
use lmrs_models::registry::{load_token_classifier, TokenClassifier};
use std::path::{Path, PathBuf};

/// How token predictions become entities (`aggregation_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// One result per token.
    None,
    /// Adjacent tokens with the same entity type (B-/I- aware) are grouped.
    Simple,
    /// Words take their first token's label, then grouped.
    First,
    /// Words take the label of the averaged token scores, then grouped.
    Average,
    /// Words take the label of their most confident token, then grouped.
    Max,
}

impl Aggregation {
    /// Parse `none`, `simple`, `first`, `average`, `max`.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Self::None,
            "simple" => Self::Simple,
            "first" => Self::First,
            "average" => Self::Average,
            "max" => Self::Max,
            _ => return None,
        })
    }
}

/// One entity (or, with [`Aggregation::None`], one token).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entity {
    /// The token's label (aggregation `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// The group's entity type without `B-`/`I-` (other aggregations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_group: Option<String>,
    /// Its score (mean over a group).
    pub score: f32,
    /// Token position in the encoded input (aggregation `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The text of the token(s), as the tokenizer's decoder joins them.
    pub word: String,
    /// Start character offset in the input.
    pub start: usize,
    /// End character offset (exclusive).
    pub end: usize,
}

/// A token classifier with its tokenizer and labels.
pub struct TokenClassificationPipeline {
    model: TokenClassifier,
    tokenizer: TextTokenizer,
    labels: Vec<String>,
    unk_id: Option<u32>,
    word_aware: bool,
    max_seq_length: usize,
    dir: PathBuf,
    device: Device,
}

/// A token before aggregation.
struct PreEntity {
    word: String,
    scores: Vec<f32>,
    start: usize,
    end: usize,
    index: usize,
    is_subword: bool,
}

fn softmax(v: &[f32]) -> Vec<f32> {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|x| x / sum).collect()
}

/// Whether the tokenizer model marks word continuations (`transformers` checks the model's
/// `continuing_subword_prefix`: WordPiece's `##`, a BPE's when it has one).
fn word_aware(tokenizer: &tokenizers::Tokenizer) -> bool {
    match tokenizer.get_model() {
        tokenizers::ModelWrapper::WordPiece(m) => !m.continuing_subword_prefix.is_empty(),
        tokenizers::ModelWrapper::BPE(m) => m
            .get_continuing_subword_prefix()
            .as_ref()
            .is_some_and(|p| !p.is_empty()),
        _ => false,
    }
}

/// The unknown-token id: the model's own (`[UNK]`, `<unk>`), else a vocabulary entry of
/// either name.
fn unk_id(tokenizer: &tokenizers::Tokenizer) -> Option<u32> {
    let own = match tokenizer.get_model() {
        tokenizers::ModelWrapper::WordPiece(m) => Some(m.unk_token.clone()),
        tokenizers::ModelWrapper::BPE(m) => m.unk_token.clone(),
        tokenizers::ModelWrapper::WordLevel(m) => Some(m.unk_token.clone()),
        _ => None,
    };
    own.into_iter()
        .chain(["[UNK]".to_string(), "<unk>".to_string()])
        .find_map(|t| tokenizer.token_to_id(&t))
}

/// `B-`/`I-` prefix and tag of a label (no prefix counts as `I-`).
fn tag(label: &str) -> (bool, &str) {
    match label.strip_prefix("B-") {
        Some(t) => (true, t),
        None => (false, label.strip_prefix("I-").unwrap_or(label)),
    }
}

impl TokenClassificationPipeline {
    /// Load from a local folder or a hub id in the Hugging Face cache.
    pub fn load(reference: &str, revision: Option<&str>) -> Result<Self> {
        let dir = crate::source::model_folder(reference, revision, "encoder models")?;
        let files = ModelFiles::from_folder(&dir)?;
        let tokenizer = TextTokenizer::load(&dir)?;
        let device = Device::Cpu;
        let model = load_token_classifier(&files, &device)?;
        let max_seq_length = crate::text::tokenizer_max_length(&dir)?
            .map_or(model.max_positions(), |l| l.min(model.max_positions()));
        let word_aware = word_aware(tokenizer.inner());
        Ok(Self {
            labels: model.labels(),
            unk_id: unk_id(tokenizer.inner()),
            word_aware,
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

    /// Entities of each text (label `O` left out), `batch_size` texts at a time.
    pub fn run(
        &self,
        texts: &[String],
        aggregation: Aggregation,
        batch_size: usize,
    ) -> Result<Vec<Vec<Entity>>> {
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(PipelineError::EmptyInput { index });
        }
        let encoded = texts
            .iter()
            .map(|t| self.tokenizer.encode_detailed(t, self.max_seq_length))
            .collect::<Result<Vec<_>>>()?;
        let mut scores: Vec<Vec<Vec<f32>>> = vec![Vec::new(); texts.len()];
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].encoded.ids.len()));
        for chunk in order.chunks(batch_size.max(1)) {
            let rows: Vec<&Encoded> = chunk.iter().map(|&i| &encoded[i].encoded).collect();
            let (ids, types, mask) = pad_right(&rows, &self.device)?;
            let logits = self
                .model
                .classify_tokens(&ids, &mask, Some(&types))?
                .to_vec3::<f32>()?;
            for (&i, row) in chunk.iter().zip(logits) {
                let n = encoded[i].encoded.ids.len();
                if row[..n].iter().flatten().any(|v| !v.is_finite()) {
                    return Err(lmrs_core::Error::NonFinite("token logits".into()).into());
                }
                scores[i] = row[..n].iter().map(|l| softmax(l)).collect();
            }
        }
        texts
            .iter()
            .zip(&encoded)
            .zip(scores)
            .map(|((text, det), scores)| {
                let pre = self.pre_entities(text, det, scores);
                let entities = self.aggregate(pre, aggregation)?;
                Ok(entities
                    .into_iter()
                    .filter(|e| e.entity.as_deref() != Some("O"))
                    .filter(|e| e.entity_group.as_deref() != Some("O"))
                    .collect())
            })
            .collect()
    }

    fn pre_entities(&self, text: &str, det: &Detailed, scores: Vec<Vec<f32>>) -> Vec<PreEntity> {
        let chars: Vec<char> = text.chars().collect();
        scores
            .into_iter()
            .enumerate()
            .filter(|(idx, _)| !det.special[*idx])
            .map(|(idx, scores)| {
                let (start, end) = det.offsets[idx];
                let word_ref: String = chars[start.min(chars.len())..end.min(chars.len())]
                    .iter()
                    .collect();
                let mut word = det.tokens[idx].clone();
                let mut is_subword = if self.word_aware {
                    // A WordPiece tokenizer knows its words: a token is a continuation when it
                    // is longer than the text it covers (the `##`), as transformers decides.
                    word.chars().count() != word_ref.chars().count()
                } else {
                    // transformers' fallback for BPE and Unigram tokenizers: a token continues
                    // a word unless it starts the text or touches a space.
                    let lo = start.saturating_sub(1).min(chars.len());
                    let hi = (start + 1).clamp(lo, chars.len());
                    start > 0 && !chars[lo..hi].contains(&' ')
                };
                if Some(det.encoded.ids[idx]) == self.unk_id {
                    word = word_ref;
                    is_subword = false;
                }
                PreEntity {
                    word,
                    scores,
                    start,
                    end,
                    index: idx,
                    is_subword,
                }
            })
            .collect()
    }

    fn aggregate(&self, pre: Vec<PreEntity>, aggregation: Aggregation) -> Result<Vec<Entity>> {
        let token_entities: Vec<Entity> = match aggregation {
            Aggregation::None | Aggregation::Simple => pre
                .into_iter()
                .map(|p| {
                    let best = argmax(&p.scores);
                    Entity {
                        entity: Some(self.labels[best].clone()),
                        entity_group: None,
                        score: p.scores[best],
                        index: Some(p.index),
                        word: p.word,
                        start: p.start,
                        end: p.end,
                    }
                })
                .collect(),
            _ => {
                let mut words: Vec<Vec<PreEntity>> = Vec::new();
                for p in pre {
                    match words.last_mut() {
                        Some(group) if p.is_subword => group.push(p),
                        _ => words.push(vec![p]),
                    }
                }
                words
                    .into_iter()
                    .map(|group| self.aggregate_word(group, aggregation))
                    .collect::<Result<_>>()?
            }
        };
        if aggregation == Aggregation::None {
            return Ok(token_entities);
        }
        self.group_entities(token_entities)
    }

    fn aggregate_word(&self, group: Vec<PreEntity>, aggregation: Aggregation) -> Result<Entity> {
        let tokens: Vec<String> = group.iter().map(|p| p.word.clone()).collect();
        let (label, score) = match aggregation {
            Aggregation::First => {
                let best = argmax(&group[0].scores);
                (best, group[0].scores[best])
            }
            Aggregation::Max => {
                let top = group.iter().fold(&group[0], |b, p| {
                    let m = |x: &PreEntity| x.scores.iter().copied().fold(f32::MIN, f32::max);
                    if m(p) > m(b) {
                        p
                    } else {
                        b
                    }
                });
                let best = argmax(&top.scores);
                (best, top.scores[best])
            }
            _ => {
                let n = group.len() as f32;
                let mean: Vec<f32> = (0..self.labels.len())
                    .map(|j| group.iter().map(|p| p.scores[j]).sum::<f32>() / n)
                    .collect();
                let best = argmax(&mean);
                (best, mean[best])
            }
        };
        Ok(Entity {
            entity: Some(self.labels[label].clone()),
            entity_group: None,
            score,
            index: None,
            word: self.tokenizer.tokens_to_string(&tokens)?,
            start: group[0].start,
            end: group[group.len() - 1].end,
        })
    }

    /// Group adjacent entities of one type: an `I-` (or unprefixed) label continues the group
    /// of the same tag, a `B-` label starts a new one.
    fn group_entities(&self, entities: Vec<Entity>) -> Result<Vec<Entity>> {
        let mut groups = Vec::new();
        let mut current: Vec<Entity> = Vec::new();
        for e in entities {
            if let Some(last) = current.last() {
                let (b, t) = tag(e.entity.as_deref().unwrap_or_default());
                let (_, last_t) = tag(last.entity.as_deref().unwrap_or_default());
                if t != last_t || b {
                    groups.push(self.group(std::mem::take(&mut current))?);
                }
            }
            current.push(e);
        }
        if !current.is_empty() {
            groups.push(self.group(current)?);
        }
        Ok(groups)
    }

    fn group(&self, entities: Vec<Entity>) -> Result<Entity> {
        let first = entities[0].entity.clone().unwrap_or_default();
        let group = first.split_once('-').map_or(first.as_str(), |(_, t)| t);
        let tokens: Vec<String> = entities.iter().map(|e| e.word.clone()).collect();
        Ok(Entity {
            entity: None,
            entity_group: Some(group.to_string()),
            score: entities.iter().map(|e| e.score).sum::<f32>() / entities.len() as f32,
            index: None,
            word: self.tokenizer.tokens_to_string(&tokens)?,
            start: entities[0].start,
            end: entities[entities.len() - 1].end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_argmax() {
        assert_eq!(tag("B-PER"), (true, "PER"));
        assert_eq!(tag("I-LOC"), (false, "LOC"));
        assert_eq!(tag("O"), (false, "O"));
        assert_eq!(argmax(&[0.1, 0.5, 0.5]), 1);
        let s = softmax(&[0.0, 0.0]);
        assert_eq!(s, vec![0.5, 0.5]);
    }

    #[test]
    fn word_awareness_and_unknown_token_follow_the_model() {
        use tokenizers::models::bpe::BPE;
        use tokenizers::models::wordpiece::WordPiece;
        fn vocab<const N: usize>(names: [&str; N]) -> [(String, u32); N] {
            let mut i = 0;
            names.map(|n| {
                i += 1;
                (n.to_string(), i - 1)
            })
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab(["a", "b", "<unk>"]), vec![])
            .unk_token("<unk>".into())
            .build()
            .unwrap();
        let tok = tokenizers::Tokenizer::new(bpe);
        assert!(
            !word_aware(&tok),
            "byte-level style BPE: whitespace heuristic"
        );
        assert_eq!(unk_id(&tok), Some(2));
        let bpe = BPE::builder()
            .vocab_and_merges(vocab(["a", "##b"]), vec![])
            .continuing_subword_prefix("##".into())
            .build()
            .unwrap();
        assert!(word_aware(&tokenizers::Tokenizer::new(bpe)));
        let wp = WordPiece::builder()
            .vocab(vocab(["[PAD]", "[UNK]", "a", "##b"]))
            .build()
            .unwrap();
        let tok = tokenizers::Tokenizer::new(wp);
        assert!(word_aware(&tok));
        assert_eq!(unk_id(&tok), Some(1));
    }
}
