"""Training throughput and peak memory: `lmrs train` against transformers' Seq2SeqTrainer on
the same machine, threads, data and model shape, alternating engines.

Shapes (issue 13), fp32, models random (made here with transformers' initialization; no hub),
text the Zen of Python repeated so every input is cut at the limit:
- `--shape t5-small` (default): d_model 512, 6+6 layers, 8 heads, d_ff 2048, vocab 32128;
  batch 8, 256-token inputs, 64-token targets; Seq2SeqTrainer. Reports target tokens/s
  (labels per second of training, excluding load).
- `--shape distilbert`: a DistilBERT-base-shaped classifier (dim 768, 6 layers, 12 heads,
  hidden 3072, vocab 30522, 2 labels), batch 16 x 128 tokens; Trainer. Reports examples/s and
  input tokens/s.

Both with peak RSS of each process, best of --rounds, engines alternating.

    .venv/bin/python tools/bench_train.py --steps 6 --threads 2 --rounds 2
    .venv/bin/python tools/bench_train.py --shape distilbert --steps 6 --threads 2 --rounds 2
"""
import argparse
import codecs
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
SRC_LEN, TGT_LEN = 256, 64  # --source-len / --target-len change them


def _zen_source():
    """`this.s` without the print that importing `this` does."""
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return this.s


def make_model(out):
    import torch
    import transformers
    torch.manual_seed(0)
    cfg = transformers.T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                                num_heads=8, dropout_rate=0.1, decoder_start_token_id=0,
                                pad_token_id=0, eos_token_id=1)
    transformers.T5ForConditionalGeneration(cfg).save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(FIX / "t5-v1_0-tiny").save_pretrained(out)
    c = json.loads((out / "config.json").read_text())
    c.pop("scale_decoder_outputs", None)
    c["tie_word_embeddings"] = True
    (out / "config.json").write_text(json.dumps(c, indent=2))


CLS_LEN, CLS_BATCH = 128, 16


def make_classifier(out):
    import torch
    import transformers
    torch.manual_seed(0)
    cfg = transformers.DistilBertConfig(vocab_size=30522, dim=768, n_layers=6, n_heads=12,
                                        hidden_dim=3072, max_position_embeddings=512,
                                        id2label={0: "better", 1: "other"},
                                        label2id={"better": 0, "other": 1})
    transformers.DistilBertForSequenceClassification(cfg).save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(FIX / "distilbert-tiny-cls").save_pretrained(out)


def make_cls_data(path, n):
    zen = [l for l in codecs.decode(_zen_source(), "rot13").splitlines()[2:] if l.strip()]
    rows = [{"text": " ".join(zen[(i + j) % len(zen)] for j in range(40)),
             "label": "better" if "better" in zen[i % len(zen)] else "other"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


PY_CLS_WORKER = r'''
import json, sys, time, torch, transformers
from torch.utils.data import SequentialSampler
model_dir, data, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
tok = transformers.AutoTokenizer.from_pretrained(model_dir)
model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir, dropout=0.0,
    attention_dropout=0.0, seq_classif_dropout=0.0)
rows = [json.loads(l) for l in open(data)]
feats = [dict(tok(r["text"], max_length=%d, truncation=True), labels=model.config.label2id[r["label"]])
         for r in rows]
class T(transformers.Trainer):
    def _get_train_sampler(self, *a, **k):
        return SequentialSampler(self.train_dataset)
args = transformers.TrainingArguments(output_dir="/tmp/bench-train-py", max_steps=steps,
    per_device_train_batch_size=%d, logging_steps=1, save_strategy="no", report_to=[],
    dataloader_num_workers=0, learning_rate=1e-4)
tr = T(model=model, args=args, train_dataset=feats, data_collator=transformers.DataCollatorWithPadding(tok))
t0 = time.time(); tr.train(); dt = time.time() - t0
n = steps * %d
print(json.dumps({"seconds": dt, "examples": n, "tokens": sum(len(f["input_ids"]) for f in feats[:n])}))
''' % (CLS_LEN, CLS_BATCH, CLS_BATCH)


def classifier_bench(a, tmp, env):
    """The DistilBERT-shaped classifier: examples/s and input tokens/s, peak RSS."""
    model = tmp / "distilbert-random"
    make_classifier(model)
    data = tmp / "cls.jsonl"
    make_cls_data(data, a.steps * CLS_BATCH)
    tokens = None
    results = {"lmrs": [], "transformers": []}
    for r in range(a.rounds):
        out = tmp / f"lmrs-cls-{r}"
        stdout, rss, wall = run_measured([a.lmrs, "train", "--task", "text-classification",
                                          "--model", str(model), "--train", str(data),
                                          "--output", str(out), "--no-shuffle", "--dropout", "0",
                                          "--max-steps", str(a.steps),
                                          "--per-device-train-batch-size", str(CLS_BATCH),
                                          "--learning-rate", "1e-4",
                                          "--max-source-length", str(CLS_LEN),
                                          "--logging-steps", "1", "--save-strategy", "no",
                                          "--json"], env)
        eps = json.loads(stdout)["summary"]["train_samples_per_second"]
        results["lmrs"].append((eps, rss))
        print(f"round {r} lmrs: {eps:.2f} examples/s, peak RSS {rss:.0f} MiB (wall {wall:.1f} s)", file=sys.stderr)
        if a.only_lmrs:
            continue
        stdout, rss, wall = run_measured([sys.executable, "-c", PY_CLS_WORKER, str(model), str(data),
                                          str(a.steps), str(a.threads)], env)
        res = json.loads(stdout.strip().splitlines()[-1])
        tokens = res["tokens"] / res["examples"]
        eps = res["examples"] / res["seconds"]
        results["transformers"].append((eps, rss))
        print(f"round {r} transformers: {eps:.2f} examples/s, peak RSS {rss:.0f} MiB (wall {wall:.1f} s)", file=sys.stderr)
    best = {k: (max(t for t, _ in v), min(m for _, m in v)) for k, v in results.items() if v}
    report = {"shape": f"distilbert-base classifier fp32 b{CLS_BATCH}x{CLS_LEN}", "steps": a.steps,
              "threads": a.threads,
              "lmrs": {"examples_per_s": best["lmrs"][0], "peak_rss_mib": best["lmrs"][1]}}
    if not a.only_lmrs:
        report["transformers"] = {"examples_per_s": best["transformers"][0],
                                  "peak_rss_mib": best["transformers"][1]}
        report["input_tokens_per_example"] = tokens
        report["throughput_ratio"] = best["lmrs"][0] / best["transformers"][0]
        report["rss_ratio"] = best["lmrs"][1] / best["transformers"][1]
    print(json.dumps(report, indent=1))


def make_data(path, n):
    zen = [l for l in codecs.decode(_zen_source(), "rot13").splitlines()[2:] if l.strip()]
    rows = []
    for i in range(n):
        doc = " ".join(zen[(i + j) % len(zen)] for j in range(120))
        rows.append({"document": doc, "summary": " ".join(zen[(i + j) % len(zen)] for j in range(8))})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


PY_WORKER = r'''
import json, sys, time, torch, transformers
from torch.utils.data import SequentialSampler
model_dir, data, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
tok = transformers.AutoTokenizer.from_pretrained(model_dir)
model = transformers.T5ForConditionalGeneration.from_pretrained(model_dir, dropout_rate=0.0)
rows = [json.loads(l) for l in open(data)]
feats = []
for r in rows:
    x = tok(r["document"], max_length=%d, truncation=True)
    y = tok(text_target=r["summary"], max_length=%d, truncation=True)
    feats.append({"input_ids": x["input_ids"], "attention_mask": x["attention_mask"], "labels": y["input_ids"]})
class T(transformers.Seq2SeqTrainer):
    def _get_train_sampler(self, *a, **k):
        return SequentialSampler(self.train_dataset)
args = transformers.Seq2SeqTrainingArguments(output_dir="/tmp/bench-train-py", max_steps=steps,
    per_device_train_batch_size=8, logging_steps=1, save_strategy="no", report_to=[],
    dataloader_num_workers=0, learning_rate=1e-4)
tr = T(model=model, args=args, train_dataset=feats, data_collator=transformers.DataCollatorForSeq2Seq(tok, model=model))
t0 = time.time(); tr.train(); dt = time.time() - t0
print(json.dumps({"seconds": dt, "target_tokens": sum(len(f["labels"]) for f in feats[: steps * 8])}))
''' % (SRC_LEN, TGT_LEN)


def peak_rss_mib(ru_before, ru_after):
    return ru_after.ru_maxrss / 1024


def run_measured(cmd, env):
    t0 = time.time()
    p = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M"] + cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    rss = [int(l.split()[1]) for l in p.stderr.splitlines() if l.startswith("MAXRSS")][-1] / 1024
    return p.stdout, rss, time.time() - t0


def main():
    global SRC_LEN, TGT_LEN, PY_WORKER
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--lmrs", default=str(ROOT / "target" / "release" / "lmrs"))
    ap.add_argument("--source-len", type=int, default=SRC_LEN)
    ap.add_argument("--target-len", type=int, default=TGT_LEN)
    ap.add_argument("--only-lmrs", action="store_true", help="skip transformers (memory checks)")
    ap.add_argument("--shape", choices=["t5-small", "distilbert"], default="t5-small")
    a = ap.parse_args()
    if a.shape == "distilbert":
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-train-"))
        env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads),
                   CANDLE_NUM_THREADS=str(a.threads), HF_HUB_OFFLINE="1")
        return classifier_bench(a, tmp, env)
    PY_WORKER = PY_WORKER.replace("max_length=%d" % SRC_LEN, "max_length=%d" % a.source_len, 1)
    PY_WORKER = PY_WORKER.replace("max_length=%d" % TGT_LEN, "max_length=%d" % a.target_len, 1)
    SRC_LEN, TGT_LEN = a.source_len, a.target_len
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-train-"))
    model = tmp / "t5-small-random"
    make_model(model)
    data = tmp / "data.jsonl"
    make_data(data, a.steps * 8)
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads),
               CANDLE_NUM_THREADS=str(a.threads), HF_HUB_OFFLINE="1")
    results = {"lmrs": [], "transformers": []}
    for r in range(a.rounds):
        out = tmp / f"lmrs-{r}"
        stdout, rss, wall = run_measured([a.lmrs, "train", "--task", "text2text", "--model", str(model),
                                          "--train", str(data), "--output", str(out), "--no-shuffle",
                                          "--dropout", "0", "--max-steps", str(a.steps),
                                          "--per-device-train-batch-size", "8", "--learning-rate", "1e-4",
                                          "--max-source-length", str(SRC_LEN), "--max-target-length", str(TGT_LEN),
                                          "--logging-steps", "1", "--save-strategy", "no", "--json"], env)
        summary = json.loads(stdout)["summary"]
        tps = summary["train_tokens_per_second"]
        results["lmrs"].append((tps, rss))
        print(f"round {r} lmrs: {tps:.1f} target tok/s, peak RSS {rss:.0f} MiB (wall {wall:.1f} s)", file=sys.stderr)
        if a.only_lmrs:
            continue
        stdout, rss, wall = run_measured([sys.executable, "-c", PY_WORKER, str(model), str(data), str(a.steps), str(a.threads)], env)
        res = json.loads(stdout.strip().splitlines()[-1])
        tps = res["target_tokens"] / res["seconds"]
        results["transformers"].append((tps, rss))
        print(f"round {r} transformers: {tps:.1f} target tok/s, peak RSS {rss:.0f} MiB (wall {wall:.1f} s)", file=sys.stderr)
    best = {k: (max(t for t, _ in v), min(m for _, m in v)) for k, v in results.items() if v}
    if a.only_lmrs:
        print(json.dumps({"shape": f"t5-small fp32 b8 {SRC_LEN}->{TGT_LEN}", "lmrs": best["lmrs"]}))
        return
    print(json.dumps({"shape": "t5-small fp32 b8 256->64", "steps": a.steps, "threads": a.threads,
                      "lmrs": {"target_tokens_per_s": best["lmrs"][0], "peak_rss_mib": best["lmrs"][1]},
                      "transformers": {"target_tokens_per_s": best["transformers"][0], "peak_rss_mib": best["transformers"][1]},
                      "throughput_ratio": best["lmrs"][0] / best["transformers"][0],
                      "rss_ratio": best["lmrs"][1] / best["transformers"][1]}, indent=1))


if __name__ == "__main__":
    main()
