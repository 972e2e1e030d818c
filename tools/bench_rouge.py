#!/usr/bin/env python3
"""ROUGE speed, side by side: Google's rouge-score vs `lmrs eval metrics --metric rouge` on the
same generated summary pairs (default 10,000), both computing rouge1/2/L/Lsum with the Porter
stemmer and 1000-resample bootstrap intervals. Prints both times, the ratio, and the largest
difference between the two sets of mean scores.

    cargo build --release -p lmrs-cli
    .venv/bin/python tools/bench_rouge.py [--pairs 10000] [--lmrs target/release/lmrs]
"""

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rouge_score import rouge_scorer, scoring

TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
VOCAB = (
    "the a of to and in is was for on that with as by at from it be this are were an has have "
    "government people market report city company school police minister election growth "
    "officials said year new first last week percent million billion president court health "
    "running runs runner ran announced announcing increases increased decision decisions"
).split()


def sentence(rng):
    words = [rng.choice(VOCAB) for _ in range(rng.randint(8, 20))]
    words[0] = words[0].capitalize()
    return " ".join(words) + "."


def pairs(n, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ref = [sentence(rng) for _ in range(rng.randint(2, 4))]
        pred = [" ".join(w for w in s.split() if rng.random() > 0.25) for s in ref[: rng.randint(1, len(ref))]]
        pred.append(sentence(rng))
        out.append(("\n".join(pred), "\n".join(ref)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=10000)
    ap.add_argument("--lmrs", default=str(Path(__file__).resolve().parent.parent / "target/release/lmrs"))
    args = ap.parse_args()
    data = pairs(args.pairs)

    t0 = time.perf_counter()
    scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=True)
    agg = scoring.BootstrapAggregator()
    for pred, ref in data:
        agg.add_scores(scorer.score(ref, pred))
    result = agg.aggregate()
    t_py = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        p, r = Path(tmp) / "pred.jsonl", Path(tmp) / "ref.jsonl"
        p.write_text("".join(json.dumps({"prediction": x}) + "\n" for x, _ in data))
        r.write_text("".join(json.dumps({"reference": y}) + "\n" for _, y in data))
        cmd = [args.lmrs, "eval", "metrics", "--metric", "rouge", "--use-stemmer", "--json",
               "--predictions", str(p), "--references", str(r)]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        t_rs = time.perf_counter() - t0
    ours = json.loads(out)["rouge"]["scores"]

    diff = 0.0
    for t in TYPES:
        for k, m in enumerate(["precision", "recall", "fmeasure"]):
            diff = max(diff, abs(ours[t][m]["mid"] - result[t].mid[k]))
    print(f"pairs: {args.pairs} (rouge1/2/L/Lsum, stemmer, 1000-resample bootstrap)")
    print(f"rouge-score 0.1.2: {t_py:8.2f} s")
    print(f"lmrs eval metrics: {t_rs:8.2f} s  (whole process: start, read JSONL, score, bootstrap)")
    print(f"speed-up: {t_py / t_rs:.1f}x")
    print(f"largest |mid difference| between the two: {diff:.2e} (bootstrap noise only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
