//! `embed` and `similarity`: sentence embeddings with an encoder model.

use crate::args::InputArgs;
use crate::input::documents;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use lmrs_pipelines::{rank_by_similarity, EmbedOptions, EmbeddingPipeline, Pooling, TextEmbedding};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Which model and how it pools (shared by `embed` and `similarity`).
#[derive(Debug, Args)]
pub struct EmbedModelArgs {
    /// Model folder (a sentence-transformers folder or a plain encoder) or hub id in the
    /// Hugging Face cache.
    #[arg(short, long)]
    pub model: String,
    /// Hub cache revision (branch or commit hash) when MODEL is a hub id.
    #[arg(long)]
    pub revision: Option<String>,
    /// Pooling: cls, mean, max, mean_sqrt_len, lasttoken; several comma separated are
    /// concatenated (default: the folder's 1_Pooling, else mean).
    #[arg(long, value_delimiter = ',', value_parser = parse_pooling)]
    pub pooling: Option<Vec<Pooling>>,
    /// L2-normalize the embeddings (default: whether the folder has a Normalize module).
    #[arg(long, conflicts_with = "no_normalize")]
    pub normalize: bool,
    /// Do not L2-normalize, even when the folder has a Normalize module.
    #[arg(long)]
    pub no_normalize: bool,
    /// Truncate inputs to this many tokens, special tokens included (default:
    /// sentence_bert_config.json max_seq_length, else the model's limit).
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// Inputs run together in one batch.
    #[arg(long, default_value_t = 32, value_parser = crate::args::at_least_one)]
    pub batch_size: usize,
}

impl EmbedModelArgs {
    fn load(&self) -> Result<EmbeddingPipeline> {
        let normalize = match (self.normalize, self.no_normalize) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        Ok(EmbeddingPipeline::load(
            &self.model,
            &EmbedOptions {
                revision: self.revision.clone(),
                pooling: self.pooling.clone(),
                normalize,
                max_seq_length: self.max_seq_length,
            },
        )?)
    }
}

/// Output formats of `lmrs embed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmbedFormat {
    /// One JSON object per input and line: index, tokens, truncated, embedding.
    Json,
    /// One `(inputs, dimension)` float32 array in NumPy `.npy` format.
    Npy,
}

/// `lmrs embed` flags.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: EmbedModelArgs,
    /// Texts to embed. Without texts and --input, stdin is read (one text per line).
    pub texts: Vec<String>,
    #[command(flatten)]
    pub source: InputArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EmbedFormat::Json)]
    pub format: EmbedFormat,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Measure embeddings/s on fixed-length inputs and peak memory instead of embedding texts.
    #[arg(long, help_heading = "Benchmark")]
    pub bench: bool,
    /// Benchmark: tokens per input, special tokens included.
    #[arg(long, default_value_t = 128, help_heading = "Benchmark")]
    pub bench_tokens: usize,
    /// Benchmark: batch sizes, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,32",
        help_heading = "Benchmark"
    )]
    pub bench_batch: Vec<usize>,
    /// Benchmark: timed repetitions per batch size (median reported) after one warm-up.
    #[arg(long, default_value_t = 5, help_heading = "Benchmark")]
    pub repeat: usize,
    /// Benchmark: JSON file `{"input_ids": [[...], ...]}` with the rows to use (e.g. the ones a
    /// Python baseline used).
    #[arg(long, value_name = "FILE", help_heading = "Benchmark")]
    pub bench_inputs: Option<PathBuf>,
    /// Benchmark: print the report as JSON.
    #[arg(long, help_heading = "Benchmark")]
    pub bench_json: bool,
}

/// `lmrs similarity` flags.
#[derive(Debug, Args)]
pub struct SimilarityArgs {
    #[command(flatten)]
    pub model: EmbedModelArgs,
    /// The query, then the candidates to rank (or give candidates with --input).
    #[arg(required = true)]
    pub texts: Vec<String>,
    #[command(flatten)]
    pub source: InputArgs,
    /// Print only the K best candidates (0: all).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Print one JSON object per candidate (rank, index, score, text), best first.
    #[arg(long)]
    pub json: bool,
}

/// One `embed` output line (fields in this order; f32 values printed shortest-exact).
#[derive(serde::Serialize)]
struct EmbedRecord<'a> {
    index: usize,
    tokens: usize,
    truncated: bool,
    embedding: &'a [f32],
}

/// One `similarity --json` output line.
#[derive(serde::Serialize)]
struct SimilarityRecord<'a> {
    rank: usize,
    index: usize,
    score: f32,
    text: &'a str,
}

fn parse_pooling(s: &str) -> Result<Pooling, String> {
    Pooling::from_name(s).ok_or_else(|| {
        format!("'{s}' is not a pooling mode (cls, mean, max, mean_sqrt_len, lasttoken)")
    })
}

fn warn_truncated(embeddings: &[TextEmbedding], limit: usize) {
    let n = embeddings.iter().filter(|e| e.truncated).count();
    if n > 0 {
        eprintln!(
            "warning: {n} input(s) longer than {limit} tokens were truncated (see --max-seq-length)"
        );
    }
}

pub fn embed(args: EmbedArgs) -> Result<()> {
    if args.bench {
        let t = std::time::Instant::now();
        let pipeline = args.model.load()?;
        let spec = crate::embed_bench::BenchSpec {
            tokens: args.bench_tokens,
            batches: args.bench_batch.clone(),
            repeat: args.repeat,
            inputs: args.bench_inputs.clone(),
            json: args.bench_json,
        };
        return crate::embed_bench::run(&pipeline, t.elapsed().as_secs_f64(), &spec);
    }
    let docs = documents(&args.texts, &args.source)?;
    let pipeline = args.model.load()?;
    let embeddings = pipeline.embed(&docs, args.model.batch_size)?;
    warn_truncated(&embeddings, pipeline.max_seq_length());
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => {
            if args.format == EmbedFormat::Npy && std::io::stdout().is_terminal() {
                bail!("--format npy writes binary data: give --output FILE or redirect stdout");
            }
            Box::new(std::io::stdout().lock())
        }
    };
    match args.format {
        EmbedFormat::Json => {
            for (i, e) in embeddings.iter().enumerate() {
                let record = EmbedRecord {
                    index: i,
                    tokens: e.tokens,
                    truncated: e.truncated,
                    embedding: &e.embedding,
                };
                writeln!(out, "{}", serde_json::to_string(&record)?)?;
            }
        }
        EmbedFormat::Npy => write_npy(&mut out, &embeddings, pipeline.dimension())?,
    }
    out.flush()?;
    Ok(())
}

/// A little-endian float32 C-order `.npy` (format 1.0) holding `(rows, dim)`.
fn write_npy(out: &mut dyn Write, rows: &[TextEmbedding], dim: usize) -> Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {dim}), }}",
        rows.len()
    );
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple
    // of 64 and ended by a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    for r in rows {
        for v in &r.embedding {
            out.write_all(&v.to_le_bytes())?;
        }
    }
    Ok(())
}

pub fn similarity(args: SimilarityArgs) -> Result<()> {
    let (query, candidates) = match &args.source.input {
        Some(_) => {
            if args.texts.len() != 1 {
                bail!("with --input, give only the query as an argument");
            }
            (args.texts[0].clone(), documents(&[], &args.source)?)
        }
        None => {
            if args.texts.len() < 2 {
                bail!("give a query and at least one candidate (or candidates with --input)");
            }
            (args.texts[0].clone(), args.texts[1..].to_vec())
        }
    };
    let pipeline = args.model.load()?;
    let mut all = vec![query];
    all.extend(candidates.iter().cloned());
    let mut embeddings = pipeline.embed(&all, args.model.batch_size)?;
    warn_truncated(&embeddings, pipeline.max_seq_length());
    let query = embeddings.remove(0).embedding;
    let vectors: Vec<Vec<f32>> = embeddings.into_iter().map(|e| e.embedding).collect();
    let ranked = rank_by_similarity(&query, &vectors);
    // 0 means all, as `classify --top-k 0` does.
    let keep = args.top_k.filter(|&k| k > 0).unwrap_or(ranked.len());
    let mut out = std::io::stdout().lock();
    for (rank, r) in ranked.iter().take(keep).enumerate() {
        let text = &candidates[r.index];
        if args.json {
            let record = SimilarityRecord {
                rank: rank + 1,
                index: r.index,
                score: r.score,
                text,
            };
            writeln!(out, "{}", serde_json::to_string(&record)?)?;
        } else {
            writeln!(out, "{:.4}\t{}", r.score, text)?;
        }
    }
    Ok(())
}
