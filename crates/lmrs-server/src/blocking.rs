//! CPU work a request needs before it is queued (tokenizing, rendering a chat template), run off
//! the async runtime.
//!
//! Tokenizing a few megabytes takes a second of CPU; on the HTTP threads, a handful of such
//! requests at once stall every other connection, `/health` included. Here the work runs on
//! tokio's blocking threads, at most one job per core at a time (more would only share the
//! cores and multiply peak memory), and the HTTP threads keep answering.
//!
//! Tokenizing a large text allocates many times its size (tokens, offsets, words); freed, that
//! memory stays in the blocking thread's malloc arena, so after a burst of big prompts the
//! process would keep its peak RSS. Jobs over [`TRIM_AFTER_BYTES`] of text hand it back to the
//! OS when they finish ([`release_freed_memory`]).

use crate::error::ApiError;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Text size above which a finished job returns freed memory to the OS.
pub(crate) const TRIM_AFTER_BYTES: usize = 1 << 20;

/// Return the heap memory freed so far to the OS (glibc keeps it in per-thread arenas
/// otherwise); a no-op where the allocator offers no such call.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; 0 keeps no padding.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The permits for pre-queue CPU work: one per core.
pub(crate) struct CpuSlots(Arc<Semaphore>);

impl CpuSlots {
    pub(crate) fn new() -> Self {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self(Arc::new(Semaphore::new(n)))
    }

    /// Run `f`, which works on `text_bytes` of text, on a blocking thread once a slot is free.
    /// A client that goes away while waiting drops this future, and with it its place in line.
    pub(crate) async fn run<T, F>(&self, text_bytes: usize, f: F) -> Result<T, ApiError>
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
            if text_bytes > TRIM_AFTER_BYTES {
                release_freed_memory();
            }
            drop(permit);
            out
        })
        .await
        .map_err(|e| ApiError::internal(format!("a tokenizer thread failed: {e}")))?
    }
}
