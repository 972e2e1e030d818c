//! Mock step models shared by the integration tests.
#![allow(dead_code)]

use lmrs_core::{Device, Result, StepModel, Tensor};

/// Deterministic logits from a row's history: integer hashing, then `k / 2^17` in f32, so the
/// Python twin in `tools/check_generate_semantics.py` produces bit-identical values. The EOS
/// logit grows by 0.25 per history token so sequences end at varied lengths.
pub fn hash_logits(history: &[u32], vocab: usize, eos: Option<u32>) -> Vec<f32> {
    let mut h: u32 = 2_166_136_261;
    for &t in history {
        h = (h ^ (t + 1)).wrapping_mul(16_777_619);
    }
    (0..vocab)
        .map(|v| {
            let mut x = h.wrapping_add((v as u32).wrapping_mul(2_654_435_761));
            x = (x ^ (x >> 15)).wrapping_mul(2_246_822_519);
            x ^= x >> 13;
            let mut k = x % (1 << 20);
            if Some(v as u32) == eos {
                k += history.len() as u32 * (1 << 15);
            }
            k as f32 / (1u32 << 17) as f32
        })
        .collect()
}

/// One table entry: a history and the `(token, probability)` pairs that follow it.
pub type Entry<'a> = (&'a [u32], &'a [(u32, f32)]);

/// Logits from a table of probabilities: `table` maps a history to `(token, p)` pairs; the rest
/// of the mass is spread over the unlisted tokens (at least 1e-6 each). Histories not in the
/// table put 0.99 on `fallback_eos`.
pub fn table_logits(
    table: &[Entry<'_>],
    vocab: usize,
    fallback_eos: u32,
) -> impl Fn(&[u32]) -> Vec<f32> {
    type Owned = (Vec<u32>, Vec<(u32, f32)>);
    let table: Vec<Owned> = table
        .iter()
        .map(|(h, p)| (h.to_vec(), p.to_vec()))
        .collect();
    move |history: &[u32]| {
        let fallback = [(fallback_eos, 0.99f32)];
        let probs: &[(u32, f32)] = table
            .iter()
            .find(|(h, _)| h == history)
            .map_or(&fallback[..], |(_, p)| p);
        let listed: f32 = probs.iter().map(|(_, p)| p).sum();
        let rest = (1.0 - listed).max(0.0) / (vocab - probs.len()) as f32;
        let mut out = vec![rest.max(1e-6).ln(); vocab];
        for &(t, p) in probs {
            out[t as usize] = p.ln();
        }
        out
    }
}

/// A [`StepModel`] whose logits are a function of each row's full history.
pub struct MockModel<F: Fn(&[u32]) -> Vec<f32>> {
    /// Tokens each row has consumed.
    pub rows: Vec<Vec<u32>>,
    f: F,
    /// Rows processed per step (to check that finished rows stop costing compute).
    pub rows_per_step: Vec<usize>,
}

impl<F: Fn(&[u32]) -> Vec<f32>> MockModel<F> {
    /// A model that consumed all but the last token of each prompt.
    pub fn new(prompts: &[Vec<u32>], f: F) -> Self {
        Self {
            rows: prompts.iter().map(|p| p[..p.len() - 1].to_vec()).collect(),
            f,
            rows_per_step: Vec::new(),
        }
    }
}

impl<F: Fn(&[u32]) -> Vec<f32>> StepModel for MockModel<F> {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        assert_eq!(tokens.len(), self.rows.len());
        self.rows_per_step.push(tokens.len());
        let mut data = Vec::new();
        let mut vocab = 0;
        for (row, &t) in self.rows.iter_mut().zip(tokens) {
            row.push(t);
            let logits = (self.f)(row);
            vocab = logits.len();
            data.extend(logits);
        }
        Ok(Tensor::from_vec(data, (tokens.len(), vocab), &Device::Cpu)?)
    }

    fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        self.rows = rows.iter().map(|&r| self.rows[r].clone()).collect();
        Ok(())
    }

    fn rows(&self) -> usize {
        self.rows.len()
    }
}

/// The token lists of a result, per input.
pub fn tokens(out: &[Vec<lmrs_generate::GeneratedSequence>]) -> Vec<Vec<Vec<u32>>> {
    out.iter()
        .map(|seqs| seqs.iter().map(|s| s.tokens.clone()).collect())
        .collect()
}
