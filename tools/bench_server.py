#!/usr/bin/env python3
"""Load generator for `lmrs serve`: throughput and p50/p99 latency at several numbers of
concurrent clients, with dynamic batching on (--max-batch-size N) and off (--max-batch-size 1).
Standard library only (threads and http.client).

It starts the server itself, once per batch size, on a free loopback port:

    tools/bench_server.py --model tests/fixtures/t5-v1_0-tiny --workload summarize
    tools/bench_server.py --model models/t5-small-random --workload summarize --new-tokens 32
    tools/bench_server.py --model models/all-MiniLM-L6-v2 --workload embed
    tools/bench_server.py --workload chat                      # the default model (chat route)
    tools/bench_server.py --model MODEL.gguf --workload chat   # any causal LM

or measures a server that is already running (`--url`, one configuration):

    tools/bench_server.py --url http://127.0.0.1:8080 --workload summarize

Workloads: `summarize` (POST /v1/summarize, greedy or --beams, exactly --new-tokens tokens per
request so every configuration does the same work), `embed` (POST /v1/embeddings, one text per
request) and `chat` (POST /v1/chat/completions, temperature 0, exactly --new-tokens tokens via
`max_tokens` and `min_tokens`, or with --mixed-lengths a different count per request; the
default model when neither --model nor --url is given). Each
client sends its requests one after another; `--requests` per client (at least
`--min-requests` in total). Prints a table and, with --json FILE, writes the numbers.
"""

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

WORDS = (
    "the tower is 324 metres tall about the same height as an 81 storey building and the tallest "
    "structure in paris its base is square measuring 125 metres on each side during its construction "
    "it surpassed the washington monument to become the tallest man made structure in the world"
).split()


def document(i, words):
    """A deterministic pseudo-document of `words` words, different per request."""
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(words))


def body_for(workload, i, args, model_id):
    if workload == "summarize":
        return "/v1/summarize", {
            "input": document(i, args.input_words),
            "max_new_tokens": args.new_tokens,
            "min_new_tokens": args.new_tokens,
            "num_beams": args.beams,
        }
    if workload == "embed":
        return "/v1/embeddings", {"model": model_id, "input": document(i, args.input_words),
                                  "encoding_format": "float"}
    n = new_tokens(i, args)
    return "/v1/chat/completions", {
        "model": model_id,
        "messages": [{"role": "user", "content": document(i, args.input_words)}],
        "max_tokens": n,
        "min_tokens": n,
        "temperature": 0,
    }


def new_tokens(i, args):
    """Tokens request `i` generates: --new-tokens, or with --mixed-lengths between half and
    one and a half times it (the same sequence in every configuration)."""
    if not args.mixed_lengths:
        return args.new_tokens
    return args.new_tokens // 2 + (i * 37) % (args.new_tokens + 1)


def start_server(args, batch_size):
    model = ["--model", args.model] if args.model else []  # none: the default model
    cmd = [args.bin, "--threads", str(args.threads), "serve", *model, "--host", "127.0.0.1",
           "--port", "0", "--max-batch-size", str(batch_size), "--max-queue", "1024",
           "--max-new-tokens-limit", str(max(512, args.new_tokens))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            sys.exit(f"server exited: {cmd}")
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, m.group(1)
    proc.kill()
    sys.exit("server did not start")


def stop_server(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def model_id(url):
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request("GET", "/v1/models")
    return json.loads(c.getresponse().read())["data"][0]["id"]


def run_level(url, workload, clients, total, args, mid):
    """`clients` threads share `total` requests; returns the measurements."""
    u = urllib.parse.urlparse(url)
    latencies, errors, tokens = [], [], [0]
    lock = threading.Lock()
    counter = iter(range(total))

    def client():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            path, body = body_for(workload, i, args, mid)
            data = json.dumps(body).encode()
            t = time.perf_counter()
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            payload = r.read()
            dt = time.perf_counter() - t
            with lock:
                if r.status == 200:
                    latencies.append(dt)
                    usage = json.loads(payload).get("usage", {})
                    tokens[0] += usage.get("completion_tokens") or usage.get("prompt_tokens", 0)
                else:
                    errors.append(r.status)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)

    def pct(p):
        return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] if lat else float("nan")

    return {
        "clients": clients,
        "requests": len(lat),
        "errors": len(errors),
        "seconds": wall,
        "requests_per_s": len(lat) / wall,
        "tokens_per_s": tokens[0] / wall,
        "p50_ms": pct(50) * 1e3,
        "p99_ms": pct(99) * 1e3,
        "mean_ms": statistics.fmean(lat) * 1e3 if lat else float("nan"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model to serve (the script starts the server; chat: default model)")
    ap.add_argument("--url", help="measure this running server instead")
    ap.add_argument("--bin", default="target/release/lmrs", help="the lmrs binary (default: %(default)s)")
    ap.add_argument("--workload", choices=["summarize", "embed", "chat"], default="summarize")
    ap.add_argument("--concurrency", default="1,8,32", help="client counts (default: %(default)s)")
    ap.add_argument("--batch-sizes", default="8,1",
                    help="--max-batch-size values to compare (default: %(default)s)")
    ap.add_argument("--requests", type=int, default=4, help="requests per client (default: %(default)s)")
    ap.add_argument("--min-requests", type=int, default=32, help="at least this many per level")
    ap.add_argument("--new-tokens", type=int, default=32, help="generated tokens per request")
    ap.add_argument("--mixed-lengths", action="store_true",
                    help="chat: vary generated tokens per request (0.5x to 1.5x --new-tokens)")
    ap.add_argument("--beams", type=int, default=1, help="beams for summarize (default: greedy)")
    ap.add_argument("--input-words", type=int, default=60, help="words per input document")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="server compute threads")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    if not args.model and not args.url and args.workload != "chat":
        ap.error("give --model (start servers) or --url (measure a running one)")
    levels = [int(c) for c in args.concurrency.split(",")]
    configs = [None] if args.url else [int(b) for b in args.batch_sizes.split(",")]
    results = []
    for batch in configs:
        proc, url = (None, args.url) if batch is None else start_server(args, batch)
        try:
            mid = model_id(url)
            run_level(url, args.workload, 1, 2, args, mid)  # warm-up
            for clients in levels:
                total = max(args.min_requests, clients * args.requests)
                r = run_level(url, args.workload, clients, total, args, mid)
                r["max_batch_size"] = batch
                results.append(r)
                print(f"batch {batch or '-':>3}  clients {clients:>3}: {r['requests']:>4} ok {r['errors']:>3} err  "
                      f"{r['requests_per_s']:8.2f} req/s {r['tokens_per_s']:9.1f} tok/s  "
                      f"p50 {r['p50_ms']:8.1f} ms  p99 {r['p99_ms']:8.1f} ms", flush=True)
        finally:
            if proc:
                stop_server(proc)
    print()
    print(f"workload {args.workload}, model {args.model or args.url or 'default'}, {args.new_tokens} new tokens, "
          f"{args.beams} beam(s), {args.input_words}-word inputs, {args.threads} compute threads")
    print("| max batch | clients | req/s | tokens/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['max_batch_size'] or '-'} | {r['clients']} | {r['requests_per_s']:.2f} | "
              f"{r['tokens_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    if len(configs) == 2:
        print()
        for clients in levels:
            a = next(r for r in results if r["max_batch_size"] == configs[0] and r["clients"] == clients)
            b = next(r for r in results if r["max_batch_size"] == configs[1] and r["clients"] == clients)
            print(f"{clients:>3} clients: batching {configs[0]} vs {configs[1]}: "
                  f"{a['requests_per_s'] / b['requests_per_s']:.2f}x throughput")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
