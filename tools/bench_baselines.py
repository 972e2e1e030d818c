#!/usr/bin/env python3
"""Python-side baselines for `lmrs bench`: transformers (fp32) and CTranslate2 (fp32) on a
t5-small-shaped random checkpoint, with a forced output length.

Two subcommands:

  make-model [OUT_DIR]   (default models/t5-small-random, gitignored)
      Writes a t5-small-shaped T5 checkpoint with random weights (fixed seed, float32,
      safetensors): config.json (T5Config defaults = t5-small, plus t5-small's `n_positions` and
      `task_specific_params`, `tie_word_embeddings: true` spelled out), generation_config.json,
      model.safetensors, the fixture tokenizer (tests/fixtures/t5-v1_0-tiny; its vocabulary is
      smaller than the model's 32128 rows, which is fine: the benchmark feeds token ids),
      bench_inputs.json ({"input_ids": [[...] x 8]}: the benchmark inputs, read by `run` and by the
      Rust side), and OUT_DIR/ct2/ (CTranslate2 conversion with ct2-transformers-converter,
      --quantization float32; its vocabulary is then made 32128 *unique* tokens, see fix_ct2_vocab).

  run [MODEL_DIR] --threads N --input-tokens 200 --new-tokens 50 --batches 1,8 --beams 1,4
      [--engines transformers,ctranslate2] [--reps 3] [--json OUT.json]
      Each engine runs in its own subprocess (so peak RSS is per engine), one after the other.
      Per engine: load time; encoder time; for every (batch, beams) case one warm-up then the
      median of --reps timed generate calls with exactly --new-tokens generated tokens per row
      (EOS suppressed until then); decode tokens/s = batch * new_tokens / generate_s; peak RSS.

JSON written by `run` (top-level keys are engine names only):
  {"<engine>": {"load_s": float, "encode_ms": float | null, "encode_ms_by_batch": {"1": .., "8": ..},
                "first_token_ms": float, "encode_ms_est": float,
                "cases": [{"batch": 1, "beams": 1, "generate_s": float, "tokens_per_s": float,
                           "output_tokens": [int, ...], "runs_s": [float, ...], "min_s": float}, ...],
                "peak_rss_mb": float, "rss_after_import_mb": float, "meta": {...}}}
  generate_s       median wall time of one generate()/translate_batch() call (includes encoding)
  output_tokens    generated tokens per row, decoder start token excluded (EOS would be counted,
                   but never occurs: it is suppressed for the whole output)
  encode_ms        encoder forward only, batch 1 (null for CTranslate2: no encoder-only API)
  first_token_ms   generate with 1 new token, batch 1 greedy (encoder + one decoder step)
  encode_ms_est    first_token_ms - per-step decode time from the batch-1 greedy case (estimate;
                   comparable across engines, unlike encode_ms)
  peak_rss_mb      ru_maxrss of the engine's subprocess (includes the Python runtime and imports)

Usage:
  .venv/bin/python tools/bench_baselines.py make-model
  .venv/bin/python tools/bench_baselines.py run --threads 2 --json models/t5-small-random/bench_python.json
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / "models" / "t5-small-random"
FIXTURE_TOKENIZER = REPO / "tests" / "fixtures" / "t5-v1_0-tiny"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

MODEL_SEED = 5120
INPUT_SEED = 200
INPUT_ROWS = 8
INPUT_TOKENS = 200
ID_LOW, ID_HIGH = 3, 800  # valid ids of the fixture tokenizer (804 entries), not pad/eos/unk
PAD_ID, EOS_ID, DECODER_START_ID = 0, 1, 0

# t5-small's task_specific_params (as in its config.json on the Hub).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from t5_task_params import TASK_SPECIFIC_PARAMS  # noqa: E402


def write_json(path, obj):
    Path(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def rss_now_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --------------------------------------------------------------------------------------------
# make-model
# --------------------------------------------------------------------------------------------


def make_inputs(rows=INPUT_ROWS, tokens=INPUT_TOKENS):
    """`rows` different rows of `tokens` ids: tokens-1 pseudo-random ids in [ID_LOW, ID_HIGH), then EOS."""
    import numpy as np

    rng = np.random.default_rng(INPUT_SEED)
    body = rng.integers(ID_LOW, ID_HIGH, size=(rows, tokens - 1))
    return [[int(x) for x in row] + [EOS_ID] for row in body]


def fix_ct2_vocab(ct2_dir, n_vocab):
    """The converter's T5 vocabulary is the tokenizer's (804 tokens here, ids 794..803 being
    <extra_id_9>..<extra_id_0>) padded with "<extra_id_%d>" % i for i in 0.. up to vocab_size, so
    <extra_id_0..9> would appear twice and token -> id would be ambiguous (CTranslate2 takes
    tokens, not ids). Rename the padding entries to unique "<lmrs_unused_ID>" names so that the
    vocabulary has exactly n_vocab distinct tokens and token i <-> id i."""
    ct2_dir = Path(ct2_dir)
    candidates = [ct2_dir / "shared_vocabulary.json", ct2_dir / "shared_vocabulary.txt"]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise SystemExit(f"no shared_vocabulary.{{json,txt}} in {ct2_dir}: {sorted(os.listdir(ct2_dir))}")
    if path.suffix == ".json":
        tokens = json.loads(path.read_text(encoding="utf-8"))
    else:
        tokens = path.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
    tok_vocab = json.loads((FIXTURE_TOKENIZER / "tokenizer.json").read_text(encoding="utf-8"))
    n_tok = len(tok_vocab["model"]["vocab"])
    assert len(tokens) == n_vocab, (len(tokens), n_vocab)
    dups_before = len(tokens) - len(set(tokens))
    fixed = tokens[:n_tok] + [f"<lmrs_unused_{i}>" for i in range(n_tok, n_vocab)]
    assert len(set(fixed)) == n_vocab, "vocabulary still has duplicates"
    if path.suffix == ".json":
        write_json(path, fixed)
    else:
        path.write_text("\n".join(fixed) + "\n", encoding="utf-8")
    print(f"  {path.name}: {len(tokens)} tokens, {dups_before} duplicates -> renamed ids "
          f"{n_tok}..{n_vocab - 1} to <lmrs_unused_ID>: {n_vocab} unique tokens")


def cmd_make_model(args):
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    import torch
    import transformers
    from transformers import T5Config, T5ForConditionalGeneration

    transformers.logging.set_verbosity_error()
    out = Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    cfg = T5Config(  # defaults are t5-small: 512/64/2048, 6+6 layers, 8 heads, 32128, relu, tied
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=DECODER_START_ID,
        task_specific_params=TASK_SPECIFIC_PARAMS,
        tie_word_embeddings=True,
    )
    torch.manual_seed(MODEL_SEED)
    model = T5ForConditionalGeneration(cfg).to(torch.float32).eval()
    n_params = sum(p.numel() for p in model.parameters())
    # transformers 5.x always writes safetensors (save_pretrained has no safe_serialization arg).
    import inspect

    kw = {}
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        kw["safe_serialization"] = True
    model.save_pretrained(out, **kw)

    # config.json: t5-small's form. Drop transformers 5.x's `scale_decoder_outputs` (real t5-small
    # has `tie_word_embeddings` alone, which implies the d_model**-0.5 output scaling), spell out
    # tie_word_embeddings, add n_positions (informational; T5 has relative positions).
    cpath = out / "config.json"
    c = json.loads(cpath.read_text(encoding="utf-8"))
    c.pop("scale_decoder_outputs", None)
    c["tie_word_embeddings"] = True
    c["n_positions"] = 512
    c["task_specific_params"] = TASK_SPECIFIC_PARAMS
    write_json(cpath, dict(sorted(c.items())))
    assert (out / "generation_config.json").exists() and (out / "model.safetensors").exists()
    for name in TOKENIZER_FILES:
        shutil.copyfile(FIXTURE_TOKENIZER / name, out / name)
    rows = make_inputs(INPUT_ROWS, args.input_tokens)
    write_json(out / "bench_inputs.json", {"input_ids": rows})
    print(f"wrote {out}: {n_params / 1e6:.1f}M params, model.safetensors "
          f"{(out / 'model.safetensors').stat().st_size / 2**20:.1f} MiB, bench_inputs.json "
          f"{len(rows)}x{len(rows[0])} ({time.time() - t0:.1f}s)")

    # reload check: the saved checkpoint loads tied and reproduces the in-memory model
    re = T5ForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    assert re.lm_head.weight.data_ptr() == re.shared.weight.data_ptr(), "reloaded model is not tied"
    ids = torch.tensor(rows[:1])
    with torch.inference_mode():
        a = model(input_ids=ids, decoder_input_ids=ids[:, :5]).logits
        b = re(input_ids=ids, decoder_input_ids=ids[:, :5]).logits
    assert torch.equal(a, b), "reloaded model differs"
    del model, re

    ct2_dir = out / "ct2"
    conv = Path(sys.executable).parent / "ct2-transformers-converter"
    cmd = [str(conv) if conv.exists() else "ct2-transformers-converter", "--model", str(out),
           "--output_dir", str(ct2_dir), "--quantization", "float32", "--force"]
    print("running:", " ".join(cmd))
    t1 = time.time()
    subprocess.run(cmd, check=True)
    fix_ct2_vocab(ct2_dir, cfg.vocab_size)
    ccfg = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))
    print(f"  ct2 config: {json.dumps(ccfg, sort_keys=True)}")
    print(f"converted to {ct2_dir} ({time.time() - t1:.1f}s); total {time.time() - t0:.1f}s")


# --------------------------------------------------------------------------------------------
# run: engine workers (each in its own subprocess)
# --------------------------------------------------------------------------------------------


CPU_UTIL = []  # (process CPU seconds / wall seconds) of every timed run, to spot contention


def timed(fn, reps):
    fn()  # warm-up
    runs = []
    for _ in range(reps):
        c, t = time.process_time(), time.perf_counter()
        r = fn()
        runs.append(time.perf_counter() - t)
        CPU_UTIL.append((time.process_time() - c) / runs[-1])
    return statistics.median(runs), runs, r


def gen_lengths(rows):
    """Generated tokens per row: up to and including the first EOS, else the whole row."""
    out = []
    for row in rows:
        row = list(row)
        out.append(row.index(EOS_ID) + 1 if EOS_ID in row else len(row))
    return out


def worker_transformers(a, inputs):
    import torch
    import transformers
    from transformers import T5ForConditionalGeneration

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(a.threads)
    rss_import = rss_now_mb()
    t = time.perf_counter()
    model = T5ForConditionalGeneration.from_pretrained(a.model_dir, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t
    res = {"load_s": load_s, "rss_after_import_mb": rss_import}

    def tensors(b):
        ids = torch.tensor(inputs[:b], dtype=torch.long)
        return ids, torch.ones_like(ids)

    def generate(b, beams, n):
        ids, mask = tensors(b)
        with torch.inference_mode():
            return model.generate(
                input_ids=ids, attention_mask=mask, num_beams=beams, do_sample=False,
                min_new_tokens=n, max_new_tokens=n, num_return_sequences=1,
                length_penalty=1.0, early_stopping=False, no_repeat_ngram_size=0,
                repetition_penalty=1.0, use_cache=True,
            )

    enc = {}
    for b in a.batches:
        ids, mask = tensors(b)

        def encode():
            with torch.inference_mode():
                return model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state

        enc[str(b)] = timed(encode, a.reps)[0] * 1e3
    res["encode_ms_by_batch"] = enc
    res["encode_ms"] = enc.get("1", next(iter(enc.values())))
    res["first_token_ms"] = timed(lambda: generate(1, 1, 1), a.reps)[0] * 1e3

    cases = []
    for b in a.batches:
        for beams in a.beams:
            med, runs, out = timed(lambda: generate(b, beams, a.new_tokens), a.reps)
            gen = out[:, 1:].tolist()  # drop the decoder start token
            assert out[:, 0].eq(DECODER_START_ID).all()
            cases.append(dict(batch=b, beams=beams, generate_s=med,
                              tokens_per_s=b * a.new_tokens / med,
                              output_tokens=gen_lengths(gen), runs_s=runs, min_s=min(runs)))
            print(f"  [transformers] batch {b} beams {beams}: {med:.3f}s "
                  f"(runs {', '.join(f'{r:.3f}' for r in runs)}), output lengths "
                  f"{cases[-1]['output_tokens']}", flush=True)
    res["cases"] = cases
    res["meta"] = dict(
        version=transformers.__version__, torch=torch.__version__, threads=torch.get_num_threads(),
        interop_threads=torch.get_num_interop_threads(), dtype=str(model.dtype),
        attn_implementation=getattr(model.config, "_attn_implementation", None),
        call="model.generate(num_beams=B, do_sample=False, min_new_tokens=N, max_new_tokens=N, "
             "length_penalty=1.0, early_stopping=False) under torch.inference_mode()",
    )
    return res


def worker_ctranslate2(a, inputs):
    import ctranslate2

    rss_import = rss_now_mb()
    ct2_dir = Path(a.model_dir) / "ct2"
    vpath = ct2_dir / "shared_vocabulary.json"
    if vpath.exists():
        vocab = json.loads(vpath.read_text(encoding="utf-8"))
    else:
        vocab = (ct2_dir / "shared_vocabulary.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(set(vocab)) == len(vocab), "ct2 vocabulary has duplicate tokens (run make-model)"
    tok_to_id = {t: i for i, t in enumerate(vocab)}
    t = time.perf_counter()
    tr = ctranslate2.Translator(str(ct2_dir), device="cpu", compute_type="float32",
                                intra_threads=a.threads, inter_threads=1)
    load_s = time.perf_counter() - t
    res = {"load_s": load_s, "rss_after_import_mb": rss_import}

    def source(b):
        return [[vocab[i] for i in row] for row in inputs[:b]]  # EOS "</s>" included, like HF

    def generate(b, beams, n):
        return tr.translate_batch(
            source(b), beam_size=beams, max_decoding_length=n, min_decoding_length=n,
            num_hypotheses=1, length_penalty=1.0, repetition_penalty=1.0, no_repeat_ngram_size=0,
            return_end_token=True, max_input_length=0, max_batch_size=0,
        )

    if hasattr(tr, "encode"):
        enc = {str(b): timed(lambda: tr.encode(source(b)), a.reps)[0] * 1e3 for b in a.batches}
        res["encode_ms_by_batch"] = enc
        res["encode_ms"] = enc.get("1", next(iter(enc.values())))
    else:  # ctranslate2 4.x Translator has no encoder-only call
        res["encode_ms_by_batch"] = None
        res["encode_ms"] = None
    res["first_token_ms"] = timed(lambda: generate(1, 1, 1), a.reps)[0] * 1e3

    cases = []
    for b in a.batches:
        for beams in a.beams:
            med, runs, out = timed(lambda: generate(b, beams, a.new_tokens), a.reps)
            gen = [[tok_to_id[x] for x in r.hypotheses[0]] for r in out]
            cases.append(dict(batch=b, beams=beams, generate_s=med,
                              tokens_per_s=b * a.new_tokens / med,
                              output_tokens=gen_lengths(gen), runs_s=runs, min_s=min(runs)))
            print(f"  [ctranslate2] batch {b} beams {beams}: {med:.3f}s "
                  f"(runs {', '.join(f'{r:.3f}' for r in runs)}), output lengths "
                  f"{cases[-1]['output_tokens']}", flush=True)
    res["cases"] = cases
    res["meta"] = dict(
        version=ctranslate2.__version__, threads=a.threads, compute_type=tr.compute_type,
        call="translate_batch(beam_size=B, max_decoding_length=N, min_decoding_length=N, "
             "return_end_token=True, length_penalty=1.0); Translator(device='cpu', "
             "compute_type='float32', intra_threads=T, inter_threads=1)",
    )
    return res


WORKERS = {"transformers": worker_transformers, "ctranslate2": worker_ctranslate2}


def load_inputs(model_dir, input_tokens, max_batch):
    rows = json.loads((Path(model_dir) / "bench_inputs.json").read_text(encoding="utf-8"))["input_ids"]
    if max_batch > len(rows):
        raise SystemExit(f"bench_inputs.json has {len(rows)} rows, need {max_batch}")
    if input_tokens > len(rows[0]):
        raise SystemExit(f"bench_inputs.json rows have {len(rows[0])} tokens, asked for "
                         f"{input_tokens}: rerun make-model --input-tokens {input_tokens}")
    # shorter inputs: keep the first input_tokens-1 ids and end with EOS
    return [row[: input_tokens - 1] + [EOS_ID] for row in rows]


def cmd_worker(a):
    inputs = load_inputs(a.model_dir, a.input_tokens, max(a.batches))
    load0 = os.getloadavg()
    res = WORKERS[a.engine](a, inputs)
    res["meta"]["loadavg_before_after"] = [round(load0[0], 2), round(os.getloadavg()[0], 2)]
    res["meta"]["cpu_util_median"] = statistics.median(CPU_UTIL) if CPU_UTIL else None
    # per-step decode time from batch-1 greedy -> estimated encoder time (comparable across engines)
    c = next((c for c in res["cases"] if c["batch"] == 1 and c["beams"] == 1), None)
    if c is not None and a.new_tokens > 1:
        step_ms = (c["generate_s"] * 1e3 - res["first_token_ms"]) / (a.new_tokens - 1)
        res["encode_ms_est"] = res["first_token_ms"] - step_ms
        res["decode_step_ms_b1_greedy"] = step_ms
    else:
        res["encode_ms_est"] = None
    res["peak_rss_mb"] = peak_rss_mb()
    res["meta"]["input_tokens"] = a.input_tokens
    res["meta"]["new_tokens"] = a.new_tokens
    res["meta"]["reps"] = a.reps
    res["meta"]["inputs"] = "bench_inputs.json rows[:batch] (distinct rows, same length, EOS last)"
    write_json(a.result, res)


# --------------------------------------------------------------------------------------------
# run: driver
# --------------------------------------------------------------------------------------------


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def print_table(results, a):
    engines = list(results)
    base = "transformers" if "transformers" in results else None
    w = 14
    head = f"{'':24}" + "".join(f"{e:>{w}}" for e in engines)
    others = [e for e in engines if e != base] if base else []
    if others:
        head += "".join(f"{'tf/' + e[:8]:>{w}}" for e in others)
    print()
    print(f"T5-small-shaped random checkpoint, fp32, {a.threads} threads, {a.input_tokens} input "
          f"tokens, {a.new_tokens} new tokens, median of {a.reps} (after 1 warm-up)")
    print(head)
    print("-" * len(head))

    def line(label, get, spec, ratio=True):
        vals = [get(results[e]) for e in engines]
        s = f"{label:24}" + "".join(f"{fmt(v, spec):>{w}}" for v in vals)
        if others and ratio:
            bv = get(results[base])
            for e in others:
                v = get(results[e])
                s += f"{fmt(bv / v if (bv and v) else None, '.2f'):>{w}}"
        print(s)

    line("load (s)", lambda r: r["load_s"], ".3f")
    line("encode b1 (ms)", lambda r: r.get("encode_ms"), ".1f")
    line("encode est. b1 (ms)", lambda r: r.get("encode_ms_est"), ".1f")
    line("1st token b1 (ms)", lambda r: r.get("first_token_ms"), ".1f")
    cases = [(c["batch"], c["beams"]) for c in results[engines[0]]["cases"]]
    for b, k in cases:
        def get(r, b=b, k=k, key="generate_s"):
            return next(c[key] for c in r["cases"] if c["batch"] == b and c["beams"] == k)
        line(f"b{b} beams{k} gen (s)", get, ".3f")
        line(f"b{b} beams{k} tok/s", lambda r, get=get: get(r, key="tokens_per_s"), ".1f", ratio=False)
    line("peak RSS (MB)", lambda r: r["peak_rss_mb"], ".0f")
    line("CPU util (cores)", lambda r: r["meta"].get("cpu_util_median"), ".2f", ratio=False)
    line("loadavg at start", lambda r: r["meta"]["loadavg_before_after"][0], ".2f", ratio=False)
    if others:
        print("(ratio columns: transformers / other, for times and RSS; >1 = other is faster/smaller)")


def cmd_run(a):
    t0 = time.time()
    model_dir = Path(a.model_dir).resolve()
    load_inputs(model_dir, a.input_tokens, max(a.batches))  # fail early
    results = {}
    for engine in a.engines:
        env = dict(os.environ)
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[k] = str(a.threads)
        env["TOKENIZERS_PARALLELISM"] = "false"
        with tempfile.TemporaryDirectory() as td:
            rpath = Path(td) / "result.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", engine, str(model_dir),
                   "--threads", str(a.threads), "--input-tokens", str(a.input_tokens),
                   "--new-tokens", str(a.new_tokens), "--batches", ",".join(map(str, a.batches)),
                   "--beams", ",".join(map(str, a.beams)), "--reps", str(a.reps),
                   "--result", str(rpath)]
            print(f"[{engine}] starting worker", flush=True)
            t = time.time()
            subprocess.run(cmd, check=True, env=env)
            results[engine] = json.loads(rpath.read_text(encoding="utf-8"))
            print(f"[{engine}] done in {time.time() - t:.1f}s", flush=True)
        bad = [c for c in results[engine]["cases"] if any(n != a.new_tokens for n in c["output_tokens"])]
        if bad:
            print(f"WARNING [{engine}]: output lengths differ from {a.new_tokens}: "
                  + "; ".join(f"b{c['batch']} beams{c['beams']}: {c['output_tokens']}" for c in bad))
    print_table(results, a)
    if a.json:
        write_json(a.json, results)
        print(f"wrote {a.json}")
    print(f"total wall time {time.time() - t0:.1f}s")


def int_list(s):
    return [int(x) for x in s.split(",") if x.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-model", help="write the random t5-small checkpoint + ct2 conversion")
    m.add_argument("out_dir", nargs="?", default=str(DEFAULT_DIR))
    m.add_argument("--input-tokens", type=int, default=INPUT_TOKENS,
                   help="length of the rows written to bench_inputs.json (EOS included)")

    def common(q):
        q.add_argument("model_dir", nargs="?", default=str(DEFAULT_DIR))
        q.add_argument("--threads", type=int, default=os.cpu_count() or 1)
        q.add_argument("--input-tokens", type=int, default=INPUT_TOKENS)
        q.add_argument("--new-tokens", type=int, default=50)
        q.add_argument("--batches", type=int_list, default=[1, 8])
        q.add_argument("--beams", type=int_list, default=[1, 4])
        q.add_argument("--reps", type=int, default=3)

    r = sub.add_parser("run", help="benchmark the engines")
    common(r)
    r.add_argument("--engines", type=lambda s: [e.strip() for e in s.split(",") if e.strip()],
                   default=list(WORKERS))
    r.add_argument("--json", help="write the results here")
    w = sub.add_parser("_worker", help=argparse.SUPPRESS)
    w.add_argument("engine", choices=list(WORKERS))
    common(w)
    w.add_argument("--result", required=True)
    a = p.parse_args()
    if a.cmd == "make-model":
        cmd_make_model(a)
    elif a.cmd == "run":
        unknown = [e for e in a.engines if e not in WORKERS]
        if unknown:
            p.error(f"unknown engine(s) {unknown}; choose from {list(WORKERS)}")
        cmd_run(a)
    else:
        cmd_worker(a)


if __name__ == "__main__":
    main()
