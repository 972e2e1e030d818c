//! `T5ForConditionalGeneration`: encoder stack, decoder stack, output layer.

use super::attention::{BucketSpec, T5Attention};
use super::cache::T5Cache;
use super::config::{FeedForwardKind, T5Config};
use crate::Result as LoadResult;
use lmrs_core::{DType, DecoderCache, Error, Module, Result, Seq2SeqLm, SpecialTokens, Tensor};
use lmrs_io::Weights;
use lmrs_nn::mode::dropout;
use lmrs_nn::{
    causal_mask_bias, padding_mask_bias, Activation, Embedding, KvCache, Linear, RmsNorm,
};

/// Decoder cache slots allocated up front; longer outputs grow the caches (t5-small's
/// summarization settings stop at 200 tokens, so common runs never reallocate).
const INITIAL_DECODE_SLOTS: usize = 1024;

/// `DenseReluDense`: the feed-forward block.
#[derive(Debug, Clone)]
enum FeedForward {
    Dense {
        wi: Linear,
        wo: Linear,
        act: Activation,
    },
    Gated {
        wi_0: Linear,
        wi_1: Linear,
        wo: Linear,
        act: Activation,
    },
}

impl FeedForward {
    fn load(w: &Weights, cfg: &T5Config, kind: FeedForwardKind) -> LoadResult<Self> {
        let (d, f) = (cfg.d_model, cfg.d_ff);
        Ok(match kind {
            FeedForwardKind::Dense(act) => Self::Dense {
                wi: Linear::load(&w.pp("wi"), d, f, false)?,
                wo: Linear::load(&w.pp("wo"), f, d, false)?,
                act,
            },
            FeedForwardKind::Gated(act) => Self::Gated {
                wi_0: Linear::load(&w.pp("wi_0"), d, f, false)?,
                wi_1: Linear::load(&w.pp("wi_1"), d, f, false)?,
                wo: Linear::load(&w.pp("wo"), f, d, false)?,
                act,
            },
        })
    }

    /// `p`: dropout after the activation (training only).
    fn forward(&self, x: &Tensor, p: f64) -> Result<Tensor> {
        Ok(match self {
            Self::Dense { wi, wo, act } => {
                wo.forward(&dropout(&act.apply(&wi.forward(x)?)?, p)?)?
            }
            Self::Gated {
                wi_0,
                wi_1,
                wo,
                act,
            } => {
                let h = (act.apply(&wi_0.forward(x)?)? * wi_1.forward(x)?)?;
                wo.forward(&dropout(&h, p)?)?
            }
        })
    }
}

/// `T5LayerFF`: pre-norm feed-forward with a residual connection.
#[derive(Debug, Clone)]
struct LayerFf {
    ff: FeedForward,
    layer_norm: RmsNorm,
    dropout: f64,
}

impl LayerFf {
    fn load(w: &Weights, cfg: &T5Config, kind: FeedForwardKind) -> LoadResult<Self> {
        Ok(Self {
            ff: FeedForward::load(&w.pp("DenseReluDense"), cfg, kind)?,
            layer_norm: RmsNorm::load(&w.pp("layer_norm"), cfg.d_model, cfg.layer_norm_epsilon)?,
            dropout: cfg.dropout_rate,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.dropout;
        Ok((x + dropout(&self.ff.forward(&self.layer_norm.forward(x)?, p)?, p)?)?)
    }
}

/// An encoder block: `layer.0` self-attention, `layer.1` feed-forward.
#[derive(Debug, Clone)]
struct EncoderBlock {
    attn: T5Attention,
    attn_norm: RmsNorm,
    ff: LayerFf,
}

/// A decoder block: `layer.0` causal self-attention, `layer.1` cross-attention, `layer.2` FF.
#[derive(Debug, Clone)]
struct DecoderBlock {
    self_attn: T5Attention,
    self_norm: RmsNorm,
    cross_attn: T5Attention,
    cross_norm: RmsNorm,
    ff: LayerFf,
}

/// A T5 encoder-decoder with its language-modelling head.
#[derive(Debug, Clone)]
pub struct T5ForConditionalGeneration {
    shared: Embedding,
    encoder: Vec<EncoderBlock>,
    encoder_norm: RmsNorm,
    decoder: Vec<DecoderBlock>,
    decoder_norm: RmsNorm,
    lm_head: Linear,
    cfg: T5Config,
}

impl T5ForConditionalGeneration {
    /// Build from a checkpoint. Weights are checked against the config's shapes, the sizes
    /// that shape allocations first.
    pub fn load(w: &Weights, cfg: T5Config) -> LoadResult<Self> {
        let kind = cfg
            .feed_forward()
            .map_err(|message| crate::ModelError::config(&cfg.source, message))?;
        check_sizes(w, &cfg, kind)?;
        let (d, h, kv, p) = (cfg.d_model, cfg.num_heads, cfg.d_kv, cfg.dropout_rate);
        let spec = |bidirectional| BucketSpec {
            num_buckets: cfg.relative_attention_num_buckets,
            max_distance: cfg.relative_attention_max_distance,
            bidirectional,
        };
        let shared = Embedding::load(&w.pp("shared"), cfg.vocab_size, d)?;
        let mut encoder = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let b = w.pp("encoder.block").pp(i).pp("layer");
            encoder.push(EncoderBlock {
                attn: T5Attention::load(&b.pp("0.SelfAttention"), d, h, kv, i == 0, spec(true), p)?,
                attn_norm: RmsNorm::load(&b.pp("0.layer_norm"), d, cfg.layer_norm_epsilon)?,
                ff: LayerFf::load(&b.pp(1), &cfg, kind)?,
            });
        }
        let mut decoder = Vec::with_capacity(cfg.decoder_layers());
        for i in 0..cfg.decoder_layers() {
            let b = w.pp("decoder.block").pp(i).pp("layer");
            decoder.push(DecoderBlock {
                self_attn: T5Attention::load(
                    &b.pp("0.SelfAttention"),
                    d,
                    h,
                    kv,
                    i == 0,
                    spec(false),
                    p,
                )?,
                self_norm: RmsNorm::load(&b.pp("0.layer_norm"), d, cfg.layer_norm_epsilon)?,
                cross_attn: T5Attention::load(
                    &b.pp("1.EncDecAttention"),
                    d,
                    h,
                    kv,
                    false,
                    spec(false),
                    p,
                )?,
                cross_norm: RmsNorm::load(&b.pp("1.layer_norm"), d, cfg.layer_norm_epsilon)?,
                ff: LayerFf::load(&b.pp(2), &cfg, kind)?,
            });
        }
        let lm_head = if cfg.tie_word_embeddings == Some(false) {
            Linear::load(&w.pp("lm_head"), d, cfg.vocab_size, false)?
        } else {
            Linear::from_matrix(shared.matrix(), None)?
        };
        Ok(Self {
            encoder_norm: RmsNorm::load(
                &w.pp("encoder.final_layer_norm"),
                d,
                cfg.layer_norm_epsilon,
            )?,
            decoder_norm: RmsNorm::load(
                &w.pp("decoder.final_layer_norm"),
                d,
                cfg.layer_norm_epsilon,
            )?,
            shared,
            encoder,
            decoder,
            lm_head,
            cfg,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &T5Config {
        &self.cfg
    }

    fn check_ids(&self, ids: &Tensor) -> Result<()> {
        let max = ids.flatten_all()?.max(0)?.to_scalar::<u32>()?;
        if max as usize >= self.cfg.vocab_size {
            return Err(Error::InvalidInput(format!(
                "token id {max} is outside the model's vocabulary of {}",
                self.cfg.vocab_size
            )));
        }
        Ok(())
    }

    /// Cross-attention for decoder block `block` with rows possibly grouped `g` per input.
    /// `x`: `(rows, t, d_model)` normed hidden states.
    fn cross_attention(
        &self,
        block: &DecoderBlock,
        x: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: &Tensor,
        g: usize,
    ) -> Result<Tensor> {
        let q = block.cross_attn.project_q(x)?; // (rows, h, t, d)
        if g == 1 {
            return block.cross_attn.attend_and_project(&q, k, v, Some(bias));
        }
        let (rows, h, t, dk) = q.dims4()?;
        let n = rows / g;
        // The g rows of one input share its keys/values: make them g*t queries of one product.
        // (n*g, h, t, d) -> (n, g, h, t, d) -> (n, h, g, t, d) -> (n, h, g*t, d)
        let q = q
            .reshape((n, g, h, t, dk))?
            .permute((0, 2, 1, 3, 4))?
            .reshape((n, h, g * t, dk))?;
        let ctx = lmrs_nn::attend(&q, k, v, Some(bias), None)?;
        // (n, h, g*t, d) -> (n, h, g, t, d) -> (n, g, t, h, d) -> (n*g, t, h*d)
        let ctx = ctx
            .reshape((n, h, g, t, dk))?
            .permute((0, 2, 3, 1, 4))?
            .reshape((rows, t, h * dk))?;
        block.cross_attn.attend_and_project_merged(&ctx)
    }

    /// The decoder stack and output layer over `ids` `(rows, t)` that follow `offset` earlier
    /// positions; `self_kv(i, k_new, v_new)` returns block `i`'s keys/values over every
    /// position (a cache append when decoding, the new ones themselves when training).
    /// Returns logits `(rows, t, vocab)`.
    fn run_decoder(
        &self,
        ids: &Tensor,
        offset: usize,
        cross: &DecoderCross<'_>,
        mut self_kv: impl FnMut(usize, Tensor, Tensor) -> Result<(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let t = ids.dim(1)?;
        let p = self.cfg.dropout_rate;
        let mut x = dropout(&self.shared.forward(ids)?, p)?;
        let mut bias = self.decoder[0]
            .self_attn
            .compute_bias(t, offset + t, offset)?;
        if t > 1 {
            bias = bias.broadcast_add(&causal_mask_bias(t, offset + t, offset, x.device())?)?;
        }
        for (i, block) in self.decoder.iter().enumerate() {
            let h = block.self_norm.forward(&x)?;
            let q = block.self_attn.project_q(&h)?;
            let (k_new, v_new) = block.self_attn.project_kv(&h)?;
            let (k, v) = self_kv(i, k_new, v_new)?;
            let y = block
                .self_attn
                .attend_and_project(&q, &k, &v, Some(&bias))?;
            x = (x + dropout(&y, p)?)?;
            let h = block.cross_norm.forward(&x)?;
            let (ck, cv) = &cross.kv[i];
            let y = self.cross_attention(block, &h, ck, cv, cross.bias, cross.group)?;
            x = (x + dropout(&y, p)?)?;
            x = block.ff.forward(&x)?;
        }
        let mut x = dropout(&self.decoder_norm.forward(&x)?, p)?;
        if self.cfg.scale_decoder_outputs() {
            x = (x * (self.cfg.d_model as f64).powf(-0.5))?;
        }
        Ok(self.lm_head.forward(&x)?)
    }

    /// Teacher-forced logits for training and evaluation: the encoder over `input_ids` /
    /// `attention_mask` `(b, s)`, then the decoder over all of `decoder_input_ids` `(b, t)`
    /// at once under a causal mask, as `T5ForConditionalGeneration.forward` with `labels`
    /// does. No cache is written, so every op stays in the autograd graph; dropout applies
    /// in [`lmrs_nn::mode::train_mode`]. Returns `(b, t, vocab)`.
    pub fn forward_teacher_forced(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        decoder_input_ids: &Tensor,
    ) -> Result<Tensor> {
        if decoder_input_ids.dim(0)? != input_ids.dim(0)? || decoder_input_ids.dim(1)? == 0 {
            return Err(Error::InvalidInput(
                "decoder inputs need one non-empty row per input".into(),
            ));
        }
        self.check_ids(decoder_input_ids)?;
        let enc = self.encode(input_ids, attention_mask)?;
        let kv = self
            .decoder
            .iter()
            .map(|b| b.cross_attn.project_kv(&enc))
            .collect::<Result<Vec<_>>>()?;
        let bias = padding_mask_bias(attention_mask)?;
        let cross = DecoderCross {
            kv: &kv,
            bias: &bias,
            group: 1,
        };
        self.run_decoder(decoder_input_ids, 0, &cross, |_, k, v| Ok((k, v)))
    }
}

/// What the decoder's cross-attention reads: per block `(k, v)` `(n, h, s, d)` of the encoder
/// output, the padding bias `(n, 1, 1, s)`, and how many decoder rows share one input.
struct DecoderCross<'a> {
    kv: &'a [(Tensor, Tensor)],
    bias: &'a Tensor,
    group: usize,
}

/// The config's sizes against the checkpoint's tensor directory, before anything is allocated:
/// the shared embedding, the first encoder and decoder block's attention, feed-forward and
/// position buckets, and the last block of each stack.
fn check_sizes(w: &Weights, cfg: &T5Config, kind: FeedForwardKind) -> LoadResult<()> {
    use crate::sizes::{dim, prod, SizeCheck};
    let c = SizeCheck::new(w, &cfg.source);
    let d = dim(cfg.d_model, "d_model");
    c.tensor("shared.weight", &[dim(cfg.vocab_size, "vocab_size"), d])?;
    let inner = prod(cfg.num_heads, cfg.d_kv, "num_heads * d_kv");
    let wi = match kind {
        FeedForwardKind::Dense(_) => "wi",
        FeedForwardKind::Gated(_) => "wi_0",
    };
    for stack in ["encoder", "decoder"] {
        let b = format!("{stack}.block.0.layer");
        c.tensor(&format!("{b}.0.SelfAttention.q.weight"), &[inner, d])?;
        c.tensor(
            &format!("{b}.0.SelfAttention.relative_attention_bias.weight"),
            &[
                dim(
                    cfg.relative_attention_num_buckets,
                    "relative_attention_num_buckets",
                ),
                dim(cfg.num_heads, "num_heads"),
            ],
        )?;
        let ff = if stack == "encoder" { 1 } else { 2 };
        c.tensor(
            &format!("{b}.{ff}.DenseReluDense.{wi}.weight"),
            &[dim(cfg.d_ff, "d_ff"), d],
        )?;
    }
    let probe = |stack: &'static str| {
        move |i: usize| format!("{stack}.block.{i}.layer.0.SelfAttention.q.weight")
    };
    c.layers("num_layers", cfg.num_layers, probe("encoder"))?;
    c.layers("num_decoder_layers", cfg.decoder_layers(), probe("decoder"))?;
    Ok(())
}

impl Seq2SeqLm for T5ForConditionalGeneration {
    type Cache = T5Cache;

    fn encode(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let (_b, s) = input_ids.dims2()?;
        if s == 0 {
            return Err(Error::InvalidInput("empty input sequence".into()));
        }
        self.check_ids(input_ids)?;
        let p = self.cfg.dropout_rate;
        let mut x = dropout(&self.shared.forward(input_ids)?, p)?;
        // Position bias of the first block, shared by all blocks, plus the padding mask:
        // (1, h, s, s) + (b, 1, 1, s) -> (b, h, s, s).
        let bias = self.encoder[0]
            .attn
            .compute_bias(s, s, 0)?
            .broadcast_add(&padding_mask_bias(attention_mask)?)?;
        for block in &self.encoder {
            let h = block.attn_norm.forward(&x)?;
            let q = block.attn.project_q(&h)?;
            let (k, v) = block.attn.project_kv(&h)?;
            x = (x + dropout(&block.attn.attend_and_project(&q, &k, &v, Some(&bias))?, p)?)?;
            x = block.ff.forward(&x)?;
        }
        Ok(dropout(&self.encoder_norm.forward(&x)?, p)?)
    }

    fn new_cache(
        &self,
        encoder_hidden: &Tensor,
        attention_mask: &Tensor,
        max_decode_len: usize,
    ) -> Result<T5Cache> {
        let (b, _s, _d) = encoder_hidden.dims3()?;
        // T5's relative positions set no length limit, so `max_decode_len` is only the caller's
        // bound (possibly huge): allocate for typical outputs and let the caches grow.
        let slots = max_decode_len.min(INITIAL_DECODE_SLOTS);
        let mut self_kv = Vec::with_capacity(self.decoder.len());
        let mut cross_kv = Vec::with_capacity(self.decoder.len());
        for block in &self.decoder {
            self_kv.push(KvCache::new(
                b,
                self.cfg.num_heads,
                slots,
                self.cfg.d_kv,
                DType::F32,
                encoder_hidden.device(),
            )?);
            cross_kv.push(block.cross_attn.project_kv(encoder_hidden)?);
        }
        Ok(T5Cache {
            self_kv,
            cross_kv,
            enc_bias: padding_mask_bias(attention_mask)?,
            row_input: (0..b).collect(),
        })
    }

    fn decode(&self, decoder_input_ids: &Tensor, cache: &mut T5Cache) -> Result<Tensor> {
        let (rows, _t) = decoder_input_ids.dims2()?;
        if rows != cache.rows() {
            return Err(Error::InvalidInput(format!(
                "{rows} decoder rows for a cache of {}",
                cache.rows()
            )));
        }
        self.check_ids(decoder_input_ids)?;
        let offset = cache.len();
        let g = cache.group_size().unwrap_or(1);
        let T5Cache {
            self_kv,
            cross_kv,
            enc_bias,
            ..
        } = cache;
        let cross = DecoderCross {
            kv: cross_kv,
            bias: enc_bias,
            group: g,
        };
        self.run_decoder(decoder_input_ids, offset, &cross, |i, k, v| {
            self_kv[i].append_growing(&k, &v)
        })
    }

    fn special_tokens(&self) -> SpecialTokens {
        let pad = self.cfg.pad_token_id.unwrap_or(0);
        SpecialTokens {
            pad: Some(pad),
            eos: self.cfg.eos_ids(),
            bos: None,
            decoder_start: Some(self.cfg.decoder_start_token_id.unwrap_or(pad)),
        }
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
}
