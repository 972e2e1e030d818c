#!/usr/bin/env python3
"""Drive a running `lmrs serve` the way users do: with the official `openai` client for the
OpenAI-compatible routes and with plain HTTP for the task routes. Started by
scripts/test-server.sh, which starts the servers on free loopback ports.

    server_client_test.py clients --embed-url URL --api-key KEY --seq2seq-url URL [--seq2seq-pid PID]
                                  [--chat-url [LABEL=]URL ...]
    server_client_test.py shutdown --url URL --pid PID

`clients` checks an embedding server (auth on), a seq2seq server (auth off) and, when given,
causal-LM servers (`--chat-url`, repeatable: chat, streaming chat, completions, n, stop,
max_tokens, temperature, top_p, seed, usage, batching, bad requests). `shutdown` sends SIGTERM to the server while requests are in
flight and checks that they complete and that the server stops listening.

Prints one line per check and "N passed, M failed" last; exits non-zero on any failure.
"""

import argparse
import base64
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

import openai
from openai import OpenAI

RESULTS = {"passed": 0, "failed": 0}


def check(name):
    """Decorator: run a check, record pass/fail, never stop the run."""

    def wrap(fn):
        def run(*a, **kw):
            t = time.time()
            try:
                fn(*a, **kw)
            except Exception:  # noqa: BLE001 - report every failure and go on
                RESULTS["failed"] += 1
                print(f"FAIL {name}")
                traceback.print_exc(file=sys.stdout)
            else:
                RESULTS["passed"] += 1
                print(f"ok   {name} ({time.time() - t:.2f} s)")

        return run

    return wrap


def http(url, method="GET", body=None, headers=None, raw=None, timeout=120):
    """(status, headers, body bytes) of one request; never raises on HTTP errors."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def post(url, body, **kw):
    status, _, data = http(url, "POST", body, **kw)
    return status, json.loads(data) if data else None


def assert_error(status, body, want_status, code=None):
    assert status == want_status, f"expected {want_status}, got {status}: {body}"
    err = body["error"]
    assert err["message"] and err["type"], body
    if code is not None:
        assert err["code"] == code, body
    return err


def same_results(got, want):
    """Seq2seq results equal: texts and token ids exactly, beam scores to float tolerance
    (a batch computes the same ids with slightly different rounding)."""
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        gs, ws = g.pop("sequences"), w.pop("sequences")
        same = g == w and len(gs) == len(ws)
        g["sequences"], w["sequences"] = gs, ws
        for a, b in zip(gs, ws):
            same = same and a["text"] == b["text"] and a["token_ids"] == b["token_ids"]
            same = same and abs((a.get("score") or 0) - (b.get("score") or 0)) <= 1e-4
        if not same:
            return False
    return True


def close(a, b, tol=1e-5):
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------
# Embedding server (API key on)


def embedding_checks(url, key):
    client = OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    model = {}

    @check("openai: models.list and models.retrieve")
    def models():
        listed = client.models.list()
        assert len(listed.data) == 1, listed
        model["id"] = listed.data[0].id
        assert client.models.retrieve(model["id"]).id == model["id"]

    @check("openai: embeddings.create (default base64 transport, float, batch, usage)")
    def embeddings():
        texts = ["A man plays a guitar.", "The weather is lovely today.", "Hello"]
        default = client.embeddings.create(model=model["id"], input=texts)
        floats = client.embeddings.create(model=model["id"], input=texts, encoding_format="float")
        assert [d.index for d in default.data] == [0, 1, 2]
        for a, b in zip(default.data, floats.data):
            assert close(a.embedding, b.embedding), "base64 and float disagree"
        dim = len(floats.data[0].embedding)
        assert dim > 0 and all(len(d.embedding) == dim for d in floats.data)
        assert floats.usage.prompt_tokens > 0 and floats.usage.total_tokens == floats.usage.prompt_tokens
        single = client.embeddings.create(model=model["id"], input=texts[1], encoding_format="float")
        assert close(single.data[0].embedding, floats.data[1].embedding), "batched != single"
        # Normalized (sentence-transformers folder with a Normalize module).
        norm = sum(x * x for x in single.data[0].embedding) ** 0.5
        assert abs(norm - 1.0) < 1e-4, norm
        # Raw base64 as the wire carries it.
        status, body = post(
            f"{url}/v1/embeddings",
            {"model": model["id"], "input": "Hello", "encoding_format": "base64"},
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        assert status == 200, body
        raw = base64.b64decode(body["data"][0]["embedding"])
        vec = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert close(vec, floats.data[2].embedding)

    @check("openai: errors map to the client's exception types")
    def errors():
        try:
            client.embeddings.create(model="no-such-model", input="x")
            raise AssertionError("expected NotFoundError")
        except openai.NotFoundError as e:
            assert e.body["code"] == "model_not_found", e.body
        try:
            client.embeddings.create(model=model["id"], input="")
            raise AssertionError("expected BadRequestError")
        except openai.BadRequestError as e:
            assert e.body["param"] == "input", e.body
        try:
            client.chat.completions.create(model=model["id"], messages=[{"role": "user", "content": "Hi"}])
            raise AssertionError("expected NotFoundError")
        except openai.NotFoundError as e:
            assert e.body["code"] == "model_not_supported", e.body

    @check("auth: missing or wrong key is 401, /health needs none")
    def auth():
        bad = OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
        try:
            bad.models.list()
            raise AssertionError("expected AuthenticationError")
        except openai.AuthenticationError:
            pass
        status, body = post(f"{url}/v1/embeddings", {"model": model["id"], "input": "x"})
        assert_error(status, body, 401, "invalid_api_key")
        status, _, data = http(f"{url}/health")
        assert status == 200 and json.loads(data)["status"] == "ok"
        status, _, _ = http(f"{url}/metrics")
        assert status == 401
        status, _, data = http(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"})
        assert status == 200 and b"lmrs_http_requests_total" in data

    for f in (models, embeddings, errors, auth):
        f()


# ---------------------------------------------------------------------------------------------
# Seq2seq server (API key off): task routes over plain HTTP


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def seq2seq_checks(url, pid):
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id

    @check("openai: chat, streaming chat and completions on a seq2seq model are 404 model_not_supported")
    def not_causal():
        calls = [
            lambda: client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}]),
            lambda: client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}], stream=True
            ),
            lambda: client.completions.create(model=model, prompt="Once upon a time", max_tokens=5),
        ]
        for call in calls:
            try:
                call()
                raise AssertionError("expected NotFoundError")
            except openai.NotFoundError as e:
                assert e.body["code"] == "model_not_supported", e.body

    @check("http: summarize / translate / text2text; batch equals single runs")
    def tasks():
        texts = ["The tower is 324 metres tall.", "Hello world.", "A fox jumps over the lazy dog."]
        status, batch = post(f"{url}/v1/text2text", {"input": texts, "max_new_tokens": 10})
        assert status == 200, batch
        for i, t in enumerate(texts):
            status, one = post(f"{url}/v1/text2text", {"input": t, "max_new_tokens": 10})
            assert status == 200, one
            assert one["data"][0]["sequences"] == batch["data"][i]["sequences"], (i, one, batch)
        assert batch["usage"]["total_tokens"] == batch["usage"]["prompt_tokens"] + batch["usage"]["completion_tokens"]
        status, s = post(f"{url}/v1/summarize", {"input": texts[0], "max_new_tokens": 8, "num_beams": 2,
                                                 "num_return_sequences": 2})
        assert status == 200 and s["object"] == "summarization" and len(s["data"][0]["sequences"]) == 2, s
        status, t = post(f"{url}/v1/translate", {"input": "Hello.", "source": "en", "target": "French",
                                                 "max_new_tokens": 6})
        assert status == 200 and t["object"] == "translation", t

    @check("http: text2text stream=true is server-sent events ending in [DONE]")
    def stream():
        status, headers, data = http(
            f"{url}/v1/text2text", "POST", {"input": "Hello world, how are you?", "max_new_tokens": 12, "stream": True}
        )
        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        assert status == 200 and content_type.startswith("text/event-stream"), headers
        events = [l[len("data: "):] for l in data.decode().splitlines() if l.startswith("data: ")]
        assert events[-1] == "[DONE]", events
        final = json.loads(events[-2])
        pieces = "".join(json.loads(e)["text"] for e in events[:-2])
        assert pieces == final["data"][0]["text"], (pieces, final)

    @check("http: bad requests are OpenAI-style 4xx, never 500")
    def bad():
        cases = [
            (dict(raw=b"{not json"), 400, None),
            (dict(body={"input": 5}), 400, None),
            (dict(body={"input": "x", "num_beam": 2}), 400, None),
            (dict(body={"input": ""}), 400, None),
            (dict(body={"input": []}), 400, None),
            (dict(body={"input": "x", "max_new_tokens": 100000}), 400, None),
            (dict(body={"input": "word " * 5000}), 400, "context_length_exceeded"),
            (dict(raw=b'{"input": "' + b"x" * 100_000 + b'"}'), 413, "payload_too_large"),
        ]
        for kw, want, code in cases:
            status, _, data = http(f"{url}/v1/text2text", "POST", **kw)
            assert_error(status, json.loads(data), want, code)
        status, _, data = http(f"{url}/v1/nothing")
        assert_error(status, json.loads(data), 404)
        status, _, data = http(f"{url}/v1/summarize")
        assert_error(status, json.loads(data), 405)
        status, _, data = http(f"{url}/openapi.json")
        spec = json.loads(data)
        assert status == 200 and "/v1/chat/completions" in spec["paths"], spec.keys()

    @check("load: 200 concurrent mixed requests: each 200 equal to its single run, or 429; memory back near baseline")
    def load():
        variants = [
            ("/v1/text2text", {"input": f"request number {i} " + "word " * (i % 6), "max_new_tokens": 4 + i % 9})
            for i in range(10)
        ] + [("/v1/summarize", {"input": "A short text to summarize here.", "max_new_tokens": 6, "num_beams": 2})]
        want = {}
        for k, (path, body) in enumerate(variants):
            status, r = post(f"{url}{path}", body)
            assert status == 200, r
            want[k] = r["data"]
        before = rss_kib(pid) if pid else 0
        results = [None] * 200

        def worker(n):
            k = n % len(variants)
            path, body = variants[k]
            results[n] = (k, *post(f"{url}{path}", body, timeout=120))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(200)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        assert all(not t.is_alive() for t in threads), "requests hung"
        ok = refused = 0
        for k, status, body in results:
            if status == 200:
                ok += 1
                assert same_results(body["data"], want[k]), (k, body["data"], want[k])
            else:
                assert_error(status, body, 429, "queue_full")
                refused += 1
        print(f"     {ok} ok, {refused} refused (429) in {time.time() - t0:.1f} s")
        assert ok > 0
        if pid:
            time.sleep(0.5)
            after = rss_kib(pid)
            print(f"     server RSS {before} KiB before, {after} KiB after")
            assert after < before + 96 * 1024, (before, after)
        status, _, data = http(f"{url}/metrics")
        text = data.decode()
        assert "lmrs_queue_depth 0" in text and "lmrs_batch_size_bucket" in text, text

    for f in (not_causal, tasks, stream, bad, load):
        f()


# ---------------------------------------------------------------------------------------------
# Causal-LM server (when one is given): the OpenAI chat and completion contract


def chat_checks(url, label="causal", exact_batches=True):
    """The OpenAI chat/completions contract. Works on any causal LM: `min_tokens` (vLLM's
    extension, sent as extra_body) keeps a random tiny model from ending at once.
    `exact_batches`: batched greedy results must equal single runs token for token (each prompt
    is prefilled alone, and a decoding step computes each row as a one-row step does); when
    false, differences are only counted. A model without a chat template (a base model) serves
    completions only: then the chat checks become one check that chat is refused, and the batch
    check runs on /v1/completions."""
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id
    spec = json.loads(http(f"{url}/openapi.json")[2])
    has_chat = "description" not in spec["paths"]["/v1/chat/completions"]["post"]
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is the capital of France?"}]
    greedy = dict(model=model, messages=messages, temperature=0)

    @check(f"openai [{label}]: chat.completions.create (greedy, max_tokens, usage, finish_reason)")
    def chat():
        r = client.chat.completions.create(**greedy, max_tokens=8, extra_body={"min_tokens": 8})
        assert r.object == "chat.completion" and r.id.startswith("chatcmpl-"), r
        assert r.model == model and r.choices[0].message.role == "assistant", r
        assert r.choices[0].finish_reason == "length", r
        assert r.usage.completion_tokens == 8 and r.usage.prompt_tokens > 0, r.usage
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        again = client.chat.completions.create(**greedy, max_tokens=8, extra_body={"min_tokens": 8})
        assert again.choices[0].message.content == r.choices[0].message.content
        short = client.chat.completions.create(**greedy, max_completion_tokens=3)
        assert short.usage.completion_tokens <= 3, short.usage

    @check(f"openai [{label}]: streaming chat chunks join to the non-streamed text, usage last")
    def stream():
        kw = dict(greedy, max_tokens=16, extra_body={"min_tokens": 6})
        full = client.chat.completions.create(**kw)
        chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
        assert chunks[0].choices[0].delta.role == "assistant", chunks[0]
        assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text and text == full.choices[0].message.content, (text, full)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == [full.choices[0].finish_reason], finish
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
        assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens

    @check(f"openai [{label}]: n, seed, top_p (streamed and not), greedy n")
    def options():
        kw = dict(model=model, messages=messages, max_tokens=6, temperature=0.8, top_p=0.9, seed=7, n=2,
                  extra_body={"min_tokens": 6})
        r = client.chat.completions.create(**kw)
        assert [c.index for c in r.choices] == [0, 1], r
        assert r.usage.completion_tokens == 12, r.usage
        again = client.chat.completions.create(**kw)
        assert [c.message.content for c in r.choices] == [c.message.content for c in again.choices]
        streamed = ["", ""]
        for c in client.chat.completions.create(**kw, stream=True):
            for ch in c.choices:
                streamed[ch.index] += ch.delta.content or ""
        assert streamed == [c.message.content for c in r.choices], (streamed, r)
        g = client.chat.completions.create(**greedy, max_tokens=4, n=3)
        assert len({c.message.content for c in g.choices}) == 1 and len(g.choices) == 3

    @check(f"openai [{label}]: stop sequences cut the text, streamed and not")
    def stop():
        kw = dict(greedy, max_tokens=16, extra_body={"min_tokens": 16})
        text = client.chat.completions.create(**kw).choices[0].message.content
        at = next((i for i in range(2, len(text) - 1) if text[i:i + 2].isalpha() and text[i:i + 2].isascii()), None)
        assert at is not None, text
        word = text[at:at + 2]
        cut = client.chat.completions.create(**kw, stop=[word, "\n\n\n"])
        assert cut.choices[0].message.content == text[: text.index(word)], (cut, text)
        assert cut.choices[0].finish_reason == "stop"
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            **kw, stop=[word], stream=True) if c.choices)
        assert streamed == text[: text.index(word)], (streamed, text)

    @check(f"openai [{label}]: completions.create, streamed and not, several prompts")
    def completions():
        kw = dict(model=model, max_tokens=6, temperature=0, extra_body={"min_tokens": 3})
        r = client.completions.create(prompt="Once upon a time", **kw)
        assert r.object == "text_completion" and r.id.startswith("cmpl-"), r
        assert 3 <= r.usage.completion_tokens <= 6, r.usage
        text = "".join(c.choices[0].text for c in client.completions.create(prompt="Once upon a time", stream=True, **kw))
        assert text == r.choices[0].text, (text, r)
        many = client.completions.create(prompt=["Hello", "Once upon a time"], **kw)
        assert [c.index for c in many.choices] == [0, 1]
        assert many.choices[1].text == r.choices[0].text

    route = "chat/completions" if has_chat else "completions"

    @check(f"http [{label}]: concurrent {route} requests with equal options batch and equal their single runs")
    def batched():
        users = [f"Question {i}: {'why ' * (i % 4)}?" for i in range(8)]
        if has_chat:
            body = lambda u: {"model": model, "messages": [{"role": "user", "content": u}], "max_tokens": 8,
                              "temperature": 0}
            answer = lambda r: r["choices"][0]["message"]["content"]
        else:
            body = lambda u: {"model": model, "prompt": u, "max_tokens": 8, "temperature": 0}
            answer = lambda r: r["choices"][0]["text"]
        want = [answer(post(f"{url}/v1/{route}", body(u))[1]) for u in users]
        got = [None] * len(users)

        def one(i):
            got[i] = post(f"{url}/v1/{route}", body(users[i]))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(users))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        differ = []
        for i, (status, r) in enumerate(got):
            assert status == 200, r
            if answer(r) != want[i]:
                differ.append((i, answer(r), want[i]))
        if exact_batches:
            assert not differ, differ
        elif differ:
            print(f"     note: {len(differ)} of {len(users)} batched answers differ from single runs "
                  f"(quantized kernels round differently in a batch): {differ}")

    @check(f"openai [{label}]: bad requests are BadRequestError with the field at fault")
    def bad():
        cases = [
            (dict(messages=[]), "messages", None),
            (dict(messages=[{"role": "robot", "content": "Hi"}]), "messages", None),
            (dict(messages=messages, max_tokens=10**6), "max_tokens", None),
            (dict(messages=[{"role": "user", "content": "word " * 10000}]), "messages", "context_length_exceeded"),
            (dict(messages=messages, temperature=3), "temperature", None),
        ]
        for kw, param, code in cases:
            try:
                client.chat.completions.create(model=model, **kw)
                raise AssertionError(f"expected BadRequestError for {list(kw)}")
            except openai.BadRequestError as e:
                assert e.body["param"] == param, e.body
                if code:
                    assert e.body["code"] == code, e.body
        try:
            client.embeddings.create(model=model, input="x")
            raise AssertionError("expected NotFoundError")
        except openai.NotFoundError as e:
            assert e.body["code"] == "model_not_supported", e.body

    @check(f"openai [{label}]: no chat template: chat is NotFoundError model_not_supported")
    def no_chat():
        try:
            client.chat.completions.create(**greedy, max_tokens=2)
            raise AssertionError("expected NotFoundError")
        except openai.NotFoundError as e:
            assert e.body["code"] == "model_not_supported", e.body
            assert e.body["message"].endswith("it serves /v1/completions"), e.body

    checks = (chat, stream, options, stop, completions, batched, bad) if has_chat else (no_chat, completions, batched)
    for f in checks:
        f()


# ---------------------------------------------------------------------------------------------
# Graceful shutdown


def shutdown_checks(url, pid):
    @check("shutdown: SIGTERM with requests in flight: they complete, then the server stops listening")
    def shutdown():
        results = []

        def slow(i):
            status, body = post(
                f"{url}/v1/text2text",
                {"input": f"in flight {i}", "max_new_tokens": 400, "min_new_tokens": 400, "num_beams": 4},
            )
            results.append((status, body, time.time()))

        threads = [threading.Thread(target=slow, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        killed = time.time()
        os.kill(pid, signal.SIGTERM)
        for t in threads:
            t.join(timeout=120)
        assert len(results) == 4 and all(s == 200 for s, _, _ in results), results
        late = sum(1 for _, _, done in results if done > killed)
        print(f"     {late} of 4 requests finished after SIGTERM")
        assert late >= 1, "no request was in flight at SIGTERM; make them slower"
        host, port = url.split("//")[1].split(":")
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                time.sleep(0.1)
            except OSError:
                return
        raise AssertionError("the server still accepts connections")

    shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("clients")
    c.add_argument("--embed-url", required=True)
    c.add_argument("--api-key", required=True)
    c.add_argument("--seq2seq-url", required=True)
    c.add_argument("--seq2seq-pid", type=int, default=0)
    c.add_argument("--chat-url", action="append", default=[],
                   help="a causal-LM server (repeatable; LABEL=URL names it in the output)")
    s = sub.add_parser("shutdown")
    s.add_argument("--url", required=True)
    s.add_argument("--pid", type=int, required=True)
    args = ap.parse_args()
    print(f"openai {openai.__version__}")
    if args.mode == "clients":
        embedding_checks(args.embed_url, args.api_key)
        seq2seq_checks(args.seq2seq_url, args.seq2seq_pid)
        for spec in args.chat_url:
            label, _, url = spec.rpartition("=")
            chat_checks(url, label or "causal")
        if not args.chat_url:
            print("(no --chat-url: chat/completions contract checks need a causal-LM server)")
    else:
        shutdown_checks(args.url, args.pid)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    sys.exit(1 if RESULTS["failed"] else 0)


if __name__ == "__main__":
    main()
