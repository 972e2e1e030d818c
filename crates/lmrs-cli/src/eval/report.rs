//! Readable output: the classification table and `report.md`.

use lmrs_eval::classification::ClassificationReport;
use serde_json::Value;
use std::fmt::Write as _;

/// scikit-learn's `classification_report` layout.
pub fn classification_table(r: &ClassificationReport) -> String {
    let width = r
        .per_class
        .iter()
        .map(|c| c.label.chars().count())
        .chain(["weighted avg".len()])
        .max()
        .unwrap_or(12);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>width$} {:>9} {:>9} {:>9} {:>9}",
        "", "precision", "recall", "f1-score", "support"
    );
    let num = |v: f64| {
        if v.is_nan() {
            "nan".to_string()
        } else {
            format!("{v:.4}")
        }
    };
    for c in &r.per_class {
        let _ = writeln!(
            s,
            "{:>width$} {:>9} {:>9} {:>9} {:>9}",
            c.label,
            num(c.precision),
            num(c.recall),
            num(c.f1),
            c.support
        );
    }
    let support: u64 = r.per_class.iter().map(|c| c.support).sum();
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:>width$} {:>9} {:>9} {:>9} {:>9}",
        "accuracy",
        "",
        "",
        num(r.accuracy),
        r.examples
    );
    for (name, a) in [
        ("micro avg", r.micro),
        ("macro avg", r.macro_avg),
        ("weighted avg", r.weighted),
    ] {
        let _ = writeln!(
            s,
            "{:>width$} {:>9} {:>9} {:>9} {:>9}",
            name,
            num(a.precision),
            num(a.recall),
            num(a.f1),
            support
        );
    }
    s
}

/// What `report.md` shows.
pub struct ReportInput<'a> {
    pub task: &'a str,
    pub model: &'a str,
    pub data: &'a str,
    pub examples: usize,
    pub generated: usize,
    pub resumed: usize,
    /// `compute`'s JSON.
    pub metrics: &'a Value,
    /// Name of the per-example score used to rank (e.g. "rougeL F1").
    pub rank_by: &'a str,
    /// `(index, score)` of the worst examples, worst first.
    pub worst: &'a [(usize, f64)],
    pub inputs: &'a [String],
    pub references: &'a [Vec<String>],
    pub predictions: &'a [String],
}

/// The markdown report: settings, a metrics table, the worst examples.
pub fn markdown(r: &ReportInput<'_>) -> String {
    let mut s = format!("# lmrs eval: {}\n\n", r.task);
    let _ = writeln!(s, "- model: `{}`", r.model);
    let _ = writeln!(s, "- data: `{}` ({} examples)", r.data, r.examples);
    let _ = writeln!(
        s,
        "- predictions: {} generated in this run, {} resumed from predictions.jsonl\n",
        r.generated, r.resumed
    );
    s.push_str("## Metrics\n\n");
    if let Some(rouge) = r.metrics.get("rouge") {
        let pct = rouge["bootstrap"]["confidence"].as_f64().unwrap_or(0.95) * 100.0;
        let _ = writeln!(
            s,
            "ROUGE (stemmer {}): mean [{pct:.0}% bootstrap interval]\n",
            if rouge["use_stemmer"] == true {
                "on"
            } else {
                "off"
            }
        );
        s.push_str("| type | precision | recall | F1 |\n|---|---|---|---|\n");
        if let Some(scores) = rouge["scores"].as_object() {
            for (t, v) in scores {
                let cell = |m: &str| {
                    let i = &v[m];
                    format!(
                        "{:.4} [{:.4}, {:.4}]",
                        i["mean"].as_f64().unwrap_or(f64::NAN),
                        i["low"].as_f64().unwrap_or(f64::NAN),
                        i["high"].as_f64().unwrap_or(f64::NAN)
                    )
                };
                let _ = writeln!(
                    s,
                    "| {t} | {} | {} | {} |",
                    cell("precision"),
                    cell("recall"),
                    cell("fmeasure")
                );
            }
        }
        s.push('\n');
    }
    let mut others = Vec::new();
    if let Some(b) = r.metrics.get("bleu") {
        others.push(("BLEU", b["score"].as_f64(), b["signature"].as_str()));
    }
    if let Some(c) = r.metrics.get("chrf") {
        others.push(("chrF", c["score"].as_f64(), c["signature"].as_str()));
    }
    if let Some(v) = r.metrics.get("exact_match") {
        others.push(("exact match", v.as_f64(), None));
    }
    if !others.is_empty() {
        s.push_str("| metric | score | signature |\n|---|---|---|\n");
        for (name, score, sig) in others {
            let _ = writeln!(
                s,
                "| {name} | {:.2} | `{}` |",
                score.unwrap_or(f64::NAN),
                sig.unwrap_or("")
            );
        }
        s.push('\n');
    }
    if r.worst.is_empty() {
        return s;
    }
    let _ = writeln!(s, "## Worst examples (by {})\n", r.rank_by);
    for &(i, score) in r.worst {
        let _ = writeln!(s, "### Example {} ({}: {score:.4})\n", i + 1, r.rank_by);
        quote(&mut s, "Input", &r.inputs[i], 600);
        quote(&mut s, "Reference", &r.references[i].join("\n---\n"), 600);
        quote(&mut s, "Prediction", &r.predictions[i], 600);
    }
    s
}

/// A labelled blockquote, cut to `max` characters.
fn quote(s: &mut String, label: &str, text: &str, max: usize) {
    let mut t: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        t.push_str(" …");
    }
    let _ = writeln!(s, "**{label}:**\n");
    if t.trim().is_empty() {
        let _ = writeln!(s, "> *(empty)*\n");
        return;
    }
    for line in t.lines() {
        let _ = writeln!(s, "> {line}");
    }
    s.push('\n');
}
