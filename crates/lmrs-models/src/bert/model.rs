//! `BertModel` (and `RobertaModel`, which differs only in how positions are numbered):
//! embeddings, a stack of post-norm encoder layers, and the optional pooler.

use super::config::{BertConfig, Family, PositionIds};
use crate::Result as LoadResult;
use lmrs_core::{DType, Encoder, Error, Module, Result, Tensor};
use lmrs_io::Weights;
use lmrs_nn::{
    attend, merge_heads, padding_mask_bias, split_heads, Activation, Embedding, LayerNorm, Linear,
};

/// `BertEmbeddings`: word + absolute position + token type embeddings, then LayerNorm.
#[derive(Debug, Clone)]
struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    /// Absent in DistilBERT.
    token_type_embeddings: Option<Embedding>,
    layer_norm: LayerNorm,
    positions: PositionIds,
}

impl BertEmbeddings {
    fn load(w: &Weights, cfg: &BertConfig) -> LoadResult<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            word_embeddings: Embedding::load(&w.pp("word_embeddings"), cfg.vocab_size, d)?,
            position_embeddings: Embedding::load(
                &w.pp("position_embeddings"),
                cfg.max_position_embeddings,
                d,
            )?,
            token_type_embeddings: match cfg.family() {
                Family::DistilBert => None,
                _ => Some(Embedding::load(
                    &w.pp("token_type_embeddings"),
                    cfg.type_vocab_size,
                    d,
                )?),
            },
            layer_norm: LayerNorm::load(&w.pp("LayerNorm"), d, cfg.layer_norm_eps)?,
            positions: cfg.position_ids(),
        })
    }

    /// `ids`, `token_type_ids`, `mask`: `(b, s)` → `(b, s, d)`.
    fn forward(&self, ids: &Tensor, token_type_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let mut words = self.word_embeddings.forward(ids)?;
        if let Some(table) = &self.token_type_embeddings {
            words = (words + table.forward(token_type_ids)?)?;
        }
        let x = match self.positions {
            PositionIds::FromZero => {
                let table = self.position_embeddings.weight().ok_or_else(|| {
                    Error::InvalidInput("BERT position embeddings must be dense".into())
                })?;
                let positions = table.narrow(0, 0, s)?;
                words.broadcast_add(&positions)?
            }
            PositionIds::AfterPadding(pad) => {
                // Real tokens count up from pad + 1; padding (by id, as transformers, or by
                // mask) sits at `pad`.
                let id_rows = ids.to_vec2::<u32>()?;
                let mask_rows = mask.to_dtype(DType::U32)?.to_vec2::<u32>()?;
                let mut pos = Vec::with_capacity(b * s);
                for (row, m) in id_rows.iter().zip(&mask_rows) {
                    let mut n = 0;
                    for (&id, &keep) in row.iter().zip(m) {
                        if id != pad && keep == 1 {
                            n += 1;
                            pos.push(pad + n);
                        } else {
                            pos.push(pad);
                        }
                    }
                }
                let pos = Tensor::from_vec(pos, (b, s), ids.device())?;
                (words + self.position_embeddings.forward(&pos)?)?
            }
        };
        Ok(self.layer_norm.forward(&x)?)
    }
}

/// Checkpoint names of one layer's tensors, per family.
struct LayerNames {
    query: &'static str,
    key: &'static str,
    value: &'static str,
    attention_output: &'static str,
    attention_norm: &'static str,
    intermediate: &'static str,
    output: &'static str,
    output_norm: &'static str,
}

const BERT_NAMES: LayerNames = LayerNames {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_output: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_norm: "output.LayerNorm",
};

/// DistilBERT's `TransformerBlock`: the same computation under other names.
const DISTILBERT_NAMES: LayerNames = LayerNames {
    query: "attention.q_lin",
    key: "attention.k_lin",
    value: "attention.v_lin",
    attention_output: "attention.out_lin",
    attention_norm: "sa_layer_norm",
    intermediate: "ffn.lin1",
    output: "ffn.lin2",
    output_norm: "output_layer_norm",
};

/// `BertLayer`: self-attention (`attention.self`, `attention.output`), then the feed-forward
/// block (`intermediate`, `output`); each sub-block is residual + LayerNorm (post-norm).
#[derive(Debug, Clone)]
struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    act: Activation,
}

impl BertLayer {
    fn load(w: &Weights, cfg: &BertConfig, act: Activation) -> LoadResult<Self> {
        let (d, f, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let n = match cfg.family() {
            Family::DistilBert => &DISTILBERT_NAMES,
            _ => &BERT_NAMES,
        };
        Ok(Self {
            query: Linear::load(&w.pp(n.query), d, d, true)?,
            key: Linear::load(&w.pp(n.key), d, d, true)?,
            value: Linear::load(&w.pp(n.value), d, d, true)?,
            attention_output: Linear::load(&w.pp(n.attention_output), d, d, true)?,
            attention_norm: LayerNorm::load(&w.pp(n.attention_norm), d, eps)?,
            intermediate: Linear::load(&w.pp(n.intermediate), d, f, true)?,
            output: Linear::load(&w.pp(n.output), f, d, true)?,
            output_norm: LayerNorm::load(&w.pp(n.output_norm), d, eps)?,
            heads: cfg.num_attention_heads,
            act,
        })
    }

    /// `x`: `(b, s, d)`; `bias`: additive padding bias `(b, 1, 1, s)`.
    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let q = split_heads(&self.query.forward(x)?, self.heads)?;
        let k = split_heads(&self.key.forward(x)?, self.heads)?;
        let v = split_heads(&self.value.forward(x)?, self.heads)?;
        let scale = 1.0 / (q.dim(3)? as f64).sqrt();
        let ctx = merge_heads(&attend(&q, &k, &v, Some(bias), Some(scale))?)?;
        let x = self
            .attention_norm
            .forward(&(self.attention_output.forward(&ctx)? + x)?)?;
        let h = self.act.apply(&self.intermediate.forward(&x)?)?;
        Ok(self.output_norm.forward(&(self.output.forward(&h)? + x)?)?)
    }
}

/// A BERT encoder with its optional pooler (`pooler.dense` + tanh over the first token).
#[derive(Debug, Clone)]
pub struct BertModel {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    pooler: Option<Linear>,
    cfg: BertConfig,
}

impl BertModel {
    /// The part of a checkpoint holding the trunk: task models
    /// (`BertForSequenceClassification`, `RobertaForMaskedLM`...) store it under `bert.`,
    /// `roberta.` or `distilbert.`, a saved `BertModel`/`RobertaModel` (and sentence-transformers folders) at the
    /// root.
    pub fn trunk(w: &Weights) -> Weights {
        ["bert", "roberta", "distilbert"]
            .iter()
            .find(|p| w.contains(&format!("{p}.embeddings.word_embeddings.weight")))
            .map_or_else(|| w.clone(), |p| w.pp(p))
    }

    /// Build from a checkpoint (with or without the `bert.` prefix). Weights are checked
    /// against the config's shapes; the pooler is loaded when the checkpoint has one.
    pub fn load(w: &Weights, cfg: BertConfig) -> LoadResult<Self> {
        let act = cfg
            .activation()
            .map_err(|message| crate::ModelError::Config {
                path: "config.json".into(),
                message,
            })?;
        let w = Self::trunk(w);
        let embeddings = BertEmbeddings::load(&w.pp("embeddings"), &cfg)?;
        let stack = match cfg.family() {
            Family::DistilBert => "transformer.layer",
            _ => "encoder.layer",
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::load(&w.pp(stack).pp(i), &cfg, act))
            .collect::<LoadResult<Vec<_>>>()?;
        let pooler = if w.contains("pooler.dense.weight") {
            let d = cfg.hidden_size;
            Some(Linear::load(&w.pp("pooler.dense"), d, d, true)?)
        } else {
            None
        };
        Ok(Self {
            embeddings,
            layers,
            pooler,
            cfg,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// The word embedding table `(vocab, hidden)` (masked-LM heads tie to it).
    pub fn word_embeddings(&self) -> lmrs_io::MatrixWeight {
        self.embeddings.word_embeddings.matrix()
    }

    /// `BertPooler`: `tanh(dense(hidden[:, 0]))` `(b, hidden)`; `None` when the checkpoint has
    /// no pooler.
    pub fn pool(&self, hidden: &Tensor) -> Result<Option<Tensor>> {
        let Some(dense) = &self.pooler else {
            return Ok(None);
        };
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(Some(dense.forward(&first)?.tanh()?))
    }

    fn check_input(&self, ids: &Tensor, types: &Tensor) -> Result<()> {
        let (_b, s) = ids.dims2()?;
        if s == 0 {
            return Err(Error::InvalidInput("empty input sequence".into()));
        }
        if s > self.cfg.max_input_tokens() {
            return Err(Error::InvalidInput(format!(
                "input of {s} tokens is longer than the model's {} positions",
                self.cfg.max_input_tokens()
            )));
        }
        let mut tables = vec![("token id", ids, self.cfg.vocab_size)];
        if self.embeddings.token_type_embeddings.is_some() {
            tables.push(("token type id", types, self.cfg.type_vocab_size));
        }
        for (what, t, limit) in tables {
            let max = t.flatten_all()?.max(0)?.to_scalar::<u32>()?;
            if max as usize >= limit {
                return Err(Error::InvalidInput(format!(
                    "{what} {max} is outside the model's table of {limit}"
                )));
            }
        }
        Ok(())
    }
}

impl Encoder for BertModel {
    fn encode(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        token_type_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        let zeros;
        let types = match token_type_ids {
            Some(t) => t,
            None => {
                zeros = input_ids.zeros_like()?;
                &zeros
            }
        };
        self.check_input(input_ids, types)?;
        let bias = padding_mask_bias(&attention_mask.to_dtype(DType::F32)?)?;
        let mut x = self.embeddings.forward(input_ids, types, attention_mask)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias)?;
        }
        Ok(x)
    }

    fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    fn max_positions(&self) -> usize {
        self.cfg.max_input_tokens()
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
}
