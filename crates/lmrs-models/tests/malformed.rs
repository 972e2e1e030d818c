//! Malformed `config.json` files, each a committed tiny fixture copied to a temp folder with one
//! field edited: loading fails with an error naming the field, never a panic, an abort on a
//! huge allocation, or a silent fallback to a default.

use lmrs_core::Device;
use lmrs_io::ModelFiles;
use lmrs_models::registry::{load_encoder, load_seq2seq};
use lmrs_models::{load_causal, ModelError};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// `name` copied to a temp folder with `edit` applied to its config.json.
fn edited(name: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let path = dir.path().join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(cfg.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    dir
}

fn load_error(kind: &str, dir: &Path) -> String {
    let files = ModelFiles::from_folder(dir).unwrap();
    let r: Result<(), ModelError> = match kind {
        "seq2seq" => load_seq2seq(&files, &Device::Cpu).map(drop),
        "encoder" => load_encoder(&files, &Device::Cpu).map(drop),
        _ => load_causal(&files, &Device::Cpu).map(drop),
    };
    match r {
        Ok(()) => panic!("a malformed config in {} was accepted", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// Set `field` to `value` in fixture `name` and check the error names `field` and `says`.
fn refused(kind: &str, name: &str, field: &str, value: Value, says: &str) {
    let dir = edited(name, |c| {
        c.insert(field.to_string(), value.clone());
    });
    let e = load_error(kind, dir.path());
    assert!(
        e.contains(field) && e.contains(says),
        "{name} {field} = {value}: {e}"
    );
}

const HUGE: u64 = 1_000_000_000_000;

#[test]
fn the_unedited_fixtures_load() {
    for (kind, name) in [
        ("seq2seq", "t5-v1_0-tiny"),
        ("encoder", "bert-tiny-st"),
        ("encoder", "distilbert-tiny-cls"),
        ("causal", "llama-tiny"),
        ("causal", "qwen2-tiny"),
        ("causal", "gpt2-tiny"),
        ("causal", "gemma3-tiny"),
    ] {
        let dir = edited(name, |_| {});
        let files = ModelFiles::from_folder(dir.path()).unwrap();
        let ok = match kind {
            "seq2seq" => load_seq2seq(&files, &Device::Cpu).is_ok(),
            "encoder" => load_encoder(&files, &Device::Cpu).is_ok(),
            _ => load_causal(&files, &Device::Cpu).is_ok(),
        };
        assert!(ok, "{name}");
    }
}

#[test]
fn t5_zero_decoder_layers_is_refused() {
    refused(
        "seq2seq",
        "t5-v1_0-tiny",
        "num_decoder_layers",
        json!(0),
        "must be positive",
    );
}

#[test]
fn layer_counts_beyond_the_checkpoint_are_refused_before_allocating() {
    refused(
        "seq2seq",
        "t5-v1_0-tiny",
        "num_layers",
        json!(HUGE),
        "not found",
    );
    refused(
        "seq2seq",
        "t5-v1_0-tiny",
        "num_decoder_layers",
        json!(HUGE),
        "not found",
    );
    refused(
        "encoder",
        "bert-tiny-st",
        "num_hidden_layers",
        json!(HUGE),
        "not found",
    );
    // DistilBERT's `n_layers` is an alias of BERT's field, which the error names.
    let dir = edited("distilbert-tiny-cls", |c| {
        c.insert("n_layers".into(), json!(HUGE));
    });
    let e = load_error("encoder", dir.path());
    assert!(
        e.contains("'num_hidden_layers'") && e.contains("not found"),
        "{e}"
    );
    for name in ["llama-tiny", "qwen2-tiny", "gemma3-tiny"] {
        let dir = edited(name, |c| {
            c.insert("num_hidden_layers".into(), json!(HUGE));
            c.remove("layer_types");
        });
        let e = load_error("causal", dir.path());
        assert!(
            e.contains("'num_hidden_layers'") && e.contains("not found"),
            "{name}: {e}"
        );
    }
    refused("causal", "gpt2-tiny", "n_layer", json!(HUGE), "not found");
}

#[test]
fn sizes_the_tensors_contradict_are_refused_naming_the_field() {
    refused(
        "causal",
        "gemma3-tiny",
        "head_dim",
        json!(HUGE),
        "'num_attention_heads * head_dim'",
    );
    refused(
        "causal",
        "llama-tiny",
        "head_dim",
        json!(u64::MAX / 2 - 1),
        "overflows",
    );
    refused(
        "causal",
        "llama-tiny",
        "vocab_size",
        json!(HUGE),
        "tensor 'model.embed_tokens.weight'",
    );
    refused(
        "causal",
        "qwen2-tiny",
        "intermediate_size",
        json!(HUGE),
        "up_proj",
    );
    refused("causal", "gpt2-tiny", "n_embd", json!(HUGE), "wte.weight");
    refused(
        "causal",
        "gpt2-tiny",
        "n_positions",
        json!(HUGE),
        "wpe.weight",
    );
    refused(
        "seq2seq",
        "t5-v1_0-tiny",
        "d_model",
        json!(HUGE),
        "shared.weight",
    );
    refused(
        "seq2seq",
        "t5-v1_0-tiny",
        "d_kv",
        json!(HUGE),
        "num_heads * d_kv",
    );
    refused(
        "seq2seq",
        "t5-v1_0-tiny",
        "d_ff",
        json!(HUGE),
        "DenseReluDense",
    );
    refused(
        "encoder",
        "bert-tiny-st",
        "max_position_embeddings",
        json!(HUGE),
        "position_embeddings",
    );
    refused(
        "encoder",
        "bert-tiny-st",
        "type_vocab_size",
        json!(HUGE),
        "token_type_embeddings",
    );
}

#[test]
fn bad_floats_are_refused() {
    for (kind, name, field) in [
        ("seq2seq", "t5-v1_0-tiny", "layer_norm_epsilon"),
        ("encoder", "bert-tiny-st", "layer_norm_eps"),
        ("causal", "llama-tiny", "rms_norm_eps"),
        ("causal", "gpt2-tiny", "layer_norm_epsilon"),
        ("causal", "gemma3-tiny", "rms_norm_eps"),
        ("causal", "qwen2-tiny", "rope_theta"),
        ("causal", "gemma3-tiny", "query_pre_attn_scalar"),
    ] {
        for v in [json!(-1e-6), json!(0.0)] {
            refused(kind, name, field, v, "finite positive");
        }
    }
    let dir = edited("llama-tiny", |c| {
        c.insert(
            "rope_scaling".into(),
            json!({"rope_type": "linear", "factor": 0.0}),
        );
    });
    let e = load_error("causal", dir.path());
    assert!(e.contains("'rope_scaling.factor'"), "{e}");
}

#[test]
fn gemma3_zero_sliding_window_is_refused() {
    refused(
        "causal",
        "gemma3-tiny",
        "sliding_window",
        json!(0),
        "must be positive",
    );
    let dir = edited("gemma3-tiny", |c| {
        c.remove("layer_types");
        c.insert("sliding_window_pattern".into(), json!(0));
    });
    let e = load_error("causal", dir.path());
    assert!(e.contains("'sliding_window_pattern'"), "{e}");
}

#[test]
fn wrong_typed_fields_name_the_field_and_type() {
    refused(
        "seq2seq",
        "t5-v1_0-tiny",
        "num_layers",
        json!("six"),
        "invalid type: string \"six\", expected usize",
    );
    refused(
        "causal",
        "llama-tiny",
        "vocab_size",
        json!(1.5),
        "invalid type: floating point `1.5`, expected usize",
    );
    refused(
        "encoder",
        "bert-tiny-st",
        "hidden_size",
        json!(-32),
        "expected usize",
    );
    refused(
        "causal",
        "gemma3-tiny",
        "sliding_window",
        json!("8"),
        "invalid type",
    );
    refused(
        "causal",
        "gpt2-tiny",
        "eos_token_id",
        json!("0"),
        "expected a token id",
    );
    refused(
        "causal",
        "llama-tiny",
        "bos_token_id",
        json!(-1),
        "expected a token id",
    );
    refused(
        "seq2seq",
        "t5-v1_0-tiny",
        "eos_token_id",
        json!([1, "x"]),
        "expected a token id",
    );
    let dir = edited("qwen2-tiny", |c| {
        c.insert("rope_parameters".into(), json!({"rope_theta": "big"}));
    });
    let e = load_error("causal", dir.path());
    assert!(e.contains("'rope_parameters.rope_theta'"), "{e}");
}
