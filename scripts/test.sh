#!/usr/bin/env bash
# The whole test suite: unit, parity (against committed transformers references) and CLI
# integration tests. Needs only cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets "$@"
