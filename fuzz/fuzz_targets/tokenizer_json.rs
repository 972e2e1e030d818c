//! `tokenizer.json` (any model: WordPiece, BPE, Unigram/SentencePiece) loaded as the pipelines
//! load it (`TextTokenizer::load`, with an optional `tokenizer_config.json` after a NUL byte),
//! then texts encoded (plain, truncated, with offsets) and decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrs_pipelines::TextTokenizer;

fuzz_target!(|data: &[u8]| {
    let (tokenizer, config) = lmrs_fuzz::split_nul(data);
    let dir = lmrs_fuzz::scratch_dir();
    lmrs_fuzz::scratch_file("tokenizer.json", tokenizer);
    let cfg_path = dir.join("tokenizer_config.json");
    if config.is_empty() {
        let _ = std::fs::remove_file(&cfg_path);
    } else {
        lmrs_fuzz::scratch_file("tokenizer_config.json", config);
    }
    let Ok(tk) = TextTokenizer::load(&dir) else {
        return;
    };
    for text in lmrs_fuzz::TEXTS {
        if let Ok(ids) = tk.encode_plain(text, true) {
            let _ = tk.decode(&ids);
            let _ = tk.decode_with(&ids, false);
        }
        let _ = tk.encode(text, 8);
        let _ = tk.encode(text, 0);
        if let Ok(d) = tk.encode_detailed(text, 16) {
            let _ = d;
        }
    }
    let _ = tk.decode(&[0, 1, 2, 3, u32::MAX]);
    let _ = tk.tokens_to_string(&["a".into(), "##b".into(), "▁c".into()]);
});
