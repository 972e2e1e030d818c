//! lmrs-eval: evaluation metrics and dataset readers, usable without any model.
//!
//! Each metric reproduces a reference implementation (parity tests against fixtures that
//! `tools/gen_metric_fixtures.py` writes with the pinned Python packages):
//!
//! - [`mod@rouge`]: ROUGE-1/2/L/Lsum with bootstrap intervals — Google's `rouge-score` 0.1.2, with
//!   NLTK's Porter stemmer ([`porter`]).
//! - [`bleu`] and [`chrf`]: corpus BLEU (13a tokenizer, exp smoothing) and chrF/chrF++ —
//!   sacreBLEU 2.6.0, signatures included.
//! - [`classification`]: accuracy, precision/recall/F1 per class and micro/macro/weighted with
//!   `zero_division` — scikit-learn 1.9; exact match.
//! - [`readers`]: plain-text and JSON Lines inputs with errors that name the line.
//!
//! Running a model over a dataset is a pipeline's job; `lmrs eval run` wires the two.

pub mod bleu;
pub mod bootstrap;
pub mod chrf;
pub mod classification;
mod error;
mod hash;
pub mod porter;
pub mod readers;
pub mod rouge;

pub use bleu::{corpus_bleu, BleuOptions, BleuScore};
pub use bootstrap::{BootstrapOptions, Interval};
pub use chrf::{corpus_chrf, sentence_chrf, ChrfOptions, ChrfScore};
pub use classification::{accuracy, classification_report, exact_match, ZeroDivision};
pub use error::{EvalError, Result};
pub use rouge::{rouge, RougeOptions, RougeReport, RougeScorer, RougeType};

/// Predictions and references must pair up, and there must be something to score.
pub(crate) fn check_pairs(predictions: usize, references: usize) -> Result<()> {
    if predictions != references {
        return Err(EvalError::LengthMismatch {
            predictions,
            references,
        });
    }
    if predictions == 0 {
        return Err(EvalError::Empty);
    }
    Ok(())
}
