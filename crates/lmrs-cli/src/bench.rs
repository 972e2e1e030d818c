//! `lmrs bench`: a fixed-length seq2seq workload (every sequence generates exactly
//! `--new-tokens` tokens) timed end to end, so numbers compare across engines. Decoder-only
//! models go to [`crate::bench_causal`], encoders to [`crate::embed_bench`].

use crate::args::at_least_one;
use anyhow::{bail, Context, Result};
use clap::Args;
use lmrs_core::{Seq2SeqLm, Tensor};
use lmrs_generate::GenerationConfig;
use lmrs_pipelines::{LoadOptions, Seq2SeqPipeline};
use std::path::PathBuf;
use std::time::Instant;

/// `lmrs bench` flags.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model: a GGUF file (decoder-only: prefill and decode tokens/s), a folder or a hub id
    /// in the Hugging Face cache (an encoder such as all-MiniLM-L6-v2: embeddings/s, as
    /// `lmrs embed --bench`).
    #[arg(short, long)]
    pub model: String,
    /// Input length in tokens [default: 200; encoders: 128]; at most the model's context.
    #[arg(long, value_parser = at_least_one)]
    pub input_tokens: Option<usize>,
    /// Generated tokens per sequence (forced: min = max; default 50 for encoder-decoders,
    /// 128 for decoder-only models).
    #[arg(long)]
    pub new_tokens: Option<usize>,
    /// Batch sizes to measure, comma separated [default: 1,8; encoders: 1,32].
    #[arg(long, value_delimiter = ',', value_parser = at_least_one)]
    pub batch: Vec<usize>,
    /// Beam counts to measure, comma separated (1: greedy).
    #[arg(long, value_delimiter = ',', default_value = "1,4", value_parser = at_least_one)]
    pub beams: Vec<usize>,
    /// Timed repetitions per case (the median is reported) after one warm-up.
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    pub repeat: usize,
    /// JSON file `{"input_ids": [[...], ...]}` with the input rows to use (e.g. the ones a
    /// Python baseline used); default: deterministic pseudo-random ids.
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// `--input-tokens`, or `default` when not given.
    pub fn input_tokens_or(&self, default: usize) -> usize {
        self.input_tokens.unwrap_or(default)
    }

    /// `--batch`, or `default` when not given.
    pub fn batches_or(&self, default: &[usize]) -> Vec<usize> {
        if self.batch.is_empty() {
            default.to_vec()
        } else {
            self.batch.clone()
        }
    }
}

#[derive(serde::Serialize)]
struct Case {
    batch: usize,
    beams: usize,
    encode_ms: f64,
    generate_s: f64,
    tokens_per_s: f64,
    output_tokens: Vec<usize>,
}

#[derive(serde::Serialize)]
struct Report {
    model: String,
    threads: usize,
    input_tokens: usize,
    new_tokens: usize,
    load_s: f64,
    encode_ms: f64,
    cases: Vec<Case>,
    peak_rss_mb: Option<f64>,
}

/// Longest input or output an encoder-decoder benchmark takes.
const MAX_SEQ2SEQ_BENCH_TOKENS: usize = 16_384;

pub fn run(args: BenchArgs) -> Result<()> {
    if lmrs_pipelines::is_causal_model(&args.model, None)? {
        return crate::bench_causal::run(&args);
    }
    if lmrs_pipelines::is_encoder_model(&args.model, None)? {
        return run_encoder(&args);
    }
    let input_tokens = args.input_tokens_or(200);
    let batches = args.batches_or(&[1, 8]);
    let new_tokens = args.new_tokens.unwrap_or(50);
    if input_tokens < 2 || new_tokens == 0 || args.repeat == 0 {
        bail!("--input-tokens must be at least 2, --new-tokens and --repeat at least 1");
    }
    // Relative positions set no limit; the encoder's attention grows with the square of the
    // input, so lengths past this are no benchmark of anything a user runs.
    if input_tokens > MAX_SEQ2SEQ_BENCH_TOKENS || new_tokens > MAX_SEQ2SEQ_BENCH_TOKENS {
        bail!(
            "--input-tokens and --new-tokens must be at most {MAX_SEQ2SEQ_BENCH_TOKENS} for an \
             encoder-decoder"
        );
    }
    let t = Instant::now();
    let pipeline = Seq2SeqPipeline::load(
        &args.model,
        &LoadOptions {
            max_input_tokens: Some(input_tokens.max(512)),
            ..Default::default()
        },
    )?;
    let load_s = t.elapsed().as_secs_f64();
    let max_batch = batches.iter().copied().max().unwrap_or(1);
    let rows = input_rows(&args, &pipeline, max_batch, input_tokens)?;

    // Encoder alone, batch 1.
    let ids = Tensor::new(rows[0].as_slice(), &lmrs_core::Device::Cpu)?.unsqueeze(0)?;
    let mask = ids.ones_like()?;
    let encode_ms = median((0..=args.repeat).map(|_| -> Result<f64> {
        let t = Instant::now();
        pipeline.model().encode(&ids, &mask)?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }))?;

    let mut cases = Vec::new();
    for &beams in &args.beams {
        for &batch in &batches {
            let cfg = GenerationConfig {
                num_beams: Some(beams),
                min_new_tokens: Some(new_tokens),
                max_new_tokens: Some(new_tokens),
                ..Default::default()
            };
            let inputs: Vec<&[u32]> = rows.iter().take(batch).map(|r| r.as_slice()).collect();
            let mut times = Vec::new();
            let mut output_tokens = Vec::new();
            let mut enc = Vec::new();
            for rep in 0..=args.repeat {
                let t = Instant::now();
                let out = pipeline.generate_batch(&inputs, &cfg, None)?;
                let secs = t.elapsed().as_secs_f64();
                if rep > 0 {
                    // The first run warms caches and the allocator.
                    times.push(secs);
                    enc.push(out.first().map_or(0.0, |o| o.encode_ms));
                }
                output_tokens = out.iter().map(|o| o.sequences[0].token_ids.len()).collect();
            }
            let generate_s = median(times.into_iter().map(Ok))?;
            cases.push(Case {
                batch,
                beams,
                encode_ms: median(enc.into_iter().map(Ok))?,
                generate_s,
                tokens_per_s: (batch * new_tokens) as f64 / generate_s,
                output_tokens,
            });
        }
    }
    let report = Report {
        model: pipeline.model_dir().display().to_string(),
        threads: threads(),
        input_tokens,
        new_tokens,
        load_s,
        encode_ms,
        cases,
        peak_rss_mb: peak_rss_mb(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!("model: {}", r.model);
    println!(
        "threads: {}  input: {} tokens  output: {} new tokens per sequence",
        r.threads, r.input_tokens, r.new_tokens
    );
    println!(
        "load: {:.3} s   encoder (batch 1): {:.2} ms",
        r.load_s, r.encode_ms
    );
    println!(
        "{:>6} {:>6} {:>12} {:>12} {:>12}",
        "batch", "beams", "total s", "encode ms", "tokens/s"
    );
    for c in &r.cases {
        println!(
            "{:>6} {:>6} {:>12.4} {:>12.2} {:>12.1}",
            c.batch, c.beams, c.generate_s, c.encode_ms, c.tokens_per_s
        );
    }
    if let Some(mb) = r.peak_rss_mb {
        println!("peak RSS: {mb:.1} MiB");
    }
}

/// Input rows: from `--inputs` or deterministic pseudo-random ids ending in EOS.
/// Embeddings/s of an encoder (sentence-transformers folders bring their pooling), as
/// `lmrs embed --bench`: 128-token inputs at batch 1 and 32 unless told otherwise.
fn run_encoder(args: &BenchArgs) -> Result<()> {
    let t = Instant::now();
    let pipeline = lmrs_pipelines::EmbeddingPipeline::load(&args.model, &Default::default())?;
    let spec = crate::embed_bench::BenchSpec {
        tokens: args.input_tokens_or(128),
        batches: args.batches_or(&[1, 32]),
        repeat: args.repeat,
        inputs: args.inputs.clone(),
        json: args.json,
    };
    crate::embed_bench::run(&pipeline, t.elapsed().as_secs_f64(), &spec)
}

fn input_rows(
    args: &BenchArgs,
    p: &Seq2SeqPipeline,
    n: usize,
    input_tokens: usize,
) -> Result<Vec<Vec<u32>>> {
    if let Some(path) = &args.inputs {
        #[derive(serde::Deserialize)]
        struct Inputs {
            input_ids: Vec<Vec<u32>>,
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let inputs: Inputs = serde_json::from_str(&text)
            .with_context(|| format!("invalid JSON in {}", path.display()))?;
        if inputs.input_ids.len() < n {
            bail!(
                "{} holds {} rows; the largest batch needs {n}",
                path.display(),
                inputs.input_ids.len()
            );
        }
        return Ok(inputs.input_ids);
    }
    let vocab = p
        .tokenizer()
        .inner()
        .get_vocab_size(true)
        .min(p.model().vocab_size()) as u64;
    let eos = p.model().special_tokens().eos.first().copied().unwrap_or(1);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    Ok((0..n)
        .map(|_| {
            let mut row: Vec<u32> = (0..input_tokens - 1)
                .map(|_| {
                    // xorshift64: cheap, deterministic, good enough to pick token ids.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (3 + state % (vocab.max(4) - 3)) as u32
                })
                .collect();
            row.push(eos);
            row
        })
        .collect())
}

/// Compute threads in use (`--threads`, else all cores).
pub(crate) fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

pub(crate) fn median(values: impl Iterator<Item = Result<f64>>) -> Result<f64> {
    let mut v = values.collect::<Result<Vec<f64>>>()?;
    if v.is_empty() {
        return Ok(0.0);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v[v.len() / 2])
}

/// Peak resident memory of this process (Linux `VmHWM`).
pub(crate) fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
