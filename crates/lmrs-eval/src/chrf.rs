//! chrF and chrF++ as sacreBLEU 2.6.0's `CHRF().corpus_score` computes them: character n-grams
//! up to 6 (whitespace removed), optional word n-grams (chrF++ with `word_order` 2), β = 2, the
//! per-order statistics summed over the corpus, and sacreBLEU's "effective order" averaging (no
//! epsilon smoothing) unless `eps_smoothing` is set. Per example, the reference with the best
//! sentence chrF counts.

use crate::bleu::{nrefs, py_split, SACREBLEU_VERSION};
use crate::hash::FxHashMap;
use crate::{check_pairs, EvalError, Result};
use serde::Serialize;

/// chrF settings; the defaults are sacreBLEU's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChrfOptions {
    /// Character n-gram order (default 6).
    pub char_order: usize,
    /// Word n-gram order (default 0; 2 gives chrF++).
    pub word_order: usize,
    /// Weight of recall against precision (default 2).
    pub beta: u32,
    /// Lowercase first (default false).
    pub lowercase: bool,
    /// Keep whitespace inside character n-grams (default false).
    pub whitespace: bool,
    /// Epsilon smoothing as chrF++.py, NLTK and Moses (default false).
    pub eps_smoothing: bool,
}

impl Default for ChrfOptions {
    fn default() -> Self {
        Self {
            char_order: 6,
            word_order: 0,
            beta: 2,
            lowercase: false,
            whitespace: false,
            eps_smoothing: false,
        }
    }
}

/// A chrF score (sacreBLEU's `CHRFScore`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChrfScore {
    /// `chrF2`, or `chrF2++` with word n-grams of order 2.
    pub name: String,
    /// chrF in 0..100.
    pub score: f64,
    /// sacreBLEU's signature, e.g. `nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0`.
    pub signature: String,
}

impl ChrfScore {
    /// The line sacreBLEU prints: `chrF2|SIGNATURE = 52.43`.
    pub fn format(&self) -> String {
        format!("{}|{} = {:.2}", self.name, self.signature, self.score)
    }
}

type Counts = Vec<FxHashMap<Vec<char>, u64>>;

const PUNCTS: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// All n-gram counters of one segment: char orders 1..=char_order, then word orders.
fn extract(text: &str, opts: &ChrfOptions) -> Counts {
    let text = if opts.lowercase {
        text.to_lowercase()
    } else {
        text.to_string()
    };
    let chars: Vec<char> = if opts.whitespace {
        text.chars().collect()
    } else {
        py_split(&text).flat_map(str::chars).collect()
    };
    let mut out = Vec::with_capacity(opts.char_order + opts.word_order);
    for n in 1..=opts.char_order {
        let mut m = FxHashMap::default();
        if chars.len() >= n {
            for g in chars.windows(n) {
                *m.entry(g.to_vec()).or_insert(0) += 1;
            }
        }
        out.push(m);
    }
    if opts.word_order > 0 {
        let words = split_punctuation(&text);
        for n in 1..=opts.word_order {
            let mut m = FxHashMap::default();
            if words.len() >= n {
                for g in words.windows(n) {
                    // Joined with spaces (sacreBLEU's `extract_word_ngrams`) as a char key.
                    *m.entry(g.join(" ").chars().collect()).or_insert(0) += 1;
                }
            }
            out.push(m);
        }
    }
    out
}

/// sacreBLEU's `_remove_punctuation`: one leading or trailing punctuation mark becomes a word.
fn split_punctuation(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for w in py_split(text) {
        let chars: Vec<char> = w.chars().collect();
        if chars.len() == 1 {
            words.push(w.to_string());
        } else if PUNCTS.contains(chars[chars.len() - 1]) {
            words.push(chars[..chars.len() - 1].iter().collect());
            words.push(chars[chars.len() - 1].to_string());
        } else if PUNCTS.contains(chars[0]) {
            words.push(chars[0].to_string());
            words.push(chars[1..].iter().collect());
        } else {
            words.push(w.to_string());
        }
    }
    words
}

/// `[hyp, ref, match]` per order.
fn match_stats(hyp: &Counts, reference: &Counts) -> Vec<u64> {
    let mut stats = Vec::with_capacity(3 * hyp.len());
    for (h, r) in hyp.iter().zip(reference) {
        let mut hyp_count = 0;
        let mut matched = 0;
        for (g, &c) in h {
            hyp_count += c;
            if let Some(&rc) = r.get(g) {
                matched += c.min(rc);
            }
        }
        stats.push(if r.is_empty() { 0 } else { hyp_count });
        stats.push(r.values().sum());
        stats.push(matched);
    }
    stats
}

/// sacreBLEU's `_compute_f_score`.
fn f_score(stats: &[u64], opts: &ChrfOptions) -> f64 {
    let eps = 1e-16;
    let factor = f64::from(opts.beta).powi(2);
    let order = opts.char_order + opts.word_order;
    let (mut score, mut avg_prec, mut avg_rec, mut effective) = (0.0, 0.0, 0.0, 0usize);
    for s in stats.chunks(3).take(order) {
        let (n_hyp, n_ref, n_match) = (s[0] as f64, s[1] as f64, s[2] as f64);
        let prec = if n_hyp > 0.0 { n_match / n_hyp } else { eps };
        let rec = if n_ref > 0.0 { n_match / n_ref } else { eps };
        let denom = factor * prec + rec;
        score += if denom > 0.0 {
            (1.0 + factor) * prec * rec / denom
        } else {
            eps
        };
        if n_hyp > 0.0 && n_ref > 0.0 {
            avg_prec += prec;
            avg_rec += rec;
            effective += 1;
        }
    }
    if opts.eps_smoothing {
        return 100.0 * score / order as f64;
    }
    if effective == 0 {
        avg_prec = 0.0;
        avg_rec = 0.0;
    } else {
        avg_prec /= effective as f64;
        avg_rec /= effective as f64;
    }
    if avg_prec + avg_rec != 0.0 {
        100.0 * (1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec)
    } else {
        0.0
    }
}

/// The statistics of one example: those of its best reference.
fn example_stats(hyp: &str, refs: &[String], opts: &ChrfOptions) -> Vec<u64> {
    let h = extract(hyp, opts);
    let mut best = Vec::new();
    let mut best_f = -1.0;
    for r in refs {
        let stats = match_stats(&h, &extract(r, opts));
        let f = f_score(&stats, opts);
        if f > best_f {
            best_f = f;
            best = stats;
        }
    }
    best
}

fn check(opts: &ChrfOptions) -> Result<()> {
    if opts.char_order + opts.word_order == 0 {
        return Err(EvalError::InvalidOption(
            "chrF needs a positive character or word order".into(),
        ));
    }
    Ok(())
}

/// Corpus chrF of `hypotheses` against their references (one or more each).
pub fn corpus_chrf(
    hypotheses: &[String],
    references: &[Vec<String>],
    opts: &ChrfOptions,
) -> Result<ChrfScore> {
    check_pairs(hypotheses.len(), references.len())?;
    check(opts)?;
    let width = 3 * (opts.char_order + opts.word_order);
    let mut total = vec![0u64; width];
    for (h, refs) in hypotheses.iter().zip(references) {
        for (t, s) in total.iter_mut().zip(example_stats(h, refs, opts)) {
            *t += s;
        }
    }
    let signature = format!(
        "nrefs:{}|case:{}|eff:{}|nc:{}|nw:{}|space:{}|version:{SACREBLEU_VERSION}",
        nrefs(references),
        if opts.lowercase { "lc" } else { "mixed" },
        if opts.eps_smoothing { "no" } else { "yes" },
        opts.char_order,
        opts.word_order,
        if opts.whitespace { "yes" } else { "no" },
    );
    Ok(ChrfScore {
        name: format!("chrF{}{}", opts.beta, "+".repeat(opts.word_order)),
        score: f_score(&total, opts),
        signature,
    })
}

/// Sentence chrF of each example (sacreBLEU's `sentence_score`), e.g. to rank examples.
pub fn sentence_chrf(
    hypotheses: &[String],
    references: &[Vec<String>],
    opts: &ChrfOptions,
) -> Result<Vec<f64>> {
    check_pairs(hypotheses.len(), references.len())?;
    check(opts)?;
    Ok(hypotheses
        .iter()
        .zip(references)
        .map(|(h, refs)| {
            let stats = example_stats(h, refs, opts);
            if stats.is_empty() {
                0.0
            } else {
                f_score(&stats, opts)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_100_and_empty_hypothesis_is_0() {
        let h = vec!["Das ist ein Test.".to_string()];
        let r = vec![h.clone()];
        let s = corpus_chrf(&h, &r, &ChrfOptions::default()).unwrap();
        assert!((s.score - 100.0).abs() < 1e-9);
        assert_eq!(s.name, "chrF2");
        let e = corpus_chrf(&[String::new()], &r, &ChrfOptions::default()).unwrap();
        assert_eq!(e.score, 0.0);
    }

    #[test]
    fn punctuation_is_split_off_words() {
        assert_eq!(
            split_punctuation("Hello, (world) ! !x"),
            ["Hello", ",", "(world", ")", "!", "!", "x"]
        );
    }
}
