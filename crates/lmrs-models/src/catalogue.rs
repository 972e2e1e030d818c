//! The architecture catalogue: every family lmrs builds, with the names checkpoints use for it.
//!
//! This table is the one place that knows `model_type` strings, HF `architectures` class names
//! and GGUF `general.architecture` names. Loaders pick their builder from it
//! ([`Architecture::family`]), and front ends ask [`crate::inspect`] what a model is (a
//! [`crate::ModelCard`]) instead of reading `config.json` themselves. Adding an architecture is
//! one model folder plus one entry here.

/// The code that builds a family (one folder of this crate each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// `t5/`: T5, mT5, FLAN-T5.
    T5,
    /// `bert/`: BERT, MiniLM, RoBERTa, XLM-R, CamemBERT, DistilBERT.
    Bert,
    /// `llama/`: Llama, SmolLM2, TinyLlama, Mistral, Qwen2.
    Llama,
    /// `gpt2/`: GPT-2.
    Gpt2,
    /// `gemma3/`: Gemma 3 (text).
    Gemma3,
}

/// How a family's models compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Encoder-decoder: text in, text out.
    Seq2Seq,
    /// Encoder only: embeddings and classification heads.
    Encoder,
    /// Decoder only: next-token prediction.
    Causal,
}

/// What a model can be served or run as (one per kind of result). Serialized as its
/// [`ModelKind::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Encoder-decoder generation: summarize, translate, text2text.
    Seq2Seq,
    /// Sentence embeddings.
    Embedding,
    /// Sequence classification.
    Classification,
    /// Token classification (NER).
    TokenClassification,
    /// Masked-token prediction.
    FillMask,
    /// Decoder-only generation: completions and chat.
    CausalLm,
}

impl ModelKind {
    /// Every kind, for help texts.
    pub const ALL: [ModelKind; 6] = [
        Self::Seq2Seq,
        Self::Embedding,
        Self::Classification,
        Self::TokenClassification,
        Self::FillMask,
        Self::CausalLm,
    ];

    /// The kind's name (`seq2seq`, `embedding`, `classification`, `token-classification`,
    /// `fill-mask`, `causal-lm`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Seq2Seq => "seq2seq",
            Self::Embedding => "embedding",
            Self::Classification => "classification",
            Self::TokenClassification => "token-classification",
            Self::FillMask => "fill-mask",
            Self::CausalLm => "causal-lm",
        }
    }

    /// Parse a kind name; also takes the command names (`embed`, `classify`, `ner`,
    /// `summarize`, `translate`, `text2text`, `generate`, `chat`) and `text-generation`.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "seq2seq" | "summarize" | "summarization" | "translate" | "translation"
            | "text2text" => Self::Seq2Seq,
            "embedding" | "embeddings" | "embed" => Self::Embedding,
            "classification" | "classify" => Self::Classification,
            "token-classification" | "ner" => Self::TokenClassification,
            "fill-mask" => Self::FillMask,
            "causal-lm" | "causal" | "text-generation" | "generate" | "chat" | "completions" => {
                Self::CausalLm
            }
            _ => return None,
        })
    }
}

impl serde::Serialize for ModelKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A `model_type` whose tokenizer `transformers` picks by class name when the folder's
/// `tokenizer_config.json` names none (it matters for special-token handling).
#[derive(Debug, Clone, Copy)]
pub struct TokenizerQuirk {
    /// The `model_type`.
    pub model_type: &'static str,
    /// The tokenizer class `transformers` uses for it.
    pub tokenizer_class: &'static str,
}

/// One family's entry.
#[derive(Debug, Clone, Copy)]
pub struct Architecture {
    /// The builder.
    pub family: Family,
    /// Encoder-decoder, encoder or decoder.
    pub role: Role,
    /// `config.json` `model_type` values it loads.
    pub model_types: &'static [&'static str],
    /// GGUF `general.architecture` values it loads (none: safetensors only).
    pub gguf_architectures: &'static [&'static str],
    /// `model_type`s that number positions from `pad_token_id + 1` (RoBERTa's scheme), so
    /// `max_position_embeddings` overstates the input limit by that offset.
    pub offset_positions: &'static [&'static str],
    /// Tokenizer classes by `model_type`, where `transformers` decides by model type.
    pub tokenizer_quirks: &'static [TokenizerQuirk],
}

/// Every architecture lmrs builds.
pub const CATALOGUE: &[Architecture] = &[
    Architecture {
        family: Family::T5,
        role: Role::Seq2Seq,
        model_types: &["t5", "mt5"],
        gguf_architectures: &[],
        offset_positions: &[],
        tokenizer_quirks: &[
            TokenizerQuirk {
                model_type: "t5",
                tokenizer_class: "T5Tokenizer",
            },
            TokenizerQuirk {
                model_type: "mt5",
                tokenizer_class: "T5Tokenizer",
            },
        ],
    },
    Architecture {
        family: Family::Bert,
        role: Role::Encoder,
        model_types: &["bert", "roberta", "xlm-roberta", "camembert", "distilbert"],
        gguf_architectures: &[],
        offset_positions: &["roberta", "xlm-roberta", "camembert"],
        tokenizer_quirks: &[
            TokenizerQuirk {
                model_type: "xlm-roberta",
                tokenizer_class: "XLMRobertaTokenizer",
            },
            TokenizerQuirk {
                model_type: "camembert",
                tokenizer_class: "CamembertTokenizer",
            },
        ],
    },
    Architecture {
        family: Family::Llama,
        role: Role::Causal,
        model_types: &["llama", "qwen2", "mistral"],
        gguf_architectures: &["llama", "qwen2"],
        offset_positions: &[],
        tokenizer_quirks: &[],
    },
    Architecture {
        family: Family::Gpt2,
        role: Role::Causal,
        model_types: &["gpt2"],
        gguf_architectures: &["gpt2"],
        offset_positions: &[],
        tokenizer_quirks: &[],
    },
    Architecture {
        family: Family::Gemma3,
        role: Role::Causal,
        // `gemma3` is the multimodal layout (the language model under `text_config`).
        model_types: &["gemma3_text", "gemma3"],
        gguf_architectures: &["gemma3"],
        offset_positions: &[],
        tokenizer_quirks: &[],
    },
];

/// The entry that loads `model_type`.
pub fn by_model_type(model_type: &str) -> Option<&'static Architecture> {
    CATALOGUE
        .iter()
        .find(|a| a.model_types.contains(&model_type))
}

/// The entry that loads GGUF `general.architecture` `name`.
pub fn by_gguf_architecture(name: &str) -> Option<&'static Architecture> {
    CATALOGUE
        .iter()
        .find(|a| a.gguf_architectures.contains(&name))
}

/// Every `model_type` of the families with `role`, comma-separated (for error messages).
pub fn model_types(role: Role) -> String {
    CATALOGUE
        .iter()
        .filter(|a| a.role == role)
        .flat_map(|a| a.model_types.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The tokenizer class `transformers` picks for `model_type` when the folder names none.
pub fn tokenizer_class(model_type: &str) -> Option<&'static str> {
    CATALOGUE
        .iter()
        .flat_map(|a| a.tokenizer_quirks.iter())
        .find(|q| q.model_type == model_type)
        .map(|q| q.tokenizer_class)
}

/// The input limit of a `model_type` with `max_position_embeddings` positions: RoBERTa-style
/// numbering loses `pad_token_id + 1` of them.
pub fn position_limit(
    model_type: &str,
    max_positions: usize,
    pad_token_id: Option<usize>,
) -> usize {
    let offset =
        by_model_type(model_type).is_some_and(|a| a.offset_positions.contains(&model_type));
    if offset {
        max_positions.saturating_sub(pad_token_id.unwrap_or(1) + 1)
    } else {
        max_positions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_belongs_to_one_entry() {
        let mut seen = std::collections::HashSet::new();
        for a in CATALOGUE {
            for t in a.model_types {
                assert!(seen.insert(*t), "model_type {t} listed twice");
            }
            for q in a.tokenizer_quirks {
                assert!(a.model_types.contains(&q.model_type), "{}", q.model_type);
            }
            for o in a.offset_positions {
                assert!(a.model_types.contains(o), "{o}");
            }
        }
        // Every GGUF architecture the reader maps has a builder here, and only those.
        let mut gguf: Vec<&str> = CATALOGUE
            .iter()
            .flat_map(|a| a.gguf_architectures.iter().copied())
            .collect();
        gguf.sort_unstable();
        let mut reader = lmrs_io::GGUF_ARCHITECTURES.to_vec();
        reader.sort_unstable();
        assert_eq!(gguf, reader);
    }

    #[test]
    fn lookups_and_quirks() {
        assert_eq!(by_model_type("gemma3").unwrap().role, Role::Causal);
        assert_eq!(by_model_type("camembert").unwrap().family, Family::Bert);
        assert!(by_model_type("bart").is_none());
        assert_eq!(by_gguf_architecture("qwen2").unwrap().family, Family::Llama);
        assert_eq!(tokenizer_class("mt5"), Some("T5Tokenizer"));
        assert_eq!(position_limit("camembert", 514, Some(1)), 512);
        assert_eq!(position_limit("bert", 512, Some(0)), 512);
        assert_eq!(
            ModelKind::from_name("ner"),
            Some(ModelKind::TokenClassification)
        );
        for k in ModelKind::ALL {
            assert_eq!(ModelKind::from_name(k.name()), Some(k));
        }
    }
}
