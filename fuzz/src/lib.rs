//! Helpers shared by the fuzz targets.
//!
//! lmrs's loaders take paths (models are files); the targets write each input to a scratch file
//! of this process and load it through the same public functions the CLI and server call.

use std::path::PathBuf;

/// A directory private to this fuzzing process (libFuzzer's `-fork`/`-jobs` run several).
pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lmrs-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the fuzz scratch directory");
    dir
}

/// Write `data` to `name` in the scratch directory and return its path.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, data).expect("write the fuzz scratch file");
    path
}

/// Split `data` at its first NUL byte: `(before, after)`; no NUL gives `(data, [])`.
pub fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// A few texts every tokenizer target encodes: ASCII, whitespace runs, multi-byte UTF-8 and
/// the usual special-token spellings.
pub const TEXTS: &[&str] = &[
    "Hello world! The quick brown fox.",
    "  spaces\tand\nnewlines  ",
    "héllo wörld 日本語 🤗",
    "<s> [CLS] </s> <unk> [MASK] <pad>",
    "",
];
