//! Accuracy, precision, recall and F1 (per class; micro, macro and weighted averages) as
//! scikit-learn 1.9's `accuracy_score` and `precision_recall_fscore_support`, and exact match.
//!
//! Labels are strings. The classes are, as in scikit-learn, the sorted union of the labels in
//! the references and the predictions (numerically when every label is an integer), unless
//! given explicitly. A predicted label that never occurs in the references is a class of its
//! own with no true examples: its recall is undefined and set by [`ZeroDivision`] (and it
//! lowers the macro average), exactly as scikit-learn does; [`ClassificationReport::unseen`]
//! names such labels so a front end can warn.

use crate::{check_pairs, EvalError, Result};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// What an undefined ratio (0/0) becomes: scikit-learn's `zero_division`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroDivision {
    /// 0, and report it (scikit-learn's default `"warn"`).
    #[default]
    Warn,
    /// 0.
    Zero,
    /// 1.
    One,
    /// NaN, left out of averages.
    Nan,
}

impl ZeroDivision {
    /// Parse `warn`, `0`, `1` or `nan`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "warn" => Ok(Self::Warn),
            "0" | "0.0" => Ok(Self::Zero),
            "1" | "1.0" => Ok(Self::One),
            "nan" | "NaN" => Ok(Self::Nan),
            _ => Err(EvalError::InvalidOption(format!(
                "zero_division must be warn, 0, 1 or nan, got '{s}'"
            ))),
        }
    }

    fn value(self) -> f64 {
        match self {
            Self::Warn | Self::Zero => 0.0,
            Self::One => 1.0,
            Self::Nan => f64::NAN,
        }
    }
}

/// Precision, recall and F1 of one class, with its support (true examples).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    /// The class label.
    pub label: String,
    /// Precision (NaN serializes as null).
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Number of references with this label.
    pub support: u64,
}

/// An averaged precision, recall and F1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Averages {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

/// Everything scikit-learn's `classification_report` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationReport {
    /// Fraction of predictions equal to their reference.
    pub accuracy: f64,
    /// Per class, in label order.
    pub per_class: Vec<ClassScores>,
    /// From the summed counts over the classes.
    pub micro: Averages,
    /// Unweighted mean over the classes (NaN entries left out).
    pub macro_avg: Averages,
    /// Mean weighted by support (NaN entries left out).
    pub weighted: Averages,
    /// Examples scored.
    pub examples: usize,
    /// Predicted labels that no reference has.
    pub unseen: Vec<String>,
    /// Whether some ratio was 0/0 under [`ZeroDivision::Warn`] (scikit-learn warns).
    pub ill_defined: bool,
}

/// Order labels as numpy's `unique` would: as numbers if all are integers, else as strings.
fn sort_labels(labels: &mut [String]) {
    let numeric: Option<Vec<i128>> = labels.iter().map(|l| l.parse().ok()).collect();
    if let Some(nums) = numeric {
        let mut pairs: Vec<(i128, String)> = nums.into_iter().zip(labels.iter().cloned()).collect();
        pairs.sort();
        for (slot, (_, l)) in labels.iter_mut().zip(pairs) {
            *slot = l;
        }
    } else {
        labels.sort();
    }
}

/// Fraction of `predictions` equal to their reference (`accuracy_score`).
pub fn accuracy(references: &[String], predictions: &[String]) -> Result<f64> {
    check_pairs(predictions.len(), references.len())?;
    let hits = references
        .iter()
        .zip(predictions)
        .filter(|(r, p)| r == p)
        .count();
    Ok(hits as f64 / references.len() as f64)
}

/// Fraction of predictions equal to one of their references (`evaluate`'s `exact_match`;
/// optionally ignoring case and surrounding whitespace).
pub fn exact_match(
    predictions: &[String],
    references: &[Vec<String>],
    ignore_case: bool,
    trim: bool,
) -> Result<f64> {
    check_pairs(predictions.len(), references.len())?;
    let norm = |s: &str| {
        let s = if trim { s.trim() } else { s };
        if ignore_case {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let hits = predictions
        .iter()
        .zip(references)
        .filter(|(p, refs)| {
            let p = norm(p);
            refs.iter().any(|r| norm(r) == p)
        })
        .count();
    Ok(hits as f64 / predictions.len() as f64)
}

/// Per-class and averaged precision, recall and F1, plus accuracy. `labels`: the classes to
/// score (default: every label seen); predictions of labels outside it count for no class.
pub fn classification_report(
    references: &[String],
    predictions: &[String],
    labels: Option<&[String]>,
    zero_division: ZeroDivision,
) -> Result<ClassificationReport> {
    let accuracy = accuracy(references, predictions)?;
    let true_set: BTreeSet<&String> = references.iter().collect();
    let mut classes: Vec<String> = match labels {
        Some([]) => return Err(EvalError::InvalidOption("the label list is empty".into())),
        Some(l) => l.to_vec(),
        None => {
            let mut all: Vec<String> = true_set
                .iter()
                .map(|s| s.to_string())
                .chain(predictions.iter().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            sort_labels(&mut all);
            all
        }
    };
    if labels.is_some() {
        let unique: BTreeSet<&String> = classes.iter().collect();
        if unique.len() != classes.len() {
            return Err(EvalError::InvalidOption(
                "the label list repeats a label".into(),
            ));
        }
    }
    let index: HashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let k = classes.len();
    let (mut tp, mut pred_sum, mut true_sum) = (vec![0u64; k], vec![0u64; k], vec![0u64; k]);
    for (r, p) in references.iter().zip(predictions) {
        if let Some(&i) = index.get(r.as_str()) {
            true_sum[i] += 1;
            if r == p {
                tp[i] += 1;
            }
        }
        if let Some(&j) = index.get(p.as_str()) {
            pred_sum[j] += 1;
        }
    }
    let mut ill_defined = false;
    let mut divide = |num: f64, den: f64| {
        if den == 0.0 {
            ill_defined |= zero_division == ZeroDivision::Warn;
            zero_division.value()
        } else {
            num / den
        }
    };
    let mut per_class = Vec::with_capacity(k);
    for i in 0..k {
        let (t, ps, ts) = (tp[i] as f64, pred_sum[i] as f64, true_sum[i] as f64);
        per_class.push(ClassScores {
            label: std::mem::take(&mut classes[i]),
            precision: divide(t, ps),
            recall: divide(t, ts),
            f1: divide(2.0 * t, ts + ps),
            support: true_sum[i],
        });
    }
    let (t, ps, ts) = (
        tp.iter().sum::<u64>() as f64,
        pred_sum.iter().sum::<u64>() as f64,
        true_sum.iter().sum::<u64>() as f64,
    );
    let micro = Averages {
        precision: divide(t, ps),
        recall: divide(t, ts),
        f1: divide(2.0 * t, ts + ps),
    };
    let weights: Vec<f64> = true_sum.iter().map(|&s| s as f64).collect();
    let avg = |f: fn(&ClassScores) -> f64, w: Option<&[f64]>| {
        nan_average(&per_class.iter().map(f).collect::<Vec<_>>(), w)
    };
    let averages = |w: Option<&[f64]>| Averages {
        precision: avg(|c| c.precision, w),
        recall: avg(|c| c.recall, w),
        f1: avg(|c| c.f1, w),
    };
    let macro_avg = averages(None);
    let weighted = averages(Some(&weights));
    let unseen: Vec<String> = predictions
        .iter()
        .filter(|p| !true_set.contains(p))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .cloned()
        .collect();
    Ok(ClassificationReport {
        accuracy,
        per_class,
        micro,
        macro_avg,
        weighted,
        examples: references.len(),
        unseen,
        ill_defined,
    })
}

/// scikit-learn's `_nanaverage`: the (weighted) mean ignoring NaN; plain mean when all the
/// remaining weights are zero; NaN when nothing is left.
fn nan_average(values: &[f64], weights: Option<&[f64]>) -> f64 {
    let keep: Vec<usize> = (0..values.len()).filter(|&i| !values[i].is_nan()).collect();
    if keep.is_empty() {
        return f64::NAN;
    }
    let plain = keep.iter().map(|&i| values[i]).sum::<f64>() / keep.len() as f64;
    match weights {
        None => plain,
        Some(w) => {
            let wsum: f64 = keep.iter().map(|&i| w[i]).sum();
            if wsum == 0.0 {
                plain
            } else {
                keep.iter().map(|&i| values[i] * w[i]).sum::<f64>() / wsum
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn small_multiclass_example() {
        // sklearn: y_true=[0,1,2,0,1,2], y_pred=[0,2,1,0,0,1]
        let r = classification_report(
            &s(&["0", "1", "2", "0", "1", "2"]),
            &s(&["0", "2", "1", "0", "0", "1"]),
            None,
            ZeroDivision::Warn,
        )
        .unwrap();
        assert!((r.accuracy - 1.0 / 3.0).abs() < 1e-12);
        assert!((r.per_class[0].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.per_class[0].f1 - 0.8).abs() < 1e-12);
        assert!((r.macro_avg.f1 - 0.8 / 3.0).abs() < 1e-12);
        assert!((r.micro.f1 - 1.0 / 3.0).abs() < 1e-12);
        assert!(!r.ill_defined);
    }

    #[test]
    fn unseen_prediction_label_is_reported() {
        let r = classification_report(&s(&["a", "b"]), &s(&["a", "c"]), None, ZeroDivision::One)
            .unwrap();
        assert_eq!(r.unseen, ["c"]);
        let c = r.per_class.iter().find(|c| c.label == "c").unwrap();
        assert_eq!((c.precision, c.recall, c.support), (0.0, 1.0, 0));
    }

    #[test]
    fn numeric_labels_sort_as_numbers() {
        let mut l = s(&["10", "2", "-1"]);
        sort_labels(&mut l);
        assert_eq!(l, ["-1", "2", "10"]);
    }
}
