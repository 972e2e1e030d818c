#!/usr/bin/env bash
# Creates .venv with the pinned Python packages used to (re)generate test fixtures and to run
# the comparison benchmarks. `cargo test` itself needs none of this: fixtures are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -r tools/requirements.txt
