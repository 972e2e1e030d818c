//! `LlamaForCausalLM`: embeddings → N × (RMSNorm → GQA attention with RoPE → residual,
//! RMSNorm → SwiGLU MLP → residual) → RMSNorm → `lm_head`.

use super::LlamaConfig;
use crate::common::{check_input, new_cache, project_logits};
use crate::Result as LoadResult;
use lmrs_core::{CausalLm, Device, LogitsFor, Module, Result, SpecialTokens, Tensor};
use lmrs_io::Weights;
use lmrs_nn::{
    apply_rope, attend_grouped, merge_heads, Activation, CausalCache, Embedding, GatedMlp, Linear,
    RmsNorm, RotaryEmbedding,
};

/// `LlamaAttention` with grouped key/value heads.
#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(w: &Weights, cfg: &LlamaConfig) -> LoadResult<Self> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim());
        let (h, kv) = (cfg.num_attention_heads, cfg.kv_heads());
        let bias = cfg.qkv_bias();
        Ok(Self {
            q_proj: Linear::load(&w.pp("q_proj"), d, h * hd, bias)?,
            k_proj: Linear::load(&w.pp("k_proj"), d, kv * hd, bias)?,
            v_proj: Linear::load(&w.pp("v_proj"), d, kv * hd, bias)?,
            o_proj: Linear::load(&w.pp("o_proj"), h * hd, d, cfg.attention_bias)?,
            heads: h,
            kv_heads: kv,
            head_dim: hd,
        })
    }

    /// `x` `(b, t, d)` → `(b, t, d)`. With a cache, keys and values join it (layer
    /// `layer`); without, the `t` positions attend among themselves (training).
    fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        cache: Option<(&mut CausalCache, usize)>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let hd = self.head_dim;
        // (b, t, heads * hd) -> (b, heads, t, hd)
        let split = |y: Tensor, heads: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(self.q_proj.forward(x)?, self.heads)?;
        let k = split(self.k_proj.forward(x)?, self.kv_heads)?;
        let v = split(self.v_proj.forward(x)?, self.kv_heads)?;
        let q = apply_rope(&q, &rope.cos, &rope.sin)?;
        let k = apply_rope(&k, &rope.cos, &rope.sin)?;
        let (k, v) = match cache {
            Some((cache, layer)) => cache.layer(layer)?.append(&k, &v)?,
            None => (k, v),
        };
        let scale = 1.0 / (hd as f64).sqrt();
        let y = attend_grouped(&q, &k, &v, rope.bias.as_ref(), scale, None)?;
        Ok(self.o_proj.forward(&merge_heads(&y)?)?)
    }
}

/// `LlamaDecoderLayer`.
#[derive(Debug, Clone)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: GatedMlp,
}

/// Per-forward position data shared by every layer.
struct Rope {
    cos: Tensor,
    sin: Tensor,
    /// `None` when every key is visible (one new token, no padding).
    bias: Option<Tensor>,
}

/// A Llama-family causal language model.
#[derive(Debug, Clone)]
pub struct Llama {
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rotary: RotaryEmbedding,
    cfg: LlamaConfig,
    device: Device,
}

impl Llama {
    /// Build from `w` (rooted at the checkpoint's top level: `model.*`, `lm_head.*`).
    pub fn load(w: &Weights, cfg: LlamaConfig) -> LoadResult<Self> {
        cfg.sizes().check(w, &cfg.source)?;
        let d = cfg.hidden_size;
        let m = w.pp("model");
        let embed_tokens = Embedding::load(&m.pp("embed_tokens"), cfg.vocab_size, d)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = m.pp("layers").pp(i);
                Ok(Block {
                    input_layernorm: RmsNorm::load(&l.pp("input_layernorm"), d, cfg.rms_norm_eps)?,
                    self_attn: Attention::load(&l.pp("self_attn"), &cfg)?,
                    post_attention_layernorm: RmsNorm::load(
                        &l.pp("post_attention_layernorm"),
                        d,
                        cfg.rms_norm_eps,
                    )?,
                    mlp: GatedMlp::load(
                        &l.pp("mlp"),
                        d,
                        cfg.intermediate_size,
                        cfg.mlp_bias,
                        Activation::Silu,
                    )?,
                })
            })
            .collect::<LoadResult<Vec<_>>>()?;
        let norm = RmsNorm::load(&m.pp("norm"), d, cfg.rms_norm_eps)?;
        // A tied checkpoint may still carry lm_head.weight; an untied one must.
        let lm_head = if !cfg.tie_word_embeddings || w.contains("lm_head.weight") {
            Linear::load(&w.pp("lm_head"), d, cfg.vocab_size, false)?
        } else {
            Linear::from_matrix(embed_tokens.matrix(), None)?
        };
        let (theta, scaling) = cfg.rope()?;
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: RotaryEmbedding::new(cfg.head_dim(), theta, scaling),
            device: w.device().clone(),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The training forward pass: logits `(b, t, vocab)` at every position of right-padded
    /// `input_ids` `(b, t)` with `attention_mask` `(b, t)` (1 for tokens, 0 for padding), no
    /// cache. Positions count from 0 in every row (as `transformers` numbers them without
    /// `position_ids`); a query sees the earlier real tokens and itself.
    pub fn forward_train(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let (vocab, max) = (self.cfg.vocab_size, self.cfg.max_position_embeddings);
        let (b, t, positions) =
            crate::common::check_train_input(input_ids, attention_mask, vocab, max)?;
        let (cos, sin) = self.rotary.cos_sin(&positions, b, t, &self.device)?;
        let bias = crate::common::causal_padding_bias(attention_mask)?;
        let rope = Rope {
            cos,
            sin,
            bias: Some(bias),
        };
        let mut x = self.embed_tokens.forward(input_ids)?;
        for layer in &self.layers {
            let h = layer.input_layernorm.forward(&x)?;
            x = (x + layer.self_attn.forward(&h, &rope, None)?)?;
            let h = layer.post_attention_layernorm.forward(&x)?;
            x = (x + layer.mlp.forward(&h)?)?;
        }
        Ok(self.lm_head.forward(&self.norm.forward(&x)?)?)
    }
}

impl CausalLm for Llama {
    type Cache = CausalCache;

    fn new_cache(&self, left_padding: &[usize], max_len: usize) -> Result<CausalCache> {
        let (layers, kv_heads, head_dim) = (
            self.cfg.num_hidden_layers,
            self.cfg.kv_heads(),
            self.cfg.head_dim(),
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
        let (cos, sin) = self.rotary.cos_sin(&positions, b, t, &self.device)?;
        let no_padding = cache.left_padding().iter().all(|&p| p == 0);
        let bias = if t == 1 && no_padding {
            None
        } else {
            Some(cache.attention_bias(t, None)?)
        };
        let rope = Rope { cos, sin, bias };
        let mut x = self.embed_tokens.forward(input_ids)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(&x)?;
            x = (x + layer.self_attn.forward(&h, &rope, Some((&mut *cache, i)))?)?;
            let h = layer.post_attention_layernorm.forward(&x)?;
            x = (x + layer.mlp.forward(&h)?)?;
        }
        project_logits(&x, &self.norm, &self.lm_head, logits)
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
