//! Corpus BLEU as sacreBLEU 2.6.0's `BLEU().corpus_score` computes it: the `13a` tokenizer
//! (mteval-v13a, WMT's), n-grams up to 4, the closest reference length for the brevity penalty,
//! and `exp` smoothing (NIST's), with the `floor`, `add-k` and `none` methods also available.

use crate::{check_pairs, EvalError, Result};
use serde::Serialize;

/// The sacreBLEU version whose results (and signature format) this module reproduces.
pub const SACREBLEU_VERSION: &str = "2.6.0";

/// Python's `str.isspace()` (Rust's `char::is_whitespace` plus the separators U+001C–U+001F).
pub(crate) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no argument.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(py_isspace).filter(|t| !t.is_empty())
}

/// The tokenizer applied before counting n-grams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    /// mteval-v13a (sacreBLEU's default, `13a`).
    Mteval13a,
    /// No tokenization: split on whitespace only (`none`).
    None,
}

impl Tokenizer {
    /// Parse a sacreBLEU tokenizer name (`13a`, `none`).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "13a" => Ok(Self::Mteval13a),
            "none" => Ok(Self::None),
            _ => Err(EvalError::InvalidOption(format!(
                "unsupported BLEU tokenizer '{name}' (use 13a or none)"
            ))),
        }
    }

    /// The name in the signature.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mteval13a => "13a",
            Self::None => "none",
        }
    }

    /// Tokenize one line; tokens are separated by single spaces.
    pub fn tokenize(self, line: &str) -> String {
        match self {
            Self::Mteval13a => tokenize_13a(line),
            Self::None => line.to_string(),
        }
    }
}

/// sacreBLEU's `Tokenizer13a`: unescape a few entities, then split punctuation off words
/// (periods and commas only when not next to a digit, dashes after a digit).
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let chars: Vec<char> = format!(" {line} ").chars().collect();
    // 1. Pad the symbols {|}~ [\]^_` space!"#$%& (, ), *, +, :;<=>?@ and /.
    let mut s: Vec<char> = Vec::with_capacity(chars.len() * 2);
    for &c in &chars {
        let sym = matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/');
        if sym {
            s.extend([' ', c, ' ']);
        } else {
            s.push(c);
        }
    }
    let digit = |c: char| c.is_ascii_digit();
    let punct = |c: char| c == '.' || c == ',';
    // 2. `([^0-9])([\.,])` → `\1 \2 `, left to right without overlaps (as re.sub).
    s = sub_pairs(
        &s,
        |a, b| !digit(a) && punct(b),
        |a, b| vec![a, ' ', b, ' '],
    );
    // 3. `([\.,])([^0-9])` → ` \1 \2`.
    s = sub_pairs(
        &s,
        |a, b| punct(a) && !digit(b),
        |a, b| vec![' ', a, ' ', b],
    );
    // 4. `([0-9])(-)` → `\1 \2 `.
    s = sub_pairs(&s, |a, b| digit(a) && b == '-', |a, b| vec![a, ' ', b, ' ']);
    let s: String = s.into_iter().collect();
    py_split(&s).collect::<Vec<_>>().join(" ")
}

/// Replace non-overlapping matching pairs of characters, scanning left to right.
fn sub_pairs(
    s: &[char],
    matches: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> Vec<char>,
) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + s.len() / 4);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && matches(s[i], s[i + 1]) {
            out.extend(replace(s[i], s[i + 1]));
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Smoothing of zero n-gram matches (Chen & Cherry 2014).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smooth {
    /// No smoothing.
    None,
    /// Method 1: a zero count becomes this value (sacreBLEU default 0.1).
    Floor(f64),
    /// Method 2: add this to the counts and totals of orders above 1 (default 1).
    AddK(f64),
    /// Method 3, NIST's (sacreBLEU's default): the k-th zero precision becomes 1/2^k.
    Exp,
}

impl Smooth {
    /// Parse `exp`, `none`, `floor` or `add-k`, with the value for the last two (None: the
    /// default).
    pub fn parse(name: &str, value: Option<f64>) -> Result<Self> {
        match name {
            "exp" => Ok(Self::Exp),
            "none" => Ok(Self::None),
            "floor" => Ok(Self::Floor(value.unwrap_or(0.1))),
            "add-k" => Ok(Self::AddK(value.unwrap_or(1.0))),
            _ => Err(EvalError::InvalidOption(format!(
                "unknown smoothing '{name}' (use exp, floor, add-k or none)"
            ))),
        }
    }

    fn signature(self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Exp => "exp".into(),
            Self::Floor(v) => format!("floor[{v:.2}]"),
            Self::AddK(v) => format!("add-k[{v:.2}]"),
        }
    }
}

/// BLEU settings; the defaults are sacreBLEU's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BleuOptions {
    /// Lowercase before tokenizing (default false).
    pub lowercase: bool,
    /// Tokenizer (default 13a).
    pub tokenizer: Tokenizer,
    /// Smoothing (default exp).
    pub smooth: Smooth,
    /// Highest n-gram order (default 4).
    pub max_ngram_order: usize,
    /// Leave out orders with no n-grams at all (default false; use true for single sentences).
    pub effective_order: bool,
}

impl Default for BleuOptions {
    fn default() -> Self {
        Self {
            lowercase: false,
            tokenizer: Tokenizer::Mteval13a,
            smooth: Smooth::Exp,
            max_ngram_order: 4,
            effective_order: false,
        }
    }
}

/// A corpus BLEU score with its statistics (sacreBLEU's `BLEUScore`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BleuScore {
    /// BLEU in 0..100.
    pub score: f64,
    /// Matching n-grams per order.
    pub counts: Vec<u64>,
    /// Hypothesis n-grams per order.
    pub totals: Vec<u64>,
    /// Precisions per order in 0..100 (smoothed).
    pub precisions: Vec<f64>,
    /// Brevity penalty.
    pub bp: f64,
    /// Hypothesis length in tokens.
    pub sys_len: u64,
    /// Closest-reference length in tokens.
    pub ref_len: u64,
    /// sacreBLEU's signature, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`.
    pub signature: String,
}

impl BleuScore {
    /// The line sacreBLEU prints: `BLEU|SIGNATURE = 25.47 58.3/30.8/18.2/10.0 (BP = 1.000 …)`.
    pub fn format(&self) -> String {
        let precs: Vec<String> = self.precisions.iter().map(|p| format!("{p:.1}")).collect();
        let ratio = if self.ref_len > 0 {
            self.sys_len as f64 / self.ref_len as f64
        } else {
            0.0
        };
        format!(
            "BLEU|{} = {:.2} {} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})",
            self.signature,
            self.score,
            precs.join("/"),
            self.bp,
            ratio,
            self.sys_len,
            self.ref_len
        )
    }
}

/// `nrefs:N` or `nrefs:var` when the count varies (sacreBLEU's signature field).
pub(crate) fn nrefs(references: &[Vec<String>]) -> String {
    let first = references.first().map_or(0, Vec::len);
    if references.iter().all(|r| r.len() == first) {
        first.to_string()
    } else {
        "var".into()
    }
}

/// Count n-grams of orders 1..=max over space-separated tokens.
fn ngram_counts<'a>(
    tokens: &[&'a str],
    max: usize,
) -> std::collections::HashMap<Vec<&'a str>, u64> {
    let mut m = std::collections::HashMap::new();
    for n in 1..=max {
        for g in tokens.windows(n) {
            *m.entry(g.to_vec()).or_insert(0) += 1;
        }
    }
    m
}

/// Corpus BLEU of `hypotheses` against their references (one or more per hypothesis).
pub fn corpus_bleu(
    hypotheses: &[String],
    references: &[Vec<String>],
    opts: &BleuOptions,
) -> Result<BleuScore> {
    check_pairs(hypotheses.len(), references.len())?;
    if opts.max_ngram_order == 0 {
        return Err(EvalError::InvalidOption(
            "max n-gram order must be positive".into(),
        ));
    }
    let order = opts.max_ngram_order;
    let prep = |s: &str| {
        let s = if opts.lowercase {
            s.to_lowercase()
        } else {
            s.to_string()
        };
        opts.tokenizer.tokenize(s.trim_end_matches(py_isspace))
    };
    let (mut sys_len, mut ref_len) = (0u64, 0u64);
    let mut correct = vec![0u64; order];
    let mut total = vec![0u64; order];
    for (hyp, refs) in hypotheses.iter().zip(references) {
        let refs_tok: Vec<String> = refs.iter().map(|r| prep(r)).collect();
        let mut max_ref: std::collections::HashMap<Vec<&str>, u64> = Default::default();
        let mut ref_lens = Vec::new();
        for r in &refs_tok {
            let toks: Vec<&str> = py_split(r).collect();
            ref_lens.push(toks.len() as u64);
            for (g, c) in ngram_counts(&toks, order) {
                let e = max_ref.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        let hyp_tok = prep(hyp);
        let toks: Vec<&str> = py_split(&hyp_tok).collect();
        let hyp_len = toks.len() as u64;
        // Closest reference length, the shorter one on ties.
        let mut closest: Option<(u64, u64)> = None;
        for &l in &ref_lens {
            let d = hyp_len.abs_diff(l);
            if closest.is_none_or(|(cd, cl)| d < cd || (d == cd && l < cl)) {
                closest = Some((d, l));
            }
        }
        sys_len += hyp_len;
        ref_len += closest.map_or(0, |(_, l)| l);
        for (g, c) in ngram_counts(&toks, order) {
            let n = g.len() - 1;
            total[n] += c;
            if let Some(&rc) = max_ref.get(&g) {
                correct[n] += c.min(rc);
            }
        }
    }
    let signature = format!(
        "nrefs:{}|case:{}|eff:{}|tok:{}|smooth:{}|version:{SACREBLEU_VERSION}",
        nrefs(references),
        if opts.lowercase { "lc" } else { "mixed" },
        if opts.effective_order { "yes" } else { "no" },
        opts.tokenizer.name(),
        opts.smooth.signature()
    );
    Ok(compute_bleu(
        correct, total, sys_len, ref_len, opts, signature,
    ))
}

/// sacreBLEU's `BLEU.compute_bleu` from the sufficient statistics.
fn compute_bleu(
    correct: Vec<u64>,
    total: Vec<u64>,
    sys_len: u64,
    ref_len: u64,
    opts: &BleuOptions,
    signature: String,
) -> BleuScore {
    let order = opts.max_ngram_order;
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = vec![0.0; order];
    let done = |score, precisions| BleuScore {
        score,
        counts: correct.clone(),
        totals: total.clone(),
        precisions,
        bp,
        sys_len,
        ref_len,
        signature: signature.clone(),
    };
    if correct.iter().all(|&c| c == 0) {
        return done(0.0, precisions);
    }
    let mut smooth_mteval = 1.0;
    let mut eff_order = order;
    for n in 1..=order {
        let (mut c, mut t) = (correct[n - 1] as f64, total[n - 1] as f64);
        if let Smooth::AddK(k) = opts.smooth {
            if n > 1 {
                c += k;
                t += k;
            }
        }
        if t == 0.0 {
            break;
        }
        if opts.effective_order {
            eff_order = n;
        }
        if c == 0.0 {
            match opts.smooth {
                Smooth::Exp => {
                    smooth_mteval *= 2.0;
                    precisions[n - 1] = 100.0 / (smooth_mteval * t);
                }
                Smooth::Floor(v) => precisions[n - 1] = 100.0 * v / t,
                _ => {}
            }
        } else {
            precisions[n - 1] = 100.0 * c / t;
        }
    }
    let my_log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    let sum: f64 = precisions[..eff_order].iter().map(|&p| my_log(p)).sum();
    done(bp * (sum / eff_order as f64).exp(), precisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_examples() {
        for (input, want) in [
            ("Hello, world.", "Hello , world ."),
            ("It costs $3.50, ok?", "It costs $ 3.50 , ok ?"),
            ("1,000 people - 1990-1995", "1,000 people - 1990 - 1995"),
            ("&quot;quoted&quot; &amp; (x)", "\" quoted \" & ( x )"),
            ("  ", ""),
        ] {
            assert_eq!(tokenize_13a(input), want, "{input:?}");
        }
    }

    #[test]
    fn identical_is_100_and_disjoint_is_0() {
        let h = vec!["the cat sat on the mat".to_string()];
        let same = corpus_bleu(&h, std::slice::from_ref(&h), &BleuOptions::default()).unwrap();
        assert!((same.score - 100.0).abs() < 1e-9, "{same:?}");
        let other = corpus_bleu(&h, &[vec!["dogs bark".into()]], &BleuOptions::default());
        assert_eq!(other.unwrap().score, 0.0);
    }
}
