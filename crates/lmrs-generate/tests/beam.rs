//! Beam search on hand-made probability tables whose answers are known by construction.

mod common;

use common::{hash_logits, table_logits, tokens, MockModel};
use lmrs_core::{Error, SpecialTokens};
use lmrs_generate::{generate, EarlyStopping, GeneratedSequence, GenerationConfig};

const EOS: u32 = 1;

fn special() -> SpecialTokens {
    SpecialTokens {
        pad: Some(0),
        eos: vec![EOS],
        bos: None,
        decoder_start: Some(0),
    }
}

fn beam(num_beams: usize, early: EarlyStopping, max_new: usize) -> GenerationConfig {
    GenerationConfig {
        num_beams: Some(num_beams),
        num_return_sequences: Some(num_beams),
        early_stopping: Some(early),
        max_new_tokens: Some(max_new),
        ..Default::default()
    }
}

fn run<F: Fn(&[u32]) -> Vec<f32>>(
    prompts: &[Vec<u32>],
    f: F,
    cfg: &GenerationConfig,
) -> Vec<Vec<GeneratedSequence>> {
    let mut model = MockModel::new(prompts, f);
    generate(&mut model, prompts, cfg, &special(), None).unwrap()
}

fn assert_scores(seqs: &[GeneratedSequence], expected: &[f32]) {
    let got: Vec<f32> = seqs.iter().map(|s| s.score.unwrap()).collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(expected) {
        assert!((g - e).abs() < 1e-4, "scores {got:?} vs {expected:?}");
    }
}

#[test]
fn beam_search_beats_greedy() {
    // 0 start, 1 eos, 2 a, 3 b. Greedy takes a (0.6) then eos (0.4): p = 0.24.
    // Beam search finds b (0.4) then eos (0.9): p = 0.36.
    let table: &[common::Entry] = &[
        (&[0], &[(2, 0.6), (3, 0.4)]),
        (&[0, 2], &[(1, 0.4), (2, 0.3), (3, 0.3)]),
        (&[0, 3], &[(1, 0.9)]),
    ];
    let greedy = GenerationConfig {
        max_new_tokens: Some(5),
        ..Default::default()
    };
    let f = table_logits(table, 4, EOS);
    assert_eq!(tokens(&run(&[vec![0]], &f, &greedy))[0][0], vec![0, 2, 1]);
    let out = run(&[vec![0]], &f, &beam(2, EarlyStopping::Heuristic, 5));
    assert_eq!(tokens(&out)[0], vec![vec![0, 3, 1], vec![0, 2, 1]]);
    assert_scores(&out[0], &[0.36f32.ln() / 2.0, 0.24f32.ln() / 2.0]);
}

/// 0 start, 1 eos, 2 a, 3 b, 4 c. `[0, eos]` and `[0, a, eos]` finish first; `[0, a, b, eos]`
/// is better under length penalty 1 but needs one more step.
fn early_table() -> impl Fn(&[u32]) -> Vec<f32> {
    table_logits(
        &[
            (&[0], &[(1, 0.46), (2, 0.44), (3, 0.1)]),
            (&[0, 2], &[(1, 0.3), (3, 0.7)]),
            (&[0, 3], &[(1, 0.5)]),
            (&[0, 2, 3], &[(1, 0.99)]),
        ],
        5,
        EOS,
    )
}

#[test]
fn early_stopping_true_stops_with_num_beams_finished() {
    let out = run(
        &[vec![0]],
        early_table(),
        &beam(2, EarlyStopping::Enabled, 6),
    );
    assert_eq!(tokens(&out)[0], vec![vec![0, 1], vec![0, 2, 1]]);
    assert_scores(&out[0], &[0.46f32.ln(), (0.44f32 * 0.3).ln() / 2.0]);
}

#[test]
fn early_stopping_false_keeps_searching_while_improvable() {
    let out = run(
        &[vec![0]],
        early_table(),
        &beam(2, EarlyStopping::Heuristic, 6),
    );
    assert_eq!(tokens(&out)[0], vec![vec![0, 2, 3, 1], vec![0, 1]]);
    assert_scores(&out[0], &[(0.44f32 * 0.7 * 0.99).ln() / 3.0, 0.46f32.ln()]);
}

/// 0 start, 1 eos, 2 a, 3 b, 4 c, 5 d. With length penalty 2 the heuristic of `false` gives up
/// after two steps; `"never"` estimates at `max_length` and finds the longer hypotheses.
fn never_table() -> impl Fn(&[u32]) -> Vec<f32> {
    table_logits(
        &[
            (&[0], &[(1, 0.6), (2, 0.3), (3, 0.1)]),
            (&[0, 2], &[(1, 0.55), (4, 0.3)]),
            (&[0, 3], &[(5, 0.99)]),
        ],
        6,
        EOS,
    )
}

#[test]
fn early_stopping_never_with_length_penalty() {
    let mut cfg = beam(2, EarlyStopping::Heuristic, 6);
    cfg.length_penalty = Some(2.0);
    let out = run(&[vec![0]], never_table(), &cfg);
    assert_eq!(tokens(&out)[0], vec![vec![0, 2, 1], vec![0, 1]]);
    assert_scores(&out[0], &[(0.3f32 * 0.55).ln() / 4.0, 0.6f32.ln()]);

    cfg.early_stopping = Some(EarlyStopping::Never);
    let out = run(&[vec![0]], never_table(), &cfg);
    assert_eq!(tokens(&out)[0], vec![vec![0, 3, 5, 1], vec![0, 2, 4, 1]]);
    assert_scores(
        &out[0],
        &[
            (0.1f32 * 0.99 * 0.99).ln() / 9.0,
            (0.3f32 * 0.3 * 0.99).ln() / 9.0,
        ],
    );
}

#[test]
fn returns_requested_count_best_first() {
    let f = |h: &[u32]| hash_logits(h, 32, Some(EOS));
    let mut cfg = beam(4, EarlyStopping::Heuristic, 12);
    cfg.num_return_sequences = Some(3);
    let out = run(&[vec![0, 5, 6]], f, &cfg);
    assert_eq!(out[0].len(), 3);
    let scores: Vec<f32> = out[0].iter().map(|s| s.score.unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for s in &out[0] {
        assert_eq!(&s.tokens[..3], &[0, 5, 6]);
        assert!(s.tokens.len() <= 15);
        // Finished by EOS, or at max length.
        assert!(s.tokens.last() == Some(&EOS) || s.tokens.len() == 15);
    }
    // The three hypotheses are distinct.
    assert_ne!(out[0][0].tokens, out[0][1].tokens);
    assert_ne!(out[0][1].tokens, out[0][2].tokens);
}

#[test]
fn batch_equals_inputs_alone_and_done_inputs_leave() {
    let f = |h: &[u32]| hash_logits(h, 32, Some(EOS));
    let prompts = vec![vec![0, 5], vec![0, 9], vec![0, 12], vec![0, 3]];
    for early in [
        EarlyStopping::Heuristic,
        EarlyStopping::Enabled,
        EarlyStopping::Never,
    ] {
        let cfg = beam(3, early, 25);
        let mut model = MockModel::new(&prompts, f);
        let batch = generate(&mut model, &prompts, &cfg, &special(), None).unwrap();
        for (i, p) in prompts.iter().enumerate() {
            let alone = run(std::slice::from_ref(p), f, &cfg);
            assert_eq!(batch[i], alone[0], "input {i}, {early:?}");
        }
        assert_eq!(model.rows_per_step[0], 12);
        assert!(model.rows_per_step.windows(2).all(|w| w[1] <= w[0]));
        assert!(
            model.rows_per_step.last() < model.rows_per_step.first(),
            "{early:?}: {:?}",
            model.rows_per_step
        );
    }
}

#[test]
fn beam_sampling_is_seeded() {
    let f = |h: &[u32]| hash_logits(h, 32, Some(EOS));
    let mut cfg = beam(3, EarlyStopping::Heuristic, 10);
    cfg.do_sample = Some(true);
    cfg.seed = Some(11);
    let a = run(&[vec![0, 4]], f, &cfg);
    let b = run(&[vec![0, 4]], f, &cfg);
    assert_eq!(a, b);
    assert_eq!(a[0].len(), 3);
}

#[test]
fn invalid_beam_options_are_errors() {
    let f = |h: &[u32]| hash_logits(h, 8, Some(EOS));
    let mut cfg = beam(2, EarlyStopping::Heuristic, 4);
    cfg.num_return_sequences = Some(3);
    let mut model = MockModel::new(&[vec![0]], f);
    let err = generate(&mut model, &[vec![0]], &cfg, &special(), None).unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err}");

    let cfg = beam(2, EarlyStopping::Heuristic, 4);
    let mut cb = |_: usize, _: u32| {};
    let err = generate(&mut model, &[vec![0]], &cfg, &special(), Some(&mut cb)).unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err}");
}
