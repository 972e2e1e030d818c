#!/usr/bin/env python3
"""Reference values for lmrs-eval's parity tests, computed with the pinned packages of
tools/requirements.txt (rouge-score, sacrebleu, scikit-learn, nltk).

Writes tests/fixtures/metrics/{porter,rouge,bleu,chrf,classification}.json. Every input is made
here (hand-written edge cases plus seeded random corpora) and stored in the fixture beside the
expected values, so `cargo test -p lmrs-eval` needs no Python. Rerunning gives identical files.

    .venv/bin/python tools/gen_metric_fixtures.py
"""

import json
import math
import random
import re
from pathlib import Path

import nltk
import numpy as np
import sacrebleu
import sklearn
from nltk.stem.porter import PorterStemmer
from rouge_score import rouge_scorer, scoring
from sacrebleu.metrics import BLEU, CHRF
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "metrics"
ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]

LONG_REF = (
    "The committee approved the new budget on Tuesday.\n"
    "Spending on schools will rise by 4.5% next year, officials said.\n"
    "Critics argued that the plan ignores rising housing costs."
)
LONG_PRED = (
    "On Tuesday the committee approved a new budget.\n"
    "School spending rises 4.5% next year.\n"
    "Critics say the plan ignores housing costs, which keep rising.\n"
    "Officials disagreed."
)

# (name, prediction, reference): the varied hand-written cases.
TEXT_CASES = [
    ("identical", "The cat sat on the mat.", "The cat sat on the mat."),
    ("disjoint", "Dogs bark loudly at night.", "A quiet afternoon in spring."),
    ("partial", "the cat was found under the bed", "the cat was under the bed"),
    ("empty_prediction", "", "There is a reference here."),
    ("empty_reference", "There is a prediction here.", ""),
    ("both_empty", "", ""),
    ("whitespace_only", "   \t ", "Some words."),
    ("punctuation_only", "?!... ,;:", "!!! ---"),
    ("punctuation_vs_words", "...", "Hello, world!"),
    ("cjk", "東京は日本の首都です。", "日本の首都は東京です。"),
    ("unicode_mixed", "Café Müller zahlt 3,50 € — naïve façade!", "Cafe Muller zahlt 3.50 EUR, naive facade."),
    ("kelvin_and_dotted_i", "\u212aelvin \u0130stanbul trip", "Kelvin istanbul trip"),
    ("odd_whitespace", "one\u00a0two\u3000three\x1cfour", "one two three four"),
    ("html_entities", "He said &quot;yes&quot; &amp; left &lt;quickly&gt;.", 'He said "yes" & left <quickly>.'),
    ("numbers_and_dashes", "In 1990-1995, 1,000 people paid $3.50 each.", "From 1990 to 1995, 1000 people paid 3.50 dollars."),
    ("repeated_words", "the the the the cat", "the cat the cat"),
    ("case_differs", "THE QUICK BROWN FOX", "the quick brown fox"),
    ("stemming_matters", "The runners were running and jumped happily over fences", "A runner runs and jumps happily over the fence"),
    ("multi_sentence", LONG_PRED, LONG_REF),
    ("newline_blank_lines", "First line.\n\n\nSecond line here.\n", "First line here.\nSecond line."),
    ("trailing_spaces", "A sentence with spaces at the end.   ", "A sentence with spaces at the end."),
    ("hyphen_newline", "a well-\nknown fact", "a well-known fact"),
]

WORDS = (
    "the a of to and in is was for on that with as by at from it be this are were an "
    "government people market report city company school police minister election growth "
    "running runs runner ran jumps jumped happily quickly fences fence generalization "
    "relational conditional hopeful goodness national nations computing computers computed "
    "2019 3.5 100 1,000 U.S. e-mail co-operate don't it's"
).split()
PUNCT = [",", ".", ";", ":", "!", "?", "(", ")", '"', "'", "-", "..."]


def random_text(rng, n_words, sentences=1):
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(n_words)]
        for i in range(len(words)):
            if rng.random() < 0.12:
                words[i] += rng.choice(PUNCT)
            if rng.random() < 0.1:
                words[i] = words[i].capitalize()
        out.append(" ".join(words))
    return "\n".join(out)


def random_pairs(seed, n, n_words=(5, 25), sentences=(1, 3)):
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        k = rng.randint(*sentences)
        ref = random_text(rng, rng.randint(*n_words), k)
        if rng.random() < 0.5:
            # A noisy copy of the reference, so overlaps span the whole range.
            toks = ref.split(" ")
            toks = [t for t in toks if rng.random() > 0.3]
            toks += [rng.choice(WORDS) for _ in range(rng.randint(0, 4))]
            pred = " ".join(toks)
        else:
            pred = random_text(rng, rng.randint(*n_words), rng.randint(*sentences))
        pairs.append((pred, ref))
    return pairs


def dump(name, obj):
    OUT.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, ensure_ascii=False, indent=None, separators=(",", ":"), allow_nan=False)
    (OUT / name).write_text(text + "\n", encoding="utf-8")
    print(f"wrote {OUT / name} ({len(text) // 1024} KiB)")


def porter_fixture():
    stemmer = PorterStemmer()
    # Real words: every lowercase word in NLTK's own sources and docs (pinned version).
    root = Path(nltk.__file__).parent
    vocab = set()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".doctest") and path.is_file():
            vocab.update(re.findall(r"\b[a-z]{3,}\b", path.read_text(encoding="utf-8", errors="ignore")))
    real = sorted(vocab)
    step = max(1, len(real) // 4000)
    words = real[::step]
    # Synthetic words that hit every suffix rule and the irregular forms.
    rng = random.Random(5)
    stems = ["rel", "cond", "hop", "gener", "sky", "tri", "fli", "contr", "gyr", "form", "y", "ab", "oat", "fe", "agr", "plast", "bl", "siz", "fil", "ann"]
    suffixes = ["ational", "tional", "enci", "anci", "izer", "bli", "abli", "alli", "entli", "eli", "ousli", "ization", "ation", "ator", "alism", "iveness", "fulness", "ousness", "aliti", "iviti", "biliti", "fulli", "logi", "icate", "ative", "alize", "iciti", "ical", "ful", "ness", "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "sion", "tion", "ou", "ism", "ate", "iti", "ous", "ive", "ize", "e", "ll", "sses", "ies", "ss", "s", "eed", "ed", "ing", "ied", "y", "at", "bl", "iz"]
    synthetic = sorted({rng.choice(stems) + rng.choice(suffixes) + rng.choice(["", "", "s", "ed", "ing", "ly"]) for _ in range(1500)})
    extra = ["sky", "skies", "dying", "lying", "tying", "news", "innings", "inning", "outings", "canning", "howe", "proceed", "exceed", "succeed", "ies", "dies", "died", "spied", "yyyy", "syzygy", "toy", "happy", "by", "a", "is", "at", "ab", "Running", "CAPS", "1990s", "x1y2"]
    all_words = words + synthetic + extra
    dump("porter.json", {"nltk": nltk.__version__, "mode": stemmer.mode, "words": all_words, "stems": [stemmer.stem(w) for w in all_words]})


def rouge_fixture():
    cases = []
    corpora = [("hand", [(p, r) for _, p, r in TEXT_CASES]), ("random", random_pairs(1, 200))]
    for use_stemmer in (False, True):
        scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=use_stemmer)
        for name, pairs in corpora:
            scores = [scorer.score(r, p) for p, r in pairs]
            cases.append({
                "name": f"{name}_stem{int(use_stemmer)}",
                "use_stemmer": use_stemmer,
                "predictions": [p for p, _ in pairs],
                "references": [[r] for _, r in pairs],
                "scores": [{t: list(s[t]) for t in ROUGE_TYPES} for s in scores],
            })
    # Several references per example: score_multi keeps the best F per type.
    rng = random.Random(2)
    pairs = random_pairs(3, 30)
    refs = [[r, random_text(rng, rng.randint(4, 15)), p if i % 7 == 0 else random_text(rng, 6)] for i, (p, r) in enumerate(pairs)]
    scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=True)
    scores = [scorer.score_multi(rs, p) for (p, _), rs in zip(pairs, refs)]
    cases.append({
        "name": "multi_reference_stem1",
        "use_stemmer": True,
        "predictions": [p for p, _ in pairs],
        "references": refs,
        "scores": [{t: list(s[t]) for t in ROUGE_TYPES} for s in scores],
    })
    # Bootstrap: rouge-score's BootstrapAggregator on a larger corpus, numpy seeded.
    pairs = random_pairs(4, 600, n_words=(4, 14), sentences=(1, 2))
    scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=False)
    agg = scoring.BootstrapAggregator(confidence_interval=0.95, n_samples=1000)
    all_scores = []
    for p, r in pairs:
        s = scorer.score(r, p)
        agg.add_scores(s)
        all_scores.append(s)
    np.random.seed(0)
    result = agg.aggregate()
    bootstrap = {
        "predictions": [p for p, _ in pairs],
        "references": [r for _, r in pairs],
        "mean": {t: [float(np.mean([s[t][k] for s in all_scores])) for k in range(3)] for t in ROUGE_TYPES},
        "low": {t: list(map(float, result[t].low)) for t in ROUGE_TYPES},
        "mid": {t: list(map(float, result[t].mid)) for t in ROUGE_TYPES},
        "high": {t: list(map(float, result[t].high)) for t in ROUGE_TYPES},
    }
    dump("rouge.json", {"rouge_score": "0.1.2", "types": ROUGE_TYPES, "cases": cases, "bootstrap": bootstrap})


def sacre_cases():
    """(name, hypotheses, reference streams) corpora for BLEU and chrF."""
    out = []
    for name, p, r in TEXT_CASES:
        out.append((name, [p], [[r]]))
    hand = [(p, r) for _, p, r in TEXT_CASES]
    out.append(("hand_corpus", [p for p, _ in hand], [[r for _, r in hand]]))
    pairs = random_pairs(6, 150)
    out.append(("random_corpus", [p.replace("\n", " ") for p, _ in pairs], [[r.replace("\n", " ") for _, r in pairs]]))
    rng = random.Random(7)
    out.append(("two_references", [p for p, _ in pairs[:40]], [[r for _, r in pairs[:40]], [random_text(rng, rng.randint(5, 20)) for _ in range(40)]]))
    out.append(("all_empty_hypotheses", ["", ""], [["a b c", "d e"]]))
    return out


def corpora():
    """The inputs of sacre_cases(): name -> hypotheses and per-hypothesis reference lists."""
    return {name: {"hypotheses": hyps, "references": [list(x) for x in zip(*refs)]} for name, hyps, refs in sacre_cases()}


def bleu_fixture():
    cases = []
    configs = [("default", {}), ("lowercase", {"lowercase": True}), ("tok_none", {"tokenize": "none"}),
               ("smooth_floor", {"smooth_method": "floor"}), ("smooth_add_k", {"smooth_method": "add-k"}),
               ("smooth_none", {"smooth_method": "none"}), ("effective_order", {"effective_order": True})]
    for name, hyps, refs in sacre_cases():
        for cname, kwargs in configs:
            if cname != "default" and name not in ("hand_corpus", "random_corpus", "partial", "stemming_matters"):
                continue
            bleu = BLEU(**kwargs)
            s = bleu.corpus_score(hyps, refs)
            cases.append({
                "name": f"{name}/{cname}", "corpus": name, "options": kwargs,
                "score": s.score, "counts": list(s.counts), "totals": list(s.totals),
                "precisions": list(s.precisions), "bp": s.bp, "sys_len": s.sys_len, "ref_len": s.ref_len,
                "signature": bleu.get_signature().format(), "formatted": s.format(signature=bleu.get_signature().format()),
            })
    tok = sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()
    lines = [p for _, p, _ in TEXT_CASES] + [r for _, _, r in TEXT_CASES] + [p for p, _ in random_pairs(8, 50)]
    lines += ["a.b,c 1.5 1,5 x. .y 5-6 a-b", "{x}[y]`z~|^_ @#$%&*+=<>?/\\", "-\nend\n", "<skipped>word"]
    dump("bleu.json", {"sacrebleu": sacrebleu.__version__, "corpora": corpora(), "cases": cases,
                       "tokenize_13a": [{"input": l, "output": tok(l.rstrip())} for l in lines]})


def chrf_fixture():
    cases = []
    configs = [("default", {}), ("chrf_pp", {"word_order": 2}), ("lowercase", {"lowercase": True}),
               ("whitespace", {"whitespace": True}), ("eps", {"eps_smoothing": True}), ("beta1", {"beta": 1})]
    for name, hyps, refs in sacre_cases():
        for cname, kwargs in configs:
            if cname != "default" and name not in ("hand_corpus", "random_corpus", "unicode_mixed", "punctuation_only", "two_references"):
                continue
            chrf = CHRF(**kwargs)
            s = chrf.corpus_score(hyps, refs)
            sentences = [chrf.sentence_score(h, list(rs)).score for h, rs in zip(hyps, zip(*refs))]
            cases.append({
                "name": f"{name}/{cname}", "corpus": name, "options": kwargs, "score": s.score, "sentence_scores": sentences,
                "signature": chrf.get_signature().format(), "formatted": s.format(signature=chrf.get_signature().format()),
            })
    dump("chrf.json", {"sacrebleu": sacrebleu.__version__, "corpora": corpora(), "cases": cases})


def nan_to_none(x):
    return None if isinstance(x, float) and math.isnan(x) else x


def classification_fixture():
    rng = random.Random(9)
    label_sets = [
        ("binary", [1, 0, 1, 1, 0, 1, 0, 0], [1, 1, 1, 0, 0, 1, 0, 1], None),
        ("multiclass_strings", ["cat", "dog", "bird", "cat", "dog", "bird", "cat"], ["cat", "bird", "bird", "cat", "cat", "dog", "dog"], None),
        ("never_predicted_class", ["a", "b", "c", "a", "c"], ["a", "a", "a", "a", "c"], None),
        ("unseen_predicted_label", ["a", "b", "a", "b"], ["a", "z", "a", "b"], None),
        ("explicit_labels_with_absent_class", ["a", "b", "a", "b"], ["a", "b", "b", "b"], ["a", "b", "q"]),
        ("explicit_label_subset", ["a", "b", "c", "a", "c"], ["a", "c", "c", "b", "c"], ["a", "c"]),
        ("all_correct", ["x", "y", "x"], ["x", "y", "x"], None),
        ("all_wrong", ["x", "x", "x"], ["y", "y", "y"], None),
        ("numeric_labels", [10, 2, 2, 10, 3, 2], [2, 2, 10, 10, 3, 3], None),
        ("random_5_classes", [rng.randrange(5) for _ in range(300)], [rng.randrange(6) for _ in range(300)], None),
    ]
    cases = []
    for name, y_true, y_pred, labels in label_sets:
        for zd in ["warn", 0.0, 1.0, np.nan]:
            entry = {"name": name, "zero_division": "nan" if zd is np.nan else str(zd) if zd == "warn" else str(int(zd)),
                     "references": [str(v) for v in y_true], "predictions": [str(v) for v in y_pred],
                     "labels": None if labels is None else [str(v) for v in labels],
                     "accuracy": accuracy_score(y_true, y_pred)}
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=zd)
                if labels is None:
                    from sklearn.utils.multiclass import unique_labels
                    used = unique_labels(y_true, y_pred)
                else:
                    used = labels
                entry["per_class"] = [{"label": str(l), "precision": nan_to_none(float(a)), "recall": nan_to_none(float(b)),
                                       "f1": nan_to_none(float(c)), "support": int(d)} for l, a, b, c, d in zip(used, p, r, f, s)]
                for avg in ["micro", "macro", "weighted"]:
                    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=zd)
                    entry[avg] = {"precision": nan_to_none(float(p)), "recall": nan_to_none(float(r)), "f1": nan_to_none(float(f))}
            cases.append(entry)
    dump("classification.json", {"sklearn": sklearn.__version__, "cases": cases})


if __name__ == "__main__":
    porter_fixture()
    rouge_fixture()
    bleu_fixture()
    chrf_fixture()
    classification_fixture()
