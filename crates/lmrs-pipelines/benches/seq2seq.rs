//! Criterion benchmark of seq2seq generation with a fixed output length.
//!
//! By default it runs on the tiny committed fixture (fast, for regressions in overhead).
//! Point `LMRS_BENCH_MODEL` at a real-sized checkpoint (e.g. the t5-small-shaped one made by
//! `tools/bench_baselines.py make-model`) to measure what users see:
//!
//! ```text
//! LMRS_BENCH_MODEL=models/t5-small-random cargo bench -p lmrs-pipelines
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lmrs_generate::GenerationConfig;
use lmrs_pipelines::{LoadOptions, Seq2SeqPipeline};

const INPUT_TOKENS: usize = 200;
const NEW_TOKENS: usize = 50;

fn inputs(vocab: u32, batch: usize) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|b| {
            let mut row: Vec<u32> = (0..INPUT_TOKENS - 1)
                .map(|i| 3 + ((i * 7919 + b * 104729) as u32 % (vocab - 3)))
                .collect();
            row.push(1);
            row
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let model = std::env::var("LMRS_BENCH_MODEL").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/t5-v1_0-tiny"
        )
        .to_string()
    });
    let p = Seq2SeqPipeline::load(&model, &LoadOptions::default()).expect("benchmark model loads");
    let vocab = p.tokenizer().inner().get_vocab_size(true) as u32;
    let mut group = c.benchmark_group("t5_generate_200in_50out");
    group.sample_size(10);
    for beams in [1usize, 4] {
        for batch in [1usize, 8] {
            let rows = inputs(vocab, batch);
            let refs: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
            let cfg = GenerationConfig {
                num_beams: Some(beams),
                min_new_tokens: Some(NEW_TOKENS),
                max_new_tokens: Some(NEW_TOKENS),
                ..Default::default()
            };
            group.throughput(Throughput::Elements((batch * NEW_TOKENS) as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("beams{beams}"), format!("batch{batch}")),
                &refs,
                |b, refs| b.iter(|| p.generate_batch(refs, &cfg, None).expect("generation runs")),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
