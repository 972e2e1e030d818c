//! `config.json` for every architecture, through lmrs's own parsers: T5 (and mT5), the BERT
//! family (BERT, RoBERTa, XLM-R, DistilBERT), Llama / Qwen2 / Mistral, GPT-2 and Gemma 3 (its
//! multimodal `text_config` nesting too), plus `model_type` detection. Every accessor the
//! model builders call runs on each config that validates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrs_models::bert::BertConfig;
use lmrs_models::gemma3::Gemma3Config;
use lmrs_models::gpt2::Gpt2Config;
use lmrs_models::llama::LlamaConfig;
use lmrs_models::t5::T5Config;

fuzz_target!(|data: &[u8]| {
    let path = lmrs_fuzz::scratch_file("config.json", data);
    let _ = lmrs_io::model_type(&path);
    if let Ok(c) = T5Config::from_file(&path) {
        let _ = (c.decoder_layers(), c.scale_decoder_outputs(), c.eos_ids());
        let _ = c.feed_forward();
    }
    if let Ok(c) = BertConfig::from_file(&path) {
        let _ = (c.activation(), c.num_labels(), c.labels(), c.family());
        let _ = (c.position_ids(), c.max_input_tokens(), c.head_dim());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(c) = LlamaConfig::from_value(value.clone(), &path) {
        let _ = (c.kv_heads(), c.head_dim(), c.qkv_bias(), c.rope());
        let _ = c.special_tokens();
    }
    if let Ok(c) = Gpt2Config::from_value(value.clone(), &path) {
        let _ = c.inner();
    }
    let text = match value.get("text_config") {
        Some(t) if t.is_object() => t.clone(),
        _ => value,
    };
    if let Ok(c) = Gemma3Config::from_value(text, &path) {
        let _ = (c.kv_heads(), c.special_tokens());
        for i in 0..c.num_hidden_layers.min(64) {
            let _ = c.layer(i);
        }
    }
});
