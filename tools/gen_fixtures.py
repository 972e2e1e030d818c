#!/usr/bin/env python3
"""Generate the tiny T5 test fixtures under tests/fixtures/ (and, through encoder_fixtures.py,
the tiny BERT ones).

Writes, for each fixture folder:
  config.json, generation_config.json, model.safetensors   (save_pretrained, float32 or bfloat16)
  tokenizer.json, tokenizer_config.json, special_tokens_map.json
  expected.json   (reference outputs computed with the pinned torch/transformers)

Everything is built locally (no hub access): the tokenizer is a real Unigram (SentencePiece)
tokenizer trained on docstrings of the pinned `transformers` package plus a small embedded
multilingual text and saved as a `tokenizers` tokenizer.json; the models are random-weight T5
checkpoints with fixed seeds. Rerunning the script produces byte-identical files (same pinned
packages; torch runs single-threaded). Takes ~10 s on a CPU.

Usage:  scripts/setup-python.sh && .venv/bin/python tools/gen_fixtures.py [--out tests/fixtures]
"""

import os

# Determinism first: serial tokenizer training, single-threaded torch kernels.
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import ast
import copy
import io
import json
import shutil
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import transformers
from safetensors import safe_open
from tokenizers import Tokenizer
from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

REPO = Path(__file__).resolve().parent.parent
T0 = time.time()

# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

N_TRAINED_VOCAB = 794  # includes <pad>, </s>, <unk>
N_EXTRA_IDS = 10  # <extra_id_9> ... <extra_id_0> at the end, like T5 (extra_id_0 has the highest id)

# A small hand-written normalization table compiled by sentencepiece into a `Precompiled` charsmap
# (the normalizer real T5 tokenizers use; sentencepiece's full nmt_nfkc table is ~240 KB, this one
# is ~2 KB but exercises the same machinery). (source code points) -> (target code points).
NORMALIZATION_RULES = (
    [((0x09,), (0x20,)), ((0x0A,), (0x20,)), ((0x0D,), (0x20,)), ((0x0B,), (0x20,)), ((0x0C,), (0x20,))]
    + [((0xA0,), (0x20,)), ((0x3000,), (0x20,)), ((0x2009,), (0x20,))]  # exotic spaces
    + [((0x200B,), ()), ((0xFEFF,), ())]  # zero-width characters are dropped
    + [((0xFF01 + i,), (0x21 + i,)) for i in range(94)]  # full-width ASCII -> ASCII (NFKC)
    + [((0xFB01,), (0x66, 0x69)), ((0xFB02,), (0x66, 0x6C))]  # ligatures fi, fl
    + [((0x2026,), (0x2E, 0x2E, 0x2E)), ((0x2460,), (0x31,)), ((0x2461,), (0x32,))]
    + [((0x2122,), (0x54, 0x4D)), ((0x00B2,), (0x32,))]  # TM, superscript two
    # NFC composition of a few decomposed Latin letters (base + combining mark -> precomposed)
    + [((0x65, 0x301), (0xE9,)), ((0x65, 0x300), (0xE8,)), ((0x61, 0x300), (0xE0,))]
    + [((0x75, 0x308), (0xFC,)), ((0x6F, 0x308), (0xF6,)), ((0x61, 0x308), (0xE4,))]
)

# Extra text so the vocabulary knows some accented letters (German/French/Romanian, as in T5's
# translation tasks). Kept inline so the corpus is fully determined by this file + pinned packages.
MULTILINGUAL_TEXT = """
Das Haus ist wunderbar. Wie alt bist du? Ich möchte ein Glas Wasser, bitte. Die Straße ist lang
und die Brücke über den Fluss ist schön. Grüße aus München und Zürich. Übung macht den Meister.
Der Bär läuft über die Wiese, während die Vögel fröhlich singen. Schöne Grüße, Jürgen.
La maison est merveilleuse. Quel âge as-tu? Je voudrais un verre d'eau, s'il vous plaît. Le café
est très bon et la crème brûlée est délicieuse. À bientôt! L'élève a réussi l'épreuve. Où est la
gare? Noël approche, et les enfants préparent des crêpes. Ça va très bien, merci.
Casa este minunată. Câți ani ai? Aș dori un pahar cu apă, vă rog. Mulțumesc frumos.
"""


def _protobuf_fields(buf):
    """Minimal protobuf wire-format reader: yields (field_number, bytes_or_None)."""
    i = 0

    def varint():
        nonlocal i
        val, shift = 0, 0
        while True:
            c = buf[i]
            i += 1
            val |= (c & 0x7F) << shift
            shift += 7
            if c < 0x80:
                return val

    while i < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            varint()
            yield field, None
        elif wire == 1:
            i += 8
            yield field, None
        elif wire == 2:
            n = varint()
            yield field, bytes(buf[i : i + n])
            i += n
        elif wire == 5:
            i += 4
            yield field, None
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def train_sentencepiece(tmp, corpus):
    """Train a Unigram SentencePiece model (like T5's spiece.model) with NORMALIZATION_RULES
    compiled into its precompiled charsmap. Returns (pieces [(piece, score)], charsmap bytes).

    The `tokenizers` UnigramTrainer would be the natural choice, but its result differs from run to
    run (hash-map iteration order inside the trainer), so sentencepiece with one thread is used;
    the model is then expressed as a `tokenizers` tokenizer.json."""
    tsv = Path(tmp) / "rules.tsv"
    with open(tsv, "w") as f:
        for src, tgt in NORMALIZATION_RULES:
            f.write(" ".join("%X" % c for c in src) + "\t" + " ".join("%X" % c for c in tgt) + "\n")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        model_type="unigram",
        vocab_size=N_TRAINED_VOCAB,
        character_coverage=1.0,
        normalization_rule_tsv=str(tsv),
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        max_sentencepiece_length=16,
        num_threads=1,
        minloglevel=2,
    )
    proto = model.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    pieces = []
    for i in range(sp.get_piece_size()):
        special = sp.is_control(i) or sp.is_unknown(i)
        pieces.append((sp.id_to_piece(i), 0.0 if special else float(sp.get_score(i))))
    # ModelProto.normalizer_spec = field 3; NormalizerSpec.precompiled_charsmap = field 2
    norm_spec = next(v for f, v in _protobuf_fields(proto) if f == 3)
    charsmap = next(v for f, v in _protobuf_fields(norm_spec) if f == 2)
    return pieces, charsmap


def training_corpus():
    """Docstrings of the pinned transformers package (generation + pipelines), sorted, plus text."""
    root = Path(transformers.__file__).parent
    files = sorted(list((root / "generation").glob("*.py")) + list((root / "pipelines").glob("*.py")))
    lines = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    lines.extend(l.strip() for l in doc.splitlines() if l.strip())
    lines.extend(l.strip() for l in MULTILINGUAL_TEXT.splitlines() if l.strip())
    return lines


def build_tokenizer(out_dir):
    """Train the Unigram tokenizer and save it into out_dir through transformers' T5Tokenizer, whose
    __init__ builds the pipeline transformers 5.x uses for T5 whatever tokenizer.json says
    (Precompiled normalizer; WhitespaceSplit + Metaspace("▁", prepend_scheme="always") pre-tokenizer;
    Metaspace decoder; TemplateProcessing "$A </s>"), so that AutoTokenizer and a plain load of
    tokenizer.json (the `tokenizers` crate) tokenize identically."""
    with tempfile.TemporaryDirectory() as tmp:
        vocab, charsmap = train_sentencepiece(tmp, training_corpus())
    assert [v[0] for v in vocab[:3]] == ["<pad>", "</s>", "<unk>"], vocab[:3]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(N_EXTRA_IDS - 1, -1, -1)]

    t5tok = transformers.T5Tokenizer(
        vocab=vocab,
        extra_ids=N_EXTRA_IDS,
        _spm_precompiled_charsmap=charsmap,
        model_max_length=512,
    )
    t5tok.save_pretrained(out_dir)
    # Pretty-print tokenizer.json deterministically, and add the special_tokens_map.json that
    # transformers 4.x wrote (5.x no longer does).
    tj = json.loads((out_dir / "tokenizer.json").read_text(encoding="utf-8"))
    write_json(out_dir / "tokenizer.json", tj)
    tc = json.loads((out_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    extra = [f"<extra_id_{i}>" for i in range(N_EXTRA_IDS)]
    smap = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "additional_special_tokens": extra}
    write_json(out_dir / "special_tokens_map.json", smap)
    write_json(out_dir / "tokenizer_config.json", tc)
    return len(vocab)


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2, sort_keys=False)
        f.write("\n")


def floats(t):
    """Flat row-major list of float32 values, each printed with 9 significant digits (enough to
    round-trip a float32 exactly)."""
    arr = t.detach().to(torch.float32).contiguous().view(-1).numpy()
    return [float("%.9g" % v) for v in arr.tolist()]


def _escape_invisible(text):
    """json.dumps(ensure_ascii=False) keeps non-ASCII readable; escape only characters that are
    invisible or easily mangled by editors (format/control chars, exotic spaces, combining marks)."""
    out = []
    for ch in text:
        if ord(ch) > 0x7F and unicodedata.category(ch) in ("Cf", "Cc", "Zs", "Zl", "Zp", "Mn"):
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def write_expected(path, exp):
    """One entry per line so the file stays diffable without ballooning."""
    parts = ["{"]
    keys = list(exp)
    for k_i, k in enumerate(keys):
        v = exp[k]
        comma = "," if k_i + 1 < len(keys) else ""
        if isinstance(v, list):
            parts.append(f"{json.dumps(k)}: [")
            for e_i, e in enumerate(v):
                c = "," if e_i + 1 < len(v) else ""
                parts.append("  " + _escape_invisible(json.dumps(e, ensure_ascii=False, separators=(",", ":"))) + c)
            parts.append("]" + comma)
        else:
            parts.append(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}{comma}")
    parts.append("}")
    text = "\n".join(parts) + "\n"
    assert json.loads(text) == exp
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Texts
# --------------------------------------------------------------------------------------------

TOKENIZATION_TEXTS = [
    "Hello world!",
    "translate English to German: The house is wonderful.",
    "The café in Zürich serves crème brûlée; Grüße, Jürgen.",
    "Multiple   spaces\tand\ttabs\nnew lines\n\nand a carriage\r\nreturn.",
    "   leading and trailing spaces   ",
    "Numbers: 3.14159, 42, 1,000,000 and 2024-01-31 (v2.0).",
    "CJK 日本語のテキスト and 中文, emoji 😀👍🏽 done.",
    "Full-width ＡＢＣ１２３, ﬁligree ﬂow… e\u0301 u\u0308, zero\u200bwidth\u00a0nbsp.",
    "Don't stop-believing; it's \"quoted\" [brackets] {braces} <angle> #hash @at $5 50% a&b ~x^y|z",
    "The <extra_id_0> walks in <extra_id_1> park </s> tail",
    "",
    "a",
]

LONG_TEXT = (
    "The tower is 324 metres (1,063 ft) tall, about the same height as an 81-storey building, and "
    "the tallest structure in Paris. Its base is square, measuring 125 metres (410 ft) on each side. "
    "It was the first structure to reach a height of 300 metres, and it is now taller than the "
    "Chrysler Building by 5.2 metres (17 ft)."
)

GEN_TEXTS = [
    "translate English to German: How old are you?",
    "summarize: The quick brown fox jumps over the lazy dog.",
    "",  # -> [</s>] : a 1-token input
    "Hello world!",
    "translate English to French: The weather is nice today, isn't it?",
    "question: What does the model return? context: It returns a list of generated ids.",
    LONG_TEXT,
]

from t5_task_params import TASK_SPECIFIC_PARAMS  # noqa: E402

# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

MODELS = {
    "t5-v1_0-tiny": dict(
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        d_model=64,
        d_kv=16,
        num_heads=4,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=64,
    ),
    "t5-v1_1-tiny": dict(
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        d_model=64,
        d_kv=16,
        num_heads=4,
        d_ff=96,
        num_layers=2,
        num_decoder_layers=3,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
    ),
}

# Random-weight tuning (see tune_weights). Found by a small grid search over seeds and the three
# scales so that the properties asserted in check_properties hold; changing any of them changes
# every expected output.
TUNING = {
    "t5-v1_0-tiny": dict(seed=1007, initializer_factor=2.0, emb_scale=0.2, eos_scale=2.0),
    "t5-v1_1-tiny": dict(seed=1103, initializer_factor=2.0, emb_scale=1.0, eos_scale=1.75),
}


def make_model(name, vocab_size):
    spec = dict(MODELS[name])
    tune = TUNING[name]
    tie = spec.pop("tie_word_embeddings")
    cfg = T5Config(
        vocab_size=vocab_size,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        initializer_factor=tune["initializer_factor"],
        task_specific_params=TASK_SPECIFIC_PARAMS,
        tie_word_embeddings=tie,
        **spec,
    )
    torch.manual_seed(tune["seed"])
    model = T5ForConditionalGeneration(cfg)
    if not tie:
        # transformers 5.x always ties lm_head to shared; give the v1.1 model its own head
        # (initialised like T5's _init_weights does for an untied head) and stop treating it as tied
        # so save_pretrained writes lm_head.weight.
        g = torch.Generator().manual_seed(tune["seed"] + 1)
        w = torch.randn(vocab_size, cfg.d_model, generator=g) * tune["initializer_factor"]
        model.lm_head.weight = torch.nn.Parameter(w)
        model.all_tied_weights_keys.pop("lm_head.weight", None)
        assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    tune_weights(model, tune)
    return model.eval()


@torch.no_grad()
def tune_weights(model, tune):
    """Make the random model's generations non-degenerate (see TUNING):
    - `initializer_factor` > 1 sharpens attention (T5's default init gives near-uniform attention
      and a tiny relative position bias, so every decoding step looks alike and greedy repeats
      one token forever);
    - `emb_scale` < 1 shrinks the token embeddings relative to the layer outputs, so the residual
      stream is not dominated by the input token (with tied embeddings that makes the model predict
      its own input, i.e. repeat the decoder start token 0);
    - `eos_scale` > 1 scales the EOS row of the output layer (for the tied v1.0 model this is also
      the </s> input embedding), so EOS wins sometimes but not always."""
    model.shared.weight.mul_(tune["emb_scale"])
    model.lm_head.weight[1].mul_(tune["eos_scale"])


def fix_decoder_cache(model):
    """transformers 5.23 bug: generate() sizes its KV cache from
    `config.get_text_config(decoder=True).num_hidden_layers`, which for T5 is `num_layers` (the
    encoder depth; T5 calls the decoder depth `num_decoder_layers`, which that lookup does not
    recognise). With num_decoder_layers > num_layers the cached generate() dies with IndexError in
    cache_utils. Work around it on the in-memory model only (never saved): a `decoder_layers`
    attribute is what get_text_config maps to num_hidden_layers. Cached results are checked against
    use_cache=False runs, which do not involve the cache."""
    if model.config.num_decoder_layers != model.config.num_layers:
        model.config.decoder_layers = model.config.num_decoder_layers
        model.generation_config.use_cache = True
    return model


def fix_config_json(folder, tie):
    """transformers 5.x writes `tie_word_embeddings: true` + `scale_decoder_outputs` for every T5;
    real checkpoints (and older transformers) use `tie_word_embeddings` alone, which is what a v1.1
    checkpoint needs to load untied and unscaled. Rewrite config.json to that form."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg.pop("scale_decoder_outputs", None)
    cfg["tie_word_embeddings"] = tie
    write_json(path, dict(sorted(cfg.items())))


def save_model(model, folder, tie, dtype=torch.float32):
    m = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
    m.save_pretrained(folder)  # safetensors, single file at this size
    fix_config_json(folder, tie)
    files = sorted(p.name for p in folder.iterdir())
    assert "model.safetensors" in files and "generation_config.json" in files, files
    with safe_open(folder / "model.safetensors", "pt") as f:
        keys = set(f.keys())
        if not tie:
            assert "lm_head.weight" in keys and "shared.weight" in keys
            assert not torch.equal(f.get_tensor("lm_head.weight"), f.get_tensor("shared.weight"))
        sd = model.state_dict()
        for k in keys:
            t = f.get_tensor(k)
            assert t.dtype == dtype, (k, t.dtype)
            assert torch.equal(t, sd[k].to(dtype)), k  # bf16: round-to-nearest-even of the f32 weights


# --------------------------------------------------------------------------------------------
# Reference outputs
# --------------------------------------------------------------------------------------------


def strip_output(row):
    """HF pads rows that finished early: greedy/sampling with pad_token_id (0), but beam search with
    EOS (1), because transformers computes its fill value as `pad_token_id or eos_token_id[0]` and
    T5's pad id 0 is falsy. Position 0 is the decoder start token (also 0) and stays. Cut right
    after the first EOS; assert that only one kind of filler follows it and that no 0 was generated
    before it (which would make the stripping ambiguous)."""
    row = list(row)
    assert row[0] == 0, row
    if 1 in row[1:]:
        e = row.index(1, 1)
        tail = set(row[e + 1 :])
        assert tail <= {0} or tail <= {1}, row
        row = row[: e + 1]
    assert 0 not in row[1:], f"model generated the pad/start token: {row}"
    return row


def pad_batch(rows):
    n = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (n - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows])
    return ids, mask


class Runner:
    def __init__(self, model, tok):
        self.model = model
        self.tok = tok
        self.cases = []
        self.by_name = {}
        self.margins = {}

    def ids(self, text):
        return self.tok(text).input_ids

    @torch.no_grad()
    def generate(self, rows, kwargs, name=None):
        ids, mask = pad_batch(rows)
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, return_dict_in_generate=True, output_scores=True, **kwargs
        )
        if kwargs.get("num_beams", 1) == 1 and name is not None and out.scores:
            # Smallest gap between the best and second-best processed score along the greedy path:
            # a port with slightly different float rounding can only diverge where this is tiny.
            gaps = []
            for step in out.scores:
                top = step.float().topk(2, dim=-1).values
                ok = torch.isfinite(top[:, 1])
                gaps += (top[ok, 0] - top[ok, 1]).tolist()
            if gaps:
                self.margins[name] = min(gaps)
        return [strip_output(r) for r in out.sequences.tolist()]

    def case(self, name, texts=None, rows=None, kwargs=None, record=True):
        if rows is None:
            rows = [self.ids(t) for t in texts]
        out = self.generate(rows, dict(kwargs), name if record else None)
        entry = {"name": name, "input_ids": rows}
        if texts is not None:
            entry["texts"] = list(texts)
        entry["kwargs"] = dict(kwargs)
        entry["output_ids"] = out
        if record:
            assert name not in self.by_name, name
            self.cases.append(entry)
            self.by_name[name] = entry
        return out


def tokenization_section(tok, raw):
    out = []
    for text in TOKENIZATION_TEXTS:
        ids = tok(text).input_ids
        raw_ids = raw.encode(text).ids
        assert ids == raw_ids, f"AutoTokenizer and tokenizer.json disagree on {text!r}: {ids} vs {raw_ids}"
        out.append({"text": text, "ids": ids})
    return out


def decoded_section(tok, raw, gen_rows):
    lists = [
        tok("Hello world!").input_ids,
        tok("The café in Zürich serves crème brûlée; Grüße, Jürgen.").input_ids,
        tok("CJK 日本語のテキスト and 中文, emoji 😀👍🏽 done.").input_ids,  # contains <unk>
        [0] + tok("translate English to German: The house is wonderful.").input_ids + [0, 0],
        tok("The <extra_id_0> walks in <extra_id_1> park </s> tail").input_ids,
        tok("Numbers: 3.14159, 42, 1,000,000 and 2024-01-31 (v2.0).").input_ids,
        [],
    ] + gen_rows
    out = []
    for ids in lists:
        text = tok.decode(ids, skip_special_tokens=True)
        raw_text = raw.decode(ids, skip_special_tokens=True)
        assert text == raw_text, f"decode differs for {ids}: {text!r} vs {raw_text!r}"
        out.append({"ids": ids, "text": text})
    return out


@torch.no_grad()
def encoder_section(model, tok):
    out = []
    texts_list = [
        ["translate English to German: The house is wonderful."],
        ["Hello world!", "The café in Zürich serves crème brûlée; Grüße, Jürgen."],  # padded batch
        [LONG_TEXT[:130]],  # > 64 tokens = relative_attention_max_distance of v1.0
    ]
    for texts in texts_list:
        rows = [tok(t).input_ids for t in texts]
        ids, mask = pad_batch(rows)
        h = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        out.append(
            {
                "texts": texts,
                "input_ids": ids.tolist(),
                "attention_mask": mask.tolist(),
                "shape": list(h.shape),
                "hidden_states": floats(h),
            }
        )
    return out


@torch.no_grad()
def decoder_logits_section(model, tok):
    out = []
    specs = [
        (["translate English to German: How old are you?"], [[0, 37, 112, 5, 1]]),
        (["Hello world!", "summarize: The quick brown fox jumps over the lazy dog."], [[0, 9, 250], [0, 4, 4]]),
    ]
    for texts, dec in specs:
        rows = [tok(t).input_ids for t in texts]
        ids, mask = pad_batch(rows)
        dec_ids = torch.tensor(dec)
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids, use_cache=False).logits
        out.append(
            {
                "texts": texts,
                "input_ids": ids.tolist(),
                "attention_mask": mask.tolist(),
                "decoder_input_ids": dec,
                "shape": list(logits.shape),
                "logits": floats(logits),
            }
        )
    return out


GREEDY20 = {"max_length": 20}
BEAM = {"num_beams": 4, "length_penalty": 2.0, "no_repeat_ngram_size": 3, "early_stopping": True, "max_length": 30}


def generate_section(r, full=True):
    """All generate cases. `full=False` (bf16 copy): greedy + beam only."""
    singles = {}
    for i, text in enumerate(GEN_TEXTS):
        singles[i] = r.case(f"greedy_{i}", texts=[text], kwargs=GREEDY20)[0]
    beams = {}
    for i, text in enumerate(GEN_TEXTS[:4] if full else GEN_TEXTS[:2]):
        beams[i] = r.case(f"beam4_{i}", texts=[text], kwargs=BEAM)[0]
    if not full:
        return singles, beams

    t = GEN_TEXTS[0]
    t1 = GEN_TEXTS[1]
    # 3. early_stopping variants
    r.case("beam3_early_false", texts=[t], kwargs={"num_beams": 3, "early_stopping": False, "max_length": 20})
    r.case("beam3_early_never", texts=[t], kwargs={"num_beams": 3, "early_stopping": "never", "max_length": 20})
    r.case("beam3_early_false_1", texts=[t1], kwargs={"num_beams": 3, "early_stopping": False, "max_length": 20})
    r.case("beam3_early_never_1", texts=[t1], kwargs={"num_beams": 3, "early_stopping": "never", "max_length": 20})
    # 4. num_return_sequences
    r.case("beam4_return2", texts=[t], kwargs={"num_beams": 4, "num_return_sequences": 2, "max_length": 20})
    r.case(
        "beam4_return2_batch2",
        texts=[t, t1],
        kwargs={"num_beams": 4, "num_return_sequences": 2, "max_length": 20},
    )
    # 5. length edges
    r.case("greedy_min_length25", texts=[t], kwargs={"min_length": 25, "max_length": 30})
    r.case("beam4_min_length25", texts=[t], kwargs={"num_beams": 4, "min_length": 25, "max_length": 30})
    r.case("greedy_max_new_tokens5", texts=[t], kwargs={"max_new_tokens": 5})
    r.case("greedy_max_length2", texts=[t], kwargs={"max_length": 2})
    r.case("beam4_max_length2", texts=[t], kwargs={"num_beams": 4, "max_length": 2})
    # 6. batches of different lengths (right-padded by the caller)
    bt = [GEN_TEXTS[4], GEN_TEXTS[2], GEN_TEXTS[0]]
    batch_g = r.case("greedy_batch3", texts=bt, kwargs=GREEDY20)
    batch_b = r.case("beam4_batch3", texts=bt, kwargs=BEAM)
    for j, text in enumerate(bt):
        single_g = singles[GEN_TEXTS.index(text)]
        single_b = r.case(f"_beam_single_{j}", texts=[text], kwargs=BEAM, record=False)[0]
        assert batch_g[j] == single_g, f"greedy batch row {j} != single: {batch_g[j]} vs {single_g}"
        assert batch_b[j] == single_b, f"beam batch row {j} != single: {batch_b[j]} vs {single_b}"
    # 7. logits processors. Inputs are picked from the greedy results so that each processor
    # actually changes something: `t_lim` runs to max_length (repeats tokens, never emits EOS
    # before 20), `t_eos` emits EOS soonest.
    i_lim = next(i for i, o in singles.items() if len(o) == 20 and o[-1] != 1)
    i_eos = min(singles, key=lambda i: (len(singles[i]) if singles[i][-1] == 1 else 99, i))
    t_lim, t_eos = GEN_TEXTS[i_lim], GEN_TEXTS[i_eos]
    r.case("greedy_min_new_tokens3", texts=[t_eos], kwargs={"min_new_tokens": 3, "max_length": 20})
    r.case("greedy_min_length5", texts=[t_eos], kwargs={"min_length": 5, "max_length": 20})
    r.case("greedy_repetition_penalty", texts=[t_lim], kwargs={"repetition_penalty": 1.3, "max_length": 20})
    g0 = singles[0]
    bad = sorted({g0[1], g0[2]})
    bad_out = r.case("greedy_bad_words", texts=[t], kwargs={"bad_words_ids": [[x] for x in bad], "max_length": 20})
    assert not set(bad) & set(bad_out[0]), (bad, bad_out)
    r.case("greedy_bad_words_2gram", texts=[t], kwargs={"bad_words_ids": [[g0[1], g0[2]]], "max_length": 20})
    f_eos = r.case("greedy_forced_eos", texts=[t_lim], kwargs={"forced_eos_token_id": 1, "max_length": 10})
    assert len(f_eos[0]) == 10 and f_eos[0][-1] == 1 and singles[i_lim][9] != 1, f_eos
    f_bos = r.case("greedy_forced_bos", texts=[t], kwargs={"forced_bos_token_id": 42, "max_length": 10})
    assert f_bos[0][1] == 42, f_bos
    r.case(
        "beam4_forced_bos_eos",
        texts=[t_lim],
        kwargs={"num_beams": 4, "forced_bos_token_id": 42, "forced_eos_token_id": 1, "max_length": 10},
    )
    # 8. no cache must equal the cached runs
    for i, text in enumerate(GEN_TEXTS):
        record = i in (0, len(GEN_TEXTS) - 1)
        nc = r.case(f"greedy_no_cache_{i}", texts=[text], kwargs={**GREEDY20, "use_cache": False}, record=record)
        assert nc[0] == singles[i], (nc, singles[i])
    nc = r.case("beam4_no_cache_0", texts=[t], kwargs={**BEAM, "use_cache": False})[0]
    assert nc == beams[0], (nc, beams[0])
    # 9. the summarization pipeline's task defaults
    tsp = dict(r.model.config.task_specific_params["summarization"])
    prefix = tsp.pop("prefix")
    text = prefix + LONG_TEXT
    r.case("task_summarization", texts=[text], kwargs=tsp)
    return singles, beams


def check_properties(name, r, singles, beams, limit=20):
    """The random weights must give non-degenerate outputs; fail loudly otherwise."""
    outs = list(singles.values())
    problems = []
    for i, o in singles.items():
        gen = o[1:]
        if len(gen) >= 4 and len(set(gen)) < 3:
            problems.append(f"greedy_{i} is degenerate: {o}")
    if len({tuple(o) for o in outs}) < len(outs) - 1:
        problems.append("greedy outputs for different inputs are (mostly) identical")
    ended = [o for o in outs if o[-1] == 1 and len(o) < limit]
    at_limit = [o for o in outs if len(o) == limit and o[-1] != 1]
    if not ended:
        problems.append("no greedy generation ends with EOS before max_length")
    if not at_limit:
        problems.append("no greedy generation reaches max_length")
    if not any(beams[i] != singles[i] for i in beams):
        problems.append("beam search never differs from greedy")
    if problems:
        for k, o in singles.items():
            print(f"  greedy_{k}: {o}", file=sys.stderr)
        for k, o in beams.items():
            print(f"  beam4_{k}: {o}", file=sys.stderr)
        raise SystemExit(f"{name}: random-weight properties not met:\n  " + "\n  ".join(problems))
    return len(ended), len(at_limit)


@torch.no_grad()
def build_fixture(name, folder, tok_dir, model, tie, dtype, full):
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tok_dir / f, folder / f)
    save_model(model, folder, tie, dtype)

    # Everything below uses the model as reloaded from the folder.
    tok = AutoTokenizer.from_pretrained(folder)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    loaded = T5ForConditionalGeneration.from_pretrained(folder)
    assert loaded.dtype == dtype, loaded.dtype
    loaded = fix_decoder_cache(loaded.float().eval())
    assert loaded.config.scale_decoder_outputs == tie, "config.json does not round-trip tie/scale"

    # Saved-and-reloaded logits must equal the in-memory model's (exactly for f32).
    ids, mask = pad_batch([tok("Hello world!").input_ids, tok(GEN_TEXTS[0]).input_ids])
    dec = torch.tensor([[0, 5, 9], [0, 7, 11]])
    before = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    after = loaded(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    if dtype == torch.float32:
        assert torch.equal(before, after), f"{name}: reloaded logits differ"
        if not tie:
            assert not torch.equal(loaded.lm_head.weight, loaded.shared.weight), "reloaded lm_head got tied"

    r = Runner(loaded, tok)
    exp = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "tokenization": tokenization_section(tok, raw),
    }
    enc = encoder_section(loaded, tok)
    dl = decoder_logits_section(loaded, tok)
    singles, beams = generate_section(r, full=full)
    n_end, n_lim = check_properties(name, r, singles, beams)
    gen_rows = [singles[0], singles[3]]
    exp["decoded"] = decoded_section(tok, raw, gen_rows)
    exp["encoder"] = enc
    exp["decoder_logits"] = dl
    exp["generate"] = r.cases
    write_expected(folder / "expected.json", exp)

    print(f"\n== {name} ({str(dtype).replace('torch.', '')}, vocab {loaded.config.vocab_size}) ==")
    print(f"greedy (max_length 20): {n_end} end with EOS early, {n_lim} hit the limit")
    worst = min(r.margins, key=r.margins.get)
    print(f"smallest top-1/top-2 score gap on a recorded greedy path: {r.margins[worst]:.3g} ({worst})")
    for c in r.cases:
        outs = c["output_ids"]
        shown = " | ".join(" ".join(map(str, o)) for o in outs)
        if len(shown) > 150:
            shown = shown[:147] + "..."
        print(f"  {c['name']:<26} {shown}")
        if c["name"] in ("greedy_0", "task_summarization"):
            print(f"  {'':<26} -> {tok.decode(outs[0], skip_special_tokens=True)!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp)
        n_tok = build_tokenizer(tok_dir)
        vocab_size = (n_tok + 7) // 8 * 8
        assert vocab_size > n_tok
        print(f"tokenizer: {n_tok} tokens; model vocab_size {vocab_size}")

        m10 = make_model("t5-v1_0-tiny", vocab_size)
        build_fixture("t5-v1_0-tiny", args.out / "t5-v1_0-tiny", tok_dir, m10, True, torch.float32, True)
        build_fixture("t5-v1_0-tiny-bf16", args.out / "t5-v1_0-tiny-bf16", tok_dir, m10, True, torch.bfloat16, False)
        m11 = make_model("t5-v1_1-tiny", vocab_size)
        build_fixture("t5-v1_1-tiny", args.out / "t5-v1_1-tiny", tok_dir, m11, False, torch.float32, True)

    # Encoder fixtures (BERT, sentence-transformers) live in their own module.
    import encoder_fixtures

    encoder_fixtures.build_all(args.out)
    __import__("gen_decoder_fixtures").build_all(args.out)  # decoder-only LMs (+ GGUF) likewise

    print(f"\ndone in {time.time() - T0:.1f}s")
    for d in sorted(args.out.iterdir()):
        if d.name.startswith(("t5-", "bert-")):
            for f in sorted(d.iterdir()):
                print(f"  {f.relative_to(args.out)}  {f.stat().st_size:,} B")


if __name__ == "__main__":
    main()
