//! BERT (Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
//! Understanding", 2019) and checkpoints with its layout: MiniLM, sentence-transformers
//! encoders such as `all-MiniLM-L6-v2`.
//!
//! Matches `transformers`' `BertModel` (and the `bert.` trunk of its task models), and
//! `RobertaModel` / `XLMRobertaModel` (Liu et al., "RoBERTa", 2019; Conneau et al., "XLM-R",
//! 2020), which share the layout and number positions after the padding index.

mod config;
mod heads;
mod model;

pub use config::{BertConfig, Family, PositionIds};
pub use heads::{BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification};
pub use model::BertModel;
