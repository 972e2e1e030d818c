//! A GGUF file: header, typed metadata, tensor infos and alignment (`GgufFile::open`), its
//! metadata read as an HF config for the architecture (`GgufModel::new`) and parsed by the
//! model's own config type, the embedded tokenizer, and every tensor's data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrs_core::Device;
use lmrs_io::{tokenizer_from_gguf, GgufFile, GgufModel};
use std::path::Path;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let path = lmrs_fuzz::scratch_file("model.gguf", data);
    let Ok(file) = GgufFile::open(&path) else {
        return;
    };
    let file = Arc::new(file);
    let _ = file.architecture();
    let _ = file.tensor_bytes();
    if let Ok(tk) = tokenizer_from_gguf(file.content()) {
        for text in lmrs_fuzz::TEXTS {
            if let Ok(enc) = tk.encode(*text, true) {
                let _ = tk.decode(enc.get_ids(), false);
                let _ = tk.decode(enc.get_ids(), true);
            }
        }
    }
    let names: Vec<String> = file.content().tensor_infos.keys().cloned().collect();
    for name in names.iter().take(64) {
        let _ = file.tensor_shape(name);
        let _ = file.tensor(name, &Device::Cpu);
    }
    if let Ok(model) = GgufModel::new(file.clone()) {
        lmrs_fuzz_config(model.config, &path);
        for key in [
            "model.embed_tokens.weight",
            "lm_head.weight",
            "model.norm.weight",
        ] {
            let _ = (model.names)(key);
        }
    }
});

/// The config GGUF metadata turned into, through the model's own parser.
fn lmrs_fuzz_config(config: serde_json::Value, path: &Path) {
    use lmrs_models::gemma3::Gemma3Config;
    use lmrs_models::gpt2::Gpt2Config;
    use lmrs_models::llama::LlamaConfig;
    match config.get("model_type").and_then(|t| t.as_str()) {
        Some("llama" | "qwen2") => {
            if let Ok(c) = LlamaConfig::from_value(config, path) {
                let _ = (c.head_dim(), c.kv_heads(), c.rope(), c.special_tokens());
            }
        }
        Some("gpt2") => {
            if let Ok(c) = Gpt2Config::from_value(config, path) {
                let _ = c.inner();
            }
        }
        Some("gemma3" | "gemma3_text") => {
            if let Ok(c) = Gemma3Config::from_value(config, path) {
                let _ = (c.kv_heads(), c.special_tokens());
            }
        }
        _ => {}
    }
}
