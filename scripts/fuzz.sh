#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz / libFuzzer) of every parser lmrs runs on input it did not
# write: see fuzz/fuzz_targets/. Builds all targets, seeds their corpora from tests/fixtures
# (fuzz/make_seeds.py), runs each target alone for SECONDS_PER_TARGET, prints a summary table and
# exits non-zero if any target found a crash, a timeout or an out-of-memory input.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 300)] [TARGET...]
#
# Each input must finish in 10 s (-timeout), stay under 2 GB RSS (-rss_limit_mb) and allocate
# at most LMRS_FUZZ_MALLOC_MB (default 1024) in one allocation (-malloc_limit_mb; enforced
# through the sanitizer's allocator). Findings are saved as fuzz/artifacts/TARGET/crash-*
# (timeout-*, oom-*); reproduce one with
#   fuzz/target/x86_64-unknown-linux-gnu/release/TARGET fuzz/artifacts/TARGET/crash-...
# The corpora grow in fuzz/corpus/TARGET (gitignored) across runs.
#
# cargo fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them, so no nightly install is needed. LMRS_FUZZ_SANITIZER=none builds without
# AddressSanitizer (faster build and runs, but no per-allocation limit). LMRS_FUZZ_SEED=N fixes
# libFuzzer's random seed (CI uses 1, so a run that fails can be rerun the same way; the default
# 0 draws a new seed each run, which explores more over many runs).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
shift || true
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
sanitizer="${LMRS_FUZZ_SANITIZER:-address}"
malloc_mb="${LMRS_FUZZ_MALLOC_MB:-1024}"
seed="${LMRS_FUZZ_SEED:-0}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== cargo install cargo-fuzz --locked"
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list --fuzz-dir .)
fi

echo "== cargo fuzz build (sanitizer: $sanitizer)"
start=$(date +%s)
if [ "$#" -gt 0 ]; then
  for t in "${targets[@]}"; do
    (cd fuzz && cargo fuzz build --fuzz-dir . -O -s "$sanitizer" "$t")
  done
else
  (cd fuzz && cargo fuzz build --fuzz-dir . -O -s "$sanitizer")
fi
echo "-- build: $(($(date +%s) - start)) s"
bin=fuzz/target/x86_64-unknown-linux-gnu/release

echo "== seed corpora (fuzz/make_seeds.py)"
python3 fuzz/make_seeds.py fuzz/corpus

# Scratch files the targets write (one folder per fuzzing process) go away afterwards.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"

max_len() {
  case "$1" in
    gguf | safetensors | tokenizer_json | gguf_tokenizer) echo 65536 ;;
    *) echo 8192 ;;
  esac
}

failed=0
rows=()
for t in "${targets[@]}"; do
  echo "== $t: ${secs} s"
  mkdir -p "fuzz/artifacts/$t" "fuzz/corpus/$t" fuzz/artifacts/logs
  log="fuzz/artifacts/logs/$t.log"
  before=$(ls "fuzz/artifacts/$t" | wc -l)
  set +e
  "$bin/$t" "fuzz/corpus/$t" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb="$malloc_mb" \
    -max_len="$(max_len "$t")" -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 -seed="$seed" \
    >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  found=$(($(ls "fuzz/artifacts/$t" | wc -l) - before))
  status=ok
  if [ "$rc" -ne 0 ] || [ "$found" -gt 0 ]; then
    status="FAILED (exit $rc)"
    failed=1
    grep -E '^==[0-9]+== ERROR|panicked at|SUMMARY|Test unit written' "$log" | head -5 || true
  fi
  rows+=("$(printf '%-20s %12s %8s  %s' "$t" "${execs:-?}" "$found" "$status")")
done

echo "== fuzz summary (${secs} s per target)"
printf '%-20s %12s %8s  %s\n' target execs findings status
printf '%s\n' "${rows[@]}"
if [ "$failed" -ne 0 ]; then
  echo "findings saved under fuzz/artifacts/ (logs in fuzz/artifacts/logs/)"
  exit 1
fi
