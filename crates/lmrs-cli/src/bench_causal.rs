//! `lmrs bench` for decoder-only models: prompt processing (prefill) tokens/s over a
//! `--input-tokens` prompt, then decode tokens/s for `--new-tokens` forced tokens (greedy,
//! EOS suppressed), per batch size, and peak memory. The prompt is a fixed English text
//! tokenized and cut to length, so every engine can be given the same one.

use crate::bench::BenchArgs;
use crate::bench::{median, peak_rss_mb, threads};
use anyhow::{bail, Result};
use lmrs_core::{CausalLm, LogitsFor, Tensor};
use lmrs_generate::{generate, CausalSession, GenerationConfig};
use lmrs_pipelines::{LoadOptions, TextGenerationPipeline};
use std::time::Instant;

/// Text the benchmark prompt is cut from (repeated as needed).
pub const BENCH_TEXT: &str = "The Eiffel Tower is a wrought-iron lattice tower on the Champ de \
Mars in Paris, France. It is named after the engineer Gustave Eiffel, whose company designed and \
built the tower from 1887 to 1889. Locally nicknamed \"La dame de fer\" (French for \"Iron \
Lady\"), it was constructed as the centrepiece of the 1889 World's Fair, and to crown the \
centennial anniversary of the French Revolution. Although initially criticised by some of \
France's leading artists and intellectuals for its design, it has since become a global \
cultural icon of France and one of the most recognisable structures in the world. ";

#[derive(serde::Serialize)]
struct Case {
    batch: usize,
    prefill_ms: f64,
    prefill_tokens_per_s: f64,
    decode_s: f64,
    decode_tokens_per_s: f64,
}

#[derive(serde::Serialize)]
struct Report {
    model: String,
    threads: usize,
    input_tokens: usize,
    new_tokens: usize,
    load_s: f64,
    cases: Vec<Case>,
    peak_rss_mb: Option<f64>,
}

/// The benchmark prompt: [`BENCH_TEXT`] tokenized (with the tokenizer's special tokens) and cut
/// to `n` tokens.
pub fn bench_prompt(p: &TextGenerationPipeline, n: usize) -> Result<Vec<u32>> {
    let text = BENCH_TEXT.repeat(n / 40 + 2);
    let mut ids = p.tokenizer().encode_plain(&text, true)?;
    if ids.len() < n {
        bail!("the benchmark text gives only {} tokens", ids.len());
    }
    ids.truncate(n);
    Ok(ids)
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let new_tokens = args.new_tokens.unwrap_or(128);
    let input_tokens = args.input_tokens_or(200);
    if input_tokens < 2 || new_tokens == 0 || args.repeat == 0 {
        bail!("--input-tokens must be at least 2, --new-tokens and --repeat at least 1");
    }
    let t = Instant::now();
    let pipeline = TextGenerationPipeline::load(&args.model, &LoadOptions::default())?;
    let load_s = t.elapsed().as_secs_f64();
    let context = pipeline.model().max_positions();
    if input_tokens.saturating_add(new_tokens) > context {
        bail!(
            "--input-tokens {input_tokens} plus --new-tokens {new_tokens} exceed the model's \
             context of {context} positions"
        );
    }
    let prompt = bench_prompt(&pipeline, input_tokens)?;
    let model = pipeline.model();
    let device = lmrs_core::Device::Cpu;
    let mut cases = Vec::new();
    for &batch in &args.batches_or(&[1, 8]) {
        let prompts = vec![prompt.clone(); batch];
        // Prefill: the whole prompt in one forward pass, logits of the last position only.
        let ids: Vec<u32> = prompts.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(ids, (batch, prompt.len()), &device)?;
        let prefill_ms = median((0..=args.repeat).map(|_| -> Result<f64> {
            let mut cache = model.new_cache(&vec![0; batch], prompt.len())?;
            let t = Instant::now();
            model.forward(&ids, &mut cache, LogitsFor::Last)?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        }))?;
        // Decode: exactly `new_tokens` greedy steps after the prompt.
        let cfg = GenerationConfig {
            min_new_tokens: Some(new_tokens),
            max_new_tokens: Some(new_tokens),
            ..Default::default()
        };
        let mut times = Vec::new();
        for rep in 0..=args.repeat {
            let mut session = CausalSession::new(model, &prompts, new_tokens, true, &device)?;
            let t = Instant::now();
            generate(&mut session, &prompts, &cfg, &model.special_tokens(), None)?;
            if rep > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        let decode_s = median(times.into_iter().map(Ok))?;
        cases.push(Case {
            batch,
            prefill_ms,
            prefill_tokens_per_s: (batch * prompt.len()) as f64 / (prefill_ms / 1e3),
            decode_s,
            decode_tokens_per_s: (batch * new_tokens) as f64 / decode_s,
        });
    }
    let report = Report {
        model: pipeline.source().display().to_string(),
        threads: threads(),
        input_tokens: prompt.len(),
        new_tokens,
        load_s,
        cases,
        peak_rss_mb: peak_rss_mb(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("model: {}", report.model);
        println!(
            "threads: {}  prompt: {} tokens  decode: {} new tokens per sequence  load: {:.3} s",
            report.threads, report.input_tokens, report.new_tokens, report.load_s
        );
        println!(
            "{:>6} {:>12} {:>16} {:>12} {:>16}",
            "batch", "prefill ms", "prefill tok/s", "decode s", "decode tok/s"
        );
        for c in &report.cases {
            println!(
                "{:>6} {:>12.1} {:>16.1} {:>12.3} {:>16.1}",
                c.batch, c.prefill_ms, c.prefill_tokens_per_s, c.decode_s, c.decode_tokens_per_s
            );
        }
        if let Some(mb) = report.peak_rss_mb {
            println!("peak RSS: {mb:.1} MiB");
        }
    }
    Ok(())
}
