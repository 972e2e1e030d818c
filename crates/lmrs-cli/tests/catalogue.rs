//! `lmrs models` and `lmrs info` on a local Hugging Face cache layout holding the fixtures
//! (`models--ORG--NAME/{blobs,refs/main,snapshots/REV}` with the snapshot's files linked to
//! blobs, as `huggingface_hub` writes it).

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

/// A hub cache under `root` holding `lmrs-test/NAME` for each fixture name.
fn hub_cache(root: &Path, names: &[&str]) {
    for name in names {
        let repo = root.join(format!("models--lmrs-test--{name}"));
        let snap = repo.join("snapshots/0123abcd");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
        for e in std::fs::read_dir(fixture(name)).unwrap() {
            let p = e.unwrap().path();
            if !p.is_file() {
                continue;
            }
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            let blob = repo.join("blobs").join(format!("blob-{file}"));
            std::fs::copy(&p, &blob).unwrap();
            std::os::unix::fs::symlink(format!("../../blobs/blob-{file}"), snap.join(&file))
                .unwrap();
        }
    }
}

fn run_in(cache: &Path, home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = lmrs()
        .env("HF_HUB_CACHE", cache)
        .env("HOME", home)
        .env_remove("LMRS_HOME")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn models_lists_the_cache_with_what_each_model_can_do() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    hub_cache(&cache, &["t5-v1_0-tiny", "bert-tiny-cls", "llama-tiny"]);
    // A repo lmrs cannot describe is listed with the reason, not dropped or fatal.
    std::fs::create_dir_all(cache.join("models--lmrs-test--empty/snapshots")).unwrap();
    let (ok, out, err) = run_in(&cache, tmp.path(), &["models", "--json"]);
    assert!(ok, "{err}");
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    let refs: Vec<&str> = list
        .iter()
        .map(|m| m["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        refs,
        [
            "lmrs-test/bert-tiny-cls",
            "lmrs-test/empty",
            "lmrs-test/llama-tiny",
            "lmrs-test/t5-v1_0-tiny"
        ]
    );
    let kinds = |i: usize| list[i]["card"]["kinds"].clone();
    assert_eq!(
        kinds(0),
        serde_json::json!(["classification", "embedding"]),
        "{}",
        list[0]
    );
    assert!(list[1]["error"].as_str().is_some(), "{}", list[1]);
    assert!(list[1]["card"].is_null());
    assert_eq!(kinds(2), serde_json::json!(["causal-lm"]));
    assert_eq!(kinds(3), serde_json::json!(["seq2seq"]));
    // Sizes follow the snapshot's links to the blobs.
    assert!(list[3]["card"]["size_bytes"].as_u64().unwrap() > 100_000);

    let (ok, out, err) = run_in(&cache, tmp.path(), &["models"]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("lmrs-test/t5-v1_0-tiny"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("t5") && line.contains("seq2seq"), "{line}");
    assert!(
        out.contains("lmrs-test/empty") && out.contains("cannot be used"),
        "{out}"
    );
}

#[test]
fn info_prints_a_card_for_a_hub_id_a_folder_and_a_gguf_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    hub_cache(&cache, &["bert-tiny-cls"]);
    let (ok, out, err) = run_in(&cache, tmp.path(), &["info", "lmrs-test/bert-tiny-cls"]);
    assert!(ok, "{err}");
    for want in [
        "model_type      bert",
        "tasks           classification, embedding",
        "labels",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let (ok, out, err) = run_in(
        &cache,
        tmp.path(),
        &["info", "--json", "lmrs-test/bert-tiny-cls"],
    );
    assert!(ok, "{err}");
    let card: Value = serde_json::from_str(&out).unwrap();
    assert!(
        card["path"]
            .as_str()
            .unwrap()
            .contains("snapshots/0123abcd"),
        "{card}"
    );

    let gguf = fixture("llama-tiny-gguf/llama-tiny-q8_0.gguf");
    let (ok, out, err) = run_in(
        &cache,
        tmp.path(),
        &["info", "--json", gguf.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let card: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(card["format"], "gguf");
    assert!(
        card["dtype"].as_str().unwrap().starts_with("Q8_0"),
        "{card}"
    );
    assert_eq!(card["chat_template"], true);

    let (ok, _, err) = run_in(&cache, tmp.path(), &["info", "lmrs-test/missing"]);
    assert!(!ok);
    assert!(err.contains("cannot describe lmrs-test/missing"), "{err}");
}
