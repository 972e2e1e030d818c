"""Reference training runs for lmrs-train's parity tests (tests/fixtures/train/).

Runs transformers' Seq2SeqTrainer on the tiny T5 fixtures with dropout 0 and a sequential
sampler (lmrs's --no-shuffle), logging every step, and writes per case:
  <case>.json: the arguments, every log_history entry, the logits of the trained model on
               the first batch, and the gradient of every parameter after the first
               micro-batch (as sums and L2 norms, plus a few values per tensor).

The dataset (zen.jsonl) is built from the Zen of Python (`import this`, shipped with every
CPython): document = one aphorism, summary = its first four words.

    .venv/bin/python tools/gen_train_references.py   # pinned versions: tools/requirements.txt
"""
import codecs
import json
import pathlib
import sys

import torch
import transformers
from torch.utils.data import SequentialSampler
from transformers import (AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainer,
                          Seq2SeqTrainingArguments, T5ForConditionalGeneration)

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "train"

# Models made here with transformers' own initialization (initializer_factor 1.0): the
# inference fixtures are tuned for confident generations (losses near 100), where a float
# rounding in the logits moves gradients by 5e-4; a freshly initialized model trains from a
# loss near ln(vocab) as real fine-tuning does.
MODELS = {
    "t5-v1_0-train": dict(feed_forward_proj="relu", tie_word_embeddings=True),
    "t5-v1_1-train": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}

CASES = {
    # T5 v1.0 (relu, tied): linear schedule with warmup, weight decay, clipping at 1.0.
    "t5-v1_0-linear-decay": dict(model="t5-v1_0-train", args=dict(
        learning_rate=1e-3, weight_decay=0.01, warmup_steps=5, max_grad_norm=1.0,
        per_device_train_batch_size=4, gradient_accumulation_steps=1, max_steps=20,
        lr_scheduler_type="linear")),
    # T5 v1.1 (gated-gelu, untied): cosine with a warmup ratio, label smoothing, accumulation
    # over 2 micro-batches (token-weighted through the LabelSmoother), tight clipping.
    "t5-v1_1-cosine-smooth-accum": dict(model="t5-v1_1-train", args=dict(
        learning_rate=2e-3, weight_decay=0.1, warmup_steps=0.1, max_grad_norm=0.5,
        per_device_train_batch_size=3, gradient_accumulation_steps=2, max_steps=20,
        lr_scheduler_type="cosine", label_smoothing_factor=0.1)),
}
MAX_SOURCE, MAX_TARGET, PREFIX = 24, 8, "summarize: "


def _zen_source():
    """`this.s` without the print that importing `this` does."""
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return this.s


def dataset():
    zen = codecs.decode(_zen_source(), "rot13").splitlines()
    rows = [{"document": l, "summary": " ".join(l.split()[:4])} for l in zen[2:] if l.strip()]
    path = OUT / "zen.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


class Sequential(Seq2SeqTrainer):
    def _get_train_sampler(self, *a, **k):
        return SequentialSampler(self.train_dataset)


def make_models():
    tok_dir = FIX / "t5-v1_0-tiny"
    tok = AutoTokenizer.from_pretrained(tok_dir)
    for i, (name, kw) in enumerate(MODELS.items()):
        torch.manual_seed(100 + i)
        cfg = transformers.T5Config(vocab_size=len(tok), d_model=64, d_kv=16, d_ff=128,
                                    num_layers=2, num_decoder_layers=2, num_heads=4,
                                    relative_attention_num_buckets=32,
                                    relative_attention_max_distance=64, dropout_rate=0.1,
                                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                                    **kw)
        model = T5ForConditionalGeneration(cfg)
        if not kw["tie_word_embeddings"]:
            # transformers 5 always ties T5's output layer: give the v1.1 model its own head
            # (std d_model^-0.5, so the unscaled logits start near a uniform guess) and stop
            # treating it as tied, so save_pretrained writes lm_head.weight.
            w = torch.randn(len(tok), cfg.d_model) * cfg.d_model ** -0.5
            model.lm_head.weight = torch.nn.Parameter(w)
            model.all_tied_weights_keys.pop("lm_head.weight", None)
        out = OUT / name
        model.save_pretrained(out)
        tok.save_pretrained(out)
        # Real checkpoints say `tie_word_embeddings` alone (transformers 5 writes
        # `scale_decoder_outputs` too); that is what a v1.1 checkpoint needs to load untied.
        c = json.loads((out / "config.json").read_text())
        c.pop("scale_decoder_outputs", None)
        c["tie_word_embeddings"] = kw["tie_word_embeddings"]
        (out / "config.json").write_text(json.dumps(dict(sorted(c.items())), indent=2) + "\n")


def run(name, case, rows):
    folder = OUT / case["model"]
    tok = AutoTokenizer.from_pretrained(folder)
    model = T5ForConditionalGeneration.from_pretrained(folder, dropout_rate=0.0)
    feats = []
    for r in rows:
        x = tok(PREFIX + r["document"], max_length=MAX_SOURCE, truncation=True)
        y = tok(text_target=r["summary"], max_length=MAX_TARGET, truncation=True)
        feats.append({"input_ids": x["input_ids"], "attention_mask": x["attention_mask"],
                      "labels": y["input_ids"]})
    collator = DataCollatorForSeq2Seq(tok, model=model)
    first = collator(feats[:case["args"]["per_device_train_batch_size"]])

    # Gradients after one micro-batch of the untouched model (plain CE, mean over tokens).
    out = model(**first)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    grad_ref = {n: {"sum": float(g.sum()), "norm": float(g.norm()),
                    "head": [float(v) for v in g.flatten()[:8]]} for n, g in grads.items()}

    args = Seq2SeqTrainingArguments(output_dir=f"/tmp/lmrs-train-ref/{name}", logging_steps=1,
                                    save_strategy="no", report_to=[], seed=42,
                                    dataloader_drop_last=False, **case["args"])
    trainer = Sequential(model=model, args=args, train_dataset=feats, data_collator=collator)
    trainer.train()
    model.eval()
    with torch.no_grad():
        logits = model(**first).logits
    return {
        "model": case["model"], "args": case["args"], "max_source_length": MAX_SOURCE,
        "max_target_length": MAX_TARGET, "source_prefix": PREFIX,
        "log_history": trainer.state.log_history,
        "first_batch_loss": float(out.loss),
        "grads": grad_ref,
        # The first example's logits (all decoder positions): enough to compare weights.
        "trained_logits_first_batch": {"shape": list(logits[:1].shape),
                                       "values": [float(v) for v in logits[:1].flatten()]},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rows = dataset()
    make_models()
    torch.manual_seed(0)
    for name, case in CASES.items():
        ref = run(name, case, rows)
        (OUT / f"{name}.json").write_text(json.dumps(ref, indent=1) + "\n")
        print(name, [round(e["loss"], 4) for e in ref["log_history"] if "loss" in e][:5], file=sys.stderr)


if __name__ == "__main__":
    main()
