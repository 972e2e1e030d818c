//! The server against hostile and careless clients: idle and slowloris connections, the
//! connection cap, oversized prompts, CSRF-style content types, DNS-rebinding `Host` headers,
//! misleading API keys, runaway chat templates and unusable sampling values. Each test is a
//! reproducer from the hardening issue.

mod common;

use common::*;
use lmrs_server::{Backend, LoadSpec, Server, ServerConfig};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const EMBED: &str = "bert-tiny-st";
const LLAMA: &str = "llama-tiny";

/// Whether the server closes `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before closing is fine; keep reading to the close.
            Ok(Ok(_)) => continue,
        }
    }
}

fn quick_timeouts() -> ServerConfig {
    ServerConfig {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_header_connections_are_closed() {
    let server = TestServer::start(&fixture(EMBED), quick_timeouts()).await;

    // A connection that never sends a byte.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(10)).await);

    // Slowloris: headers trickled a byte at a time, never finished.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    for b in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed || closed_within(&mut slow, Duration::from_secs(10)).await);
    assert!(started.elapsed() < Duration::from_secs(15));

    // An idle keep-alive connection after one answered request.
    let mut keep = TcpStream::connect(server.addr).await.unwrap();
    keep.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    keep.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(closed_within(&mut keep, Duration::from_secs(10)).await);

    assert_eq!(server.get("/health").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_408() {
    let server = TestServer::start(&fixture(EMBED), quick_timeouts()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"input\": \"",
    )
    .await
    .unwrap();
    let writer = async {
        for _ in 0..100 {
            if s.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), writer).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let server = TestServer::start(
        &fixture(EMBED),
        ServerConfig {
            max_connections: 3,
            header_timeout: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Let the accept loop take all three.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = server.addr;
    let health = tokio::spawn(async move { request(addr, "GET", "/health", &[], None).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !health.is_finished(),
        "a fourth connection was served over the cap"
    );
    drop(held.pop());
    let r = tokio::time::timeout(Duration::from_secs(10), health)
        .await
        .expect("answered once a slot is free")
        .unwrap();
    assert_eq!(r.status, 200);
    drop(held);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_prompts_are_refused_before_tokenizing() {
    let server = TestServer::start(&fixture(LLAMA), ServerConfig::default()).await;
    // The default byte limit: 32 bytes per token of the context (llama-tiny: 2048 tokens).
    let big = "word ".repeat(800_000); // 4 MB, under the 4 MiB body limit
    let started = Instant::now();
    let addr = server.addr;
    let id = server.id.clone();
    let posts: Vec<_> = (0..6)
        .map(|i| {
            let body = if i % 2 == 0 {
                json!({"model": id, "prompt": big.trim_end()[..3_900_000].to_string(), "max_tokens": 1})
            } else {
                json!({"model": id, "messages": [{"role": "user", "content": &big[..3_900_000]}]})
            };
            let route = if i % 2 == 0 { "/v1/completions" } else { "/v1/chat/completions" };
            let bytes = serde_json::to_vec(&body).unwrap();
            tokio::spawn(async move {
                request(addr, "POST", route, &[("Content-Type", "application/json")], Some(&bytes)).await
            })
        })
        .collect();
    let health = server.get("/health").await;
    assert_eq!(health.status, 200);
    for p in posts {
        let r = p.await.unwrap();
        let e = r.assert_error(400);
        assert_eq!(e["code"], "context_length_exceeded", "{e}");
        assert!(e["message"].as_str().unwrap().contains("bytes"), "{e}");
    }
    // Refused unread: no 3.9 MB tokenization ran (it takes seconds on the tiny fixture).
    assert!(started.elapsed() < Duration::from_secs(30));
    // A task route too.
    let srv = TestServer::start(
        &fixture(EMBED),
        ServerConfig {
            max_input_bytes: Some(100),
            ..Default::default()
        },
    )
    .await;
    let e = srv
        .post(
            "/v1/embeddings",
            &json!({"model": srv.id, "input": ["short", "x".repeat(101)]}),
        )
        .await
        .assert_error(400);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("input 1 is 101 bytes"),
        "{e}"
    );
    srv.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_big_prompts_tokenize() {
    // Byte limit raised so the prompts are tokenized (then refused on their token count).
    let server = TestServer::start(
        &fixture(LLAMA),
        ServerConfig {
            max_input_bytes: Some(8 << 20),
            ..Default::default()
        },
    )
    .await;
    let big = "lorem ipsum dolor sit amet ".repeat(100_000); // 2.7 MB
    let addr = server.addr;
    let id = server.id.clone();
    let posts: Vec<_> = (0..4)
        .map(|_| {
            let bytes =
                serde_json::to_vec(&json!({"model": id, "prompt": big, "max_tokens": 1})).unwrap();
            tokio::spawn(async move {
                request(
                    addr,
                    "POST",
                    "/v1/completions",
                    &[("Content-Type", "application/json")],
                    Some(&bytes),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut answered_before_all_done = false;
    for _ in 0..5 {
        let r = server.get("/health").await;
        assert_eq!(r.status, 200);
        if posts.iter().any(|p| !p.is_finished()) {
            answered_before_all_done = true;
        }
    }
    for p in posts {
        let e = p.await.unwrap().assert_error(400);
        assert!(e["message"].as_str().unwrap().contains("tokens"), "{e}");
    }
    // The tokenizing did not hold the HTTP threads: /health came back while it ran.
    assert!(answered_before_all_done);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_routes_refuse_other_content_types() {
    let server = TestServer::start(&fixture(EMBED), ServerConfig::default()).await;
    let body = serde_json::to_vec(&json!({"model": server.id, "input": "hi"})).unwrap();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=xyz"),
        Some("text/xml"),
        None,
    ] {
        let mut headers = vec![("Host", "127.0.0.1")];
        if let Some(ct) = ct {
            headers.push(("Content-Type", ct));
        }
        let r = raw_request(server.addr, &raw_post("/v1/embeddings", &headers, &body))
            .await
            .unwrap();
        let e = r.assert_error(415);
        assert_eq!(e["code"], "unsupported_media_type", "{ct:?}");
    }
    let r = raw_request(
        server.addr,
        &raw_post(
            "/v1/embeddings",
            &[
                ("Host", "127.0.0.1"),
                ("Content-Type", "application/json; charset=utf-8"),
            ],
            &body,
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_headers_are_refused_without_an_api_key() {
    let body = |id: &str| serde_json::to_vec(&json!({"model": id, "input": "hi"})).unwrap();
    let post = |host: &'static str, auth: Option<&'static str>, body: Vec<u8>| {
        let mut headers = vec![("Host", host), ("Content-Type", "application/json")];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        raw_post("/v1/embeddings", &headers, &body)
    };
    let open = TestServer::start(&fixture(EMBED), ServerConfig::default()).await;
    let e = raw_request(open.addr, &post("evil.example", None, body(&open.id)))
        .await
        .unwrap()
        .assert_error(403);
    assert_eq!(e["code"], "forbidden_host");
    let get_evil =
        b"GET /v1/models HTTP/1.1\r\nHost: evil.example:8080\r\nConnection: close\r\n\r\n";
    raw_request(open.addr, get_evil)
        .await
        .unwrap()
        .assert_error(403);
    for host in ["localhost:8080", "127.0.0.1", "[::1]:8080"] {
        let r = raw_request(open.addr, &post(host, None, body(&open.id)))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{host}: {}", r.text());
    }
    open.stop().await;

    let listed = TestServer::start(
        &fixture(EMBED),
        ServerConfig {
            allowed_hosts: vec!["evil.example".into()],
            ..Default::default()
        },
    )
    .await;
    let r = raw_request(listed.addr, &post("evil.example", None, body(&listed.id)))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    listed.stop().await;

    // With a key, the key is the guard: any Host with the right key is served.
    let keyed = TestServer::start(
        &fixture(EMBED),
        ServerConfig {
            api_key: Some("k3y".into()),
            ..Default::default()
        },
    )
    .await;
    let r = raw_request(
        keyed.addr,
        &post("evil.example", Some("Bearer k3y"), body(&keyed.id)),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    raw_request(keyed.addr, &post("evil.example", None, body(&keyed.id)))
        .await
        .unwrap()
        .assert_error(401);
    keyed.stop().await;
}

fn load(name: &str) -> Backend {
    Backend::load(&LoadSpec {
        reference: fixture(name).to_string_lossy().into_owned(),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn bad_options_are_refused_at_startup() {
    let refused = |config: ServerConfig, want: &str| {
        let err = Server::new(load(EMBED), EMBED, config)
            .err()
            .expect("refused");
        assert!(err.to_string().contains(want), "{err}");
    };
    refused(
        ServerConfig {
            api_key: Some(String::new()),
            ..Default::default()
        },
        "empty",
    );
    refused(
        ServerConfig {
            api_key: Some(" k3y\n".into()),
            ..Default::default()
        },
        "whitespace",
    );
    refused(
        ServerConfig {
            max_body_bytes: 0,
            ..Default::default()
        },
        "--max-body-bytes",
    );
    refused(
        ServerConfig {
            workers: 0,
            ..Default::default()
        },
        "--workers",
    );
    refused(
        ServerConfig {
            max_connections: 0,
            ..Default::default()
        },
        "--max-connections",
    );
    refused(
        ServerConfig {
            header_timeout: Duration::ZERO,
            ..Default::default()
        },
        "--header-timeout",
    );
}

/// A copy of the llama fixture whose chat template loops for ever.
fn runaway_template_fixture() -> tempfile_dir::Dir {
    let dir = tempfile_dir::Dir::new("lmrs-server-runaway");
    copy_tree(&fixture(LLAMA), dir.path());
    let path = dir.path().join("tokenizer_config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["chat_template"] = json!(
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}"
    );
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_chat_template_is_an_error_and_health_still_answers() {
    let dir = runaway_template_fixture();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let addr = server.addr;
    let id = server.id.clone();
    let chats: Vec<_> = (0..2)
        .map(|_| {
            let bytes = serde_json::to_vec(
                &json!({"model": id, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .unwrap();
            tokio::spawn(async move {
                request(
                    addr,
                    "POST",
                    "/v1/chat/completions",
                    &[("Content-Type", "application/json")],
                    Some(&bytes),
                )
                .await
            })
        })
        .collect();
    assert_eq!(server.get("/health").await.status, 200);
    for c in chats {
        let r = tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("the render ends")
            .unwrap();
        let e = r.assert_error(400);
        assert!(e["message"].as_str().unwrap().contains("fuel"), "{e}");
    }
    // And the server still stops.
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanishing_temperature_is_a_400_not_nan_sampling() {
    let server = TestServer::start(&fixture(LLAMA), ServerConfig::default()).await;
    for t in [1e-40, 1e-6] {
        let e = server
            .post(
                "/v1/completions",
                &json!({"model": server.id, "prompt": "hello", "max_tokens": 4, "temperature": t}),
            )
            .await
            .assert_error(400);
        assert!(
            e["message"].as_str().unwrap().contains("temperature"),
            "{t}: {e}"
        );
    }
    // Greedy (0) and ordinary temperatures still answer.
    for t in [0.0, 0.7] {
        let r = server
            .post(
                "/v1/completions",
                &json!({"model": server.id, "prompt": "hello", "max_tokens": 4, "temperature": t, "seed": 1}),
            )
            .await;
        assert_eq!(r.status, 200, "{t}: {}", r.text());
    }
    server.stop().await;
}
