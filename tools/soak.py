#!/usr/bin/env python3
"""Soak and fault test of a running `lmrs serve` pair (started by scripts/soak.sh on loopback
ports): a causal LM (completions, chat) and an embedding model.

    soak.py --chat-url URL --chat-pid PID --embed-url URL --embed-pid PID
            [--seconds 60] [--clients 200] [--max-body-bytes N] [--seed S]

For `--seconds`, `--clients` concurrent clients each loop over a random mix of: completions
and chat (streamed and not, greedy and sampled), embeddings, and faults: streams dropped after
the first chunks, slow readers, requests given up before the answer, bodies over
`--max-body-bytes`, malformed JSON, and connections closed half-way through the headers or the
body. Every loop is bounded by the deadline and every request by a timeout.

Before and after, it sends canonical greedy requests (a completion, a chat, an embedding); the
answers after must equal those before exactly. It samples each server's RSS, threads and open
fds (from /proc/PID/status and /proc/PID/fd) before (after a warm-up), during (the peak) and
after (once both servers are idle again), and checks them against tolerances (see
`RESOURCE_TOLERANCE`).

Fails (exit 1) on: any 5xx; an unexpected status for a request kind (e.g. a malformed body
not answered 400, an oversized one not answered 4xx); a transport error on a request that
did not cause it; a server that died; resources not back near the baseline; a canonical answer
that changed. Prints a summary: requests by kind and status, p50/p99 latency per kind, and
RSS/threads/fds before/peak/after.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from urllib.parse import urlsplit

import aiohttp

# Tolerances after the soak, against the warmed-up baseline, once both servers are idle:
# - fds: +4. Every connection the clients opened is closed before measuring, so a socket fd
#   still open is a leaked connection; the slack is for a connection the server has not yet
#   seen closed.
# - threads: +2. The tokio runtime and the model threads are fixed; a blocking-pool thread
#   lives 10 s after its last task, and we wait up to SETTLE_S for them to go.
# - RSS: +max(25 % of baseline, 48 MiB). glibc keeps freed memory in its per-thread arenas,
#   so RSS after a burst of 200 connections stays above the baseline without any leak; a leak
#   proportional to the thousands of requests of a soak exceeds this (the soak is meant to be
#   long enough for that: each request allocates far more than 48 MiB / requests).
RESOURCE_TOLERANCE = {"fds": 4, "threads": 2}
RSS_SLACK_FRACTION = 0.25
RSS_SLACK_BYTES = 48 << 20
SETTLE_S = 20.0
REQUEST_TIMEOUT_S = 60.0

# Statuses that are a correct answer to some request of the mix: 200; 400 (invalid options);
# 413 (too large); 429 (queue full, documented: Retry-After). 403 and 415 are accepted too for
# the Host and Content-Type checks a server may add. Any 5xx fails the run.
ACCEPTED = {200, 400, 403, 413, 415, 429}
# What each fault kind must get.
EXPECT = {
    "oversized": lambda s: 400 <= s < 500,
    "malformed": lambda s: s in (400, 413, 415),
}


def proc_stats(pid):
    """RSS bytes, thread count and open fds of process `pid` (Linux /proc)."""
    rss = threads = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss": rss, "threads": threads, "fds": fds}


class Stats:
    """Counts by (kind, status) and latencies by kind; failures with a reason."""

    def __init__(self):
        self.counts = Counter()
        self.latency = defaultdict(list)
        self.failures = []

    def record(self, kind, status, seconds):
        self.counts[(kind, status)] += 1
        if status == 200:
            self.latency[kind].append(seconds)
        ok = status in ACCEPTED or (isinstance(status, str) and status.startswith("client-"))
        if kind in EXPECT and isinstance(status, int):
            ok = EXPECT[kind](status)
        if not ok and len(self.failures) < 50:
            self.failures.append(f"{kind}: {status}")


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Soak:
    def __init__(self, args):
        self.args = args
        self.chat = args.chat_url.rstrip("/")
        self.embed = args.embed_url.rstrip("/")
        self.stats = Stats()
        self.deadline = 0.0
        self.peak = {}

    # ------------------------------------------------------------------ requests

    async def model_id(self, session, base):
        async with session.get(base + "/v1/models") as r:
            return (await r.json())["data"][0]["id"]

    async def post_json(self, session, kind, url, body, timeout=REQUEST_TIMEOUT_S):
        start = time.monotonic()
        try:
            async with session.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as r:
                data = await r.read()
                status = r.status
        except asyncio.TimeoutError:
            # Expected of "gave-up" (a failure elsewhere: the server took over a minute).
            status = "client-timeout" if kind == "gave-up" else "error timeout"
            self.stats.record(kind, status, time.monotonic() - start)
            return None, None
        except aiohttp.ClientError as e:
            self.stats.record(kind, f"error {type(e).__name__}", time.monotonic() - start)
            return None, None
        self.stats.record(kind, status, time.monotonic() - start)
        if status == 429:
            await asyncio.sleep(random.uniform(0.05, 0.3))
        try:
            return status, json.loads(data)
        except ValueError:
            return status, None

    async def stream(self, session, kind, url, body, drop_after=None, slow=0.0):
        """A streamed request read to `[DONE]`, or dropped after `drop_after` events."""
        start = time.monotonic()
        events = 0
        try:
            async with session.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
            ) as r:
                status = r.status
                if status != 200:
                    await r.read()
                else:
                    async for line in r.content:
                        if not line.startswith(b"data: "):
                            continue
                        events += 1
                        if line.strip() == b"data: [DONE]":
                            break
                        if b'"error"' in line:
                            # An error inside a 200 stream: the server's status for it.
                            err = json.loads(line[6:])["error"]
                            status = f"stream-error {err.get('code')}"
                            break
                        if drop_after is not None and events >= drop_after:
                            # Close the connection mid-stream (the context manager releases
                            # the half-read response, which closes its socket).
                            r.close()
                            status = "client-dropped"
                            break
                        if slow:
                            await asyncio.sleep(slow)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            self.stats.record(kind, f"error {type(e).__name__}", time.monotonic() - start)
            return
        self.stats.record(kind, status, time.monotonic() - start)
        if status == 429:
            await asyncio.sleep(random.uniform(0.05, 0.3))

    async def raw(self, kind, base, payload, read=True):
        """Send raw bytes on a new connection and close it (half-sent requests, bad bodies)."""
        parts = urlsplit(base)
        start = time.monotonic()
        writer = None
        status = "client-closed"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port), 10
            )
            writer.write(payload)
            await writer.drain()
            if read:
                line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
                fields = line.split()
                status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else "no-status"
        except (OSError, asyncio.TimeoutError) as e:
            status = f"error {type(e).__name__}"
        finally:
            if writer is not None:
                writer.close()
        self.stats.record(kind, status, time.monotonic() - start)

    # ------------------------------------------------------------------ the mix

    def completion_body(self, rng, stream):
        body = {
            "model": self.chat_id,
            "prompt": rng.choice(["Once upon a time", "Hello", "The", "a b c d", "x" * 50]),
            "max_tokens": rng.randint(1, 16),
            "stream": stream,
        }
        if rng.random() < 0.5:
            body.update(temperature=rng.choice([0.5, 1.0]), seed=rng.randint(0, 99))
        else:
            body["temperature"] = 0
        if rng.random() < 0.2:
            body["n"] = rng.randint(1, 3)
        return body

    def chat_body(self, rng, stream):
        body = {
            "model": self.chat_id,
            "messages": [{"role": "user", "content": rng.choice(["Hi", "Tell me a story", "?"])}],
            "max_tokens": rng.randint(1, 16),
            "stream": stream,
            "temperature": rng.choice([0, 0.7]),
        }
        if stream and rng.random() < 0.3:
            body["stream_options"] = {"include_usage": True}
        return body

    async def one(self, session, rng):
        r = rng.random()
        comp, chat = self.chat + "/v1/completions", self.chat + "/v1/chat/completions"
        if r < 0.16:
            await self.post_json(session, "completion", comp, self.completion_body(rng, False))
        elif r < 0.26:
            await self.stream(session, "completion-stream", comp, self.completion_body(rng, True))
        elif r < 0.40:
            await self.post_json(session, "chat", chat, self.chat_body(rng, False))
        elif r < 0.52:
            await self.stream(session, "chat-stream", chat, self.chat_body(rng, True))
        elif r < 0.64:
            texts = [rng.choice(["hello world", "a", "the quick brown fox"])] * rng.randint(1, 4)
            await self.post_json(
                session, "embedding", self.embed + "/v1/embeddings",
                {"model": self.embed_id, "input": texts},
            )
        elif r < 0.70:
            await self.stream(
                session, "stream-dropped", chat, self.chat_body(rng, True),
                drop_after=rng.randint(1, 3),
            )
        elif r < 0.74:
            body = self.chat_body(rng, True)
            body.update(n=rng.randint(2, 4), max_tokens=16, temperature=0.7)
            await self.stream(session, "slow-reader", chat, body, slow=rng.uniform(0.05, 0.2))
        elif r < 0.78:
            # Given up before the answer: the server must drop the queued or running job.
            await self.post_json(
                session, "gave-up", comp, self.completion_body(rng, False),
                timeout=rng.uniform(0.01, 0.2),
            )
        elif r < 0.84:
            size = self.args.max_body_bytes + rng.randint(1, 4096)
            target = rng.choice([comp, chat, self.embed + "/v1/embeddings"])
            body = {"model": "m", "prompt": "x" * size, "messages": [], "input": "y"}
            await self.post_json(session, "oversized", target, body)
        elif r < 0.92:
            bad = rng.choice([b"{", b'{"model": ', b"[1,2", b"\xff\xfe{}", b'{"prompt": "a"}}',
                              b"null", b'{"model": 1e999999}', b'"' + b"\\u00" * 10])
            target = rng.choice([comp, chat, self.embed + "/v1/embeddings"])
            parts = urlsplit(target)
            head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(bad)}\r\n"
                    "Connection: close\r\n\r\n").encode()
            await self.raw("malformed", target, head + bad)
        else:
            # Closed half-way: through the headers, or with the body short of Content-Length.
            parts = urlsplit(self.chat)
            head = f"POST /v1/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            if rng.random() < 0.5:
                payload = head.encode()
            else:
                payload = (head + "Content-Type: application/json\r\n"
                           "Content-Length: 1000\r\n\r\n{\"model\": ").encode()
            await self.raw("half-closed", self.chat, payload, read=False)

    async def client(self, i):
        rng = random.Random(self.args.seed * 100003 + i)
        # One session (its own keep-alive connections) per client, like independent users.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as session:
            while time.monotonic() < self.deadline:
                await self.one(session, rng)

    async def sample(self):
        while time.monotonic() < self.deadline:
            for name, pid in self.pids.items():
                s = proc_stats(pid)
                peak = self.peak.setdefault(name, dict(s))
                for k, v in s.items():
                    peak[k] = max(peak[k], v)
            await asyncio.sleep(0.25)

    # ------------------------------------------------------------------ canonical answers

    async def canonical(self, session):
        """Greedy answers that must not change: completion text, chat text, an embedding."""
        out = {}
        _, r = await self.post_json(session, "canonical", self.chat + "/v1/completions", {
            "model": self.chat_id, "prompt": "Once upon a time", "max_tokens": 12,
            "temperature": 0})
        out["completion"] = r and r["choices"][0]["text"]
        _, r = await self.post_json(session, "canonical", self.chat + "/v1/chat/completions", {
            "model": self.chat_id, "messages": [{"role": "user", "content": "Hello there"}],
            "max_tokens": 12, "temperature": 0})
        out["chat"] = r and r["choices"][0]["message"]["content"]
        _, r = await self.post_json(session, "canonical", self.embed + "/v1/embeddings", {
            "model": self.embed_id, "input": "the canonical sentence"})
        out["embedding"] = r and r["data"][0]["embedding"]
        return out

    async def idle(self, session):
        """Wait (bounded) until both queues are empty."""
        for _ in range(200):
            depths = []
            for base in (self.chat, self.embed):
                async with session.get(base + "/health") as r:
                    depths.append((await r.json())["queue_depth"])
            if not any(depths):
                return
            await asyncio.sleep(0.1)

    async def settle(self, baseline):
        """Resources once idle: polled until within tolerance or SETTLE_S passes."""
        end = time.monotonic() + SETTLE_S
        while True:
            now = {name: proc_stats(pid) for name, pid in self.pids.items()}
            if not self.over(baseline, now) or time.monotonic() > end:
                return now
            await asyncio.sleep(0.5)

    def over(self, baseline, now):
        """What is over tolerance in `now` against `baseline`."""
        bad = []
        for name in self.pids:
            b, n = baseline[name], now[name]
            for k, tol in RESOURCE_TOLERANCE.items():
                if n[k] > b[k] + tol:
                    bad.append(f"{name} {k}: {b[k]} before, {n[k]} after (tolerance +{tol})")
            slack = max(b["rss"] * RSS_SLACK_FRACTION, RSS_SLACK_BYTES)
            if n["rss"] > b["rss"] + slack:
                bad.append(f"{name} RSS: {b['rss'] >> 20} MiB before, {n['rss'] >> 20} MiB "
                           f"after (tolerance +{int(slack) >> 20} MiB)")
        return bad

    async def run(self):
        args = self.args
        self.pids = {"chat": args.chat_pid, "embed": args.embed_pid}
        async with aiohttp.ClientSession() as session:
            self.chat_id = await self.model_id(session, self.chat)
            self.embed_id = await self.model_id(session, self.embed)
            before = await self.canonical(session)
            # Warm-up: a few of each kind so lazily allocated state (thread-local buffers,
            # the KV cache sizes seen) is in the baseline.
            rng = random.Random(args.seed)
            for _ in range(30):
                await self.one(session, rng)
            await self.idle(session)
        await asyncio.sleep(1.0)
        self.stats = Stats()
        baseline = {name: proc_stats(pid) for name, pid in self.pids.items()}
        for name, s in baseline.items():
            self.peak[name] = dict(s)
        print(f"soak: {args.clients} clients for {args.seconds} s", flush=True)
        t0 = time.monotonic()
        self.deadline = t0 + args.seconds
        tasks = [asyncio.create_task(self.client(i)) for i in range(args.clients)]
        sampler = asyncio.create_task(self.sample())
        done, pending = await asyncio.wait(tasks, timeout=args.seconds + REQUEST_TIMEOUT_S + 30)
        for t in pending:
            t.cancel()
        await sampler
        elapsed = time.monotonic() - t0
        for t in done:
            if t.exception() is not None:
                self.stats.failures.append(f"client crashed: {t.exception()!r}")
        if pending:
            self.stats.failures.append(f"{len(pending)} clients did not finish in time")
        soak_stats = self.stats
        self.stats = Stats()
        async with aiohttp.ClientSession() as session:
            await self.idle(session)
            after_resources = await self.settle(baseline)
            after = await self.canonical(session)
        return soak_stats, elapsed, baseline, after_resources, before, after

    def report(self, soak_stats, elapsed, baseline, after_res, before, after):
        failures = list(soak_stats.failures)
        total = sum(soak_stats.counts.values())
        print(f"\n== requests: {total} in {elapsed:.1f} s ({total / elapsed:.0f}/s)")
        by_kind = defaultdict(dict)
        for (kind, status), n in soak_stats.counts.items():
            by_kind[kind][status] = n
        for kind in sorted(by_kind):
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(by_kind[kind].items(), key=str))
            lat = soak_stats.latency.get(kind, [])
            lat_s = (f"  p50 {percentile(lat, 0.5) * 1000:.0f} ms, p99 "
                     f"{percentile(lat, 0.99) * 1000:.0f} ms" if lat else "")
            print(f"  {kind:18} {statuses}{lat_s}")
        fivexx = sum(n for (_, s), n in soak_stats.counts.items() if isinstance(s, int) and s >= 500)
        print(f"  5xx: {fivexx}")
        print("\n== resources (before = after warm-up; peak during the soak; after = idle)")
        for name in self.pids:
            b, p, a = baseline[name], self.peak[name], after_res[name]
            print(f"  {name:6} RSS {b['rss'] >> 20}/{p['rss'] >> 20}/{a['rss'] >> 20} MiB, "
                  f"threads {b['threads']}/{p['threads']}/{a['threads']}, "
                  f"fds {b['fds']}/{p['fds']}/{a['fds']}  (before/peak/after)")
        failures += self.over(baseline, after_res)
        for k in before:
            if before[k] is None or before[k] != after[k]:
                failures.append(f"canonical {k} changed: {before[k]!r:.200} -> {after[k]!r:.200}")
        print(f"\n== canonical greedy answers: "
              f"{'unchanged' if all(before[k] == after[k] for k in before) else 'CHANGED'} "
              f"(completion {before['completion']!r})")
        if failures:
            print(f"\nsoak: FAILED ({len(failures)}):")
            for f in failures:
                print(f"  {f}")
            return 1
        print("\nsoak: passed")
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chat-url", required=True)
    ap.add_argument("--chat-pid", type=int, required=True)
    ap.add_argument("--embed-url", required=True)
    ap.add_argument("--embed-pid", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--max-body-bytes", type=int, default=65536)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for url in (args.chat_url, args.embed_url):
        host = urlsplit(url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            sys.exit(f"soak.py only talks to loopback servers, not {host}")
    soak = Soak(args)
    random.seed(args.seed)
    result = asyncio.run(soak.run())
    sys.exit(soak.report(*result))


if __name__ == "__main__":
    main()
