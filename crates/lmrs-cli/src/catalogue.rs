//! `lmrs models` (the models in the local caches, like `ollama list`) and `lmrs info MODEL`
//! (one model's card), both from the library's catalogue: nothing here reads a model's files.

use anyhow::{Context, Result};
use clap::Args;
use lmrs_pipelines::{CachedModel, ModelCard, ModelFormat};

/// `lmrs models` flags.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Print a JSON array (one object per model, with its card or the reason it has none).
    #[arg(long)]
    pub json: bool,
}

/// `lmrs info` flags.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// GGUF file, model folder or hub id in the Hugging Face cache.
    pub model: String,
    /// Hub cache revision (branch or commit hash) when MODEL is a hub id.
    #[arg(long)]
    pub revision: Option<String>,
    /// Print the card as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where `lmrs models` looks: the Hugging Face hub caches ($HF_HUB_CACHE, $HF_HOME/hub,
/// ~/.cache/huggingface/hub) and lmrs's own model cache (the default model's folder).
pub fn models(args: ModelsArgs) -> Result<()> {
    let own = lmrs_pipelines::default_model_path()
        .parent()
        .map(std::path::Path::to_path_buf);
    let found = lmrs_pipelines::list_cached(&lmrs_io_caches(), own.as_slice());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    if found.is_empty() {
        println!(
            "no models found in {} or {}",
            lmrs_io_caches()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            own.map_or_else(String::new, |p| p.display().to_string())
        );
        return Ok(());
    }
    println!(
        "{:<44} {:<14} {:<28} {:>8} {:>9}",
        "MODEL", "ARCHITECTURE", "TASKS", "CONTEXT", "SIZE"
    );
    for CachedModel {
        reference,
        card,
        error,
    } in &found
    {
        match card {
            Some(c) => println!(
                "{:<44} {:<14} {:<28} {:>8} {:>9}",
                reference,
                c.model_type,
                kinds(c),
                c.context_length.map_or("-".into(), |n| n.to_string()),
                size(c.size_bytes)
            ),
            None => println!(
                "{reference:<44} (cannot be used: {})",
                error.as_deref().unwrap_or("unknown")
            ),
        }
    }
    Ok(())
}

fn lmrs_io_caches() -> Vec<std::path::PathBuf> {
    lmrs_pipelines::hub_cache_dirs()
}

/// `lmrs info MODEL`.
pub fn info(args: InfoArgs) -> Result<()> {
    let card = lmrs_pipelines::inspect(&args.model, args.revision.as_deref())
        .with_context(|| format!("cannot describe {}", args.model))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&card)?);
        return Ok(());
    }
    let t = &card.special_tokens;
    let id = |v: Option<u32>| v.map_or("-".to_string(), |n| n.to_string());
    let rows: Vec<(&str, String)> = vec![
        ("model", args.model.clone()),
        ("path", card.path.display().to_string()),
        (
            "format",
            match card.format {
                ModelFormat::HfFolder => "Hugging Face folder".into(),
                ModelFormat::Gguf => "GGUF".into(),
            },
        ),
        ("model_type", card.model_type.clone()),
        ("architectures", card.architectures.join(", ")),
        ("tasks", kinds(&card)),
        (
            "context",
            card.context_length
                .map_or("not stated".into(), |n| format!("{n} tokens")),
        ),
        (
            "weights",
            card.dtype.clone().unwrap_or_else(|| "not stated".into()),
        ),
        (
            "special tokens",
            format!(
                "bos {}, eos {}, pad {}{}",
                id(t.bos_token_id),
                if t.eos_token_ids.is_empty() {
                    "-".into()
                } else {
                    t.eos_token_ids
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join("/")
                },
                id(t.pad_token_id),
                t.decoder_start_token_id
                    .map_or(String::new(), |d| format!(", decoder start {d}"))
            ),
        ),
        (
            "chat template",
            if card.chat_template { "yes" } else { "no" }.into(),
        ),
        ("size", size(card.size_bytes)),
    ];
    for (k, v) in rows {
        println!("{k:<15} {v}");
    }
    if !card.labels.is_empty() {
        println!("{:<15} {}", "labels", card.labels.join(", "));
    }
    Ok(())
}

fn kinds(c: &ModelCard) -> String {
    c.kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if b >= 1024.0 * MIB {
        format!("{:.1} GiB", b / (1024.0 * MIB))
    } else if b >= MIB {
        format!("{:.1} MiB", b / MIB)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}
