//! Seeded data augmentation of the training inputs (`--augment`): the synonym-free
//! operations of EDA (Wei & Zou, 2019, "Easy Data Augmentation"), random word deletion and
//! random word swap.
//!
//! Each training record gets `copies` extra records right after it, whose input field is the
//! original text with one operation applied; the operation is drawn among the enabled ones
//! and every draw comes from `(seed, record, copy)`, so the augmented set is a function of
//! the seed (a resumed run sees the same data). Only the training set is augmented: the
//! validation set measures the model on the text as it is. Targets and labels are copied
//! unchanged.
//!
//! - `delete=p`: every word is dropped with probability `p`; a text is never left empty (one
//!   random word is kept), and a one-word text is left alone, as EDA does.
//! - `swap=a`: `max(1, ⌊a·words⌋)` swaps of two distinct random positions, as EDA's `n_rs`.
//!
//! Words are whitespace-separated and joined back with single spaces.

use crate::data::Dataset;
use crate::order::mix;
use crate::{Result, TrainError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// A separate stream from the data order and dropout, which `mix` the same seed.
const STREAM: u64 = 0xA06_3E17;

/// What `--augment` asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Per-word deletion probability (0: off).
    pub delete: f64,
    /// Swap strength: swaps per word (0: off).
    pub swap: f64,
    /// Augmented copies per training record (EDA's `num_aug`).
    pub copies: usize,
}

impl Augment {
    /// Parse `delete=0.1,swap=0.1,copies=2` (any subset; `copies` defaults to 1, an
    /// operation left out is off, and at least one must be on).
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |m: String| TrainError::Args(format!("--augment '{spec}': {m}"));
        let mut a = Self {
            delete: 0.0,
            swap: 0.0,
            copies: 1,
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("'{part}' is not key=value")))?;
            let number = || -> Result<f64> {
                value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or_else(|| bad(format!("{key}={value}: give a number in [0, 1]")))
            };
            match key.trim() {
                "delete" => a.delete = number()?,
                "swap" => a.swap = number()?,
                "copies" => {
                    a.copies = value
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|&c| (1..=64).contains(&c))
                        .ok_or_else(|| bad(format!("copies={value}: give 1 to 64")))?
                }
                other => {
                    return Err(bad(format!(
                        "unknown operation '{other}' (delete=P, swap=A, copies=N)"
                    )))
                }
            }
        }
        if a.delete == 0.0 && a.swap == 0.0 {
            return Err(bad(
                "no operation is on (give delete=P and/or swap=A)".into()
            ));
        }
        Ok(a)
    }

    /// The settings as recorded in `training_args.json`.
    pub fn to_json(&self) -> Value {
        json!({"delete": self.delete, "swap": self.swap, "copies": self.copies})
    }

    /// One augmented version of `text`.
    pub fn apply(&self, text: &str, rng: &mut StdRng) -> String {
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut ops = Vec::with_capacity(2);
        if self.delete > 0.0 {
            ops.push(Op::Delete);
        }
        if self.swap > 0.0 {
            ops.push(Op::Swap);
        }
        let op = ops[rng.random_range(0..ops.len())];
        let out = match op {
            Op::Delete => delete(&words, self.delete, rng),
            Op::Swap => swap(&words, self.swap, rng),
        };
        out.join(" ")
    }

    /// `data` with `copies` augmented records after each record, `field` rewritten in them.
    /// Errors name the record whose `field` is missing or not text.
    pub fn dataset(&self, data: Dataset, field: &str, seed: u64) -> Result<Dataset> {
        let texts = data.texts(field)?;
        let mut records = Vec::with_capacity(data.records.len() * (self.copies + 1));
        for (i, (rec, text)) in data.records.into_iter().zip(texts).enumerate() {
            for c in 0..self.copies {
                let mut rng = StdRng::seed_from_u64(mix(seed, &[STREAM, i as u64, c as u64]));
                let mut copy = rec.clone();
                copy.fields.insert(
                    field.to_string(),
                    Value::String(self.apply(&text, &mut rng)),
                );
                records.push(copy);
            }
            records.insert(records.len() - self.copies, rec);
        }
        Ok(Dataset {
            name: data.name,
            records,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Delete,
    Swap,
}

/// EDA's `random_deletion`.
fn delete<'a>(words: &[&'a str], p: f64, rng: &mut StdRng) -> Vec<&'a str> {
    if words.len() <= 1 {
        return words.to_vec();
    }
    let kept: Vec<&str> = words
        .iter()
        .copied()
        .filter(|_| rng.random::<f64>() > p)
        .collect();
    if kept.is_empty() {
        vec![words[rng.random_range(0..words.len())]]
    } else {
        kept
    }
}

/// EDA's `random_swap`.
fn swap<'a>(words: &[&'a str], alpha: f64, rng: &mut StdRng) -> Vec<&'a str> {
    let mut out = words.to_vec();
    if out.len() < 2 {
        return out;
    }
    let n = ((alpha * out.len() as f64) as usize).max(1);
    for _ in 0..n {
        let i = rng.random_range(0..out.len());
        // A distinct second position, drawn from the others.
        let mut j = rng.random_range(0..out.len() - 1);
        if j >= i {
            j += 1;
        }
        out.swap(i, j);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Record;

    fn set(texts: &[&str]) -> Dataset {
        Dataset {
            name: "t.jsonl".into(),
            records: texts
                .iter()
                .enumerate()
                .map(|(i, t)| Record {
                    line: i + 1,
                    fields: json!({"text": t, "label": "x"})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }

    #[test]
    fn parse_takes_subsets_and_refuses_bad_specs() -> Result<()> {
        let a = Augment::parse("delete=0.1, swap=0.2,copies=3")?;
        assert_eq!((a.delete, a.swap, a.copies), (0.1, 0.2, 3));
        assert_eq!(Augment::parse("swap=0.1")?.copies, 1);
        for (spec, needle) in [
            ("delete=1.5", "in [0, 1]"),
            ("insert=0.1", "unknown operation 'insert'"),
            ("copies=2", "no operation is on"),
            ("delete", "not key=value"),
            ("delete=0.1,copies=0", "1 to 64"),
        ] {
            let e = Augment::parse(spec).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains(needle)),
                "{spec}: {e:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn copies_follow_their_original_and_repeat_with_the_seed() -> Result<()> {
        let texts = [
            "the quick brown fox jumps over the lazy dog",
            "one",
            "never is often better than right now",
        ];
        let a = Augment::parse("delete=0.3,swap=0.3,copies=2")?;
        let out = a.dataset(set(&texts), "text", 7)?;
        assert_eq!(out.records.len(), 9);
        let got = out.texts("text")?;
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(got[3 * i], *t, "the original first");
            assert_eq!(out.records[3 * i + 1].line, i + 1, "copies keep the line");
            assert_eq!(out.records[3 * i + 2].fields["label"], "x");
        }
        assert_eq!(got[4], "one", "a one-word text is left alone");
        assert_eq!(a.dataset(set(&texts), "text", 7)?.texts("text")?, got);
        assert_ne!(a.dataset(set(&texts), "text", 8)?.texts("text")?, got);
        Ok(())
    }

    #[test]
    fn deletion_never_empties_and_swap_keeps_the_words() {
        let words: Vec<&str> = "a b c d e f g h".split(' ').collect();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let d = delete(&words, 1.0, &mut rng);
            assert_eq!(d.len(), 1);
            let d = delete(&words, 0.5, &mut rng);
            assert!(!d.is_empty() && d.iter().all(|w| words.contains(w)));
            let mut s = swap(&words, 0.1, &mut rng);
            assert_ne!(s, words, "one swap of distinct positions changes the order");
            s.sort_unstable();
            assert_eq!(s, words);
        }
        assert_eq!(delete(&words, 0.0, &mut rng), words);
    }
}
