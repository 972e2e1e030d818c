//! Counters and histograms, rendered as Prometheus text at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Latency buckets in seconds.
const SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Batch-size buckets in rows.
const ROWS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

#[derive(Debug)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    batch_rows: Histogram,
    queue_wait: Histogram,
    batch_seconds: Histogram,
    rejected: BTreeMap<&'static str, u64>,
    input_tokens: u64,
    generated_tokens: u64,
    inference_seconds: f64,
    last_tokens_per_second: f64,
    running_rows: u64,
    joined: u64,
}

/// Server metrics (one lock; updates are a few additions).
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What one model call did, for [`Metrics::batch_done`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchStats {
    /// Inputs in the batch.
    pub rows: usize,
    /// Requests in the batch.
    pub requests: usize,
    /// Input tokens of the batch.
    pub input_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Time in the model.
    pub elapsed: Duration,
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                requests: BTreeMap::new(),
                latency: BTreeMap::new(),
                batch_rows: Histogram::new(ROWS),
                queue_wait: Histogram::new(SECONDS),
                batch_seconds: Histogram::new(SECONDS),
                rejected: BTreeMap::new(),
                input_tokens: 0,
                generated_tokens: 0,
                inference_seconds: 0.0,
                last_tokens_per_second: 0.0,
                running_rows: 0,
                joined: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain numbers behind: keep serving them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One HTTP request answered.
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let mut m = self.lock();
        *m.requests
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        m.latency
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(SECONDS))
            .observe(elapsed.as_secs_f64());
    }

    /// A request refused or dropped: `queue_full`, `timeout`, `cancelled` (left while queued),
    /// `abandoned` (left while running), `shutting_down`.
    pub fn rejected(&self, reason: &'static str) {
        *self.lock().rejected.entry(reason).or_default() += 1;
    }

    /// A request left the queue for the model after `waited`.
    pub fn dequeued(&self, waited: Duration) {
        self.lock().queue_wait.observe(waited.as_secs_f64());
    }

    /// A batch of `rows` inputs starts.
    pub fn batch_started(&self, rows: usize) {
        self.lock().running_rows += rows as u64;
    }

    /// A batch finished.
    pub fn batch_done(&self, s: BatchStats) {
        let mut m = self.lock();
        m.running_rows = m.running_rows.saturating_sub(s.rows as u64);
        m.batch_rows.observe(s.rows as f64);
        let secs = s.elapsed.as_secs_f64();
        m.batch_seconds.observe(secs);
        m.input_tokens += s.input_tokens as u64;
        m.generated_tokens += s.generated_tokens as u64;
        m.inference_seconds += secs;
        if secs > 0.0 {
            let produced = if s.generated_tokens > 0 {
                s.generated_tokens
            } else {
                s.input_tokens
            };
            m.last_tokens_per_second = produced as f64 / secs;
        }
    }

    /// A request joined a decoder batch that was already running (continuous batching).
    pub fn joined(&self) {
        self.lock().joined += 1;
    }

    /// Requests that joined a running decoder batch so far.
    pub fn joined_count(&self) -> u64 {
        self.lock().joined
    }

    /// `rows` inputs of a running decoder batch left it (finished, failed or abandoned).
    pub fn rows_left(&self, rows: usize) {
        let mut m = self.lock();
        m.running_rows = m.running_rows.saturating_sub(rows as u64);
    }

    /// One decoding step of a continuous batch: `rows` rows fed in `elapsed`, `input_tokens`
    /// prompt tokens prefilled since the last step (requests that joined), one token decided
    /// per row.
    pub fn decode_step(&self, rows: usize, input_tokens: usize, elapsed: Duration) {
        let mut m = self.lock();
        m.batch_rows.observe(rows as f64);
        let secs = elapsed.as_secs_f64();
        m.batch_seconds.observe(secs);
        m.input_tokens += input_tokens as u64;
        m.generated_tokens += rows as u64;
        m.inference_seconds += secs;
        if secs > 0.0 {
            m.last_tokens_per_second = rows as f64 / secs;
        }
    }

    /// Batches run so far and the rows they held (for tests and logs).
    pub fn batches(&self) -> (u64, f64) {
        let m = self.lock();
        (m.batch_rows.count, m.batch_rows.sum)
    }

    /// Count of a rejection reason.
    pub fn rejected_count(&self, reason: &str) -> u64 {
        self.lock().rejected.get(reason).copied().unwrap_or(0)
    }

    /// Prometheus text exposition.
    pub fn render(&self, queue_depth: usize, queue_capacity: usize, model: &str) -> String {
        let m = self.lock();
        let mut out = String::new();
        let model = model.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "# HELP lmrs_model_info The served model.");
        let _ = writeln!(out, "# TYPE lmrs_model_info gauge");
        let _ = writeln!(out, "lmrs_model_info{{model=\"{model}\"}} 1");
        let _ = writeln!(
            out,
            "# HELP lmrs_http_requests_total HTTP requests answered."
        );
        let _ = writeln!(out, "# TYPE lmrs_http_requests_total counter");
        for ((route, method, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "lmrs_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP lmrs_http_request_duration_seconds Time from request to response headers."
        );
        let _ = writeln!(out, "# TYPE lmrs_http_request_duration_seconds histogram");
        for (route, h) in &m.latency {
            h.render(
                &mut out,
                "lmrs_http_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP lmrs_queue_depth Requests waiting for the model."
        );
        let _ = writeln!(out, "# TYPE lmrs_queue_depth gauge");
        let _ = writeln!(out, "lmrs_queue_depth {queue_depth}");
        let _ = writeln!(
            out,
            "# HELP lmrs_queue_capacity Requests the queue holds (--max-queue)."
        );
        let _ = writeln!(out, "# TYPE lmrs_queue_capacity gauge");
        let _ = writeln!(out, "lmrs_queue_capacity {queue_capacity}");
        let _ = writeln!(out, "# HELP lmrs_running_rows Inputs in the model now.");
        let _ = writeln!(out, "# TYPE lmrs_running_rows gauge");
        let _ = writeln!(out, "lmrs_running_rows {}", m.running_rows);
        let _ = writeln!(
            out,
            "# HELP lmrs_requests_rejected_total Requests refused or dropped, by reason."
        );
        let _ = writeln!(out, "# TYPE lmrs_requests_rejected_total counter");
        for reason in [
            "queue_full",
            "timeout",
            "cancelled",
            "abandoned",
            "shutting_down",
        ] {
            let n = m.rejected.get(reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "lmrs_requests_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP lmrs_requests_joined_total Requests that joined a decoder batch already running."
        );
        let _ = writeln!(out, "# TYPE lmrs_requests_joined_total counter");
        let _ = writeln!(out, "lmrs_requests_joined_total {}", m.joined);
        let _ = writeln!(
            out,
            "# HELP lmrs_batch_size Inputs per model call (a decoder batch: per step)."
        );
        let _ = writeln!(out, "# TYPE lmrs_batch_size histogram");
        m.batch_rows.render(&mut out, "lmrs_batch_size", "");
        let _ = writeln!(
            out,
            "# HELP lmrs_batch_duration_seconds Time per model call."
        );
        let _ = writeln!(out, "# TYPE lmrs_batch_duration_seconds histogram");
        m.batch_seconds
            .render(&mut out, "lmrs_batch_duration_seconds", "");
        let _ = writeln!(
            out,
            "# HELP lmrs_queue_wait_seconds Time requests waited in the queue."
        );
        let _ = writeln!(out, "# TYPE lmrs_queue_wait_seconds histogram");
        m.queue_wait.render(&mut out, "lmrs_queue_wait_seconds", "");
        let _ = writeln!(
            out,
            "# HELP lmrs_input_tokens_total Input tokens processed."
        );
        let _ = writeln!(out, "# TYPE lmrs_input_tokens_total counter");
        let _ = writeln!(out, "lmrs_input_tokens_total {}", m.input_tokens);
        let _ = writeln!(out, "# HELP lmrs_generated_tokens_total Tokens generated.");
        let _ = writeln!(out, "# TYPE lmrs_generated_tokens_total counter");
        let _ = writeln!(out, "lmrs_generated_tokens_total {}", m.generated_tokens);
        let _ = writeln!(
            out,
            "# HELP lmrs_inference_seconds_total Time spent in the model (rate of tokens over this: tokens/s)."
        );
        let _ = writeln!(out, "# TYPE lmrs_inference_seconds_total counter");
        let _ = writeln!(out, "lmrs_inference_seconds_total {}", m.inference_seconds);
        let _ = writeln!(
            out,
            "# HELP lmrs_tokens_per_second Tokens per second of the last batch (generated, or input for encoders)."
        );
        let _ = writeln!(out, "# TYPE lmrs_tokens_per_second gauge");
        let _ = writeln!(out, "lmrs_tokens_per_second {}", m.last_tokens_per_second);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.request("/v1/embeddings", "POST", 200, Duration::from_millis(20));
        m.batch_started(3);
        m.batch_done(BatchStats {
            rows: 3,
            requests: 2,
            input_tokens: 30,
            generated_tokens: 0,
            elapsed: Duration::from_millis(100),
        });
        m.rejected("queue_full");
        let text = m.render(2, 64, "m");
        assert!(text.contains(
            "lmrs_http_requests_total{route=\"/v1/embeddings\",method=\"POST\",status=\"200\"} 1"
        ));
        assert!(text.contains(
            "lmrs_http_request_duration_seconds_bucket{route=\"/v1/embeddings\",le=\"0.025\"} 1"
        ));
        assert!(text.contains("lmrs_batch_size_bucket{le=\"4\"} 1"));
        assert!(text.contains("lmrs_batch_size_sum 3"));
        assert!(text.contains("lmrs_queue_depth 2"));
        assert!(text.contains("lmrs_requests_rejected_total{reason=\"queue_full\"} 1"));
        assert!(text.contains("lmrs_tokens_per_second 300"));
        assert_eq!(m.batches(), (1, 3.0));
    }
}
