//! Parity with the reference implementations: the fixtures under `tests/fixtures/metrics/` hold
//! inputs and what rouge-score 0.1.2, sacreBLEU 2.6.0, scikit-learn 1.9.1 and NLTK 3.10.4
//! computed for them (`tools/gen_metric_fixtures.py`). Scores must match within 1e-6.

use lmrs_eval::bleu::{self, BleuOptions, Smooth, Tokenizer};
use lmrs_eval::chrf::ChrfOptions;
use lmrs_eval::rouge::{RougeOptions, RougeScorer, RougeType};
use lmrs_eval::{BootstrapOptions, ZeroDivision};
use serde_json::Value;
use std::path::Path;

const TOL: f64 = 1e-6;

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/metrics")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run tools/gen_metric_fixtures.py)", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn nested(v: &Value) -> Vec<Vec<String>> {
    v.as_array().unwrap().iter().map(strings).collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Equal within TOL, NaN (null in JSON) only against NaN. Returns the difference.
#[track_caller]
fn close(got: f64, want: f64, what: &str) -> f64 {
    if want.is_nan() || got.is_nan() {
        assert!(
            want.is_nan() && got.is_nan(),
            "{what}: got {got}, want {want}"
        );
        return 0.0;
    }
    let d = (got - want).abs();
    assert!(d <= TOL, "{what}: got {got}, want {want}");
    d
}

#[test]
fn porter_matches_nltk_on_every_word() {
    let fx = fixture("porter.json");
    assert_eq!(fx["mode"], "NLTK_EXTENSIONS");
    let words = strings(&fx["words"]);
    let stems = strings(&fx["stems"]);
    assert!(words.len() > 3000, "{} words", words.len());
    let wrong: Vec<String> = words
        .iter()
        .zip(&stems)
        .filter(|(w, s)| lmrs_eval::porter::stem(w) != **s)
        .map(|(w, s)| format!("{w}: got {}, NLTK {s}", lmrs_eval::porter::stem(w)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {}:\n{}",
        wrong.len(),
        words.len(),
        wrong.join("\n")
    );
}

#[test]
fn rouge_matches_rouge_score_per_example() {
    let fx = fixture("rouge.json");
    let types: Vec<RougeType> = strings(&fx["types"])
        .iter()
        .map(|t| RougeType::parse(t).unwrap())
        .collect();
    let mut max_diff = 0.0f64;
    let mut checked = 0;
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut scorer = RougeScorer::new(&types, case["use_stemmer"].as_bool().unwrap()).unwrap();
        let preds = strings(&case["predictions"]);
        let refs = nested(&case["references"]);
        for (i, ((p, r), want)) in preds
            .iter()
            .zip(&refs)
            .zip(case["scores"].as_array().unwrap())
            .enumerate()
        {
            let got = if r.len() == 1 {
                scorer.score(&r[0], p)
            } else {
                scorer.score_multi(r, p)
            };
            for (t, s) in types.iter().zip(got) {
                let w = &want[t.to_string()];
                for (k, v) in [s.precision, s.recall, s.fmeasure].into_iter().enumerate() {
                    max_diff = max_diff.max(close(v, f(&w[k]), &format!("{name}[{i}] {t}.{k}")));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 5000, "{checked}");
    eprintln!("rouge: {checked} values, max diff {max_diff:e}");
}

#[test]
fn rouge_bootstrap_agrees_with_rouge_score_statistically() {
    let fx = fixture("rouge.json");
    let bs = &fx["bootstrap"];
    let preds = strings(&bs["predictions"]);
    let refs: Vec<Vec<String>> = strings(&bs["references"])
        .into_iter()
        .map(|r| vec![r])
        .collect();
    let opts = RougeOptions {
        bootstrap: BootstrapOptions::default(),
        ..Default::default()
    };
    let report = lmrs_eval::rouge(&preds, &refs, &opts).unwrap();
    for (t, agg) in report.types.iter().zip(&report.aggregate) {
        let name = t.to_string();
        for (k, iv) in [agg.precision, agg.recall, agg.fmeasure].iter().enumerate() {
            let what = format!("{name}.{k}");
            // The point estimate is the exact mean of rouge-score's per-example scores.
            close(iv.mean, f(&bs["mean"][&name][k]), &what);
            let (lo, mid, hi) = (
                f(&bs["low"][&name][k]),
                f(&bs["mid"][&name][k]),
                f(&bs["high"][&name][k]),
            );
            // Both runs are seeded, so this is deterministic; the tolerances are a few Monte
            // Carlo standard deviations of a 1000-resample percentile, and tight enough that a
            // 90% interval (16% narrower) or an off-centre one fails.
            let w_ref = hi - lo;
            assert!(
                w_ref > 0.01,
                "{what}: reference interval too narrow to test"
            );
            let w_ours = iv.high - iv.low;
            assert!(
                (w_ours / w_ref - 1.0).abs() < 0.1,
                "{what} width {w_ours} vs {w_ref}"
            );
            assert!(
                (iv.low - lo).abs() < 0.12 * w_ref,
                "{what} low {} vs {lo}",
                iv.low
            );
            assert!(
                (iv.high - hi).abs() < 0.12 * w_ref,
                "{what} high {} vs {hi}",
                iv.high
            );
            assert!(
                (iv.mid - mid).abs() < 0.05 * w_ref,
                "{what} mid {} vs {mid}",
                iv.mid
            );
            assert!(iv.low < iv.mean && iv.mean < iv.high, "{what} {iv:?}");
        }
    }
}

fn bleu_options(o: &Value) -> BleuOptions {
    let mut opts = BleuOptions::default();
    if let Some(l) = o["lowercase"].as_bool() {
        opts.lowercase = l;
    }
    if let Some(t) = o["tokenize"].as_str() {
        opts.tokenizer = Tokenizer::parse(t).unwrap();
    }
    if let Some(s) = o["smooth_method"].as_str() {
        opts.smooth = Smooth::parse(s, None).unwrap();
    }
    if let Some(e) = o["effective_order"].as_bool() {
        opts.effective_order = e;
    }
    opts
}

#[test]
fn tokenizer_13a_matches_sacrebleu() {
    let fx = fixture("bleu.json");
    for case in fx["tokenize_13a"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let got = bleu::tokenize_13a(input.trim_end());
        assert_eq!(got, case["output"].as_str().unwrap(), "{input:?}");
    }
}

#[test]
fn bleu_matches_sacrebleu() {
    let fx = fixture("bleu.json");
    let mut max_diff = 0.0f64;
    let cases = fx["cases"].as_array().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let corpus = &fx["corpora"][case["corpus"].as_str().unwrap()];
        let got = lmrs_eval::corpus_bleu(
            &strings(&corpus["hypotheses"]),
            &nested(&corpus["references"]),
            &bleu_options(&case["options"]),
        )
        .unwrap();
        max_diff = max_diff.max(close(got.score, f(&case["score"]), name));
        close(got.bp, f(&case["bp"]), name);
        for (k, p) in got.precisions.iter().enumerate() {
            close(*p, f(&case["precisions"][k]), name);
        }
        let ints = |v: &Value| -> Vec<u64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as u64)
                .collect()
        };
        // add-k smoothing changes sacreBLEU's own counts in place; compare the raw ones elsewhere.
        if case["options"]["smooth_method"] != "add-k" {
            assert_eq!(got.counts, ints(&case["counts"]), "{name}");
            assert_eq!(got.totals, ints(&case["totals"]), "{name}");
        }
        assert_eq!(got.sys_len, case["sys_len"].as_u64().unwrap(), "{name}");
        assert_eq!(got.ref_len, case["ref_len"].as_u64().unwrap(), "{name}");
        assert_eq!(got.signature, case["signature"].as_str().unwrap(), "{name}");
        assert_eq!(got.format(), case["formatted"].as_str().unwrap(), "{name}");
    }
    assert!(cases.len() > 25);
    eprintln!("bleu: {} cases, max diff {max_diff:e}", cases.len());
}

#[test]
fn chrf_matches_sacrebleu() {
    let fx = fixture("chrf.json");
    let mut max_diff = 0.0f64;
    let cases = fx["cases"].as_array().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let corpus = &fx["corpora"][case["corpus"].as_str().unwrap()];
        let o = &case["options"];
        let d = ChrfOptions::default();
        let opts = ChrfOptions {
            word_order: o["word_order"]
                .as_u64()
                .map_or(d.word_order, |v| v as usize),
            beta: o["beta"].as_u64().map_or(d.beta, |v| v as u32),
            lowercase: o["lowercase"].as_bool().unwrap_or(d.lowercase),
            whitespace: o["whitespace"].as_bool().unwrap_or(d.whitespace),
            eps_smoothing: o["eps_smoothing"].as_bool().unwrap_or(d.eps_smoothing),
            ..d
        };
        let (hyps, refs) = (
            strings(&corpus["hypotheses"]),
            nested(&corpus["references"]),
        );
        let got = lmrs_eval::corpus_chrf(&hyps, &refs, &opts).unwrap();
        max_diff = max_diff.max(close(got.score, f(&case["score"]), name));
        assert_eq!(got.signature, case["signature"].as_str().unwrap(), "{name}");
        assert_eq!(got.format(), case["formatted"].as_str().unwrap(), "{name}");
        let sentences = lmrs_eval::sentence_chrf(&hyps, &refs, &opts).unwrap();
        for (i, s) in sentences.iter().enumerate() {
            max_diff = max_diff.max(close(
                *s,
                f(&case["sentence_scores"][i]),
                &format!("{name}[{i}]"),
            ));
        }
    }
    assert!(cases.len() > 25);
    eprintln!("chrf: {} cases, max diff {max_diff:e}", cases.len());
}

#[test]
fn classification_matches_sklearn() {
    let fx = fixture("classification.json");
    let cases = fx["cases"].as_array().unwrap();
    let mut max_diff = 0.0f64;
    for case in cases {
        let name = format!("{} zero_division={}", case["name"], case["zero_division"]);
        let labels = case["labels"].as_array().map(|_| strings(&case["labels"]));
        let zd = ZeroDivision::parse(case["zero_division"].as_str().unwrap()).unwrap();
        let (refs, preds) = (strings(&case["references"]), strings(&case["predictions"]));
        let r = lmrs_eval::classification_report(&refs, &preds, labels.as_deref(), zd).unwrap();
        close(r.accuracy, f(&case["accuracy"]), &name);
        let want = case["per_class"].as_array().unwrap();
        assert_eq!(r.per_class.len(), want.len(), "{name}");
        for w in want {
            let label = w["label"].as_str().unwrap();
            let c = r
                .per_class
                .iter()
                .find(|c| c.label == label)
                .unwrap_or_else(|| panic!("{name}: no class {label}"));
            for (g, key) in [
                (c.precision, "precision"),
                (c.recall, "recall"),
                (c.f1, "f1"),
            ] {
                max_diff = max_diff.max(close(g, f(&w[key]), &format!("{name} {label} {key}")));
            }
            assert_eq!(c.support, w["support"].as_u64().unwrap(), "{name} {label}");
        }
        for (avg, key) in [
            (r.micro, "micro"),
            (r.macro_avg, "macro"),
            (r.weighted, "weighted"),
        ] {
            for (g, m) in [
                (avg.precision, "precision"),
                (avg.recall, "recall"),
                (avg.f1, "f1"),
            ] {
                max_diff = max_diff.max(close(g, f(&case[key][m]), &format!("{name} {key} {m}")));
            }
        }
    }
    assert!(cases.len() >= 40);
    eprintln!(
        "classification: {} cases, max diff {max_diff:e}",
        cases.len()
    );
}
