//! `lmrs merge`: a base model with LoRA adapters merged in, written as a plain HF folder
//! (`peft`'s `merge_and_unload()` + `save_pretrained`).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// `lmrs merge` flags.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The base model: an HF folder or a hub id in the Hugging Face cache.
    #[arg(short, long)]
    pub model: String,
    /// A PEFT LoRA adapter folder (repeatable; applied in order).
    #[arg(long, required = true)]
    pub adapter: Vec<PathBuf>,
    /// The folder to write (config and tokenizer files copied from the base, weights as f32
    /// model.safetensors).
    #[arg(long)]
    pub output: PathBuf,
    /// Print what was merged as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `lmrs merge`.
pub fn merge(args: MergeArgs) -> Result<()> {
    let report = lmrs_train::merge::merge_adapters(&args.model, &args.adapter, &args.output)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        eprintln!(
            "merged {} adapter(s) into {} projections; wrote {}",
            report.adapters.len(),
            report.merged_projections,
            report.output
        );
    }
    Ok(())
}
