//! What a model reference is, without loading its weights: [`inspect`] → [`ModelCard`].
//!
//! Front ends (the CLI, the server) ask this instead of reading `config.json` themselves: the
//! architecture (from the [`crate::catalogue`]), what it can be run as, its input limit, dtype
//! or quantization, special tokens, whether it has a chat template, and its size on disk.
//! [`list_cached`] finds the models of the Hugging Face cache and lmrs's own cache.

use crate::catalogue::{self, Architecture, Family, ModelKind, Role};
use crate::{ModelError, Result};
use lmrs_io::{GgufFile, ModelSource};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// How the model is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelFormat {
    /// A Hugging Face folder (`config.json`, safetensors, tokenizer files).
    HfFolder,
    /// One GGUF file.
    Gguf,
}

/// Special token ids the model's own files declare.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CardTokens {
    /// Beginning of sequence.
    pub bos_token_id: Option<u32>,
    /// End(s) of sequence (generation_config.json may list several).
    pub eos_token_ids: Vec<u32>,
    /// Padding.
    pub pad_token_id: Option<u32>,
    /// First decoder token of an encoder-decoder model.
    pub decoder_start_token_id: Option<u32>,
}

/// A model, described from its files.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelCard {
    /// Where its files are (a folder or a GGUF file).
    pub path: PathBuf,
    /// Folder or GGUF.
    pub format: ModelFormat,
    /// `config.json` `model_type` (for GGUF: the `model_type` it maps to).
    pub model_type: String,
    /// The family that builds it.
    pub family: Family,
    /// Encoder-decoder, encoder or decoder.
    pub role: Role,
    /// `config.json` `architectures` (GGUF: `general.architecture`).
    pub architectures: Vec<String>,
    /// What it can be run as; the first is what it is for (the server's default task).
    pub kinds: Vec<ModelKind>,
    /// The longest input in tokens its files state, when they do.
    pub context_length: Option<usize>,
    /// Weight dtype (`config.json` `torch_dtype`) or, for GGUF, the quantization types of its
    /// tensors by share of elements (`Q4_K (84%), Q6_K (11%), F32 (5%)`).
    pub dtype: Option<String>,
    /// Special token ids.
    pub special_tokens: CardTokens,
    /// Whether a chat template ships with it.
    pub chat_template: bool,
    /// Labels of a classification head, in id order.
    pub labels: Vec<String>,
    /// Bytes on disk (a folder: every file in it, symlinks followed).
    pub size_bytes: u64,
}

impl ModelCard {
    /// What the model is for.
    pub fn kind(&self) -> ModelKind {
        self.kinds[0]
    }
}

/// Describe `reference` (a folder, a GGUF file, or a hub id in the local Hugging Face cache).
pub fn inspect(reference: &str, revision: Option<&str>) -> Result<ModelCard> {
    inspect_source(&lmrs_io::resolve(reference, revision)?)
}

/// Describe a resolved model.
pub fn inspect_source(source: &ModelSource) -> Result<ModelCard> {
    match source {
        ModelSource::HfFolder(dir) => inspect_folder(dir),
        ModelSource::Gguf(path) => inspect_gguf(path),
    }
}

/// Describe a Hugging Face model folder.
pub fn inspect_folder(dir: &Path) -> Result<ModelCard> {
    let config_path = dir.join("config.json");
    let config: Value = lmrs_io::read_json(&config_path)?;
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("(missing)")
        .to_string();
    let arch =
        catalogue::by_model_type(&model_type).ok_or_else(|| ModelError::UnknownModelType {
            found: model_type.clone(),
            path: config_path.display().to_string(),
            supported: catalogue::CATALOGUE
                .iter()
                .flat_map(|a| a.model_types.iter().copied())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let architectures: Vec<String> = config
        .get("architectures")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let tok_cfg: Value = read_optional(&dir.join("tokenizer_config.json"))?;
    let gen_cfg: Value = read_optional(&dir.join("generation_config.json"))?;
    // A multimodal Gemma 3 keeps the language model's settings under `text_config`.
    let text = match config.get("text_config") {
        Some(t) if t.is_object() => t,
        _ => &config,
    };
    let kinds = folder_kinds(arch, &architectures, dir.join("modules.json").is_file());
    let context_length = folder_context(arch, &model_type, text, &tok_cfg);
    let id = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).map(|n| n as u32);
    let mut eos: Vec<u32> = Vec::new();
    for source in [&gen_cfg, text] {
        match source.get("eos_token_id") {
            Some(Value::Array(ids)) if eos.is_empty() => {
                eos.extend(ids.iter().filter_map(|v| v.as_u64().map(|n| n as u32)))
            }
            Some(Value::Number(n)) if eos.is_empty() => eos.extend(n.as_u64().map(|n| n as u32)),
            _ => {}
        }
    }
    let special_tokens = CardTokens {
        bos_token_id: id(&gen_cfg, "bos_token_id").or_else(|| id(text, "bos_token_id")),
        eos_token_ids: eos,
        pad_token_id: id(&gen_cfg, "pad_token_id").or_else(|| id(text, "pad_token_id")),
        decoder_start_token_id: id(&gen_cfg, "decoder_start_token_id")
            .or_else(|| id(&config, "decoder_start_token_id")),
    };
    let chat_template = !tok_cfg.get("chat_template").is_none_or(Value::is_null)
        || dir.join("chat_template.jinja").is_file()
        || dir.join("chat_template.json").is_file();
    Ok(ModelCard {
        path: dir.to_path_buf(),
        format: ModelFormat::HfFolder,
        model_type,
        family: arch.family,
        role: arch.role,
        architectures,
        kinds,
        context_length,
        dtype: text
            .get("torch_dtype")
            .or_else(|| text.get("dtype"))
            .and_then(Value::as_str)
            .map(String::from),
        special_tokens,
        chat_template,
        labels: labels(&config),
        size_bytes: folder_size(dir),
    })
}

/// What a folder can run as: the role decides, then a BERT-family head by its class name.
/// Every encoder can also embed; a sentence-transformers folder is for embeddings.
fn folder_kinds(
    arch: &Architecture,
    architectures: &[String],
    sentence_transformers: bool,
) -> Vec<ModelKind> {
    match arch.role {
        Role::Seq2Seq => vec![ModelKind::Seq2Seq],
        Role::Causal => vec![ModelKind::CausalLm],
        Role::Encoder => {
            let head = architectures.first().map(String::as_str).unwrap_or("");
            let primary = if sentence_transformers {
                ModelKind::Embedding
            } else if head.ends_with("ForSequenceClassification") {
                ModelKind::Classification
            } else if head.ends_with("ForTokenClassification") {
                ModelKind::TokenClassification
            } else if head.ends_with("ForMaskedLM") {
                ModelKind::FillMask
            } else {
                ModelKind::Embedding
            };
            let mut kinds = vec![primary];
            if primary != ModelKind::Embedding {
                kinds.push(ModelKind::Embedding);
            }
            kinds
        }
    }
}

/// The input limit a folder states. Encoders: the smaller of the positions (less RoBERTa's
/// offset) and the tokenizer's `model_max_length`, 512 when neither is known (BERT's).
/// Others: their position count (T5: `n_positions`), else the tokenizer's limit.
fn folder_context(
    arch: &Architecture,
    model_type: &str,
    text: &Value,
    tok_cfg: &Value,
) -> Option<usize> {
    let usize_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).map(|n| n as usize);
    let tokenizer = tok_cfg
        .get("model_max_length")
        .and_then(Value::as_f64)
        .filter(|l| (2.0..1e9).contains(l))
        .map(|l| l as usize);
    match arch.role {
        Role::Encoder => {
            let positions = usize_of(text, "max_position_embeddings")
                .map(|n| catalogue::position_limit(model_type, n, usize_of(text, "pad_token_id")));
            Some(match (positions, tokenizer) {
                (Some(p), Some(t)) => p.min(t),
                (Some(n), None) | (None, Some(n)) => n,
                (None, None) => 512,
            })
        }
        Role::Seq2Seq | Role::Causal => usize_of(text, "max_position_embeddings")
            .or_else(|| usize_of(text, "n_positions"))
            .or(tokenizer),
    }
}

/// `id2label` in id order (empty without a head's labels).
fn labels(config: &Value) -> Vec<String> {
    let Some(map) = config.get("id2label").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut pairs: Vec<(usize, String)> = map
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
        .collect();
    pairs.sort();
    pairs.into_iter().map(|(_, l)| l).collect()
}

/// Describe a GGUF file (its header and tensor directory; no tensor data is read).
pub fn inspect_gguf(path: &Path) -> Result<ModelCard> {
    let file = GgufFile::open(path)?;
    let name = file.architecture()?;
    let arch =
        catalogue::by_gguf_architecture(&name).ok_or_else(|| ModelError::UnknownModelType {
            found: name.clone(),
            path: path.display().to_string(),
            supported: lmrs_io::GGUF_ARCHITECTURES.join(", "),
        })?;
    let model = lmrs_io::GgufModel::new(std::sync::Arc::new(file))?;
    let config = &model.config;
    let file = &model.file;
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or(&name)
        .to_string();
    let token = |key: &str| file.opt_usize(key).ok().flatten().map(|n| n as u32);
    Ok(ModelCard {
        path: path.to_path_buf(),
        format: ModelFormat::Gguf,
        model_type,
        family: arch.family,
        role: arch.role,
        architectures: vec![name.clone()],
        kinds: vec![ModelKind::CausalLm],
        context_length: file
            .opt_usize(&format!("{name}.context_length"))
            .ok()
            .flatten(),
        dtype: Some(quantization(file)),
        special_tokens: CardTokens {
            bos_token_id: token("tokenizer.ggml.bos_token_id"),
            eos_token_ids: token("tokenizer.ggml.eos_token_id").into_iter().collect(),
            pad_token_id: token("tokenizer.ggml.padding_token_id"),
            decoder_start_token_id: None,
        },
        chat_template: file.value("tokenizer.chat_template").is_some(),
        labels: Vec::new(),
        size_bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
    })
}

/// The tensor types of a GGUF file by share of elements, largest first.
fn quantization(file: &GgufFile) -> String {
    let mut by_type: Vec<(String, u64)> = Vec::new();
    for info in file.content().tensor_infos.values() {
        let n: u64 = info.shape.dims().iter().map(|&d| d as u64).product();
        // candle spells the k-quants `Q4K`; llama.cpp and users say `Q4_K`.
        let mut name = format!("{:?}", info.ggml_dtype).to_uppercase();
        if name.len() == 3 && name.ends_with('K') {
            name.insert(2, '_');
        }
        match by_type.iter_mut().find(|(t, _)| *t == name) {
            Some((_, total)) => *total += n,
            None => by_type.push((name, n)),
        }
    }
    let all: u64 = by_type.iter().map(|(_, n)| n).sum::<u64>().max(1);
    by_type.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    by_type
        .iter()
        .map(|(t, n)| match (n * 100 + all / 2) / all {
            0 => format!("{t} (<1%)"),
            pct => format!("{t} ({pct}%)"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON file's value, `Null` when the file is absent.
fn read_optional(path: &Path) -> Result<Value> {
    if path.is_file() {
        Ok(lmrs_io::read_json(path)?)
    } else {
        Ok(Value::Null)
    }
}

/// Bytes of every file under `dir` (symlinks followed, as the HF cache's snapshots are links
/// to blobs).
fn folder_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => folder_size(&p),
                Ok(m) => m.len(),
                Err(_) => 0,
            }
        })
        .sum()
}

/// A model found in a cache.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CachedModel {
    /// How to name it to `--model` (a hub id, or the file's path).
    pub reference: String,
    /// The card, when the files could be described.
    pub card: Option<ModelCard>,
    /// Why they could not.
    pub error: Option<String>,
}

impl CachedModel {
    fn new(reference: String, card: Result<ModelCard>) -> Self {
        match card {
            Ok(c) => Self {
                reference,
                card: Some(c),
                error: None,
            },
            Err(e) => Self {
                reference,
                card: None,
                error: Some(e.to_string()),
            },
        }
    }
}

/// Every model in the Hugging Face cache folders `hub_caches` (each repo's `main` snapshot,
/// as `--model ORG/NAME` resolves it) and the `.gguf` files in `gguf_dirs`, sorted by
/// reference. Models lmrs cannot describe are listed with the reason.
pub fn list_cached(hub_caches: &[PathBuf], gguf_dirs: &[PathBuf]) -> Vec<CachedModel> {
    let mut found = Vec::new();
    for cache in hub_caches {
        let Ok(entries) = std::fs::read_dir(cache) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(repo) = name.strip_prefix("models--") else {
                continue;
            };
            let id = repo.replace("--", "/");
            if found.iter().any(|m: &CachedModel| m.reference == id) {
                continue; // an earlier cache folder wins, as resolve() searches them
            }
            let card = lmrs_io::resolve_in(&id, None, std::slice::from_ref(cache))
                .map_err(ModelError::from)
                .and_then(|source| inspect_source(&source));
            found.push(CachedModel::new(id, card));
        }
    }
    for dir in gguf_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "gguf") && path.is_file() {
                found.push(CachedModel::new(
                    path.display().to_string(),
                    inspect_gguf(&path),
                ));
            }
        }
    }
    found.sort_by(|a, b| a.reference.cmp(&b.reference));
    found
}
