//! The loaded model behind the server: one [`Backend`] variant per kind of pipeline, the
//! [`Work`] a request asks of it and the [`Output`] it gets back.
//!
//! The model worker hands [`Backend::run`] several compatible requests at once
//! ([`Work::can_join`]); their texts go through the pipeline as one batch and the results are
//! split back per request. A batched result equals the request's single run: pipelines group
//! inputs by length and their batched == unbatched parity is tested, and requests whose
//! result would depend on their row in a batch (seeded sampling; seq2seq streaming) run alone.
//!
//! A causal LM (completions, chat) takes tokenized prompts ([`Work::Complete`]): every prompt
//! of the batch streams its own text, and a request whose client went away stops its rows at
//! the next decoding step while the rest of the batch goes on.

use crate::error::{ApiError, ServerError};
use lmrs_core::CausalLm;
use lmrs_generate::GenerationConfig;
use lmrs_pipelines::{
    Aggregation, Classification, ClassificationPipeline, ClassifyOptions, CompletionOutput,
    EmbedOptions, EmbeddingPipeline, Entity, FillMaskPipeline, LabelScore, LoadOptions, MaskFill,
    RunOptions, ScoreFunction, Seq2SeqOutput, Seq2SeqPipeline, Task, TextEmbedding,
    TextGenerationPipeline, TextTokenizer, TokenClassificationPipeline,
};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc::UnboundedSender;

/// What kind of model is served (the catalogue's kinds); it decides the routes that answer.
pub use lmrs_pipelines::ModelKind;

/// The routes `kind` answers, besides the common ones.
pub fn kind_routes(kind: ModelKind) -> &'static [&'static str] {
    match kind {
        ModelKind::Seq2Seq => &["/v1/summarize", "/v1/translate", "/v1/text2text"],
        ModelKind::Embedding => &["/v1/embeddings"],
        ModelKind::Classification => &["/v1/classify"],
        ModelKind::TokenClassification => &["/v1/ner"],
        ModelKind::FillMask => &["/v1/fill-mask"],
        ModelKind::CausalLm => &["/v1/completions", "/v1/chat/completions"],
    }
}

/// How to load the served model.
#[derive(Debug, Clone, Default)]
pub struct LoadSpec {
    /// A GGUF file, a local folder or a hub id in the Hugging Face cache.
    pub reference: String,
    /// Hub cache revision for hub ids.
    pub revision: Option<String>,
    /// The kind to serve; default: what the model is for ([`lmrs_pipelines::inspect`]).
    pub kind: Option<ModelKind>,
    /// Longest input the pipeline takes before truncating (seq2seq; encoders keep their
    /// position table's limit).
    pub max_input_tokens: Option<usize>,
    /// PEFT LoRA adapters merged into the model at load (generation and seq2seq models).
    pub adapters: Vec<std::path::PathBuf>,
}

/// The loaded pipeline.
pub enum Backend {
    /// Summarization, translation, text2text.
    Seq2Seq(Box<Seq2SeqPipeline>),
    /// Sentence embeddings.
    Embedding(Box<EmbeddingPipeline>),
    /// Text classification (with a tokenizer to count input tokens).
    Classification(Box<ClassificationPipeline>, TextTokenizer),
    /// Named entities (with a tokenizer to count input tokens).
    TokenClassification(Box<TokenClassificationPipeline>, TextTokenizer),
    /// Fill-mask (with a tokenizer to count input tokens).
    FillMask(Box<FillMaskPipeline>, TextTokenizer),
    /// Completions and chat with a decoder-only model.
    CausalLm(Box<TextGenerationPipeline>),
}

/// A request's work for the model thread.
pub enum Work {
    /// Seq2seq generation of `texts` for `task` with `overrides` over the task's settings.
    Generate {
        /// The task (prefix and checkpoint settings).
        task: Task,
        /// Documents.
        texts: Vec<String>,
        /// The request's generation options.
        overrides: Box<GenerationConfig>,
        /// Where streamed text pieces go (single greedy or sampled input).
        stream: Option<UnboundedSender<String>>,
    },
    /// Sentence embeddings.
    Embed {
        /// Texts.
        texts: Vec<String>,
    },
    /// Text classification.
    Classify {
        /// Texts.
        texts: Vec<String>,
        /// Labels kept per text (`None`: all).
        top_k: Option<usize>,
        /// Score function (`None`: the model's default).
        function: Option<ScoreFunction>,
    },
    /// Token classification.
    Ner {
        /// Texts.
        texts: Vec<String>,
        /// Aggregation strategy.
        aggregation: Aggregation,
    },
    /// Fill-mask.
    FillMask {
        /// Texts with mask tokens.
        texts: Vec<String>,
        /// Proposals per mask.
        top_k: usize,
    },
    /// Causal-LM generation from tokenized prompts (completions, chat).
    Complete {
        /// Prompt token ids (non-empty, within the context with the requested length).
        prompts: Vec<Vec<u32>>,
        /// The request's generation options (one batch shares them).
        overrides: Box<GenerationConfig>,
        /// Where streamed `(prompt index, text piece)` pairs go.
        stream: Option<UnboundedSender<(usize, String)>>,
    },
}

impl Work {
    /// Inputs (batch rows) of this work: texts, or prompts times the sequences each returns.
    pub fn rows(&self) -> usize {
        match self {
            Work::Complete {
                prompts, overrides, ..
            } => prompts.len() * overrides.num_return_sequences.unwrap_or(1).max(1),
            _ => self.texts().len(),
        }
    }

    /// The input texts (none for tokenized prompts).
    pub fn texts(&self) -> &[String] {
        match self {
            Work::Generate { texts, .. }
            | Work::Embed { texts }
            | Work::Classify { texts, .. }
            | Work::Ner { texts, .. }
            | Work::FillMask { texts, .. } => texts,
            Work::Complete { .. } => &[],
        }
    }

    /// Whether `other` may run in the same pipeline call as `self`: same kind, and for
    /// generation the same task and options (one decoding configuration per batch); NER needs
    /// the same aggregation. Classification and fill-mask options apply after the model, so
    /// they mix. Causal-LM prompts stream and stop row by row, so streamed ones join too.
    pub fn can_join(&self, other: &Work) -> bool {
        match (self, other) {
            (
                Work::Generate {
                    task: t1,
                    overrides: o1,
                    stream: None,
                    ..
                },
                Work::Generate {
                    task: t2,
                    overrides: o2,
                    stream: None,
                    ..
                },
            ) => t1 == t2 && o1 == o2,
            (Work::Complete { overrides: o1, .. }, Work::Complete { overrides: o2, .. }) => {
                o1 == o2
            }
            (Work::Embed { .. }, Work::Embed { .. })
            | (Work::Classify { .. }, Work::Classify { .. })
            | (Work::FillMask { .. }, Work::FillMask { .. }) => true,
            (Work::Ner { aggregation: a, .. }, Work::Ner { aggregation: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// A request's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// One output per input.
    Generate(Vec<Seq2SeqOutput>),
    /// One embedding per input.
    Embed(Vec<TextEmbedding>),
    /// Labels per input.
    Classify(Vec<Classification>),
    /// Entities per input.
    Ner(Vec<Vec<Entity>>),
    /// Per input, per mask, the proposals.
    FillMask(Vec<Vec<Vec<MaskFill>>>),
    /// One output per prompt.
    Complete(Vec<CompletionOutput>),
}

impl Output {
    /// Tokens generated (every returned sequence), for metrics and usage.
    pub fn generated_tokens(&self) -> usize {
        match self {
            Output::Generate(outs) => outs
                .iter()
                .flat_map(|o| &o.sequences)
                .map(|s| s.token_ids.len())
                .sum(),
            Output::Complete(outs) => outs
                .iter()
                .flat_map(|o| &o.completions)
                .map(|c| c.token_ids.len())
                .sum(),
            _ => 0,
        }
    }
}

/// Facts about the served model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The id clients pass as `model` (the reference as given, e.g. a folder path or hub id).
    pub id: String,
    /// Its kind.
    pub kind: ModelKind,
    /// The model folder (a causal LM's GGUF file).
    pub dir: PathBuf,
    /// The longest input, in tokens, the pipeline takes before truncating (a causal LM's
    /// context window, prompt and completion together).
    pub input_limit: usize,
    /// Whether a causal LM has a chat template (without one it serves no chat route).
    pub chat: bool,
}

impl ModelInfo {
    /// The model routes this server answers, besides the common ones: its kind's, less
    /// `/v1/chat/completions` for a causal LM without a chat template.
    pub fn routes(&self) -> Vec<&'static str> {
        kind_routes(self.kind)
            .iter()
            .copied()
            .filter(|r| self.chat || *r != "/v1/chat/completions")
            .collect()
    }
}

impl Backend {
    /// Resolve and load a model.
    pub fn load(spec: &LoadSpec) -> Result<Self, ServerError> {
        let folder_err = |source| ServerError::ModelFolder {
            reference: spec.reference.clone(),
            source,
        };
        let load_err = |source| ServerError::Load {
            reference: spec.reference.clone(),
            source,
        };
        // Prompts over the context are refused, never truncated: no `max_input_tokens` here.
        let causal = |reference: &str| {
            let opts = LoadOptions {
                adapters: spec.adapters.clone(),
                ..Default::default()
            };
            TextGenerationPipeline::load(reference, &opts)
                .map(|p| Backend::CausalLm(Box::new(p)))
                .map_err(load_err)
        };
        let dir = match lmrs_io::resolve(&spec.reference, spec.revision.as_deref())
            .map_err(folder_err)?
        {
            lmrs_io::ModelSource::HfFolder(dir) => dir,
            lmrs_io::ModelSource::Gguf(path) => {
                return match spec.kind {
                    None | Some(ModelKind::CausalLm) => causal(&path.to_string_lossy()),
                    Some(k) => Err(ServerError::Config(format!(
                        "{} is a GGUF file, which holds a causal language model; it cannot \
                         serve the {} task",
                        path.display(),
                        k.name()
                    ))),
                };
            }
        };
        let kind = match spec.kind {
            Some(k) => k,
            None => lmrs_pipelines::inspect(&dir.to_string_lossy(), None)
                .map_err(|e| {
                    ServerError::Config(format!(
                        "cannot tell which task {} serves: {e}; pass --task",
                        dir.display()
                    ))
                })?
                .kind(),
        };
        let reference = dir.to_string_lossy().into_owned();
        let tokenizer = || TextTokenizer::load(&dir).map_err(load_err);
        if !spec.adapters.is_empty() && !matches!(kind, ModelKind::Seq2Seq | ModelKind::CausalLm) {
            return Err(load_err(lmrs_pipelines::PipelineError::Task(format!(
                "--adapter (LoRA) applies to generation and seq2seq models, not {kind:?} ones"
            ))));
        }
        Ok(match kind {
            ModelKind::Seq2Seq => Backend::Seq2Seq(Box::new(
                Seq2SeqPipeline::load(
                    &reference,
                    &LoadOptions {
                        revision: None,
                        max_input_tokens: spec.max_input_tokens,
                        adapters: spec.adapters.clone(),
                    },
                )
                .map_err(load_err)?,
            )),
            ModelKind::Embedding => Backend::Embedding(Box::new(
                EmbeddingPipeline::load(&reference, &EmbedOptions::default()).map_err(load_err)?,
            )),
            ModelKind::Classification => Backend::Classification(
                Box::new(
                    ClassificationPipeline::load(&reference, &ClassifyOptions::default())
                        .map_err(load_err)?,
                ),
                tokenizer()?,
            ),
            ModelKind::TokenClassification => Backend::TokenClassification(
                Box::new(TokenClassificationPipeline::load(&reference, None).map_err(load_err)?),
                tokenizer()?,
            ),
            ModelKind::FillMask => Backend::FillMask(
                Box::new(FillMaskPipeline::load(&reference, None).map_err(load_err)?),
                tokenizer()?,
            ),
            ModelKind::CausalLm => causal(&reference)?,
        })
    }

    /// The kind served.
    pub fn kind(&self) -> ModelKind {
        match self {
            Backend::Seq2Seq(_) => ModelKind::Seq2Seq,
            Backend::Embedding(_) => ModelKind::Embedding,
            Backend::Classification(..) => ModelKind::Classification,
            Backend::TokenClassification(..) => ModelKind::TokenClassification,
            Backend::FillMask(..) => ModelKind::FillMask,
            Backend::CausalLm(_) => ModelKind::CausalLm,
        }
    }

    /// The model folder.
    pub fn model_dir(&self) -> &Path {
        match self {
            Backend::Seq2Seq(p) => p.model_dir(),
            Backend::Embedding(p) => p.model_dir(),
            Backend::Classification(p, _) => p.model_dir(),
            Backend::TokenClassification(p, _) => p.model_dir(),
            Backend::FillMask(p, _) => p.model_dir(),
            Backend::CausalLm(p) => p.source(),
        }
    }

    /// The longest input, in tokens (special tokens included), the pipeline takes before it
    /// truncates.
    pub fn input_limit(&self) -> usize {
        match self {
            Backend::Seq2Seq(p) => p.max_input_tokens(),
            Backend::Embedding(p) => p.max_seq_length(),
            Backend::Classification(p, _) => p.max_seq_length(),
            Backend::TokenClassification(..) | Backend::FillMask(..) => {
                // The card's limit: positions (less RoBERTa's offset) and the tokenizer's.
                lmrs_pipelines::inspect(&self.model_dir().to_string_lossy(), None)
                    .ok()
                    .and_then(|c| c.context_length)
                    .unwrap_or(512)
            }
            Backend::CausalLm(p) => p.model().max_positions(),
        }
    }

    /// Tokens `text` takes as input (special tokens and the task prefix included), without
    /// truncation.
    pub fn count_tokens(&self, text: &str, prefix: &str) -> Result<usize, ApiError> {
        let tokenizer = match self {
            Backend::Seq2Seq(p) => p.tokenizer(),
            Backend::Embedding(p) => p.tokenizer(),
            Backend::CausalLm(p) => p.tokenizer(),
            Backend::Classification(_, t)
            | Backend::TokenClassification(_, t)
            | Backend::FillMask(_, t) => t,
        };
        let text = if prefix.is_empty() {
            std::borrow::Cow::Borrowed(text)
        } else {
            std::borrow::Cow::Owned(format!("{prefix}{text}"))
        };
        Ok(tokenizer.encode(&text, usize::MAX)?.ids.len())
    }

    /// Run compatible works ([`Work::can_join`]) as one batch of at most `batch_size` rows
    /// per model call; one output per work, in order. An error fails every work of the batch
    /// (the caller reruns them one by one to find the culprit). `cancelled(i)` tells whether
    /// work `i`'s client has gone; a causal LM stops that work's rows at the next step (its
    /// output is then cut short and should be dropped).
    pub fn run(
        &self,
        works: &[&Work],
        batch_size: usize,
        cancelled: &dyn Fn(usize) -> bool,
    ) -> Result<Vec<Output>, lmrs_pipelines::PipelineError> {
        let texts: Vec<String> = works.iter().flat_map(|w| w.texts().to_vec()).collect();
        let sizes: Vec<usize> = works.iter().map(|w| w.rows()).collect();
        let batch_size = batch_size.max(1);
        let outputs = match (self, works.first()) {
            (_, None) => return Ok(Vec::new()),
            (
                Backend::Seq2Seq(p),
                Some(Work::Generate {
                    task,
                    overrides,
                    stream,
                    ..
                }),
            ) => {
                let mut send = |piece: &str| {
                    if let Some(tx) = stream {
                        let _ = tx.send(piece.to_string());
                    }
                };
                let opts = RunOptions {
                    batch_size,
                    on_text: stream
                        .is_some()
                        .then_some(&mut send as &mut dyn FnMut(&str)),
                    on_progress: None,
                };
                split(p.run(&texts, task, overrides, opts)?, &sizes)
                    .into_iter()
                    .map(Output::Generate)
                    .collect()
            }
            (Backend::CausalLm(p), Some(Work::Complete { overrides, .. })) => {
                run_causal(p, works, overrides, batch_size, cancelled)?
            }
            (Backend::Embedding(p), Some(Work::Embed { .. })) => {
                split(p.embed(&texts, batch_size)?, &sizes)
                    .into_iter()
                    .map(Output::Embed)
                    .collect()
            }
            (Backend::Classification(p, _), Some(Work::Classify { .. })) => {
                let logits = split(p.logits(&texts, batch_size)?, &sizes);
                works
                    .iter()
                    .zip(logits)
                    .map(|(w, rows)| {
                        let Work::Classify {
                            top_k, function, ..
                        } = w
                        else {
                            unreachable!("batched works are compatible")
                        };
                        let function = function.unwrap_or(p.function());
                        Output::Classify(
                            rows.into_iter()
                                .map(|(enc, logits)| {
                                    let mut labels: Vec<LabelScore> = function
                                        .apply(&logits)
                                        .into_iter()
                                        .zip(p.labels())
                                        .map(|(score, label)| LabelScore {
                                            label: label.clone(),
                                            score,
                                        })
                                        .collect();
                                    labels.sort_by(|a, b| b.score.total_cmp(&a.score));
                                    labels.truncate(top_k.unwrap_or(usize::MAX));
                                    Classification {
                                        labels,
                                        tokens: enc.ids.len(),
                                        truncated: enc.truncated,
                                    }
                                })
                                .collect(),
                        )
                    })
                    .collect()
            }
            (Backend::TokenClassification(p, _), Some(Work::Ner { aggregation, .. })) => {
                split(p.run(&texts, *aggregation, batch_size)?, &sizes)
                    .into_iter()
                    .map(Output::Ner)
                    .collect()
            }
            (Backend::FillMask(p, _), Some(Work::FillMask { .. })) => {
                let k = works
                    .iter()
                    .map(|w| match w {
                        Work::FillMask { top_k, .. } => *top_k,
                        _ => 0,
                    })
                    .max()
                    .unwrap_or(1);
                let results = split(p.run(&texts, k, batch_size)?, &sizes);
                works
                    .iter()
                    .zip(results)
                    .map(|(w, mut rows)| {
                        if let Work::FillMask { top_k, .. } = w {
                            for masks in &mut rows {
                                for fills in masks.iter_mut() {
                                    fills.truncate(*top_k);
                                }
                            }
                        }
                        Output::FillMask(rows)
                    })
                    .collect()
            }
            _ => {
                return Err(lmrs_pipelines::PipelineError::Task(format!(
                    "this {} model cannot do the requested work",
                    self.kind().name()
                )))
            }
        };
        Ok(outputs)
    }
}

/// One `generate_ids` call over every prompt of `works` (which share `overrides`), at most
/// `batch_size` rows per model batch; streamed pieces go to their work's channel and a
/// cancelled work's rows stop at the next step.
fn run_causal(
    p: &TextGenerationPipeline,
    works: &[&Work],
    overrides: &GenerationConfig,
    batch_size: usize,
    cancelled: &dyn Fn(usize) -> bool,
) -> Result<Vec<Output>, lmrs_pipelines::PipelineError> {
    let mut prompts = Vec::new();
    // Per prompt: (work, prompt index in that work).
    let mut owner = Vec::new();
    let mut sizes = Vec::with_capacity(works.len());
    for (w, work) in works.iter().enumerate() {
        if let Work::Complete { prompts: ps, .. } = work {
            prompts.extend(ps.iter().cloned());
            owner.extend((0..ps.len()).map(|i| (w, i)));
            sizes.push(ps.len());
        } else {
            sizes.push(0);
        }
    }
    let streams: Vec<Option<&UnboundedSender<(usize, String)>>> = works
        .iter()
        .map(|w| match w {
            Work::Complete { stream, .. } => stream.as_ref(),
            _ => None,
        })
        .collect();
    let per_prompt = overrides.num_return_sequences.unwrap_or(1).max(1);
    // A streamed request's choices are separate prompts (one sequence each); they stay in one
    // model batch, as `num_return_sequences` would, so seeded choices never repeat.
    let rows = prompts.len() * per_prompt;
    let streaming = streams.iter().any(Option::is_some);
    let cap = if streaming {
        batch_size.max(rows)
    } else {
        batch_size
    };
    let mut send = |i: usize, piece: &str| {
        let (w, r) = owner[i];
        if let Some(tx) = streams[w] {
            let _ = tx.send((r, piece.to_string()));
        }
    };
    let cancel = |i: usize| cancelled(owner[i].0);
    let opts = RunOptions {
        batch_size: (cap / per_prompt).max(1),
        on_text: None,
        on_progress: None,
    };
    let outs = p.generate_ids_hooked(
        &prompts,
        overrides,
        opts,
        streaming.then_some(&mut send as _),
        Some(&cancel),
    )?;
    Ok(split(outs, &sizes)
        .into_iter()
        .map(Output::Complete)
        .collect())
}

/// Split `items` into consecutive groups of `sizes`.
fn split<T>(items: Vec<T>, sizes: &[usize]) -> Vec<Vec<T>> {
    let mut it = items.into_iter();
    sizes
        .iter()
        .map(|&n| it.by_ref().take(n).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_order() {
        assert_eq!(
            split(vec![1, 2, 3, 4, 5], &[2, 0, 3]),
            vec![vec![1, 2], vec![], vec![3, 4, 5]]
        );
    }

    #[test]
    fn joins_only_compatible_work() {
        let gen = |n: Option<usize>| Work::Generate {
            task: Task::Text2Text,
            texts: vec!["a".into()],
            overrides: Box::new(GenerationConfig {
                num_beams: n,
                ..Default::default()
            }),
            stream: None,
        };
        assert!(gen(None).can_join(&gen(None)));
        assert!(!gen(None).can_join(&gen(Some(2))));
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let streaming = Work::Generate {
            task: Task::Text2Text,
            texts: vec!["a".into()],
            overrides: Box::default(),
            stream: Some(tx),
        };
        assert!(!streaming.can_join(&gen(None)));
        let embed = Work::Embed {
            texts: vec!["a".into()],
        };
        assert!(embed.can_join(&Work::Embed { texts: vec![] }));
        assert!(!embed.can_join(&gen(None)));
        let ner = |a| Work::Ner {
            texts: vec![],
            aggregation: a,
        };
        assert!(ner(Aggregation::First).can_join(&ner(Aggregation::First)));
        assert!(!ner(Aggregation::First).can_join(&ner(Aggregation::Simple)));
        // Causal prompts: equal options join, streamed or not; rows count the sequences.
        let complete = |max: usize, n: usize, stream: bool| Work::Complete {
            prompts: vec![vec![1, 2], vec![3]],
            overrides: Box::new(GenerationConfig {
                max_new_tokens: Some(max),
                num_return_sequences: Some(n),
                ..Default::default()
            }),
            stream: stream.then(|| tokio::sync::mpsc::unbounded_channel().0),
        };
        assert!(complete(8, 1, false).can_join(&complete(8, 1, true)));
        assert!(!complete(8, 1, false).can_join(&complete(9, 1, false)));
        assert!(!complete(8, 1, false).can_join(&embed));
        assert_eq!(complete(8, 3, false).rows(), 6);
        assert!(complete(8, 1, false).texts().is_empty());
    }
}
