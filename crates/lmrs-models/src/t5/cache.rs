//! T5's decoding state for one batch.

use lmrs_core::{DecoderCache, Result, Tensor};
use lmrs_nn::KvCache;

/// Self-attention caches (one per decoder block, preallocated), cross-attention keys/values
/// computed once per input, and the encoder padding bias.
///
/// Rows (decoder sequences) may outnumber inputs: beam search runs `g` rows per input. Cross
/// keys/values are stored once per *input* and `row_input[r]` says which input row `r` reads;
/// as long as rows come grouped (`r / g`), cross-attention batches the `g` rows of an input as
/// `g` queries of one matrix product instead of copying keys/values per row.
#[derive(Debug, Clone)]
pub struct T5Cache {
    pub(crate) self_kv: Vec<KvCache>,
    /// Per decoder block: `(inputs, heads, src_len, d_kv)` keys and values.
    pub(crate) cross_kv: Vec<(Tensor, Tensor)>,
    /// `(inputs, 1, 1, src_len)` additive padding bias.
    pub(crate) enc_bias: Tensor,
    /// Input index of each row.
    pub(crate) row_input: Vec<usize>,
}

impl T5Cache {
    /// Rows per input when rows are grouped evenly (`row_input[r] == r / g`), else `None`.
    pub(crate) fn group_size(&self) -> Option<usize> {
        let inputs = self.enc_bias.dims()[0];
        let rows = self.row_input.len();
        if inputs == 0 || !rows.is_multiple_of(inputs) {
            return None;
        }
        let g = rows / inputs;
        self.row_input
            .iter()
            .enumerate()
            .all(|(r, &i)| i == r / g)
            .then_some(g)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.row_input.len()
    }

    /// Make every row own its cross-attention state (rows no longer grouped).
    fn materialize_rows(&mut self) -> Result<()> {
        let dev = self.enc_bias.device().clone();
        let idx: Vec<u32> = self.row_input.iter().map(|&i| i as u32).collect();
        let idx = Tensor::new(idx.as_slice(), &dev)?;
        for (k, v) in self.cross_kv.iter_mut() {
            *k = k.index_select(&idx, 0)?;
            *v = v.index_select(&idx, 0)?;
        }
        self.enc_bias = self.enc_bias.index_select(&idx, 0)?;
        self.row_input = (0..self.row_input.len()).collect();
        Ok(())
    }
}

impl DecoderCache for T5Cache {
    fn len(&self) -> usize {
        self.self_kv.first().map_or(0, |c| c.len())
    }

    fn reset(&mut self) {
        self.self_kv.iter_mut().for_each(|c| c.reset());
    }

    fn truncate(&mut self, len: usize) {
        self.self_kv.iter_mut().for_each(|c| c.truncate(len));
    }

    fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.row_input.len()) {
            return Err(lmrs_core::Error::InvalidInput(format!(
                "row {bad} out of range for a cache of {} rows",
                self.row_input.len()
            )));
        }
        if rows.iter().copied().eq(0..self.row_input.len()) {
            return Ok(());
        }
        let dev = self.enc_bias.device().clone();
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::new(idx.as_slice(), &dev)?;
        for c in self.self_kv.iter_mut() {
            c.reorder(&idx)?;
        }
        let mut row_input: Vec<usize> = rows.iter().map(|&r| self.row_input[r]).collect();
        // Drop inputs no row reads any more, renumbering the survivors in order.
        let mut kept: Vec<usize> = row_input.clone();
        kept.sort_unstable();
        kept.dedup();
        if kept.len() != self.enc_bias.dims()[0] {
            let kidx: Vec<u32> = kept.iter().map(|&i| i as u32).collect();
            let kidx = Tensor::new(kidx.as_slice(), &dev)?;
            for (k, v) in self.cross_kv.iter_mut() {
                *k = k.index_select(&kidx, 0)?;
                *v = v.index_select(&kidx, 0)?;
            }
            self.enc_bias = self.enc_bias.index_select(&kidx, 0)?;
            for i in row_input.iter_mut() {
                // `kept` is sorted and holds every value of row_input.
                *i = kept.binary_search(i).unwrap_or(0);
            }
        }
        self.row_input = row_input;
        if self.group_size().is_none() {
            self.materialize_rows()?;
        }
        Ok(())
    }
}
