//! Malformed safetensors files built from the committed `t5-v1_0-tiny` weights: a header
//! length beyond the file, tensor offsets outside the data, and offsets that disagree with a
//! tensor's shape are refused at open with an error naming the file, before any tensor is read.

use lmrs_core::{DType, Device};
use lmrs_io::{IoError, Weights};
use serde_json::Value;
use std::path::PathBuf;

fn original() -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/t5-v1_0-tiny/model.safetensors");
    std::fs::read(p).unwrap()
}

/// The file's JSON header and data section.
fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let mut h = serde_json::to_vec(header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn open_error(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, bytes).unwrap();
    match Weights::from_files(&[path], &Device::Cpu, DType::F32) {
        Ok(_) => panic!("a malformed safetensors file was accepted"),
        Err(e) => {
            assert!(matches!(e, IoError::Safetensors { .. }), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn the_rebuilt_file_still_opens() {
    let (h, d) = split(&original());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, join(&h, &d)).unwrap();
    let w = Weights::from_files(&[path], &Device::Cpu, DType::F32).unwrap();
    assert_eq!(w.shape("shared.weight"), Some(vec![808, 64]));
}

#[test]
fn huge_header_lengths_are_refused() {
    let mut bytes = original();
    for n in [u64::MAX, 1 << 40, bytes.len() as u64] {
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        let e = open_error(&bytes);
        assert!(e.contains("model.safetensors"), "{e}");
    }
    assert!(!open_error(&bytes[..5]).is_empty());
}

#[test]
fn offsets_outside_the_data_or_off_the_shape_are_refused() {
    let (h, d) = split(&original());
    let mut far = h.clone();
    far["shared.weight"]["data_offsets"] = serde_json::json!([0u64, 1u64 << 40]);
    open_error(&join(&far, &d));
    let mut reversed = h.clone();
    reversed["shared.weight"]["data_offsets"] = serde_json::json!([100, 4]);
    open_error(&join(&reversed, &d));
    let mut shape = h.clone();
    shape["shared.weight"]["shape"] = serde_json::json!([1_000_000_000_000u64, 64]);
    open_error(&join(&shape, &d));
    // Truncated data: the last tensor ends past the file.
    open_error(&join(&h, &d[..d.len() - 4]));
}
