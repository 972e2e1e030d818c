//! Trainable parameters: the tensors a model loads, made autograd variables.
//!
//! A training run loads the model through the same code as inference, from [`Weights`] made
//! trainable with [`Weights::trainable`]. Every tensor the model asks for then becomes a
//! `Var` recorded here under its full checkpoint key, in load order; asking twice for one key
//! (an output layer tied to the embedding) returns the same variable, so tied weights stay
//! tied and get one gradient. The store is what the optimizer updates and what a checkpoint
//! writes back under the same names.
//!
//! [`Weights`]: crate::Weights
//! [`Weights::trainable`]: crate::Weights::trainable

use lmrs_core::candle::Var;
use lmrs_core::Tensor;
use std::sync::Mutex;

/// The variables a model was built from, by checkpoint key, in load order.
#[derive(Debug, Default)]
pub struct ParamStore {
    vars: Mutex<Vec<(String, Var)>>,
    /// Keys loaded by a `LayerNorm` layer (`nn.LayerNorm` in PyTorch), which `transformers`
    /// exempts from weight decay by module type whatever their names (GPT-2's `ln_1`).
    layer_norms: Mutex<std::collections::HashSet<String>>,
    /// Set for a LoRA run: the base is frozen and targeted projections get adapters.
    lora: Option<crate::LoraSpec>,
    /// `target_modules` entries that matched a projection so far.
    lora_hits: Mutex<std::collections::HashSet<String>>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store for a LoRA run: base tensors stay frozen (see [`Self::frozen`]), projections
    /// that `spec` targets get adapter variables.
    pub fn with_lora(spec: crate::LoraSpec) -> Self {
        Self {
            lora: Some(spec),
            ..Self::default()
        }
    }

    /// The LoRA settings of the run, if it is one.
    pub fn lora(&self) -> Option<&crate::LoraSpec> {
        self.lora.as_ref()
    }

    /// `true` for a base tensor of a LoRA run: loaded as a plain tensor, no gradient, no
    /// optimizer state (everything but `modules_to_save` and the adapters).
    pub fn frozen(&self, key: &str) -> bool {
        self.lora.as_ref().is_some_and(|l| !l.saves(key))
    }

    /// Record that `target_modules` entry `target` adapted a projection.
    pub fn lora_hit(&self, target: &str) {
        let mut hits = self.lora_hits.lock().unwrap_or_else(|p| p.into_inner());
        hits.insert(target.to_string());
    }

    /// `target_modules` entries that adapted nothing (a typo, or a layer lmrs cannot adapt).
    pub fn lora_misses(&self) -> Vec<String> {
        let hits = self.lora_hits.lock().unwrap_or_else(|p| p.into_inner());
        self.lora
            .iter()
            .flat_map(|l| l.target_modules.iter())
            .filter(|t| !hits.contains(*t))
            .cloned()
            .collect()
    }

    /// The variable under `key`, created from `load()` the first time it is asked for.
    pub fn get_or_insert<E>(
        &self,
        key: &str,
        load: impl FnOnce() -> Result<Tensor, E>,
    ) -> Result<Tensor, E>
    where
        E: From<lmrs_core::candle::Error>,
    {
        let mut vars = self.vars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, v)) = vars.iter().find(|(k, _)| k == key) {
            return Ok(v.as_tensor().clone());
        }
        let var = Var::from_tensor(&load()?)?;
        let t = var.as_tensor().clone();
        vars.push((key.to_string(), var));
        Ok(t)
    }

    /// Add a new parameter that the checkpoint lacks (a freshly initialized head), before the
    /// model is loaded: [`crate::Weights`] made trainable with this store then finds it
    /// under `key` as if the file held it. Replaces an earlier variable of that key.
    pub fn insert(&self, key: &str, value: &Tensor) -> lmrs_core::candle::Result<()> {
        let var = Var::from_tensor(value)?;
        let mut vars = self.vars.lock().unwrap_or_else(|p| p.into_inner());
        vars.retain(|(k, _)| k != key);
        vars.push((key.to_string(), var));
        Ok(())
    }

    /// Record that `key` belongs to a `LayerNorm` layer.
    pub fn mark_layer_norm(&self, key: &str) {
        let mut set = self.layer_norms.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(key.to_string());
    }

    /// `true` when `key` was loaded by a `LayerNorm` layer.
    pub fn in_layer_norm(&self, key: &str) -> bool {
        let set = self.layer_norms.lock().unwrap_or_else(|p| p.into_inner());
        set.contains(key)
    }

    /// The shape of the variable under `key`, when there is one.
    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        let vars = self.vars.lock().unwrap_or_else(|p| p.into_inner());
        vars.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_tensor().dims().to_vec())
    }

    /// Every `(key, variable)` pair, in load order.
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.vars.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.vars.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// `true` before anything was loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
