//! A bounded load test: 200 concurrent mixed requests against three real servers (T5 text2text
//! with several option sets, sentence embeddings, completions and chat on a tiny Llama with
//! greedy, `n`, stop sequences and seeded sampling). Every request either succeeds with exactly
//! its single-request result or is refused with 429; nothing hangs; memory returns near its
//! baseline.

mod common;

use common::*;
use lmrs_server::ServerConfig;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// The result fields that must not depend on batching.
fn key_fields(path: &str, v: &Value) -> Value {
    match path {
        "/v1/embeddings" => v["data"].clone(),
        "/v1/completions" | "/v1/chat/completions" => json!([
            v["choices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| json!([c["text"], c["message"]["content"], c["finish_reason"]]))
                .collect::<Vec<_>>(),
            v["usage"]
        ]),
        _ => v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| json!([d["sequences"], d["input_tokens"]]))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_mixed_requests() {
    let t5 = TestServer::start(
        &fixture("t5-v1_0-tiny"),
        ServerConfig {
            max_batch_size: 8,
            max_queue: 48,
            ..Default::default()
        },
    )
    .await;
    let st = TestServer::start(
        &fixture("bert-tiny-st"),
        ServerConfig {
            max_batch_size: 16,
            max_queue: 48,
            ..Default::default()
        },
    )
    .await;

    let llm = TestServer::start(
        &fixture("llama-tiny"),
        ServerConfig {
            max_batch_size: 8,
            max_queue: 48,
            ..Default::default()
        },
    )
    .await;

    // The distinct requests: inputs of different lengths and four option sets.
    let options = [
        json!({"max_new_tokens": 8}),
        json!({"max_new_tokens": 16}),
        json!({"max_new_tokens": 6, "num_beams": 2}),
        json!({"max_new_tokens": 10, "no_repeat_ngram_size": 2, "repetition_penalty": 1.3}),
    ];
    let mut distinct: Vec<(std::net::SocketAddr, &str, Value)> = Vec::new();
    for i in 0..12 {
        let text = format!("Request {i}: {}", "some words ".repeat(1 + i % 5));
        let mut body = options[i % options.len()].clone();
        body["input"] = json!(if i % 3 == 0 {
            json!([text, "and a second input"])
        } else {
            json!(text)
        });
        distinct.push((t5.addr, "/v1/text2text", body));
    }
    for i in 0..6 {
        let input = (0..=i % 3)
            .map(|j| format!("sentence {i}.{j} {}", "x ".repeat(i)))
            .collect::<Vec<_>>();
        distinct.push((
            st.addr,
            "/v1/embeddings",
            json!({"model": st.id, "input": input}),
        ));
    }

    for i in 0..8 {
        let (path, body) = match i % 4 {
            0 => (
                "/v1/completions",
                json!({"prompt": format!("Story {i}: {}", "once ".repeat(i)),
                       "max_tokens": 12 + i, "min_tokens": 6, "temperature": 0}),
            ),
            1 => (
                "/v1/chat/completions",
                json!({"messages": [{"role": "user", "content": format!("Question {i}?")}],
                       "max_tokens": 10, "temperature": 0, "n": 2}),
            ),
            2 => (
                "/v1/completions",
                json!({"prompt": [format!("A {i}"), format!("B {i} b b b")], "max_tokens": 9,
                       "min_tokens": 2, "temperature": 0, "stop": ["e"]}),
            ),
            _ => (
                "/v1/chat/completions",
                json!({"messages": [{"role": "user", "content": format!("Seeded {i}")}],
                       "max_tokens": 8, "temperature": 0.8, "top_p": 0.9, "seed": 5}),
            ),
        };
        let mut body = body;
        body["model"] = json!(llm.id);
        distinct.push((llm.addr, path, body));
    }

    // Single-request runs (one at a time: batches of one request) as the reference.
    let mut want = HashMap::new();
    for (k, (addr, path, body)) in distinct.iter().enumerate() {
        let bytes = serde_json::to_vec(body).unwrap();
        let r = request(*addr, "POST", path, &[], Some(&bytes)).await;
        assert_eq!(r.status, 200, "{path} {body}: {}", r.text());
        want.insert(k, key_fields(path, &r.json()));
    }
    let (t5_batches_before, t5_rows_before) = t5.metrics.batches();
    let baseline = rss_kib();

    let run = async {
        let mut tasks = Vec::new();
        for n in 0..200 {
            let k = (n * 7) % distinct.len();
            let (addr, path, body) = distinct[k].clone();
            let bytes = serde_json::to_vec(&body).unwrap();
            tasks.push(tokio::spawn(async move {
                (
                    k,
                    path,
                    request(addr, "POST", path, &[], Some(&bytes)).await,
                )
            }));
        }
        let mut counts = (0, 0);
        for t in tasks {
            let (k, path, r) = t.await.unwrap();
            match r.status {
                200 => {
                    counts.0 += 1;
                    let got = key_fields(path, &r.json());
                    assert!(
                        close(&got, &want[&k]),
                        "request {k} differs:\n{got}\nvs\n{}",
                        want[&k]
                    );
                }
                429 => {
                    counts.1 += 1;
                    r.assert_error(429);
                }
                s => panic!("unexpected status {s}: {}", r.text()),
            }
        }
        counts
    };
    let (ok, refused) = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the load finishes (nothing hangs)");
    eprintln!("load: {ok} ok, {refused} refused with 429");
    assert_eq!(ok + refused, 200);
    assert!(ok >= 96, "at least the queue capacity succeeds: {ok}");

    // Batching happened: fewer model calls than requests on the T5 server.
    let (batches, rows) = t5.metrics.batches();
    let (batches, rows) = (batches - t5_batches_before, rows - t5_rows_before);
    eprintln!("t5: {batches} batches for {rows} rows");
    assert!(
        (batches as f64) < rows,
        "no batching: {batches} batches, {rows} rows"
    );

    // How many completions joined a running decode depends on arrival timing (on a loaded
    // machine none may); tests/causal.rs checks joining itself.
    let joined = llm.metrics.joined_count();
    eprintln!("llama: {joined} requests joined a running batch");

    // Queues drained; memory back near the baseline.
    for s in [&t5, &st, &llm] {
        let m = s.metrics_text().await;
        assert_eq!(metric(&m, "lmrs_queue_depth"), 0.0);
        assert_eq!(metric(&m, "lmrs_running_rows"), 0.0);
    }
    let after = rss_kib();
    eprintln!("rss: baseline {baseline} KiB, after {after} KiB");
    assert!(
        after < baseline + 96 * 1024,
        "memory grew from {baseline} KiB to {after} KiB"
    );
    t5.stop().await;
    st.stop().await;
    llm.stop().await;
}
