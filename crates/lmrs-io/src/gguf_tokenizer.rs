//! The tokenizer a GGUF file carries in its metadata, rebuilt the way `transformers` 5.23 does
//! when it loads the same file (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`, in
//! `transformers/integrations/gguf/gguf_tokenizer_mapping.py`).
//!
//! A GGUF has no `tokenizer.json`. It stores the vocabulary (`tokenizer.ggml.tokens`), per-token
//! scores and types, BPE merges when it has them, and the special token ids under llama.cpp's key
//! names. `tokenizer.ggml.model` says which tokenizer that is:
//!
//! - `gpt2`: byte-level BPE (`GPT2Tokenizer`). Tokens spelled outside the byte alphabet are
//!   respelled byte by byte; `tokenizer.ggml.pre` picks the split regex for the families
//!   `transformers` knows (Llama 3, Qwen 2, GPT-4o...), else GPT-2's.
//! - `llama`: a SentencePiece vocabulary as BPE with byte fallback (`LlamaTokenizer`, Metaspace
//!   with the prefix space on the first word only). Merges are derived from the vocabulary, best
//!   score first. Gemma (1-3) files get `GemmaTokenizer` (no prefix space, merges in file order,
//!   whitespace-only tokens respelled with `▁`); Phi-3 prepends the space in a normalizer.
//! - `gemma4`: `GemmaTokenizer` with score-ordered merges and no BOS.
//!
//! Tokens typed control (3) become special added tokens and user-defined ones (4) plain added
//! tokens, so `<|im_start|>` or `<start_of_turn>` stay whole in text. `tokenizer.ggml.add_bos_token`
//! / `add_eos_token` shape the post-processor (a SentencePiece vocabulary adds BOS unless told
//! otherwise). Unigram (`t5`) vocabularies are not supported yet.

use crate::{IoError, Result};
use lmrs_core::candle::quantized::gguf_file::{Content, Value};
use std::collections::{HashMap, HashSet};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

const ARCHITECTURE: &str = "general.architecture";
const MODEL: &str = "tokenizer.ggml.model";
const PRE: &str = "tokenizer.ggml.pre";
const TOKENS: &str = "tokenizer.ggml.tokens";
const SCORES: &str = "tokenizer.ggml.scores";
const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const MERGES: &str = "tokenizer.ggml.merges";
const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
/// The special tokens `transformers` names from the file, in its attribute order.
const SPECIAL_IDS: [&str; 4] = [
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
];

/// llama.cpp's `tokenizer.ggml.token_type` values that become added tokens.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// SentencePiece's word-boundary mark.
const SPIECE: char = '\u{2581}';

const LLAMA3_SPLIT: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);
const TEKKEN_SPLIT: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*",
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);
const GPT4O_SPLIT: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regex `transformers` (`GGUF_PRE_TOKENIZER_SPLITS`) uses for a `tokenizer.ggml.pre`;
/// `None` keeps the builder's own pre-tokenizer.
fn split_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

/// Build the tokenizer a GGUF file carries in its metadata, as `transformers` does when it loads
/// the same GGUF.
///
/// Needs `general.architecture`, `tokenizer.ggml.model` and `tokenizer.ggml.tokens`; a
/// SentencePiece vocabulary also needs `tokenizer.ggml.scores` (merges are derived from them).
/// A missing key, a value of the wrong type or an id out of range is an
/// [`IoError::GgufTokenizer`] naming the key.
pub fn tokenizer_from_gguf(content: &Content) -> Result<Tokenizer> {
    let meta = Meta(&content.metadata);
    let architecture = meta.required_string(ARCHITECTURE)?;
    let model = meta.required_string(MODEL)?;
    let tokens = meta
        .strings(TOKENS)?
        .ok_or_else(|| bad(TOKENS, "missing"))?;
    let token_types = meta.ints(TOKEN_TYPE, tokens.len())?;
    let kind = Kind::select(architecture, model)?;

    let mut add_bos = meta.flag(ADD_BOS)?;
    let add_eos = meta.flag(ADD_EOS)?.unwrap_or(false);
    match kind {
        // Older files have no flag, and llama.cpp adds BOS to a sentencepiece vocabulary that
        // does not say otherwise.
        Kind::SentencePiece | Kind::Phi3 | Kind::Gemma => {
            add_bos.get_or_insert(true);
        }
        // The flag is set, but the reference tokenizer adds no BOS: the chat template writes it.
        Kind::Gemma4 => add_bos = Some(false),
        Kind::ByteLevel => {}
    }
    let add_bos = add_bos.unwrap_or(false);

    // The special token strings, looked up in the vocabulary as the file spells it.
    let mut named = Vec::with_capacity(SPECIAL_IDS.len());
    for key in SPECIAL_IDS {
        let Some(id) = meta.uint(key)? else {
            named.push(None);
            continue;
        };
        let token = usize::try_from(id)
            .ok()
            .and_then(|i| tokens.get(i))
            .ok_or_else(|| {
                bad(
                    key,
                    format!(
                        "id {id} is outside the vocabulary of {} tokens",
                        tokens.len()
                    ),
                )
            })?;
        named.push(Some(*token));
    }
    let (bos, eos) = (named[0], named[1]);

    let mut tk = match kind {
        Kind::ByteLevel => byte_level(&meta, &tokens)?,
        Kind::SentencePiece | Kind::Phi3 => sentencepiece(&meta, &tokens, kind)?,
        Kind::Gemma | Kind::Gemma4 => gemma(&meta, &tokens, kind)?,
    };
    add_file_tokens(&mut tk, &tokens, token_types.as_deref(), kind)?;

    if let Some(pre) = meta.string(PRE)? {
        if let Some(regex) = split_regex(pre) {
            let split = Split::new(
                SplitPattern::Regex(regex.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| bad(PRE, format!("split regex for '{pre}': {e}")))?;
            tk.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])));
        }
    }

    // The tokenizer class's own init adds the named special tokens it lacks as new special
    // tokens; `from_pretrained` then re-adds all of them as special, unnormalized tokens.
    let added = tk.get_added_tokens_decoder();
    let present: HashSet<&str> = added.values().map(|t| t.content.as_str()).collect();
    let missing: Vec<AddedToken> = named
        .iter()
        .flatten()
        .filter(|t| !present.contains(**t))
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tk.add_tokens(missing)
        .map_err(|e| bad(SPECIAL_IDS[0], e.to_string()))?;
    let named_tokens: Vec<AddedToken> = named
        .iter()
        .flatten()
        .map(|t| AddedToken::from(*t, true).normalized(false))
        .collect();
    tk.add_special_tokens(named_tokens)
        .map_err(|e| bad(SPECIAL_IDS[0], e.to_string()))?;

    let template = post_processor(&tk, bos.filter(|_| add_bos), eos.filter(|_| add_eos))?;
    tk.with_post_processor(Some(template));
    Ok(tk)
}

/// Which `transformers` builder a file's vocabulary goes to (`select_tokenizer_builder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `gpt2`: byte-level BPE.
    ByteLevel,
    /// `llama`: SentencePiece BPE with a Metaspace pre-tokenizer.
    SentencePiece,
    /// `llama` in a Phi-3 file: the prefix space comes from a normalizer.
    Phi3,
    /// `llama` in a Gemma 1-3 file.
    Gemma,
    /// `gemma4`.
    Gemma4,
}

impl Kind {
    fn select(architecture: &str, model: &str) -> Result<Self> {
        Ok(match (model, architecture) {
            ("llama", "gemma" | "gemma2" | "gemma3") => Kind::Gemma,
            ("llama", "phi3") => Kind::Phi3,
            ("llama", _) => Kind::SentencePiece,
            ("gpt2", _) => Kind::ByteLevel,
            ("gemma4", _) => Kind::Gemma4,
            (other, _) => {
                return Err(bad(
                    MODEL,
                    format!(
                        "tokenizer type '{other}' is not supported (supported: gpt2, llama, gemma4)"
                    ),
                ))
            }
        })
    }

    /// The special tokens the builder class defaults to, which its init adds before anything
    /// from the file (`GPT2Tokenizer`, `LlamaTokenizer`, `GemmaTokenizer`).
    fn default_specials(self) -> &'static [&'static str] {
        match self {
            Kind::ByteLevel => &["<|endoftext|>"],
            Kind::SentencePiece | Kind::Phi3 => &["<s>", "</s>", "<unk>"],
            Kind::Gemma | Kind::Gemma4 => &["<bos>", "<eos>", "<unk>", "<pad>", "<mask>"],
        }
    }
}

/// `byte_level_tokenizer`: GPT-2 style byte-level BPE.
fn byte_level(meta: &Meta, tokens: &[&str]) -> Result<Tokenizer> {
    let alphabet = ByteAlphabet::new();
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (alphabet.respell(t), i as u32))
        .collect();
    let merges = file_or_derived_merges(meta, tokens, || file_scores(meta, tokens.len()))?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .build()
        .map_err(|e| bad(MERGES, e.to_string()))?;
    let mut tk = Tokenizer::new(bpe);
    tk.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tk.with_decoder(Some(ByteLevel::default()));
    Ok(tk)
}

/// `sentencepiece_tokenizer` with `LlamaTokenizer` (and `phi3_tokenizer`).
fn sentencepiece(meta: &Meta, tokens: &[&str], kind: Kind) -> Result<Tokenizer> {
    let merges = file_or_derived_merges(meta, tokens, || file_scores(meta, tokens.len()))?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    // `LlamaTokenizer` gives its BPE no unk token: unknown text falls back to bytes.
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| bad(MERGES, e.to_string()))?;
    let mut tk = Tokenizer::new(bpe);
    if kind == Kind::Phi3 {
        let normalizer = NormalizerSequence::new(vec![
            Prepend::new(SPIECE.to_string()).into(),
            replace(" ", SPIECE)?.into(),
        ]);
        tk.with_normalizer(Some(normalizer))
            .map_err(|e| bad(TOKENS, e.to_string()))?;
    } else {
        tk.with_pre_tokenizer(Some(Metaspace::new(SPIECE, PrependScheme::First, false)));
    }
    tk.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::Replace(replace(&SPIECE.to_string(), ' ')?),
        ByteFallback::default().into(),
        Fuse::default().into(),
        Strip::new(' ', 1, 0).into(),
    ])));
    Ok(tk)
}

/// `gemma_tokenizer` (Gemma 1-3) and the `gemma4` builder, both `GemmaTokenizer`.
fn gemma(meta: &Meta, tokens: &[&str], kind: Kind) -> Result<Tokenizer> {
    let (spelled, merges) = if kind == Kind::Gemma {
        // A token of two or more spaces is stored as real spaces while `GemmaTokenizer` looks
        // it up as `▁▁`; and Gemma's scores do not follow its merge order, the file order does.
        let spelled: Vec<String> = tokens
            .iter()
            .map(|t| {
                if t.contains(' ') && t.chars().all(py_isspace) {
                    SPIECE.to_string().repeat(t.chars().count())
                } else {
                    t.to_string()
                }
            })
            .collect();
        let spelled_refs: Vec<&str> = spelled.iter().map(String::as_str).collect();
        let positions = || Ok((0..tokens.len()).map(|i| -(i as f64)).collect());
        let merges = file_or_derived_merges(meta, &spelled_refs, positions)?;
        (spelled, merges)
    } else {
        let merges = file_or_derived_merges(meta, tokens, || file_scores(meta, tokens.len()))?;
        (tokens.iter().map(|t| t.to_string()).collect(), merges)
    };
    let vocab: Vocab = spelled
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .unk_token("<unk>".to_string())
        .byte_fallback(true)
        .build()
        .map_err(|e| bad(MERGES, e.to_string()))?;
    let mut tk = Tokenizer::new(bpe);
    tk.with_normalizer(Some(replace(" ", SPIECE)?))
        .map_err(|e| bad(TOKENS, e.to_string()))?;
    let split = Split::new(" ", SplitDelimiterBehavior::MergedWithPrevious, false)
        .map_err(|e| bad(TOKENS, e.to_string()))?;
    tk.with_pre_tokenizer(Some(split));
    tk.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::Replace(replace(&SPIECE.to_string(), ' ')?),
        ByteFallback::default().into(),
        Fuse::default().into(),
    ])));
    Ok(tk)
}

/// The builder's default specials, then `add_gguf_special_tokens`: control tokens as special
/// tokens and user-defined tokens the vocabulary knows as plain added tokens.
fn add_file_tokens(
    tk: &mut Tokenizer,
    tokens: &[&str],
    token_types: Option<&[i64]>,
    kind: Kind,
) -> Result<()> {
    let defaults: Vec<AddedToken> = kind
        .default_specials()
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tk.add_tokens(defaults)
        .map_err(|e| bad(TOKENS, e.to_string()))?;
    let Some(types) = token_types else {
        return Ok(());
    };

    // In a byte-level vocabulary a control token spelled outside the byte alphabet is a
    // llama.cpp mislabel; adding it would grow the vocabulary past the model's, so it is skipped.
    let alphabet = (kind == Kind::ByteLevel).then(ByteAlphabet::new);
    let control: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|(t, ty)| {
            **ty == CONTROL
                && alphabet
                    .as_ref()
                    .is_none_or(|a| t.chars().all(|c| a.contains(c)))
        })
        .map(|(t, _)| AddedToken::from(*t, true).normalized(false))
        .collect();
    if !control.is_empty() {
        tk.add_special_tokens(control)
            .map_err(|e| bad(TOKEN_TYPE, e.to_string()))?;
    }
    let vocab = tk.get_vocab(true);
    let user_defined: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|(t, ty)| **ty == USER_DEFINED && vocab.contains_key(**t))
        .map(|(t, _)| AddedToken::from(*t, false).normalized(false))
        .collect();
    if !user_defined.is_empty() {
        tk.add_tokens(user_defined)
            .map_err(|e| bad(TOKEN_TYPE, e.to_string()))?;
    }
    Ok(())
}

/// `update_post_processor`: `[bos] $A [eos]`, and for pairs `[bos] $A [eos] [bos] $B [eos]`.
fn post_processor(
    tk: &Tokenizer,
    bos: Option<&str>,
    eos: Option<&str>,
) -> Result<TemplateProcessing> {
    let id = |token: &str, key: &'static str| {
        tk.token_to_id(token)
            .ok_or_else(|| bad(key, format!("token '{token}' is not in the vocabulary")))
    };
    let mut specials = Vec::new();
    if let Some(b) = bos {
        specials.push((b.to_string(), id(b, SPECIAL_IDS[0])?));
    }
    if let Some(e) = eos {
        specials.push((e.to_string(), id(e, SPECIAL_IDS[1])?));
    }
    // The same f-string `transformers` parses, so a token it cannot parse fails here too.
    let seq = |s: &str, t: u32| {
        let mut parts = Vec::new();
        if let Some(b) = bos {
            parts.push(format!("{b}:{t}"));
        }
        parts.push(format!("${s}:{t}"));
        if let Some(e) = eos {
            parts.push(format!("{e}:{t}"));
        }
        parts.join(" ")
    };
    let single = seq("A", 0);
    let pair = format!("{single} {}", seq("B", 1));
    let key = if bos.is_some() { ADD_BOS } else { ADD_EOS };
    TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|e| bad(key, format!("cannot build the post-processor: {e}")))?
        .special_tokens(specials)
        .build()
        .map_err(|e| bad(key, format!("cannot build the post-processor: {e}")))
}

/// `get_merges`: the file's merges, else the ones its vocabulary implies, best `scores` first.
fn file_or_derived_merges(
    meta: &Meta,
    tokens: &[&str],
    scores: impl FnOnce() -> Result<Vec<f64>>,
) -> Result<Merges> {
    match meta.strings(MERGES)? {
        Some(merges) => split_merges(&merges),
        None => Ok(generate_merges(tokens, &scores()?)),
    }
}

/// `tokenizer.ggml.scores`, needed when the file has no merges to derive them from.
fn file_scores(meta: &Meta, len: usize) -> Result<Vec<f64>> {
    meta.floats(SCORES, len)?.ok_or_else(|| {
        bad(
            SCORES,
            format!("missing, and {MERGES} too: no merges to build the BPE from"),
        )
    })
}

/// Merges as the file spells them, `"left right"`.
fn split_merges(merges: &[&str]) -> Result<Merges> {
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| match m.split(' ').collect::<Vec<_>>().as_slice() {
            [l, r] => Ok((l.to_string(), r.to_string())),
            _ => Err(bad(
                MERGES,
                format!("entry {i} '{m}' is not two tokens separated by one space"),
            )),
        })
        .collect()
}

/// `transformers.tokenization_utils_base.generate_merges(vocab, vocab_scores)`: every split of
/// a token into two tokens of the vocabulary, sorted by (score, left length, right length),
/// highest first; ties keep vocabulary order, then (left id, right id).
fn generate_merges(tokens: &[&str], scores: &[f64]) -> Merges {
    // Python dicts: a repeated token keeps the place of its first occurrence and the value of
    // its last.
    let mut vocab: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    let mut score: HashMap<&str, f64> = HashMap::with_capacity(tokens.len());
    let mut order = Vec::with_capacity(tokens.len());
    for (i, (&t, &s)) in tokens.iter().zip(scores).enumerate() {
        if vocab.insert(t, i).is_none() {
            order.push(t);
        }
        score.insert(t, s);
    }
    struct Candidate<'a> {
        left: &'a str,
        right: &'a str,
        score: f64,
        left_len: usize,
        right_len: usize,
    }
    let mut merges: Vec<Candidate> = Vec::new();
    let mut local: Vec<(usize, usize, &str, &str)> = Vec::new();
    for t in order {
        local.clear();
        for (at, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(at);
            if let (Some(&a), Some(&b)) = (vocab.get(l), vocab.get(r)) {
                local.push((a, b, l, r));
            }
        }
        local.sort_by_key(|&(a, b, _, _)| (a, b));
        let s = score[t];
        merges.extend(local.iter().map(|&(_, _, left, right)| Candidate {
            left,
            right,
            score: s,
            left_len: left.chars().count(),
            right_len: right.chars().count(),
        }));
    }
    // Python's `sorted(..., reverse=True)` is stable: equal keys keep their order.
    merges.sort_by(|x, y| {
        y.score
            .partial_cmp(&x.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(y.left_len.cmp(&x.left_len))
            .then(y.right_len.cmp(&x.right_len))
    });
    merges
        .into_iter()
        .map(|c| (c.left.to_string(), c.right.to_string()))
        .collect()
}

/// GPT-2's `bytes_to_unicode`: printable bytes stand for themselves, the other 68 map to
/// U+0100..U+0143.
struct ByteAlphabet {
    chars: [char; 256],
    /// Membership by code point; every character of the alphabet is below U+0144.
    member: [bool; 0x144],
}

impl ByteAlphabet {
    fn new() -> Self {
        let mut chars = ['\0'; 256];
        let mut member = [false; 0x144];
        let mut next = 0x100u32;
        for (b, slot) in chars.iter_mut().enumerate() {
            let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
            let code = if printable {
                b as u32
            } else {
                next += 1;
                next - 1
            };
            *slot = char::from_u32(code).unwrap_or_default();
            member[code as usize] = true;
        }
        Self { chars, member }
    }

    fn contains(&self, c: char) -> bool {
        self.member.get(c as usize).copied().unwrap_or(false)
    }

    /// A token as a byte-level vocabulary spells it: unchanged when every character is already
    /// in the alphabet, else its UTF-8 bytes through the alphabet.
    fn respell(&self, token: &str) -> String {
        if token.chars().all(|c| self.contains(c)) {
            token.to_string()
        } else {
            token.bytes().map(|b| self.chars[b as usize]).collect()
        }
    }
}

/// Python's `str.isspace`: Unicode White_Space plus the information separators U+001C-U+001F.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn replace(pattern: &str, content: char) -> Result<Replace> {
    Replace::new(pattern, content.to_string()).map_err(|e| bad(TOKENS, e.to_string()))
}

fn bad(key: &str, message: impl Into<String>) -> IoError {
    IoError::GgufTokenizer {
        key: key.to_string(),
        message: message.into(),
    }
}

fn type_name(v: &Value) -> String {
    match v {
        Value::Array(items) => match items.first() {
            Some(first) => format!("an array of {}", type_name(first)),
            None => "an empty array".to_string(),
        },
        other => format!("{:?}", other.value_type()),
    }
}

/// Typed reads of GGUF metadata; every error names the key.
struct Meta<'a>(&'a HashMap<String, Value>);

impl<'a> Meta<'a> {
    fn string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(bad(
                key,
                format!("expected a string, found {}", type_name(v)),
            )),
        }
    }

    fn required_string(&self, key: &str) -> Result<&'a str> {
        self.string(key)?.ok_or_else(|| bad(key, "missing"))
    }

    fn array(&self, key: &str) -> Result<Option<&'a [Value]>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(v) => Err(bad(
                key,
                format!("expected an array, found {}", type_name(v)),
            )),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(bad(
                    key,
                    format!("entry {i} is {}, expected a string", type_name(other)),
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// A numeric array with one entry per token.
    fn floats(&self, key: &str, len: usize) -> Result<Option<Vec<f64>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        let values = items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                number(v).ok_or_else(|| {
                    bad(
                        key,
                        format!("entry {i} is {}, expected a number", type_name(v)),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        check_len(key, values.len(), len)?;
        Ok(Some(values))
    }

    /// An integer array with one entry per token.
    fn ints(&self, key: &str, len: usize) -> Result<Option<Vec<i64>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        let values = items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                integer(v).ok_or_else(|| {
                    bad(
                        key,
                        format!("entry {i} is {}, expected an integer", type_name(v)),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        check_len(key, values.len(), len)?;
        Ok(Some(values))
    }

    fn uint(&self, key: &str) -> Result<Option<u64>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => match integer(v) {
                Some(i) if i >= 0 => Ok(Some(i as u64)),
                _ => Err(bad(
                    key,
                    format!("expected a non-negative integer, found {v:?}"),
                )),
            },
        }
    }

    fn flag(&self, key: &str) -> Result<Option<bool>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => integer(v)
                .map(|i| Some(i != 0))
                .ok_or_else(|| bad(key, format!("expected a bool, found {}", type_name(v)))),
        }
    }
}

fn check_len(key: &str, found: usize, expected: usize) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(bad(
            key,
            format!("has {found} entries but {TOKENS} has {expected}"),
        ))
    }
}

fn integer(v: &Value) -> Option<i64> {
    Some(match *v {
        Value::U8(x) => x.into(),
        Value::I8(x) => x.into(),
        Value::U16(x) => x.into(),
        Value::I16(x) => x.into(),
        Value::U32(x) => x.into(),
        Value::I32(x) => x.into(),
        Value::U64(x) => i64::try_from(x).ok()?,
        Value::I64(x) => x,
        _ => return None,
    })
}

fn number(v: &Value) -> Option<f64> {
    match *v {
        Value::F32(x) => Some(x.into()),
        Value::F64(x) => Some(x),
        _ => integer(v).map(|i| i as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let a = ByteAlphabet::new();
        assert_eq!(a.chars[b'A' as usize], 'A');
        assert_eq!(a.chars[b' ' as usize], '\u{120}');
        assert_eq!(a.chars[b'\n' as usize], '\u{10a}');
        assert_eq!(a.chars[0xAD], '\u{143}');
        assert!(a.contains('\u{143}') && !a.contains('\u{144}') && !a.contains(' '));
        // é is in the alphabet (byte 0xE9), so the token is kept as spelled...
        assert_eq!(a.respell("héllo"), "héllo");
        // ...while one character outside it sends the whole token through its bytes.
        assert_eq!(a.respell("a日 b"), "aæĹ¥Ġb");
        assert_eq!(a.respell("Ġthe"), "Ġthe");
    }

    #[test]
    fn merges_follow_score_then_lengths() {
        let tokens = ["a", "b", "c", "ab", "bc", "abc"];
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -0.5];
        let m = generate_merges(&tokens, &scores);
        let m: Vec<(&str, &str)> = m.iter().map(|(l, r)| (l.as_str(), r.as_str())).collect();
        // abc (-0.5): a+bc (left 1) and ab+c (left 2): longer left first.
        assert_eq!(m, [("ab", "c"), ("a", "bc"), ("a", "b"), ("b", "c")]);
    }
}
