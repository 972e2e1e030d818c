//! Greedy search and multinomial sampling (HF `GenerationMixin._sample`).
//!
//! Each row advances one token per step: processors, then (sampling) warpers, then argmax or a
//! draw from `softmax`. A row stops at an EOS id or at its maximum length. HF keeps finished
//! rows in the batch and pads them with `pad_token_id`; here they leave the model
//! ([`StepModel::select_rows`]) and their sequence simply ends, which yields the same tokens
//! because rows never interact.
//!
//! With `num_return_sequences > 1` (sampling only) every input is first expanded to that many
//! rows, like HF's `_expand_inputs_for_generation`.

use lmrs_core::{Result, StepModel};
use rand::rngs::StdRng;

use crate::generate::{
    check_same_vocab, logits_to_vec, GeneratedSequence, RowLimits, Run, SeedSource, StopCheck,
    TokenCallback,
};
use crate::processors::RowContext;
use crate::select::{argmax, sample};

struct Row {
    input: usize,
    tokens: Vec<u32>,
    limits: RowLimits,
    rng: Option<StdRng>,
}

pub(crate) fn greedy_or_sample<M: StepModel + ?Sized>(
    model: &mut M,
    prompts: &[Vec<u32>],
    limits: &[RowLimits],
    run: &Run<'_>,
    seeds: &mut SeedSource,
    mut on_token: Option<TokenCallback<'_>>,
    mut stop: Option<StopCheck<'_>>,
) -> Result<Vec<Vec<GeneratedSequence>>> {
    let per_input = run.cfg.num_return_sequences;
    let mut rows = Vec::with_capacity(prompts.len() * per_input);
    for (input, prompt) in prompts.iter().enumerate() {
        for _ in 0..per_input {
            let index = rows.len();
            rows.push(Row {
                input,
                tokens: prompt.clone(),
                limits: limits[input],
                rng: run.warpers.map(|_| seeds.rng(index)),
            });
        }
    }
    if per_input > 1 {
        let expand: Vec<usize> = rows.iter().map(|r| r.input).collect();
        model.select_rows(&expand)?;
    }

    // `active[slot]` is the row held at model row `slot`.
    let mut active: Vec<usize> = (0..rows.len()).collect();
    let mut expected_vocab = None;
    while !active.is_empty() {
        let last: Vec<u32> = active
            .iter()
            .map(|&r| rows[r].tokens[rows[r].tokens.len() - 1])
            .collect();
        let logits = model.step(&last)?;
        let (mut data, vocab) = logits_to_vec(&logits, active.len())?;
        if expected_vocab.is_none() {
            run.processors.check_vocab(vocab)?;
        }
        check_same_vocab(&mut expected_vocab, vocab)?;
        let mut keep = Vec::with_capacity(active.len());
        for (slot, scores) in data.chunks_mut(vocab).enumerate() {
            let row = &mut rows[active[slot]];
            let (token, done) =
                advance(run, &mut row.tokens, &row.limits, row.rng.as_mut(), scores)?;
            if let Some(cb) = on_token.as_deref_mut() {
                cb(row.input, token);
            }
            let finished = done
                || stop
                    .as_deref_mut()
                    .is_some_and(|f| f(row.input, &row.tokens));
            if !finished {
                keep.push(slot);
            }
        }
        if keep.len() != active.len() {
            if !keep.is_empty() {
                model.select_rows(&keep)?;
            }
            active = keep.iter().map(|&slot| active[slot]).collect();
        }
    }

    let mut out: Vec<Vec<GeneratedSequence>> = vec![Vec::with_capacity(per_input); prompts.len()];
    for row in rows {
        out[row.input].push(GeneratedSequence {
            tokens: row.tokens,
            score: None,
        });
    }
    Ok(out)
}

/// Decide one row's next token from its `scores` (processors, then for sampling the warpers and
/// a draw from `rng`, else argmax) and append it to `tokens`. Returns the token and whether the
/// row is finished (an EOS id, or its maximum length).
pub(crate) fn advance(
    run: &Run<'_>,
    tokens: &mut Vec<u32>,
    limits: &RowLimits,
    rng: Option<&mut StdRng>,
    scores: &mut [f32],
) -> Result<(u32, bool)> {
    let ctx = RowContext {
        history: tokens,
        min_length: limits.min_length,
        max_length: limits.max_length,
    };
    run.processors.apply(&ctx, scores);
    let token = match (run.warpers, rng) {
        (Some(warpers), Some(rng)) => {
            warpers.apply(scores);
            sample(scores, rng)?
        }
        _ => argmax(scores),
    } as u32;
    tokens.push(token);
    let finished = run.cfg.eos.contains(&token) || tokens.len() >= limits.max_length;
    Ok((token, finished))
}
