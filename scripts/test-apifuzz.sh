#!/usr/bin/env bash
# Property-based API fuzzing of `lmrs serve`, driven by its own GET /openapi.json: schemathesis
# (pinned in tools/requirements-apifuzz.txt) generates valid and invalid requests for every
# operation from the document and checks each response. Servers run on free loopback ports
# with the tiny committed fixtures, one per model kind, so every route is fuzzed against a
# model that serves it:
#   llama-tiny    /v1/completions, /v1/chat/completions, and the service routes
#   bert-tiny-st  /v1/embeddings and /v1/models (with --api-key: the fuzzer sends the key)
#   t5-v1_0-tiny  /v1/summarize, /v1/translate, /v1/text2text
#   bert-tiny-cls /v1/classify, and every other route (they answer 404: still checked)
#   bert-tiny-ner /v1/ner;  bert-tiny-mlm /v1/fill-mask
#
# Checks, and why these:
#   not_a_server_error         no 5xx on any input: a 5xx is a panic caught by the runtime, a
#                              model failure or a bug, never the client's fault.
#   status_code_conformance    every status answered is one the document lists for the route
#                              (clients and generated SDKs branch on them).
#   content_type_conformance   the Content-Type is one the document lists (JSON, SSE, text).
#   response_schema_conformance  every JSON body (successes and OpenAI-style errors) matches
#                              the document's schema: the OpenAI shapes clients parse.
# The request schemas carry the server's own bounds (non-blank texts, num_beams >= 1, known
# languages, no unknown fields on the task routes...), so the generated valid cases reach the
# handlers and the 200 bodies get checked. Not yet for /v1/fill-mask: a valid text must hold
# the model's mask token, which the document does not name, so its cases end in 400s.
# Left out: positive_data_acceptance / negative_data_rejection (the JSON schemas are not the
# whole contract: e.g. a prompt longer than the context or `min_tokens` over `max_tokens` is
# schema-valid yet a correct 400, so these would report the server's documented validation as
# failures), response_headers_conformance (no headers are documented), and the stateful,
# auth-bypass and resource checks (no resources are created; auth is tested in
# tests/api.rs and tools/server_client_test.py).
#
#   scripts/test-apifuzz.sh [--max-examples N] [--seed S] [--time-limit SECONDS]
# --max-examples: generated cases per operation and phase (default 25). --seed: the
# schemathesis seed (default 1; the run is reproducible for a seed). --time-limit: a hard
# bound per server (default 300 s; a run that hits it fails: a hang is a defect).
# Exits non-zero when any check fails on any server.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES=25
SEED=1
TIME_LIMIT=300
while [ $# -gt 0 ]; do
    case $1 in
    --max-examples) MAX_EXAMPLES=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --time-limit) TIME_LIMIT=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

# shellcheck source=scripts/lib/serve.sh
. scripts/lib/serve.sh
apifuzz_python
build_lmrs

ST=$PWD/.venv/bin/schemathesis
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
# Small generation limits: cases ask for up to this many tokens, which keeps a debug build
# fast; the limit itself is part of what is fuzzed (over it: 400).
LIMITS=(--max-new-tokens-limit 8 --max-body-bytes 65536 --max-batch-size 4 --request-timeout 60)
FAILED=()
TOTAL_CASES=0

# fuzz NAME PATH_REGEX [SCHEMATHESIS ARGS...]: run schemathesis against the server at $URL.
fuzz() {
    local name=$1 paths=$2
    shift 2
    local report="$SERVE_TMP/$name-report"
    local rc=0 start=$SECONDS
    echo "== schemathesis: $name (operations matching $paths, --max-examples $MAX_EXAMPLES)"
    # Run from the temporary folder: schemathesis keeps a cache (.schemathesis/) in its
    # working directory.
    (cd "$SERVE_TMP" && timeout --kill-after=10 "$TIME_LIMIT" "$ST" run "$URL/openapi.json" \
        --checks "$CHECKS" \
        --max-examples "$MAX_EXAMPLES" \
        --seed "$SEED" \
        --workers 2 \
        --request-timeout 60 \
        --include-path-regex "$paths" \
        --generation-database none \
        --suppress-health-check too_slow,filter_too_much,data_too_large \
        --no-color \
        --report junit --report-dir "$report" \
        "$@") >"$SERVE_TMP/$name-st.log" 2>&1 || rc=$?
    # The summary and any failures (schemathesis prints a reproducing curl command for each).
    sed -n '/^=* *\(SUMMARY\|FAILURES\|ERRORS\)/,$p' "$SERVE_TMP/$name-st.log"
    local cases
    cases=$(python3 - "$report" <<'PYEOF'
import glob, sys, xml.etree.ElementTree as ET
n = 0
for f in glob.glob(sys.argv[1] + "/*.xml"):
    for case in ET.parse(f).getroot().iter("testcase"):
        n += 1
print(n)
PYEOF
    )
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "$name: schemathesis did not finish within $TIME_LIMIT s"
        tail -n 30 "$SERVE_TMP/$name-st.log"
    fi
    if ! alive "$PID"; then
        echo "$name: lmrs serve died during the run:"
        tail -n 20 "$SERVE_TMP/$name.log"
        rc=1
    fi
    echo "$name: exit $rc in $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || FAILED+=("$name")
}

SERVICE='^/(health|metrics|openapi\.json|docs|v1/models.*)$'

serve llama-tiny --model tests/fixtures/llama-tiny "${LIMITS[@]}"
fuzz llama-tiny "^/v1/(chat/)?completions\$|$SERVICE"

serve bert-tiny-st --model tests/fixtures/bert-tiny-st --api-key fuzz-key "${LIMITS[@]}"
fuzz bert-tiny-st '^/v1/(embeddings|models.*)$' -H 'Authorization: Bearer fuzz-key'

serve t5-v1_0-tiny --model tests/fixtures/t5-v1_0-tiny "${LIMITS[@]}"
fuzz t5-v1_0-tiny '^/v1/(summarize|translate|text2text)$'

serve bert-tiny-cls --model tests/fixtures/bert-tiny-cls "${LIMITS[@]}"
fuzz bert-tiny-cls '.*'

serve bert-tiny-ner --model tests/fixtures/bert-tiny-ner "${LIMITS[@]}"
fuzz bert-tiny-ner '^/v1/ner$'

serve bert-tiny-mlm --model tests/fixtures/bert-tiny-mlm "${LIMITS[@]}"
fuzz bert-tiny-mlm '^/v1/fill-mask$'

if [ ${#FAILED[@]} -gt 0 ]; then
    echo "test-apifuzz: FAILED on ${FAILED[*]} (logs above; rerun with --seed $SEED to reproduce)"
    exit 1
fi
echo "test-apifuzz: no failing check on any server (--max-examples $MAX_EXAMPLES, --seed $SEED)"
