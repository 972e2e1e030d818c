//! Turning what the user typed after `--model` into files on disk.
//!
//! A reference is, in order: an existing local path (a model folder or a `.gguf` file), or a
//! hub id (`t5-small`, `google/flan-t5-small`) looked up in the standard Hugging Face cache:
//! `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`, with the layout
//! `models--ORG--NAME/snapshots/REV/` and `refs/main` naming the current revision.
//! Nothing here touches the network.

use crate::{IoError, Result};
use std::path::{Path, PathBuf};

/// Where a model's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder in Hugging Face layout (`config.json`, `*.safetensors`, `tokenizer.json`...).
    HfFolder(PathBuf),
    /// A single GGUF file.
    Gguf(PathBuf),
}

/// The hub cache folders to search, in priority order, from the environment.
pub fn hub_cache_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(p) = std::env::var_os("HF_HUB_CACHE").filter(|p| !p.is_empty()) {
        dirs.push(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        dirs.push(PathBuf::from(p).join("hub"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        dirs.push(PathBuf::from(home).join(".cache/huggingface/hub"));
    }
    dirs.dedup();
    dirs
}

/// Resolve a model reference. `revision` selects a snapshot of a cached hub model (a branch
/// name with a file under `refs/`, or a commit hash); by default `main`.
pub fn resolve(reference: &str, revision: Option<&str>) -> Result<ModelSource> {
    resolve_in(reference, revision, &hub_cache_dirs())
}

/// [`resolve`] against the hub cache folders `caches` instead of the environment's.
pub fn resolve_in(
    reference: &str,
    revision: Option<&str>,
    caches: &[PathBuf],
) -> Result<ModelSource> {
    let path = Path::new(reference);
    if path.is_dir() {
        return Ok(ModelSource::HfFolder(path.to_path_buf()));
    }
    if path.is_file() {
        return Ok(ModelSource::Gguf(path.to_path_buf()));
    }
    // `/dev/zero`, a FIFO, a socket: say what it is (reading one would never end, opening a
    // FIFO blocks) instead of "not found".
    if let Some(kind) = crate::path_kind::special_kind(path) {
        return Err(IoError::NotRegular {
            what: "model path",
            path: path.to_path_buf(),
            kind,
            expected: "a GGUF file or a model folder",
        });
    }
    // Something that looks like a path but is not there: say so rather than searching the cache.
    let looks_like_path = reference.starts_with('.')
        || reference.starts_with('/')
        || reference.starts_with('~')
        || reference.ends_with(".gguf")
        || reference.matches('/').count() > 1;
    if looks_like_path || reference.is_empty() {
        return Err(IoError::NotFound {
            what: "model path",
            path: path.to_path_buf(),
        });
    }
    for cache in caches {
        if let Some(dir) = find_in_cache(cache, reference, revision)? {
            return Ok(ModelSource::HfFolder(dir));
        }
    }
    Err(IoError::ModelNotFound {
        reference: reference.to_string(),
        searched: caches
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// `models--ORG--NAME` for `ORG/NAME`, `models--NAME` for a bare name.
fn repo_folder_name(id: &str) -> String {
    format!("models--{}", id.replace('/', "--"))
}

fn find_in_cache(cache: &Path, id: &str, revision: Option<&str>) -> Result<Option<PathBuf>> {
    let mut candidates = vec![cache.join(repo_folder_name(id))];
    // Legacy ids without an organisation (`t5-small`) now live under one (`google-t5/t5-small`):
    // accept a unique `models--*--NAME` folder for a bare name.
    if !id.contains('/') {
        if let Ok(entries) = std::fs::read_dir(cache) {
            let suffix = format!("--{id}");
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("models--") && n.ends_with(&suffix))
                })
                .collect();
            if found.len() == 1 {
                candidates.append(&mut found);
            }
        }
    }
    for repo in candidates {
        if !repo.is_dir() {
            continue;
        }
        let snapshots = repo.join("snapshots");
        let rev = revision.unwrap_or("main");
        // A ref file maps a branch or tag to a commit hash.
        let commit = std::fs::read_to_string(repo.join("refs").join(rev))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| rev.to_string());
        let exact = snapshots.join(&commit);
        if exact.is_dir() {
            return Ok(Some(exact));
        }
        if revision.is_some() {
            return Err(IoError::NotFound {
                what: "revision",
                path: exact,
            });
        }
        // No usable ref: take the most recently modified snapshot.
        let newest = std::fs::read_dir(&snapshots)
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
        if let Some(entry) = newest {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_snapshot(cache: &Path, repo: &str, commit: &str, with_ref: bool) -> PathBuf {
        let repo_dir = cache.join(repo);
        let snap = repo_dir.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        if with_ref {
            std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
            std::fs::write(repo_dir.join("refs/main"), commit).unwrap();
        }
        snap
    }

    #[test]
    fn local_folder_and_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        assert_eq!(
            resolve_in(dir.to_str().unwrap(), None, &[]).unwrap(),
            ModelSource::HfFolder(dir.clone())
        );
        let gguf = dir.join("m.gguf");
        std::fs::write(&gguf, b"GGUF").unwrap();
        assert_eq!(
            resolve_in(gguf.to_str().unwrap(), None, &[]).unwrap(),
            ModelSource::Gguf(gguf)
        );
    }

    #[test]
    fn missing_path_is_named() {
        let err = resolve_in("./no/such/model", None, &[]).unwrap_err();
        assert!(err.to_string().contains("./no/such/model"), "{err}");
    }

    #[test]
    fn hub_cache_layout_with_ref() {
        let tmp = tempfile::tempdir().unwrap();
        let snap = make_snapshot(tmp.path(), "models--google--flan-t5-small", "abc123", true);
        make_snapshot(tmp.path(), "models--google--flan-t5-small", "old999", false);
        let got = resolve_in("google/flan-t5-small", None, &[tmp.path().to_path_buf()]).unwrap();
        assert_eq!(got, ModelSource::HfFolder(snap));
        let old = resolve_in(
            "google/flan-t5-small",
            Some("old999"),
            &[tmp.path().to_path_buf()],
        )
        .unwrap();
        assert_eq!(
            old,
            ModelSource::HfFolder(
                tmp.path()
                    .join("models--google--flan-t5-small/snapshots/old999")
            )
        );
        assert!(resolve_in(
            "google/flan-t5-small",
            Some("nope"),
            &[tmp.path().to_path_buf()]
        )
        .is_err());
    }

    #[test]
    fn bare_legacy_name_finds_org_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let snap = make_snapshot(tmp.path(), "models--google-t5--t5-small", "r1", true);
        let got = resolve_in("t5-small", None, &[tmp.path().to_path_buf()]).unwrap();
        assert_eq!(got, ModelSource::HfFolder(snap));
    }

    #[test]
    fn unknown_id_lists_searched_caches() {
        let tmp = tempfile::tempdir().unwrap();
        let err = resolve_in("nobody/nothing", None, &[tmp.path().to_path_buf()]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("nobody/nothing") && msg.contains(&tmp.path().display().to_string()),
            "{msg}"
        );
    }
}
