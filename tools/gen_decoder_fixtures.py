#!/usr/bin/env python3
"""Tiny decoder-only (causal LM) fixtures for the LLM tests (called by gen_fixtures.py; runnable on
its own).

Writes under tests/fixtures/:
  llama-tiny/    LlamaForCausalLM: hidden 64, 2 layers, 4 heads / 2 KV heads (GQA), head_dim 16,
                 untied lm_head, config.json as transformers 5 writes it (`rope_parameters`)
  llama3-tiny/   the same weights with llama3 RoPE scaling (factor 8, low/high freq factor 1/4,
                 original_max_position_embeddings 32); config.json in the form real Llama 3.x
                 checkpoints have it (`rope_theta` + `rope_scaling`)
  qwen2-tiny/    Qwen2ForCausalLM with random q/k/v biases, tied embeddings, two EOS ids
                 (<|im_end|>, <|endoftext|>) in generation_config.json; config.json in the legacy
                 form (`rope_theta`, `rope_scaling: null`)
  gpt2-tiny/     GPT2LMHeadModel (Conv1D weights, learned positions, all biases random), tied
  gemma3-tiny/   Gemma3ForCausalLM (text only): 4 layers (3 sliding-window 8, 1 full), 1 KV head,
                 q/k norms, sandwich norms, per-layer-type RoPE (`rope_parameters` with
                 sliding_attention / full_attention), its own tokenizer with <bos> added and a Gemma
                 chat template
  llama-tiny-gguf/  llama-tiny as GGUF files laid out like llama.cpp's convert_hf_to_gguf.py
                 (arch "llama", q/k rows permuted): f32, q8_0 and q4_0, with references computed by
                 loading each file back with transformers (which dequantizes and un-permutes)

Each HF folder holds config.json, generation_config.json (max_new_tokens 10: not the default),
model.safetensors (f32), tokenizer.json, tokenizer_config.json (with `chat_template`) and
expected.json: tokenization, chat-template rendering, teacher-forced logits (6 decimals) and
`generate()` token ids for greedy / beam / repetition-penalty / no-repeat-ngram / min_new_tokens /
num_return_sequences / left-padded batch cases. All norm weights are random (so the Gemma `1 + w`
convention shows), all biases non-zero.

The tokenizer is a byte-level BPE trained with the `tokenizers` BpeTrainer (deterministic) on the
English text embedded below. Weights are random with fixed seeds (tuned, see TUNING, so greedy
paths are varied, some prompts end with EOS, and the top-1/top-2 logit gaps along the recorded
greedy paths are clear). Reruns give byte-identical files.

Usage:  .venv/bin/python tools/gen_decoder_fixtures.py [--out tests/fixtures]
"""

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers
from safetensors import safe_open
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_fixtures as g  # noqa: E402

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

REPO = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------

CORPUS = """
The sun rose slowly over the quiet village, and the baker opened his shop before anyone else was awake.
He made bread, small cakes and a large apple pie for the market. The smell of warm bread filled the street.
Children walked to school with their books, and the old man at the corner read his newspaper in the sun.
It was a good morning. The weather was clear and cold, but the sky was bright and blue.
In the afternoon the wind came from the north and the clouds moved across the hills.
The farmer looked at the sky and said that it would rain before the evening.
His daughter laughed and told him that he always said the same thing.
They went inside, made a pot of tea, and talked about the harvest, the price of corn and the new road.
A language model reads a sequence of tokens and predicts the next token, one step at a time.
The model is trained on a large amount of text, and it learns which words are likely to follow other words.
When we generate text, we can choose the most likely token at each step; this is called greedy search.
Beam search keeps several candidate sequences and returns the one with the highest score.
A repetition penalty makes tokens that were already generated less likely, so the output repeats less.
The tokenizer splits text into small pieces, and each piece has a number called its id.
Once upon a time there was a little fox who lived in a forest near a river.
Every day the fox went to the river to drink, and every day he met a friendly old turtle.
The turtle told him stories about the sea, about ships and storms and islands far away.
One day the fox asked the turtle if he could see the sea with his own eyes.
The turtle smiled and said: you will, if you follow the river for long enough.
So the fox followed the river, past the mill, past the bridge and past the town, until he saw the sea.
What is the capital of France? The capital of France is Paris. What is the capital of Italy? It is Rome.
How are you today? I am fine, thank you. Can you help me with my homework? Yes, of course I can.
Please write a short story about a dog and a cat. Please summarize the following text in one sentence.
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
Water boils at one hundred degrees, and it freezes at zero degrees. There are seven days in a week.
The meeting starts at nine o'clock, so please do not be late. We will discuss the plan for next year.
def add(a, b):
    return a + b
for i in range(10):
    print(i, add(i, 1))
You are a helpful assistant. The user asks a question and the assistant answers it clearly and politely.
Hello! How can I help you today? I would like to know more about the history of the city.
The city was founded on the river many centuries ago, and it grew because it was a place of trade.
Merchants came from the east and from the west, and they sold cloth, salt, wine and spices.
"""

TOKENIZER_VOCAB = 512
CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Gemma 3's template without the image handling: the system prompt is folded into the first user
# turn, `assistant` is called `model`, and the text starts with <bos> (so the rendered text is
# tokenized with add_special_tokens=False).
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


def corpus_lines():
    return [l for l in CORPUS.strip("\n").split("\n") if l.strip()]


def train_bpe(specials, vocab_size=TOKENIZER_VOCAB):
    """Byte-level BPE (GPT-2 pre-tokenizer regex, no prefix space) with `specials` at ids 0..n-1.
    The BpeTrainer breaks ties by pair ids, so the result is the same on every run."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer)
    assert tok.get_vocab_size() == vocab_size, tok.get_vocab_size()
    for i, s in enumerate(specials):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def save_tokenizer(folder, kind):
    """kind "chatml": <|endoftext|> (bos = eos = pad) / <|im_start|> / <|im_end|>, nothing added
    around the text, ChatML template. kind "gemma": <pad> <eos> <bos> <unk> <start_of_turn>
    <end_of_turn> at ids 0..5 like Gemma, "<bos> $A" post-processing, Gemma template."""
    if kind == "chatml":
        tok = train_bpe(CHATML_SPECIALS)
        special = dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
        extra, template = ["<|im_start|>", "<|im_end|>"], CHATML_TEMPLATE
    else:
        tok = train_bpe(GEMMA_SPECIALS)
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)]
        )
        special = dict(bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
        extra, template = ["<start_of_turn>", "<end_of_turn>"], GEMMA_TEMPLATE
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, additional_special_tokens=extra, model_max_length=128, **special
    )
    with tempfile.TemporaryDirectory() as tmp:
        fast.save_pretrained(tmp)
        tj = json.loads((Path(tmp) / "tokenizer.json").read_text(encoding="utf-8"))
        tc = json.loads((Path(tmp) / "tokenizer_config.json").read_text(encoding="utf-8"))
    # transformers 5 writes the template to chat_template.jinja; keep it in tokenizer_config.json
    # (where most hub checkpoints have it) and nowhere else.
    tc["chat_template"] = template
    tc.setdefault("unk_token", None)
    tc["add_bos_token"] = kind == "gemma"
    tc["add_eos_token"] = False
    tc["padding_side"] = "left"
    g.write_json(folder / "tokenizer.json", tj)
    g.write_json(folder / "tokenizer_config.json", dict(sorted(tc.items())))
    return tok.get_vocab_size()


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

LLAMA = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=128,
    max_position_embeddings=128,
    rms_norm_eps=1e-5,
    hidden_act="silu",
)
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}
QWEN2 = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    hidden_act="silu",
    use_sliding_window=False,
)
GPT2 = dict(n_embd=64, n_layer=2, n_head=4, n_positions=128, activation_function="gelu_new", layer_norm_epsilon=1e-5)
GEMMA3 = dict(
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=16,
    intermediate_size=128,
    max_position_embeddings=128,
    query_pre_attn_scalar=16,
    sliding_window=8,
    layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
    rms_norm_eps=1e-6,
    hidden_activation="gelu_pytorch_tanh",
)

# seed: torch seed for the weights; std: normal std of every matrix (embeddings and projections);
# head_std: std of the (untied) lm_head; emb_std: std of the token embedding; norm_std: spread of
# the norm weights around 1 (Gemma: around 0, as `1 + w` is applied); bias_std: std of the
# biases; eos_scale: the EOS rows of the output projection are multiplied by it (makes some
# generations stop early); final_norm_gain (Gemma): the final norm's 1 + w is multiplied by it.
# Chosen by a small search so that check_properties holds; changing any value changes every
# expected output.
TUNING = {
    "llama-tiny": dict(seed=15, std=0.1, head_std=0.4, norm_std=0.3, eos_scale=2.0),
    "qwen2-tiny": dict(seed=29, std=0.2, norm_std=0.3, bias_std=0.3, eos_scale=1.5),
    "gpt2-tiny": dict(seed=36, std=0.3, norm_std=0.3, bias_std=0.1, eos_scale=2.0),
    "gemma3-tiny": dict(seed=41, std=0.2, emb_std=0.02, norm_std=0.3, eos_scale=1.5, final_norm_gain=12.0),
}


def ids_of(tok, names):
    return [tok.token_to_id(n) for n in names]


@torch.no_grad()
def randomize(model, tune, gemma_norms=False):
    """Re-draw every parameter: matrices N(0, std), norm weights 1 + N(0, norm_std) (Gemma: the
    stored w in `1 + w` is N(0, norm_std)), biases N(0, bias_std)."""
    torch.manual_seed(tune["seed"])
    for name, p in model.named_parameters():
        if p.dim() == 1 and ("norm" in name or ".ln_" in name or name.endswith("ln_f.weight")):
            if name.endswith(".bias"):
                p.copy_(torch.randn_like(p) * tune["norm_std"] * 0.5)
            elif gemma_norms:
                p.copy_(torch.randn_like(p) * tune["norm_std"])
            else:
                p.copy_(1.0 + torch.randn_like(p) * tune["norm_std"])
        elif p.dim() == 1:
            p.copy_(torch.randn_like(p) * tune["bias_std"])
        elif name == "lm_head.weight" and "head_std" in tune:
            p.copy_(torch.randn_like(p) * tune["head_std"])
        elif name.endswith("embed_tokens.weight") and "emb_std" in tune:
            p.copy_(torch.randn_like(p) * tune["emb_std"])
        else:
            p.copy_(torch.randn_like(p) * tune["std"])


@torch.no_grad()
def make_llama(vocab, tok):
    tune = TUNING["llama-tiny"]
    eos = tok.token_to_id("<|endoftext|>")
    cfg = LlamaConfig(
        vocab_size=vocab,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=None,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        **LLAMA,
    )
    model = LlamaForCausalLM(cfg).eval()
    randomize(model, tune)
    model.lm_head.weight[eos].mul_(tune["eos_scale"])
    return model


def make_llama3(llama):
    cfg = LlamaConfig.from_dict(llama.config.to_dict())
    cfg.rope_parameters = {**LLAMA3_ROPE, "rope_theta": 10000.0}
    model = LlamaForCausalLM(cfg).eval()
    model.load_state_dict(llama.state_dict())
    return model


@torch.no_grad()
def make_qwen2(vocab, tok):
    tune = TUNING["qwen2-tiny"]
    eot, im_end = ids_of(tok, ["<|endoftext|>", "<|im_end|>"])
    cfg = Qwen2Config(
        vocab_size=vocab,
        bos_token_id=eot,
        eos_token_id=im_end,
        pad_token_id=None,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        **QWEN2,
    )
    model = Qwen2ForCausalLM(cfg).eval()
    randomize(model, tune)
    with torch.no_grad():
        for i in (eot, im_end):
            model.model.embed_tokens.weight[i].mul_(tune["eos_scale"])
    assert model.model.layers[0].self_attn.q_proj.bias.abs().min() > 0
    return model


@torch.no_grad()
def make_gpt2(vocab, tok):
    tune = TUNING["gpt2-tiny"]
    eos = tok.token_to_id("<|endoftext|>")
    cfg = GPT2Config(vocab_size=vocab, bos_token_id=eos, eos_token_id=eos, tie_word_embeddings=True, **GPT2)
    model = GPT2LMHeadModel(cfg).eval()
    randomize(model, tune)
    with torch.no_grad():
        model.transformer.wte.weight[eos].mul_(tune["eos_scale"])
    return model


@torch.no_grad()
def make_gemma3(vocab, tok):
    tune = TUNING["gemma3-tiny"]
    pad, eos, bos = ids_of(tok, ["<pad>", "<eos>", "<bos>"])
    cfg = Gemma3TextConfig(
        vocab_size=vocab,
        pad_token_id=pad,
        eos_token_id=eos,
        bos_token_id=bos,
        tie_word_embeddings=True,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
        **GEMMA3,
    )
    model = Gemma3ForCausalLM(cfg).eval()
    randomize(model, tune, gemma_norms=True)
    with torch.no_grad():
        # The tied embedding is small next to the (post-normed) layer outputs, so that greedy
        # search does not just repeat the last input token; a larger final norm (1 + w) scales
        # the logits back up.
        w = model.model.norm.weight
        w.copy_((1.0 + w) * tune["final_norm_gain"] - 1.0)
        for i in ids_of(tok, ["<eos>", "<end_of_turn>"]):
            model.model.embed_tokens.weight[i].mul_(tune["eos_scale"])
    return model


def legacy_rope_config(cfg):
    """config.json in the form transformers 4.x (and so most hub checkpoints) wrote: `rope_theta`
    at the top level and `rope_scaling` for anything but default RoPE."""
    rp = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rp.pop("rope_theta")
    cfg["rope_scaling"] = None if rp.get("rope_type") == "default" else rp
    return cfg


def save_model(model, folder, gen_cfg, legacy=False):
    model.save_pretrained(folder)
    path = folder / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if legacy:
        cfg = legacy_rope_config(cfg)
    g.write_json(path, dict(sorted(cfg.items())))
    gen_cfg.save_pretrained(folder)
    gpath = folder / "generation_config.json"
    g.write_json(gpath, dict(sorted(json.loads(gpath.read_text(encoding="utf-8")).items())))
    with safe_open(folder / "model.safetensors", "pt") as f:
        sd = model.state_dict()
        for k in f.keys():
            t = f.get_tensor(k)
            assert t.dtype == torch.float32, (k, t.dtype)
            assert torch.equal(t, sd[k]), k


# --------------------------------------------------------------------------------------------
# Texts
# --------------------------------------------------------------------------------------------

# Logits prompts: 3 tokens, ~20 tokens, ~40 tokens (longer than gemma3-tiny's sliding window 8).
LOGIT_TEXTS = [
    "The old man",
    "The fox went to the river to drink, and he met a friendly old turtle.",
    "Every day the fox went to the river to drink, and every day he met a friendly old turtle who told "
    "him stories about the sea.",
]

GEN_TEXTS = LOGIT_TEXTS + [
    "What is the capital of France?",
    "def add(a, b):",
    "The farmer looked at the sky and said",
    "Hello!",
]

TOKENIZATION_TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "Multiple   spaces\tand\ttabs\nnew lines\n\nand a carriage\r\nreturn.",
    "   leading and trailing spaces   ",
    "Numbers: 3.14159, 42, 1,000,000 and 2024-01-31.",
    "The café in Zürich serves crème brûlée; 東京 and emoji 😀👍🏽.",
    "Don't stop; it's \"quoted\" [brackets] {braces} <angle> #hash @at $5 50% a&b",
    "<|im_start|>user\nHi<|im_end|>\n<|endoftext|>",
    "<start_of_turn>user\nHi<end_of_turn>\n<bos><eos>",
    "",
]

CHAT_MESSAGES = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a friendly assistant."},
        {"role": "user", "content": "Hello! How are you today?"},
        {"role": "assistant", "content": "I am fine, thank you."},
        {"role": "user", "content": "Please write a short story about a fox."},
    ],
]


def round6(values):
    return [round(float(v), 6) for v in values]


def logit_positions(n):
    """Every position of a short prompt; for a long one a few spread positions (around the
    sliding-window edge 8, the middle) and the last 4."""
    if n <= 25:
        return list(range(n))
    return sorted({0, 7, 8, 9, 16, 24} | set(range(n - 4, n)))


@torch.no_grad()
def logits_section(model, rows, names):
    out = []
    for name, ids in zip(names, rows):
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        pos = logit_positions(len(ids))
        out.append(
            {
                "name": name,
                "input_ids": ids,
                "positions": pos,
                "vocab_size": logits.shape[1],
                "logits": [round6(logits[p]) for p in pos],
            }
        )
    return out


@torch.no_grad()
def full_logits(model, rows):
    return [model(input_ids=torch.tensor([ids])).logits[0].float() for ids in rows]


# --------------------------------------------------------------------------------------------
# generate() references
# --------------------------------------------------------------------------------------------


def left_pad(rows, pad_id):
    n = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (n - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (n - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def strip_row(row, prompt, n_pad, eos_ids, pad_id):
    """Drop the left padding, check the prompt is intact, cut right after the first EOS of the
    generated part and check that only padding follows it. (Beam search fills finished rows with
    `pad_token_id or eos_token_id[0]`: with pad id 0 that is the first EOS id.)"""
    row = row[n_pad:]
    assert row[: len(prompt)] == prompt, (row, prompt)
    gen = row[len(prompt) :]
    for i, t in enumerate(gen):
        if t in eos_ids:
            tail = set(gen[i + 1 :])
            assert tail <= {pad_id} or tail <= eos_ids, (row, eos_ids, pad_id)
            return prompt + gen[: i + 1]
    assert pad_id in eos_ids or pad_id not in gen, f"generated the pad token: {row}"
    return prompt + gen


class Runner:
    def __init__(self, model, pad_id, eos_ids):
        self.model = model
        self.pad_id = pad_id
        self.eos_ids = set(eos_ids)
        self.cases = []
        self.by_name = {}

    @torch.no_grad()
    def run(self, rows, kwargs):
        ids, mask = left_pad(rows, self.pad_id)
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, return_dict_in_generate=True, output_scores=True, **kwargs
        )
        nrs = kwargs.get("num_return_sequences", 1)
        n = ids.shape[1]
        outs = []
        for r, seq in enumerate(out.sequences.tolist()):
            prompt = rows[r // nrs]
            outs.append(strip_row(seq, prompt, n - len(prompt), self.eos_ids, self.pad_id))
        margin = None
        if kwargs.get("num_beams", 1) == 1 and out.scores:
            # Smallest gap between the best and the second-best processed score along the path(s):
            # an implementation with slightly different float rounding can only diverge where it is
            # tiny. Rows that already finished (all scores -inf but pad) are skipped.
            gaps = []
            for b in range(len(rows)):
                for step, sc in enumerate(out.scores):
                    if len(outs[b]) <= len(rows[b]) + step:
                        continue
                    top = sc[b].float().topk(2).values
                    if torch.isfinite(top[1]):
                        gaps.append(float(top[0] - top[1]))
            margin = min(gaps) if gaps else None
        return outs, margin

    def case(self, name, rows, kwargs, record=True):
        outs, margin = self.run(rows, dict(kwargs))
        entry = {"name": name, "input_ids": rows}
        if len(rows) > 1:
            entry["padding_side"] = "left"
        entry["kwargs"] = dict(kwargs)
        entry["output_ids"] = outs
        if margin is not None:
            entry["min_top2_margin"] = float("%.6g" % margin)
        if record:
            assert name not in self.by_name, name
            self.cases.append(entry)
            self.by_name[name] = entry
        return outs


def generate_section(r, rows, chat_rows, pad_id):
    base = {"do_sample": False, "pad_token_id": pad_id}
    greedy = {**base, "max_new_tokens": 12}
    beam = {**base, "num_beams": 3, "max_new_tokens": 8}
    singles = {}
    for i, row in enumerate(rows):
        singles[i] = r.case(f"greedy_{i}", [row], greedy)[0]
    for i, row in enumerate(chat_rows):
        r.case(f"greedy_chat_{i}", [row], greedy)
    # generation_config.json's max_new_tokens (10) applies when none is passed (on a prompt whose
    # greedy path has no EOS within 10 tokens)
    first10 = {i: o[len(rows[i]) : len(rows[i]) + 10] for i, o in singles.items()}
    no_eos = [i for i, f in first10.items() if not r.eos_ids & set(f)]
    i_gc = min(no_eos, key=lambda i: (max(map(first10[i].count, first10[i])), i))
    gc = r.case("greedy_generation_config", [rows[i_gc]], base)[0]
    assert gc == singles[i_gc][: len(rows[i_gc]) + 10], (gc, singles[i_gc])
    beams = {}
    for i in (0, 1, 3, 5):
        beams[i] = r.case(f"beam3_{i}", [rows[i]], beam)[0]
    # An EOS-producing prompt, if any, makes length_penalty and min_new_tokens matter.
    ends = [i for i, o in singles.items() if o[-1] in r.eos_ids]
    i_eos = min(ends, key=lambda i: (len(singles[i]) - len(rows[i]), i)) if ends else 3
    r.case("beam3_length_penalty_2", [rows[i_eos]], {**beam, "length_penalty": 2.0})
    r.case("beam3_length_penalty_neg", [rows[i_eos]], {**beam, "length_penalty": -1.0})
    r.case("beam3_early_stopping", [rows[i_eos]], {**beam, "early_stopping": True})
    r.case("beam3_no_repeat_ngram_2", [rows[1]], {**beam, "no_repeat_ngram_size": 2})
    r.case("greedy_no_repeat_ngram_2", [rows[1]], {**greedy, "no_repeat_ngram_size": 2})
    # repetition penalty on the prompt whose greedy output repeats the most
    i_rep = max(singles, key=lambda i: (len(singles[i]) - len(set(singles[i])), -i))
    r.case("greedy_repetition_penalty_1_3", [rows[i_rep]], {**greedy, "repetition_penalty": 1.3})
    r.case("beam3_return2", [rows[3]], {**beam, "num_return_sequences": 2})
    r.case("beam3_return2_batch2", [rows[0], rows[3]], {**beam, "num_return_sequences": 2})
    gen_eos = len(singles[i_eos]) - len(rows[i_eos])
    r.case("greedy_min_new_tokens", [rows[i_eos]], {**greedy, "min_new_tokens": min(gen_eos + 3, 12)})
    # left-padded batches of different lengths must equal the single runs
    bidx = [2, 0, 3]
    batch = [rows[i] for i in bidx]
    bg = r.case("greedy_batch3_left_padded", batch, greedy)
    bb = r.case("beam3_batch3_left_padded", batch, beam)
    for j, i in enumerate(bidx):
        assert bg[j] == singles[i], f"greedy batch row {j} != single: {bg[j]} vs {singles[i]}"
        single_b = beams[i] if i in beams else r.case(f"_b{i}", [rows[i]], beam, record=False)[0]
        assert bb[j] == single_b, f"beam batch row {j} != single: {bb[j]} vs {single_b}"
    # no cache must equal the cached run
    nc = r.case("greedy_no_cache_1", [rows[1]], {**greedy, "use_cache": False})[0]
    assert nc == singles[1], (nc, singles[1])
    return singles, beams, ends


def check_properties(name, r, singles, beams, ends, prompts):
    problems = []
    paths = [
        (c["name"], c["output_ids"][0][len(c["input_ids"][0]) :]) for c in r.cases if c["name"].startswith("greedy_")
    ]
    for name_i, gen in paths:
        top = max(gen.count(t) for t in gen)
        if len(gen) >= 6 and (len(set(gen)) < 4 or top > len(gen) // 2):
            problems.append(f"{name_i} is degenerate: {gen}")
    every = [t for i, o in singles.items() for t in o[len(prompts[i]) :] if t not in r.eos_ids]
    if max(every.count(t) for t in every) > len(every) // 5:
        problems.append("one token dominates the greedy outputs")
    gens = [tuple(o[len(prompts[i]) :]) for i, o in singles.items()]
    if len(set(gens)) < len(gens) - 1:
        problems.append("greedy outputs for different prompts are (mostly) identical")
    if not ends:
        problems.append("no greedy generation ends with EOS")
    if len(ends) == len(singles):
        problems.append("every greedy generation ends with EOS")
    if not any(beams[i] != singles[i][: len(beams[i])] for i in beams):
        problems.append("beam search never differs from greedy")
    margins = [c["min_top2_margin"] for c in r.cases if "min_top2_margin" in c]
    small = [c["name"] for c in r.cases if c.get("min_top2_margin", 1) < 1e-3]
    if len(small) > 1:
        problems.append(f"top-2 margins below 1e-3 in {small}")
    if problems:
        for k, o in singles.items():
            print(f"  greedy_{k}: {o[len(prompts[k]):]}", file=sys.stderr)
        raise SystemExit(f"{name}: random-weight properties not met:\n  " + "\n  ".join(problems))
    return min(margins)


def tokenization_section(tok, raw, add_special):
    out = []
    for text in TOKENIZATION_TEXTS:
        ids = tok(text, add_special_tokens=add_special).input_ids
        raw_ids = raw.encode(text, add_special_tokens=add_special).ids
        assert ids == raw_ids, f"AutoTokenizer and tokenizer.json disagree on {text!r}: {ids} vs {raw_ids}"
        dec = tok.decode(ids, skip_special_tokens=False)
        assert dec == raw.decode(ids, skip_special_tokens=False), text
        out.append({"text": text, "ids": ids, "decoded": dec})
    return out


def chat_section(tok):
    out = []
    for msgs in CHAT_MESSAGES:
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False).input_ids
        out.append({"messages": msgs, "add_generation_prompt": True, "text": text, "ids": ids})
    return out


# --------------------------------------------------------------------------------------------
# Fixture folders
# --------------------------------------------------------------------------------------------

LOAD_CLASS = {
    "llama": LlamaForCausalLM,
    "qwen2": Qwen2ForCausalLM,
    "gpt2": GPT2LMHeadModel,
    "gemma3_text": Gemma3ForCausalLM,
}


@torch.no_grad()
def build_fixture(name, folder, model, kind, gen_cfg, legacy=False, quiet=False):
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    save_tokenizer(folder, kind)
    save_model(model, folder, gen_cfg, legacy=legacy)

    tok = AutoTokenizer.from_pretrained(folder)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    cls = LOAD_CLASS[model.config.model_type]
    loaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(loaded) is cls, type(loaded)
    assert loaded.config.vocab_size == len(tok), (loaded.config.vocab_size, len(tok))
    if legacy:
        assert loaded.config.rope_parameters == model.config.rope_parameters, loaded.config.rope_parameters

    add_special = kind == "gemma"
    rows = [tok(t, add_special_tokens=add_special).input_ids for t in GEN_TEXTS]
    n = [len(r) - add_special for r in rows]
    assert n[0] == 3 and 18 <= n[1] <= 24 and 36 <= n[2] <= 44, n
    # the reloaded model computes exactly what the in-memory one does
    for a, b in zip(full_logits(model, rows[:3]), full_logits(loaded, rows[:3])):
        assert torch.equal(a, b), f"{name}: reloaded logits differ"
    if model.config.model_type == "gemma3_text":
        # the sliding window changes the long prompt's logits
        wide = Gemma3ForCausalLM(Gemma3TextConfig.from_dict({**model.config.to_dict(), "sliding_window": 128})).eval()
        wide.load_state_dict(model.state_dict())
        a, b = full_logits(model, rows[2:3])[0], full_logits(wide, rows[2:3])[0]
        assert torch.equal(a[:8], b[:8]) and (a - b).abs().max() > 0.1, "sliding window has no effect"

    # left padding as the tokenizer does it (padding_side "left" in tokenizer_config.json)
    enc = tok([GEN_TEXTS[i] for i in (2, 0, 3)], padding=True, add_special_tokens=add_special)
    ids, mask = left_pad([rows[i] for i in (2, 0, 3)], tok.pad_token_id)
    assert enc.input_ids == ids.tolist() and enc.attention_mask == mask.tolist()

    gcfg = loaded.generation_config
    eos_ids = gcfg.eos_token_id if isinstance(gcfg.eos_token_id, list) else [gcfg.eos_token_id]
    pad_id = gcfg.pad_token_id
    assert pad_id == tok.pad_token_id, (pad_id, tok.pad_token_id)
    chat = chat_section(tok)
    r = Runner(loaded, pad_id, eos_ids)
    singles, beams, ends = generate_section(r, rows, [c["ids"] for c in chat], pad_id)
    worst = check_properties(name, r, singles, beams, ends, rows)

    exp = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "model_type": loaded.config.model_type,
        "generation_config": json.loads((folder / "generation_config.json").read_text(encoding="utf-8")),
        "add_special_tokens": add_special,
        "tokenization": tokenization_section(tok, raw, add_special),
        "chat": chat,
        "logits": logits_section(loaded, rows[:3], ["short", "medium", "long"]),
        "generate": r.cases,
    }
    g.write_expected(folder / "expected.json", exp)
    if not quiet:
        print(f"\n== {name} (vocab {loaded.config.vocab_size}, eos {eos_ids}, pad {pad_id}) ==")
        print(f"greedy: {len(ends)}/{len(singles)} end with EOS; smallest top-2 margin {worst:.3g}")
        for c in r.cases:
            shown = " | ".join(" ".join(map(str, o[len(p) :])) for o, p in zip(c["output_ids"], c["input_ids"] * 2))
            print(f"  {c['name']:<28} {shown[:110]}")
        print(f"  {'greedy_1':<28} -> {tok.decode(singles[1], skip_special_tokens=False)!r}")
    return loaded, tok, rows, exp


def generation_config(bos, eos, pad):
    return GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, do_sample=False, max_new_tokens=10)


# --------------------------------------------------------------------------------------------
# GGUF (llama.cpp layout) from llama-tiny
# --------------------------------------------------------------------------------------------

GGUF_FILES = [
    ("llama-tiny-f32.gguf", gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    ("llama-tiny-q8_0.gguf", gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    ("llama-tiny-q4_0.gguf", gguf.GGMLQuantizationType.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
]


def permute_qk(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute: HF's rotate-half RoPE layout -> llama.cpp's
    interleaved pairs. Per head, rows [0..d/2) and [d/2..d) become interleaved (0, d/2, 1, d/2+1,
    ...)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(model):
    """(name, float32 numpy array) in llama.cpp naming, q/k permuted like convert_hf_to_gguf."""
    cfg = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    out = [("token_embd.weight", sd["model.embed_tokens.weight"])]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        out += [
            (f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"]),
            (f"blk.{i}.attn_q.weight", permute_qk(sd[p + "self_attn.q_proj.weight"], nh, nh)),
            (f"blk.{i}.attn_k.weight", permute_qk(sd[p + "self_attn.k_proj.weight"], nh, nkv)),
            (f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"]),
            (f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"]),
            (f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"]),
            (f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"]),
            (f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"]),
            (f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"]),
        ]
    out += [("output_norm.weight", sd["model.norm.weight"]), ("output.weight", sd["lm_head.weight"])]
    return out


def write_gguf(path, model, folder_hf, qtype, ftype):
    cfg = model.config
    tj = json.loads((folder_hf / "tokenizer.json").read_text(encoding="utf-8"))
    tc = json.loads((folder_hf / "tokenizer_config.json").read_text(encoding="utf-8"))
    vocab = tj["model"]["vocab"]
    for t in tj["added_tokens"]:
        vocab[t["content"]] = t["id"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    assert None not in tokens
    specials = {t["id"] for t in tj["added_tokens"] if t["special"]}
    token_types = [gguf.TokenType.CONTROL if i in specials else gguf.TokenType.NORMAL for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    eos = tokens.index("<|endoftext|>")

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name("llama-tiny")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_file_type(ftype)
    w.add_vocab_size(cfg.vocab_size)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_bos_token_id(eos)
    w.add_eos_token_id(eos)
    w.add_pad_token_id(eos)
    w.add_add_bos_token(False)
    w.add_chat_template(tc["chat_template"])
    if qtype != gguf.GGMLQuantizationType.F32:
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    types = {}
    for name, arr in gguf_tensors(model):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, arr)
            types[name] = "F32"
        else:
            w.add_tensor(name, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
            types[name] = qtype.name
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return types


@torch.no_grad()
def build_gguf(out, llama, hf_folder, rows, quiet=False):
    folder = out / "llama-tiny-gguf"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ref = full_logits(llama, rows[:3])
    hf_tok = AutoTokenizer.from_pretrained(hf_folder)
    exp = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "gguf_version": gguf.__version__ if hasattr(gguf, "__version__") else "0.19.0",
    }
    files = []
    tokenization = None
    for fname, qtype, ftype in GGUF_FILES:
        types = write_gguf(folder / fname, llama, hf_folder, qtype, ftype)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
        assert type(model) is LlamaForCausalLM and model.config.vocab_size == llama.config.vocab_size
        toks = []
        for text in TOKENIZATION_TEXTS:
            ids = tok(text).input_ids
            assert ids == hf_tok(text).input_ids, f"GGUF tokenizer differs on {text!r}"
            toks.append({"text": text, "ids": ids})
        assert tokenization in (None, toks)
        tokenization = toks
        got = full_logits(model, rows[:3])
        diff = max(float((a - b).abs().max()) for a, b in zip(got, ref))
        mean = float(torch.cat([(a - b).abs().flatten() for a, b in zip(got, ref)]).mean())
        if qtype == gguf.GGMLQuantizationType.F32:
            assert diff < 1e-5, f"f32 GGUF differs from the safetensors model by {diff}"
        eos = model.generation_config.eos_token_id
        r = Runner(model, eos, [eos])
        kw = {"do_sample": False, "pad_token_id": eos, "max_new_tokens": 12}
        for i in (1, 3):
            r.case(f"greedy_{i}", [rows[i]], kw)
        files.append(
            {
                "file": fname,
                "file_type": int(ftype),
                "tensor_types": dict(sorted(types.items())),
                "max_abs_diff_vs_f32": float("%.6g" % diff),
                "mean_abs_diff_vs_f32": float("%.6g" % mean),
                "logits": logits_section(model, rows[:3], ["short", "medium", "long"]),
                "generate": r.cases,
            }
        )
        if not quiet:
            g1 = r.by_name["greedy_1"]["output_ids"][0][len(rows[1]) :]
            print(f"  {fname:<24} {(folder / fname).stat().st_size:>8,} B  max |logit - f32| {diff:.4g}  greedy_1 {g1}")
    exp["tokenization"] = tokenization
    exp["files"] = files
    g.write_expected(folder / "expected.json", exp)


# --------------------------------------------------------------------------------------------


def build_all(out):
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        vocab = save_tokenizer(tmp, "chatml")
        chatml = Tokenizer.from_file(str(tmp / "tokenizer.json"))
        gvocab = save_tokenizer(tmp, "gemma")
        gemma_tok = Tokenizer.from_file(str(tmp / "tokenizer.json"))
    print(f"\nbyte-level BPE tokenizers: {vocab} tokens (ChatML), {gvocab} (Gemma)")

    eot, im_end = ids_of(chatml, ["<|endoftext|>", "<|im_end|>"])
    llama = make_llama(vocab, chatml)
    gc = generation_config(eot, eot, eot)
    build_fixture("llama-tiny", out / "llama-tiny", llama, "chatml", gc)
    llama3 = make_llama3(llama)
    build_fixture("llama3-tiny", out / "llama3-tiny", llama3, "chatml", gc, legacy=True)

    qwen2 = make_qwen2(vocab, chatml)
    gc2 = generation_config(eot, [im_end, eot], eot)
    build_fixture("qwen2-tiny", out / "qwen2-tiny", qwen2, "chatml", gc2, legacy=True)

    gpt2 = make_gpt2(vocab, chatml)
    build_fixture("gpt2-tiny", out / "gpt2-tiny", gpt2, "chatml", gc)

    gpad, geos, gbos, geot = ids_of(gemma_tok, ["<pad>", "<eos>", "<bos>", "<end_of_turn>"])
    gemma = make_gemma3(gvocab, gemma_tok)
    build_fixture("gemma3-tiny", out / "gemma3-tiny", gemma, "gemma", generation_config(gbos, [geos, geot], gpad))

    print("\n== llama-tiny-gguf ==")
    hf = out / "llama-tiny"
    tok = AutoTokenizer.from_pretrained(hf)
    rows = [tok(t).input_ids for t in GEN_TEXTS]
    build_gguf(out, llama, hf, rows)
    print(f"decoder fixtures done in {time.time() - t0:.1f}s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    build_all(args.out)
    for name in ("llama-tiny", "llama3-tiny", "qwen2-tiny", "gpt2-tiny", "gemma3-tiny", "llama-tiny-gguf"):
        for f in sorted((args.out / name).iterdir()):
            print(f"  {f.relative_to(args.out)}  {f.stat().st_size:,} B")


if __name__ == "__main__":
    main()
