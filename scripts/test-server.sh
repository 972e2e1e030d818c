#!/usr/bin/env bash
# Starts the real `lmrs serve` on free loopback ports with the tiny fixture models and drives it
# with the official `openai` Python client and plain HTTP (tools/server_client_test.py): the
# OpenAI routes (embeddings; chat, streaming chat and completions on a causal LM), the task
# routes, bad requests, auth, a 200-request load, then SIGTERM with requests in flight (they
# must complete and the server must exit 0).
#
# Causal LMs: the tiny llama fixture as an HF folder (tests/fixtures/llama-tiny) and as GGUF
# (tests/fixtures/llama-tiny-gguf), so nothing needs downloading; also `lmrs serve` with no
# --model (the default model, SmolLM2-135M-Instruct) when scripts/fetch-models.sh has fetched it.
#   LMRS_SERVER_CHAT_MODEL=PATH  checks this causal LM too (a GGUF file or HF folder; a base model
#                                without a chat template gets the completion checks).
#   LMRS_SERVER_SKIP_DEFAULT=1   skip the default model even when it is there.
#
# Python: uses .venv when it has the pinned `openai`, else creates .venv and installs
# tools/requirements-server.txt into it (the openai client only, no torch).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
want_openai=$(sed -n 's/^openai==//p' tools/requirements-server.txt)
if ! "$PY" -c "import openai, sys; sys.exit(openai.__version__ != '$want_openai')" 2>/dev/null; then
    if [ ! -x "$PY" ]; then
        python3 -m venv .venv
    fi
    "$PY" -m pip install --quiet --disable-pip-version-check -r tools/requirements-server.txt
fi

echo "== build lmrs"
cargo build --quiet -p lmrs-cli
BIN="${CARGO_TARGET_DIR:-target}/debug/lmrs"

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
CHAT_PIDS=()
# chat NAME ARGS...: start a causal-LM server and add it to the chat checks.
chat() {
    local name=$1
    shift
    start "$name" "$@"
    CHAT_PIDS+=("$PID:$name")
    CHAT_ARGS+=(--chat-url "$name=$URL")
}
chat llama-tiny --model tests/fixtures/llama-tiny --max-batch-size 8
chat llama-tiny-gguf --model tests/fixtures/llama-tiny-gguf/llama-tiny-f32.gguf
DEFAULT_MODEL=${LMRS_HOME:-$HOME/.cache/lmrs}/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$DEFAULT_MODEL" ] && [ "${LMRS_SERVER_SKIP_DEFAULT:-}" != 1 ]; then
    chat default-model
else
    echo "(default model not fetched: chat checks on the tiny llama fixtures only)"
fi
if [ -n "${LMRS_SERVER_CHAT_MODEL:-}" ]; then
    chat custom --model "$LMRS_SERVER_CHAT_MODEL"
fi

echo "== openai client and HTTP checks"
"$PY" tools/server_client_test.py clients --embed-url "$EMBED_URL" --api-key test-key \
    --seq2seq-url "$S2S_URL" --seq2seq-pid "$S2S_PID" "${CHAT_ARGS[@]}"
stop "$EMBED_PID" embed
stop "$S2S_PID" seq2seq
for entry in "${CHAT_PIDS[@]}"; do
    stop "${entry%%:*}" "${entry#*:}"
done

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
