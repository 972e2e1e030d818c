//! What the training loop needs from a task: its examples, a loss over a micro-batch, its
//! parameters, and how to write the model out. One implementation per task family
//! ([`crate::seq2seq`] now; classification and causal LM beside it).

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

    /// Every trainable `(checkpoint key, variable)`, in load order.
    fn params(&self) -> Vec<(String, Var)>;

    /// Write an HF model folder (weights, config, tokenizer files) to `dir`.
    fn save(&self, dir: &Path) -> Result<()>;
}
