#!/usr/bin/env bash
# Soak and fault test of `lmrs serve` (tools/soak.py): a causal-LM server (tests/fixtures/
# llama-tiny: completions and chat) and an embedding server (tests/fixtures/bert-tiny-st) on
# free loopback ports, then `--clients` concurrent clients for `--seconds` with a random mix of
# streamed and plain requests, dropped streams, slow readers, abandoned requests, oversized
# and malformed bodies and half-sent requests. Fails on any 5xx, an unexpected status, a
# server that dies, RSS/threads/fds not back near their baseline once idle, a canonical
# greedy answer that changed, or a server that does not exit 0 on SIGTERM afterwards.
#
#   scripts/soak.sh [--seconds S] [--clients N] [--seed S]
# Defaults: 60 s, 200 clients, seed 1. .ci/run runs a bounded soak; longer runs (e.g.
# --seconds 600) find slower leaks.
#
# The servers run with the limits the soak's faults are built around: --max-body-bytes 65536
# (the oversized bodies go just over it), --max-new-tokens-limit 16 (the mix asks for at most
# 16 tokens) and the default queue (a full queue answers 429, which the mix accepts).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_ARG=60
CLIENTS=200
SEED=1
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) SECONDS_ARG=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

# shellcheck source=scripts/lib/serve.sh
. scripts/lib/serve.sh
apifuzz_python
build_lmrs

# The clients open up to 4 connections each to each server; with --max-connections at its
# default (512) connections beyond it wait in the backlog, which the soak exercises too.
# Enough open files for the client side (one process with up to 8 sockets per client).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

MAX_BODY=65536
LIMITS=(--max-body-bytes "$MAX_BODY" --max-new-tokens-limit 16 --request-timeout 60)

serve chat --model tests/fixtures/llama-tiny "${LIMITS[@]}"
CHAT_URL=$URL CHAT_PID=$PID
serve embed --model tests/fixtures/bert-tiny-st "${LIMITS[@]}"
EMBED_URL=$URL EMBED_PID=$PID

rc=0
"$PY" tools/soak.py --chat-url "$CHAT_URL" --chat-pid "$CHAT_PID" \
    --embed-url "$EMBED_URL" --embed-pid "$EMBED_PID" \
    --seconds "$SECONDS_ARG" --clients "$CLIENTS" --max-body-bytes "$MAX_BODY" \
    --seed "$SEED" || rc=$?

for pair in "$CHAT_PID:chat" "$EMBED_PID:embed"; do
    if ! alive "${pair%%:*}"; then
        echo "lmrs serve (${pair#*:}) died during the soak:"
        tail -n 20 "$SERVE_TMP/${pair#*:}.log"
        rc=1
        continue
    fi
    serve_stop "${pair%%:*}" "${pair#*:}" || rc=1
done
if [ "$rc" -ne 0 ]; then
    echo "soak: FAILED"
    exit 1
fi
echo "soak: passed ($CLIENTS clients, $SECONDS_ARG s, seed $SEED)"
