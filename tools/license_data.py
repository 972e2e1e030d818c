#!/usr/bin/env python3
"""Real training data from text that ships with every Debian machine: the license texts in
/usr/share/common-licenses (package base-files).

Writes into OUT (standard library only, deterministic):

- licenses-train.jsonl / licenses-val.jsonl: {"text": sentence, "label": license} for
  text classification: which of GPL-3, GFDL-1.3 and MPL-2.0 a sentence comes from (the
  first two share the FSF's vocabulary, so it is not a keyword lookup). At most 100 sentences
  per license; 20% of each license held out.
- gpl3-train.jsonl / gpl3-val.jsonl: {"text": sentence} of the GPL-3 alone, for causal-LM
  fine-tuning (plain text); 20% held out.

Sentences: paragraphs (blank-line separated) with whitespace collapsed, cut after '.', ';'
or ':', kept when 6 to 40 words long, deduplicated in file order.

    python3 tools/license_data.py OUT [--licenses DIR]
"""

import argparse
import json
import random
import re
from pathlib import Path

LABELS = ["GPL-3", "GFDL-1.3", "MPL-2.0"]
PER_LABEL = 100
HELD_OUT = 0.2


def sentences(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    seen, out = set(), []
    for para in re.split(r"\n\s*\n", text):
        para = re.sub(r"\s+", " ", para).strip()
        for s in re.split(r"(?<=[.;:])\s+", para):
            if 6 <= len(s.split()) <= 40 and s not in seen:
                seen.add(s)
                out.append(s)
    return out


def split(items: list, seed: int) -> tuple[list, list]:
    """A seeded 80/20 split; the held-out part keeps file order."""
    idx = list(range(len(items)))
    random.Random(seed).shuffle(idx)
    k = max(1, round(len(items) * HELD_OUT))
    val = sorted(idx[:k])
    train = sorted(idx[k:])
    return [items[i] for i in train], [items[i] for i in val]


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--licenses", type=Path, default=Path("/usr/share/common-licenses"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    train, val = [], []
    for i, label in enumerate(LABELS):
        sents = sentences(a.licenses / label)[:PER_LABEL]
        t, v = split(sents, seed=i)
        train += [{"text": s, "label": label} for s in t]
        val += [{"text": s, "label": label} for s in v]
    # Interleave the training set so a --no-shuffle run does not see one license at a time.
    train = [train[i] for i in random.Random(7).sample(range(len(train)), len(train))]
    write(a.out / "licenses-train.jsonl", train)
    write(a.out / "licenses-val.jsonl", val)
    t, v = split(sentences(a.licenses / "GPL-3"), seed=3)
    write(a.out / "gpl3-train.jsonl", [{"text": s} for s in t])
    write(a.out / "gpl3-val.jsonl", [{"text": s} for s in v])
    print(
        f"license_data: {len(train)} + {len(val)} classification sentences, "
        f"{len(t)} + {len(v)} GPL-3 sentences -> {a.out}"
    )


if __name__ == "__main__":
    main()
