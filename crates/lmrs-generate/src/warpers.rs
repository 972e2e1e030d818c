//! Sampling warpers of `transformers` (applied only when `do_sample`), in HF order:
//! temperature (`TemperatureLogitsWarper`) → top-k (`TopKLogitsWarper`) → top-p
//! (`TopPLogitsWarper`) → min-p (`MinPLogitsWarper`). Filtered tokens get `-inf`.
//!
//! `min_tokens_to_keep` is 1 for plain sampling; for beam sampling HF keeps
//! `number of EOS ids + 1` (2 without EOS) so a non-EOS continuation always survives.

use crate::config::ResolvedConfig;
use crate::select::top_k;

/// Temperature, top-k and top-p with HF's enabling rules.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitsWarpers {
    temperature: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f64>,
    min_p: Option<f64>,
    min_tokens_to_keep: usize,
}

impl LogitsWarpers {
    /// Warpers for `cfg`: temperature when != 1, top-k when != 0, top-p when < 1.
    pub fn new(cfg: &ResolvedConfig) -> Self {
        let min_tokens_to_keep = if cfg.is_beam() {
            cfg.eos.len().max(1) + 1
        } else {
            1
        };
        Self {
            temperature: (cfg.temperature != 1.0).then_some(cfg.temperature),
            top_k: (cfg.top_k != 0).then_some(cfg.top_k.max(min_tokens_to_keep)),
            top_p: (cfg.top_p < 1.0).then_some(cfg.top_p),
            min_p: cfg.min_p,
            min_tokens_to_keep,
        }
    }

    /// Warp one row of scores in place.
    pub fn apply(&self, scores: &mut [f32]) {
        if let Some(t) = self.temperature {
            scores.iter_mut().for_each(|s| *s /= t);
        }
        if let Some(k) = self.top_k {
            top_k_filter(scores, k);
        }
        if let Some(p) = self.top_p {
            top_p_filter(scores, p, self.min_tokens_to_keep);
        }
        if let Some(p) = self.min_p {
            min_p_filter(scores, p, self.min_tokens_to_keep);
        }
    }
}

/// Keep the scores at least as large as the k-th largest (ties with it survive, like HF).
pub fn top_k_filter(scores: &mut [f32], k: usize) {
    let k = k.min(scores.len());
    let Some(kth) = top_k(scores, k).last().map(|c| c.score) else {
        return;
    };
    for s in scores.iter_mut() {
        if *s < kth {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// HF top-p: sort ascending, drop tokens while the cumulative probability stays
/// `<= 1 - top_p`, always keeping the `min_tokens_to_keep` most likely.
///
/// Only finite scores take part: `-inf` ones have probability 0 and are dropped by HF anyway.
/// Ties are ordered by token index (torch's sort order on ties is unspecified).
pub fn top_p_filter(scores: &mut [f32], top_p: f64, min_tokens_to_keep: usize) {
    let mut live: Vec<(f32, usize)> = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_finite())
        .map(|(i, &s)| (s, i))
        .collect();
    if live.is_empty() {
        return;
    }
    live.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let max = live[live.len() - 1].0;
    let total: f32 = live.iter().map(|(s, _)| (s - max).exp()).sum();
    let threshold = (1.0 - top_p) as f32;
    let keep_from = live.len().saturating_sub(min_tokens_to_keep);
    let mut cumulative = 0.0f32;
    for (pos, &(s, i)) in live.iter().enumerate() {
        cumulative += (s - max).exp() / total;
        if pos < keep_from && cumulative <= threshold {
            scores[i] = f32::NEG_INFINITY;
        }
    }
}

/// HF min-p: drop tokens whose probability is below `min_p` times the most likely token's,
/// always keeping the `min_tokens_to_keep` most likely.
pub fn min_p_filter(scores: &mut [f32], min_p: f64, min_tokens_to_keep: usize) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return;
    }
    // p_i / p_max = exp(s_i - max): compare in log space, no normalisation needed.
    let threshold = (min_p as f32).ln();
    let keep: Vec<usize> = top_k(scores, min_tokens_to_keep.min(scores.len()))
        .iter()
        .map(|c| c.index)
        .collect();
    for (i, s) in scores.iter_mut().enumerate() {
        if *s - max < threshold && !keep.contains(&i) {
            *s = f32::NEG_INFINITY;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn min_p_drops_unlikely_tokens() {
        // probabilities 0.6, 0.3, 0.1: threshold 0.5 * 0.6 = 0.3 keeps the first two.
        let mut s = vec![0.6f32.ln(), 0.3f32.ln(), 0.1f32.ln()];
        min_p_filter(&mut s, 0.4, 1);
        assert!(s[0].is_finite() && s[1].is_finite());
        assert_eq!(s[2], f32::NEG_INFINITY);
        let mut s = vec![0.6f32.ln(), 0.3f32.ln(), 0.1f32.ln()];
        min_p_filter(&mut s, 1.0, 1);
        assert!(s[0].is_finite() && s[1] == f32::NEG_INFINITY);
    }

    use super::*;

    #[test]
    fn top_k_keeps_ties() {
        let mut s = vec![1.0, 3.0, 2.0, 2.0, 0.0];
        top_k_filter(&mut s, 2);
        let ni = f32::NEG_INFINITY;
        assert_eq!(s, vec![ni, 3.0, 2.0, 2.0, ni]);
    }

    #[test]
    fn top_p_keeps_smallest_nucleus() {
        // probabilities 0.5, 0.3, 0.2 (as log-weights).
        let base = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let mut s = base.to_vec();
        top_p_filter(&mut s, 0.75, 1);
        // ascending cumulative: 0.2, 0.5, 1.0; drop while <= 0.25 → only the 0.2 token.
        assert_eq!(s[2], f32::NEG_INFINITY);
        assert!(s[0].is_finite() && s[1].is_finite());
        let mut s = base.to_vec();
        top_p_filter(&mut s, 0.0, 2);
        assert_eq!(s[2], f32::NEG_INFINITY);
        assert!(s[1].is_finite());
    }
}
