//! `lmrs train`: fine-tune a model with `transformers`' Trainer semantics (lmrs-train).

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lmrs_train::augment::Augment;
use lmrs_train::lora::LoraOptions;
use lmrs_train::{
    EarlyStopping, Hooks, IntervalStrategy, Job, Progress, TrainTask, TrainingArguments,
};
use serde_json::{Map, Value};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Flags of `lmrs train`. Hyperparameters take `TrainingArguments` names and defaults; each
/// flag overrides the same key of `--config`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// summarization, translation or text2text (T5 family); text-classification (BERT,
    /// MiniLM, DistilBERT, RoBERTa, XLM-R); causal-lm (Llama, SmolLM2, Mistral, Qwen2, GPT-2,
    /// Gemma 3, from a folder or a GGUF file dequantized to f32).
    #[arg(long)]
    pub task: String,
    /// Model folder or hub-cache name (`t5-small`).
    #[arg(long)]
    pub model: String,
    /// Training data: JSON Lines (.jsonl) or CSV (.csv).
    #[arg(long)]
    pub train: PathBuf,
    /// Validation data (same format).
    #[arg(long)]
    pub validation: Option<PathBuf>,
    /// Hold out this fraction of --train (seeded by --seed) instead of --validation.
    #[arg(long)]
    pub validation_split: Option<f64>,
    /// Field holding the input text (default: document; text for text-classification and
    /// causal-lm, where it is the prompt when --target-field is given). causal-lm also takes
    /// conversations: a field holding lists of {"role", "content"} messages is rendered with
    /// the model's chat template (`messages` is found without this flag, as TRL does).
    #[arg(long)]
    pub input_field: Option<String>,
    /// Field holding the target text (default: summary). causal-lm: the completion of a
    /// prompt/completion pair, the loss taken on it only (default: none, plain text).
    #[arg(long)]
    pub target_field: Option<String>,
    /// text-classification: field holding the label (default: label). A list of labels
    /// makes the run multi-label; numbers with --problem-type regression a regression.
    #[arg(long)]
    pub label_field: Option<String>,
    /// text-classification: the labels in index order, comma-separated (default: the
    /// checkpoint's id2label when its head names every label of the data, else the data's
    /// labels sorted).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// text-classification: single_label_classification, multi_label_classification or
    /// regression (default: the checkpoint's problem_type, else multi-label when labels are
    /// lists, else single-label).
    #[arg(long)]
    pub problem_type: Option<String>,
    /// Where checkpoints, the final model, report.md and loss.svg go.
    #[arg(long)]
    pub output: PathBuf,
    /// Input tokens kept (longer inputs are truncated, with one warning); default 1024, 128
    /// for text-classification.
    #[arg(long)]
    pub max_source_length: Option<usize>,
    /// Target tokens kept (longer targets are truncated, with one warning).
    #[arg(long, default_value_t = 128)]
    pub max_target_length: usize,
    /// Text put before every input. Default: the checkpoint's prefix for summarization and
    /// translation (t5-small: "summarize: "), none for text2text.
    #[arg(long)]
    pub source_prefix: Option<String>,
    /// Keep the file order (no shuffling); the order the parity tests use.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Override the checkpoint's dropout probabilities (T5: dropout_rate; BERT:
    /// hidden_dropout_prob, attention_probs_dropout_prob and classifier_dropout; GPT-2:
    /// embd_pdrop, attn_pdrop, resid_pdrop; the Llama family and Gemma 3 have none).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Seeded data augmentation of the training inputs (EDA's synonym-free operations):
    /// `delete=P` drops each word with probability P, `swap=A` swaps max(1, A·words) word
    /// pairs; `copies=N` (default 1) augmented records follow each original, one operation
    /// each. Example: --augment delete=0.1,swap=0.1,copies=2. Off by default; the validation
    /// set is never augmented.
    #[arg(long)]
    pub augment: Option<String>,
    /// Train LoRA adapters on a frozen base (PEFT's method and format): the output is an
    /// adapter folder (adapter_config.json, adapter_model.safetensors) that
    /// `peft.PeftModel.from_pretrained(base, dir)` loads. causal-lm (Llama family, Gemma 3)
    /// and the seq2seq tasks (T5). On a GGUF file the base stays quantized (QLoRA).
    #[arg(long)]
    pub lora: bool,
    /// LoRA rank (default 8, or the --adapter's).
    #[arg(long)]
    pub lora_r: Option<usize>,
    /// LoRA alpha; the update is scaled by alpha / r (default 8, or the --adapter's).
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// Dropout on the adapters' input in training (default 0, or the --adapter's).
    #[arg(long)]
    pub lora_dropout: Option<f64>,
    /// Projections to adapt, comma-separated module names matched as PEFT does (default per
    /// model type, as PEFT: q_proj,v_proj for Llama, Qwen2, Gemma 3; q,v for T5).
    #[arg(long, value_delimiter = ',')]
    pub lora_target_modules: Option<Vec<String>>,
    /// rsLoRA: scale by alpha / sqrt(r).
    #[arg(long)]
    pub use_rslora: bool,
    /// Continue training this PEFT adapter folder (its settings and weights; implies --lora).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Stop after this many evaluations without improvement (needs --eval-strategy).
    #[arg(long)]
    pub early_stopping_patience: Option<usize>,
    /// Improvement smaller than this does not count (0).
    #[arg(long, default_value_t = 0.0)]
    pub early_stopping_threshold: f64,
    /// Continue from the last checkpoint in --output.
    #[arg(long)]
    pub resume: bool,
    /// Continue from this checkpoint folder.
    #[arg(long, conflicts_with = "resume")]
    pub resume_from: Option<PathBuf>,
    /// Write into an existing, non-empty --output.
    #[arg(long)]
    pub overwrite_output_dir: bool,
    /// A TrainingArguments JSON file (transformers' keys); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Peak learning rate of AdamW (transformers default 5e-5; LoRA runs usually take 1e-4 to
    /// 1e-3).
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Decoupled weight decay (0); never on biases and norm weights, as transformers groups
    /// them.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// AdamW beta1 (0.9).
    #[arg(long)]
    pub adam_beta1: Option<f64>,
    /// AdamW beta2 (0.999).
    #[arg(long)]
    pub adam_beta2: Option<f64>,
    /// AdamW epsilon (1e-8).
    #[arg(long)]
    pub adam_epsilon: Option<f64>,
    /// Clip the global gradient norm to this (1.0; 0 turns clipping off). The logged grad_norm
    /// is the norm before clipping.
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// Passes over the training set (3); --max-steps wins when given.
    #[arg(long)]
    pub num_train_epochs: Option<f64>,
    /// Optimizer steps to take, overriding --num-train-epochs (-1: from the epochs).
    #[arg(long)]
    pub max_steps: Option<i64>,
    /// Examples per micro-batch (8).
    #[arg(long)]
    pub per_device_train_batch_size: Option<usize>,
    /// Examples per evaluation forward pass (8).
    #[arg(long)]
    pub per_device_eval_batch_size: Option<usize>,
    /// Micro-batches per optimizer step (1); the loss is normalized over the tokens of all of
    /// them, as the Trainer does.
    #[arg(long)]
    pub gradient_accumulation_steps: Option<usize>,
    /// linear, cosine, constant, constant_with_warmup.
    #[arg(long)]
    pub lr_scheduler_type: Option<String>,
    /// A step count (>= 1) or a ratio of the total steps (< 1).
    #[arg(long)]
    pub warmup_steps: Option<f64>,
    /// transformers' LabelSmoother epsilon (0).
    #[arg(long)]
    pub label_smoothing_factor: Option<f64>,
    /// Seed of data order, dropout, new heads, LoRA initialization and --validation-split (42).
    #[arg(long)]
    pub seed: Option<u64>,
    /// no, steps or epoch.
    #[arg(long)]
    pub eval_strategy: Option<String>,
    /// Evaluate every N optimizer steps with --eval-strategy steps (default: --logging-steps).
    #[arg(long)]
    pub eval_steps: Option<usize>,
    /// Evaluate once before training (logged at step 0: where the model starts).
    #[arg(long)]
    pub eval_on_start: bool,
    /// no, steps or epoch.
    #[arg(long)]
    pub save_strategy: Option<String>,
    /// Save a checkpoint every N steps with --save-strategy steps (500).
    #[arg(long)]
    pub save_steps: Option<usize>,
    /// Keep at most N checkpoints (the best one is always kept).
    #[arg(long)]
    pub save_total_limit: Option<usize>,
    /// End with the best checkpoint by --metric-for-best-model (needs matching eval and save
    /// strategies).
    #[arg(long)]
    pub load_best_model_at_end: bool,
    /// loss (default), or a task metric: accuracy, f1... (classification), rouge1, rougeL,
    /// bleu... (seq2seq with --predict-with-generate).
    #[arg(long)]
    pub metric_for_best_model: Option<String>,
    /// Whether a larger --metric-for-best-model is better (default: true except for loss).
    #[arg(long)]
    pub greater_is_better: Option<bool>,
    /// Seq2seq: evaluation also generates every validation example and logs eval_rouge1/2/L/Lsum,
    /// eval_bleu and eval_gen_len (so --metric-for-best-model rouge1 can pick the checkpoint).
    #[arg(long)]
    pub predict_with_generate: bool,
    /// Beams for --predict-with-generate (default: the model's generation_config.json).
    #[arg(long)]
    pub generation_num_beams: Option<usize>,
    /// Length limit (decoder tokens) for --predict-with-generate (default: the model's
    /// generation_config.json).
    #[arg(long)]
    pub generation_max_length: Option<usize>,
    /// A log_history entry (loss, grad_norm, learning rate) every N optimizer steps (500).
    #[arg(long)]
    pub logging_steps: Option<usize>,
    /// Batch examples of similar length together (transformers' LengthGroupedSampler).
    #[arg(long)]
    pub group_by_length: bool,
    /// Print the run's summary as JSON on stdout (log entries go to stderr as JSON lines).
    #[arg(long)]
    pub json: bool,
}

impl TrainArgs {
    fn training_arguments(&self) -> Result<TrainingArguments> {
        let mut a = match &self.config {
            Some(p) => TrainingArguments::from_json_file(p)?,
            None => TrainingArguments::default(),
        };
        a.output_dir = self.output.display().to_string();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { a.$f = v; } )* };
        }
        set!(
            learning_rate,
            weight_decay,
            adam_beta1,
            adam_beta2,
            adam_epsilon,
            max_grad_norm,
            num_train_epochs,
            max_steps,
            per_device_train_batch_size,
            per_device_eval_batch_size,
            gradient_accumulation_steps,
            warmup_steps,
            label_smoothing_factor,
            seed,
            save_steps,
            logging_steps
        );
        if self.eval_steps.is_some() {
            a.eval_steps = self.eval_steps;
        }
        if self.save_total_limit.is_some() {
            a.save_total_limit = self.save_total_limit;
        }
        if self.metric_for_best_model.is_some() {
            a.metric_for_best_model
                .clone_from(&self.metric_for_best_model);
        }
        if self.generation_num_beams.is_some() {
            a.generation_num_beams = self.generation_num_beams;
        }
        if self.generation_max_length.is_some() {
            a.generation_max_length = self.generation_max_length;
        }
        a.predict_with_generate |= self.predict_with_generate;
        if self.greater_is_better.is_some() {
            a.greater_is_better = self.greater_is_better;
        }
        if let Some(s) = &self.lr_scheduler_type {
            a.lr_scheduler_type = s.parse()?;
        }
        if let Some(s) = &self.eval_strategy {
            a.eval_strategy = s.parse::<IntervalStrategy>().context("--eval-strategy")?;
        }
        if let Some(s) = &self.save_strategy {
            a.save_strategy = s.parse::<IntervalStrategy>().context("--save-strategy")?;
        }
        a.load_best_model_at_end |= self.load_best_model_at_end;
        a.eval_on_start |= self.eval_on_start;
        a.group_by_length |= self.group_by_length;
        a.overwrite_output_dir |= self.overwrite_output_dir;
        Ok(a)
    }
}

/// A progress bar on a terminal, plain log lines elsewhere; Ctrl-C asks for a checkpoint.
struct Display {
    bar: Option<ProgressBar>,
    json: bool,
    interrupted: Arc<AtomicBool>,
}

impl Hooks for Display {
    fn on_step(&mut self, p: &Progress) {
        if let Some(bar) = &self.bar {
            bar.set_length(p.max_steps as u64);
            bar.set_position(p.step as u64);
            bar.set_message(format!(
                "loss {:.4}  lr {:.2e}  {:.0} tok/s  epoch {:.2}",
                p.loss, p.learning_rate, p.tokens_per_second, p.epoch
            ));
        }
    }

    fn on_log(&mut self, entry: &Map<String, Value>) {
        let line = if self.json {
            Value::Object(entry.clone()).to_string()
        } else {
            entry
                .iter()
                .map(|(k, v)| match v.as_f64() {
                    Some(f) if k != "step" => format!("{k}={f:.6}"),
                    _ => format!("{k}={v}"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn should_interrupt(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }
}

/// Run `lmrs train`.
pub fn train(args: TrainArgs) -> Result<()> {
    let training = args.training_arguments()?;
    let task = TrainTask::parse(&args.task)?;
    let (input, target) = task.default_fields();
    let classify = task == TrainTask::TextClassification;
    if classify && args.target_field.is_some() {
        anyhow::bail!("text-classification takes --label-field, not --target-field");
    }
    if !classify
        && (args.label_field.is_some() || args.labels.is_some() || args.problem_type.is_some())
    {
        anyhow::bail!(
            "--label-field, --labels and --problem-type are for --task text-classification"
        );
    }
    let lora_flags = args.lora_r.is_some()
        || args.lora_alpha.is_some()
        || args.lora_dropout.is_some()
        || args.lora_target_modules.is_some()
        || args.use_rslora;
    if lora_flags && !args.lora && args.adapter.is_none() {
        anyhow::bail!(
            "--lora-r, --lora-alpha, --lora-dropout, --lora-target-modules and --use-rslora need --lora"
        );
    }
    let job = Job {
        task,
        model: args.model.clone(),
        train_file: args.train.clone(),
        validation_file: args.validation.clone(),
        validation_split: args.validation_split,
        input_field: args.input_field.clone().unwrap_or_else(|| input.into()),
        target_field: args
            .target_field
            .clone()
            .or_else(|| args.label_field.clone())
            .unwrap_or_else(|| target.into()),
        labels: args.labels.clone(),
        problem_type: args.problem_type.clone(),
        max_source_length: args
            .max_source_length
            .unwrap_or_else(|| task.default_max_source_length()),
        max_target_length: args.max_target_length,
        source_prefix: args.source_prefix.clone(),
        dropout: args.dropout,
        augment: args.augment.as_deref().map(Augment::parse).transpose()?,
        lora: (args.lora || args.adapter.is_some()).then(|| LoraOptions {
            r: args.lora_r,
            alpha: args.lora_alpha,
            dropout: args.lora_dropout,
            target_modules: args.lora_target_modules.clone(),
            use_rslora: args.use_rslora,
            adapter: args.adapter.clone(),
        }),
        no_shuffle: args.no_shuffle,
        early_stopping: args.early_stopping_patience.map(|patience| EarlyStopping {
            patience,
            threshold: args.early_stopping_threshold,
        }),
        resume: if args.resume {
            Some(None)
        } else {
            args.resume_from.clone().map(Some)
        },
        args: training,
    };
    if job.early_stopping.is_some() && job.args.eval_strategy == IntervalStrategy::No {
        anyhow::bail!("--early-stopping-patience needs --eval-strategy steps or epoch");
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    // A second Ctrl-C while the checkpoint is written kills the process as usual.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
    });
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(1);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps [{elapsed}<{eta}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let mut display = Display {
        bar,
        json: args.json,
        interrupted,
    };
    let report = lmrs_train::run(&job, &mut display);
    if let Some(bar) = &display.bar {
        bar.finish_and_clear();
    }
    let report = report?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&lmrs_train::summary_json(&report))?
        );
    } else {
        let s = &report.outcome.state;
        println!(
            "trained {} steps ({:.2} epochs, stopped by {}); model in {}, report in {}",
            s.global_step,
            s.epoch,
            report.outcome.stopped_by,
            report.output_dir.display(),
            report.output_dir.join("report.md").display()
        );
        if let (Some(m), Some(c)) = (s.best_metric, &s.best_model_checkpoint) {
            println!("best {} {m:.4} at {c}", job.args.best_metric_key());
        }
    }
    Ok(())
}
