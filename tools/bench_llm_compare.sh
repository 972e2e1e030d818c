#!/usr/bin/env bash
# Side-by-side decoder benchmark: `lmrs bench` and llama.cpp (tools/bench_llm.py through
# llama-cpp-python) on the same GGUF, prompt length, new tokens and threads, alternating
# ROUNDS times; prints every run and the best of each engine (best-of is the figure least
# disturbed by other load on a shared machine).
#
#   tools/bench_llm_compare.sh MODEL.gguf [THREADS] [ROUNDS]
# Needs target/release/lmrs and a Python with llama-cpp-python ($LLAMA_PY, default
# /tmp/llamavenv/bin/python; see tools/requirements-bench.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 threads=${2:-2} rounds=${3:-4}
py=${LLAMA_PY:-/tmp/llamavenv/bin/python}
for r in $(seq "$rounds"); do
    target/release/lmrs --threads "$threads" bench --model "$model" --batch 1 --repeat 1 --json \
        | "$py" -c 'import json,sys; d=json.load(sys.stdin); c=d["cases"][0]; print(json.dumps({"engine":"lmrs","prefill_tokens_per_s":c["prefill_tokens_per_s"],"decode_tokens_per_s":c["decode_tokens_per_s"],"peak_rss_mb":d["peak_rss_mb"]}))'
    "$py" tools/bench_llm.py "$model" --threads "$threads" --repeat 1 \
        | "$py" -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"engine":"llama.cpp","prefill_tokens_per_s":d["prefill_tokens_per_s"],"decode_tokens_per_s":d["decode_tokens_per_s"],"peak_rss_mb":d["peak_rss_mb"]}))'
done | tee /dev/stderr | "$py" -c '
import json, sys
runs = [json.loads(l) for l in sys.stdin]
best = {}
for r in runs:
    b = best.setdefault(r["engine"], {"prefill": 0, "decode": 0, "rss": r["peak_rss_mb"]})
    b["prefill"] = max(b["prefill"], r["prefill_tokens_per_s"])
    b["decode"] = max(b["decode"], r["decode_tokens_per_s"])
print("best of %d rounds:" % (len(runs) // 2))
for e, b in best.items():
    print("  %-10s prefill %7.1f tok/s  decode %6.1f tok/s  peak RSS %5.0f MiB" % (e, b["prefill"], b["decode"], b["rss"]))
l, c = best["lmrs"], best["llama.cpp"]
print("  lmrs / llama.cpp: prefill %.2fx  decode %.2fx" % (l["prefill"] / c["prefill"], l["decode"] / c["decode"]))
'
