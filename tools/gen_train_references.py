"""Reference training runs for lmrs-train's parity tests (tests/fixtures/train/).

Runs transformers' Seq2SeqTrainer on tiny T5 models and Trainer on a tiny BERT classifier, a
tiny Llama, a tiny GPT-2 and a tiny Gemma 3, with dropout 0 and a sequential sampler (lmrs's --no-shuffle), logging every
step, and writes per case:
  <case>.json: the arguments, every log_history entry, the logits of the trained model on
               the first batch, and the gradient of every parameter after the first
               micro-batch (as sums and L2 norms, plus a few values per tensor).

The dataset (zen.jsonl) is built from the Zen of Python (`import this`, shipped with every
CPython): document = one aphorism, summary = its first four words, label = "better" when the
aphorism says "better", else "other" (the classifier's task), prompt/completion = the first
four words and the rest (the causal LM's task, loss on the completion only).

    .venv/bin/python tools/gen_train_references.py   # pinned versions: tools/requirements.txt
    .venv/bin/python tools/gen_train_references.py gpt2-completion-accum   # only these cases
                                          # (and their models), the other files untouched
"""
import codecs
import json
import pathlib
import sys

import torch
import transformers
from torch.utils.data import SequentialSampler
from transformers import (AutoModelForCausalLM, AutoTokenizer, BertForSequenceClassification,
                          DataCollatorForSeq2Seq, DataCollatorWithPadding, Gemma3ForCausalLM,
                          GPT2LMHeadModel, LlamaForCausalLM, Seq2SeqTrainer,
                          Seq2SeqTrainingArguments, T5ForConditionalGeneration, Trainer,
                          TrainingArguments)

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
LABELS = ["better", "other"]

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
    # BERT classifier: linear warmup, weight decay, clipping, accumulation over 2 micro-batches
    # with label smoothing (the LabelSmoother divides by the step's example count; plain CE
    # with accumulation is the Trainer's per-micro-batch mean summed, see lmrs-train's loss
    # docs).
    "bert-cls-smooth-accum": dict(model="bert-train", args=dict(
        learning_rate=1e-3, weight_decay=0.01, warmup_steps=3, max_grad_norm=1.0,
        per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=20,
        lr_scheduler_type="linear", label_smoothing_factor=0.1)),
    # Llama: prompt/completion (loss on the completion), constant_with_warmup, weight decay,
    # tight clipping, accumulation over 2 micro-batches (token-weighted: LlamaForCausalLM's
    # loss takes num_items_in_batch, counted over labels[..., 1:]).
    "llama-completion-accum": dict(model="llama-train", args=dict(
        learning_rate=3e-3, weight_decay=0.05, warmup_steps=4, max_grad_norm=0.5,
        per_device_train_batch_size=3, gradient_accumulation_steps=2, max_steps=20,
        lr_scheduler_type="constant_with_warmup")),
    # GPT-2 (Conv1D projections stored (in, out), tied head, learned positions): linear decay
    # with warmup, weight decay (not on LayerNorms or biases), clipping, accumulation over 2
    # micro-batches (token-weighted, GPT2LMHeadModel's loss takes num_items_in_batch).
    "gpt2-completion-accum": dict(model="gpt2-train", args=dict(
        learning_rate=3e-3, weight_decay=0.05, warmup_steps=3, max_grad_norm=1.0,
        per_device_train_batch_size=3, gradient_accumulation_steps=2, max_steps=20,
        lr_scheduler_type="linear")),
    # Gemma 3 (1 + w norms, q/k norms, sliding-window layers with a window of 8 < the 24-token
    # sequences, final logit soft-capping, tied scaled embeddings): cosine schedule, weight
    # decay, tight clipping, accumulation over 2 micro-batches. (No label smoothing: in
    # transformers 5.23 the Trainer's LabelSmoother fails on causal LMs, shifting the logits
    # but not the labels.)
    "gemma3-completion-cosine": dict(model="gemma3-train", args=dict(
        learning_rate=3e-3, weight_decay=0.05, warmup_steps=0.1, max_grad_norm=0.5,
        per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=20,
        lr_scheduler_type="cosine")),
    # LoRA (PEFT) on the tiny Llama: r 4, alpha 8 on q_proj and v_proj, the base frozen; the
    # initial adapter (A Kaiming-uniform from torch's generator, B zero) is saved beside the
    # reference (llama-lora-init/) so lmrs starts from the same one (--adapter). Linear decay,
    # weight decay on the adapters, clipping, accumulation over 2 micro-batches.
    "llama-lora": dict(model="llama-train", lora=dict(r=4, lora_alpha=8, lora_dropout=0.0,
                                                      target_modules=["q_proj", "v_proj"]),
                       args=dict(learning_rate=5e-3, weight_decay=0.01, warmup_steps=2,
                                 max_grad_norm=1.0, per_device_train_batch_size=3,
                                 gradient_accumulation_steps=2, max_steps=20,
                                 lr_scheduler_type="linear")),
    # LoRA (PEFT) on the tiny T5 v1.0: PEFT's T5 default targets q and v, r 4, alpha 16,
    # rsLoRA scaling; cosine schedule with label smoothing (Seq2SeqTrainer's LabelSmoother).
    "t5-lora": dict(model="t5-v1_0-train", lora=dict(r=4, lora_alpha=16, lora_dropout=0.0,
                                                     target_modules=["q", "v"], use_rslora=True),
                    args=dict(learning_rate=5e-3, weight_decay=0.0, warmup_steps=2,
                              max_grad_norm=1.0, per_device_train_batch_size=4,
                              gradient_accumulation_steps=1, max_steps=20,
                              lr_scheduler_type="cosine", label_smoothing_factor=0.1)),
}
MAX_LENGTH = 24  # classifier inputs and causal sequences
MAX_SOURCE, MAX_TARGET, PREFIX = 24, 8, "summarize: "


def _zen_source():
    """`this.s` without the print that importing `this` does."""
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return this.s


def dataset():
    zen = codecs.decode(_zen_source(), "rot13").splitlines()
    rows = []
    for l in zen[2:]:
        if not l.strip():
            continue
        words = l.split()
        rows.append({"document": l, "summary": " ".join(words[:4]),
                     "label": LABELS[0] if "better" in l else LABELS[1],
                     "prompt": " ".join(words[:4]), "completion": " " + " ".join(words[4:])})
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


def make_encoder_and_decoder():
    """A fresh BERT classifier and a fresh Llama, with the tokenizers of the inference fixtures."""
    torch.manual_seed(200)
    tok = AutoTokenizer.from_pretrained(FIX / "bert-tiny-cls")
    cfg = transformers.BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=128,
                                  max_position_embeddings=64, hidden_dropout_prob=0.1,
                                  attention_probs_dropout_prob=0.1, pad_token_id=0,
                                  id2label=dict(enumerate(LABELS)),
                                  label2id={l: i for i, l in enumerate(LABELS)})
    out = OUT / "bert-train"
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    torch.manual_seed(201)
    tok = AutoTokenizer.from_pretrained(FIX / "llama-tiny")
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                                   bos_token_id=0, eos_token_id=0, tie_word_embeddings=False)
    out = OUT / "llama-train"
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)


def make_gpt2_and_gemma3():
    """A fresh GPT-2 and a fresh Gemma 3 with the configs and tokenizers of the inference
    fixtures (Gemma 3 also soft-caps its final logits, to exercise that backward)."""
    for seed, name, cls, extra in [
        (202, "gpt2", GPT2LMHeadModel, {}),
        (203, "gemma3", Gemma3ForCausalLM, {"final_logit_softcapping": 30.0}),
    ]:
        torch.manual_seed(seed)
        tok = AutoTokenizer.from_pretrained(FIX / f"{name}-tiny")
        cfg = transformers.AutoConfig.from_pretrained(FIX / f"{name}-tiny", **extra)
        out = OUT / f"{name}-train"
        cls(cfg).save_pretrained(out)
        tok.save_pretrained(out)


def first_batch_gradients(model, first):
    """The loss of one micro-batch of the untouched model (its own loss: plain CE, mean over
    counted tokens) and each parameter's gradient of it: sum, norm and first 8 values."""
    out = model(**first)
    out.loss.backward()
    # PEFT's parameter names without its wrapper prefix and adapter name: the checkpoint-style
    # keys lmrs gives its adapter variables (model.layers.0.self_attn.q_proj.lora_A.weight).
    peft_key = lambda n: n.removeprefix("base_model.model.").replace(".default.", ".")
    grads = {peft_key(n): p.grad.detach().clone()
             for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return float(out.loss), {n: {"sum": float(g.sum()), "norm": float(g.norm()),
                                 "head": [float(v) for v in g.flatten()[:8]]}
                             for n, g in grads.items()}


def classifier_features(tok, rows):
    return [dict(tok(r["document"], max_length=MAX_LENGTH, truncation=True),
                 labels=LABELS.index(r["label"])) for r in rows]


def completion_features(tok, rows, eos):
    """TRL's prompt/completion layout: prompt + completion + EOS, labels -100 on the prompt."""
    feats = []
    for r in rows:
        p = tok(r["prompt"])["input_ids"]
        ids = tok(r["prompt"] + r["completion"])["input_ids"] + [eos]
        ids = ids[:MAX_LENGTH]
        labels = ([-100] * len(p) + ids[len(p):])[:len(ids)]  # a prompt longer than the cut
        feats.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return feats


class SequentialTrainer(Trainer):
    def _get_train_sampler(self, *a, **k):
        return SequentialSampler(self.train_dataset)


def with_lora(name, case, model, task_type):
    """The PEFT model of a LoRA case (seeded), its initial adapter saved as `<name>-init/` so
    lmrs starts from the same one; other cases pass through."""
    if "lora" not in case:
        return model
    import peft
    torch.manual_seed(300)
    model = peft.get_peft_model(model, peft.LoraConfig(task_type=task_type, **case["lora"]))
    init = OUT / f"{name}-init"
    model.save_pretrained(init)
    (init / "README.md").unlink(missing_ok=True)  # PEFT's model-card template
    c = json.loads((init / "adapter_config.json").read_text())
    c["base_model_name_or_path"] = case["model"]  # not this machine's path
    c["target_modules"] = sorted(c["target_modules"])  # a set in PEFT: a stable order
    (init / "adapter_config.json").write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")
    return model


def run_other(name, case, rows):
    """The classifier and causal cases: Trainer on the features built as lmrs builds them."""
    folder = OUT / case["model"]
    tok = AutoTokenizer.from_pretrained(folder)
    if case["model"] == "bert-train":
        model = BertForSequenceClassification.from_pretrained(
            folder, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        feats = classifier_features(tok, rows)
        collator = DataCollatorWithPadding(tok)
    else:
        # No dropout in the reference (GPT-2's default is 0.1); eager attention for GPT-2 and
        # Gemma 3 (Gemma's recommendation for training; the Llama reference was made with
        # the default sdpa, which computes the same within rounding).
        kw = {} if case["model"] == "llama-train" else {"attn_implementation": "eager"}
        if case["model"] == "gpt2-train":
            kw.update(embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
        model = AutoModelForCausalLM.from_pretrained(folder, **kw)
        model = with_lora(name, case, model, "CAUSAL_LM")
        tok.pad_token = tok.pad_token or tok.eos_token
        tok.padding_side = "right"
        feats = completion_features(tok, rows, model.config.eos_token_id)
        collator = DataCollatorForSeq2Seq(tok)  # pads labels with -100
    return reference(name, case, model, feats, collator, SequentialTrainer, TrainingArguments,
                     {"max_length": MAX_LENGTH})


def run(name, case, rows):
    if not case["model"].startswith("t5"):
        return run_other(name, case, rows)
    folder = OUT / case["model"]
    tok = AutoTokenizer.from_pretrained(folder)
    model = T5ForConditionalGeneration.from_pretrained(folder, dropout_rate=0.0)
    model = with_lora(name, case, model, "SEQ_2_SEQ_LM")
    feats = []
    for r in rows:
        x = tok(PREFIX + r["document"], max_length=MAX_SOURCE, truncation=True)
        y = tok(text_target=r["summary"], max_length=MAX_TARGET, truncation=True)
        feats.append({"input_ids": x["input_ids"], "attention_mask": x["attention_mask"],
                      "labels": y["input_ids"]})
    collator = DataCollatorForSeq2Seq(tok, model=model)
    return reference(name, case, model, feats, collator, Sequential, Seq2SeqTrainingArguments,
                     {"max_source_length": MAX_SOURCE, "max_target_length": MAX_TARGET,
                      "source_prefix": PREFIX})


def reference(name, case, model, feats, collator, trainer_class, args_class, extra):
    """Gradients of the first micro-batch, then 20 logged steps of `trainer_class` in file
    order, then the trained model's logits on that batch (its first example: every position,
    enough to compare weights)."""
    first = collator(feats[:case["args"]["per_device_train_batch_size"]])
    loss, grad_ref = first_batch_gradients(model, first)
    args = args_class(output_dir=f"/tmp/lmrs-train-ref/{name}", logging_steps=1,
                      save_strategy="no", report_to=[], seed=42,
                      dataloader_drop_last=False, **case["args"])
    trainer = trainer_class(model=model, args=args, train_dataset=feats, data_collator=collator)
    trainer.train()
    model.eval()
    with torch.no_grad():
        # T5 needs the labels for its decoder inputs; the others take none.
        inputs = first if model.config.is_encoder_decoder else {
            k: v for k, v in first.items() if k != "labels"}
        logits = model(**inputs).logits
    return {
        "model": case["model"], "args": case["args"], **extra,
        **({"lora": case["lora"], "adapter": f"{name}-init"} if "lora" in case else {}),
        "log_history": trainer.state.log_history,
        "first_batch_loss": loss,
        "grads": grad_ref,
        "trained_logits_first_batch": {"shape": list(logits[:1].shape),
                                       "values": [float(v) for v in logits[:1].flatten()]},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     **({"peft": __import__("peft").__version__} if "lora" in case else {})},
    }


def chat_tokens(rows):
    """What lmrs's conversational data must tokenize to: `apply_chat_template` of a
    user/assistant pair built from each Zen row (the whole conversation, and the prompt with
    `add_generation_prompt`), on the Llama fixture's chat template."""
    tok = AutoTokenizer.from_pretrained(OUT / "llama-train")

    def ids(messages, gen):
        out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    cases = []
    for r in rows[:6]:
        prompt = [{"role": "user", "content": r["prompt"]}]
        completion = [{"role": "assistant", "content": r["completion"].strip()}]
        cases.append({"prompt": prompt, "completion": completion,
                      "prompt_ids": ids(prompt, True), "ids": ids(prompt + completion, False)})
    return {"model": "llama-train", "cases": cases,
            "versions": {"transformers": transformers.__version__}}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    only = sys.argv[1:]
    if not only or "chat-tokens" in only:
        rows = dataset()
        (OUT / "chat-tokens.json").write_text(json.dumps(chat_tokens(rows), indent=1) + "\n")
        only = [c for c in only if c != "chat-tokens"]
        if not only and sys.argv[1:]:
            return
    unknown = [c for c in only if c not in CASES]
    if unknown:
        sys.exit(f"unknown cases {unknown}; known: {list(CASES)}")
    rows = dataset()
    models = {CASES[c]["model"] for c in only}
    if not only or models & set(MODELS):
        make_models()
    if not only or models & {"bert-train", "llama-train"}:
        make_encoder_and_decoder()
    if not only or models & {"gpt2-train", "gemma3-train"}:
        make_gpt2_and_gemma3()
    torch.manual_seed(0)
    for name, case in CASES.items():
        if only and name not in only:
            continue
        ref = run(name, case, rows)
        (OUT / f"{name}.json").write_text(json.dumps(ref, indent=1) + "\n")
        print(name, [round(e["loss"], 4) for e in ref["log_history"] if "loss" in e][:5], file=sys.stderr)


if __name__ == "__main__":
    main()
