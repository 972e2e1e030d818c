//! The bounded queue and the model thread(s) that drain it.
//!
//! Handlers push a [`Job`] and await its reply; a full queue refuses at once (the handler
//! answers 429). A model thread takes the oldest job and every waiting job that can share its
//! pipeline call ([`crate::Work::can_join`]) up to `max_batch_size` inputs, runs them as one
//! batch and replies to each. Jobs whose client has gone (the reply channel is closed: the
//! connection dropped or the request timed out) are dropped without running; a causal LM also
//! stops a gone client's rows inside a running batch (counted as `abandoned`). A panic or an
//! error in a batch of several jobs is retried job by job so one bad input fails only its own
//! request.
//!
//! A causal LM decodes greedy and sampled completions as a continuous batch
//! ([`ContinuousGeneration`]): between two decoding steps, waiting completion jobs at the head of
//! the queue join the running batch while it has fewer than `max_batch_size` rows, whatever their
//! options, and every request leaves as soon as its rows finish. Beam search and seeded
//! sampling (whose streams are numbered by batch row) run as separate batches.

use crate::backend::{Backend, Output, Work};
use crate::error::{ApiError, ServerError};
use crate::metrics::{BatchStats, Metrics};
use lmrs_pipelines::{ContinuousGeneration, RequestId, TextGenerationPipeline};
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The answer a job gets.
pub type Reply = Result<Output, ApiError>;

/// A request waiting for the model.
pub struct Job {
    /// What to compute.
    pub work: Work,
    /// Run alone (seeded sampling, seq2seq streaming: the result would depend on batch
    /// neighbours).
    pub exclusive: bool,
    /// Input tokens, for metrics.
    pub input_tokens: usize,
    /// Where the result goes.
    pub reply: oneshot::Sender<Reply>,
    /// When it was queued.
    pub enqueued: Instant,
}

impl Job {
    fn cancelled(&self) -> bool {
        self.reply.is_closed()
    }
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds `--max-queue` jobs.
    Full,
    /// The server is shutting down.
    Closed,
}

struct State {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// A bounded FIFO of jobs shared by the handlers and the model threads.
pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
}

impl Queue {
    /// A queue holding at most `capacity` jobs.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a job, or say why it was refused (the job is dropped).
    pub fn push(&self, job: Job) -> Result<(), PushError> {
        let mut s = self.lock();
        if s.closed {
            return Err(PushError::Closed);
        }
        // Jobs whose clients left make room first.
        if s.jobs.len() >= self.capacity {
            s.jobs.retain(|j| !j.cancelled());
        }
        if s.jobs.len() >= self.capacity {
            return Err(PushError::Full);
        }
        s.jobs.push_back(job);
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// Jobs waiting.
    pub fn depth(&self) -> usize {
        self.lock().jobs.len()
    }

    /// The most jobs it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Refuse new jobs; the model threads finish the queued ones and stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Block until there is work: the oldest job plus the waiting jobs that can join it, at
    /// most `max_rows` inputs together (a single larger job runs alone). `None` once the
    /// queue is closed and empty. Cancelled jobs met on the way are dropped and counted.
    fn next_batch(&self, max_rows: usize, metrics: &Metrics) -> Option<Vec<Job>> {
        let mut s = self.lock();
        let first = loop {
            match s.jobs.pop_front() {
                Some(j) if j.cancelled() => metrics.rejected("cancelled"),
                Some(j) => break j,
                None if s.closed => return None,
                None => s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner()),
            }
        };
        let mut rows = first.work.rows();
        let exclusive = first.exclusive;
        let mut batch = vec![first];
        let mut i = 0;
        while !exclusive && i < s.jobs.len() && rows < max_rows {
            let j = &s.jobs[i];
            if j.cancelled() {
                s.jobs.remove(i);
                metrics.rejected("cancelled");
                continue;
            }
            if !j.exclusive && batch[0].work.can_join(&j.work) && rows + j.work.rows() <= max_rows {
                rows += j.work.rows();
                batch.extend(s.jobs.remove(i));
            } else {
                i += 1;
            }
        }
        Some(batch)
    }
}

impl Queue {
    /// Without waiting: the jobs at the head of the queue that `fits` accepts, oldest first,
    /// while their rows total at most `max_rows`. Stops at the first job that does not fit, so
    /// no job is overtaken by a later one. Cancelled jobs met on the way are dropped and
    /// counted.
    fn take_joinable(
        &self,
        max_rows: usize,
        fits: &dyn Fn(&Job) -> bool,
        metrics: &Metrics,
    ) -> Vec<Job> {
        let mut s = self.lock();
        let mut taken = Vec::new();
        let mut rows = 0;
        while let Some(j) = s.jobs.front() {
            if j.cancelled() {
                s.jobs.pop_front();
                metrics.rejected("cancelled");
                continue;
            }
            if !fits(j) || rows + j.work.rows() > max_rows {
                break;
            }
            rows += j.work.rows();
            taken.extend(s.jobs.pop_front());
        }
        taken
    }
}

/// Start `n` model threads over `queue`. Idle threads sleep on the queue's condition
/// variable (no spinning). A thread the OS refuses is an error, after the ones already started
/// are stopped.
pub fn spawn_workers(
    n: usize,
    backend: Arc<Backend>,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    max_batch_size: usize,
) -> Result<Vec<JoinHandle<()>>, ServerError> {
    let mut handles = Vec::with_capacity(n.max(1));
    for i in 0..n.max(1) {
        let (b, q, m) = (backend.clone(), queue.clone(), metrics.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("lmrs-model-{i}"))
            .spawn(move || worker_loop(&b, &q, &m, max_batch_size));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                queue.close();
                join_workers(handles, Duration::from_secs(5));
                return Err(ServerError::Config(format!(
                    "cannot start model thread {} of {n}: {e}; use fewer --workers",
                    i + 1
                )));
            }
        }
    }
    Ok(handles)
}

fn worker_loop(backend: &Backend, queue: &Queue, metrics: &Metrics, max_batch_size: usize) {
    while let Some(batch) = queue.next_batch(max_batch_size, metrics) {
        let now = Instant::now();
        for j in &batch {
            metrics.dequeued(now.duration_since(j.enqueued));
        }
        match continuous_pipeline(backend, &batch[0], max_batch_size) {
            Some(p) => {
                let fits = |j: &Job| continuous_pipeline(backend, j, max_batch_size).is_some();
                let (now, later): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(fits);
                run_continuous(p, now, queue, metrics, max_batch_size);
                if !later.is_empty() {
                    run_batch(backend, later, metrics, max_batch_size);
                }
            }
            None => run_batch(backend, batch, metrics, max_batch_size),
        }
    }
}

/// The pipeline when `job` can decode in a continuous batch: a causal-LM completion with greedy
/// search or unseeded sampling, at most `max_rows` rows.
fn continuous_pipeline<'b>(
    backend: &'b Backend,
    job: &Job,
    max_rows: usize,
) -> Option<&'b TextGenerationPipeline> {
    match backend {
        Backend::CausalLm(p) if joins_continuous(p, job, max_rows) => Some(p),
        _ => None,
    }
}

/// A job decoding in a continuous batch.
struct Running {
    job: Job,
    rows: usize,
}

/// Decode `first` and every completion job that joins from the queue between steps, until no
/// row is left. Each job is answered as soon as its rows finish.
fn run_continuous(
    p: &TextGenerationPipeline,
    first: Vec<Job>,
    queue: &Queue,
    metrics: &Metrics,
    max_rows: usize,
) {
    let mut live = ContinuousGeneration::new(p);
    let mut running: HashMap<RequestId, Running> = HashMap::new();
    let mut prefilled = 0;
    for job in first {
        admit(&mut live, &mut running, job, metrics, &mut prefilled);
    }
    loop {
        // Clients that went away leave before the next step.
        let gone: Vec<RequestId> = running
            .iter()
            .filter(|(_, r)| r.job.cancelled())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            if let Some(r) = running.remove(&id) {
                let _ = live.cancel(id);
                metrics.rows_left(r.rows);
                metrics.rejected("abandoned");
            }
        }
        let room = max_rows.saturating_sub(live.rows());
        if room > 0 {
            let fits = |j: &Job| joins_continuous(p, j, max_rows);
            let now = Instant::now();
            for job in queue.take_joinable(room, &fits, metrics) {
                metrics.dequeued(now.duration_since(job.enqueued));
                if !live.is_empty() {
                    metrics.joined();
                }
                admit(&mut live, &mut running, job, metrics, &mut prefilled);
            }
        }
        if live.is_empty() {
            break;
        }
        let rows = live.rows();
        let start = Instant::now();
        let stepped = catch_unwind(AssertUnwindSafe(|| {
            let mut sink = |id: RequestId, prompt: usize, piece: &str| {
                if let Some(Work::Complete {
                    stream: Some(tx), ..
                }) = running.get(&id).map(|r| &r.job.work)
                {
                    let _ = tx.send((prompt, piece.to_string()));
                }
            };
            live.step(Some(&mut sink))
        }));
        metrics.decode_step(rows, std::mem::take(&mut prefilled), start.elapsed());
        let failure = match stepped {
            Ok(Ok(done)) => {
                for (id, result) in done {
                    if let Some(r) = running.remove(&id) {
                        metrics.rows_left(r.rows);
                        if r.job.cancelled() {
                            metrics.rejected("abandoned");
                        }
                        let reply = result.map(Output::Complete).map_err(ApiError::from);
                        let _ = r.job.reply.send(reply);
                    }
                }
                continue;
            }
            Ok(Err(e)) => ApiError::from(e),
            Err(panic) => ApiError::internal(format!(
                "the model failed on this request: {}",
                panic_message(&*panic)
            )),
        };
        // The forward pass failed: every running request ends with the error.
        for (_, r) in running.drain() {
            metrics.rows_left(r.rows);
            let _ = r.job.reply.send(Err(failure.clone()));
        }
        break;
    }
}

/// Whether `job` is a completion that decodes in a continuous batch of `p`.
fn joins_continuous(p: &TextGenerationPipeline, job: &Job, max_rows: usize) -> bool {
    matches!(&job.work, Work::Complete { overrides, .. }
        if !job.exclusive
            && job.work.rows() <= max_rows
            && ContinuousGeneration::accepts(p, overrides))
}

/// Prefill `job`'s prompts into `live`, or answer it with its error.
fn admit(
    live: &mut ContinuousGeneration<'_>,
    running: &mut HashMap<RequestId, Running>,
    job: Job,
    metrics: &Metrics,
    prefilled: &mut usize,
) {
    let Work::Complete {
        prompts, overrides, ..
    } = &job.work
    else {
        let _ = job.reply.send(Err(ApiError::internal(
            "a continuous batch got a job that is not a completion",
        )));
        return;
    };
    let added = catch_unwind(AssertUnwindSafe(|| live.add(prompts, overrides)));
    match added {
        Ok(Ok(id)) => {
            let rows = job.work.rows();
            metrics.batch_started(rows);
            *prefilled += job.input_tokens;
            running.insert(id, Running { job, rows });
        }
        Ok(Err(e)) => {
            let _ = job.reply.send(Err(ApiError::from(e)));
        }
        Err(panic) => {
            let _ = job.reply.send(Err(ApiError::internal(format!(
                "the model failed on this request: {}",
                panic_message(&*panic)
            ))));
        }
    }
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic")
}

fn run_batch(backend: &Backend, batch: Vec<Job>, metrics: &Metrics, max_batch_size: usize) {
    let rows: usize = batch.iter().map(|j| j.work.rows()).sum();
    metrics.batch_started(rows);
    let start = Instant::now();
    let works: Vec<&Work> = batch.iter().map(|j| &j.work).collect();
    let cancelled = |i: usize| batch[i].cancelled();
    let result = catch_unwind(AssertUnwindSafe(|| {
        backend.run(&works, max_batch_size, &cancelled)
    }));
    let elapsed = start.elapsed();
    let mut stats = BatchStats {
        rows,
        requests: batch.len(),
        input_tokens: batch.iter().map(|j| j.input_tokens).sum(),
        generated_tokens: 0,
        elapsed,
    };
    match result {
        Ok(Ok(outputs)) => {
            stats.generated_tokens = outputs.iter().map(Output::generated_tokens).sum();
            metrics.batch_done(stats);
            for (job, out) in batch.into_iter().zip(outputs) {
                if job.cancelled() {
                    metrics.rejected("abandoned");
                }
                let _ = job.reply.send(Ok(out));
            }
        }
        Ok(Err(_)) | Err(_) if batch.len() > 1 => {
            // Find the culprit: each job alone.
            metrics.batch_done(stats);
            for job in batch {
                run_batch(backend, vec![job], metrics, max_batch_size);
            }
        }
        Ok(Err(e)) => {
            metrics.batch_done(stats);
            let e = ApiError::from(e);
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
        Err(panic) => {
            metrics.batch_done(stats);
            let what = panic_message(&*panic);
            for job in batch {
                let _ = job.reply.send(Err(ApiError::internal(format!(
                    "the model failed on this request: {what}"
                ))));
            }
        }
    }
}

/// Wait up to `grace` for the model threads to finish; returns whether they all did.
pub fn join_workers(handles: Vec<JoinHandle<()>>, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    while handles.iter().any(|h| !h.is_finished()) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for h in handles {
        let _ = h.join();
    }
    true
}
