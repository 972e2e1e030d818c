//! Numeric helpers on one row of scores: log-softmax, argmax, sampling, and a bounded
//! top-k selection that never sorts (or copies) the whole row.
//!
//! Ties are broken by the lower index, matching `torch.argmax` (first maximum). `torch.topk`
//! leaves tie order unspecified; we use the stable order (score descending, index ascending).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use lmrs_core::{Error, Result};
use rand::Rng;

/// Fail with [`Error::NonFinite`] when `values` holds a NaN or an infinity.
pub fn check_finite(values: &[f32], what: &str) -> Result<()> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::NonFinite(what.to_string()))
    }
}

/// `out = log_softmax(row)` like `torch.nn.functional.log_softmax` (`x - max - ln Σ exp(x - max)`).
pub fn log_softmax(row: &[f32], out: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| f64::from((x - max).exp())).sum();
    let log_sum = sum.ln() as f32;
    for (o, &x) in out.iter_mut().zip(row) {
        *o = (x - max) - log_sum;
    }
}

/// Index of the largest value; the first one on ties (`torch.argmax`). 0 for an all `-inf` row.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Draw an index with probability `softmax(row)`; `-inf` entries are never drawn.
pub fn sample(row: &[f32], rng: &mut impl Rng) -> Result<usize> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY || max.is_nan() {
        return Err(Error::NonFinite(
            "sampling distribution: every token was filtered out".into(),
        ));
    }
    // A +inf score (logits over a vanishing temperature) makes `x - max` NaN for it: the
    // distribution is undefined, and drawing from it would silently return token 0.
    if max == f32::INFINITY || row.iter().any(|x| x.is_nan()) {
        return Err(Error::NonFinite(
            "sampling distribution: scores are not finite (is the temperature too small?)".into(),
        ));
    }
    let total: f64 = row.iter().map(|&x| f64::from((x - max).exp())).sum();
    let mut target = rng.random::<f64>() * total;
    let mut last = 0;
    for (i, &x) in row.iter().enumerate() {
        let p = f64::from((x - max).exp());
        if p > 0.0 {
            last = i;
            if target < p {
                return Ok(i);
            }
            target -= p;
        }
    }
    // Rounding left a sliver of mass: the last drawable token takes it.
    Ok(last)
}

/// A Gumbel(0, 1) draw; adding one to each log-weight and taking the top k samples k items
/// without replacement, in draw order.
pub fn gumbel(rng: &mut impl Rng) -> f32 {
    let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    (-(-u.ln()).ln()) as f32
}

/// One candidate of a top-k selection: ranked by `key`, carrying its `score`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The value ranked on (the score itself, or score plus Gumbel noise when sampling).
    pub key: f32,
    /// Position in the flattened input (`beam * vocab + token` in beam search).
    pub index: usize,
    /// The value carried along.
    pub score: f32,
}

/// `Ordering::Less` when `a` ranks before `b`: larger key first, then smaller index.
pub fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    b.key
        .partial_cmp(&a.key)
        .unwrap_or(Ordering::Equal)
        .then(a.index.cmp(&b.index))
}

/// Heap entry whose `Ord` puts the worst-ranked candidate on top.
struct Worst(Candidate);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        rank(&self.0, &other.0) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        rank(&self.0, &other.0)
    }
}

/// Keeps the best `k` candidates pushed so far in `O(log k)` per accepted push.
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    /// An empty selection of at most `k` candidates.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Offer a candidate.
    #[inline]
    pub fn push(&mut self, c: Candidate) {
        if self.heap.len() < self.k {
            self.heap.push(Worst(c));
        } else if let Some(worst) = self.heap.peek() {
            if rank(&c, &worst.0) == Ordering::Less {
                self.heap.pop();
                self.heap.push(Worst(c));
            }
        }
    }

    /// The kept candidates, best first.
    pub fn into_sorted(self) -> Vec<Candidate> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|w| w.0)
            .collect()
    }
}

/// The `k` best scores of `row` (best first), as `(score, index)` candidates.
pub fn top_k(row: &[f32], k: usize) -> Vec<Candidate> {
    let mut top = TopK::new(k);
    for (index, &score) in row.iter().enumerate() {
        top.push(Candidate {
            key: score,
            index,
            score,
        });
    }
    top.into_sorted()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn top_k_orders_by_score_then_index() {
        let row = [1.0, 3.0, 2.0, 3.0, -1.0];
        let got: Vec<usize> = top_k(&row, 3).iter().map(|c| c.index).collect();
        assert_eq!(got, vec![1, 3, 2]);
        assert_eq!(top_k(&row, 10).len(), 5);
    }

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
    }

    #[test]
    fn log_softmax_normalises() {
        let mut out = [0.0; 3];
        log_softmax(&[1.0, 2.0, 3.0], &mut out);
        let total: f32 = out.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!((out[2] - (-0.407_605_96)).abs() < 1e-6);
    }

    #[test]
    fn sample_never_draws_filtered_tokens() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let row = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0];
        for _ in 0..200 {
            let i = sample(&row, &mut rng).unwrap();
            assert!(i == 1 || i == 3);
        }
        assert!(sample(&[f32::NEG_INFINITY; 2], &mut rng).is_err());
    }

    #[test]
    fn sample_refuses_non_finite_scores() {
        // 1e-40 as a temperature: finite logits become +inf, and NaN after the max shift.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        assert!(sample(&[f32::INFINITY, 1.0, f32::INFINITY], &mut rng).is_err());
        assert!(sample(&[0.5, f32::NAN, 1.0], &mut rng).is_err());
    }
}
