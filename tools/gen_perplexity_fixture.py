#!/usr/bin/env python3
"""Reference perplexities for `lmrs eval perplexity` (strided sliding windows).

Reproduces the loop of transformers' guide "Perplexity of fixed-length models"
(docs/source/en/perplexity.md, the version shipped with transformers 5) on the committed text
tests/fixtures/perplexity/text.txt with the tiny random causal LMs under tests/fixtures/
(llama-tiny, gpt2-tiny: no BOS added by their tokenizers; gemma3-tiny: its tokenizer adds <bos>,
and its sliding-window layers make chunked evaluation matter), and writes
tests/fixtures/perplexity/expected.json.

The guide's loop, per window [begin, end) moved by `stride` (trg_len = end - prev_end):

    labels = ids[begin:end]; labels[:-trg_len] = -100
    loss = model(ids, labels=labels).loss          # mean NLL over the labels actually scored
    num_loss_tokens = (labels != -100).sum() - 1   # "subtract batch_size due to the label shift"
    nll_sum += loss * num_loss_tokens; n_tokens += num_loss_tokens
    ppl = exp(nll_sum / n_tokens)

Recorded per model and configuration:
  hf_docs        that weighting, recomputed in float64 from float64 log-softmax per-token NLLs
                 (what lmrs computes): nll_sum, n_tokens, nll = nll_sum / n_tokens, ppl.
                 A window whose labels are all shifted away (a one-token window) has loss NaN
                 and weight 0; the guide's code then turns the whole sum into NaN, lmrs and this
                 reference skip it (it contributes nothing either way).
  hf_docs_torch  the guide's code run verbatim (float32 `outputs.loss`), for the record; null
                 where it yields NaN.
  token_level    the exact per-token average: every scored token's NLL summed and divided by
                 the number of scored tokens (the guide's weighting counts trg_len - 1 tokens
                 for windows that really score trg_len).
  windows, tokens (the text's length in tokens), scored_tokens.

Usage:  .venv/bin/python tools/gen_perplexity_fixture.py [--out tests/fixtures/perplexity]
"""

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import math
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

REPO = Path(__file__).resolve().parent.parent
MODELS = ["llama-tiny", "gpt2-tiny", "gemma3-tiny"]
# limit: evaluate only the first `limit` tokens (edge cases of the last window).
CONFIGS = [
    {"name": "len64_stride32", "max_length": 64, "stride": 32},
    {"name": "len64_stride64", "max_length": 64, "stride": 64},
    {"name": "len128_stride64", "max_length": 128, "stride": 64},
    {"name": "len50_stride17", "max_length": 50, "stride": 17},
    # Last window [64, 97) adds one token: its trg_len - 1 weight is 0.
    {"name": "len64_stride32_last_trg1", "max_length": 64, "stride": 32, "limit": 97},
    # Last window [128, 129) is a single token: nothing scored in it (NaN loss in the guide).
    {"name": "len64_stride64_last_len1", "max_length": 64, "stride": 64, "limit": 129},
]


def windows(seq_len, max_length, stride):
    """The guide's loop bounds: (begin, end, trg_len) per window."""
    out = []
    prev_end = 0
    for begin in range(0, seq_len, stride):
        end = min(begin + max_length, seq_len)
        out.append((begin, end, end - prev_end))
        prev_end = end
        if end == seq_len:
            break
    return out


def guide_verbatim(model, input_ids, max_length, stride):
    """The guide's code as written (float32 loss from the model)."""
    seq_len = input_ids.size(1)
    nll_sum = 0.0
    n_tokens = 0
    prev_end_loc = 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        ids = input_ids[:, begin_loc:end_loc]
        target_ids = ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            outputs = model(ids, labels=target_ids)
            neg_log_likelihood = outputs.loss
        num_valid_tokens = (target_ids != -100).sum().item()
        batch_size = target_ids.size(0)
        num_loss_tokens = num_valid_tokens - batch_size
        nll_sum += neg_log_likelihood * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    avg = float(nll_sum / n_tokens)
    return None if math.isnan(avg) else {"nll": avg, "ppl": math.exp(avg), "n_tokens": n_tokens}


def reference(model, ids, max_length, stride):
    """Per-token NLLs in float64 and both weightings."""
    wins = windows(len(ids), max_length, stride)
    hf_sum = 0.0
    hf_tokens = 0
    tok_sum = 0.0
    scored = 0
    per_window = []
    for begin, end, trg_len in wins:
        x = torch.tensor([ids[begin:end]])
        with torch.no_grad():
            logits = model(x).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        n = end - begin
        first = max(n - trg_len, 1)  # first window position whose label is scored
        nlls = [-logp[p - 1, ids[begin + p]].item() for p in range(first, n)]
        s = math.fsum(nlls)
        tok_sum += s
        scored += len(nlls)
        weight = trg_len - 1
        if nlls:
            hf_sum += (s / len(nlls)) * weight
        hf_tokens += weight
        per_window.append({"begin": begin, "end": end, "trg_len": trg_len, "scored": len(nlls), "nll_sum": s})
    return {
        "windows": len(wins),
        "scored_tokens": scored,
        "hf_docs": {
            "nll_sum": hf_sum,
            "n_tokens": hf_tokens,
            "nll": hf_sum / hf_tokens,
            "ppl": math.exp(hf_sum / hf_tokens),
        },
        "token_level": {
            "nll_sum": tok_sum,
            "n_tokens": scored,
            "nll": tok_sum / scored,
            "ppl": math.exp(tok_sum / scored),
        },
        "per_window": per_window,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "tests/fixtures/perplexity"))
    args = ap.parse_args()
    out = Path(args.out)
    text = (out / "text.txt").read_text(encoding="utf-8")
    result = {
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
        "text": "text.txt",
        "text_chars": len(text),
        "models": {},
    }
    for name in MODELS:
        folder = REPO / "tests/fixtures" / name
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        # The guide: tokenizer(text) with the tokenizer's own special tokens.
        ids = tok(text)["input_ids"]
        entry = {
            "ids": ids,
            # Tokens the tokenizer's post-processor adds (gemma3-tiny: <bos>).
            "special_added": len(ids) - len(tok(text, add_special_tokens=False)["input_ids"]),
            "bos_token_id": tok.bos_token_id,
            "configs": [],
        }
        for cfg in CONFIGS:
            sub = ids[: cfg.get("limit", len(ids))]
            ref = reference(model, sub, cfg["max_length"], cfg["stride"])
            ref["hf_docs_torch"] = guide_verbatim(
                model, torch.tensor([sub]), cfg["max_length"], cfg["stride"]
            )
            ref["tokens"] = len(sub)
            entry["configs"].append({**cfg, **ref})
            print(f"{name:12} {cfg['name']:26} windows {ref['windows']:3} "
                  f"ppl {ref['hf_docs']['ppl']:.6f} token-level {ref['token_level']['ppl']:.6f} "
                  f"torch {ref['hf_docs_torch'] and ref['hf_docs_torch']['ppl']}")
        result["models"][name] = entry
    (out / "expected.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out / 'expected.json'}")


if __name__ == "__main__":
    main()
