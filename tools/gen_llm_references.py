#!/usr/bin/env python3
"""Greedy-generation references of the real GGUF decoder models, for the real-model test tier.

Writes tests/fixtures/real/llm_references.json: for SmolLM2 135M Instruct (Q4_1, arch "llama",
byte-level BPE) and Gemma 3 270M (Q4_K_M, arch "gemma3", SentencePiece), each loaded with
`AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=torch.float32)` (transformers
dequantizes every tensor to float32 and runs in float32), and for a varied prompt set (plain
English, a chat prompt, code, a summarization instruction, French, numbers):
  - the prompt ids from `AutoTokenizer.from_pretrained(dir, gguf_file=...)` with transformers'
    default special-token handling (SmolLM2: nothing added; Gemma: <bos> prepended),
  - the top 20 logits at the prompt's last position,
  - 24 greedy new token ids (`generate(do_sample=False)`, stopping early only at EOS), and for each
    step the gap between the best and the second-best logit, so that a test running the
    quantized weights directly (with slightly different numerics) can require an exact match only
    while that gap is clear.

Usage: scripts/fetch-models.sh && .venv/bin/python tools/gen_llm_references.py
Models: SmolLM2 under $LMRS_HOME/models (default ~/.cache/lmrs/models), Gemma under models/.
Takes ~2-3 minutes on a CPU (mostly dequantizing the GGUF tensors).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import json
import time
from pathlib import Path

import gguf
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

transformers.logging.set_verbosity_error()
torch.set_num_threads(2)

REPO = Path(__file__).resolve().parent.parent
LMRS_HOME = Path(os.environ.get("LMRS_HOME", Path.home() / ".cache" / "lmrs"))
OUT = REPO / "tests" / "fixtures" / "real" / "llm_references.json"

MODELS = [
    dict(
        name="smollm2-135m-instruct", dir=LMRS_HOME / "models", file="SmolLM2-135M-Instruct.Q4_1.gguf", chat="template"
    ),
    dict(name="gemma-3-270m", dir=REPO / "models", file="gemma-3-270m-q4_k_m.gguf", chat="gemma"),
]

MAX_NEW_TOKENS = 24
TOP_K = 20

SUMMARY_PARAGRAPH = (
    "The city council met on Tuesday evening to discuss the plan for a new public park near the "
    "river. Several residents spoke in favour of the project, saying that the neighbourhood has "
    "few green spaces, while others worried about the cost and about parking. After two hours of "
    "debate, the council voted seven to two to approve the first phase of the park."
)

PROMPTS = [
    dict(name="plain", text="The Eiffel Tower is located in the city of"),
    dict(name="chat", messages=[{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]),
    dict(name="code", text='def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'),
    # a chat turn for a model with a chat template (the instruct model), plain text otherwise
    dict(
        name="summarize",
        text=f"Summarize the following text in one sentence.\n\nText: {SUMMARY_PARAGRAPH}\n\nSummary:",
        chat_content=f"Summarize the following text in one sentence.\n\n{SUMMARY_PARAGRAPH}",
    ),
    dict(name="french", text="Il était une fois, dans un petit village au bord de la mer, une jeune fille qui"),
    dict(name="numbers", text="Count from one to ten: 1, 2, 3, 4,"),
]


def gemma_turns(messages):
    """The GGUF of Gemma 3 270M carries no chat template; this is what Gemma 3's template renders
    (without the leading <bos>, which the tokenizer adds)."""
    out = ""
    for m in messages:
        role = "model" if m["role"] == "assistant" else m["role"]
        out += f"<start_of_turn>{role}\n{m['content'].strip()}<end_of_turn>\n"
    return out + "<start_of_turn>model\n"


def r5(x):
    return round(float(x), 5)


@torch.no_grad()
def run_model(spec):
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(spec["dir"], gguf_file=spec["file"])
    model = AutoModelForCausalLM.from_pretrained(spec["dir"], gguf_file=spec["file"], dtype=torch.float32).eval()
    q = model.model.layers[0].self_attn.q_proj
    assert type(q) is torch.nn.Linear and q.weight.dtype == torch.float32, q  # dequantized, not packed
    t_load = time.time() - t0
    gcfg = model.generation_config
    eos = gcfg.eos_token_id if isinstance(gcfg.eos_token_id, list) else [gcfg.eos_token_id]
    entry = {
        "name": spec["name"],
        "file": spec["file"],
        "architecture": model.config.model_type,
        "vocab_size": model.config.vocab_size,
        "bos_token_id": tok.bos_token_id,
        "eos_token_ids": eos,
        "pad_token_id": gcfg.pad_token_id,
        "max_new_tokens": MAX_NEW_TOKENS,
        "prompts": [],
    }
    for p in PROMPTS:
        item = {"name": p["name"]}
        if "chat_content" in p and spec["chat"] == "template":
            p = {"name": p["name"], "messages": [{"role": "user", "content": p["chat_content"]}]}
        if "messages" in p:
            if spec["chat"] == "template":
                text = tok.apply_chat_template(p["messages"], tokenize=False, add_generation_prompt=True)
                item["chat_template"] = "gguf tokenizer.chat_template, add_generation_prompt"
            else:
                text = gemma_turns(p["messages"])
                item["chat_template"] = "Gemma 3 turn format written by hand (the GGUF has no template)"
            item["messages"] = p["messages"]
        else:
            text = p["text"]
        ids = tok(text).input_ids  # transformers' default special-token handling
        item["text"] = text
        item["add_special_tokens"] = True
        item["prompt_ids"] = ids

        input_ids = torch.tensor([ids])
        logits = model(input_ids=input_ids).logits[0, -1].float()
        top = logits.topk(TOP_K)
        item["last_logits_top20"] = {"ids": top.indices.tolist(), "values": [r5(v) for v in top.values]}

        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=False,
            max_new_tokens=MAX_NEW_TOKENS,
            pad_token_id=gcfg.pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,
        )
        new = out.sequences[0, len(ids) :].tolist()
        assert new[0] == int(top.indices[0]), "first generated token is not the argmax of the prompt logits"
        margins = []
        for step in out.logits:
            t2 = step[0].float().topk(2).values
            margins.append(r5(t2[0] - t2[1]))
        assert len(margins) == len(new)
        item["new_ids"] = new
        item["stopped_on_eos"] = new[-1] in eos
        item["new_text"] = tok.decode(new, skip_special_tokens=False)
        item["top2_margins"] = margins
        entry["prompts"].append(item)
        small = sum(m < 0.05 for m in margins)
        shown = item["new_text"]
        print(f"  {p['name']:<10} {len(ids):>3} prompt ids, {len(new)} new, {small} margins < 0.05: {shown!r}")
    print(f"{spec['name']}: loaded in {t_load:.0f}s, total {time.time() - t0:.0f}s")
    return entry


def dump(obj, indent=0):
    """JSON with dicts indented and lists of numbers/strings kept on one line."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad}  {json.dumps(k)}: {dump(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        items = [f"{pad}  {dump(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(obj, ensure_ascii=False)


def main():
    exp = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "gguf_version": "0.19.0" if not hasattr(gguf, "__version__") else gguf.__version__,
        "how": "AutoModelForCausalLM.from_pretrained(dir, gguf_file=file, dtype=float32): every tensor "
        "dequantized to float32; greedy generate(do_sample=False); top2_margins[i] = best - second-best "
        "raw logit at generation step i",
        "models": [],
    }
    for spec in MODELS:
        path = Path(spec["dir"]) / spec["file"]
        if not path.exists():
            raise SystemExit(f"missing {path}: run scripts/fetch-models.sh")
        exp["models"].append(run_model(spec))
    text = dump(exp) + "\n"
    assert json.loads(text) == exp
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)} ({OUT.stat().st_size:,} B)")


if __name__ == "__main__":
    main()
