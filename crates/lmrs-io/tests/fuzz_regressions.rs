//! Inputs found by the fuzz targets (fuzz/fuzz_targets/) that once panicked or aborted; each
//! must now be a typed error.

use lmrs_io::{GgufFile, IoError};

/// A GGUF v3 file with no metadata and one tensor of the given GGUF-order dims and type,
/// its data section `data_len` zero bytes.
fn gguf_with_tensor(dims: &[u64], ggml_type: u32, data_len: usize) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(0u64.to_le_bytes()); // metadata entries
    let name = b"t";
    b.extend((name.len() as u64).to_le_bytes());
    b.extend(name);
    b.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend(d.to_le_bytes());
    }
    b.extend(ggml_type.to_le_bytes());
    b.extend(0u64.to_le_bytes()); // offset
    b.resize(b.len().div_ceil(32) * 32, 0);
    b.resize(b.len() + data_len, 0);
    b
}

fn open(bytes: &[u8]) -> lmrs_io::Result<GgufFile> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    GgufFile::open(&path)
}

#[test]
fn gguf_tensor_whose_element_count_overflows_is_an_error() {
    // 2^32 * 2^32 elements overflow usize: the size check multiplied them and panicked.
    let bytes = gguf_with_tensor(&[1 << 32, 1 << 32], 0, 64);
    match open(&bytes) {
        Err(IoError::Gguf { message, .. }) => {
            assert!(message.contains("too many"), "{message}")
        }
        other => panic!("expected a GGUF error, got {other:?}"),
    }
}

#[test]
fn gguf_tensor_whose_byte_size_overflows_is_an_error() {
    // The element count fits, its size in bytes (4 per F32 value) does not.
    let bytes = gguf_with_tensor(&[1 << 31, 1 << 31, 1 << 1], 0, 64);
    match open(&bytes) {
        Err(IoError::Gguf { message, .. }) => {
            assert!(message.contains("too many"), "{message}")
        }
        other => panic!("expected a GGUF error, got {other:?}"),
    }
}

#[test]
fn gguf_tensor_with_a_zero_dimension_is_an_error() {
    // Zero elements: the backend viewed the empty (1-aligned) buffer as f32s, which debug
    // builds abort on as undefined behaviour. Found by the gguf fuzz target.
    let bytes = gguf_with_tensor(&[4, 0], 0, 32);
    match open(&bytes) {
        Err(IoError::Gguf { message, .. }) => {
            assert!(message.contains("dimension of size 0"), "{message}")
        }
        other => panic!("expected a GGUF error, got {other:?}"),
    }
}

#[test]
fn a_small_gguf_tensor_still_opens() {
    let bytes = gguf_with_tensor(&[4, 2], 0, 32);
    let file = open(&bytes).unwrap();
    assert_eq!(file.tensor_shape("t"), Some(&[2usize, 4][..]));
    assert_eq!(file.tensor_bytes(), 32);
}

#[test]
fn tokenizer_json_with_a_syntax_error_in_its_decoder_is_an_error() {
    // A raw control character inside a string of the `decoder` object: `tokenizers` panicked
    // ("Helper") instead of returning its parse error.
    let json = b"{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[],\
\"normalizer\":null,\"pre_tokenizer\":null,\"post_processor\":null,\
\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"#\x01#\",\"cleanup\":true},\
\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\",\
\"max_input_chars_per_word\":100,\"vocab\":{\"[UNK]\":0,\"a\":1}}}";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, json).unwrap();
    match lmrs_io::load_tokenizer(&path) {
        Err(IoError::Tokenizer { message, .. }) => {
            assert!(message.contains("control character"), "{message}")
        }
        other => panic!("expected a tokenizer error, got {:?}", other.map(|_| ())),
    }
    // The same file with the character escaped loads.
    let fixed = String::from_utf8(json.to_vec())
        .unwrap()
        .replace('\x01', "\\u0001");
    std::fs::write(&path, fixed).unwrap();
    lmrs_io::load_tokenizer(&path).unwrap();
}

#[test]
fn tokenizer_json_with_a_malformed_precompiled_charsmap_is_an_error() {
    // tokenizers 0.23 `expect`s the charsmap to decode and panicked; found by tokenizer_json.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":{"type":"Sequence","normalizers":[{"type":"Precompiled","precompiled_charsmap":"_not base64_"}]},
        "pre_tokenizer":null,"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"a":0},"unk_token":"a"}}"#;
    std::fs::write(&path, json).unwrap();
    match lmrs_io::load_tokenizer(&path) {
        Err(IoError::Tokenizer { message, .. }) => {
            assert!(message.contains("Precompiled"), "{message}")
        }
        other => panic!("expected a tokenizer error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn tokenizer_json_with_a_valid_precompiled_charsmap_still_loads() {
    // The check above must pass every real SentencePiece charsmap (T5's, in a Sequence).
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/t5-v1_0-tiny/tokenizer.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\"Precompiled\""),
        "the fixture has a Precompiled normalizer"
    );
    let tok = lmrs_io::load_tokenizer(&path).unwrap();
    assert!(tok.get_vocab_size(true) > 0);
}

#[test]
fn a_charsmap_whose_trie_points_outside_itself_is_refused_at_load() {
    // Parses, but its one entry ('a') points past the normalized strings: tokenizers 0.23
    // (spm_precompiled 0.1.4) loads it and then panics slicing when it normalizes "a". Found
    // by the tokenizer_json fuzz target.
    let mut units = vec![0u32; 256];
    units[97] = 97 | (1 << 8) | (1 << 10); // 'a': label, leaf bit, offset 1 -> leaf at 96
    units[96] = 4000; // the normalized string's start: far past the 2 bytes below
    let mut map = ((units.len() * 4) as u32).to_le_bytes().to_vec();
    units.iter().for_each(|u| map.extend(u.to_le_bytes()));
    map.extend(b"A\0");
    let json = format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":{{"type":"Precompiled","precompiled_charsmap":"{}"}},
        "pre_tokenizer":null,"post_processor":null,"decoder":null,
        "model":{{"type":"WordLevel","vocab":{{"a":0}},"unk_token":"a"}}}}"#,
        base64::encode(&map)
    );
    // Without the check the crash is real: tokenizers itself loads the file and panics.
    let raw = tokenizers::Tokenizer::from_bytes(json.as_bytes()).expect("tokenizers loads it");
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let crashed = std::panic::catch_unwind(|| raw.encode("a", false).map(|_| ())).is_err();
    std::panic::set_hook(hook);
    assert!(crashed, "tokenizers panics on this charsmap");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, json).unwrap();
    match lmrs_io::load_tokenizer(&path) {
        Err(IoError::Tokenizer { message, .. }) => {
            assert!(message.contains("byte 4000 of 2"), "{message}")
        }
        other => panic!("expected a tokenizer error, got {:?}", other.map(|_| ())),
    }
}
