"""Does transformers load what `lmrs train` writes, with the same logits?

Trains each parity case of tests/fixtures/train/ with the lmrs binary (the same settings as
the reference run: dropout 0, file order, logging every step), loads the output folder with
`from_pretrained` (T5ForConditionalGeneration, AutoModelForSequenceClassification,
AutoModelForCausalLM; a LoRA run's adapter folder with `peft.PeftModel.from_pretrained` over
its base), and compares its logits on the first batch with the logits of the model
`Trainer` trained (tests/fixtures/train/<case>.json) and the per-step losses with the
reference log. The classifier's config must also carry the labels (id2label/label2id).

    .venv/bin/python tools/check_train_outputs.py [--lmrs target/release/lmrs]
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import torch
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification,
                          AutoTokenizer, DataCollatorForSeq2Seq, DataCollatorWithPadding,
                          T5ForConditionalGeneration)

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "train"


def first_batch_logits(task, ref, out, tok, rows):
    """The first example's logits of the first batch, as the reference computed them."""
    if task == "summarization":
        if "lora" in ref:
            import peft
            base = T5ForConditionalGeneration.from_pretrained(FIX / ref["model"])
            model = peft.PeftModel.from_pretrained(base, out).eval()
        else:
            model = T5ForConditionalGeneration.from_pretrained(out).eval()
        feats = []
        for r in rows:
            x = tok(ref["source_prefix"] + r["document"], max_length=ref["max_source_length"], truncation=True)
            y = tok(text_target=r["summary"], max_length=ref["max_target_length"], truncation=True)
            feats.append({"input_ids": x["input_ids"], "attention_mask": x["attention_mask"], "labels": y["input_ids"]})
        batch = DataCollatorForSeq2Seq(tok, model=model)(feats)
        return model(**batch).logits[:1].flatten()
    if task == "text-classification":
        model = AutoModelForSequenceClassification.from_pretrained(out).eval()
        assert model.config.id2label == {0: "better", 1: "other"}, model.config.id2label
        assert model.config.label2id == {"better": 0, "other": 1}, model.config.label2id
        feats = [tok(r["document"], max_length=ref["max_length"], truncation=True) for r in rows]
        batch = DataCollatorWithPadding(tok)(feats)
        return model(**batch).logits[:1].flatten()
    if "lora" in ref:
        import peft
        base = AutoModelForCausalLM.from_pretrained(FIX / ref["model"])
        model = peft.PeftModel.from_pretrained(base, out).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(out).eval()
    eos = model.config.eos_token_id
    feats = []
    for r in rows:
        ids = (tok(r["prompt"] + r["completion"])["input_ids"] + [eos])[: ref["max_length"]]
        feats.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    tok.pad_token = tok.pad_token or tok.eos_token
    tok.padding_side = "right"
    batch = tok.pad(feats, return_tensors="pt")
    return model(**batch).logits[:1].flatten()


def check_adapter_generation(lmrs, ref, out, tok, prompt):
    """`lmrs generate --adapter` (merged at load) gives PEFT's greedy tokens."""
    import peft
    base = AutoModelForCausalLM.from_pretrained(FIX / ref["model"])
    model = peft.PeftModel.from_pretrained(base, out).eval()
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = model.generate(input_ids=ids, max_new_tokens=8, min_new_tokens=8,
                              do_sample=False)[0, ids.shape[1]:].tolist()
    p = subprocess.run([lmrs, "generate", "--model", str(FIX / ref["model"]), "--adapter", str(out),
                        "--max-new-tokens", "8", "--min-new-tokens", "8", "--json", prompt],
                       check=True, capture_output=True, text=True)
    got = json.loads(p.stdout.strip().splitlines()[0])["token_ids"]
    print(f"{ref['model']} + lmrs adapter: lmrs generate --adapter {got}, PEFT {want}")
    assert got == want, (got, want)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lmrs", default=str(ROOT / "target" / "debug" / "lmrs"))
    a = ap.parse_args()
    rows = [json.loads(l) for l in (FIX / "zen.jsonl").read_text().splitlines() if l.strip()]
    worst = 0.0
    for ref_file in sorted(FIX.glob("*.json")):
        ref = json.loads(ref_file.read_text())
        if "args" not in ref:
            continue  # not a training run (chat-tokens.json)
        args = ref["args"]
        model_dir = FIX / ref["model"]
        if ref["model"].startswith("t5"):
            task = ["--task", "summarization", "--source-prefix", ref["source_prefix"],
                    "--max-source-length", str(ref["max_source_length"]),
                    "--max-target-length", str(ref["max_target_length"])]
        elif ref["model"].startswith("bert"):
            task = ["--task", "text-classification", "--input-field", "document",
                    "--max-source-length", str(ref["max_length"])]
        else:
            task = ["--task", "causal-lm", "--input-field", "prompt", "--target-field", "completion",
                    "--max-source-length", str(ref["max_length"])]
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) / "run"
            cmd = [a.lmrs, "train", "--model", str(model_dir), "--train", str(FIX / "zen.jsonl"),
                   "--output", str(out), "--no-shuffle", "--dropout", "0", "--logging-steps", "1",
                   "--save-strategy", "no", *task]
            for k, v in args.items():
                cmd += ["--" + k.replace("_", "-"), str(v)]
            if "lora" in ref:  # start from the adapter PEFT initialized, as the reference did
                cmd += ["--adapter", str(FIX / ref["adapter"])]
            subprocess.run(cmd, check=True, capture_output=True)
            tok = AutoTokenizer.from_pretrained(out)
            n = args["per_device_train_batch_size"]
            with torch.no_grad():
                logits = first_batch_logits(task[1], ref, out, tok, rows[:n])
            want = torch.tensor(ref["trained_logits_first_batch"]["values"])
            diff = float((logits - want).abs().max())
            scale = float(want.abs().max())
            ours = [e["loss"] for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]
            theirs = [e["loss"] for e in ref["log_history"] if "loss" in e]
            loss_rel = max(abs(o - t) / abs(t) for o, t in zip(ours, theirs))
            print(f"{ref_file.stem}: transformers loads the lmrs output; logits max |diff| {diff:.2e} "
                  f"(max |logit| {scale:.2f}); per-step loss worst relative error {loss_rel:.2e} over {len(ours)} steps")
            worst = max(worst, diff / scale)
            if "lora" in ref and task[1] == "causal-lm":
                check_adapter_generation(a.lmrs, ref, out, tok, rows[0]["prompt"])
            assert len(ours) == len(theirs) and loss_rel < 1e-4
    if worst > 1e-4:
        print(f"FAIL: logits differ by {worst:.2e} of their scale", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
