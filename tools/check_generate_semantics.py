#!/usr/bin/env python3
"""Reference outputs of `transformers` `model.generate()` for lmrs-generate's parity test.

A toy causal LM whose next-token logits are an integer hash of the whole row history (the twin
of `hash_logits` in crates/lmrs-generate/tests/common/mod.rs, bit-identical in f32) is run
through greedy search and beam search with various options. The result is written to
crates/lmrs-generate/tests/fixtures/hf_generate.json, which `tests/hf_parity.rs` replays.

Usage: .venv/bin/python tools/check_generate_semantics.py
"""

import json
import pathlib

import torch
import transformers
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

MASK = 0xFFFFFFFF
OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/lmrs-generate/tests/fixtures/hf_generate.json"


def hash_row(hist, vocab, eos):
    h = 2166136261
    for t in hist:
        h = ((h ^ (t + 1)) * 16777619) & MASK
    ks = []
    for v in range(vocab):
        x = (h + v * 2654435761) & MASK
        x = ((x ^ (x >> 15)) * 2246822519) & MASK
        x ^= x >> 13
        k = x % (1 << 20)
        if eos is not None and v == eos:
            k += len(hist) * (1 << 15)
        ks.append(k)
    return ks


class HashConfig(PretrainedConfig):
    model_type = "lmrs_hash"

    def __init__(self, vocab_size=32, hash_eos=1, **kwargs):
        self.vocab_size = vocab_size
        self.hash_eos = hash_eos
        super().__init__(**kwargs)


class HashLM(PreTrainedModel, GenerationMixin):
    config_class = HashConfig
    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.post_init()

    def _init_weights(self, module):
        pass

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        rows = [hash_row(seq, self.config.vocab_size, self.config.hash_eos) for seq in input_ids.tolist()]
        logits = (torch.tensor(rows, dtype=torch.float32) / float(1 << 17)).unsqueeze(1)
        return CausalLMOutputWithPast(logits=logits)


CASES = [
    ("greedy", 32, [[0, 5, 6], [0, 9, 2], [0, 3, 3]], dict(max_new_tokens=20)),
    ("greedy_default_length", 32, [[0, 4]], dict(eos_token_id=[31])),
    (
        "greedy_processors",
        32,
        [[0, 5, 6], [0, 9, 2]],
        dict(
            max_new_tokens=25,
            repetition_penalty=1.3,
            no_repeat_ngram_size=2,
            bad_words_ids=[[5], [7, 8], [1]],
            min_new_tokens=5,
        ),
    ),
    ("greedy_forced", 32, [[0]], dict(max_length=12, forced_bos_token_id=9, forced_eos_token_id=4, min_length=6)),
    ("beam4_false", 32, [[0, 5, 6], [0, 9, 2], [0, 3, 3]], dict(num_beams=4, num_return_sequences=2, max_new_tokens=15)),
    ("beam3_true", 32, [[0, 7], [0, 8]], dict(num_beams=3, num_return_sequences=3, early_stopping=True, max_new_tokens=15)),
    ("beam4_never_lp2", 32, [[0, 7], [0, 8]], dict(num_beams=4, early_stopping="never", length_penalty=2.0, max_new_tokens=12)),
    ("beam4_never_lpneg", 32, [[0, 7], [0, 8]], dict(num_beams=4, early_stopping="never", length_penalty=-0.5, max_new_tokens=12)),
    ("beam4_two_eos", 32, [[0, 11], [0, 12]], dict(num_beams=4, num_return_sequences=4, length_penalty=0.7, eos_token_id=[1, 2], max_new_tokens=14)),
    (
        "beam5_processors",
        32,
        [[0]],
        dict(num_beams=5, repetition_penalty=1.2, no_repeat_ngram_size=3, min_length=8, forced_bos_token_id=6, max_length=20),
    ),
    ("beam2_short", 32, [[0, 1, 2]], dict(num_beams=2, max_new_tokens=2)),
    ("beam6_vocab128", 128, [[0, 50, 60], [0, 70, 80]], dict(num_beams=6, num_return_sequences=3, max_new_tokens=18)),
]


def strip(row, prompt_len, eos):
    gen = row[prompt_len:]
    for i, t in enumerate(gen):
        if t in eos:
            return row[: prompt_len + i + 1]
    return row


def main():
    torch.manual_seed(0)
    cases = []
    for name, vocab, prompts, kwargs in CASES:
        model = HashLM(HashConfig(vocab_size=vocab, hash_eos=1)).eval()
        kwargs = dict(kwargs)
        gen = dict(kwargs, eos_token_id=kwargs.get("eos_token_id", 1), pad_token_id=0, use_cache=False, do_sample=False)
        eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
        beam = gen.get("num_beams", 1) > 1
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.tensor(prompts),
                attention_mask=torch.ones(len(prompts), len(prompts[0]), dtype=torch.long),
                return_dict_in_generate=True,
                output_scores=beam,
                **gen,
            )
        n = gen.get("num_return_sequences", 1)
        seqs = out.sequences.tolist()
        scores = out.sequences_scores.tolist() if beam else [None] * len(seqs)
        expected = [
            [{"tokens": strip(seqs[i * n + j], len(prompts[0]), eos), "score": scores[i * n + j]} for j in range(n)]
            for i in range(len(prompts))
        ]
        cases.append(dict(name=name, vocab=vocab, prompts=prompts, config=gen, expected=expected))
        print(name, [[len(e["tokens"]) for e in ex] for ex in expected])
    doc = dict(transformers=transformers.__version__, torch=torch.__version__, cases=cases)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
