//! `lmrs embed --bench`: embeddings per second at fixed input lengths (batch 1 and 32 of
//! 128-token inputs by default) and peak memory, so numbers compare with
//! `tools/bench_embeddings.py` (sentence-transformers on the same token ids).

use anyhow::{bail, Context, Result};
use lmrs_core::Encoder;
use lmrs_pipelines::{EmbeddingPipeline, Encoded};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to measure.
pub struct BenchSpec {
    /// Tokens per input, special tokens included.
    pub tokens: usize,
    /// Batch sizes.
    pub batches: Vec<usize>,
    /// Timed repetitions per case (the median is reported), after one warm-up.
    pub repeat: usize,
    /// JSON `{"input_ids": [[...], ...]}` with the rows to use.
    pub inputs: Option<PathBuf>,
    /// Print JSON instead of a table.
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Case {
    batch: usize,
    batch_ms: f64,
    embeddings_per_s: f64,
}

#[derive(serde::Serialize)]
struct Report {
    model: String,
    threads: usize,
    tokens: usize,
    load_s: f64,
    cases: Vec<Case>,
    peak_rss_mb: Option<f64>,
}

pub fn run(pipeline: &EmbeddingPipeline, load_s: f64, spec: &BenchSpec) -> Result<()> {
    if spec.tokens < 2 || spec.repeat == 0 || spec.batches.contains(&0) {
        bail!("--bench-tokens must be at least 2, --repeat and every batch at least 1");
    }
    if spec.tokens > pipeline.model().max_positions() {
        bail!(
            "--bench-tokens {} exceeds the model's {} positions",
            spec.tokens,
            pipeline.model().max_positions()
        );
    }
    let n = spec.batches.iter().copied().max().unwrap_or(1);
    let rows = match &spec.inputs {
        Some(path) => read_rows(path, n)?,
        None => synthetic_rows(pipeline, n, spec.tokens),
    };
    let mut cases = Vec::new();
    for &batch in &spec.batches {
        let refs: Vec<&Encoded> = rows.iter().take(batch).collect();
        let mut times = Vec::new();
        for rep in 0..=spec.repeat {
            let t = Instant::now();
            pipeline.embed_encoded(&refs)?;
            if rep > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let secs = times[times.len() / 2];
        cases.push(Case {
            batch,
            batch_ms: secs * 1e3,
            embeddings_per_s: batch as f64 / secs,
        });
    }
    let report = Report {
        model: pipeline.model_dir().display().to_string(),
        threads: std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        tokens: rows[0].ids.len(),
        load_s,
        cases,
        peak_rss_mb: peak_rss_mb(),
    };
    if spec.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("model: {}", report.model);
    println!(
        "threads: {}  input: {} tokens  load: {:.3} s",
        report.threads, report.tokens, report.load_s
    );
    println!("{:>6} {:>12} {:>14}", "batch", "batch ms", "embeddings/s");
    for c in &report.cases {
        println!(
            "{:>6} {:>12.2} {:>14.1}",
            c.batch, c.batch_ms, c.embeddings_per_s
        );
    }
    if let Some(mb) = report.peak_rss_mb {
        println!("peak RSS: {mb:.1} MiB");
    }
    Ok(())
}

fn read_rows(path: &Path, n: usize) -> Result<Vec<Encoded>> {
    #[derive(serde::Deserialize)]
    struct Inputs {
        input_ids: Vec<Vec<u32>>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let inputs: Inputs = serde_json::from_str(&text)
        .with_context(|| format!("invalid JSON in {}", path.display()))?;
    if inputs.input_ids.len() < n || inputs.input_ids.iter().any(|r| r.is_empty()) {
        bail!(
            "{} must hold at least {n} non-empty rows (the largest batch)",
            path.display()
        );
    }
    Ok(inputs
        .input_ids
        .into_iter()
        .map(|ids| Encoded {
            type_ids: vec![0; ids.len()],
            ids,
            truncated: false,
        })
        .collect())
}

/// `n` rows of exactly `tokens` ids: the tokenizer's specials around deterministic
/// pseudo-random ids.
fn synthetic_rows(p: &EmbeddingPipeline, n: usize, tokens: usize) -> Vec<Encoded> {
    let tok = p.tokenizer().inner();
    let cls = tok.token_to_id("[CLS]").unwrap_or(101);
    let sep = tok.token_to_id("[SEP]").unwrap_or(102);
    let vocab = tok.get_vocab_size(true).min(p.model().vocab_size()) as u64;
    // Skip the low ids (BERT: padding, [unused*] and the specials).
    let start = if vocab > 2000 { 1000 } else { vocab.min(5) };
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            let mut ids = vec![cls];
            ids.extend((0..tokens - 2).map(|_| {
                // xorshift64: cheap and deterministic.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (start + state % (vocab - start).max(1)) as u32
            }));
            ids.push(sep);
            Encoded {
                type_ids: vec![0; ids.len()],
                ids,
                truncated: false,
            }
        })
        .collect()
}

/// Peak resident memory of this process (Linux `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
