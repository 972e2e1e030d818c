//! Multinomial sampling: seeded, reproducible, and equal to greedy with top_k = 1.

mod common;

use common::{hash_logits, tokens, MockModel};
use lmrs_core::SpecialTokens;
use lmrs_generate::{generate, GenerationConfig};

const EOS: u32 = 1;

fn special() -> SpecialTokens {
    SpecialTokens {
        pad: None,
        eos: vec![EOS],
        bos: None,
        decoder_start: None,
    }
}

fn logits(h: &[u32]) -> Vec<f32> {
    hash_logits(h, 40, Some(EOS))
}

fn run(prompts: &[Vec<u32>], cfg: &GenerationConfig) -> Vec<Vec<Vec<u32>>> {
    let mut model = MockModel::new(prompts, logits);
    tokens(&generate(&mut model, prompts, cfg, &special(), None).unwrap())
}

fn sampling(seed: u64) -> GenerationConfig {
    GenerationConfig {
        do_sample: Some(true),
        temperature: Some(1.5),
        top_k: Some(0),
        seed: Some(seed),
        max_new_tokens: Some(15),
        ..Default::default()
    }
}

#[test]
fn same_seed_same_tokens() {
    let prompts = vec![vec![0, 3], vec![0, 8]];
    let a = run(&prompts, &sampling(7));
    assert_eq!(a, run(&prompts, &sampling(7)));
    assert_ne!(a, run(&prompts, &sampling(8)));
}

#[test]
fn top_k_one_is_greedy() {
    let prompts = vec![vec![0, 3], vec![0, 8, 2]];
    let greedy = GenerationConfig {
        max_new_tokens: Some(15),
        ..Default::default()
    };
    let mut cfg = sampling(1);
    cfg.top_k = Some(1);
    assert_eq!(run(&prompts, &cfg), run(&prompts, &greedy));
    // A vanishing nucleus keeps only the most likely token too.
    let mut cfg = sampling(1);
    cfg.top_p = Some(0.0);
    assert_eq!(run(&prompts, &cfg), run(&prompts, &greedy));
}

#[test]
fn sampled_rows_do_not_depend_on_the_batch() {
    let prompts = vec![vec![0, 3], vec![0, 8], vec![0, 21]];
    let mut cfg = sampling(5);
    cfg.num_return_sequences = Some(2);
    let batch = run(&prompts, &cfg);
    assert_eq!(batch.len(), 3);
    assert!(batch.iter().all(|seqs| seqs.len() == 2));
    // Row streams are keyed by row position, so input 0 alone matches the batch's input 0.
    assert_eq!(run(&prompts[..1], &cfg)[0], batch[0]);
    // The two samples of an input come from different streams.
    assert_ne!(batch[0][0], batch[0][1]);
}

#[test]
fn sampling_validates_temperature() {
    let mut cfg = sampling(1);
    cfg.temperature = Some(0.0);
    let mut model = MockModel::new(&[vec![0]], logits);
    assert!(generate(&mut model, &[vec![0]], &cfg, &special(), None).is_err());
}
