#!/usr/bin/env python3
"""Side-by-side benchmark in one run: lmrs vs transformers vs CTranslate2 (fp32, same threads).

Usage (after `scripts/setup-python.sh` and `cargo build --release -p lmrs-cli`):

    .venv/bin/python tools/bench_baselines.py make-model        # once: models/t5-small-random
    .venv/bin/python tools/bench_compare.py --threads 2

Runs each engine in turn on the same 200-token inputs (models/t5-small-random/bench_inputs.json),
forcing exactly 50 new tokens, and prints times and the ratios the issue asks for. Engines run
one after the other, so a busy machine slows all of them; run on a quiet machine.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "models/t5-small-random"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--lmrs", default=str(ROOT / "target/release/lmrs"))
    p.add_argument("--json", help="write all results here")
    a = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        py_json = Path(tmp) / "py.json"
        subprocess.run(
            [sys.executable, str(ROOT / "tools/bench_baselines.py"), "run", a.model,
             "--threads", str(a.threads), "--reps", str(a.reps), "--json", str(py_json)],
            check=True, stdout=subprocess.DEVNULL)
        py = json.loads(py_json.read_text())
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    out = subprocess.run(
        [a.lmrs, "--threads", str(a.threads), "bench", "--model", a.model, "--repeat", str(a.reps),
         "--inputs", str(Path(a.model) / "bench_inputs.json"), "--json"],
        check=True, capture_output=True, text=True, env=env).stdout
    lm = json.loads(out)
    results = {"lmrs": lm, **py}

    def case(engine, batch, beams):
        for c in results[engine]["cases"]:
            if c["batch"] == batch and c["beams"] == beams:
                return c
        return None

    engines = [e for e in ("lmrs", "transformers", "ctranslate2") if e in results]
    print(f"t5-small shape, fp32, {a.threads} threads, 200-token input, 50 new tokens, median of {a.reps}")
    print(f"{'case':<16}" + "".join(f"{e + ' s':>16}" for e in engines)
          + f"{'tf/lmrs':>10}{'lmrs/ct2':>10}")
    for batch, beams in [(1, 1), (1, 4), (8, 1), (8, 4)]:
        cs = {e: case(e, batch, beams) for e in engines}
        if any(v is None for v in cs.values()):
            continue
        t = {e: cs[e]["generate_s"] for e in engines}
        name = f"b{batch} {'greedy' if beams == 1 else f'{beams}-beam'}"
        row = f"{name:<16}" + "".join(f"{t[e]:>16.3f}" for e in engines)
        if "transformers" in t:
            row += f"{t['transformers'] / t['lmrs']:>10.2f}"
        if "ctranslate2" in t:
            row += f"{t['lmrs'] / t['ctranslate2']:>10.2f}"
        print(row)
    print("load s:      " + "  ".join(f"{e} {results[e].get('load_s', float('nan')):.3f}" for e in engines))
    print("peak RSS MB: " + "  ".join(f"{e} {results[e].get('peak_rss_mb') or float('nan'):.0f}" for e in engines))
    print(f"lmrs encoder (batch 1): {lm['encode_ms']:.1f} ms; transformers encoder: "
          f"{results.get('transformers', {}).get('encode_ms', float('nan')):.1f} ms")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
