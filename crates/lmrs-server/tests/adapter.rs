//! `lmrs serve --adapter`: LoRA adapters merged into the served model at load, refused for a
//! model they were not made for and for kinds they do not apply to.

mod common;

use common::*;
use lmrs_server::{Backend, LoadSpec, ModelKind};

fn load(model: &str, adapter: &str) -> Result<Backend, String> {
    Backend::load(&LoadSpec {
        reference: fixture(model).to_string_lossy().into_owned(),
        adapters: vec![fixture(adapter)],
        ..Default::default()
    })
    .map_err(|e| e.to_string())
}

#[test]
fn adapters_load_onto_their_base_and_are_refused_elsewhere() {
    let b = load("train/llama-train", "train/llama-lora-init").expect("its base");
    assert_eq!(b.kind(), ModelKind::CausalLm);
    let b = load("train/t5-v1_0-train", "train/t5-lora-init").expect("its base");
    assert_eq!(b.kind(), ModelKind::Seq2Seq);
    let e = load("train/gemma3-train", "train/llama-lora-init")
        .err()
        .expect("another base");
    assert!(e.contains("LoRA adapter"), "{e}");
    let e = load("bert-tiny-cls", "train/llama-lora-init")
        .err()
        .expect("a classifier");
    assert!(e.contains("--adapter"), "{e}");
}
