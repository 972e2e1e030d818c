//! Config sizes checked against the checkpoint's tensor directory before anything is built.
//!
//! A config is just JSON: `"num_layers": 1000000000000` or `"head_dim": 1000000000000` would
//! size vectors, rotary tables and products (`heads * head_dim`) long before the first tensor
//! is read, and abort on allocation or overflow. Each architecture therefore first compares
//! the sizes its config declares with the shapes the weight files store (only the directory,
//! no data), so a wrong size is an error naming the config field, and every size used later is
//! one a tensor of that size really exists for.

use crate::{ModelError, Result};
use lmrs_io::Weights;
use std::path::Path;

/// One expected dimension: its value, or `None` when the product of the named fields
/// overflows, and the config field(s) it comes from (`"num_heads * d_kv"`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dim<'a> {
    value: Option<usize>,
    fields: &'a str,
}

/// A dimension given by one config field.
pub(crate) fn dim(value: usize, field: &str) -> Dim<'_> {
    Dim {
        value: Some(value),
        fields: field,
    }
}

/// A dimension that is the product of two config fields (`None` on overflow).
pub(crate) fn prod<'a>(a: usize, b: usize, fields: &'a str) -> Dim<'a> {
    Dim {
        value: a.checked_mul(b),
        fields,
    }
}

/// Checks against one checkpoint; errors name `source` (the config file or GGUF file).
pub(crate) struct SizeCheck<'a> {
    w: &'a Weights,
    source: &'a Path,
}

impl<'a> SizeCheck<'a> {
    /// Checks of `w`'s tensors for the config read from `source`.
    pub(crate) fn new(w: &'a Weights, source: &'a Path) -> Self {
        Self { w, source }
    }

    fn error(&self, field: &str, message: String) -> ModelError {
        ModelError::ConfigField {
            path: self.source.display().to_string(),
            field: field.to_string(),
            message,
        }
    }

    /// Tensor `key` (under `w`'s prefix) must exist with the shape `dims` gives. A missing
    /// tensor is reported as the loader would (it names the tensor); a wrong dimension names
    /// the config field that implies it.
    pub(crate) fn tensor(&self, key: &str, dims: &[Dim<'_>]) -> Result<()> {
        let Some(found) = self.w.shape(key) else {
            return Err(lmrs_io::IoError::MissingTensor {
                name: self.w.key(key),
                files: self.source.display().to_string(),
            }
            .into());
        };
        if found.len() != dims.len() {
            return Err(lmrs_io::IoError::ShapeMismatch {
                name: self.w.key(key),
                expected: dims.iter().map(|d| d.value.unwrap_or(usize::MAX)).collect(),
                found,
            }
            .into());
        }
        for (axis, (d, &f)) in dims.iter().zip(&found).enumerate() {
            match d.value {
                None => {
                    return Err(self.error(
                        d.fields,
                        format!("overflows (tensor '{}' has {f} there)", self.w.key(key)),
                    ))
                }
                Some(v) if v != f => {
                    let expected: Vec<usize> =
                        dims.iter().map(|d| d.value.unwrap_or(usize::MAX)).collect();
                    return Err(self.error(
                        d.fields,
                        format!(
                            "is {v}, but tensor '{}' has shape {found:?}, expected {expected:?} \
                             (dimension {axis})",
                            self.w.key(key)
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// A stack of `count` blocks (`field` in the config): `probe(i)` names a tensor block `i`
    /// must hold. Block 0 and the last block must exist, so a count beyond the checkpoint is
    /// refused before any vector of that length is made.
    pub(crate) fn layers(
        &self,
        field: &str,
        count: usize,
        probe: impl Fn(usize) -> String,
    ) -> Result<()> {
        if count == 0 {
            return Err(self.error(field, "must be positive".into()));
        }
        let last = probe(count - 1);
        if !self.w.contains(&last) {
            return Err(self.error(
                field,
                format!(
                    "is {count}, but tensor '{}' of block {} is not found in the checkpoint",
                    self.w.key(&last),
                    count - 1
                ),
            ));
        }
        Ok(())
    }
}

/// A float config value that must be finite and positive (epsilons, RoPE bases, scales):
/// 0, a negative value or NaN would run to the end and produce garbage.
pub(crate) fn positive_f64(source: &Path, field: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ModelError::ConfigField {
            path: source.display().to_string(),
            field: field.to_string(),
            message: format!("is {value}; it must be a finite positive number"),
        })
    }
}
