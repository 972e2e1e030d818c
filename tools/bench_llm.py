"""Decoder-only benchmark baseline: llama.cpp (through llama-cpp-python) on the same GGUF,
prompt and thread count as `lmrs bench`, for a side-by-side run.

    python3 -m venv /tmp/llamavenv && /tmp/llamavenv/bin/pip install -r tools/requirements-bench.txt
    tools/bench_llm_compare.sh MODEL.gguf      # runs both, prints one table

Measures prompt processing (one `eval` of the whole prompt) and greedy decode of NEW tokens
(EOS ignored), median of REPEAT runs after a warm-up, and peak RSS.
"""
import argparse
import json
import resource
import statistics
import time

import numpy as np
from llama_cpp import Llama

# Same text as crates/lmrs-cli/src/bench_causal.rs BENCH_TEXT.
BENCH_TEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de "
    "Mars in Paris, France. It is named after the engineer Gustave Eiffel, whose company designed and "
    "built the tower from 1887 to 1889. Locally nicknamed \"La dame de fer\" (French for \"Iron "
    "Lady\"), it was constructed as the centrepiece of the 1889 World's Fair, and to crown the "
    "centennial anniversary of the French Revolution. Although initially criticised by some of "
    "France's leading artists and intellectuals for its design, it has since become a global "
    "cultural icon of France and one of the most recognisable structures in the world. "
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--input-tokens", type=int, default=200)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--prompt-ids", help="JSON list of prompt ids (default: tokenize BENCH_TEXT)")
    args = ap.parse_args()

    t = time.perf_counter()
    llm = Llama(
        model_path=args.model,
        n_ctx=args.input_tokens + args.new_tokens + 8,
        n_batch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    load_s = time.perf_counter() - t
    if args.prompt_ids:
        prompt = json.loads(args.prompt_ids)
    else:
        text = BENCH_TEXT * (args.input_tokens // 40 + 2)
        prompt = llm.tokenize(text.encode(), add_bos=True, special=False)[: args.input_tokens]

    prefill, decode = [], []
    for rep in range(args.repeat + 1):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        p = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(args.new_tokens):
            logits = llm.scores[llm.n_tokens - 1]
            llm.eval([int(np.argmax(logits))])
        d = time.perf_counter() - t
        if rep > 0:
            prefill.append(p)
            decode.append(d)
    p, d = statistics.median(prefill), statistics.median(decode)
    print(json.dumps({
        "engine": "llama.cpp (llama-cpp-python)",
        "model": args.model,
        "threads": args.threads,
        "input_tokens": len(prompt),
        "new_tokens": args.new_tokens,
        "load_s": load_s,
        "prefill_ms": p * 1e3,
        "prefill_tokens_per_s": len(prompt) / p,
        "decode_s": d,
        "decode_tokens_per_s": args.new_tokens / d,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
