//! Greedy search and the logits processors, driven through `generate`.

mod common;

use common::{hash_logits, table_logits, tokens, MockModel};
use lmrs_core::{Error, SpecialTokens};
use lmrs_generate::{generate, GenerationConfig};

const EOS: u32 = 1;

fn special() -> SpecialTokens {
    SpecialTokens {
        pad: Some(0),
        eos: vec![EOS],
        bos: None,
        decoder_start: Some(0),
    }
}

fn run<F: Fn(&[u32]) -> Vec<f32>>(
    prompts: &[Vec<u32>],
    f: F,
    cfg: &GenerationConfig,
) -> Vec<Vec<u32>> {
    let mut model = MockModel::new(prompts, f);
    let out = generate(&mut model, prompts, cfg, &special(), None).unwrap();
    tokens(&out).into_iter().map(|mut s| s.remove(0)).collect()
}

/// Constant logits: token 2 best, then 3, 4, 5; start and EOS very unlikely.
fn constant(history: &[u32]) -> Vec<f32> {
    let _ = history;
    vec![-10.0, -10.0, 3.0, 2.0, 1.0, 0.5]
}

#[test]
fn stops_at_eos_and_keeps_it() {
    let f = table_logits(&[(&[0], &[(2, 0.7)]), (&[0, 2], &[(3, 0.8)])], 5, EOS);
    let cfg = GenerationConfig {
        max_new_tokens: Some(10),
        ..Default::default()
    };
    assert_eq!(run(&[vec![0]], f, &cfg), vec![vec![0, 2, 3, 1]]);
}

#[test]
fn stops_at_max_length_counting_the_prompt() {
    let cfg = GenerationConfig {
        max_length: Some(5),
        ..Default::default()
    };
    let out = run(&[vec![0, 4]], constant, &cfg);
    assert_eq!(out, vec![vec![0, 4, 2, 2, 2]]);
    // max_new_tokens wins over max_length.
    let cfg = GenerationConfig {
        max_length: Some(5),
        max_new_tokens: Some(2),
        ..Default::default()
    };
    assert_eq!(run(&[vec![0, 4]], constant, &cfg), vec![vec![0, 4, 2, 2]]);
    // Unset: 20 new tokens (HF v5).
    let out = run(&[vec![0, 4]], constant, &GenerationConfig::default());
    assert_eq!(out[0].len(), 22);
}

#[test]
fn prompt_at_max_length_is_an_error() {
    let mut model = MockModel::new(&[vec![0, 2, 3]], constant);
    let cfg = GenerationConfig {
        max_length: Some(3),
        ..Default::default()
    };
    let err = generate(&mut model, &[vec![0, 2, 3]], &cfg, &special(), None).unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err}");
}

#[test]
fn min_length_suppresses_eos() {
    let eos_first = |_: &[u32]| vec![-5.0, 4.0, 1.0, 2.0];
    let cfg = GenerationConfig {
        max_new_tokens: Some(10),
        ..Default::default()
    };
    assert_eq!(run(&[vec![0]], eos_first, &cfg), vec![vec![0, 1]]);
    let cfg = GenerationConfig {
        max_new_tokens: Some(10),
        min_new_tokens: Some(3),
        ..Default::default()
    };
    assert_eq!(run(&[vec![0]], eos_first, &cfg), vec![vec![0, 3, 3, 3, 1]]);
    // min_length counts the prompt: total length 3 before EOS may come.
    let cfg = GenerationConfig {
        max_new_tokens: Some(10),
        min_length: Some(3),
        ..Default::default()
    };
    assert_eq!(run(&[vec![0]], eos_first, &cfg), vec![vec![0, 3, 3, 1]]);
}

#[test]
fn no_repeat_ngram_bans_seen_bigrams() {
    let cfg = GenerationConfig {
        max_new_tokens: Some(7),
        no_repeat_ngram_size: Some(2),
        ..Default::default()
    };
    assert_eq!(
        run(&[vec![0]], constant, &cfg),
        vec![vec![0, 2, 2, 3, 2, 4, 2, 5]]
    );
}

#[test]
fn repetition_penalty_discourages_seen_tokens() {
    let f = |_: &[u32]| vec![-10.0, -10.0, 2.0, 1.5, 1.2, 1.1];
    let cfg = GenerationConfig {
        max_new_tokens: Some(6),
        repetition_penalty: Some(2.0),
        ..Default::default()
    };
    assert_eq!(run(&[vec![0]], f, &cfg), vec![vec![0, 2, 3, 4, 5, 2, 2]]);
}

#[test]
fn bad_words_single_and_multi_token() {
    let f = |_: &[u32]| vec![-10.0, -10.0, 3.0, 2.0, 1.0, 0.5];
    let cfg = GenerationConfig {
        max_new_tokens: Some(6),
        bad_words_ids: Some(vec![vec![3], vec![2, 2]]),
        ..Default::default()
    };
    assert_eq!(run(&[vec![0]], f, &cfg), vec![vec![0, 2, 4, 2, 4, 2, 4]]);
    // A bad word equal to EOS is dropped, as in HF: EOS stays allowed.
    let eos_first = |_: &[u32]| vec![-5.0, 4.0, 1.0, 2.0];
    let cfg = GenerationConfig {
        max_new_tokens: Some(6),
        bad_words_ids: Some(vec![vec![EOS]]),
        ..Default::default()
    };
    assert_eq!(run(&[vec![0]], eos_first, &cfg), vec![vec![0, 1]]);
}

#[test]
fn forced_bos_and_eos() {
    let f = |h: &[u32]| hash_logits(h, 16, None);
    let cfg = GenerationConfig {
        max_length: Some(6),
        forced_bos_token_id: Some(7),
        forced_eos_token_id: Some(vec![9]),
        eos_token_id: Some(vec![]),
        ..Default::default()
    };
    let plain = GenerationConfig {
        forced_bos_token_id: None,
        ..cfg.clone()
    };
    let free = run(
        &[vec![0]],
        f,
        &GenerationConfig {
            forced_eos_token_id: None,
            ..plain.clone()
        },
    );
    let out = run(&[vec![0]], f, &cfg);
    assert_eq!(out[0].len(), 6);
    assert_eq!(out[0][1], 7);
    assert_ne!(free[0][1], 7);
    assert_ne!(free[0][5], 9);
    assert_eq!(out[0][5], 9);
    // Forced BOS only fires on a length-1 sequence.
    assert_eq!(run(&[vec![0, 3]], f, &cfg), run(&[vec![0, 3]], f, &plain));
}

#[test]
fn batch_equals_rows_alone_and_finished_rows_leave() {
    let f = |h: &[u32]| hash_logits(h, 24, Some(EOS));
    let prompts = vec![vec![0, 5], vec![0, 7, 9, 3], vec![0], vec![0, 11, 2]];
    let cfg = GenerationConfig {
        max_new_tokens: Some(30),
        ..Default::default()
    };
    let mut model = MockModel::new(&prompts, f);
    let batch = generate(&mut model, &prompts, &cfg, &special(), None).unwrap();
    let lens: Vec<usize> = batch.iter().map(|s| s[0].tokens.len()).collect();
    for (i, p) in prompts.iter().enumerate() {
        let alone = run(std::slice::from_ref(p), f, &cfg);
        assert_eq!(batch[i][0].tokens, alone[0], "input {i}");
        assert_eq!(batch[i][0].score, None);
    }
    // Rows end at different lengths, and the model saw fewer rows as they finished.
    assert!(lens.iter().any(|&l| l != lens[0]), "{lens:?}");
    assert_eq!(model.rows_per_step[0], 4);
    assert!(model.rows_per_step.windows(2).all(|w| w[1] <= w[0]));
    let generated: usize = batch
        .iter()
        .zip(&prompts)
        .map(|(s, p)| s[0].tokens.len() - p.len())
        .sum();
    assert_eq!(model.rows_per_step.iter().sum::<usize>(), generated);
}

#[test]
fn streaming_reports_each_token() {
    let f = |h: &[u32]| hash_logits(h, 24, Some(EOS));
    let prompts = vec![vec![0, 5], vec![0, 6]];
    let mut model = MockModel::new(&prompts, f);
    let mut seen: Vec<Vec<u32>> = vec![Vec::new(); 2];
    let mut cb = |i: usize, t: u32| seen[i].push(t);
    let cfg = GenerationConfig {
        max_new_tokens: Some(12),
        ..Default::default()
    };
    let out = generate(&mut model, &prompts, &cfg, &special(), Some(&mut cb)).unwrap();
    for i in 0..2 {
        assert_eq!(seen[i], out[i][0].tokens[2..].to_vec());
    }
}

#[test]
fn non_finite_logits_are_an_error() {
    let f = |h: &[u32]| {
        let mut v = vec![0.0, 1.0, 2.0];
        if h.len() > 2 {
            v[1] = f32::NAN;
        }
        v
    };
    let mut model = MockModel::new(&[vec![0]], f);
    let cfg = GenerationConfig {
        max_new_tokens: Some(5),
        ..Default::default()
    };
    let err = generate(&mut model, &[vec![0]], &cfg, &special(), None).unwrap_err();
    assert!(matches!(err, Error::NonFinite(_)), "{err}");
}

#[test]
fn row_count_mismatch_is_an_error() {
    let mut model = MockModel::new(&[vec![0], vec![0]], constant);
    let err = generate(
        &mut model,
        &[vec![0]],
        &GenerationConfig::default(),
        &special(),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
}
