//! Malformed GGUF files, each built from the committed `llama-tiny-gguf` fixture: the header
//! reader refuses them with an error naming the key or tensor, never a panic, an abort or an
//! allocation sized by a claim the file cannot back.

use lmrs_core::candle::quantized::gguf_file::{self, Content, Value};
use lmrs_core::candle::quantized::QTensor;
use lmrs_core::Device;
use lmrs_io::{read_gguf_header, GgufFile, GgufModel, IoError};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/llama-tiny-gguf/llama-tiny-f32.gguf")
}

/// The fixture rewritten with `edit` applied to its metadata (tensors unchanged).
fn rewritten(edit: impl FnOnce(&mut Vec<(String, Value)>)) -> Vec<u8> {
    let mut f = std::fs::File::open(fixture()).unwrap();
    let content = Content::read(&mut f).unwrap();
    let mut meta: Vec<(String, Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    meta.sort_by(|a, b| a.0.cmp(&b.0));
    edit(&mut meta);
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(String, QTensor)> = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                content.tensor(&mut f, n, &Device::Cpu).unwrap(),
            )
        })
        .collect();
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &meta_refs, &tensor_refs).unwrap();
    out.into_inner()
}

fn set(meta: &mut [(String, Value)], key: &str, value: Value) {
    let slot = meta.iter_mut().find(|(k, _)| k == key).unwrap();
    slot.1 = value;
}

fn header_error(bytes: &[u8]) -> String {
    match read_gguf_header(&mut Cursor::new(bytes), Path::new("bad.gguf")) {
        Ok(_) => panic!("a malformed header was accepted"),
        Err(e) => e.to_string(),
    }
}

/// Load the bytes as a model (header, then the metadata read as a config).
fn model_error(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    let file = match GgufFile::open(&path) {
        Ok(f) => f,
        Err(e) => return e.to_string(),
    };
    match GgufModel::new(Arc::new(file)) {
        Ok(_) => panic!("a malformed model was accepted"),
        Err(e) => e.to_string(),
    }
}

/// Byte offset just after the first occurrence of `needle`.
fn after(bytes: &[u8], needle: &[u8]) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
        + needle.len()
}

#[test]
fn the_rewritten_fixture_still_loads() {
    let bytes = rewritten(|_| {});
    let content = read_gguf_header(&mut Cursor::new(&bytes[..]), Path::new("ok.gguf")).unwrap();
    assert!(content.tensor_infos.contains_key("token_embd.weight"));
    assert_eq!(content.tensor_data_offset % 32, 0);
}

#[test]
fn alignment_zero_is_refused_not_divided_by() {
    let bytes = rewritten(|m| m.push(("general.alignment".into(), Value::U32(0))));
    let e = header_error(&bytes);
    assert!(
        e.contains("general.alignment") && e.contains("power of two"),
        "{e}"
    );
    let bytes = rewritten(|m| m.push(("general.alignment".into(), Value::U32(24))));
    assert!(header_error(&bytes).contains("power of two"));
    let bytes = rewritten(|m| m.push(("general.alignment".into(), Value::F32(32.0))));
    assert!(header_error(&bytes).contains("not an unsigned integer"));
}

#[test]
fn unaligned_tensor_offset_is_refused() {
    let mut bytes = rewritten(|_| {});
    let name = b"token_embd.weight";
    let at = after(&bytes, name);
    // n_dims (u32), then n_dims u64 dimensions, the type (u32), the offset (u64).
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let off = at + 4 + 8 * n_dims + 4;
    let v = u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap());
    bytes[off..off + 8].copy_from_slice(&(v + 1).to_le_bytes());
    let e = header_error(&bytes);
    assert!(
        e.contains("token_embd.weight") && e.contains("alignment"),
        "{e}"
    );
}

#[test]
fn huge_counts_are_checked_against_the_file_size() {
    let base = rewritten(|_| {});
    let mut bytes = base.clone();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = header_error(&bytes);
    assert!(e.contains("tensors") && e.contains("remain"), "{e}");
    let mut bytes = base.clone();
    bytes[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(header_error(&bytes).contains("metadata entries"));
}

#[test]
fn huge_array_and_string_lengths_are_refused_before_allocating() {
    let base = rewritten(|_| {});
    // tokenizer.ggml.tokens: key, type 9 (array), element type (u32), length (u64).
    let mut bytes = base.clone();
    let at = after(&bytes, b"tokenizer.ggml.tokens") + 8;
    bytes[at..at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let e = header_error(&bytes);
    assert!(
        e.contains("tokenizer.ggml.tokens") && e.contains("elements"),
        "{e}"
    );
    // The first key's length (bytes 24..32) longer than the file.
    let mut bytes = base.clone();
    bytes[24..32].copy_from_slice(&(base.len() as u64 * 4).to_le_bytes());
    let e = header_error(&bytes);
    assert!(e.contains("metadata key") && e.contains("remain"), "{e}");
}

#[test]
fn truncated_files_and_bad_magic_are_refused() {
    let base = rewritten(|_| {});
    for cut in [0, 3, 7, 20, 100, 4000, base.len() - 1] {
        let e = header_error(&base[..cut]);
        assert!(!e.is_empty());
    }
    let e = header_error(&base[..base.len() - 1]);
    assert!(e.contains("past the end of the file"), "{e}");
    let mut bytes = base.clone();
    bytes[0] = b'X';
    assert!(header_error(&bytes).contains("not a GGUF file"));
    let mut bytes = base;
    bytes[4..8].copy_from_slice(&9u32.to_le_bytes());
    assert!(header_error(&bytes).contains("version 9"));
}

#[test]
fn tensor_shapes_that_overflow_are_refused() {
    let mut bytes = rewritten(|_| {});
    let at = after(&bytes, b"token_embd.weight");
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(n_dims, 2);
    for d in 0..2 {
        let o = at + 4 + 8 * d;
        bytes[o..o + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    }
    let e = header_error(&bytes);
    assert!(e.contains("token_embd.weight"), "{e}");
}

#[test]
fn bad_floats_in_metadata_are_refused() {
    for (key, value) in [
        ("llama.rope.freq_base", 0.0f32),
        ("llama.rope.freq_base", f32::NAN),
        ("llama.attention.layer_norm_rms_epsilon", -1e-5),
        ("llama.attention.layer_norm_rms_epsilon", f32::NAN),
    ] {
        let bytes = rewritten(|m| {
            m.retain(|(k, _)| k != key);
            m.push((key.into(), Value::F32(value)));
        });
        let e = model_error(&bytes);
        assert!(
            e.contains(key) && e.contains("finite positive"),
            "{key} = {value}: {e}"
        );
    }
}

#[test]
fn block_count_beyond_the_tensors_is_refused() {
    let bytes = rewritten(|m| set(m, "llama.block_count", Value::U64(1_000_000_000_000)));
    let e = model_error(&bytes);
    assert!(e.contains("llama.block_count") && e.contains("blk."), "{e}");
    let bytes = rewritten(|m| set(m, "llama.block_count", Value::U32(0)));
    assert!(model_error(&bytes).contains("llama.block_count"));
}

#[test]
fn special_files_are_refused_by_name_without_blocking() {
    let e = GgufFile::open(Path::new("/dev/zero")).unwrap_err();
    assert!(matches!(e, IoError::NotRegular { .. }), "{e}");
    assert!(e.to_string().contains("character device"), "{e}");
    let e = lmrs_io::resolve("/dev/zero", None).unwrap_err();
    assert!(e.to_string().contains("character device"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.gguf");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    // Opening a FIFO for reading blocks until a writer appears; these must not open it.
    assert!(!lmrs_io::is_gguf(&fifo));
    let e = lmrs_io::resolve(fifo.to_str().unwrap(), None).unwrap_err();
    assert!(e.to_string().contains("FIFO"), "{e}");
    let e = GgufFile::open(&fifo).unwrap_err();
    assert!(e.to_string().contains("FIFO"), "{e}");
    let e = lmrs_io::read_json::<serde_json::Value>(&fifo).unwrap_err();
    assert!(e.to_string().contains("FIFO"), "{e}");
}
