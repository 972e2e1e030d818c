//! What the training loop needs from a task: its examples, a loss over a micro-batch, its
//! parameters, and how to write the model out. One implementation per task family
//! ([`crate::seq2seq`], [`crate::classify`], [`crate::causal`]).

use crate::loss::TokenLoss;
use crate::Result;
use lmrs_core::candle::Var;
use std::path::Path;

/// A trainable task over examples of type `Self::Example`.
pub trait Objective {
    /// One tokenized example.
    type Example: Clone;

    /// Tokens the example's loss counts (the Trainer's `num_items_in_batch` share), known
    /// before the forward pass.
    fn counted_tokens(&self, ex: &Self::Example) -> usize;

    /// The example's length, for `group_by_length`.
    fn length(&self, ex: &Self::Example) -> usize;

    /// Forward the micro-batch `batch` and return its summed loss. Dropout applies when the
    /// caller holds [`lmrs_nn::mode::train_mode`].
    fn loss(&self, batch: &[&Self::Example], label_smoothing: f64) -> Result<TokenLoss>;

    /// Task metrics over an evaluation set (accuracy, F1...), without the `eval_` prefix the
    /// trainer adds; dropout is off. `batch_size`: examples per forward pass.
    fn eval_metrics(
        &self,
        _eval: &[Self::Example],
        _batch_size: usize,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        Ok(serde_json::Map::new())
    }

    /// Every trainable `(checkpoint key, variable)`, in load order.
    fn params(&self) -> Vec<(String, Var)>;

    /// `true` when parameter `key` belongs to a `LayerNorm` layer (no weight decay, as
    /// `transformers` exempts `nn.LayerNorm` by type; names alone miss GPT-2's `ln_1`).
    fn in_layer_norm(&self, _key: &str) -> bool {
        false
    }

    /// Load the trained values a checkpoint folder `dir` holds (written by [`Self::save`])
    /// into the variables: `--resume` and `--load-best-model-at-end`.
    fn load_weights(&self, dir: &Path) -> Result<()> {
        crate::checkpoint::load_weights(&self.params(), &dir.join("model.safetensors"))
    }

    /// Write an HF model folder (weights, config, tokenizer files) to `dir`.
    fn save(&self, dir: &Path) -> Result<()>;
}
