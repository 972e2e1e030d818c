//! Beam search and beam sampling, following the vectorised `_beam_search` of `transformers` v5
//! (`generation/utils.py`: `_get_top_k_continuations`, `_get_running_beams_for_next_iteration`,
//! `_update_finished_beams`, `_check_early_stop_heuristic`), one input at a time.
//!
//! Per input and step:
//! 1. each beam's logits → `log_softmax` → processors (→ warpers when sampling) → plus the
//!    beam's running score;
//! 2. the best `K = max(2, 1 + #eos) * num_beams` continuations over `num_beams * vocab` are
//!    kept (sampling: drawn without replacement, via Gumbel-top-k, in draw order). Ties rank by
//!    (score descending, flat index ascending), a stable stand-in for `torch.topk`;
//! 3. a continuation "hits" when its token is an EOS id or the sequence reaches `max_length`;
//!    the next running beams are the best `num_beams` after adding `-1e9` to hits;
//! 4. hits among the first `num_beams` continuations become finished hypotheses with score
//!    `sum_logprobs / generated_len ^ length_penalty`, merged into the `num_beams` kept ones;
//! 5. the early-stop heuristic compares the best running score (at the current generated
//!    length, or at `max_length` for `"never"` with a positive length penalty) with the worst
//!    kept one.
//!
//! An input is done when no improvement is possible, when `early_stopping` is `true` and all
//! kept hypotheses are finished, or when every continuation hit (max length). HF keeps running
//! a done input (its results can no longer change); here its beams leave the model.

use lmrs_core::{Error, Result, StepModel};
use rand::rngs::StdRng;

use crate::config::EarlyStopping;
use crate::generate::{
    check_same_vocab, logits_to_vec, GeneratedSequence, RowLimits, Run, SeedSource,
};
use crate::processors::RowContext;
use crate::select::{gumbel, log_softmax, Candidate, TopK};

/// HF's stand-in for minus infinity in beam bookkeeping.
const NEG: f32 = -1.0e9;

#[derive(Debug, Clone)]
struct Hypothesis {
    tokens: Vec<u32>,
    score: f32,
    finished: bool,
}

struct BeamInput {
    limits: RowLimits,
    running: Vec<Vec<u32>>,
    running_scores: Vec<f32>,
    /// HF `sequences` / `beam_scores` / `is_sent_finished`, best first.
    kept: Vec<Hypothesis>,
    /// HF `is_early_stop_heuristic_unsatisfied`.
    improvable: bool,
    rng: Option<StdRng>,
}

pub(crate) fn beam_search<M: StepModel + ?Sized>(
    model: &mut M,
    prompts: &[Vec<u32>],
    limits: &[RowLimits],
    run: &Run<'_>,
    seeds: &mut SeedSource,
) -> Result<Vec<Vec<GeneratedSequence>>> {
    let num_beams = run.cfg.num_beams;
    let keep = 2usize.max(1 + run.cfg.eos.len()) * num_beams;
    let mut inputs: Vec<BeamInput> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| BeamInput {
            limits: limits[i],
            running: vec![p.clone(); num_beams],
            // Only the first beam is live at the start, so the beams do not all pick the
            // same tokens.
            running_scores: (0..num_beams)
                .map(|b| if b == 0 { 0.0 } else { NEG })
                .collect(),
            kept: vec![
                Hypothesis {
                    tokens: p.clone(),
                    score: NEG,
                    finished: false,
                };
                num_beams
            ],
            improvable: true,
            rng: run.warpers.map(|_| seeds.rng(i)),
        })
        .collect();
    let expand: Vec<usize> = (0..prompts.len())
        .flat_map(|i| std::iter::repeat_n(i, num_beams))
        .collect();
    model.select_rows(&expand)?;

    let mut active: Vec<usize> = (0..prompts.len()).collect();
    let mut log_probs = Vec::new();
    let mut expected_vocab = None;
    while !active.is_empty() {
        let last: Vec<u32> = active
            .iter()
            .flat_map(|&a| inputs[a].running.iter().map(|s| s[s.len() - 1]))
            .collect();
        let logits = model.step(&last)?;
        let (data, vocab) = logits_to_vec(&logits, last.len())?;
        if expected_vocab.is_none() {
            run.processors.check_vocab(vocab)?;
            if num_beams * vocab < keep {
                return Err(Error::InvalidOption(format!(
                    "beam search keeps {keep} candidates per step but num_beams * vocab is only {}",
                    num_beams * vocab
                )));
            }
            log_probs.resize(vocab, 0.0);
        }
        check_same_vocab(&mut expected_vocab, vocab)?;
        let mut rows = Vec::with_capacity(last.len());
        let mut still_active = Vec::with_capacity(active.len());
        for (slot, chunk) in data.chunks(num_beams * vocab).enumerate() {
            let input = &mut inputs[active[slot]];
            if let Some(sources) = input.advance(chunk, vocab, keep, run, &mut log_probs) {
                rows.extend(sources.iter().map(|&b| slot * num_beams + b));
                still_active.push(active[slot]);
            }
        }
        if !still_active.is_empty() {
            model.select_rows(&rows)?;
        }
        active = still_active;
    }

    let per_input = run.cfg.num_return_sequences;
    Ok(inputs
        .into_iter()
        .map(|input| {
            input
                .kept
                .into_iter()
                .take(per_input)
                .map(|h| GeneratedSequence {
                    tokens: h.tokens,
                    score: Some(h.score),
                })
                .collect()
        })
        .collect())
}

impl BeamInput {
    /// One step over this input's `num_beams` rows of logits. Returns the source beam of each
    /// next running beam, or `None` once the input is done.
    fn advance(
        &mut self,
        logits: &[f32],
        vocab: usize,
        keep: usize,
        run: &Run<'_>,
        log_probs: &mut [f32],
    ) -> Option<Vec<usize>> {
        let num_beams = self.running.len();
        let cur_len = self.running[0].len();
        let prompt_len = self.limits.prompt_len;
        let length_penalty = run.cfg.length_penalty;

        // 1-2. Accumulated log-probs and the top `keep` continuations.
        let mut top = TopK::new(keep);
        for (beam, row) in logits.chunks(vocab).enumerate() {
            log_softmax(row, log_probs);
            let ctx = RowContext {
                history: &self.running[beam],
                min_length: self.limits.min_length,
                max_length: self.limits.max_length,
            };
            run.processors.apply(&ctx, log_probs);
            if let Some(warpers) = run.warpers {
                warpers.apply(log_probs);
            }
            let base = self.running_scores[beam];
            let offset = beam * vocab;
            for (token, &lp) in log_probs.iter().enumerate() {
                let score = lp + base;
                let key = match self.rng.as_mut() {
                    Some(rng) => score + gumbel(rng),
                    None => score,
                };
                top.push(Candidate {
                    key,
                    index: offset + token,
                    score,
                });
            }
        }
        let cands = top.into_sorted();
        let token_of = |c: &Candidate| (c.index % vocab) as u32;
        let beam_of = |c: &Candidate| c.index / vocab;
        let extend = |running: &[Vec<u32>], c: &Candidate| {
            let mut seq = Vec::with_capacity(cur_len + 1);
            seq.extend_from_slice(&running[beam_of(c)]);
            seq.push(token_of(c));
            seq
        };

        // 3. Which continuations hit a stopping criterion.
        let at_max = cur_len + 1 >= self.limits.max_length;
        let hits: Vec<bool> = cands
            .iter()
            .map(|c| at_max || run.cfg.eos.contains(&token_of(c)))
            .collect();

        // Next running beams: the best non-hits (stable sort keeps candidate order on ties).
        let adjusted: Vec<f32> = cands
            .iter()
            .zip(&hits)
            .map(|(c, &hit)| if hit { c.score + NEG } else { c.score })
            .collect();
        let mut order: Vec<usize> = (0..cands.len()).collect();
        order.sort_by(|&a, &b| adjusted[b].total_cmp(&adjusted[a]));
        order.truncate(num_beams);
        let sources: Vec<usize> = order.iter().map(|&p| beam_of(&cands[p])).collect();
        let next_running: Vec<Vec<u32>> = order
            .iter()
            .map(|&p| extend(&self.running, &cands[p]))
            .collect();
        let next_scores: Vec<f32> = order.iter().map(|&p| adjusted[p]).collect();

        // 4. Merge newly finished hypotheses into the kept ones.
        let denom = ((cur_len + 1 - prompt_len) as f64).powf(length_penalty) as f32;
        let full = run.cfg.early_stopping == EarlyStopping::Enabled
            && self.kept.iter().all(|h| h.finished);
        let finishing = |p: usize| hits[p] && p < num_beams;
        let mut merged: Vec<(f32, usize)> = self
            .kept
            .iter()
            .enumerate()
            .map(|(i, h)| (h.score, i))
            .collect();
        for (p, c) in cands.iter().enumerate() {
            let mut s = c.score / denom;
            if full {
                s += NEG;
            }
            if !self.improvable {
                s += NEG;
            }
            if !finishing(p) {
                s += NEG;
            }
            merged.push((s, num_beams + p));
        }
        merged.sort_by(|a, b| b.0.total_cmp(&a.0));
        let kept: Vec<Hypothesis> = merged[..num_beams]
            .iter()
            .map(|&(score, pos)| match pos.checked_sub(num_beams) {
                None => self.kept[pos].clone(),
                Some(p) => Hypothesis {
                    tokens: extend(&self.running, &cands[p]),
                    score,
                    finished: finishing(p),
                },
            })
            .collect();
        self.kept = kept;
        self.running = next_running;
        self.running_scores = next_scores;

        // 5. Early-stop heuristic, evaluated at the new length.
        let cur_len = cur_len + 1;
        let best_len = if run.cfg.early_stopping == EarlyStopping::Never && length_penalty > 0.0 {
            self.limits.max_length - prompt_len
        } else {
            cur_len - prompt_len
        };
        let best = self.running_scores[0] / (best_len as f64).powf(length_penalty) as f32;
        let worst_kept = self
            .kept
            .iter()
            .map(|h| h.score)
            .fold(f32::INFINITY, f32::min);
        self.improvable &= self.kept.iter().any(|h| {
            if h.finished {
                best > worst_kept
            } else {
                best > NEG
            }
        });

        let all_finished = self.kept.iter().all(|h| h.finished);
        let done = !self.improvable
            || (run.cfg.early_stopping == EarlyStopping::Enabled && all_finished)
            || hits.iter().all(|&h| h);
        (!done).then_some(sources)
    }
}
