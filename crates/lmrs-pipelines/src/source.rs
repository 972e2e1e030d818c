//! Finding the model folder a pipeline loads from.

use crate::{PipelineError, Result};
use lmrs_io::ModelSource;
use std::path::PathBuf;

/// Resolve `reference` (a local folder or a hub id in the Hugging Face cache) to a model
/// folder. `kind` names the model family in the error for single-file (GGUF) references,
/// e.g. "encoder models".
pub(crate) fn model_folder(reference: &str, revision: Option<&str>, kind: &str) -> Result<PathBuf> {
    match lmrs_io::resolve(reference, revision)? {
        ModelSource::HfFolder(dir) => Ok(dir),
        ModelSource::Gguf(path) => Err(PipelineError::Task(format!(
            "{} is a single file; {kind} load from a Hugging Face folder",
            path.display()
        ))),
    }
}
