#!/usr/bin/env bash
# `transformers` reads what `lmrs train` writes: trains every parity case of
# tests/fixtures/train/ (T5 summarization, a BERT classifier, a Llama prompt/completion SFT)
# with the lmrs binary (a LoRA run included), loads each output folder with `from_pretrained`
# (the adapter with peft's `PeftModel.from_pretrained`) and compares its logits
# and per-step losses with the Trainer references (tools/check_train_outputs.py).
#
# Python: uses .venv when it has the pinned torch and transformers, else creates .venv and
# installs tools/requirements-train-check.txt into it.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
want_tf=$(sed -n 's/^transformers==//p' tools/requirements-train-check.txt)
want_torch=$(sed -n 's/^torch==//p' tools/requirements-train-check.txt)
want_peft=$(sed -n 's/^peft==//p' tools/requirements-train-check.txt)
if ! "$PY" -c "import sys, torch, transformers, peft; sys.exit(transformers.__version__ != '$want_tf' or not torch.__version__.startswith('$want_torch') or peft.__version__ != '$want_peft')" 2>/dev/null; then
    if [ ! -x "$PY" ]; then
        python3 -m venv .venv
    fi
    "$PY" -m pip install --quiet --disable-pip-version-check -r tools/requirements-train-check.txt
fi

echo "== build lmrs"
cargo build --quiet -p lmrs-cli
HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error "$PY" tools/check_train_outputs.py --lmrs target/debug/lmrs
