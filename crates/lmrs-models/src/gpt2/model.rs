//! `GPT2LMHeadModel` and its `config.json`.

use crate::common::{check_input, new_cache, project_logits, special_tokens};
use crate::error::require_positive;
use crate::{ModelError, Result as LoadResult};
use lmrs_core::{CausalLm, Device, LogitsFor, Module, Result, SpecialTokens, Tensor};
use lmrs_io::{MatrixWeight, Weights};
use lmrs_nn::mode::{dropout, is_training};
use lmrs_nn::{
    attend_grouped, attend_with_dropout, merge_heads, CausalCache, Embedding, LayerNorm, Linear,
};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// GPT-2's `config.json` (`GPT2Config` field names and defaults).
#[derive(Debug, Clone, Deserialize)]
pub struct Gpt2Config {
    /// Vocabulary rows (default 50257).
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Positions (default 1024).
    #[serde(default = "d_pos")]
    pub n_positions: usize,
    /// Width (default 768).
    #[serde(default = "d_embd")]
    pub n_embd: usize,
    /// Blocks (default 12).
    #[serde(default = "d_layer")]
    pub n_layer: usize,
    /// Heads (default 12).
    #[serde(default = "d_head")]
    pub n_head: usize,
    /// MLP width (default `4 * n_embd`).
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// LayerNorm epsilon (default 1e-5).
    #[serde(default = "d_eps")]
    pub layer_norm_epsilon: f64,
    /// MLP activation (default `gelu_new`).
    #[serde(default = "d_act")]
    pub activation_function: String,
    /// Divide scores by `sqrt(head_dim)` (default true).
    #[serde(default = "d_true")]
    pub scale_attn_weights: bool,
    /// Additionally divide by `layer_idx + 1` (default false).
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    /// Beginning-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<Value>,
    /// End-of-sequence id(s).
    #[serde(default)]
    pub eos_token_id: Option<Value>,
    /// Padding id.
    #[serde(default)]
    pub pad_token_id: Option<Value>,
    /// Dropout after the embeddings (training only; default 0.1).
    #[serde(default = "d_pdrop")]
    pub embd_pdrop: f64,
    /// Dropout on the attention probabilities (training only; default 0.1).
    #[serde(default = "d_pdrop")]
    pub attn_pdrop: f64,
    /// Dropout after each residual branch's output projection (training only; default 0.1).
    #[serde(default = "d_pdrop")]
    pub resid_pdrop: f64,
    /// Set for configs rewritten from GGUF metadata: projections are stored `(out, in)`.
    #[serde(default)]
    pub gguf_architecture: Option<String>,
    /// Where the config came from.
    #[serde(skip)]
    pub source: PathBuf,
}

fn d_vocab() -> usize {
    50257
}
fn d_pos() -> usize {
    1024
}
fn d_embd() -> usize {
    768
}
fn d_layer() -> usize {
    12
}
fn d_head() -> usize {
    12
}
fn d_eps() -> f64 {
    1e-5
}
fn d_act() -> String {
    "gelu_new".into()
}
fn d_true() -> bool {
    true
}
fn d_pdrop() -> f64 {
    0.1
}

impl Gpt2Config {
    /// Parse and validate a config value read from `source`.
    pub fn from_value(value: Value, source: &Path) -> LoadResult<Self> {
        let mut cfg: Self = crate::error::from_value(value, source)?;
        cfg.source = source.to_path_buf();
        for (field, v) in [
            ("bos_token_id", &cfg.bos_token_id),
            ("eos_token_id", &cfg.eos_token_id),
            ("pad_token_id", &cfg.pad_token_id),
        ] {
            crate::error::check_token_ids(source, field, v)?;
        }
        require_positive(
            source,
            &[
                ("vocab_size", cfg.vocab_size),
                ("n_positions", cfg.n_positions),
                ("n_embd", cfg.n_embd),
                ("n_layer", cfg.n_layer),
                ("n_head", cfg.n_head),
            ],
        )?;
        if !cfg.n_embd.is_multiple_of(cfg.n_head) {
            return Err(ModelError::config(
                source,
                format!(
                    "n_embd {} is not a multiple of n_head {}",
                    cfg.n_embd, cfg.n_head
                ),
            ));
        }
        if !matches!(
            cfg.activation_function.as_str(),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast"
        ) {
            return Err(ModelError::config(
                source,
                format!(
                    "activation_function '{}' is not supported (gelu_new)",
                    cfg.activation_function
                ),
            ));
        }
        crate::sizes::positive_f64(source, "layer_norm_epsilon", cfg.layer_norm_epsilon)?;
        for (field, p) in [
            ("embd_pdrop", cfg.embd_pdrop),
            ("attn_pdrop", cfg.attn_pdrop),
            ("resid_pdrop", cfg.resid_pdrop),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(ModelError::config(
                    source,
                    format!("{field} {p} is not a probability in [0, 1)"),
                ));
            }
        }
        Ok(cfg)
    }

    /// MLP width.
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Set every dropout probability to `p` (a training run's `--dropout`).
    pub fn set_dropout(&mut self, p: f64) {
        self.embd_pdrop = p;
        self.attn_pdrop = p;
        self.resid_pdrop = p;
    }
}

/// The config's sizes against the checkpoint's tensor directory before anything is built
/// (`4 * n_embd`, the default MLP width, is only computed once `n_embd` is a real size).
fn check_sizes(root: &Weights, cfg: &Gpt2Config) -> LoadResult<()> {
    use crate::sizes::{dim, SizeCheck};
    let c = SizeCheck::new(root, &cfg.source);
    let d = dim(cfg.n_embd, "n_embd");
    c.tensor("wte.weight", &[dim(cfg.vocab_size, "vocab_size"), d])?;
    c.tensor("wpe.weight", &[dim(cfg.n_positions, "n_positions"), d])?;
    c.layers("n_layer", cfg.n_layer, |i| format!("h.{i}.ln_1.weight"))?;
    let inner = cfg.n_inner.unwrap_or(4 * cfg.n_embd);
    let shape = if cfg.gguf_architecture.is_some() {
        [dim(inner, "n_inner"), d]
    } else {
        [d, dim(inner, "n_inner")]
    };
    c.tensor("h.0.mlp.c_fc.weight", &shape)
}

/// A `Conv1D` projection `in -> out` as a [`Linear`].
fn conv1d(w: &Weights, cfg: &Gpt2Config, d_in: usize, d_out: usize) -> LoadResult<Linear> {
    let weight = if cfg.gguf_architecture.is_some() {
        w.get_matrix("weight", &[d_out, d_in])?
    } else if w.is_trainable() {
        // A transposed view of the `(in, out)` variable, not a copy: the optimizer updates
        // the variable in place and the view sees it (a copy would keep the initial weights).
        MatrixWeight::Dense(w.get("weight", &[d_in, d_out])?.t()?)
    } else {
        MatrixWeight::Dense(w.get("weight", &[d_in, d_out])?.t()?.contiguous()?)
    };
    Ok(Linear::from_matrix(weight, Some(w.get("bias", &[d_out])?))?)
}

#[derive(Debug, Clone)]
struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_c_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_c_proj: Linear,
    scale: f64,
}

/// A GPT-2 causal language model.
#[derive(Debug, Clone)]
pub struct Gpt2 {
    wte: Embedding,
    wpe: Embedding,
    h: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Linear,
    cfg: Gpt2Config,
    device: Device,
}

impl Gpt2 {
    /// Build from `w` (keys with or without the `transformer.` prefix).
    pub fn load(w: &Weights, cfg: Gpt2Config) -> LoadResult<Self> {
        let root = if w.contains("transformer.wte.weight") {
            w.pp("transformer")
        } else {
            w.clone()
        };
        check_sizes(&root, &cfg)?;
        let (d, eps) = (cfg.n_embd, cfg.layer_norm_epsilon);
        let hd = d / cfg.n_head;
        let wte = Embedding::load(&root.pp("wte"), cfg.vocab_size, d)?;
        let wpe = Embedding::from_matrix(MatrixWeight::Dense(
            root.pp("wpe").get("weight", &[cfg.n_positions, d])?,
        ));
        let h = (0..cfg.n_layer)
            .map(|i| {
                let l = root.pp("h").pp(i);
                let mut scale = 1.0;
                if cfg.scale_attn_weights {
                    scale /= (hd as f64).sqrt();
                }
                if cfg.scale_attn_by_inverse_layer_idx {
                    scale /= (i + 1) as f64;
                }
                Ok(Block {
                    ln_1: LayerNorm::load(&l.pp("ln_1"), d, eps)?,
                    c_attn: conv1d(&l.pp("attn").pp("c_attn"), &cfg, d, 3 * d)?,
                    attn_c_proj: conv1d(&l.pp("attn").pp("c_proj"), &cfg, d, d)?,
                    ln_2: LayerNorm::load(&l.pp("ln_2"), d, eps)?,
                    c_fc: conv1d(&l.pp("mlp").pp("c_fc"), &cfg, d, cfg.inner())?,
                    mlp_c_proj: conv1d(&l.pp("mlp").pp("c_proj"), &cfg, cfg.inner(), d)?,
                    scale,
                })
            })
            .collect::<LoadResult<Vec<_>>>()?;
        let ln_f = LayerNorm::load(&root.pp("ln_f"), d, eps)?;
        let lm_head = if w.contains("lm_head.weight") {
            Linear::load(&w.pp("lm_head"), d, cfg.vocab_size, false)?
        } else {
            Linear::from_matrix(wte.matrix(), None)?
        };
        Ok(Self {
            wte,
            wpe,
            h,
            ln_f,
            lm_head,
            device: w.device().clone(),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.cfg
    }

    /// The training forward pass: logits `(b, t, vocab)` at every position of right-padded
    /// `input_ids` `(b, t)` with `attention_mask` `(b, t)`, no cache; positions count from 0
    /// in every row, as `transformers` numbers them without `position_ids`. Dropout
    /// (`embd_pdrop`, `attn_pdrop`, `resid_pdrop`) applies inside training mode only.
    pub fn forward_train(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let (vocab, max) = (self.cfg.vocab_size, self.cfg.n_positions);
        let (b, t, positions) =
            crate::common::check_train_input(input_ids, attention_mask, vocab, max)?;
        let positions = Tensor::from_vec(positions, (b, t), &self.device)?;
        let bias = crate::common::causal_padding_bias(attention_mask)?;
        let x = self.blocks(input_ids, &positions, Some(&bias), None)?;
        Ok(self.lm_head.forward(&self.ln_f.forward(&x)?)?)
    }

    /// Embeddings and every block: the hidden states `(b, t, d)` before `ln_f`. `positions`
    /// `(b, t)`; `bias` `(b, 1, t, keys)`; keys and values go through `cache` when given.
    fn blocks(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        bias: Option<&Tensor>,
        mut cache: Option<&mut CausalCache>,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let (d, heads) = (self.cfg.n_embd, self.cfg.n_head);
        let hd = d / heads;
        let (attn_p, resid_p) = (self.cfg.attn_pdrop, self.cfg.resid_pdrop);
        let x = (self.wte.forward(input_ids)? + self.wpe.forward(positions)?)?;
        let mut x = dropout(&x, self.cfg.embd_pdrop)?;
        for (i, block) in self.h.iter().enumerate() {
            let qkv = block.c_attn.forward(&block.ln_1.forward(&x)?)?;
            // (b, t, 3d) -> three (b, heads, t, hd)
            let part = |k: usize| -> Result<Tensor> {
                Ok(qkv
                    .narrow(2, k * d, d)?
                    .reshape((b, t, heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (q, k, v) = (part(0)?, part(1)?, part(2)?);
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.layer(i)?.append(&k, &v)?,
                None => (k, v),
            };
            let y = if attn_p > 0.0 && is_training() {
                attend_with_dropout(&q, &k, &v, bias, Some(block.scale), attn_p)?
            } else {
                attend_grouped(&q, &k, &v, bias, block.scale, None)?
            };
            let y = block.attn_c_proj.forward(&merge_heads(&y)?)?;
            x = (x + dropout(&y, resid_p)?)?;
            let h = block.c_fc.forward(&block.ln_2.forward(&x)?)?.gelu()?;
            x = (x + dropout(&block.mlp_c_proj.forward(&h)?, resid_p)?)?;
        }
        Ok(x)
    }
}

impl CausalLm for Gpt2 {
    type Cache = CausalCache;

    fn new_cache(&self, left_padding: &[usize], max_len: usize) -> Result<CausalCache> {
        let (layers, kv_heads, head_dim) = (
            self.cfg.n_layer,
            self.cfg.n_head,
            self.cfg.n_embd / self.cfg.n_head,
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
        let positions = Tensor::from_vec(cache.positions(t), (b, t), &self.device)?;
        let no_padding = cache.left_padding().iter().all(|&p| p == 0);
        let bias = if t == 1 && no_padding {
            None
        } else {
            Some(cache.attention_bias(t, None)?)
        };
        let x = self.blocks(input_ids, &positions, bias.as_ref(), Some(cache))?;
        project_logits(&x, &self.ln_f, &self.lm_head, logits)
    }

    fn special_tokens(&self) -> SpecialTokens {
        special_tokens(
            &self.cfg.bos_token_id,
            &self.cfg.eos_token_id,
            &self.cfg.pad_token_id,
        )
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn max_positions(&self) -> usize {
        self.cfg.n_positions
    }
}
