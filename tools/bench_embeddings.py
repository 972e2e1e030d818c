#!/usr/bin/env python3
"""Embedding throughput: lmrs vs sentence-transformers on the same token ids, same threads.

Runs `lmrs embed --bench` (a subprocess) and sentence-transformers' forward pass (this process)
on identical rows of --tokens ids (batch 1 and 32 by default), and prints embeddings/s and peak
RSS of each. The rows are random ids between [CLS] and [SEP], so no tokenization is timed on
either side.

On a shared or noisy machine, --rounds N alternates the two N times (lmrs, then
sentence-transformers, then lmrs...) so that both see the same background load, and reports each
round's medians and the best round of each.

Usage: scripts/fetch-models.sh && cargo build --release -p lmrs-cli &&
       .venv/bin/python tools/bench_embeddings.py [--model models/all-MiniLM-L6-v2] [--threads 2]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(REPO / "models" / "all-MiniLM-L6-v2"))
    ap.add_argument("--lmrs", default=str(REPO / "target" / "release" / "lmrs"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1, help="alternating lmrs / s-t rounds; best reported")
    args = ap.parse_args()
    batches = [int(b) for b in args.batch.split(",")]

    # Threads must be fixed before torch starts its pools.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["MKL_NUM_THREADS"] = str(args.threads)
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    st = SentenceTransformer(args.model, device="cpu")
    st_load = time.perf_counter() - t
    tok = st.tokenizer
    g = torch.Generator().manual_seed(0)
    n = max(batches)
    body = torch.randint(1000, tok.vocab_size, (n, args.tokens - 2), generator=g)
    ids = torch.cat([torch.full((n, 1), tok.cls_token_id), body, torch.full((n, 1), tok.sep_token_id)], 1)

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"input_ids": ids.tolist()}, f)
        inputs = f.name
    cmd = [args.lmrs, "--threads", str(args.threads), "embed", "--bench", "--bench-json", "--model", args.model,
           "--bench-batch", args.batch, "--repeat", str(args.repeat), "--bench-inputs", inputs]

    def run_st():
        cases = []
        with torch.inference_mode():
            for b in batches:
                feats = {"input_ids": ids[:b], "attention_mask": torch.ones_like(ids[:b]),
                         "token_type_ids": torch.zeros_like(ids[:b])}
                times = []
                for rep in range(args.repeat + 1):
                    t = time.perf_counter()
                    st.forward(dict(feats))["sentence_embedding"]
                    if rep:
                        times.append(time.perf_counter() - t)
                times.sort()
                cases.append(b / times[len(times) // 2])
        return cases

    rounds = []
    try:
        for _ in range(max(args.rounds, 1)):
            lmrs = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            rounds.append(([c["embeddings_per_s"] for c in lmrs["cases"]], run_st()))
    finally:
        os.unlink(inputs)
    st_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if len(rounds) > 1:
        print("per round (lmrs emb/s | s-t emb/s, by batch):")
        for i, (lm, stc) in enumerate(rounds):
            pairs = "  ".join(f"b{b}: {l:.1f} | {s:.1f}" for b, l, s in zip(batches, lm, stc))
            print(f"  round {i + 1}: {pairs}")
    lmrs_best = [max(r[0][i] for r in rounds) for i in range(len(batches))]
    st_cases = [max(r[1][i] for r in rounds) for i in range(len(batches))]

    print(f"model: {args.model}")
    print(f"threads: {args.threads}  input: {args.tokens} tokens  repeat: {args.repeat} (median)  "
          f"rounds: {len(rounds)} (best)  torch {torch.__version__}")
    print(f"{'batch':>6} {'lmrs emb/s':>12} {'s-t emb/s':>12} {'lmrs/s-t':>9}")
    for b, l, s in zip(batches, lmrs_best, st_cases):
        print(f"{b:>6} {l:>12.1f} {s:>12.1f} {l / s:>9.2f}")
    print(f"load s: lmrs {lmrs['load_s']:.3f}  sentence-transformers {st_load:.3f}")
    print(f"peak RSS MiB: lmrs {lmrs['peak_rss_mb']:.1f}  sentence-transformers (python + torch) {st_rss:.1f}")


if __name__ == "__main__":
    sys.exit(main())
