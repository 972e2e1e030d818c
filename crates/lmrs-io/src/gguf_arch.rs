//! What a GGUF file means per architecture: its metadata rewritten as the `config.json` the same
//! model would have on the Hugging Face hub, and its tensor names mapped to HF checkpoint keys.
//!
//! Model code therefore exists once: it loads a GGUF file through the same HF-named prefix
//! builder as a safetensors folder. Two llama.cpp conversion quirks are undone here:
//! - `llama` GGUFs store `attn_q`/`attn_k` rows permuted for interleaved RoPE
//!   (`convert_hf_to_gguf.py` `LlamaModel.permute`); their rows are put back in HF order.
//! - `gemma3` GGUFs store RMSNorm weights as `1 + w` (Gemma's `x * (1 + w)` folded in); `1` is
//!   subtracted again.

use crate::gguf::GgufFile;
use crate::{IoError, Result};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// How a stored tensor becomes the HF tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GgufTransform {
    /// Used as stored.
    None,
    /// Rows were permuted by llama.cpp for interleaved RoPE; `heads` heads of equal size.
    UnpermuteRope {
        /// Heads the rows are split into (query heads for `q`, key/value heads for `k`).
        heads: usize,
    },
    /// Add a constant to every value (Gemma's folded `1 + w` norms).
    AddScalar(f32),
}

/// The GGUF tensor holding an HF tensor, and how to convert it.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufName {
    /// Name in the GGUF file.
    pub name: String,
    /// Conversion to the HF layout.
    pub transform: GgufTransform,
}

/// Maps an HF checkpoint key to its GGUF tensor (`None`: the file has no such tensor).
pub type GgufNameMap = Arc<dyn Fn(&str) -> Option<GgufName> + Send + Sync>;

/// Architectures (`general.architecture`) lmrs can load from GGUF.
pub const GGUF_ARCHITECTURES: &[&str] = &["llama", "qwen2", "gpt2", "gemma3"];

/// A GGUF file read as an HF model: `config` is what its `config.json` would say.
pub struct GgufModel {
    /// The open file.
    pub file: Arc<GgufFile>,
    /// HF-style configuration (`model_type`, `hidden_size`, ...).
    pub config: Value,
    /// HF key → GGUF tensor.
    pub names: GgufNameMap,
}

impl GgufModel {
    /// Interpret `file` by its `general.architecture`.
    pub fn new(file: Arc<GgufFile>) -> Result<Self> {
        let arch = file.architecture()?;
        let (config, names) = match arch.as_str() {
            "llama" | "qwen2" => llama_like(&file, &arch)?,
            "gemma3" => gemma3(&file)?,
            "gpt2" => gpt2(&file)?,
            _ => {
                return Err(IoError::UnsupportedArchitecture {
                    path: file.path().to_path_buf(),
                    architecture: arch,
                    supported: GGUF_ARCHITECTURES.join(", "),
                })
            }
        };
        Ok(Self {
            file,
            config,
            names,
        })
    }
}

/// Fields every architecture shares: vocabulary size and special token ids.
fn common(file: &GgufFile, arch: &str, model_type: &str) -> Result<Map<String, Value>> {
    let mut c = Map::new();
    c.insert("model_type".into(), json!(model_type));
    c.insert("gguf_architecture".into(), json!(arch));
    let vocab = match file.tensor_shape("token_embd.weight") {
        Some(s) if s.len() == 2 => s[0],
        _ => file.array_len("tokenizer.ggml.tokens").ok_or_else(|| IoError::Gguf {
            path: file.path().to_path_buf(),
            message: "neither 'token_embd.weight' nor 'tokenizer.ggml.tokens' gives the vocabulary size".into(),
        })?,
    };
    c.insert("vocab_size".into(), json!(vocab));
    for (hf, key) in [
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(id) = file.opt_usize(key)? {
            c.insert(hf.into(), json!(id));
        }
    }
    c.insert(
        "tie_word_embeddings".into(),
        json!(!file.has_tensor("output.weight")),
    );
    Ok(c)
}

/// An optional float that must be finite and positive (epsilons, RoPE base and factor): 0,
/// a negative value or NaN would load and then produce garbage (and NaN is not even
/// representable in the JSON config it becomes).
fn opt_positive(file: &GgufFile, key: &str) -> Result<Option<f64>> {
    match file.opt_f64(key)? {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(IoError::Gguf {
            path: file.path().to_path_buf(),
            message: format!("metadata '{key}' is {v}; it must be a finite positive number"),
        }),
        v => Ok(v),
    }
}

/// A block count no larger than the blocks the tensor directory holds (`blk.N.*`), checked
/// before anything of that length is built.
fn block_count(file: &GgufFile, key: &str) -> Result<usize> {
    let n = file.usize(key)?;
    if n == 0 || !file.has_tensor(&format!("blk.{}.attn_norm.weight", n - 1)) {
        return Err(IoError::Gguf {
            path: file.path().to_path_buf(),
            message: format!(
                "metadata '{key}' is {n}, but the file has no tensor 'blk.{}.attn_norm.weight'",
                n.saturating_sub(1)
            ),
        });
    }
    Ok(n)
}

fn meta(arch: &str, key: &str) -> String {
    format!("{arch}.{key}")
}

fn llama_like(file: &GgufFile, arch: &str) -> Result<(Value, GgufNameMap)> {
    let m = |k: &str| meta(arch, k);
    let mut c = common(file, arch, arch)?;
    let hidden = file.usize(&m("embedding_length"))?;
    let heads = file.usize(&m("attention.head_count"))?;
    let kv_heads = file
        .opt_usize(&m("attention.head_count_kv"))?
        .unwrap_or(heads);
    c.insert("hidden_size".into(), json!(hidden));
    c.insert(
        "num_hidden_layers".into(),
        json!(block_count(file, &m("block_count"))?),
    );
    c.insert(
        "intermediate_size".into(),
        json!(file.usize(&m("feed_forward_length"))?),
    );
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert("num_key_value_heads".into(), json!(kv_heads));
    if let Some(d) = file.opt_usize(&m("attention.key_length"))? {
        c.insert("head_dim".into(), json!(d));
    }
    c.insert(
        "max_position_embeddings".into(),
        json!(file.usize(&m("context_length"))?),
    );
    if let Some(eps) = opt_positive(file, &m("attention.layer_norm_rms_epsilon"))? {
        c.insert("rms_norm_eps".into(), json!(eps));
    }
    c.insert(
        "rope_theta".into(),
        json!(opt_positive(file, &m("rope.freq_base"))?.unwrap_or(10_000.0)),
    );
    if let Some(kind) = file.opt_str(&m("rope.scaling.type"))? {
        if kind == "linear" {
            let factor = opt_positive(file, &m("rope.scaling.factor"))?.unwrap_or(1.0);
            c.insert(
                "rope_scaling".into(),
                json!({"rope_type": "linear", "factor": factor}),
            );
        } else if kind != "none" {
            return Err(IoError::Gguf {
                path: file.path().to_path_buf(),
                message: format!("RoPE scaling type '{kind}' is not supported"),
            });
        }
    }
    if file.has_tensor("rope_freqs.weight") {
        // Llama 3.1-style scaling stored as per-frequency factors; not implemented yet.
        return Err(IoError::Gguf {
            path: file.path().to_path_buf(),
            message: "'rope_freqs.weight' (precomputed llama3 RoPE factors) is not supported"
                .into(),
        });
    }
    let bias = file.has_tensor("blk.0.attn_q.bias");
    c.insert("attention_bias".into(), json!(bias));
    // llama.cpp permutes q/k rows of the `llama` architecture only.
    let permuted = arch == "llama";
    let names: GgufNameMap = Arc::new(move |hf: &str| {
        let simple = |n: &str| GgufName {
            name: n.to_string(),
            transform: GgufTransform::None,
        };
        match hf {
            "model.embed_tokens.weight" => return Some(simple("token_embd.weight")),
            "model.norm.weight" => return Some(simple("output_norm.weight")),
            "lm_head.weight" => return Some(simple("output.weight")),
            _ => {}
        }
        let (layer, rest) = split_layer(hf, "model.layers.")?;
        let (name, transform) = match rest {
            "input_layernorm.weight" => ("attn_norm.weight", GgufTransform::None),
            "post_attention_layernorm.weight" => ("ffn_norm.weight", GgufTransform::None),
            "self_attn.q_proj.weight" | "self_attn.q_proj.bias" => (
                if rest.ends_with("weight") {
                    "attn_q.weight"
                } else {
                    "attn_q.bias"
                },
                if permuted {
                    GgufTransform::UnpermuteRope { heads }
                } else {
                    GgufTransform::None
                },
            ),
            "self_attn.k_proj.weight" | "self_attn.k_proj.bias" => (
                if rest.ends_with("weight") {
                    "attn_k.weight"
                } else {
                    "attn_k.bias"
                },
                if permuted {
                    GgufTransform::UnpermuteRope { heads: kv_heads }
                } else {
                    GgufTransform::None
                },
            ),
            "self_attn.v_proj.weight" => ("attn_v.weight", GgufTransform::None),
            "self_attn.v_proj.bias" => ("attn_v.bias", GgufTransform::None),
            "self_attn.o_proj.weight" => ("attn_output.weight", GgufTransform::None),
            "mlp.gate_proj.weight" => ("ffn_gate.weight", GgufTransform::None),
            "mlp.up_proj.weight" => ("ffn_up.weight", GgufTransform::None),
            "mlp.down_proj.weight" => ("ffn_down.weight", GgufTransform::None),
            _ => return None,
        };
        Some(GgufName {
            name: format!("blk.{layer}.{name}"),
            transform,
        })
    });
    Ok((Value::Object(c), names))
}

fn gemma3(file: &GgufFile) -> Result<(Value, GgufNameMap)> {
    let arch = "gemma3";
    let m = |k: &str| meta(arch, k);
    let mut c = common(file, arch, "gemma3_text")?;
    let hidden = file.usize(&m("embedding_length"))?;
    let heads = file.usize(&m("attention.head_count"))?;
    let layers = block_count(file, &m("block_count"))?;
    c.insert("hidden_size".into(), json!(hidden));
    c.insert("num_hidden_layers".into(), json!(layers));
    c.insert(
        "intermediate_size".into(),
        json!(file.usize(&m("feed_forward_length"))?),
    );
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert(
        "num_key_value_heads".into(),
        json!(file
            .opt_usize(&m("attention.head_count_kv"))?
            .unwrap_or(heads)),
    );
    let head_dim = file
        .opt_usize(&m("attention.key_length"))?
        .unwrap_or(hidden / heads.max(1));
    c.insert("head_dim".into(), json!(head_dim));
    // Not stored in GGUF; Gemma 3 checkpoints use the head dimension (llama.cpp assumes so too).
    c.insert("query_pre_attn_scalar".into(), json!(head_dim));
    c.insert(
        "max_position_embeddings".into(),
        json!(file.usize(&m("context_length"))?),
    );
    if let Some(eps) = opt_positive(file, &m("attention.layer_norm_rms_epsilon"))? {
        c.insert("rms_norm_eps".into(), json!(eps));
    }
    c.insert(
        "rope_theta".into(),
        json!(opt_positive(file, &m("rope.freq_base"))?.unwrap_or(1_000_000.0)),
    );
    // The local (sliding) layers' base is fixed at 10 000 for Gemma 3 (llama.cpp hard-codes it).
    c.insert("rope_local_base_freq".into(), json!(10_000.0));
    let window = file.opt_usize(&m("attention.sliding_window"))?;
    if window == Some(0) {
        // A window of 0 would mask every key of the local layers.
        return Err(IoError::Gguf {
            path: file.path().to_path_buf(),
            message: format!(
                "metadata '{}' is 0; the window must be positive",
                m("attention.sliding_window")
            ),
        });
    }
    if let Some(w) = window {
        c.insert("sliding_window".into(), json!(w));
    }
    if let Some(f) = opt_positive(file, &m("rope.scaling.factor"))? {
        c.insert(
            "rope_scaling".into(),
            json!({"rope_type": "linear", "factor": f}),
        );
    }
    // Gemma 3's fixed pattern: five sliding-window layers, then one global layer.
    let pattern = file
        .opt_usize(&m("attention.sliding_window_pattern"))?
        .unwrap_or(6)
        .max(1);
    let types: Vec<&str> = (0..layers)
        .map(|i| {
            if (i + 1) % pattern == 0 || window.is_none() {
                "full_attention"
            } else {
                "sliding_attention"
            }
        })
        .collect();
    c.insert("layer_types".into(), json!(types));
    let names: GgufNameMap = Arc::new(|hf: &str| {
        let simple = |n: &str, t| GgufName {
            name: n.to_string(),
            transform: t,
        };
        let norm = GgufTransform::AddScalar(-1.0);
        match hf {
            "model.embed_tokens.weight" => {
                return Some(simple("token_embd.weight", GgufTransform::None))
            }
            "model.norm.weight" => return Some(simple("output_norm.weight", norm)),
            "lm_head.weight" => return Some(simple("output.weight", GgufTransform::None)),
            _ => {}
        }
        let (layer, rest) = split_layer(hf, "model.layers.")?;
        let (name, transform) = match rest {
            "input_layernorm.weight" => ("attn_norm.weight", norm),
            "post_attention_layernorm.weight" => ("post_attention_norm.weight", norm),
            "pre_feedforward_layernorm.weight" => ("ffn_norm.weight", norm),
            "post_feedforward_layernorm.weight" => ("post_ffw_norm.weight", norm),
            "self_attn.q_norm.weight" => ("attn_q_norm.weight", norm),
            "self_attn.k_norm.weight" => ("attn_k_norm.weight", norm),
            "self_attn.q_proj.weight" => ("attn_q.weight", GgufTransform::None),
            "self_attn.k_proj.weight" => ("attn_k.weight", GgufTransform::None),
            "self_attn.v_proj.weight" => ("attn_v.weight", GgufTransform::None),
            "self_attn.o_proj.weight" => ("attn_output.weight", GgufTransform::None),
            "mlp.gate_proj.weight" => ("ffn_gate.weight", GgufTransform::None),
            "mlp.up_proj.weight" => ("ffn_up.weight", GgufTransform::None),
            "mlp.down_proj.weight" => ("ffn_down.weight", GgufTransform::None),
            _ => return None,
        };
        Some(GgufName {
            name: format!("blk.{layer}.{name}"),
            transform,
        })
    });
    Ok((Value::Object(c), names))
}

fn gpt2(file: &GgufFile) -> Result<(Value, GgufNameMap)> {
    let arch = "gpt2";
    let m = |k: &str| meta(arch, k);
    let mut c = common(file, arch, "gpt2")?;
    c.insert("n_embd".into(), json!(file.usize(&m("embedding_length"))?));
    c.insert(
        "n_layer".into(),
        json!(block_count(file, &m("block_count"))?),
    );
    c.insert(
        "n_head".into(),
        json!(file.usize(&m("attention.head_count"))?),
    );
    c.insert(
        "n_inner".into(),
        json!(file.usize(&m("feed_forward_length"))?),
    );
    c.insert(
        "n_positions".into(),
        json!(file.usize(&m("context_length"))?),
    );
    if let Some(eps) = opt_positive(file, &m("attention.layer_norm_epsilon"))? {
        c.insert("layer_norm_epsilon".into(), json!(eps));
    }
    // GGUF stores the Conv1D projections already as (out, in); the model's Conv1D loader knows
    // this from `gguf_architecture` and does not transpose them.
    let names: GgufNameMap = Arc::new(|hf: &str| {
        let simple = |n: &str| GgufName {
            name: n.to_string(),
            transform: GgufTransform::None,
        };
        let hf = hf.strip_prefix("transformer.").unwrap_or(hf);
        match hf {
            "wte.weight" => return Some(simple("token_embd.weight")),
            "wpe.weight" => return Some(simple("position_embd.weight")),
            "ln_f.weight" => return Some(simple("output_norm.weight")),
            "ln_f.bias" => return Some(simple("output_norm.bias")),
            "lm_head.weight" => return Some(simple("output.weight")),
            _ => {}
        }
        let (layer, rest) = split_layer(hf, "h.")?;
        let (module, leaf) = rest.rsplit_once('.')?;
        let name = match module {
            "ln_1" => "attn_norm",
            "attn.c_attn" => "attn_qkv",
            "attn.c_proj" => "attn_output",
            "ln_2" => "ffn_norm",
            "mlp.c_fc" => "ffn_up",
            "mlp.c_proj" => "ffn_down",
            _ => return None,
        };
        Some(simple(&format!("blk.{layer}.{name}.{leaf}")))
    });
    Ok((Value::Object(c), names))
}

/// `"model.layers.3.mlp.up_proj.weight"` with prefix `"model.layers."` → `(3, "mlp.up_proj.weight")`.
fn split_layer<'a>(key: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = key.strip_prefix(prefix)?;
    let (num, rest) = rest.split_once('.')?;
    Some((num.parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_keys_split() {
        assert_eq!(
            split_layer("model.layers.12.mlp.up_proj.weight", "model.layers."),
            Some((12, "mlp.up_proj.weight"))
        );
        assert_eq!(split_layer("model.norm.weight", "model.layers."), None);
        assert_eq!(split_layer("h.x.attn", "h."), None);
    }
}
