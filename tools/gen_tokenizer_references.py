#!/usr/bin/env python3
"""References for tokenizers built from GGUF metadata and for chat templates, made with the
pinned `transformers` (tools/requirements.txt).

Writes:
- tests/fixtures/real/gguf_tokenizers.json: for the real-model tier's two GGUF files (SmolLM2 135M
  Instruct, byte-level BPE; Gemma 3 270M, SentencePiece), `AutoTokenizer.from_pretrained(dir,
  gguf_file=...)` ids of a varied text set with and without special tokens, and the decoded text.
- tests/fixtures/gguf_tokenizer_synthetic.json: the same for small synthetic GGUF vocabularies that
  exercise the other branches (SentencePiece with Metaspace, Phi-3, byte-level with a Llama 3 / Qwen 2
  split regex, merges derived from scores, a missing `<|endoftext|>`). The metadata is stored in the
  JSON, so the Rust test rebuilds each file in memory and needs no model.
- tests/fixtures/real/chat_templates.json: chat templates (SmolLM2's from its GGUF, plus Gemma 3,
  Llama 3 instruct and Qwen 2 / ChatML styles, whitespace control and Python value printing,
  embedded below) rendered by transformers'
  `render_jinja_template` over several conversations, with and without the generation prompt.

Usage: .venv/bin/python tools/gen_tokenizer_references.py [--only tokenizers|synthetic|chat]
Models: `scripts/fetch-models.sh` (SmolLM2 under $LMRS_HOME/models or ~/.cache/lmrs/models,
Gemma under models/).
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile

import gguf
import tokenizers
import transformers
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = pathlib.Path(__file__).resolve().parent.parent
LMRS_HOME = pathlib.Path(os.environ.get("LMRS_HOME", pathlib.Path.home() / ".cache" / "lmrs"))
SMOLLM2 = LMRS_HOME / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3 = ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing space ",
    "  two leading, double  inner and   triple spaces",
    "    ",
    " ",
    "a",
    "line one\nline two\n\nline four\n",
    "\ttabbed\tcolumns\t\n\t\tdouble tab",
    "windows\r\nnewlines\r\n",
    "Accents: café, naïve, résumé, Ångström, Straße, São Paulo, Dvořák",
    "中文：你好，世界！日本語のテキストです。한국어 문장도 있어요.",
    "Emoji 🎉🚀 with a flag 🇫🇷, a family 👨‍👩‍👧 and a skin tone 👍🏽",
    'def add(a, b):\n    """Sum two numbers."""\n    return a + b\n\n\nclass A:\n    pass\n',
    'for (int i = 0; i < 10; ++i) {\n\tprintf("%d\\n", i);\n}',
    "Numbers: 3.14159, 1,000,000, 2024-01-01, 0x1F, 12345678901234567890, -42e-3",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text between bos and eos<eos>",
    "inline<|im_end|>special<|endoftext|>tokens <think>reasoning</think> done",
    "I'm sure it's fine, isn't it? They'll see; we'd go. DON'T SHOUT",
    "URL https://example.com/path?q=1&r=2#frag and mail a.b@c.de",
    "ﬁ ligature, ＦＵＬＬＷＩＤＴＨ, combining e\u0301 and precomposed \u00e9",
    "zero\u200bwidth, non\u00a0breaking and ideographic\u3000spaces",
    "<unused0>[multimodal]<start_of_image> tags",
    "Repeated: " + "ab" * 30 + " " + "!" * 12,
    "      indented block\n          deeper\n  back",
    "Mixed\n\n\n\nnewlines\n \n \t \nand spaces",
    "",
]


def encode_cases(tok, texts):
    cases = []
    for text in texts:
        with_special = tok(text)["input_ids"]
        without = tok(text, add_special_tokens=False)["input_ids"]
        cases.append(
            {
                "text": text,
                "ids": with_special,
                "ids_no_special": without,
                "decoded": tok.decode(with_special),
                "decoded_skip_special": tok.decode(with_special, skip_special_tokens=True),
            }
        )
    return cases


def load_gguf_tokenizer(path: pathlib.Path):
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def real_tokenizers():
    models = []
    for name, path in [("SmolLM2-135M-Instruct.Q4_1", SMOLLM2), ("gemma-3-270m-q4_k_m", GEMMA3)]:
        if not path.is_file():
            sys.exit(f"{path} is missing: run scripts/fetch-models.sh")
        tok = load_gguf_tokenizer(path)
        models.append(
            {
                "name": name,
                "class": type(tok).__name__,
                "vocab_size": len(tok),
                "bos_token": tok.bos_token,
                "eos_token": tok.eos_token,
                "cases": encode_cases(tok, TEXTS),
            }
        )
        print(f"{name}: {len(TEXTS)} texts, vocab {len(tok)}")
    return models


# ---------------------------------------------------------------------------------------------
# Synthetic GGUF vocabularies


def byte_alphabet():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return [bytes_to_unicode()[b] for b in range(256)]


def llama_config(arch):
    """Just enough model metadata for `AutoConfig` to accept the file."""
    return [
        (f"{arch}.context_length", "u32", 128),
        (f"{arch}.embedding_length", "u32", 16),
        (f"{arch}.block_count", "u32", 1),
        (f"{arch}.feed_forward_length", "u32", 32),
        (f"{arch}.attention.head_count", "u32", 2),
        (f"{arch}.attention.head_count_kv", "u32", 2),
        (f"{arch}.attention.layer_norm_rms_epsilon", "f32", 1e-6),
        (f"{arch}.rope.dimension_count", "u32", 8),
    ]


SP_PIECES = [
    # (piece, score): merges are derived from the scores, best first.
    ("▁", -1.0),
    ("▁▁", -2.0),
    ("▁▁▁▁", -3.0),
    ("e", -4.0),
    ("t", -4.5),
    ("h", -5.0),
    ("o", -5.5),
    ("l", -6.0),
    ("r", -6.5),
    ("d", -7.0),
    ("w", -7.5),
    ("i", -8.0),
    ("n", -8.5),
    ("a", -9.0),
    ("s", -9.5),
    ("he", -10.0),
    ("th", -10.5),
    ("▁t", -11.0),
    ("▁th", -11.5),
    ("▁the", -12.0),
    ("in", -12.5),
    ("▁in", -13.0),
    ("er", -13.5),
    ("▁w", -14.0),
    ("or", -14.5),
    ("▁wor", -15.0),
    ("ld", -15.5),
    ("▁world", -16.0),
    ("ll", -16.5),
    ("▁he", -17.0),
    ("▁hell", -17.5),
    ("▁hello", -18.0),
    ("at", -18.5),
    ("▁a", -19.0),
    ("is", -19.5),
    ("▁is", -20.0),
]


def sentencepiece_metadata(arch, add_bos=None):
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    scores = [0.0] * len(tokens)
    types = [2, 3, 3] + [6] * 256
    for piece, score in SP_PIECES:
        tokens.append(piece)
        scores.append(score)
        types.append(1)
    for token, kind in [("<|im_start|>", 3), ("<|im_end|>", 3), ("<think>", 4), ("</think>", 4)]:
        tokens.append(token)
        scores.append(0.0)
        types.append(kind)
    meta = [("general.architecture", "string", arch), *llama_config(arch)]
    meta += [
        ("tokenizer.ggml.model", "string", "llama"),
        ("tokenizer.ggml.pre", "string", "default"),
        ("tokenizer.ggml.tokens", "string_array", tokens),
        ("tokenizer.ggml.scores", "f32_array", scores),
        ("tokenizer.ggml.token_type", "i32_array", types),
        ("tokenizer.ggml.bos_token_id", "u32", 1),
        ("tokenizer.ggml.eos_token_id", "u32", 2),
        ("tokenizer.ggml.unknown_token_id", "u32", 0),
    ]
    if add_bos is not None:
        meta.append(("tokenizer.ggml.add_bos_token", "bool", add_bos))
    return meta


# Merges as plain text pairs; the file spells them in the byte alphabet.
BPE_MERGE_TEXT = [
    (" ", "t"), ("h", "e"), (" t", "he"), ("i", "n"), (" ", "a"), ("e", "r"), (" ", "w"),
    ("o", "r"), (" w", "or"), ("l", "d"), (" wor", "ld"), (" ", " "), ("  ", "  "),
    ("\n", "\n"), ("1", "2"), ("12", "3"), ("'", "s"), ("l", "l"), ("h", "ell"), ("e", "ll"),
    (" ", "h"), (" h", "ell"), (" hell", "o"), ("c", "a"), ("ca", "f"),
    ("\xc3", "\xa9"), ("caf", "\xc3\xa9"), ("\xe4", "\xbd"), ("\xe4\xbd", "\xa0"),
]


def spell(text):
    """A latin-1 string of raw bytes (or plain text) in the byte alphabet."""
    alphabet = byte_alphabet()
    raw = text.encode("latin-1") if all(ord(c) < 256 for c in text) else text.encode("utf-8")
    return "".join(alphabet[b] for b in raw)


def bpe_merges():
    return [f"{spell(left)} {spell(right)}" for left, right in BPE_MERGE_TEXT]


def byte_level_metadata(pre, with_merges=True, add_bos=True, add_eos=False):
    alphabet = byte_alphabet()
    tokens = ["<|begin_of_text|>", "<|end_of_text|>", "<|a b|>", "<think>"]
    types = [3, 3, 3, 4]
    tokens += alphabet
    types += [1] * len(alphabet)
    merges = bpe_merges()
    for merge in merges:
        merged = merge.replace(" ", "")
        if merged not in tokens:
            tokens.append(merged)
            types.append(1)
    # A token the file spells in plain UTF-8 rather than in the byte alphabet.
    tokens.append("日本")
    types.append(1)
    meta = [("general.architecture", "string", "llama"), *llama_config("llama")]
    meta += [
        ("tokenizer.ggml.model", "string", "gpt2"),
        ("tokenizer.ggml.pre", "string", pre),
        ("tokenizer.ggml.tokens", "string_array", tokens),
        ("tokenizer.ggml.token_type", "i32_array", types),
        ("tokenizer.ggml.bos_token_id", "u32", 0),
        ("tokenizer.ggml.eos_token_id", "u32", 1),
        ("tokenizer.ggml.add_bos_token", "bool", add_bos),
        ("tokenizer.ggml.add_eos_token", "bool", add_eos),
    ]
    if with_merges:
        meta.append(("tokenizer.ggml.merges", "string_array", merges))
    else:
        # Longer tokens score higher, so the derived merges build them.
        scores = [float(len(t)) for t in tokens]
        meta.append(("tokenizer.ggml.scores", "f32_array", scores))
    return meta


SYNTHETIC = {
    "sentencepiece-llama": lambda: sentencepiece_metadata("llama"),
    "sentencepiece-llama-no-bos": lambda: sentencepiece_metadata("llama", add_bos=False),
    "sentencepiece-phi3": lambda: sentencepiece_metadata("phi3"),
    "byte-level-llama3": lambda: byte_level_metadata("llama-bpe"),
    "byte-level-default": lambda: byte_level_metadata("smollm", add_bos=False, add_eos=True),
    "byte-level-qwen2-scores": lambda: byte_level_metadata("qwen2", with_merges=False),
}

SYNTHETIC_TEXTS = [
    "hello world",
    " the world is in the hall",
    "  hello   world  ",
    "Hello World's 123 1234",
    "café 你 日本 naïve",
    "<|im_start|>user\nthe<|im_end|>\n<think>hi</think>",
    "<|begin_of_text|>hello<|end_of_text|><|endoftext|><|a b|>",
    "tabs\tand\n\nnewlines\n",
    "xyz QQ 🎉",
    "",
]


def write_gguf(path, meta):
    arch = next(v for k, _, v in meta if k == "general.architecture")
    w = gguf.GGUFWriter(str(path), arch)
    for key, kind, value in meta:
        if key == "general.architecture":
            continue
        vtype = {
            "string": gguf.GGUFValueType.STRING,
            "u32": gguf.GGUFValueType.UINT32,
            "f32": gguf.GGUFValueType.FLOAT32,
            "bool": gguf.GGUFValueType.BOOL,
        }.get(kind)
        if vtype is not None:
            w.add_key_value(key, value, vtype)
        else:
            sub = {
                "string_array": gguf.GGUFValueType.STRING,
                "f32_array": gguf.GGUFValueType.FLOAT32,
                "i32_array": gguf.GGUFValueType.INT32,
            }[kind]
            w.add_key_value(key, list(value), gguf.GGUFValueType.ARRAY, sub_type=sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def synthetic_tokenizers():
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in SYNTHETIC.items():
            meta = make()
            path = pathlib.Path(tmp) / f"{name}.gguf"
            write_gguf(path, meta)
            tok = load_gguf_tokenizer(path)
            out.append(
                {
                    "name": name,
                    "metadata": [{"key": k, "type": t, "value": v} for k, t, v in meta],
                    "vocab_size": len(tok),
                    "cases": encode_cases(tok, SYNTHETIC_TEXTS + TEXTS),
                }
            )
            print(f"synthetic {name}: vocab {len(tok)}")
    return out


# ---------------------------------------------------------------------------------------------
# Chat templates

# Gemma 3 instruct (google/gemma-3-*-it tokenizer_config.json).
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# Llama 3.1 instruct style: a dated system header via strftime_now, python string methods,
# `namespace`, loop controls and `tojson` with an indent.
LLAMA3_TEMPLATE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n" }}
{%- if strftime_now("%Y") | length != 4 %}
    {{- raise_exception("strftime_now did not give a year") }}
{%- endif %}
{%- set ns = namespace(turns=0) %}
{%- for message in messages %}
    {%- if message.role == 'system' %}
        {%- continue %}
    {%- endif %}
    {%- set ns.turns = ns.turns + 1 %}
{%- endfor %}
{{- "Turns: " + ns.turns|string + "\\n" }}
{{- "Roles: " + (messages | map(attribute='role') | list | tojson(indent=2)) + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if message.content.startswith('!stop') %}
        {%- break %}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

# Qwen 2 / ChatML with a default system prompt, plus python string methods and tojson of a dict
# holding non-ASCII text.
QWEN2_TEMPLATE = """{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
You are a helpful assistant.<|im_end|>
' }}{% endif %}{{'<|im_start|>' + message['role'] + '
' + message['content'].strip() + '<|im_end|>' + '
'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
' }}{% endif %}"""

# Whitespace control: trim_blocks / lstrip_blocks with indented block tags and newlines after them,
# `tojson` with non-ASCII, `split`, `upper`, `replace`, `title`, `endswith`, and `eos_token`.
WHITESPACE_TEMPLATE = """{% for message in messages %}
    {% if message['role'] == 'user' %}
User ({{ message['content'].split() | length }} words): {{ message['content'] }}
    {% elif message['role'] == 'assistant' %}
Assistant: {{ message['content'].upper() }}{{ eos_token }}
    {% else %}
{{ message['role'] | title }}: {{ message['content'].replace('a', '4') }} {{ {'text': message['content']} | tojson }}
    {% endif %}
    {% if message['content'].endswith('?') %}
(question)
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}
Assistant:
{%- endif %}
"""

# Values printed the way Python's str() shows them: None/True/False, floats, lists, dicts and
# tuples with repr()'d strings.
PYTHON_VALUES_TEMPLATE = """{%- for message in messages %}
{{ message }} {{ message.content.split() }} {{ loop.index0 / 2 }} {{ (message.role, loop.first) }}
{% endfor %}
{{ messages | map(attribute='role') | list }} {{ none }} {{ add_generation_prompt }} {{ 1e16 }} {{ 2.50 }}
{{ ["it's", 'say "hi"', 'back\\slash', 'tab\tnl\n', 'both \\' and "', 'nbsp\u00a0zw\u200b'] }} {{ {'k': none, 'n': [1, 2.0]} }}
"""

CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "Hello! How are you?"}],
    "system_user": [
        {"role": "system", "content": "You are a terse assistant.  "},
        {"role": "user", "content": "  What is the capital of France?\n"},
    ],
    "multi_turn": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "Tell me a joke about café owners ☕ and 日本."},
    ],
    "system_multi_turn": [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Good morning"},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "Très bien, merci."},
    ],
}

# Templates that raise on some conversations: the expected string is null and `error` is the
# exception message.
ERROR_CONVERSATIONS = {
    "gemma3": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
    ],
}


def smollm2_template():
    reader = gguf.GGUFReader(str(SMOLLM2))
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def render(template, messages, add_generation_prompt, bos, eos):
    rendered, _ = render_jinja_template(
        conversations=[messages],
        chat_template=template,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos,
        eos_token=eos,
    )
    return rendered[0]


def chat_templates():
    templates = [
        ("smollm2_gguf", smollm2_template(), "<|im_start|>", "<|im_end|>"),
        ("gemma3", GEMMA3_TEMPLATE, "<bos>", "<eos>"),
        ("llama3", LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"),
        ("qwen2_chatml", QWEN2_TEMPLATE, None, "<|im_end|>"),
        ("whitespace_control", WHITESPACE_TEMPLATE, "<s>", "</s>"),
        ("python_values", PYTHON_VALUES_TEMPLATE, None, None),
    ]
    out = []
    for name, template, bos, eos in templates:
        cases = []
        for conv_name, messages in CONVERSATIONS.items():
            for agp in (False, True):
                cases.append(
                    {
                        "conversation": conv_name,
                        "messages": messages,
                        "add_generation_prompt": agp,
                        "expected": render(template, messages, agp, bos, eos),
                        "error": None,
                    }
                )
        if name in ERROR_CONVERSATIONS:
            messages = ERROR_CONVERSATIONS[name]
            try:
                render(template, messages, True, bos, eos)
                sys.exit(f"{name}: expected an exception")
            except Exception as e:  # jinja2.exceptions.TemplateError
                cases.append(
                    {
                        "conversation": "invalid",
                        "messages": messages,
                        "add_generation_prompt": True,
                        "expected": None,
                        "error": str(e),
                    }
                )
        out.append({"name": name, "template": template, "bos_token": bos, "eos_token": eos, "cases": cases})
        print(f"chat template {name}: {len(cases)} cases")
    return out


def versions():
    return {
        "generator": "tools/gen_tokenizer_references.py",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


def dumps(obj, level=0):
    """Indented JSON with lists of scalars (ids, tokens, scores) kept on one line."""
    pad = " " * (level + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{pad}{json.dumps(k, ensure_ascii=False)}: {dumps(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * level + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        items = [pad + dumps(v, level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + " " * level + "]"
    return json.dumps(obj, ensure_ascii=False)


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(obj) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["tokenizers", "synthetic", "chat"])
    args = ap.parse_args()
    if args.only in (None, "tokenizers"):
        write(ROOT / "tests/fixtures/real/gguf_tokenizers.json", {**versions(), "models": real_tokenizers()})
    if args.only in (None, "synthetic"):
        write(ROOT / "tests/fixtures/gguf_tokenizer_synthetic.json", {**versions(), "models": synthetic_tokenizers()})
    if args.only in (None, "chat"):
        write(ROOT / "tests/fixtures/real/chat_templates.json", {**versions(), "templates": chat_templates()})


if __name__ == "__main__":
    main()
