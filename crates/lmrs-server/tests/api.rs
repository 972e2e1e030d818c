//! The server as a client sees it: every route against the tiny fixtures, results equal to
//! the pipelines' own, every bad request answered with an OpenAI-style 4xx, auth, streaming,
//! cancellation, back-pressure and graceful shutdown.

mod common;

use common::*;
use lmrs_generate::GenerationConfig;
use lmrs_pipelines::{
    Aggregation, ClassificationPipeline, ClassifyOptions, EmbedOptions, EmbeddingPipeline,
    FillMaskPipeline, LoadOptions, RunOptions, Seq2SeqPipeline, Task, TokenClassificationPipeline,
};
use lmrs_server::ServerConfig;
use serde_json::{json, Value};
use std::time::Duration;

const T5: &str = "t5-v1_0-tiny";

fn texts() -> Vec<String> {
    vec![
        "The tower is 324 metres tall, about the same height as an 81-storey building.".into(),
        "Hello world.".into(),
        "A quick brown fox jumps over the lazy dog near the river bank.".into(),
    ]
}

fn t5_reference(texts: &[String], task: &Task, overrides: &GenerationConfig) -> Vec<Vec<u32>> {
    let p = Seq2SeqPipeline::load(&fixture(T5).to_string_lossy(), &LoadOptions::default()).unwrap();
    texts
        .iter()
        .map(|t| {
            let out = p
                .run(
                    std::slice::from_ref(t),
                    task,
                    overrides,
                    RunOptions::default(),
                )
                .unwrap();
            out[0].sequences[0].token_ids.clone()
        })
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq2seq_routes_equal_single_pipeline_runs() {
    let server = TestServer::start(&fixture(T5), ServerConfig::default()).await;
    let inputs = texts();

    // text2text, greedy, every input in one request: equal to each input's single run.
    let r = server
        .post(
            "/v1/text2text",
            &json!({"input": inputs, "max_new_tokens": 12}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["object"], "text2text");
    assert_eq!(body["model"], server.id);
    let cfg = GenerationConfig {
        max_new_tokens: Some(12),
        ..Default::default()
    };
    let want = t5_reference(&inputs, &Task::Text2Text, &cfg);
    for (i, w) in want.iter().enumerate() {
        assert_eq!(
            &ids(&body["data"][i]["sequences"][0]["token_ids"]),
            w,
            "input {i}"
        );
        assert_eq!(body["data"][i]["index"], i);
    }
    let completion: u64 = want.iter().map(|w| w.len() as u64).sum();
    assert_eq!(body["usage"]["completion_tokens"], completion);
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    // summarize with beam search and a few options; translate with the checkpoint's settings.
    let r = server
        .post(
            "/v1/summarize",
            &json!({"input": inputs[0], "max_new_tokens": 10, "min_new_tokens": 3,
                    "num_beams": 3, "num_return_sequences": 2, "early_stopping": "never"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let cfg = GenerationConfig {
        max_new_tokens: Some(10),
        min_new_tokens: Some(3),
        num_beams: Some(3),
        num_return_sequences: Some(2),
        early_stopping: Some(lmrs_generate::EarlyStopping::Never),
        ..Default::default()
    };
    let want = t5_reference(&inputs[..1], &Task::Summarization, &cfg);
    assert_eq!(ids(&body["data"][0]["sequences"][0]["token_ids"]), want[0]);
    assert_eq!(body["data"][0]["sequences"].as_array().unwrap().len(), 2);
    assert!(body["data"][0]["sequences"][0]["score"].is_number());

    let r = server
        .post(
            "/v1/translate",
            &json!({"input": "Hello.", "target": "German", "max_new_tokens": 8}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let task = Task::Translation {
        source: "English".into(),
        target: "German".into(),
    };
    let cfg = GenerationConfig {
        max_new_tokens: Some(8),
        ..Default::default()
    };
    let want = t5_reference(&["Hello.".to_string()], &task, &cfg);
    assert_eq!(
        ids(&r.json()["data"][0]["sequences"][0]["token_ids"]),
        want[0]
    );
    assert_eq!(r.json()["object"], "translation");

    // The checkpoint's own summarization settings (4 beams, min_length 30, max_length 200).
    let r = server
        .post("/v1/summarize", &json!({"input": "Hi there."}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["data"][0]["output_tokens"].as_u64().unwrap() >= 29);

    // Streaming: pieces add up to the final text; the response object and [DONE] close it.
    let r = server
        .post(
            "/v1/text2text",
            &json!({"input": inputs[0], "max_new_tokens": 12, "stream": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream")));
    let events = r.sse_data();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    let pieces: String = events[..events.len() - 2]
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_str(e).unwrap();
            assert_eq!(v["object"], "text2text.chunk");
            v["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(events.len() > 3, "several pieces expected: {events:?}");
    assert_eq!(pieces, last["data"][0]["text"].as_str().unwrap());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_batched_and_equal_single_runs() {
    let server = TestServer::start(
        &fixture(T5),
        ServerConfig {
            max_batch_size: 8,
            ..Default::default()
        },
    )
    .await;
    let inputs: Vec<String> = (0..12)
        .map(|i| format!("Sentence number {i} talks about {} things.", i * 7))
        .collect();
    let cfg = GenerationConfig {
        max_new_tokens: Some(16),
        ..Default::default()
    };
    let want = t5_reference(&inputs, &Task::Text2Text, &cfg);
    let mut tasks = Vec::new();
    for t in &inputs {
        let addr = server.addr;
        let body = serde_json::to_vec(&json!({"input": t, "max_new_tokens": 16})).unwrap();
        tasks.push(tokio::spawn(async move {
            request(
                addr,
                "POST",
                "/v1/text2text",
                &[("Content-Type", "application/json")],
                Some(&body),
            )
            .await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            ids(&r.json()["data"][0]["sequences"][0]["token_ids"]),
            want[i]
        );
    }
    let (batches, rows) = server.metrics.batches();
    assert_eq!(rows, 12.0);
    assert!(
        batches < 12,
        "requests should share batches: {batches} batches"
    );
    let text = server.metrics_text().await;
    assert!(metric(&text, "lmrs_generated_tokens_total") > 0.0);
    assert_eq!(
        metric(
            &text,
            "lmrs_http_requests_total{route=\"/v1/text2text\",method=\"POST\",status=\"200\"}"
        ),
        12.0
    );
    assert!(text.contains("lmrs_http_request_duration_seconds_bucket{route=\"/v1/text2text\""));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoder_routes_equal_the_pipelines() {
    let many: Vec<String> = vec![
        "My name is Wolfgang and I live in Berlin.".into(),
        "A man plays a guitar.".into(),
        "The weather is lovely today, isn't it?".into(),
    ];

    // Embeddings: float and base64 (the openai client's default), usage, dimensions.
    let dir = fixture("bert-tiny-st");
    let server = TestServer::start(&dir, ServerConfig::default()).await;
    let p = EmbeddingPipeline::load(&dir.to_string_lossy(), &EmbedOptions::default()).unwrap();
    let want = p.embed(&many, 1).unwrap();
    let r = server
        .post(
            "/v1/embeddings",
            &json!({"model": server.id, "input": many}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["object"], "list");
    for (i, w) in want.iter().enumerate() {
        let got: Vec<f32> = body["data"][i]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let diff = got
            .iter()
            .zip(&w.embedding)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-6, "input {i}: max diff {diff}");
    }
    let tokens: usize = want.iter().map(|w| w.tokens).sum();
    assert_eq!(body["usage"]["prompt_tokens"], tokens);
    let r = server
        .post(
            "/v1/embeddings",
            &json!({"model": server.id, "input": many[1], "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let b64 = r.json()["data"][0]["embedding"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(b64, lmrs_server::openai::base64_f32(&want[1].embedding));
    let r = server
        .post(
            "/v1/embeddings",
            &json!({"model": server.id, "input": "x", "dimensions": 3}),
        )
        .await;
    assert_eq!(r.assert_error(400)["param"], "dimensions");
    server.stop().await;

    // Classification: top_k and a per-request score function.
    let dir = fixture("bert-tiny-cls");
    let server = TestServer::start(&dir, ServerConfig::default()).await;
    let p =
        ClassificationPipeline::load(&dir.to_string_lossy(), &ClassifyOptions::default()).unwrap();
    let want = p.classify(&many, 1, None).unwrap();
    let r = server
        .post("/v1/classify", &json!({"input": many, "top_k": 0}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = r.json();
    for (i, w) in want.iter().enumerate() {
        let labels = got["data"][i]["labels"].as_array().unwrap();
        assert_eq!(labels.len(), w.labels.len());
        for (g, l) in labels.iter().zip(&w.labels) {
            assert_eq!(g["label"], l.label);
            assert!((g["score"].as_f64().unwrap() as f32 - l.score).abs() < 1e-6);
        }
    }
    let r = server
        .post(
            "/v1/classify",
            &json!({"input": many[0], "function": "none"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"][0]["labels"].as_array().unwrap().len(), 1);
    let r = server
        .post("/v1/classify", &json!({"input": "x", "function": "tanh"}))
        .await;
    assert_eq!(r.assert_error(400)["param"], "function");
    server.stop().await;

    // NER with an aggregation.
    let dir = fixture("bert-tiny-ner");
    let server = TestServer::start(&dir, ServerConfig::default()).await;
    let p = TokenClassificationPipeline::load(&dir.to_string_lossy(), None).unwrap();
    let want = p.run(&many, Aggregation::First, 8).unwrap();
    let r = server
        .post("/v1/ner", &json!({"input": many, "aggregation": "first"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for (i, w) in want.iter().enumerate() {
        let want = serde_json::to_value(w).unwrap();
        assert!(close(&r.json()["data"][i]["entities"], &want), "input {i}");
    }
    server.stop().await;

    // Fill-mask with top_k.
    let dir = fixture("bert-tiny-mlm");
    let server = TestServer::start(&dir, ServerConfig::default()).await;
    let p = FillMaskPipeline::load(&dir.to_string_lossy(), None).unwrap();
    let masked = vec![
        "The capital of France is [MASK].".to_string(),
        "I [MASK] you [MASK] much.".to_string(),
    ];
    let want = p.run(&masked, 3, 8).unwrap();
    let r = server
        .post("/v1/fill-mask", &json!({"input": masked, "top_k": 3}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for (i, w) in want.iter().enumerate() {
        let want = serde_json::to_value(w).unwrap();
        assert!(close(&r.json()["data"][i]["masks"], &want), "input {i}");
    }
    let r = server
        .post("/v1/fill-mask", &json!({"input": "no mask here"}))
        .await;
    assert_eq!(r.assert_error(400)["param"], "input");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_routes_describe_the_server() {
    let server = TestServer::start(&fixture(T5), ServerConfig::default()).await;
    let r = server.get("/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(r.json()["kind"], "seq2seq");
    let r = server.get("/v1/models").await;
    assert_eq!(r.json()["data"][0]["id"], T5);
    assert_eq!(r.json()["object"], "list");
    let r = server.get(&format!("/v1/models/{T5}")).await;
    assert_eq!(r.json()["id"], T5);
    server.get("/v1/models/gpt-4").await.assert_error(404);
    let spec = server.get("/openapi.json").await.json();
    for (method, path, _) in lmrs_server::openapi::ROUTES {
        assert!(spec["paths"][path][method].is_object(), "{method} {path}");
        // Every documented route exists (never the 404/405 fallback).
        let r = if *method == "get" {
            server.get(&path.replace("{id}", T5)).await
        } else {
            server.post(path, &json!({})).await
        };
        assert!(
            r.status != 405
                && (r.status != 404 || r.json()["error"]["code"] == "model_not_supported"),
            "{method} {path}: {}",
            r.text()
        );
    }
    let docs = server.get("/docs").await;
    assert_eq!(docs.status, 200);
    assert!(docs.text().contains("/v1/summarize"));
    let m = server.metrics_text().await;
    assert!(m.contains("# TYPE lmrs_batch_size histogram"));
    assert_eq!(metric(&m, "lmrs_queue_depth"), 0.0);
    assert_eq!(metric(&m, "lmrs_queue_capacity"), 64.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_answer_openai_style_4xx() {
    let server = TestServer::start(
        &fixture(T5),
        ServerConfig {
            max_input_tokens: Some(16),
            max_body_bytes: 2000,
            max_new_tokens_limit: 64,
            ..Default::default()
        },
    )
    .await;
    let raw = |body: &'static [u8]| {
        let addr = server.addr;
        async move {
            request(
                addr,
                "POST",
                "/v1/text2text",
                &[("Content-Type", "application/json")],
                Some(body),
            )
            .await
        }
    };
    // Malformed JSON, trailing garbage, an empty body, a non-object.
    let e = raw(b"{\"input\": ").await.assert_error(400);
    assert!(e["message"].as_str().unwrap().contains("JSON"), "{e}");
    raw(b"{\"input\": \"a\"} x").await.assert_error(400);
    raw(b"").await.assert_error(400);
    raw(b"[1, 2]").await.assert_error(400);
    // Wrong types name the field.
    let e = server
        .post("/v1/text2text", &json!({"input": 5}))
        .await
        .assert_error(400);
    assert_eq!(e["param"], "input");
    let e = server
        .post("/v1/text2text", &json!({"input": "a", "num_beams": "four"}))
        .await
        .assert_error(400);
    assert_eq!(e["param"], "num_beams");
    // Unknown and missing fields.
    let e = server
        .post("/v1/text2text", &json!({"input": "a", "num_beam": 2}))
        .await
        .assert_error(400);
    assert!(e["message"].as_str().unwrap().contains("num_beam"), "{e}");
    server
        .post("/v1/text2text", &json!({"text": "a"}))
        .await
        .assert_error(400);
    // Empty input.
    for input in [json!(""), json!("   "), json!([]), json!(["ok", ""])] {
        let e = server
            .post("/v1/text2text", &json!({ "input": input }))
            .await
            .assert_error(400);
        assert_eq!(e["param"], "input");
    }
    // Input over --max-input-tokens.
    let long = "word ".repeat(40);
    let e = server
        .post("/v1/text2text", &json!({ "input": long }))
        .await
        .assert_error(400);
    assert_eq!(e["code"], "context_length_exceeded");
    // Body over the size limit.
    let huge = "x".repeat(5000);
    server
        .post("/v1/text2text", &json!({ "input": huge }))
        .await
        .assert_error(413);
    // Options out of range, over the server's limits, or invalid together.
    let e = server
        .post(
            "/v1/text2text",
            &json!({"input": "a", "max_new_tokens": 65}),
        )
        .await
        .assert_error(400);
    assert_eq!(e["param"], "max_new_tokens");
    for body in [
        json!({"input": "a", "num_beams": 0}),
        json!({"input": "a", "num_beams": 33}),
        json!({"input": "a", "num_return_sequences": 2}),
        json!({"input": "a", "do_sample": true, "temperature": 0}),
        json!({"input": "a", "max_new_tokens": 0}),
        json!({"input": "a", "early_stopping": "sometimes"}),
        json!({"input": ["a", "b"], "stream": true}),
        json!({"input": "a", "target": "German"}),
    ] {
        server.post("/v1/text2text", &body).await.assert_error(400);
    }
    // Translation needs a known target.
    server
        .post("/v1/translate", &json!({"input": "a"}))
        .await
        .assert_error(400);
    let e = server
        .post("/v1/translate", &json!({"input": "a", "target": "Klingon"}))
        .await
        .assert_error(400);
    assert!(e["message"].as_str().unwrap().contains("Klingon"));
    // The checkpoint's summarization max_length (200) is capped to the server limit (64).
    let r = server
        .post("/v1/summarize", &json!({"input": "a b c"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["data"][0]["output_tokens"].as_u64().unwrap() <= 64);
    // Unknown routes and methods.
    server.get("/v2/nothing").await.assert_error(404);
    server
        .post("/v1/unknown", &json!({}))
        .await
        .assert_error(404);
    server.get("/v1/text2text").await.assert_error(405);
    request(server.addr, "DELETE", "/v1/models", &[], None)
        .await
        .assert_error(405);
    // Routes the model does not serve, and an unknown model.
    for (path, body) in [
        ("/v1/embeddings", json!({"model": T5, "input": "a"})),
        ("/v1/classify", json!({"input": "a"})),
        ("/v1/ner", json!({"input": "a"})),
        ("/v1/fill-mask", json!({"input": "a [MASK]"})),
        (
            "/v1/chat/completions",
            json!({"model": T5, "messages": [{"role": "user", "content": "Hi"}]}),
        ),
        ("/v1/completions", json!({"model": T5, "prompt": "Once"})),
    ] {
        let e = server.post(path, &body).await.assert_error(404);
        assert_eq!(e["code"], "model_not_supported", "{path}");
    }
    let e = server
        .post("/v1/embeddings", &json!({"model": "gpt-4", "input": "a"}))
        .await
        .assert_error(404);
    assert_eq!(e["code"], "model_not_found");
    let e = server
        .post("/v1/text2text", &json!({"model": "other", "input": "a"}))
        .await
        .assert_error(404);
    assert_eq!(e["param"], "model");
    // OpenAI fields validated before the capability check.
    for body in [
        json!({"model": T5, "messages": []}),
        json!({"model": T5, "messages": [{"role": "user", "content": "x"}], "temperature": 5}),
        json!({"model": T5, "messages": [{"role": "user", "content": "x"}], "n": 0}),
        json!({"model": T5, "messages": [{"role": "user", "content": "x"}], "max_tokens": 100}),
        json!({"model": T5, "messages": "hello"}),
    ] {
        server
            .post("/v1/chat/completions", &body)
            .await
            .assert_error(400);
    }
    server
        .post("/v1/completions", &json!({"model": T5}))
        .await
        .assert_error(400);
    // Still healthy, and no 500 was ever answered.
    assert_eq!(server.get("/health").await.status, 200);
    let m = server.metrics_text().await;
    assert!(!m.contains("status=\"500\""), "{m}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_guards_every_route_but_health() {
    let server = TestServer::start(
        &fixture("bert-tiny-st"),
        ServerConfig {
            api_key: Some("s3cret".into()),
            ..Default::default()
        },
    )
    .await;
    let body = serde_json::to_vec(&json!({"model": server.id, "input": "hi"})).unwrap();
    let post = |auth: Option<&'static str>| {
        let addr = server.addr;
        let body = body.clone();
        async move {
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(a) = auth {
                headers.push(("Authorization", a));
            }
            request(addr, "POST", "/v1/embeddings", &headers, Some(&body)).await
        }
    };
    let e = post(None).await.assert_error(401);
    assert_eq!(e["code"], "invalid_api_key");
    post(Some("Bearer wrong")).await.assert_error(401);
    post(Some("Basic s3cret")).await.assert_error(401);
    assert_eq!(post(Some("Bearer s3cret")).await.status, 200);
    assert_eq!(post(Some("bearer s3cret")).await.status, 200);
    assert_eq!(server.get("/health").await.status, 200);
    for path in [
        "/metrics",
        "/v1/models",
        "/openapi.json",
        "/docs",
        "/nowhere",
    ] {
        server.get(path).await.assert_error(401);
    }
    let r = request(
        server.addr,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer s3cret")],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    server.stop().await;
}

/// A copy of the embedding fixture whose word embeddings are all NaN.
fn poisoned_fixture() -> tempfile_dir::Dir {
    let src = fixture("bert-tiny-st");
    let dir = tempfile_dir::Dir::new("lmrs-server-nan");
    copy_tree(&src, dir.path());
    let path = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let (name, info) = header
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.ends_with("word_embeddings.weight"))
        .expect("word embeddings");
    assert_eq!(info["dtype"], "F32", "{name}");
    let offs = &info["data_offsets"];
    let (a, b) = (
        offs[0].as_u64().unwrap() as usize,
        offs[1].as_u64().unwrap() as usize,
    );
    for chunk in bytes[8 + n + a..8 + n + b].chunks_mut(4) {
        chunk.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_finite_model_output_is_an_error_not_a_200() {
    let dir = poisoned_fixture();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let e = server
        .post(
            "/v1/embeddings",
            &json!({"model": server.id, "input": ["a", "b"]}),
        )
        .await
        .assert_error(500);
    assert_eq!(e["code"], "non_finite_output");
    // The model thread survives.
    assert_eq!(server.get("/health").await.status, 200);
    server.stop().await;
}

/// A request slow enough on the tiny T5 to keep the model thread busy for a while.
fn slow_body(i: usize, tokens: usize) -> Value {
    json!({"input": format!("busy request {i}"), "max_new_tokens": tokens,
           "min_new_tokens": tokens, "num_beams": 4})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_at_once() {
    let server = TestServer::start(
        &fixture(T5),
        ServerConfig {
            max_queue: 2,
            max_batch_size: 1,
            ..Default::default()
        },
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let addr = server.addr;
        let body = serde_json::to_vec(&slow_body(i, 200)).unwrap();
        tasks.push(tokio::spawn(async move {
            let t = std::time::Instant::now();
            let r = request(addr, "POST", "/v1/text2text", &[], Some(&body)).await;
            (r, t.elapsed())
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (r, elapsed) = t.await.unwrap();
        match r.status {
            200 => ok += 1,
            429 => {
                refused += 1;
                assert_eq!(r.header("retry-after"), Some("1"));
                assert_eq!(r.assert_error(429)["code"], "queue_full");
                assert!(
                    elapsed < Duration::from_secs(2),
                    "refused late: {elapsed:?}"
                );
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert!(refused >= 1 && ok >= 2, "ok {ok}, refused {refused}");
    let m = server.metrics_text().await;
    assert_eq!(
        metric(&m, "lmrs_requests_rejected_total{reason=\"queue_full\"}"),
        refused as f64
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_cancels_its_queued_work() {
    let server = TestServer::start(
        &fixture(T5),
        ServerConfig {
            max_batch_size: 1,
            ..Default::default()
        },
    )
    .await;
    let addr = server.addr;
    let busy = tokio::spawn(async move {
        let body = serde_json::to_vec(&slow_body(0, 400)).unwrap();
        request(addr, "POST", "/v1/text2text", &[], Some(&body)).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Queued behind the busy one, then gone.
    request_and_hang_up(
        addr,
        "/v1/text2text",
        &slow_body(1, 400),
        Duration::from_millis(100),
    )
    .await;
    assert_eq!(busy.await.unwrap().status, 200);
    // The hung-up job is skipped, not run: one batch of one row ran.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = server.metrics_text().await;
        if metric(&m, "lmrs_requests_rejected_total{reason=\"cancelled\"}") == 1.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not cancelled:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.metrics.batches(), (1, 1.0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out_with_504() {
    let server = TestServer::start(
        &fixture(T5),
        ServerConfig {
            max_batch_size: 1,
            request_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let e = server
        .post("/v1/text2text", &slow_body(0, 400))
        .await
        .assert_error(504);
    assert_eq!(e["code"], "timeout");
    // The server goes on answering once the model thread is free again (a running batch is
    // not interrupted; its result is dropped).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = server
            .post("/v1/text2text", &json!({"input": "a", "max_new_tokens": 2}))
            .await;
        if r.status == 200 {
            break;
        }
        r.assert_error(504);
        assert!(std::time::Instant::now() < deadline, "never answered again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = server.metrics_text().await;
    assert!(metric(&m, "lmrs_requests_rejected_total{reason=\"timeout\"}") >= 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_then_stops() {
    let mut server = TestServer::start(
        &fixture(T5),
        ServerConfig {
            max_batch_size: 1,
            ..Default::default()
        },
    )
    .await;
    let addr = server.addr;
    let mut tasks = Vec::new();
    for i in 0..3 {
        let body = serde_json::to_vec(&slow_body(i, 300)).unwrap();
        tasks.push(tokio::spawn(async move {
            request(addr, "POST", "/v1/text2text", &[], Some(&body)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = server.metrics_text().await;
    assert!(
        metric(&m, "lmrs_running_rows") + metric(&m, "lmrs_queue_depth") > 0.0,
        "nothing in flight at shutdown:\n{m}"
    );
    let stopped = server.begin_stop();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    tokio::time::timeout(Duration::from_secs(30), stopped)
        .await
        .expect("stops in time")
        .unwrap()
        .unwrap();
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
