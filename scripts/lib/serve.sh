# Shared by scripts/test-apifuzz.sh and scripts/soak.sh (sourced, not run): the pinned Python
# packages in .venv, the debug `lmrs` binary, and `lmrs serve` on free loopback ports.
# The caller has `set -euo pipefail` and is in the repository root.

PY=.venv/bin/python
BIN="${CARGO_TARGET_DIR:-target}/debug/lmrs"
SERVE_TMP=$(mktemp -d)
SERVE_PIDS=()

# apifuzz_python: .venv with tools/requirements-apifuzz.txt (schemathesis, aiohttp), created
# or completed when a pinned version is missing; other packages in .venv are left alone.
apifuzz_python() {
    local want_st want_aio
    want_st=$(sed -n 's/^schemathesis==//p' tools/requirements-apifuzz.txt)
    want_aio=$(sed -n 's/^aiohttp==//p' tools/requirements-apifuzz.txt)
    if ! "$PY" - "$want_st" "$want_aio" 2>/dev/null <<'PYEOF'
import sys
from importlib.metadata import version
sys.exit(version("schemathesis") != sys.argv[1] or version("aiohttp") != sys.argv[2])
PYEOF
    then
        if [ ! -x "$PY" ]; then
            python3 -m venv .venv
        fi
        "$PY" -m pip install --quiet --disable-pip-version-check -r tools/requirements-apifuzz.txt
    fi
}

# build_lmrs: the debug binary, as scripts/test-server.sh builds it.
build_lmrs() {
    echo "== build lmrs (debug)"
    cargo build --quiet -p lmrs-cli
}

# alive PID: the process runs (an exited child stays a zombie until waited for, and `kill -0`
# still reaches a zombie).
alive() {
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ]
}

serve_cleanup() {
    for pid in "${SERVE_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${SERVE_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$SERVE_TMP"
}
trap serve_cleanup EXIT

# serve NAME ARGS...: start `lmrs serve --host 127.0.0.1 --port 0 ARGS` in the background and
# wait (at most 60 s) for its address; sets PID and URL. The log is $SERVE_TMP/NAME.log.
serve() {
    local name=$1
    shift
    local log="$SERVE_TMP/$name.log"
    RAYON_NUM_THREADS=1 "$BIN" serve --host 127.0.0.1 --port 0 "$@" >"$log" 2>&1 &
    PID=$!
    SERVE_PIDS+=("$PID")
    local addr=""
    for _ in $(seq 1 600); do
        addr=$(sed -n 's|.*listening on http://\([^ ]*\).*|\1|p' "$log" | head -n1)
        [ -n "$addr" ] && break
        if ! alive "$PID"; then
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
    echo "started $name at $URL: $(head -n1 "$log")"
}

# serve_stop PID NAME: SIGTERM; the server must exit 0 within 30 s (else its log is shown).
serve_stop() {
    local pid=$1 name=$2 rc=0
    kill -TERM "$pid"
    for _ in $(seq 1 300); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        echo "lmrs serve ($name) still running 30 s after SIGTERM:"
        tail -n 20 "$SERVE_TMP/$name.log"
        kill -KILL "$pid" 2>/dev/null || true
        return 1
    fi
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "lmrs serve ($name) exited with $rc after SIGTERM:"
        tail -n 20 "$SERVE_TMP/$name.log"
        return 1
    fi
    echo "stopped $name (exit 0)"
}
