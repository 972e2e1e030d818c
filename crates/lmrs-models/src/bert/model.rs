//! `BertModel` (and `RobertaModel`, which differs only in how positions are numbered):
//! embeddings, a stack of post-norm encoder layers, and the optional pooler.

use super::config::{BertConfig, Family, PositionIds};
use crate::Result as LoadResult;
use lmrs_core::{DType, Encoder, Error, Module, Result, Tensor};
use lmrs_io::Weights;
use lmrs_nn::kernels::encoder_attention::{self_attention, AttentionShape};
use lmrs_nn::kernels::gemm::{self, PackedMatrix};
use lmrs_nn::kernels::layer_norm::add_layer_norm;
use lmrs_nn::kernels::vmath::Act;
use lmrs_nn::mode::dropout;
use lmrs_nn::{
    attend_with_dropout, merge_heads, padding_mask_bias, split_heads, Activation, Embedding,
    LayerNorm, Linear, MASKED,
};
use std::sync::Arc;

/// `BertEmbeddings`: word + absolute position + token type embeddings, then LayerNorm.
#[derive(Debug, Clone)]
struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    /// Absent in DistilBERT.
    token_type_embeddings: Option<Embedding>,
    layer_norm: LayerNorm,
    positions: PositionIds,
    /// `hidden_dropout_prob`, after the LayerNorm (training only).
    dropout: f64,
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
            dropout: cfg.hidden_dropout_prob,
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
        Ok(lmrs_nn::mode::dropout(
            &self.layer_norm.forward(&x)?,
            self.dropout,
        )?)
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

/// The config's sizes against the checkpoint's tensor directory before anything is built:
/// the embedding tables, the first layer's feed-forward, and the last layer of the stack.
fn check_sizes(w: &Weights, cfg: &BertConfig, stack: &str) -> LoadResult<()> {
    use crate::sizes::{dim, SizeCheck};
    let c = SizeCheck::new(w, &cfg.source);
    let d = dim(cfg.hidden_size, "hidden_size");
    c.tensor(
        "embeddings.word_embeddings.weight",
        &[dim(cfg.vocab_size, "vocab_size"), d],
    )?;
    c.tensor(
        "embeddings.position_embeddings.weight",
        &[
            dim(cfg.max_position_embeddings, "max_position_embeddings"),
            d,
        ],
    )?;
    let n = match cfg.family() {
        Family::DistilBert => &DISTILBERT_NAMES,
        _ => {
            c.tensor(
                "embeddings.token_type_embeddings.weight",
                &[dim(cfg.type_vocab_size, "type_vocab_size"), d],
            )?;
            &BERT_NAMES
        }
    };
    c.tensor(
        &format!("{stack}.0.{}.weight", n.intermediate),
        &[dim(cfg.intermediate_size, "intermediate_size"), d],
    )?;
    c.layers("num_hidden_layers", cfg.num_hidden_layers, |i| {
        format!("{stack}.{i}.{}.weight", n.query)
    })
}

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
    /// Training-only dropout: on the attention probabilities, after the attention output
    /// projection (BERT's `BertSelfOutput`; DistilBERT has none there) and after the
    /// feed-forward output.
    attention_dropout: f64,
    attention_output_dropout: f64,
    output_dropout: f64,
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
            attention_dropout: cfg.attention_probs_dropout_prob,
            attention_output_dropout: match cfg.family() {
                Family::DistilBert => 0.0,
                _ => cfg.hidden_dropout_prob,
            },
            output_dropout: cfg.hidden_dropout_prob,
        })
    }

    /// `x`: `(b, s, d)`; `bias`: additive padding bias `(b, 1, 1, s)`.
    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let q = split_heads(&self.query.forward(x)?, self.heads)?;
        let k = split_heads(&self.key.forward(x)?, self.heads)?;
        let v = split_heads(&self.value.forward(x)?, self.heads)?;
        let scale = 1.0 / (q.dim(3)? as f64).sqrt();
        let ctx = attend_with_dropout(&q, &k, &v, Some(bias), Some(scale), self.attention_dropout)?;
        let ctx = merge_heads(&ctx)?;
        let attended = dropout(
            &self.attention_output.forward(&ctx)?,
            self.attention_output_dropout,
        )?;
        let x = self.attention_norm.forward(&(attended + x)?)?;
        let h = self.act.apply(&self.intermediate.forward(&x)?)?;
        let out = dropout(&self.output.forward(&h)?, self.output_dropout)?;
        Ok(self.output_norm.forward(&(out + x)?)?)
    }
}

impl BertLayer {
    /// The layer's weights packed for lmrs's CPU kernels, when they apply: every weight dense
    /// f32 on the CPU and not being trained (the kernels have no backward pass), and a CPU
    /// with AVX2/FMA (elsewhere the tensor path is as fast).
    fn packed(&self) -> Result<Option<PackedLayer>> {
        let projections = [
            &self.query,
            &self.key,
            &self.value,
            &self.attention_output,
            &self.intermediate,
            &self.output,
        ];
        let usable = |t: &Tensor| t.dtype() == DType::F32 && t.device().is_cpu() && !t.track_op();
        if !gemm::accelerated()
            || !projections
                .iter()
                .all(|l| l.weight().is_some_and(usable) && l.bias().is_some_and(usable))
        {
            return Ok(None);
        }
        let weight = |l: &Linear| -> Result<(Vec<f32>, usize, usize)> {
            let w = l
                .weight()
                .ok_or_else(|| Error::InvalidInput("dense weight".into()))?;
            let (n, k) = w.dims2()?;
            Ok((w.flatten_all()?.to_vec1::<f32>()?, n, k))
        };
        let bias = |l: &Linear| -> Result<Vec<f32>> {
            let b = l.bias().ok_or_else(|| Error::InvalidInput("bias".into()))?;
            Ok(b.to_vec1::<f32>()?)
        };
        let pack = |l: &Linear| -> Result<Arc<PackedMatrix>> {
            let (w, n, k) = weight(l)?;
            Ok(Arc::new(PackedMatrix::pack(&w, n, k, Some(&bias(l)?))))
        };
        // Query, key and value as one (3d, d) projection: one pass over the input, and the
        // attention kernel reads each head's three slices from the same rows.
        let (mut w, n, k) = weight(&self.query)?;
        let mut b = bias(&self.query)?;
        for l in [&self.key, &self.value] {
            let (wl, nl, kl) = weight(l)?;
            if (nl, kl) != (n, k) {
                return Ok(None);
            }
            w.extend_from_slice(&wl);
            b.extend_from_slice(&bias(l)?);
        }
        let norm = |ln: &LayerNorm| -> Result<NormParams> {
            Ok(NormParams {
                gamma: ln.weight().to_dtype(DType::F32)?.to_vec1::<f32>()?,
                beta: ln.bias().to_dtype(DType::F32)?.to_vec1::<f32>()?,
                eps: ln.eps(),
            })
        };
        if self.heads == 0 || !n.is_multiple_of(self.heads) {
            return Ok(None);
        }
        Ok(Some(PackedLayer {
            qkv: Arc::new(PackedMatrix::pack(&w, 3 * n, k, Some(&b))),
            attention_output: pack(&self.attention_output)?,
            attention_norm: Arc::new(norm(&self.attention_norm)?),
            intermediate: pack(&self.intermediate)?,
            output: pack(&self.output)?,
            output_norm: Arc::new(norm(&self.output_norm)?),
            heads: self.heads,
            act: self.act.kernel_act(),
        }))
    }
}

/// LayerNorm parameters as plain slices.
#[derive(Debug)]
struct NormParams {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

/// [`BertLayer`] with its weights packed for lmrs's CPU kernels: a fused QKV projection, the
/// encoder attention kernel, bias + activation inside the feed-forward GEMM, and residual +
/// LayerNorm in one pass. No tensor ops, no transposed copies, and every step on the same
/// worker pool.
#[derive(Debug, Clone)]
struct PackedLayer {
    qkv: Arc<PackedMatrix>,
    attention_output: Arc<PackedMatrix>,
    attention_norm: Arc<NormParams>,
    intermediate: Arc<PackedMatrix>,
    output: Arc<PackedMatrix>,
    output_norm: Arc<NormParams>,
    heads: usize,
    act: Act,
}

/// Activation buffers reused by every layer of one forward pass.
#[derive(Default)]
struct Scratch {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    attended: Vec<f32>,
    hidden: Vec<f32>,
}

impl PackedLayer {
    /// `x`: `(b · s, d)` rows, replaced by the layer's output; `key_bias`: `(b, s)`.
    fn forward(&self, x: &mut [f32], key_bias: &[f32], (b, s): (usize, usize), t: &mut Scratch) {
        let m = b * s;
        let d = self.attention_output.n();
        // Every kernel below overwrites its whole output, so stale values need no clearing
        // (only the first layer of a pass allocates).
        let resize = |v: &mut Vec<f32>, len: usize| v.resize(len, 0.0);
        resize(&mut t.qkv, m * 3 * d);
        resize(&mut t.ctx, m * d);
        resize(&mut t.attended, m * d);
        resize(&mut t.hidden, m * self.intermediate.n());
        self.qkv.matmul(x, m, &mut t.qkv, Act::Identity);
        let shape = AttentionShape {
            batch: b,
            seq: s,
            heads: self.heads,
            head_dim: d / self.heads,
        };
        let scale = 1.0 / (shape.head_dim as f32).sqrt();
        self_attention(&t.qkv, key_bias, shape, scale, &mut t.ctx);
        self.attention_output
            .matmul(&t.ctx, m, &mut t.attended, Act::Identity);
        let n1 = &self.attention_norm;
        add_layer_norm(&mut t.attended, x, &n1.gamma, &n1.beta, n1.eps);
        self.intermediate
            .matmul(&t.attended, m, &mut t.hidden, self.act);
        self.output.matmul(&t.hidden, m, x, Act::Identity);
        let n2 = &self.output_norm;
        add_layer_norm(x, &t.attended, &n2.gamma, &n2.beta, n2.eps);
    }
}

/// A BERT encoder with its optional pooler (`pooler.dense` + tanh over the first token).
#[derive(Debug, Clone)]
pub struct BertModel {
    embeddings: BertEmbeddings,
    /// Empty when `packed` holds the layers.
    layers: Vec<BertLayer>,
    /// The layers in packed form, where lmrs's CPU kernels apply (see [`BertLayer::packed`]).
    packed: Option<Vec<PackedLayer>>,
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
        Self::load_with(w, cfg, true)
    }

    /// [`Self::load`], with the packed CPU path allowed (`pack`) or not (the tensor path, as
    /// on other devices; the tests compare the two).
    fn load_with(w: &Weights, cfg: BertConfig, pack: bool) -> LoadResult<Self> {
        let act = cfg
            .activation()
            .map_err(|message| crate::ModelError::Config {
                path: "config.json".into(),
                message,
            })?;
        let w = Self::trunk(w);
        let stack = match cfg.family() {
            Family::DistilBert => "transformer.layer",
            _ => "encoder.layer",
        };
        check_sizes(&w, &cfg, stack)?;
        let embeddings = BertEmbeddings::load(&w.pp("embeddings"), &cfg)?;
        let mut layers = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::load(&w.pp(stack).pp(i), &cfg, act))
            .collect::<LoadResult<Vec<_>>>()?;
        let packed = match pack {
            true => layers
                .iter()
                .map(BertLayer::packed)
                .collect::<Result<Option<Vec<_>>>>()?,
            false => None,
        };
        if packed.is_some() {
            // The packed copies replace the tensors (no second copy of the weights in memory).
            layers.clear();
        }
        let pooler = if w.contains("pooler.dense.weight") {
            let d = cfg.hidden_size;
            Some(Linear::load(&w.pp("pooler.dense"), d, d, true)?)
        } else {
            None
        };
        Ok(Self {
            embeddings,
            layers,
            packed,
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
        let mut x = self.embeddings.forward(input_ids, types, attention_mask)?;
        if let Some(packed) = &self.packed {
            let (b, s, d) = x.dims3()?;
            if attention_mask.dims() != [b, s] {
                return Err(Error::InvalidInput(format!(
                    "attention mask of shape {:?} for input ids of shape ({b}, {s})",
                    attention_mask.dims()
                )));
            }
            let mask = attention_mask.to_dtype(DType::F32)?.flatten_all()?;
            // The additive bias of `padding_mask_bias`, one value per key.
            let key_bias: Vec<f32> = mask
                .to_vec1::<f32>()?
                .into_iter()
                .map(|m| (1.0 - m) * MASKED)
                .collect();
            let mut xs = x.flatten_all()?.to_vec1::<f32>()?;
            let mut scratch = Scratch::default();
            for layer in packed {
                layer.forward(&mut xs, &key_bias, (b, s), &mut scratch);
            }
            return Ok(Tensor::from_vec(xs, (b, s, d), x.device())?);
        }
        let bias = padding_mask_bias(&attention_mask.to_dtype(DType::F32)?)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use lmrs_core::Device;
    use lmrs_io::ModelFiles;
    use std::path::PathBuf;

    /// The packed CPU path against the tensor path on the tiny fixtures (BERT, DistilBERT,
    /// RoBERTa), with a padded batch: where the packed path applies (AVX2/FMA) they must
    /// agree far inside the 1e-4 parity tolerance.
    #[test]
    fn packed_path_matches_tensor_path() -> LoadResult<()> {
        for name in ["bert-tiny-st", "distilbert-tiny-cls", "roberta-tiny-cls"] {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures")
                .join(name);
            let files = ModelFiles::from_folder(&dir)?;
            let cfg = BertConfig::from_file(&files.config)?;
            let w = Weights::from_files(&files.weights, &Device::Cpu, DType::F32)?;
            let packed = BertModel::load_with(&w, cfg.clone(), true)?;
            let plain = BertModel::load_with(&w, cfg, false)?;
            assert!(plain.packed.is_none());
            if packed.packed.is_none() {
                assert!(!gemm::accelerated(), "{name}: packed path not built");
                continue;
            }
            let (b, s) = (3, 11);
            let ids: Vec<u32> = (0..b * s).map(|i| 5 + (i * 7 % 50) as u32).collect();
            let mut mask = vec![1u32; b * s];
            mask[s + 6..2 * s].fill(0);
            mask[2 * s + 2..].fill(0);
            let ids = Tensor::from_vec(ids, (b, s), &Device::Cpu)?;
            let mask = Tensor::from_vec(mask, (b, s), &Device::Cpu)?;
            let got = packed.encode(&ids, &mask, None)?;
            let want = plain.encode(&ids, &mask, None)?;
            let d = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-5, "{name}: packed vs tensor path differ by {d}");
            let bad = Tensor::from_vec(vec![1u32; b * (s - 1)], (b, s - 1), &Device::Cpu)?;
            assert!(packed.encode(&ids, &bad, None).is_err());
        }
        Ok(())
    }
}
