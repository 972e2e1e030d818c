//! CPU work a request needs before it is queued (tokenizing, rendering a chat template), run off
//! the async runtime.
//!
//! Tokenizing a few megabytes takes a second of CPU; on the HTTP threads, a handful of such
//! requests at once stall every other connection, `/health` included. Here the work runs on
//! tokio's blocking threads, at most one job per core at a time (more would only share the
//! cores and multiply peak memory), and the HTTP threads keep answering.

use crate::error::ApiError;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The permits for pre-queue CPU work: one per core.
pub(crate) struct CpuSlots(Arc<Semaphore>);

impl CpuSlots {
    pub(crate) fn new() -> Self {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self(Arc::new(Semaphore::new(n)))
    }

    /// Run `f` on a blocking thread once a slot is free. A client that goes away while waiting
    /// drops this future, and with it its place in line.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    {
        let permit = self
            .0
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::shutting_down())?;
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(|e| ApiError::internal(format!("a tokenizer thread failed: {e}")))?
    }
}
