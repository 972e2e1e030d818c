//! `Gemma3ForCausalLM`: scaled embeddings → N × (RMSNorm → attention with q/k norms → RMSNorm
//! → residual, RMSNorm → GELU-tanh gated MLP → RMSNorm → residual) → RMSNorm → tied `lm_head`
//! (optionally soft-capped).

use super::config::LayerKind;
use super::Gemma3Config;
use crate::common::{check_input, new_cache, project_logits};
use crate::Result as LoadResult;
use lmrs_core::{CausalLm, Device, LogitsFor, Module, Result, SpecialTokens, Tensor};
use lmrs_io::Weights;
use lmrs_nn::{
    apply_rope, attend_grouped, merge_heads, Activation, CausalCache, Embedding, GatedMlp, Linear,
    RmsNorm, RotaryEmbedding,
};

/// `Gemma3Attention`.
#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f64,
    softcap: Option<f64>,
}

impl Attention {
    fn load(w: &Weights, cfg: &Gemma3Config) -> LoadResult<Self> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim);
        let (h, kv) = (cfg.num_attention_heads, cfg.kv_heads());
        let bias = cfg.attention_bias;
        Ok(Self {
            q_proj: Linear::load(&w.pp("q_proj"), d, h * hd, bias)?,
            k_proj: Linear::load(&w.pp("k_proj"), d, kv * hd, bias)?,
            v_proj: Linear::load(&w.pp("v_proj"), d, kv * hd, bias)?,
            o_proj: Linear::load(&w.pp("o_proj"), h * hd, d, bias)?,
            q_norm: RmsNorm::load_offset(&w.pp("q_norm"), hd, cfg.rms_norm_eps)?,
            k_norm: RmsNorm::load_offset(&w.pp("k_norm"), hd, cfg.rms_norm_eps)?,
            heads: h,
            kv_heads: kv,
            head_dim: hd,
            scale: cfg.query_pre_attn_scalar.powf(-0.5),
            softcap: cfg.attn_logit_softcapping,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        pos: &LayerInputs,
        cache: Option<(&mut CausalCache, usize)>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let hd = self.head_dim;
        // (b, t, heads * hd) -> per-head norm -> (b, heads, t, hd)
        let split = |y: Tensor, heads: usize, norm: &RmsNorm| -> Result<Tensor> {
            let y = norm.forward(&y.reshape((b, t, heads, hd))?)?;
            Ok(y.transpose(1, 2)?.contiguous()?)
        };
        let q = split(self.q_proj.forward(x)?, self.heads, &self.q_norm)?;
        let k = split(self.k_proj.forward(x)?, self.kv_heads, &self.k_norm)?;
        let v = self
            .v_proj
            .forward(x)?
            .reshape((b, t, self.kv_heads, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = apply_rope(&q, &pos.cos, &pos.sin)?;
        let k = apply_rope(&k, &pos.cos, &pos.sin)?;
        let (k, v) = match cache {
            Some((c, layer)) => c.layer(layer)?.append(&k, &v)?,
            None => (k, v),
        };
        let y = attend_grouped(&q, &k, &v, pos.bias.as_ref(), self.scale, self.softcap)?;
        Ok(self.o_proj.forward(&merge_heads(&y)?)?)
    }
}

/// `Gemma3DecoderLayer`.
#[derive(Debug, Clone)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    mlp: GatedMlp,
    post_feedforward_layernorm: RmsNorm,
    kind: usize,
}

/// RoPE tables and mask of one layer kind for the current forward pass.
struct LayerInputs {
    cos: Tensor,
    sin: Tensor,
    bias: Option<Tensor>,
}

/// A Gemma 3 text model.
#[derive(Debug, Clone)]
pub struct Gemma3 {
    embed_tokens: Embedding,
    embed_scale: f64,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    /// Distinct layer kinds (window, RoPE) and their rotary tables.
    kinds: Vec<(LayerKind, RotaryEmbedding)>,
    cfg: Gemma3Config,
    device: Device,
}

impl Gemma3 {
    /// Build from `w` (rooted at the checkpoint's top level: `model.*`, `lm_head.*`).
    pub fn load(w: &Weights, cfg: Gemma3Config) -> LoadResult<Self> {
        cfg.sizes().check(w, &cfg.source)?;
        let (d, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let m = w.pp("model");
        let embed_tokens = Embedding::load(&m.pp("embed_tokens"), cfg.vocab_size, d)?;
        let mut kinds: Vec<(LayerKind, RotaryEmbedding)> = Vec::new();
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let kind = cfg.layer(i)?;
            let k = match kinds.iter().position(|(k, _)| *k == kind) {
                Some(k) => k,
                None => {
                    kinds.push((
                        kind,
                        RotaryEmbedding::new(cfg.head_dim, kind.theta, kind.scaling),
                    ));
                    kinds.len() - 1
                }
            };
            let l = m.pp("layers").pp(i);
            layers.push(Block {
                input_layernorm: RmsNorm::load_offset(&l.pp("input_layernorm"), d, eps)?,
                self_attn: Attention::load(&l.pp("self_attn"), &cfg)?,
                post_attention_layernorm: RmsNorm::load_offset(
                    &l.pp("post_attention_layernorm"),
                    d,
                    eps,
                )?,
                pre_feedforward_layernorm: RmsNorm::load_offset(
                    &l.pp("pre_feedforward_layernorm"),
                    d,
                    eps,
                )?,
                mlp: GatedMlp::load(
                    &l.pp("mlp"),
                    d,
                    cfg.intermediate_size,
                    false,
                    Activation::GeluTanh,
                )?,
                post_feedforward_layernorm: RmsNorm::load_offset(
                    &l.pp("post_feedforward_layernorm"),
                    d,
                    eps,
                )?,
                kind: k,
            });
        }
        let norm = RmsNorm::load_offset(&m.pp("norm"), d, eps)?;
        let lm_head = if !cfg.tie_word_embeddings || w.contains("lm_head.weight") {
            Linear::load(&w.pp("lm_head"), d, cfg.vocab_size, false)?
        } else {
            Linear::from_matrix(embed_tokens.matrix(), None)?
        };
        Ok(Self {
            embed_tokens,
            embed_scale: (d as f64).sqrt(),
            layers,
            norm,
            lm_head,
            kinds,
            device: w.device().clone(),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Gemma3Config {
        &self.cfg
    }

    /// The training forward pass: logits `(b, t, vocab)` (soft-capped when the config says
    /// so) at every position of right-padded `input_ids` `(b, t)` with `attention_mask`
    /// `(b, t)`, no cache. Positions count from 0 in every row; sliding-window layers see the
    /// last `sliding_window` keys, as `transformers`' masks. Gemma 3 has no dropout
    /// (`attention_dropout` 0).
    pub fn forward_train(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let (vocab, max) = (self.cfg.vocab_size, self.cfg.max_position_embeddings);
        let (b, t, positions) =
            crate::common::check_train_input(input_ids, attention_mask, vocab, max)?;
        let inputs = self
            .kinds
            .iter()
            .map(|(kind, rope)| {
                let (cos, sin) = rope.cos_sin(&positions, b, t, &self.device)?;
                let bias = crate::common::windowed_padding_bias(attention_mask, kind.window)?;
                Ok(LayerInputs {
                    cos,
                    sin,
                    bias: Some(bias),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let x = self.layers_forward(input_ids, &inputs, None)?;
        let logits = self.lm_head.forward(&self.norm.forward(&x)?)?;
        match self.cfg.final_logit_softcapping {
            Some(c) => soft_cap(&logits, c),
            None => Ok(logits),
        }
    }

    /// Scaled embeddings and every layer: the hidden states `(b, t, d)` before the final
    /// norm. `inputs[k]`: RoPE tables and mask of layer kind `k`.
    fn layers_forward(
        &self,
        input_ids: &Tensor,
        inputs: &[LayerInputs],
        mut cache: Option<&mut CausalCache>,
    ) -> Result<Tensor> {
        // The embedding scale is rounded to the compute dtype first, as in transformers.
        let mut x = (self.embed_tokens.forward(input_ids)? * (self.embed_scale as f32) as f64)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(&x)?;
            let c = cache.as_deref_mut().map(|c| (c, i));
            let h = layer.self_attn.forward(&h, &inputs[layer.kind], c)?;
            x = (x + layer.post_attention_layernorm.forward(&h)?)?;
            let h = layer.pre_feedforward_layernorm.forward(&x)?;
            let h = layer.mlp.forward(&h)?;
            x = (x + layer.post_feedforward_layernorm.forward(&h)?)?;
        }
        Ok(x)
    }
}

/// Gemma's soft cap `tanh(x / c) * c`.
fn soft_cap(x: &Tensor, c: f64) -> Result<Tensor> {
    Ok(((x / c)?.tanh()? * c)?)
}

impl CausalLm for Gemma3 {
    type Cache = CausalCache;

    fn new_cache(&self, left_padding: &[usize], max_len: usize) -> Result<CausalCache> {
        let (layers, kv_heads, head_dim) = (
            self.cfg.num_hidden_layers,
            self.cfg.kv_heads(),
            self.cfg.head_dim,
        );
        new_cache(
            layers,
            kv_heads,
            head_dim,
            left_padding,
            max_len,
            &self.device,
        )
    }

    fn forward(
        &self,
        input_ids: &Tensor,
        cache: &mut CausalCache,
        logits: LogitsFor,
    ) -> Result<Option<Tensor>> {
        let (b, t) = check_input(input_ids, cache, self.cfg.vocab_size)?;
        let positions = cache.positions(t);
        let inputs = self
            .kinds
            .iter()
            .map(|(kind, rope)| {
                let (cos, sin) = rope.cos_sin(&positions, b, t, &self.device)?;
                let bias = Some(cache.attention_bias(t, kind.window)?);
                Ok(LayerInputs { cos, sin, bias })
            })
            .collect::<Result<Vec<_>>>()?;
        let x = self.layers_forward(input_ids, &inputs, Some(cache))?;
        let out = project_logits(&x, &self.norm, &self.lm_head, logits)?;
        match (out, self.cfg.final_logit_softcapping) {
            (Some(l), Some(c)) => Ok(Some(soft_cap(&l, c)?)),
            (out, _) => Ok(out),
        }
    }

    fn special_tokens(&self) -> SpecialTokens {
        self.cfg.special_tokens()
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn max_positions(&self) -> usize {
        self.cfg.max_position_embeddings
    }
}
