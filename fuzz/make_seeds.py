#!/usr/bin/env python3
"""Build each fuzz target's seed corpus (fuzz/corpus/TARGET/) from the committed fixtures.

Usage: fuzz/make_seeds.py [CORPUS_DIR]   (default: fuzz/corpus next to this file)

Seeds are derived from tests/fixtures (small files: safetensors and GGUF files cut down to a few
tensors, configs, tokenizers, chat templates) plus the hand-written seeds in fuzz/seeds/TARGET/.
Files are named by content hash, so running this again over a grown corpus only adds what is
missing.
"""
import hashlib
import json
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures"
CORPUS = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def fixtures(pattern):
    return sorted(p for p in FIXTURES.glob(pattern) if "real" not in p.parts)


# --- safetensors: each fixture checkpoint cut down to its four smallest tensors -----------------
def safetensors_seeds():
    for path in fixtures("*/model.safetensors"):
        raw = path.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        data = raw[8 + n :]
        meta = header.pop("__metadata__", None)
        small = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])
        for count in (1, 4):
            out, blob = {}, b""
            if meta is not None:
                out["__metadata__"] = meta
            for name, info in small[:count]:
                a, b = info["data_offsets"]
                out[name] = {"dtype": info["dtype"], "shape": info["shape"],
                             "data_offsets": [len(blob), len(blob) + b - a]}
                blob += data[a:b]
            h = json.dumps(out).encode()
            h += b" " * (-len(h) % 8)
            put("safetensors", struct.pack("<Q", len(h)) + h + blob)


# --- GGUF: a minimal reader/writer, to cut the fixture files down to a few tensors --------------
SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf(raw):
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, raw, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        s = raw[pos : pos + n]
        pos += n
        return s

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            return (et, [value(et) for _ in range(n)])
        return take(SCALAR[t])

    assert raw[:4] == b"GGUF"
    pos = 4
    version, nt, nkv = take("<I"), take("<Q"), take("<Q")
    kvs = []
    for _ in range(nkv):
        k = string()
        t = take("<I")
        kvs.append((k, t, value(t)))
    infos = []
    for _ in range(nt):
        name = string()
        dims = [take("<Q") for _ in range(take("<I"))]
        infos.append((name, dims, take("<I"), take("<Q")))
    align = next((v for k, t, v in kvs if k == b"general.alignment"), 32)
    start = pos + (-pos % align)
    return version, kvs, infos, raw[start:], align


def write_gguf(kvs, tensors, align=32):
    out = bytearray(b"GGUF") + struct.pack("<IQQ", 3, len(tensors), len(kvs))

    def string(s):
        return struct.pack("<Q", len(s)) + s

    def value(t, v):
        if t == 8:
            return string(v)
        if t == 9:
            et, items = v
            return struct.pack("<IQ", et, len(items)) + b"".join(value(et, x) for x in items)
        return struct.pack(SCALAR[t], v)

    for k, t, v in kvs:
        out += string(k) + struct.pack("<I", t) + value(t, v)
    blob = bytearray()
    for name, dims, ty, data in tensors:
        blob += b"\0" * (-len(blob) % align)
        out += string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ty, len(blob))
        blob += data
    out += b"\0" * (-len(out) % align)
    return bytes(out + blob)


def gguf_seeds():
    for path in fixtures("*/*.gguf"):
        _, kvs, infos, data, align = read_gguf(path.read_bytes())
        ends = sorted(o for _, _, _, o in infos) + [len(data)]
        sized = []
        for name, dims, ty, off in infos:
            end = min(e for e in ends if e > off)
            sized.append((name, dims, ty, data[off:end]))
        sized.sort(key=lambda t: len(t[3]))
        # Metadata alone, the smallest tensors, and the token embedding the config reads.
        put("gguf", write_gguf(kvs, [], align))
        put("gguf", write_gguf(kvs, sized[:6], align))
        embd = [t for t in sized if t[0] == b"token_embd.weight"]
        if embd and len(embd[0][3]) < 40000:
            put("gguf", write_gguf(kvs, sized[:3] + embd, align))
    # The synthetic tokenizer vocabularies (GPT-2 BPE and SentencePiece) as metadata-only files.
    types = {"string": 8, "u32": 4, "f32": 6, "bool": 7}
    arrays = {"string_array": 8, "f32_array": 6, "i32_array": 5}
    for model in json.loads((FIXTURES / "gguf_tokenizer_synthetic.json").read_text())["models"]:
        kvs = []
        for e in model["metadata"]:
            t, v = e["type"], e["value"]
            if t in types:
                kvs.append((e["key"].encode(), types[t], v.encode() if t == "string" else v))
            elif t in arrays:
                et = arrays[t]
                kvs.append((e["key"].encode(), 9, (et, [x.encode() if et == 8 else x for x in v])))
        put("gguf", write_gguf(kvs, []))
        put("gguf_tokenizer", json.dumps({"metadata": model["metadata"]}))


def text_seeds():
    for p in fixtures("*/config.json") + fixtures("*/*/config.json"):
        put("model_config", p.read_bytes())
    for p in fixtures("*/generation_config.json"):
        put("generation_config", p.read_bytes())
    messages = json.dumps([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "2+2?"},
    ]).encode()
    for p in fixtures("*/tokenizer.json"):
        cfg = p.parent / "tokenizer_config.json"
        put("tokenizer_json", p.read_bytes())
        if cfg.is_file():
            put("tokenizer_json", p.read_bytes() + b"\0" + cfg.read_bytes())
            template = json.loads(cfg.read_text()).get("chat_template")
            if isinstance(template, str):
                put("chat_template", template.encode() + b"\0" + messages)
                put("chat_template", template)


def train_seeds():
    # First byte: 0 JSON Lines, 1 CSV, 2 TrainingArguments JSON (fuzz_targets/train_data.rs).
    for p in fixtures("train/*.jsonl"):
        put("train_data", b"\0" + p.read_bytes())
    put("train_data", b"\1" + b'document,summary\n"a, b",c\n"multi\nline",d\n')
    put("train_data", b"\2" + json.dumps({"learning_rate": 1e-3, "lr_scheduler_type": "cosine",
                                           "eval_strategy": "steps", "eval_steps": 2,
                                           "load_best_model_at_end": True, "save_steps": 4}).encode())


def committed_seeds():
    for d in sorted((HERE / "seeds").iterdir()):
        for f in sorted(d.iterdir()):
            put(d.name, f.read_bytes())


safetensors_seeds()
gguf_seeds()
text_seeds()
train_seeds()
committed_seeds()
for d in sorted(CORPUS.iterdir()):
    print(f"{d.name}: {len(list(d.iterdir()))} inputs")
