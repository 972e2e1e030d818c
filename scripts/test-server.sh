#!/usr/bin/env bash
# Starts the real `lmrs serve` on free loopback ports with the tiny fixture models and drives it
# with the official `openai` Python client and plain HTTP (tools/server_client_test.py): the
# OpenAI routes, the task routes, bad requests, auth, a 200-request load, then SIGTERM with
# requests in flight (they must complete and the server must exit 0).
#
# Python: reuses .venv when present, else creates it; either way installs
# tools/requirements-server.txt (the openai client only, no torch).
#   LMRS_SERVER_CHAT_MODEL=DIR  also checks the chat/completions contract on a causal LM.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
PY=.venv/bin/python
"$PY" -m pip install --quiet --disable-pip-version-check -r tools/requirements-server.txt

echo "== build lmrs"
cargo build --quiet -p lmrs-cli
BIN=target/debug/lmrs

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# start NAME ARGS...: start `lmrs serve --port 0 ARGS` in the background and wait for its
# address; sets PID and URL.
start() {
    local name=$1
    shift
    local log="$TMP/$name.log"
    RAYON_NUM_THREADS=1 "$BIN" serve --host 127.0.0.1 --port 0 "$@" >"$log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    local addr=""
    for _ in $(seq 1 600); do
        addr=$(sed -n 's|.*listening on http://\([^ ]*\).*|\1|p' "$log" | head -n1)
        [ -n "$addr" ] && break
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "lmrs serve ($name) exited early:"
            cat "$log"
            exit 1
        fi
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        echo "lmrs serve ($name) did not start:"
        cat "$log"
        exit 1
    fi
    URL="http://$addr"
    echo "started $name: $(head -n1 "$log")"
}

# stop PID NAME: SIGTERM, then the exit status must be 0.
stop() {
    local pid=$1 name=$2 rc=0
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "lmrs serve ($name) exited with $rc after SIGTERM:"
        cat "$TMP/$name.log"
        exit 1
    fi
    echo "stopped $name (exit 0)"
}

start embed --model tests/fixtures/bert-tiny-st --api-key test-key
EMBED_PID=$PID EMBED_URL=$URL
start seq2seq --model tests/fixtures/t5-v1_0-tiny --max-batch-size 8 --max-queue 32 \
    --max-body-bytes 65536
S2S_PID=$PID S2S_URL=$URL
CHAT_ARGS=()
if [ -n "${LMRS_SERVER_CHAT_MODEL:-}" ]; then
    start chat --model "$LMRS_SERVER_CHAT_MODEL"
    CHAT_PID=$PID
    CHAT_ARGS=(--chat-url "$URL")
fi

echo "== openai client and HTTP checks"
"$PY" tools/server_client_test.py clients --embed-url "$EMBED_URL" --api-key test-key \
    --seq2seq-url "$S2S_URL" --seq2seq-pid "$S2S_PID" "${CHAT_ARGS[@]}"
stop "$EMBED_PID" embed
stop "$S2S_PID" seq2seq
if [ -n "${CHAT_PID:-}" ]; then
    stop "$CHAT_PID" chat
fi

echo "== graceful shutdown with requests in flight"
start shutdown --model tests/fixtures/t5-v1_0-tiny --max-batch-size 2 --shutdown-grace 60
SHUT_PID=$PID
"$PY" tools/server_client_test.py shutdown --url "$URL" --pid "$SHUT_PID"
rc=0
wait "$SHUT_PID" || rc=$?
if [ "$rc" -ne 0 ]; then
    echo "lmrs serve exited with $rc after SIGTERM:"
    cat "$TMP/shutdown.log"
    exit 1
fi
echo "shutdown: exit 0"
echo "test-server: all checks passed"
