//! The architecture catalogue and model cards against the committed fixtures: every fixture is
//! described by its family, and the two disagreements the scattered `model_type` lists had are
//! gone (a multimodal-layout Gemma 3 folder is a causal LM everywhere; CamemBERT numbers its
//! positions as RoBERTa does).

use lmrs_models::{inspect, ModelFormat, ModelKind, Role};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn card(name: &str) -> lmrs_models::ModelCard {
    inspect(&fixture(name).to_string_lossy(), None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A copy of fixture `name` with its config.json rewritten by `edit`.
fn edited(name: &str, edit: impl FnOnce(Value) -> Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let path = dir.path().join("config.json");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_vec(&edit(cfg)).unwrap()).unwrap();
    dir
}

#[test]
fn every_fixture_is_described_by_its_family() {
    let cases: &[(&str, &str, ModelKind)] = &[
        ("t5-v1_0-tiny", "t5", ModelKind::Seq2Seq),
        ("t5-v1_1-tiny", "t5", ModelKind::Seq2Seq),
        ("bert-tiny-st", "bert", ModelKind::Embedding),
        ("bert-tiny-cls", "bert", ModelKind::Classification),
        ("bert-tiny-ner", "bert", ModelKind::TokenClassification),
        ("bert-tiny-mlm", "bert", ModelKind::FillMask),
        (
            "distilbert-tiny-cls",
            "distilbert",
            ModelKind::Classification,
        ),
        (
            "roberta-tiny-ner",
            "roberta",
            ModelKind::TokenClassification,
        ),
        ("xlm-roberta-tiny-mlm", "xlm-roberta", ModelKind::FillMask),
        ("llama-tiny", "llama", ModelKind::CausalLm),
        ("qwen2-tiny", "qwen2", ModelKind::CausalLm),
        ("gpt2-tiny", "gpt2", ModelKind::CausalLm),
        ("gemma3-tiny", "gemma3_text", ModelKind::CausalLm),
    ];
    for (name, model_type, kind) in cases {
        let c = card(name);
        assert_eq!(c.model_type, *model_type, "{name}");
        assert_eq!(c.kind(), *kind, "{name}");
        assert_eq!(c.format, ModelFormat::HfFolder);
        assert!(c.size_bytes > 0, "{name}");
        assert!(c.context_length.is_some(), "{name}");
        // Encoders with a head can embed too.
        if c.role == Role::Encoder && *kind != ModelKind::Embedding {
            assert!(c.kinds.contains(&ModelKind::Embedding), "{name}");
        }
    }
    let cls = card("bert-tiny-cls");
    assert!(!cls.labels.is_empty());
    assert!(card("llama-tiny").chat_template);
    assert!(!card("t5-v1_0-tiny").chat_template);
    assert!(card("t5-v1_0-tiny")
        .special_tokens
        .decoder_start_token_id
        .is_some());
}

#[test]
fn a_gguf_file_is_described_from_its_header() {
    let c = card("llama-tiny-gguf/llama-tiny-q4_0.gguf");
    assert_eq!(c.format, ModelFormat::Gguf);
    assert_eq!(c.kind(), ModelKind::CausalLm);
    assert_eq!(c.model_type, "llama");
    assert!(
        c.dtype.as_deref().unwrap().starts_with("Q4_0"),
        "{:?}",
        c.dtype
    );
    assert_eq!(c.context_length, Some(128));
    let f32 = card("llama-tiny-gguf/llama-tiny-f32.gguf");
    assert!(
        f32.dtype.as_deref().unwrap().starts_with("F32 (100%)"),
        "{:?}",
        f32.dtype
    );
}

#[test]
fn a_multimodal_gemma3_folder_is_a_causal_lm() {
    // Gemma3ForConditionalGeneration with the language model under text_config: the old
    // server detector called it seq2seq from the class name.
    let dir = edited("gemma3-tiny", |text| {
        json!({
            "model_type": "gemma3",
            "architectures": ["Gemma3ForConditionalGeneration"],
            "text_config": text,
        })
    });
    let c = inspect(&dir.path().to_string_lossy(), None).unwrap();
    assert_eq!(c.kind(), ModelKind::CausalLm);
    assert_eq!(c.role, Role::Causal);
    assert_eq!(c.context_length, card("gemma3-tiny").context_length);
}

#[test]
fn camembert_positions_are_numbered_like_roberta() {
    // max_position_embeddings 42, pad_token_id 1: 40 usable positions, as for RoBERTa (the old
    // server rule left camembert out and said 42).
    let dir = edited("roberta-tiny-ner", |mut cfg| {
        cfg["model_type"] = json!("camembert");
        cfg
    });
    std::fs::remove_file(dir.path().join("tokenizer_config.json")).ok();
    let c = inspect(&dir.path().to_string_lossy(), None).unwrap();
    assert_eq!(c.context_length, Some(40));
    assert_eq!(c.kind(), ModelKind::TokenClassification);
}

#[test]
fn an_unknown_model_type_names_the_supported_ones() {
    let dir = edited("bert-tiny-st", |mut cfg| {
        cfg["model_type"] = json!("bart");
        cfg
    });
    let err = inspect(&dir.path().to_string_lossy(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'bart'") && err.contains("t5") && err.contains("gemma3_text"),
        "{err}"
    );
}
