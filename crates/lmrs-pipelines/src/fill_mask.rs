//! Fill-mask with a masked language model: `transformers`' fill-mask pipeline.

use crate::text::{pad_right, Encoded, TextTokenizer};
use crate::{PipelineError, Result};
use lmrs_core::Device;
use lmrs_io::ModelFiles;
use lmrs_models::registry::{load_masked_lm, MaskedLm};
use std::path::{Path, PathBuf};

/// One proposal for a mask.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MaskFill {
    /// Probability of the token at the mask.
    pub score: f32,
    /// Token id.
    pub token: u32,
    /// The token decoded alone.
    pub token_str: String,
    /// The input with the mask replaced, decoded (special tokens kept when the input has
    /// several masks, as `transformers` does).
    pub sequence: String,
}

/// A masked language model with its tokenizer.
pub struct FillMaskPipeline {
    model: MaskedLm,
    tokenizer: TextTokenizer,
    mask_token: String,
    mask_id: u32,
    pad_id: Option<u32>,
    max_seq_length: usize,
    dir: PathBuf,
    device: Device,
}

impl FillMaskPipeline {
    /// Load from a local folder or a hub id in the Hugging Face cache.
    pub fn load(reference: &str, revision: Option<&str>) -> Result<Self> {
        let dir = crate::source::model_folder(reference, revision, "encoder models")?;
        let files = ModelFiles::from_folder(&dir)?;
        let tokenizer = TextTokenizer::load(&dir)?;
        let device = Device::Cpu;
        let model = load_masked_lm(&files, &device)?;
        let (mask_token, mask_id) = ["[MASK]", "<mask>"]
            .iter()
            .find_map(|t| {
                tokenizer
                    .inner()
                    .token_to_id(t)
                    .map(|id| (t.to_string(), id))
            })
            .ok_or_else(|| {
                PipelineError::Task(format!(
                    "the tokenizer in {} has no mask token ([MASK] or <mask>)",
                    dir.display()
                ))
            })?;
        let max_seq_length = crate::text::tokenizer_max_length(&dir)?
            .map_or(model.max_positions(), |l| l.min(model.max_positions()));
        let pad_id = ["[PAD]", "<pad>"]
            .iter()
            .find_map(|t| tokenizer.inner().token_to_id(t));
        Ok(Self {
            model,
            tokenizer,
            pad_id,
            mask_token,
            mask_id,
            max_seq_length,
            dir,
            device,
        })
    }

    /// The model folder in use.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// The mask token texts must contain (`[MASK]`).
    pub fn mask_token(&self) -> &str {
        &self.mask_token
    }

    /// For each text, for each mask in it: the `top_k` most likely tokens, best first.
    pub fn run(
        &self,
        texts: &[String],
        top_k: usize,
        batch_size: usize,
    ) -> Result<Vec<Vec<Vec<MaskFill>>>> {
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(PipelineError::EmptyInput { index });
        }
        let encoded = texts
            .iter()
            .map(|t| self.tokenizer.encode(t, self.max_seq_length))
            .collect::<Result<Vec<_>>>()?;
        for (i, e) in encoded.iter().enumerate() {
            if !e.ids.contains(&self.mask_id) {
                return Err(PipelineError::Task(format!(
                    "input {i} has no {} token{}",
                    self.mask_token,
                    if e.truncated {
                        " (after truncation)"
                    } else {
                        ""
                    }
                )));
            }
        }
        let mut out: Vec<Vec<Vec<MaskFill>>> = vec![Vec::new(); texts.len()];
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        for chunk in order.chunks(batch_size.max(1)) {
            let rows: Vec<&Encoded> = chunk.iter().map(|&i| &encoded[i]).collect();
            let (ids, types, mask) = pad_right(&rows, &self.device)?;
            let logits = self.model.logits(&ids, &mask, Some(&types))?;
            for (r, &i) in chunk.iter().enumerate() {
                let row_ids = &encoded[i].ids;
                let positions: Vec<usize> = (0..row_ids.len())
                    .filter(|&p| row_ids[p] == self.mask_id)
                    .collect();
                let single = positions.len() == 1;
                for &p in &positions {
                    let l = logits.get(r)?.get(p)?.to_vec1::<f32>()?;
                    out[i].push(self.top_k(row_ids, p, &l, top_k, single)?);
                }
            }
        }
        Ok(out)
    }

    fn top_k(
        &self,
        ids: &[u32],
        pos: usize,
        logits: &[f32],
        k: usize,
        single: bool,
    ) -> Result<Vec<MaskFill>> {
        if logits.iter().any(|v| !v.is_finite()) {
            return Err(lmrs_core::Error::NonFinite("masked LM logits".into()).into());
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        let mut order: Vec<usize> = (0..exp.len()).collect();
        order.sort_by(|&a, &b| exp[b].total_cmp(&exp[a]));
        order
            .into_iter()
            .take(k)
            .map(|t| {
                let mut filled = ids.to_vec();
                filled[pos] = t as u32;
                // transformers drops padding ids from the filled sequence (a [PAD] proposal too).
                filled.retain(|&id| Some(id) != self.pad_id);
                Ok(MaskFill {
                    score: exp[t] / sum,
                    token: t as u32,
                    token_str: self.tokenizer.decode_with(&[t as u32], false)?,
                    sequence: self.tokenizer.decode_with(&filled, single)?,
                })
            })
            .collect()
    }
}
