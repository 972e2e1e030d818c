//! The top-level command line (`Cli`, `Command`) and the flag groups several commands share
//! (`TaskArgs`, `InputArgs`, `IoArgs`, `GenerationArgs`); each command's own flags live in its
//! module beside its `run`.

use clap::{Args, Parser, Subcommand};
use lmrs_generate::{EarlyStopping, GenerationConfig};
use std::path::PathBuf;

/// Transformer language models, natively in Rust: summarize, translate and generate with the
/// Hugging Face checkpoints you already have, offline.
///
/// MODEL is a local folder in Hugging Face layout (config.json, model.safetensors,
/// tokenizer.json, generation_config.json) or a hub id such as `t5-small` or
/// `google/flan-t5-small` that is already in the Hugging Face cache ($HF_HUB_CACHE,
/// $HF_HOME/hub or ~/.cache/huggingface/hub). lmrs never downloads.
#[derive(Debug, Parser)]
#[command(name = "lmrs", version, propagate_version = true)]
pub struct Cli {
    /// Compute threads (default: all cores; more than the cores available are capped, since
    /// the backend's workers spin at their barriers and oversubscription only slows them).
    #[arg(long, global = true, value_parser = at_least_one)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Summarize text with the checkpoint's own summarization settings.
    ///
    /// Encoder-decoders (T5) use config.json `task_specific_params.summarization` (for
    /// t5-small: the prefix "summarize: ", 4 beams, length_penalty 2.0,
    /// no_repeat_ngram_size 3, min_length 30, max_length 200) over generation_config.json;
    /// flags override both. Decoder-only chat models (GGUF or HF folders) are asked for a
    /// summary through their chat template. Without --model the default model
    /// (SmolLM2-135M-Instruct, fetched by scripts/fetch-models.sh --default-only) is used.
    ///
    /// Example: lmrs summarize --model t5-small "The tower is 324 metres tall, ..."
    Summarize(TaskArgs),
    /// Continue a prompt with a decoder-only model (raw completion, no chat template).
    ///
    /// Example: lmrs generate --max-new-tokens 40 "The capital of France is"
    Generate(crate::causal::GenerateArgs),
    /// Chat with an instruction-tuned model through its chat template, keeping the
    /// conversation's history. Interactive on a terminal; `--message` for scripts.
    ///
    /// Example: lmrs chat --system "You are terse." --message "What is Rust?"
    Chat(crate::causal::ChatArgs),
    /// Translate text (T5: `translate English to German: ` and its task settings).
    ///
    /// Example: lmrs translate --model t5-small --source English --target German "Hello."
    Translate(crate::run::TranslateArgs),
    /// Plain `model.generate()`: you write any prefix; only generation_config.json and flags
    /// apply.
    ///
    /// Example: lmrs text2text --model t5-small --max-length 50 "summarize: ..."
    Text2text(TaskArgs),
    /// Fine-tune a model with transformers' Trainer semantics: T5 for summarization,
    /// translation and text2text; the BERT family (MiniLM, DistilBERT, RoBERTa, XLM-R) for
    /// text-classification (single-label, multi-label, regression; accuracy/P/R/F1 at each
    /// evaluation); the Llama family (SmolLM2, Qwen2, Mistral; HF folder or GGUF) for
    /// causal-lm on plain text or prompt/completion pairs (loss on the completion). AdamW,
    /// schedules, clipping, accumulation, label smoothing, dropout, evaluation, early
    /// stopping, checkpoints and --resume. Leaves an HF folder that lmrs and transformers
    /// load, trainer_state.json, report.md and loss.svg.
    ///
    /// Example: lmrs train --task summarization --model t5-small --train train.jsonl
    ///   --validation val.jsonl --input-field document --target-field summary --output runs/sum
    ///
    /// Example: lmrs train --task text-classification --model all-MiniLM-L6-v2
    ///   --train reviews.csv --input-field text --label-field label --output runs/cls
    ///
    /// Example: lmrs train --task causal-lm --model SmolLM2-135M-Instruct --train sft.jsonl
    ///   --input-field prompt --target-field completion --output runs/sft
    Train(Box<crate::train::TrainArgs>),
    /// Merge PEFT LoRA adapters into their base model and write a plain HF folder (peft's
    /// merge_and_unload), which every command and transformers load without the adapter.
    ///
    /// Example: lmrs merge --model runs/base --adapter runs/lora --output runs/merged
    Merge(crate::merge::MergeArgs),
    /// Measure load time, encoder time, decode tokens/s (batch 1 and 8, greedy and 4 beams)
    /// and peak memory on a fixed-length workload.
    Bench(crate::bench::BenchArgs),
    /// Sentence embeddings with an encoder (BERT, MiniLM; sentence-transformers folders use
    /// their own pooling, normalization and max_seq_length).
    ///
    /// Example: lmrs embed --model models/all-MiniLM-L6-v2 "A man plays a guitar." "Hello."
    Embed(crate::embed::EmbedArgs),
    /// Rank candidates by cosine similarity of their embeddings with a query.
    ///
    /// Example: lmrs similarity --model models/all-MiniLM-L6-v2 "query" "candidate" ...
    Similarity(crate::embed::SimilarityArgs),
    /// Classify texts (sentiment, topics...) with a sequence-classification checkpoint;
    /// labels from config.json id2label.
    ///
    /// Example: lmrs classify --model DIR --top-k 2 "What a great movie!"
    Classify(crate::classify::ClassifyArgs),
    /// Named entities (token classification) with a *ForTokenClassification checkpoint; character
    /// offsets into each text.
    ///
    /// Example: lmrs ner --model DIR --aggregation first "My name is Wolfgang."
    Ner(crate::token_tasks::NerArgs),
    /// The most likely tokens for each `[MASK]` in a text (masked language model).
    ///
    /// Example: `lmrs fill-mask --model DIR "The capital of France is [MASK]."`
    FillMask(crate::token_tasks::FillMaskArgs),
    /// Evaluate: score predictions against references (ROUGE, BLEU, chrF, accuracy,
    /// precision/recall/F1, exact match), or run a model over a dataset and score it.
    ///
    /// Example: lmrs eval metrics --metric rouge --predictions pred.txt --references ref.txt
    Eval(crate::eval::EvalArgs),
    /// Serve the model over HTTP: OpenAI-compatible routes (/v1/models, /v1/embeddings,
    /// /v1/completions, /v1/chat/completions) and task routes (/v1/summarize, /v1/translate,
    /// /v1/text2text, /v1/classify, /v1/ner, /v1/fill-mask), /health, /metrics, /docs.
    ///
    /// Example: lmrs serve --model models/all-MiniLM-L6-v2 --port 8080
    Serve(crate::serve::ServeArgs),
    /// List the models in the local caches (the Hugging Face hub cache and lmrs's own) with
    /// their architecture, tasks, context length and size.
    ///
    /// Example: lmrs models --json
    Models(crate::catalogue::ModelsArgs),
    /// Describe one model without loading it: architecture, tasks, context length, dtype or
    /// quantization, special tokens, chat template, size on disk.
    ///
    /// Example: lmrs info google-t5/t5-small
    Info(crate::catalogue::InfoArgs),
}

/// Flags shared by the generation commands.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// Model: a GGUF file, a folder, or a hub id in the Hugging Face cache. `summarize`
    /// defaults to SmolLM2-135M-Instruct in lmrs's model cache.
    #[arg(short, long)]
    pub model: Option<String>,
    /// Hub cache revision (branch or commit hash) when MODEL is a hub id.
    #[arg(long)]
    pub revision: Option<String>,
    /// Texts to process; each is one document. Without texts and --input, stdin is read.
    pub texts: Vec<String>,
    /// A PEFT LoRA adapter folder to apply to the model (repeatable; merged at load).
    /// `lmrs train --lora` writes one.
    #[arg(long)]
    pub adapter: Vec<PathBuf>,
    #[command(flatten)]
    pub io: IoArgs,
    #[command(flatten)]
    pub generation: GenerationArgs,
}

/// Where texts come from when they are not given as arguments (every text command).
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Read texts from FILE: plain text with one text per line, or JSON Lines
    /// (`.jsonl`/`.json` or --jsonl) taking each object's --field. `-` is stdin.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Treat the input as JSON Lines whatever its extension.
    #[arg(long)]
    pub jsonl: bool,
    /// Field holding the text in JSON Lines input.
    #[arg(long, default_value = "text")]
    pub field: String,
}

/// Input and output of the generation commands.
#[derive(Debug, Args)]
pub struct IoArgs {
    #[command(flatten)]
    pub source: InputArgs,
    /// Print one JSON object per input (text, token ids, token counts, timing).
    #[arg(long)]
    pub json: bool,
    /// Inputs run together in one batch.
    #[arg(long, default_value_t = 8, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Truncate inputs to this many tokens (default: the config's n_positions, else 512).
    #[arg(long)]
    pub max_input_tokens: Option<usize>,
}

/// Generation options; each overrides the checkpoint's defaults (same names as
/// `transformers`' `generate()`).
#[derive(Debug, Args, Default)]
pub struct GenerationArgs {
    /// Maximum total output length in tokens (the decoder start token counts).
    #[arg(long, help_heading = "Generation")]
    pub max_length: Option<usize>,
    /// Maximum number of generated tokens (wins over --max-length).
    #[arg(long, help_heading = "Generation")]
    pub max_new_tokens: Option<usize>,
    /// Minimum total length before the end token may appear.
    #[arg(long, help_heading = "Generation")]
    pub min_length: Option<usize>,
    /// Minimum number of generated tokens (wins over --min-length).
    #[arg(long, help_heading = "Generation")]
    pub min_new_tokens: Option<usize>,
    /// Beams for beam search (1: greedy or sampling).
    #[arg(long, help_heading = "Generation")]
    pub num_beams: Option<usize>,
    /// Sequences returned per input (at most --num-beams with beam search).
    #[arg(long, help_heading = "Generation")]
    pub num_return_sequences: Option<usize>,
    /// Beam score length exponent (>1 favours longer outputs).
    #[arg(long, help_heading = "Generation")]
    pub length_penalty: Option<f64>,
    /// Beam search stop rule: true, false or never.
    #[arg(long, value_parser = parse_early_stopping, help_heading = "Generation")]
    pub early_stopping: Option<EarlyStopping>,
    /// Forbid repeating any n-gram of this size.
    #[arg(long, help_heading = "Generation")]
    pub no_repeat_ngram_size: Option<usize>,
    /// Penalise tokens already generated (>1 discourages repeats).
    #[arg(long, help_heading = "Generation")]
    pub repetition_penalty: Option<f64>,
    /// Token id sequences never to generate, e.g. "5 7;12" bans the sequence 5 7 and the token 12.
    #[arg(long, value_parser = parse_bad_words, help_heading = "Generation")]
    pub bad_words_ids: Option<BadWordsIds>,
    /// Sample instead of picking the most likely tokens.
    #[arg(long, help_heading = "Sampling")]
    pub do_sample: bool,
    /// Sampling temperature.
    #[arg(long, help_heading = "Sampling")]
    pub temperature: Option<f64>,
    /// Sample among the K most likely tokens (0: all).
    #[arg(long, help_heading = "Sampling")]
    pub top_k: Option<usize>,
    /// Sample from the smallest set of tokens with this much probability.
    #[arg(long, help_heading = "Sampling")]
    pub top_p: Option<f64>,
    /// Drop tokens less likely than this fraction of the most likely one.
    #[arg(long, help_heading = "Sampling")]
    pub min_p: Option<f64>,
    /// Seed for reproducible sampling.
    #[arg(long, help_heading = "Sampling")]
    pub seed: Option<u64>,
    /// Stop when the generated text contains this string (repeatable; the string is not
    /// printed). Greedy search and sampling.
    #[arg(long, help_heading = "Generation")]
    pub stop: Vec<String>,
    /// Token forced as the first generated one.
    #[arg(long, help_heading = "Generation")]
    pub forced_bos_token_id: Option<u32>,
    /// Token forced as the last one when --max-length is reached.
    #[arg(long, help_heading = "Generation")]
    pub forced_eos_token_id: Option<u32>,
    /// Recompute the whole decoder every step instead of using the KV cache (for checking).
    #[arg(long, help_heading = "Generation")]
    pub no_cache: bool,
}

impl GenerationArgs {
    /// [`Self::to_config`] for a model whose own settings are `base`, warning on stderr (as
    /// `transformers` does) when a length flag loses to the model's new-token bound.
    pub fn overrides_for(&self, base: &GenerationConfig) -> GenerationConfig {
        let cfg = self.to_config();
        for note in cfg.shadowed_lengths(base) {
            eprintln!("warning: {note}");
        }
        cfg
    }

    /// The flags as a configuration layer (unset flags stay unset).
    pub fn to_config(&self) -> GenerationConfig {
        GenerationConfig {
            max_length: self.max_length,
            max_new_tokens: self.max_new_tokens,
            min_length: self.min_length,
            min_new_tokens: self.min_new_tokens,
            num_beams: self.num_beams,
            num_return_sequences: self.num_return_sequences,
            length_penalty: self.length_penalty,
            early_stopping: self.early_stopping,
            no_repeat_ngram_size: self.no_repeat_ngram_size,
            repetition_penalty: self.repetition_penalty,
            bad_words_ids: self.bad_words_ids.clone().map(|b| b.0),
            do_sample: self.do_sample.then_some(true),
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
            min_p: self.min_p,
            stop_strings: (!self.stop.is_empty()).then(|| self.stop.clone()),
            forced_bos_token_id: self.forced_bos_token_id,
            forced_eos_token_id: self.forced_eos_token_id.map(|t| vec![t]),
            use_cache: self.no_cache.then_some(false),
            ..Default::default()
        }
    }
}

fn parse_early_stopping(s: &str) -> Result<EarlyStopping, String> {
    match s {
        "true" => Ok(EarlyStopping::Enabled),
        "false" => Ok(EarlyStopping::Heuristic),
        "never" => Ok(EarlyStopping::Never),
        _ => Err(format!("'{s}' is not one of true, false, never")),
    }
}

/// `--bad-words-ids`: token-id sequences, one flag value.
///
/// A newtype because clap's derive reads a bare `Vec<Vec<u32>>` field as "many values of
/// `Vec<u32>`" and then panics when the parser hands back the whole list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadWordsIds(pub Vec<Vec<u32>>);

/// A count flag that must be at least 1 (batch sizes, threads, repetitions): clap refuses 0
/// with its usual "invalid value" error, the same way on every command.
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a positive whole number")),
    }
}

fn parse_bad_words(s: &str) -> Result<BadWordsIds, String> {
    let ids = s
        .split(';')
        .map(|seq| {
            seq.split([' ', ','])
                .filter(|t| !t.is_empty())
                .map(|t| {
                    t.parse::<u32>()
                        .map_err(|_| format!("'{t}' is not a token id"))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .filter(|r| r.as_ref().map_or(true, |v| !v.is_empty()))
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err("expected token ids, e.g. \"5 7;12\"".into());
    }
    Ok(BadWordsIds(ids))
}
