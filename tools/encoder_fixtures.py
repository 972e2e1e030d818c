"""Tiny BERT fixtures for the encoder tests (called by gen_fixtures.py; importable on its own).

Writes under tests/fixtures/:
  bert-tiny-st/   a sentence-transformers folder (modules.json: Transformer -> mean Pooling ->
                  Normalize; sentence_bert_config.json max_seq_length 24) around a random-weight
                  BertModel (keys without prefix, pooler included), with expected.json:
                  tokenization, hidden states and pooler output (single and padded batch),
                  sentence embeddings (batch and single), other pooling modes, similarity ranking
  bert-tiny-cls/  BertForSequenceClassification with the same trunk (keys under `bert.`), 3 labels,
                  with expected.json: logits
  bert-tiny-ner/, bert-tiny-mlm/  token-classification and masked-LM heads on the same trunk, with
                  the transformers pipelines' outputs
  distilbert-tiny-cls/, distilbert-tiny-mlm/  DistilBERT classification and masked-LM heads on one
                  random trunk: hidden states, logits, fill-mask outputs
  roberta-tiny-cls/  RobertaForSequenceClassification with a byte-level BPE tokenizer: hidden
                  states, logits
  roberta-tiny-ner/, roberta-tiny-mlm/  RoBERTa token-classification and masked-LM heads with
                  the same tokenizer: hidden states, token / mask logits, pipeline outputs
  distilbert-tiny-ner/  DistilBertForTokenClassification on the WordPiece tokenizer
  xlm-roberta-tiny-cls/, -ner/, -mlm/  model_type "xlm-roberta" with an XLM-R style Unigram
                  tokenizer (sentencepiece, fairseq ids, <mask>); the NER checkpoint without the
                  `roberta.` prefix: hidden states, logits, classify / NER / fill-mask pipelines

The tokenizer is a real WordPiece tokenizer (BertNormalizer lowercasing, BertPreTokenizer,
[CLS] $A [SEP]) whose vocabulary is learned from the same corpus as the T5 tokenizer. The
`tokenizers` WordPieceTrainer breaks ties between equally frequent merges differently on every
run, so the vocabulary is learned here with the same algorithm (BPE merges over words, `##`
continuation pieces) and ties broken by string order: reruns give byte-identical files.
"""

import collections
import shutil
import tempfile
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForSequenceClassification,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    pipeline,
)

import gen_fixtures as g

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDPIECE_VOCAB = 640
MAX_SEQ_LENGTH = 24  # sentence_bert_config.json: shorter than some texts below (truncation)
SEED = 4242

BERT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
    hidden_act="gelu",
    initializer_range=0.2,
)

LABELS = {0: "negative", 1: "neutral", 2: "positive"}
NER_LABELS = {i: l for i, l in enumerate(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"])}

NER_TEXTS = [
    "My name is Wolfgang and I live in Berlin.",
    "Hugging Face Inc. is a company based in New York City.",
    "The café in Zürich serves crème brûlée.",
    "東京 tower, generation_config and beam-search!",
]
AGGREGATIONS = ["none", "simple", "first", "average", "max"]

MASK_TEXTS = [
    "The capital of France is [MASK].",
    "Beam search keeps the [MASK] likely sequences.",
    "[MASK] is a [MASK] test.",
]

TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar.",
    "Someone plays the guitar on stage.",
    "The café in Zürich serves crème brûlée.",
    "Multiple   spaces\tand\ttabs\nnew lines.",
    "Beam search keeps the most likely sequences at each step of generation.",
    "東京 is the capital of Japan 🗼",
    g.LONG_TEXT,  # longer than MAX_SEQ_LENGTH: truncated
    "x",
]

QUERY = "A person plays music on a guitar."


def learn_wordpiece(corpus, vocab_size):
    """WordPiece vocabulary by BPE merges (tokenizers' WordPieceTrainer algorithm), ties broken
    by the merged pair's strings so the result is deterministic."""
    norm = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words = collections.Counter()
    for line in corpus:
        for w, _ in pre.pre_tokenize_str(norm.normalize_str(line)):
            words[w] += 1
    splits = {w: [w[0]] + ["##" + c for c in w[1:]] for w in words}
    alphabet = sorted({p for s in splits.values() for p in s})
    vocab = SPECIALS + alphabet
    known = set(vocab)
    while len(vocab) < vocab_size:
        pairs = collections.Counter()
        for w, n in words.items():
            s = splits[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        (a, b), _ = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        merged = a + b[2:]
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
        for w, s in splits.items():
            if len(s) < 2:
                continue
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            splits[w] = out
    return {p: i for i, p in enumerate(vocab)}


def learn_bytelevel_bpe(corpus, vocab_size):
    """Byte-level BPE (GPT-2 / RoBERTa style) merges learned deterministically: the most frequent
    pair first, ties broken by the pair's strings. Returns (vocab dict, merges list)."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    words = collections.Counter()
    for line in corpus:
        for w, _ in pre.pre_tokenize_str(line):
            words[w] += 1
    splits = {w: list(w) for w in words}
    vocab = ["<s>", "<pad>", "</s>", "<unk>"] + sorted(pre_tokenizers.ByteLevel.alphabet())
    known, merges = set(vocab), []
    while len(vocab) < vocab_size - 1:
        pairs = collections.Counter()
        for w, n in words.items():
            s = splits[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        (a, b), _ = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        merges.append((a, b))
        if a + b not in known:
            known.add(a + b)
            vocab.append(a + b)
        for w, s in splits.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            splits[w] = out
    vocab.append("<mask>")
    return {p: i for i, p in enumerate(vocab)}, merges


def build_tokenizer(out_dir):
    vocab = learn_wordpiece(g.training_corpus(), WORDPIECE_VOCAB)
    tok = transformers.BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512)
    tok.save_pretrained(out_dir)
    tj = Tokenizer.from_file(str(out_dir / "tokenizer.json"))
    g.write_json(out_dir / "tokenizer.json", __import__("json").loads(tj.to_str()))
    return len(vocab)


@torch.no_grad()
def make_trunk(vocab_size):
    cfg = BertConfig(vocab_size=vocab_size, pad_token_id=0, **BERT)
    torch.manual_seed(SEED)
    model = BertModel(cfg).eval()
    # LayerNorms start at weight 1 / bias 0; perturb them so a missing scale or shift shows.
    for name, p in model.named_parameters():
        if "LayerNorm" in name:
            p.add_(torch.randn_like(p) * 0.2)
    return model


def pad(rows):
    n = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (n - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows])
    return ids, mask


def st_encode(st, texts, batch_size):
    return st.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=False)


@torch.no_grad()
def build_st(out, tok_dir, trunk):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    folder = out / "bert-tiny-st"
    if folder.exists():
        shutil.rmtree(folder)
    with tempfile.TemporaryDirectory() as tmp:
        hf = Path(tmp) / "hf"
        trunk.save_pretrained(hf)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(tok_dir / f, hf / f)
        modules = [Transformer(str(hf), max_seq_length=MAX_SEQ_LENGTH), Pooling(BERT["hidden_size"], "mean"), Normalize()]
        SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    (folder / "README.md").unlink(missing_ok=True)
    for p in sorted(folder.rglob("*.json")):
        g.write_json(p, __import__("json").loads(p.read_text(encoding="utf-8")))

    st = SentenceTransformer(str(folder), device="cpu")
    tok = AutoTokenizer.from_pretrained(folder)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    model = BertModel.from_pretrained(folder).eval()
    exp = {"torch_version": torch.__version__, "transformers_version": transformers.__version__}

    # Tokenization as sentence-transformers does it (truncation to max_seq_length).
    feats = [st.tokenize([t]) for t in TEXTS]
    rows = [f["input_ids"][0].tolist() for f in feats]
    tokenization = []
    for t, r in zip(TEXTS, rows):
        full = tok(t).input_ids
        assert raw.encode(t).ids == full, t  # tokenizer.json alone tokenizes like transformers
        tokenization.append({"text": t, "ids": r, "truncated": len(full) > len(r)})
    assert any(x["truncated"] for x in tokenization)
    exp["tokenization"] = tokenization

    # Hidden states and pooler output: each text alone, then one padded batch of them all.
    hidden = []
    for name, batch in [("single_0", [rows[0]]), ("single_8", [rows[8]]), ("batch", rows)]:
        ids, mask = pad(batch)
        o = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
        hidden.append({
            "name": name,
            "input_ids": ids.tolist(),
            "attention_mask": mask.tolist(),
            "shape": list(o.last_hidden_state.shape),
            "hidden_states": g.floats(o.last_hidden_state),
            "pooler_output": g.floats(o.pooler_output),
        })
    exp["hidden"] = hidden

    batch = st_encode(st, TEXTS, len(TEXTS))
    single = torch.cat([st_encode(st, [t], 1) for t in TEXTS])
    assert (batch - single).abs().max() < 1e-5
    exp["embeddings"] = [g.floats(r) for r in batch]

    pooled = []
    for mode in ["cls", "max", "mean_sqrt_len_tokens", "lasttoken", ("cls", "mean")]:
        mods = [Transformer(str(folder), max_seq_length=MAX_SEQ_LENGTH), Pooling(BERT["hidden_size"], mode)]
        plain = SentenceTransformer(modules=mods, device="cpu")
        emb = st_encode(plain, TEXTS, len(TEXTS))
        pooled.append({"pooling": list(mode) if isinstance(mode, tuple) else [mode], "embeddings": [g.floats(r) for r in emb]})
    exp["pooling"] = pooled

    q = st_encode(st, [QUERY], 1)
    scores = st.similarity(q, batch)[0]
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    exp["similarity"] = [{"query": QUERY, "scores": g.floats(scores), "ranking": order}]
    g.write_expected(folder / "expected.json", exp)
    print(f"\n== bert-tiny-st: {len(TEXTS)} texts, ranking {order}")
    return folder


@torch.no_grad()
def build_cls(out, tok_dir, trunk):
    folder = out / "bert-tiny-cls"
    if folder.exists():
        shutil.rmtree(folder)
    cfg = BertConfig(
        vocab_size=trunk.config.vocab_size,
        pad_token_id=0,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
        **BERT,
    )
    torch.manual_seed(SEED + 1)
    model = BertForSequenceClassification(cfg).eval()
    model.bert.load_state_dict(trunk.state_dict())
    model.save_pretrained(folder)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / f, folder / f)
    g.write_json(folder / "config.json", __import__("json").loads((folder / "config.json").read_text()))

    tok = AutoTokenizer.from_pretrained(folder)
    loaded = BertForSequenceClassification.from_pretrained(folder).eval()
    enc = tok(TEXTS, padding=True, truncation=True, max_length=BERT["max_position_embeddings"], return_tensors="pt")
    logits = loaded(**enc).logits
    exp = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "logits": [{"text": t, "logits": g.floats(r)} for t, r in zip(TEXTS, logits)],
    }
    g.write_expected(folder / "expected.json", exp)
    print(f"== bert-tiny-cls: labels {[LABELS[i] for i in logits.argmax(-1).tolist()]}")


def plain(obj):
    """Pipeline outputs with numpy scalars as Python numbers (scores as 9-digit floats)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if hasattr(obj, "item"):
        obj = obj.item()
    if isinstance(obj, float):
        return float("%.9g" % obj)
    return obj


def save_head_model(folder, model, tok_dir):
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / f, folder / f)
    g.write_json(folder / "config.json", __import__("json").loads((folder / "config.json").read_text()))


def bert_config(vocab_size, **extra):
    return BertConfig(vocab_size=vocab_size, pad_token_id=0, **BERT, **extra)


@torch.no_grad()
def build_ner(out, tok_dir, trunk):
    folder = out / "bert-tiny-ner"
    cfg = bert_config(trunk.config.vocab_size, id2label=NER_LABELS, label2id={v: k for k, v in NER_LABELS.items()})
    torch.manual_seed(SEED + 2)
    model = BertForTokenClassification(cfg).eval()
    model.bert.load_state_dict(trunk.state_dict(), strict=False)
    model.classifier.weight.normal_(0, 1.0)
    model.classifier.bias[0] += 1.5  # "O" on roughly a third of the tokens
    save_head_model(folder, model, tok_dir)
    exp = {"torch_version": torch.__version__, "transformers_version": transformers.__version__}
    loaded = BertForTokenClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    for t in NER_TEXTS:  # every token's best label must win clearly (stable under f32 noise)
        top = loaded(**tok(t, return_tensors="pt")).logits[0].softmax(-1).topk(2).values
        assert (top[:, 0] - top[:, 1]).min() > 1e-3, t
    cases = []
    for agg in AGGREGATIONS:
        ner = pipeline("token-classification", model=str(folder), aggregation_strategy=agg, device="cpu")
        cases.append({"aggregation": agg, "outputs": [plain(ner(t)) for t in NER_TEXTS]})
    exp["texts"] = NER_TEXTS
    exp["ner"] = cases
    g.write_expected(folder / "expected.json", exp)
    n = [len(e) for e in cases[0]["outputs"]]
    print(f"== bert-tiny-ner: {sum(n)} tagged tokens (aggregation none)")


@torch.no_grad()
def build_mlm(out, tok_dir, trunk):
    folder = out / "bert-tiny-mlm"
    torch.manual_seed(SEED + 3)
    model = BertForMaskedLM(bert_config(trunk.config.vocab_size)).eval()
    model.bert.load_state_dict(trunk.state_dict(), strict=False)
    model.cls.predictions.bias.normal_(0, 2.0)  # spread the logits: clear top-k order
    save_head_model(folder, model, tok_dir)
    loaded = BertForMaskedLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    for t in MASK_TEXTS:
        enc = tok(t, return_tensors="pt")
        logits = loaded(**enc).logits[0][enc.input_ids[0] == tok.mask_token_id]
        top = logits.softmax(-1).topk(6).values
        assert (top[:, :-1] - top[:, 1:]).min() > 1e-5, t
    fill = pipeline("fill-mask", model=str(folder), device="cpu")
    exp = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "fill_mask": [{"text": t, "top_k": 5, "outputs": plain(fill(t, top_k=5))} for t in MASK_TEXTS],
    }
    g.write_expected(folder / "expected.json", exp)
    print(f"== bert-tiny-mlm: {exp['fill_mask'][0]['outputs'][0]['token_str']!r} first for {MASK_TEXTS[0]!r}")


ROBERTA = dict(BERT, max_position_embeddings=42, type_vocab_size=1, layer_norm_eps=1e-5)


@torch.no_grad()
def build_roberta(out):
    """roberta-tiny-cls: RobertaForSequenceClassification (keys under `roberta.`, positions after
    padding_idx 1, no pooler) with a byte-level BPE tokenizer."""
    folder = out / "roberta-tiny-cls"
    if folder.exists():
        shutil.rmtree(folder)
    vocab, merges = learn_bytelevel_bpe(g.training_corpus(), 700)
    tok = transformers.RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=40)
    cfg = RobertaConfig(
        vocab_size=len(vocab), pad_token_id=1, bos_token_id=0, eos_token_id=2,
        id2label=LABELS, label2id={v: k for k, v in LABELS.items()}, **ROBERTA,
    )
    torch.manual_seed(SEED + 4)
    model = RobertaForSequenceClassification(cfg).eval()
    for name, p in model.named_parameters():
        if "LayerNorm" in name:
            p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        g.write_json(folder / f, __import__("json").loads((folder / f).read_text(encoding="utf-8")))

    tok = AutoTokenizer.from_pretrained(folder)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    loaded = RobertaForSequenceClassification.from_pretrained(folder).eval()
    rows = []
    for t in TEXTS:
        ids = tok(t, truncation=True, max_length=40).input_ids
        assert raw.encode(t).ids[: len(ids) - 1] == ids[:-1] or len(ids) == 40, t
        rows.append(ids)
    exp = {"torch_version": torch.__version__, "transformers_version": transformers.__version__}
    exp["tokenization"] = [{"text": t, "ids": r} for t, r in zip(TEXTS, rows)]
    hidden = []
    for name, batch in [("single_0", [rows[0]]), ("batch", rows)]:
        n = max(len(r) for r in batch)
        ids = torch.tensor([r + [1] * (n - len(r)) for r in batch])
        mask = (ids != 1).long()
        h = loaded.roberta(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden.append({"name": name, "input_ids": ids.tolist(), "attention_mask": mask.tolist(),
                       "shape": list(h.shape), "hidden_states": g.floats(h)})
    exp["hidden"] = hidden
    enc = tok(TEXTS, padding=True, truncation=True, max_length=40, return_tensors="pt")
    logits = loaded(**enc).logits
    exp["logits"] = [{"text": t, "logits": g.floats(r)} for t, r in zip(TEXTS, logits)]
    g.write_expected(folder / "expected.json", exp)
    print(f"== roberta-tiny-cls: vocab {len(vocab)}, labels {[LABELS[i] for i in logits.argmax(-1).tolist()]}")


# --------------------------------------------------------------------------------------------
# RoBERTa / XLM-RoBERTa heads: token classification and masked LM, plus XLM-R with a Unigram
# (SentencePiece) tokenizer.
# --------------------------------------------------------------------------------------------

ROBERTA_MASK_TEXTS = [t.replace("[MASK]", "<mask>") for t in MASK_TEXTS]
# Several spaces, a tab and a newline: SentencePiece-style tokenizers must split on whitespace
# runs first (transformers 5 rebuilds XLM-R's pre-tokenizer that way, whatever tokenizer.json says).
XLMR_NER_TEXTS = NER_TEXTS + ["Angela  Merkel\tvisited   Paris\nand London."]


def normalize_json_files(folder, names):
    for f in names:
        path = folder / f
        if path.exists():
            g.write_json(path, __import__("json").loads(path.read_text(encoding="utf-8")))


def perturb_layer_norms(model):
    for name, p in model.named_parameters():
        if "LayerNorm" in name or "layer_norm" in name:
            p.add_(torch.randn_like(p) * 0.2)


def strip_prefix(folder, prefix):
    """Rewrite model.safetensors with the trunk's keys at the root (no `roberta.`), as some
    checkpoints ship them; transformers adds the prefix back when loading a head model."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(path)
    assert any(k.startswith(prefix) for k in tensors)
    renamed = {k[len(prefix):] if k.startswith(prefix) else k: v.contiguous() for k, v in sorted(tensors.items())}
    save_file(renamed, path, metadata={"format": "pt"})


def save_family_model(folder, model, tok_dir, prefix=None):
    """save_pretrained + the tokenizer files of tok_dir; with `prefix`, the trunk keys are saved
    without it. Checks the reloaded model computes what the in-memory one does."""
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / f, folder / f)
    normalize_json_files(folder, ["config.json"])
    if prefix:
        strip_prefix(folder, prefix)
    loaded = type(model).from_pretrained(folder).eval()
    ids = torch.tensor([[0, 5, 6, 7, 8, 2]])
    a, b = model(input_ids=ids).logits, loaded(input_ids=ids).logits
    assert (a - b).abs().max() < 1e-6, f"{folder.name}: reloaded checkpoint differs: {(a - b).abs().max()}"
    return loaded


def hidden_cases(trunk, rows, pad_id):
    """Hidden states of the first text alone and of all texts in one padded batch."""
    out = []
    for name, batch in [("single_0", [rows[0]]), ("batch", rows)]:
        n = max(len(r) for r in batch)
        ids = torch.tensor([r + [pad_id] * (n - len(r)) for r in batch])
        mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in batch])
        h = trunk(input_ids=ids, attention_mask=mask).last_hidden_state
        out.append({"name": name, "input_ids": ids.tolist(), "attention_mask": mask.tolist(),
                    "shape": list(h.shape), "hidden_states": g.floats(h)})
    return out


def versions():
    return {"torch_version": torch.__version__, "transformers_version": transformers.__version__}


def encode_rows(tok, texts, max_length):
    return [tok(t, truncation=True, max_length=max_length).input_ids for t in texts]


@torch.no_grad()
def build_family_cls(folder, cls, tok_dir, texts, max_length, prefix=None):
    model = save_family_model(folder, cls, tok_dir, prefix)
    tok = AutoTokenizer.from_pretrained(folder)
    rows = encode_rows(tok, texts, max_length)
    exp = versions()
    exp["tokenization"] = [{"text": t, "ids": r} for t, r in zip(texts, rows)]
    exp["hidden"] = hidden_cases(model.roberta, rows, tok.pad_token_id)
    enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    logits = model(**enc).logits
    exp["logits"] = [{"text": t, "logits": g.floats(r)} for t, r in zip(texts, logits)]
    clf = pipeline("text-classification", model=str(folder), device="cpu", top_k=None)
    exp["classify"] = [{"text": t, "outputs": plain(o)} for t, o in zip(texts, clf(texts, truncation=True))]
    g.write_expected(folder / "expected.json", exp)
    print(f"== {folder.name}: labels {[LABELS[i] for i in logits.argmax(-1).tolist()]}")


@torch.no_grad()
def build_family_ner(folder, model, tok_dir, texts, max_length, prefix=None, center=False):
    """Token classifier; with `center`, the classifier sees the hidden states' deviation from
    their mean over the texts (scaled to logit std 3), for trunks whose random hidden states
    share one dominant direction (every token would get the same label)."""
    tok = AutoTokenizer.from_pretrained(tok_dir)
    rows = encode_rows(tok, texts, max_length)
    model.classifier.weight.normal_(0, 1.0)
    if center:
        h = torch.cat([model.base_model(input_ids=torch.tensor([r])).last_hidden_state[0] for r in rows])
        model.classifier.weight.mul_(3.0 / ((h - h.mean(0)) @ model.classifier.weight.T).std())
        model.classifier.bias.copy_(-(h.mean(0) @ model.classifier.weight.T))
    model.classifier.bias[0] += 1.5  # "O" on roughly a third of the tokens
    loaded = save_family_model(folder, model, tok_dir, prefix)
    tok = AutoTokenizer.from_pretrained(folder)
    assert encode_rows(tok, texts, max_length) == rows
    for t, r in zip(texts, rows):  # every token's best label must win clearly (stable under f32 noise)
        top = loaded(input_ids=torch.tensor([r])).logits[0].softmax(-1).topk(2).values
        assert (top[:, 0] - top[:, 1]).min() > 1e-3, t
    exp = versions()
    exp["tokenization"] = [{"text": t, "ids": r} for t, r in zip(texts, rows)]
    exp["hidden"] = hidden_cases(loaded.base_model, rows, tok.pad_token_id)
    n = max(len(r) for r in rows)
    ids = torch.tensor([r + [tok.pad_token_id] * (n - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows])
    logits = loaded(input_ids=ids, attention_mask=mask).logits
    exp["token_logits"] = [{"text": t, "shape": [len(r), logits.shape[-1]], "logits": g.floats(l[: len(r)])}
                           for t, r, l in zip(texts, rows, logits)]
    cases = []
    import warnings

    for agg in AGGREGATIONS:
        ner = pipeline("token-classification", model=str(folder), aggregation_strategy=agg, device="cpu")
        with warnings.catch_warnings():  # "Tokenizer does not support real words, using fallback heuristic"
            warnings.simplefilter("ignore")
            cases.append({"aggregation": agg, "outputs": [plain(ner(t)) for t in texts]})
    exp["texts"] = texts
    exp["ner"] = cases
    g.write_expected(folder / "expected.json", exp)
    counts = {c["aggregation"]: sum(len(e) for e in c["outputs"]) for c in cases}
    print(f"== {folder.name}: entities per aggregation {counts}")


@torch.no_grad()
def build_family_mlm(folder, model, tok_dir, texts, max_length, prefix=None):
    model.lm_head.bias.normal_(0, 2.0)  # spread the logits: clear top-k order
    loaded = save_family_model(folder, model, tok_dir, prefix)
    tok = AutoTokenizer.from_pretrained(folder)
    rows = encode_rows(tok, texts, max_length)
    exp = versions()
    exp["tokenization"] = [{"text": t, "ids": r} for t, r in zip(texts, rows)]
    exp["hidden"] = hidden_cases(loaded.roberta, rows, tok.pad_token_id)
    mask_logits = []
    for t, r in zip(texts, rows):
        ids = torch.tensor([r])
        assert (ids == tok.mask_token_id).any(), t
        logits = loaded(input_ids=ids).logits[0][ids[0] == tok.mask_token_id]
        top = logits.softmax(-1).topk(6).values
        assert (top[:, :-1] - top[:, 1:]).min() > 1e-5, t
        pos = (ids[0] == tok.mask_token_id).nonzero().view(-1).tolist()
        mask_logits.append({"text": t, "positions": pos, "logits": [g.floats(l) for l in logits]})
    exp["mask_logits"] = mask_logits
    fill = pipeline("fill-mask", model=str(folder), device="cpu")
    exp["fill_mask"] = [{"text": t, "top_k": 5, "outputs": plain(fill(t, top_k=5))} for t in texts]
    g.write_expected(folder / "expected.json", exp)
    print(f"== {folder.name}: {exp['fill_mask'][0]['outputs'][0]['token_str']!r} first for {texts[0]!r}")


def roberta_config(vocab_size, **extra):
    return RobertaConfig(vocab_size=vocab_size, pad_token_id=1, bos_token_id=0, eos_token_id=2, **ROBERTA, **extra)


NER_LABEL_ARGS = dict(id2label=NER_LABELS, label2id={v: k for k, v in NER_LABELS.items()})


@torch.no_grad()
def build_roberta_heads(out):
    """roberta-tiny-ner (RobertaForTokenClassification) and roberta-tiny-mlm
    (RobertaForMaskedLM: lm_head.dense/layer_norm, decoder tied to the word embeddings), with
    roberta-tiny-cls's byte-level BPE tokenizer (no `continuing_subword_prefix`: the NER pipeline
    finds words with its whitespace heuristic)."""
    tok_dir = out / "roberta-tiny-cls"
    vocab_size = len(__import__("json").loads((tok_dir / "tokenizer.json").read_text())["model"]["vocab"])
    torch.manual_seed(SEED + 6)
    ner = RobertaForTokenClassification(roberta_config(vocab_size, **NER_LABEL_ARGS)).eval()
    perturb_layer_norms(ner)
    build_family_ner(out / "roberta-tiny-ner", ner, tok_dir, NER_TEXTS, 40)
    torch.manual_seed(SEED + 7)
    mlm = RobertaForMaskedLM(roberta_config(vocab_size)).eval()
    perturb_layer_norms(mlm)
    build_family_mlm(out / "roberta-tiny-mlm", mlm, tok_dir, ROBERTA_MASK_TEXTS, 40)


def build_xlmr_tokenizer(out_dir):
    """An XLM-R style tokenizer: the Unigram model trained with sentencepiece (as for T5) in
    fairseq order (<s> <pad> </s> <unk>, the pieces, <mask> last), saved by transformers'
    XLMRobertaTokenizer, then with the pre-tokenizer real XLM-R checkpoints ship (Metaspace
    alone, no WhitespaceSplit: transformers 5 rebuilds it on load, so references split on
    whitespace runs). Returns the vocabulary size."""
    from tokenizers import AddedToken

    with tempfile.TemporaryDirectory() as tmp:
        pieces, charsmap = g.train_sentencepiece(tmp, g.training_corpus())
    assert [p for p, _ in pieces[:3]] == ["<pad>", "</s>", "<unk>"], pieces[:3]
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + pieces[3:] + [("<mask>", 0.0)]
    mask = AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)
    tok = transformers.XLMRobertaTokenizer(vocab=vocab, _spm_precompiled_charsmap=charsmap,
                                           mask_token=mask, model_max_length=40)
    tok.save_pretrained(out_dir)
    json = __import__("json")
    tj = json.loads((out_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert tj["pre_tokenizer"]["type"] == "Sequence", tj["pre_tokenizer"]
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    g.write_json(out_dir / "tokenizer.json", tj)
    normalize_json_files(out_dir, ["tokenizer_config.json"])
    # transformers tokenizes as the saved Sequence did; a plain tokenizer.json load differs on
    # whitespace runs (what the Rust side must undo).
    hf = AutoTokenizer.from_pretrained(out_dir)
    raw = Tokenizer.from_file(str(out_dir / "tokenizer.json"))
    assert raw.encode(XLMR_NER_TEXTS[-1]).ids != hf(XLMR_NER_TEXTS[-1]).input_ids
    assert hf.mask_token_id == len(vocab) - 1 and hf.pad_token_id == 1 and hf.unk_token_id == 3
    return len(vocab)


@torch.no_grad()
def build_xlmr(out):
    """xlm-roberta-tiny-{cls,ner,mlm}: model_type "xlm-roberta" (XLMRobertaFor... classes, trunk
    under `roberta.`; the NER checkpoint stores it without the prefix) with a Unigram tokenizer."""
    from transformers import (
        XLMRobertaConfig,
        XLMRobertaForMaskedLM,
        XLMRobertaForSequenceClassification,
        XLMRobertaForTokenClassification,
    )

    def cfg(**extra):
        return XLMRobertaConfig(vocab_size=n, pad_token_id=1, bos_token_id=0, eos_token_id=2, **ROBERTA, **extra)

    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp)
        n = build_xlmr_tokenizer(tok_dir)
        print(f"\nxlm-r unigram tokenizer: {n} tokens")
        torch.manual_seed(SEED + 12)  # a seed whose labels vary over the texts
        cls = XLMRobertaForSequenceClassification(cfg(id2label=LABELS, label2id={v: k for k, v in LABELS.items()})).eval()
        perturb_layer_norms(cls)
        build_family_cls(out / "xlm-roberta-tiny-cls", cls, tok_dir, TEXTS, 40)
        torch.manual_seed(SEED + 11)
        ner = XLMRobertaForTokenClassification(cfg(**NER_LABEL_ARGS)).eval()
        perturb_layer_norms(ner)
        build_family_ner(out / "xlm-roberta-tiny-ner", ner, tok_dir, XLMR_NER_TEXTS, 40,
                         prefix="roberta.", center=True)
        torch.manual_seed(SEED + 10)
        mlm = XLMRobertaForMaskedLM(cfg()).eval()
        perturb_layer_norms(mlm)
        build_family_mlm(out / "xlm-roberta-tiny-mlm", mlm, tok_dir, ROBERTA_MASK_TEXTS, 40)


DISTILBERT = dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=40, initializer_range=0.2)


@torch.no_grad()
def build_distilbert(out, tok_dir, vocab_size):
    """distilbert-tiny-cls (DistilBertForSequenceClassification: `distilbert.` keys,
    `transformer.layer.N`, pre_classifier + ReLU) and distilbert-tiny-mlm (vocab_transform /
    vocab_projector tied), sharing one random trunk and the WordPiece tokenizer."""
    cfg = DistilBertConfig(vocab_size=vocab_size, pad_token_id=0, id2label=LABELS,
                           label2id={v: k for k, v in LABELS.items()}, **DISTILBERT)
    torch.manual_seed(SEED + 5)
    cls = DistilBertForSequenceClassification(cfg).eval()
    for name, p in cls.named_parameters():
        if "layer_norm" in name or "LayerNorm" in name:
            p.add_(torch.randn_like(p) * 0.2)
    mlm = DistilBertForMaskedLM(DistilBertConfig(vocab_size=vocab_size, pad_token_id=0, **DISTILBERT)).eval()
    mlm.distilbert.load_state_dict(cls.distilbert.state_dict())
    mlm.vocab_projector.bias.normal_(0, 2.0)
    save_head_model(out / "distilbert-tiny-cls", cls, tok_dir)
    save_head_model(out / "distilbert-tiny-mlm", mlm, tok_dir)

    folder = out / "distilbert-tiny-cls"
    tok = AutoTokenizer.from_pretrained(folder)
    loaded = DistilBertForSequenceClassification.from_pretrained(folder).eval()
    rows = [tok(t, truncation=True, max_length=40).input_ids for t in TEXTS]
    exp = {"torch_version": torch.__version__, "transformers_version": transformers.__version__}
    ids, mask = pad(rows)
    h = loaded.distilbert(input_ids=ids, attention_mask=mask).last_hidden_state
    exp["hidden"] = [{"name": "batch", "input_ids": ids.tolist(), "attention_mask": mask.tolist(),
                      "shape": list(h.shape), "hidden_states": g.floats(h)}]
    logits = loaded(input_ids=ids, attention_mask=mask).logits
    exp["logits"] = [{"text": t, "logits": g.floats(r)} for t, r in zip(TEXTS, logits)]
    g.write_expected(folder / "expected.json", exp)

    folder = out / "distilbert-tiny-mlm"
    fill = pipeline("fill-mask", model=str(folder), device="cpu")
    loaded = DistilBertForMaskedLM.from_pretrained(folder).eval()
    for t in MASK_TEXTS:
        enc = tok(t, return_tensors="pt")
        top = loaded(**enc).logits[0][enc.input_ids[0] == tok.mask_token_id].softmax(-1).topk(6).values
        assert (top[:, :-1] - top[:, 1:]).min() > 1e-5, t
    exp = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "fill_mask": [{"text": t, "top_k": 5, "outputs": plain(fill(t, top_k=5))} for t in MASK_TEXTS],
    }
    g.write_expected(folder / "expected.json", exp)
    print(f"== distilbert-tiny-cls/-mlm: labels {[LABELS[i] for i in logits.argmax(-1).tolist()]}")


@torch.no_grad()
def build_distilbert_ner(out, tok_dir, vocab_size):
    """distilbert-tiny-ner: DistilBertForTokenClassification (`distilbert.` keys, `classifier`)
    with the WordPiece tokenizer (words from `##` continuations)."""
    from transformers import DistilBertForTokenClassification

    cfg = DistilBertConfig(vocab_size=vocab_size, pad_token_id=0, **NER_LABEL_ARGS, **DISTILBERT)
    torch.manual_seed(SEED + 13)
    model = DistilBertForTokenClassification(cfg).eval()
    perturb_layer_norms(model)
    build_family_ner(out / "distilbert-tiny-ner", model, tok_dir, NER_TEXTS, 40, center=True)


def build_all(out):
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp)
        n = build_tokenizer(tok_dir)
        print(f"\nwordpiece tokenizer: {n} tokens")
        trunk = make_trunk(n)
        build_st(out, tok_dir, trunk)
        build_cls(out, tok_dir, trunk)
        build_ner(out, tok_dir, trunk)
        build_mlm(out, tok_dir, trunk)
        build_distilbert(out, tok_dir, n)
        build_distilbert_ner(out, tok_dir, n)
    build_roberta(out)
    build_roberta_heads(out)
    build_xlmr(out)


if __name__ == "__main__":
    build_all(g.REPO / "tests" / "fixtures")
