//! lmrs-train: fine-tuning lmrs models with `transformers`' `Trainer` semantics.
//!
//! Training runs the inference module tree: a model is loaded through the same code as for
//! inference from trainable [`lmrs_io::Weights`], so every weight is an autograd variable, and
//! the layers take differentiable paths for it (see [`lmrs_nn::mode`]). What this crate adds:
//! datasets ([`data`]) and their augmentation ([`augment`]), tasks ([`seq2seq`],
//! [`classify`], [`causal`]), evaluation by generation ([`predict`]), losses ([`loss`]),
//! AdamW and clipping ([`optim`]), schedules ([`schedule`]), the loop ([`trainer`]), LoRA
//! adapters in PEFT's format ([`lora`]) and merging them ([`merge`]),
//! checkpoints ([`checkpoint`], [`state`]) and the report with its loss picture
//! ([`report`]).

pub mod args;
pub mod augment;
pub mod causal;
pub mod checkpoint;
pub mod classify;
pub mod data;
mod error;
mod fused_ce;
pub mod lora;
pub mod loss;
pub mod merge;
pub mod objective;
pub mod optim;
pub mod order;
pub mod predict;
pub mod report;
pub mod schedule;
pub mod seq2seq;
pub mod state;
pub mod task;
pub mod tokenize;
pub mod trainer;

pub use args::{IntervalStrategy, TrainingArguments};
pub use error::{Result, TrainError};
pub use objective::Objective;
pub use task::{resolve_model, run, summary_json, Job, JobReport, TrainTask};
pub use trainer::{train, EarlyStopping, Hooks, Outcome, Progress, Quiet, RunOptions};
