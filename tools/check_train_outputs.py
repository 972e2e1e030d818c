"""Does transformers load what `lmrs train` writes, with the same logits?

Trains each parity case of tests/fixtures/train/ with the lmrs binary (the same settings as
the reference run: dropout 0, file order, logging every step), loads the output folder with
`T5ForConditionalGeneration.from_pretrained`, and compares its logits on the first batch with
the logits of the model `Seq2SeqTrainer` trained (tests/fixtures/train/<case>.json) and the
per-step losses with the reference log.

    .venv/bin/python tools/check_train_outputs.py [--lmrs target/release/lmrs]
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import torch
from transformers import AutoTokenizer, DataCollatorForSeq2Seq, T5ForConditionalGeneration

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "train"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lmrs", default=str(ROOT / "target" / "debug" / "lmrs"))
    a = ap.parse_args()
    rows = [json.loads(l) for l in (FIX / "zen.jsonl").read_text().splitlines() if l.strip()]
    worst = 0.0
    for ref_file in sorted(FIX.glob("t5-*.json")):
        ref = json.loads(ref_file.read_text())
        args = ref["args"]
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) / "run"
            cmd = [a.lmrs, "train", "--task", "summarization", "--model", str(FIX / ref["model"]),
                   "--train", str(FIX / "zen.jsonl"), "--output", str(out), "--no-shuffle",
                   "--dropout", "0", "--logging-steps", "1", "--save-strategy", "no",
                   "--source-prefix", ref["source_prefix"],
                   "--max-source-length", str(ref["max_source_length"]),
                   "--max-target-length", str(ref["max_target_length"])]
            for k, v in args.items():
                cmd += ["--" + k.replace("_", "-"), str(v)]
            subprocess.run(cmd, check=True, capture_output=True)
            tok = AutoTokenizer.from_pretrained(out)
            model = T5ForConditionalGeneration.from_pretrained(out).eval()
            feats = []
            for r in rows[: args["per_device_train_batch_size"]]:
                x = tok(ref["source_prefix"] + r["document"], max_length=ref["max_source_length"], truncation=True)
                y = tok(text_target=r["summary"], max_length=ref["max_target_length"], truncation=True)
                feats.append({"input_ids": x["input_ids"], "attention_mask": x["attention_mask"], "labels": y["input_ids"]})
            batch = DataCollatorForSeq2Seq(tok, model=model)(feats)
            with torch.no_grad():
                logits = model(**batch).logits[:1].flatten()
            want = torch.tensor(ref["trained_logits_first_batch"]["values"])
            diff = float((logits - want).abs().max())
            scale = float(want.abs().max())
            ours = [e["loss"] for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]
            theirs = [e["loss"] for e in ref["log_history"] if "loss" in e]
            loss_rel = max(abs(o - t) / abs(t) for o, t in zip(ours, theirs))
            print(f"{ref_file.stem}: transformers loads the lmrs output; logits max |diff| {diff:.2e} "
                  f"(max |logit| {scale:.1f}); per-step loss worst relative error {loss_rel:.2e} over {len(ours)} steps")
            worst = max(worst, diff / scale)
            assert len(ours) == len(theirs) and loss_rel < 1e-4
    if worst > 1e-4:
        print(f"FAIL: logits differ by {worst:.2e} of their scale", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
