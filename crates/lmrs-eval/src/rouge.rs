//! ROUGE-N, ROUGE-L and ROUGE-Lsum as Google's `rouge-score` 0.1.2 computes them
//! (`rouge_scorer.RougeScorer` with its default tokenizer), with bootstrap intervals as its
//! `BootstrapAggregator`.
//!
//! Tokenizer: lowercase, every character outside `[a-z0-9]` becomes a space, split on spaces;
//! with the stemmer, tokens longer than 3 characters go through NLTK's Porter stemmer
//! ([`crate::porter`]). ROUGE-L is the longest common subsequence of the whole texts;
//! ROUGE-Lsum splits both texts into sentences on `\n` and scores the union LCS of each
//! reference sentence against all predicted sentences, counting each token at most as often
//! as it occurs (ROUGE-1.5.5's summary-level LCS). With several references per example the
//! one with the highest F is kept per ROUGE type (`score_multi`). `rouge-score`'s
//! `split_summaries` (NLTK sentence splitting) is not provided: put newlines between
//! sentences yourself.

use crate::bootstrap::{self, BootstrapOptions, Interval};
use crate::hash::FxHashMap;
use crate::porter;
use crate::{EvalError, Result};
use serde::Serialize;
use std::fmt;

/// A ROUGE variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RougeType {
    /// ROUGE-N: n-gram overlap (`rouge1`, `rouge2`, …).
    N(usize),
    /// ROUGE-L: longest common subsequence of the whole texts (`rougeL`).
    L,
    /// ROUGE-Lsum: summary-level union LCS over newline-separated sentences (`rougeLsum`).
    Lsum,
}

impl RougeType {
    /// `rouge1`, `rouge2`, `rougeL`, `rougeLsum` (the names `rouge-score` uses).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "rougeL" => Ok(Self::L),
            "rougeLsum" => Ok(Self::Lsum),
            _ => name
                .strip_prefix("rouge")
                .filter(|d| d.len() == 1)
                .and_then(|d| d.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .map(Self::N)
                .ok_or_else(|| {
                    EvalError::InvalidOption(format!(
                        "unknown ROUGE type '{name}' (use rouge1..rouge9, rougeL, rougeLsum)"
                    ))
                }),
        }
    }

    /// The default set: `rouge1`, `rouge2`, `rougeL`, `rougeLsum`.
    pub fn defaults() -> Vec<Self> {
        vec![Self::N(1), Self::N(2), Self::L, Self::Lsum]
    }
}

impl fmt::Display for RougeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::N(n) => write!(f, "rouge{n}"),
            Self::L => f.write_str("rougeL"),
            Self::Lsum => f.write_str("rougeLsum"),
        }
    }
}

/// Precision, recall and F1 of one example (`rouge-score`'s `Score`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Score {
    /// Matches over the prediction's size.
    pub precision: f64,
    /// Matches over the reference's size.
    pub recall: f64,
    /// Harmonic mean of the two (0 when both are 0).
    pub fmeasure: f64,
}

impl Score {
    fn new(precision: f64, recall: f64) -> Self {
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Self {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// Scores example pairs; keeps a vocabulary (and the stems) across calls so a corpus is
/// tokenized and stemmed once per distinct word.
#[derive(Debug, Clone)]
pub struct RougeScorer {
    types: Vec<RougeType>,
    use_stemmer: bool,
    /// Raw token → id of its (stemmed) form.
    vocab: FxHashMap<String, u32>,
    /// Stemmed form → id.
    forms: FxHashMap<String, u32>,
}

impl RougeScorer {
    /// A scorer for `types` (at least one), with or without Porter stemming (`rouge-score`'s
    /// `use_stemmer`, default off there).
    pub fn new(types: &[RougeType], use_stemmer: bool) -> Result<Self> {
        if types.is_empty() {
            return Err(EvalError::InvalidOption("no ROUGE type requested".into()));
        }
        Ok(Self {
            types: types.to_vec(),
            use_stemmer,
            vocab: FxHashMap::default(),
            forms: FxHashMap::default(),
        })
    }

    /// The types scored, in the order of [`RougeScorer::score`]'s result.
    pub fn types(&self) -> &[RougeType] {
        &self.types
    }

    /// `rouge-score`'s default tokenizer: the tokens of `text` (stemmed if enabled).
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        raw_tokens(text)
            .into_iter()
            .map(|t| {
                if self.use_stemmer && t.len() > 3 {
                    porter::stem(&t)
                } else {
                    t
                }
            })
            .collect()
    }

    fn token_ids(&mut self, text: &str) -> Vec<u32> {
        raw_tokens(text)
            .into_iter()
            .map(|raw| {
                if let Some(&id) = self.vocab.get(&raw) {
                    return id;
                }
                let form = if self.use_stemmer && raw.len() > 3 {
                    porter::stem(&raw)
                } else {
                    raw.clone()
                };
                let next = self.forms.len() as u32;
                let id = *self.forms.entry(form).or_insert(next);
                self.vocab.insert(raw, id);
                id
            })
            .collect()
    }

    /// Scores of `prediction` against `reference`, one per type (`RougeScorer.score`).
    pub fn score(&mut self, reference: &str, prediction: &str) -> Vec<Score> {
        let types = self.types.clone();
        let needs_whole = types.iter().any(|t| *t != RougeType::Lsum);
        let (ref_ids, pred_ids) = if needs_whole {
            (self.token_ids(reference), self.token_ids(prediction))
        } else {
            (Vec::new(), Vec::new())
        };
        types
            .iter()
            .map(|t| match *t {
                RougeType::N(n) => score_ngrams(&ref_ids, &pred_ids, n),
                RougeType::L => score_lcs(&ref_ids, &pred_ids),
                RougeType::Lsum => {
                    let r = self.sentences(reference);
                    let p = self.sentences(prediction);
                    summary_level_lcs(&r, &p)
                }
            })
            .collect()
    }

    /// Scores against several references: per type, those of the reference with the highest
    /// F (the first on ties), as `RougeScorer.score_multi`.
    pub fn score_multi(&mut self, references: &[String], prediction: &str) -> Vec<Score> {
        let all: Vec<Vec<Score>> = references
            .iter()
            .map(|r| self.score(r, prediction))
            .collect();
        (0..self.types.len())
            .map(|k| {
                let mut best = Score::default();
                let mut best_f = f64::NEG_INFINITY;
                for s in &all {
                    if s[k].fmeasure > best_f {
                        best_f = s[k].fmeasure;
                        best = s[k];
                    }
                }
                best
            })
            .collect()
    }

    /// Non-empty `\n`-separated lines, tokenized.
    fn sentences(&mut self, text: &str) -> Vec<Vec<u32>> {
        text.split('\n')
            .filter(|s| !s.is_empty())
            .map(|s| self.token_ids(s))
            .collect()
    }
}

/// Lowercase, map everything outside `[a-z0-9]` to a separator, split.
fn raw_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        // Python's str.lower() maps exactly two non-ASCII code points into [a-z0-9]: KELVIN
        // SIGN to 'k' and LATIN CAPITAL LETTER I WITH DOT ABOVE to 'i' + a combining dot.
        let mapped = match c {
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            'a'..='z' | '0'..='9' => Some(c),
            '\u{212A}' => Some('k'),
            '\u{130}' => {
                cur.push('i');
                None
            }
            _ => None,
        };
        match mapped {
            Some(m) => cur.push(m),
            None if !cur.is_empty() => tokens.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    tokens
}

fn ngram_map(tokens: &[u32], n: usize) -> FxHashMap<&[u32], u32> {
    let mut m = FxHashMap::default();
    if tokens.len() >= n {
        for g in tokens.windows(n) {
            *m.entry(g).or_insert(0) += 1;
        }
    }
    m
}

fn score_ngrams(reference: &[u32], prediction: &[u32], n: usize) -> Score {
    let r = ngram_map(reference, n);
    let p = ngram_map(prediction, n);
    let overlap: u32 = r
        .iter()
        .map(|(g, &c)| c.min(p.get(g).copied().unwrap_or(0)))
        .sum();
    let r_total = reference.len().saturating_sub(n - 1);
    let p_total = prediction.len().saturating_sub(n - 1);
    Score::new(
        f64::from(overlap) / p_total.max(1) as f64,
        f64::from(overlap) / r_total.max(1) as f64,
    )
}

/// Length of the longest common subsequence (one DP row).
fn lcs_len(a: &[u32], b: &[u32]) -> usize {
    let mut row = vec![0u32; b.len() + 1];
    for &x in a {
        let mut diag = 0;
        for (j, &y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    row[b.len()] as usize
}

fn score_lcs(reference: &[u32], prediction: &[u32]) -> Score {
    if reference.is_empty() || prediction.is_empty() {
        return Score::default();
    }
    let l = lcs_len(reference, prediction) as f64;
    Score::new(l / prediction.len() as f64, l / reference.len() as f64)
}

/// Indices into `r` of one LCS of `r` and `c`, chosen by `rouge-score`'s backtracking rule.
fn lcs_indices(r: &[u32], c: &[u32], out: &mut Vec<usize>) {
    let cols = c.len() + 1;
    let mut t = vec![0u32; (r.len() + 1) * cols];
    for i in 1..=r.len() {
        for j in 1..=c.len() {
            t[i * cols + j] = if r[i - 1] == c[j - 1] {
                t[(i - 1) * cols + j - 1] + 1
            } else {
                t[(i - 1) * cols + j].max(t[i * cols + j - 1])
            };
        }
    }
    let (mut i, mut j) = (r.len(), c.len());
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i * cols + j - 1] > t[(i - 1) * cols + j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
}

fn summary_level_lcs(reference: &[Vec<u32>], prediction: &[Vec<u32>]) -> Score {
    if reference.is_empty() || prediction.is_empty() {
        return Score::default();
    }
    let m: usize = reference.iter().map(Vec::len).sum();
    let n: usize = prediction.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return Score::default();
    }
    let mut counts_r: FxHashMap<u32, usize> = FxHashMap::default();
    let mut counts_c: FxHashMap<u32, usize> = FxHashMap::default();
    for &t in reference.iter().flatten() {
        *counts_r.entry(t).or_insert(0) += 1;
    }
    for &t in prediction.iter().flatten() {
        *counts_c.entry(t).or_insert(0) += 1;
    }
    let mut hits = 0usize;
    let mut union = Vec::new();
    for r in reference {
        union.clear();
        for c in prediction {
            lcs_indices(r, c, &mut union);
        }
        union.sort_unstable();
        union.dedup();
        for &i in &union {
            let t = r[i];
            let (Some(cc), Some(cr)) = (counts_c.get_mut(&t), counts_r.get_mut(&t)) else {
                continue;
            };
            if *cc > 0 && *cr > 0 {
                hits += 1;
                *cc -= 1;
                *cr -= 1;
            }
        }
    }
    Score::new(hits as f64 / n as f64, hits as f64 / m as f64)
}

/// ROUGE over a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct RougeOptions {
    /// Types to compute (default rouge1, rouge2, rougeL, rougeLsum).
    pub types: Vec<RougeType>,
    /// Porter-stem tokens longer than 3 characters (default false, as `rouge-score`).
    pub use_stemmer: bool,
    /// Bootstrap settings for the intervals.
    pub bootstrap: BootstrapOptions,
}

impl Default for RougeOptions {
    fn default() -> Self {
        Self {
            types: RougeType::defaults(),
            use_stemmer: false,
            bootstrap: BootstrapOptions::default(),
        }
    }
}

/// Corpus intervals of one ROUGE type.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RougeAggregate {
    /// Precision: mean and bootstrap interval.
    pub precision: Interval,
    /// Recall: mean and bootstrap interval.
    pub recall: Interval,
    /// F1: mean and bootstrap interval.
    pub fmeasure: Interval,
}

/// ROUGE of a corpus: per-example scores and aggregates, in the order of `types`.
#[derive(Debug, Clone, PartialEq)]
pub struct RougeReport {
    /// The types, in the order of the scores.
    pub types: Vec<RougeType>,
    /// `per_example[i][k]`: example `i`, type `types[k]`.
    pub per_example: Vec<Vec<Score>>,
    /// Aggregate per type.
    pub aggregate: Vec<RougeAggregate>,
}

/// Score every prediction against its references (one or more each) and aggregate with the
/// bootstrap.
pub fn rouge(
    predictions: &[String],
    references: &[Vec<String>],
    opts: &RougeOptions,
) -> Result<RougeReport> {
    crate::check_pairs(predictions.len(), references.len())?;
    bootstrap::validate(&opts.bootstrap)?;
    let mut scorer = RougeScorer::new(&opts.types, opts.use_stemmer)?;
    let per_example: Vec<Vec<Score>> = predictions
        .iter()
        .zip(references)
        .map(|(p, refs)| match refs.as_slice() {
            [single] => scorer.score(single, p),
            many => scorer.score_multi(many, p),
        })
        .collect();
    let rows: Vec<Vec<f64>> = per_example
        .iter()
        .map(|s| {
            s.iter()
                .flat_map(|x| [x.precision, x.recall, x.fmeasure])
                .collect()
        })
        .collect();
    let iv = bootstrap::intervals(&rows, &opts.bootstrap)?;
    let aggregate = iv
        .chunks(3)
        .map(|c| RougeAggregate {
            precision: c[0],
            recall: c[1],
            fmeasure: c[2],
        })
        .collect();
    Ok(RougeReport {
        types: opts.types.clone(),
        per_example,
        aggregate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_lowercases_and_splits_on_non_alphanumerics() {
        let s = RougeScorer::new(&[RougeType::L], false).unwrap();
        assert_eq!(
            s.tokenize("The QUICK-brown fox's 2nd\tjump, café!"),
            ["the", "quick", "brown", "fox", "s", "2nd", "jump", "caf"]
        );
        let stemmed = RougeScorer::new(&[RougeType::L], true).unwrap();
        assert_eq!(stemmed.tokenize("running dogs ran"), ["run", "dog", "ran"]);
    }

    #[test]
    fn known_scores() {
        let mut s = RougeScorer::new(&RougeType::defaults(), false).unwrap();
        let got = s.score("the cat sat on the mat", "the cat on the mat");
        // rouge1: 5 of 5 predicted, 5 of 6 reference unigrams.
        assert!((got[0].precision - 1.0).abs() < 1e-12);
        assert!((got[0].recall - 5.0 / 6.0).abs() < 1e-12);
        // rouge2: "the cat", "on the", "the mat" of 4 predicted / 5 reference bigrams.
        assert!((got[1].precision - 0.75).abs() < 1e-12);
        assert!((got[1].recall - 0.6).abs() < 1e-12);
        // rougeL: LCS 5.
        assert!((got[2].recall - 5.0 / 6.0).abs() < 1e-12);
        let empty = s.score("", "the cat");
        assert!(empty.iter().all(|x| *x == Score::default()));
    }

    #[test]
    fn parse_types() {
        assert_eq!(RougeType::parse("rouge3").unwrap(), RougeType::N(3));
        assert_eq!(RougeType::parse("rougeLsum").unwrap(), RougeType::Lsum);
        for bad in ["rouge0", "rougeX", "bleu", "rouge12"] {
            assert!(RougeType::parse(bad).is_err(), "{bad}");
        }
    }
}
