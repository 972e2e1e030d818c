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
    RobertaForSequenceClassification,
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
    build_roberta(out)


if __name__ == "__main__":
    build_all(g.REPO / "tests" / "fixtures")
