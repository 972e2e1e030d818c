//! Perplexity of a causal LM over a long text with strided sliding windows, as in
//! `transformers`' guide "Perplexity of fixed-length models" (`docs/source/en/perplexity.md`).
//!
//! The whole text is tokenized once. Windows of `max_length` tokens start every `stride`
//! tokens (`begin = 0, stride, 2 * stride, …`, `end = min(begin + max_length, len)`, stopping
//! at the first window that reaches the end). Window `w` scores only the tokens it adds,
//! `trg_len = end - prev_end`; the ones before serve as context (labels `-100` in the guide).
//! A token is predicted from the logits at the position before it, so a window never scores
//! its first token.
//!
//! Two averages come out of the same per-token negative log-likelihoods (log-softmax and sums
//! in `f64`):
//! - **the guide's** ([`PerplexityReport::nll`], [`PerplexityReport::ppl`]): per window the mean
//!   NLL of its scored tokens times `trg_len - 1` ("subtract batch_size due to internal label
//!   shift"), summed and divided by `Σ (trg_len - 1)`. That is what the guide's code prints:
//!   the current (transformers 4.48+ and 5.x) version, not the older one that accumulated
//!   `loss * trg_len` and divided by the last `end`. A one-token window (possible when
//!   `stride == max_length`) scores nothing; the guide's code then returns NaN, here it adds
//!   nothing (its weight is 0 anyway).
//! - **per token** ([`PerplexityReport::token_nll`], [`PerplexityReport::token_ppl`]): every
//!   scored token's NLL summed and divided by their number. It differs from the guide's value
//!   only because the guide weighs windows after the first by `trg_len - 1` while they score
//!   `trg_len` tokens.
//!
//! Windows are independent: windows of the same shape run together as one batch, and each
//! window is fed in chunks of at most [`PerplexityOptions::chunk_tokens`] through the KV cache
//! (the context part without computing logits), which bounds the memory of long windows.

use crate::generation::TextGenerationPipeline;
use crate::{PipelineError, Result};
use lmrs_core::{CausalLm, Device, LogitsFor, Tensor};

/// Tokens per forward pass inside a window when the caller does not choose.
pub const DEFAULT_CHUNK_TOKENS: usize = 512;

/// Windows run together in one forward pass when the caller does not choose.
pub const DEFAULT_WINDOW_BATCH: usize = 4;

/// At most this many window tokens (rows × `max_length`) share one batch, so that batching
/// short windows does not multiply the KV-cache memory of long ones (SmolLM2's 8192-token
/// windows run one at a time).
pub const BATCH_TOKEN_BUDGET: usize = 4096;

/// How to slide the windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerplexityOptions {
    /// Window length in tokens; default: the model's context (`max_positions`, e.g. GPT-2's
    /// `n_positions`, as the guide's `max_length = model.config.n_positions`).
    pub max_length: Option<usize>,
    /// Tokens the window moves each step, `1..=max_length`; default `max_length / 2` (at least
    /// 1): the guide's GPT-2 example, 512 for a 1024-token context. Every scored token then has
    /// at least `max_length - stride` tokens of context (fewer at the start of the text), and
    /// the cost is about twice that of non-overlapping windows whatever the context size.
    /// `stride == max_length` gives disjoint windows (the guide's "suboptimal" baseline).
    pub stride: Option<usize>,
    /// Most windows run together in one forward pass (default [`DEFAULT_WINDOW_BATCH`]);
    /// fewer when `rows × max_length` would pass [`BATCH_TOKEN_BUDGET`].
    pub batch_size: usize,
    /// Tokens fed per forward pass, all rows of a batch together (default
    /// [`DEFAULT_CHUNK_TOKENS`]); bounds the logits (`chunk × vocab`) and attention scores of
    /// long windows. The result does not depend on it beyond float rounding.
    pub chunk_tokens: usize,
}

impl Default for PerplexityOptions {
    fn default() -> Self {
        Self {
            max_length: None,
            stride: None,
            batch_size: DEFAULT_WINDOW_BATCH,
            chunk_tokens: DEFAULT_CHUNK_TOKENS,
        }
    }
}

/// Which special tokens the text gets before it is scored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AddBos {
    /// The tokenizer's own special tokens, as `tokenizer(text)` in the guide: a BOS for
    /// Llama 2 / Gemma tokenizers, nothing for GPT-2 or SmolLM2.
    #[default]
    Auto,
    /// The model's BOS id first (once, at the start of the text), no other special tokens.
    Always,
    /// No special tokens at all.
    Never,
}

/// One window of the plan: token range `[begin, end)` and the tokens it adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    /// First token of the window.
    pub begin: usize,
    /// One past the last token.
    pub end: usize,
    /// Tokens this window adds (`end - previous end`); the last `trg_len` are the targets.
    pub trg_len: usize,
}

impl Window {
    /// Window length.
    pub fn len(&self) -> usize {
        self.end - self.begin
    }

    /// `true` for an empty window (never planned).
    pub fn is_empty(&self) -> bool {
        self.end == self.begin
    }

    /// First window-relative position whose token is scored (position 0 has no context).
    fn first_scored(&self) -> usize {
        (self.len() - self.trg_len).max(1)
    }

    /// Tokens whose NLL this window computes.
    pub fn scored(&self) -> usize {
        self.len().saturating_sub(self.first_scored())
    }
}

/// The guide's windows over `seq_len` tokens. Requires `1 <= stride <= max_length`.
pub fn plan_windows(seq_len: usize, max_length: usize, stride: usize) -> Vec<Window> {
    let mut out = Vec::new();
    if stride == 0 || max_length == 0 {
        return out;
    }
    let mut prev_end = 0;
    let mut begin = 0;
    while begin < seq_len {
        let end = (begin + max_length).min(seq_len);
        out.push(Window {
            begin,
            end,
            trg_len: end - prev_end,
        });
        prev_end = end;
        if end == seq_len {
            break;
        }
        begin += stride;
    }
    out
}

/// The result of [`perplexity`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PerplexityReport {
    /// Perplexity as the guide computes it: `exp(nll)`.
    pub ppl: f64,
    /// The guide's mean NLL (nats): `nll_sum / loss_tokens`.
    pub nll: f64,
    /// Σ over windows of (mean NLL of its scored tokens) × (`trg_len - 1`).
    pub nll_sum: f64,
    /// The guide's `n_tokens`: Σ (`trg_len - 1`).
    pub loss_tokens: usize,
    /// Per-token perplexity: `exp(token_nll)`.
    pub token_ppl: f64,
    /// Mean NLL over every scored token.
    pub token_nll: f64,
    /// Tokens whose NLL was computed (each token once, except each window's first token when
    /// it is a target: `len - 1` when `stride < max_length`).
    pub scored_tokens: usize,
    /// Tokens in the text (special tokens included).
    pub tokens: usize,
    /// Windows evaluated.
    pub windows: usize,
    /// Window length used.
    pub max_length: usize,
    /// Stride used.
    pub stride: usize,
}

/// Resolve the defaults and check the options against the model and the text.
fn resolve(opts: &PerplexityOptions, context: usize, tokens: usize) -> Result<(usize, usize)> {
    let max_length = opts.max_length.unwrap_or(context);
    if max_length == 0 {
        return Err(PipelineError::Task("max_length must be at least 1".into()));
    }
    if max_length > context {
        return Err(PipelineError::Task(format!(
            "max_length {max_length} exceeds the model's context of {context} positions"
        )));
    }
    let stride = opts.stride.unwrap_or((max_length / 2).max(1));
    if stride == 0 || stride > max_length {
        return Err(PipelineError::Task(format!(
            "stride {stride} must be between 1 and max_length ({max_length}); a larger stride \
             would skip tokens"
        )));
    }
    if tokens < 2 {
        return Err(PipelineError::Task(format!(
            "the text has {tokens} token(s); perplexity needs at least 2 (one to predict from, \
             one to predict)"
        )));
    }
    Ok((max_length, stride))
}

/// Perplexity of `model` over `ids` with strided windows (see the module docs for the
/// arithmetic). `on_progress(done, total)` is called with windows finished after each batch.
pub fn perplexity<M: CausalLm>(
    model: &M,
    ids: &[u32],
    opts: &PerplexityOptions,
    device: &Device,
    mut on_progress: Option<&mut dyn FnMut(usize, usize)>,
) -> Result<PerplexityReport> {
    let (max_length, stride) = resolve(opts, model.max_positions(), ids.len())?;
    let vocab = model.vocab_size();
    if let Some((i, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
        return Err(PipelineError::Task(format!(
            "token {i} has id {id}, outside the model's vocabulary of {vocab}"
        )));
    }
    let windows = plan_windows(ids.len(), max_length, stride);
    let total = windows.len();
    let (mut nll_sum, mut loss_tokens, mut token_sum, mut scored) = (0.0f64, 0usize, 0.0f64, 0);
    let mut done = 0;
    let batch = opts.batch_size.min(BATCH_TOKEN_BUDGET / max_length).max(1);
    let mut i = 0;
    while i < windows.len() {
        // Same length and same target count: same chunk boundaries, one batch.
        let shape = |w: &Window| (w.len(), w.trg_len);
        let mut j = i + 1;
        while j < windows.len() && j - i < batch && shape(&windows[j]) == shape(&windows[i]) {
            j += 1;
        }
        let group = &windows[i..j];
        let chunk = (opts.chunk_tokens / group.len()).max(1);
        let sums = window_nll_sums(model, ids, group, chunk, device)?;
        for (w, s) in group.iter().zip(sums) {
            let n = w.scored();
            token_sum += s;
            scored += n;
            if n > 0 {
                nll_sum += s / n as f64 * (w.trg_len - 1) as f64;
            }
            loss_tokens += w.trg_len - 1;
        }
        done += group.len();
        if let Some(p) = on_progress.as_deref_mut() {
            p(done, total);
        }
        i = j;
    }
    if loss_tokens == 0 || scored == 0 {
        return Err(PipelineError::Task(format!(
            "no token was scored ({} tokens, max_length {max_length}, stride {stride})",
            ids.len()
        )));
    }
    let nll = nll_sum / loss_tokens as f64;
    let token_nll = token_sum / scored as f64;
    Ok(PerplexityReport {
        ppl: nll.exp(),
        nll,
        nll_sum,
        loss_tokens,
        token_ppl: token_nll.exp(),
        token_nll,
        scored_tokens: scored,
        tokens: ids.len(),
        windows: total,
        max_length,
        stride,
    })
}

/// Sum of the scored tokens' NLLs of each window of `group` (windows of one shape), feeding
/// `chunk` positions of every row per forward pass.
fn window_nll_sums<M: CausalLm>(
    model: &M,
    ids: &[u32],
    group: &[Window],
    chunk: usize,
    device: &Device,
) -> Result<Vec<f64>> {
    let w0 = group[0];
    let (n, b) = (w0.len(), group.len());
    let first = w0.first_scored();
    let mut sums = vec![0.0f64; b];
    if first >= n {
        return Ok(sums);
    }
    // Logits at position p predict token p + 1: feed positions 0..n-1; those before
    // `first - 1` are context only.
    let need_from = first - 1;
    let fed = n - 1;
    let mut cache = model.new_cache(&vec![0; b], fed)?;
    let mut start = 0;
    while start < fed {
        let end = if start < need_from {
            need_from.min(start + chunk)
        } else {
            fed.min(start + chunk)
        };
        let t = end - start;
        let mut flat = Vec::with_capacity(b * t);
        for w in group {
            flat.extend_from_slice(&ids[w.begin + start..w.begin + end]);
        }
        let input = Tensor::from_vec(flat, (b, t), device)?;
        if end <= need_from {
            model.forward(&input, &mut cache, LogitsFor::Nothing)?;
        } else {
            let logits = model
                .forward(&input, &mut cache, LogitsFor::All)?
                .ok_or_else(|| PipelineError::Task("the model returned no logits".into()))?;
            let vocab = logits.dim(2)?;
            let data: Vec<f32> = logits.flatten_all()?.to_vec1()?;
            for (r, w) in group.iter().enumerate() {
                for k in 0..t {
                    let row = &data[(r * t + k) * vocab..(r * t + k + 1) * vocab];
                    let target = ids[w.begin + start + k + 1] as usize;
                    sums[r] += token_nll(row, target).ok_or_else(|| {
                        PipelineError::Task(format!(
                            "NaN or infinite logits at token {} (window {}..{})",
                            w.begin + start + k,
                            w.begin,
                            w.end
                        ))
                    })?;
                }
            }
        }
        start = end;
    }
    Ok(sums)
}

/// `-log_softmax(row)[target]` in `f64`; `None` when a logit is not finite.
fn token_nll(row: &[f32], target: usize) -> Option<f64> {
    let mut max = f64::NEG_INFINITY;
    for &x in row {
        if !x.is_finite() {
            return None;
        }
        max = max.max(f64::from(x));
    }
    let sum: f64 = row.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    Some(max + sum.ln() - f64::from(*row.get(target)?))
}

impl TextGenerationPipeline {
    /// Token ids of `text` for [`perplexity`], with the special tokens `bos` asks for.
    pub fn perplexity_ids(&self, text: &str, bos: AddBos) -> Result<Vec<u32>> {
        let tok = self.tokenizer();
        match bos {
            AddBos::Auto => tok.encode_plain(text, true),
            AddBos::Never => tok.encode_plain(text, false),
            AddBos::Always => {
                let id = self.model().special_tokens().bos.ok_or_else(|| {
                    PipelineError::Task(format!(
                        "{} declares no BOS token to add",
                        self.source().display()
                    ))
                })?;
                let mut ids = vec![id];
                ids.extend(tok.encode_plain(text, false)?);
                Ok(ids)
            }
        }
    }

    /// Perplexity of `text` (tokenized whole, see [`TextGenerationPipeline::perplexity_ids`])
    /// with strided windows; runs on the CPU, as [`TextGenerationPipeline::load`] does.
    pub fn perplexity(
        &self,
        text: &str,
        bos: AddBos,
        opts: &PerplexityOptions,
        on_progress: Option<&mut dyn FnMut(usize, usize)>,
    ) -> Result<PerplexityReport> {
        if text.trim().is_empty() {
            return Err(PipelineError::EmptyInput { index: 0 });
        }
        let ids = self.perplexity_ids(text, bos)?;
        perplexity(self.model(), &ids, opts, &Device::Cpu, on_progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_guide() {
        let w = plan_windows(10, 4, 2);
        let got: Vec<_> = w.iter().map(|w| (w.begin, w.end, w.trg_len)).collect();
        assert_eq!(got, vec![(0, 4, 4), (2, 6, 2), (4, 8, 2), (6, 10, 2)]);
        assert_eq!(w.iter().map(Window::scored).sum::<usize>(), 9);
        let w = plan_windows(9, 4, 4);
        let got: Vec<_> = w.iter().map(|w| (w.begin, w.end, w.trg_len)).collect();
        assert_eq!(got, vec![(0, 4, 4), (4, 8, 4), (8, 9, 1)]);
        assert_eq!(w[2].scored(), 0);
        assert_eq!(plan_windows(3, 8, 4).len(), 1);
        assert!(plan_windows(0, 8, 4).is_empty());
    }

    #[test]
    fn options_are_checked() {
        let o = |max_length, stride| PerplexityOptions {
            max_length,
            stride,
            ..Default::default()
        };
        assert_eq!(resolve(&o(None, None), 128, 10).unwrap(), (128, 64));
        assert_eq!(resolve(&o(Some(1), None), 128, 10).unwrap(), (1, 1));
        assert!(resolve(&o(Some(256), None), 128, 10).is_err());
        assert!(resolve(&o(Some(0), None), 128, 10).is_err());
        assert!(resolve(&o(Some(64), Some(0)), 128, 10).is_err());
        assert!(resolve(&o(Some(64), Some(65)), 128, 10).is_err());
        assert!(resolve(&o(None, None), 128, 1).is_err());
    }

    #[test]
    fn nll_is_log_softmax() {
        let row = [1.0f32, 2.0, 3.0];
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((token_nll(&row, 0).unwrap() - (lse - 1.0)).abs() < 1e-12);
        assert!(token_nll(&[f32::NAN, 0.0], 1).is_none());
    }
}
