//! Parity of the decoder-only models against `transformers` on the tiny random checkpoints
//! written by `tools/gen_decoder_fixtures.py`: teacher-forced logits of every stored position,
//! the same logits computed one token at a time through the cache, a left-padded batch of the
//! three prompts against the single runs, and the llama-tiny GGUF files (f32, q8_0, q4_0).
//!
//! Run with `--nocapture` to see the measured differences.

use lmrs_core::{CausalLm, DecoderCache, Device, LogitsFor, Tensor};
use lmrs_io::{GgufFile, ModelFiles};
use lmrs_models::{load_causal, load_causal_gguf, CausalModel};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// Max abs difference allowed between f32 logits of lmrs and transformers (and between two
/// lmrs computations of the same logits: cached vs uncached, batched vs single). Measured max
/// over the three prompts and every stored position (logits up to 7-13 in magnitude):
///
/// | fixture     | vs transformers | cached vs full | batch vs single |
/// |-------------|-----------------|----------------|-----------------|
/// | llama-tiny  | 1.06e-5         | 1.0e-5         | 1.24e-5         |
/// | llama3-tiny | 1.00e-5         | 1.1e-5         | 1.05e-5         |
/// | qwen2-tiny  | 1.24e-5         | 8.1e-6         | 1.34e-5         |
/// | gpt2-tiny   | 1.96e-5         | 1.38e-5        | 1.72e-5         |
/// | gemma3-tiny | 8.7e-6          | 6.0e-6         | 7.3e-6          |
/// | f32 GGUF    | 1.06e-5 vs the llama-tiny safetensors reference            |
///
/// (the references are rounded to 6 decimals: up to 5e-7 of each is rounding.)
const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> Value {
    let path = fixture(name).join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn load_hf(name: &str) -> CausalModel {
    let files = ModelFiles::from_folder(&fixture(name)).unwrap();
    load_causal(&files, &Device::Cpu).unwrap()
}

fn load_gguf(file: &str) -> CausalModel {
    let path = fixture("llama-tiny-gguf").join(file);
    let gguf = Arc::new(GgufFile::open(&path).unwrap());
    load_causal_gguf(gguf, &Device::Cpu).unwrap()
}

fn u32s(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// One stored logits case of expected.json.
struct Case {
    name: String,
    ids: Vec<u32>,
    positions: Vec<usize>,
    /// `logits[i]` is the row of `positions[i]`.
    logits: Vec<Vec<f32>>,
}

fn cases(section: &Value) -> Vec<Case> {
    section
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            ids: u32s(&c["input_ids"]),
            positions: serde_json::from_value(c["positions"].clone()).unwrap(),
            logits: serde_json::from_value(c["logits"].clone()).unwrap(),
        })
        .collect()
}

/// Rows `(t, vocab)` of a `(1, t, vocab)` or `(t, vocab)` logits tensor.
fn rows(logits: &Tensor) -> Vec<Vec<f32>> {
    let l = if logits.rank() == 3 {
        logits.squeeze(0).unwrap()
    } else {
        logits.clone()
    };
    l.to_vec2::<f32>().unwrap()
}

/// Logits of every position of `ids` in one forward pass.
fn full_logits(model: &CausalModel, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = model.new_cache(&[0], ids.len()).unwrap();
    let x = Tensor::from_slice(ids, (1, ids.len()), &Device::Cpu).unwrap();
    let out = model
        .forward(&x, &mut cache, LogitsFor::All)
        .unwrap()
        .unwrap();
    assert_eq!(cache.len(), ids.len());
    rows(&out)
}

/// Logits of every position of `ids`, feeding one token at a time through the cache.
fn stepped_logits(model: &CausalModel, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = model.new_cache(&[0], ids.len()).unwrap();
    ids.iter()
        .map(|&id| {
            let x = Tensor::from_slice(&[id], (1, 1), &Device::Cpu).unwrap();
            let out = model
                .forward(&x, &mut cache, LogitsFor::Last)
                .unwrap()
                .unwrap();
            rows(&out).pop().unwrap()
        })
        .collect()
}

/// Max abs diff of `got` (every position) against the stored rows of `case`.
fn diff_vs_case(got: &[Vec<f32>], case: &Case) -> f32 {
    case.positions
        .iter()
        .zip(&case.logits)
        .map(|(&p, want)| max_abs_diff(&got[p], want))
        .fold(0.0, f32::max)
}

fn diff_all(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| max_abs_diff(x, y))
        .fold(0.0, f32::max)
}

/// The three prompts as one left-padded batch: a prefill of all but the last `tail` slots,
/// then one slot per step; returns each row's logits at its real positions.
fn batched_logits(model: &CausalModel, prompts: &[Vec<u32>], tail: usize) -> Vec<Vec<Vec<f32>>> {
    let n = prompts.iter().map(Vec::len).max().unwrap();
    let pads: Vec<usize> = prompts.iter().map(|p| n - p.len()).collect();
    let mut ids = Vec::new();
    for (p, &pad) in prompts.iter().zip(&pads) {
        // Any id works for padding: it is masked out.
        ids.extend(std::iter::repeat_n(7u32, pad));
        ids.extend(p);
    }
    let b = prompts.len();
    let ids = Tensor::from_vec(ids, (b, n), &Device::Cpu).unwrap();
    let mut cache = model.new_cache(&pads, n).unwrap();
    let head = n - tail;
    let mut parts = vec![model
        .forward(&ids.narrow(1, 0, head).unwrap(), &mut cache, LogitsFor::All)
        .unwrap()
        .unwrap()];
    for s in head..n {
        let x = ids.narrow(1, s, 1).unwrap();
        parts.push(
            model
                .forward(&x, &mut cache, LogitsFor::Last)
                .unwrap()
                .unwrap(),
        );
    }
    let all = Tensor::cat(&parts, 1).unwrap();
    (0..b)
        .map(|r| {
            let row = rows(&all.get(r).unwrap());
            row[pads[r]..].to_vec()
        })
        .collect()
}

struct Measured {
    reference: f32,
    cached: f32,
    batched: f32,
}

fn check_fixture(name: &str) -> Measured {
    let model = load_hf(name);
    let exp = expected(name);
    let cases = cases(&exp["logits"]);
    assert_eq!(cases.len(), 3, "{name}: short, medium, long");
    let mut m = Measured {
        reference: 0.0,
        cached: 0.0,
        batched: 0.0,
    };
    let mut singles = Vec::new();
    for case in &cases {
        let full = full_logits(&model, &case.ids);
        let d = diff_vs_case(&full, case);
        eprintln!("{name} {}: logits max abs diff {d:.2e}", case.name);
        assert!(d <= TOL, "{name} {}: logits differ by {d}", case.name);
        m.reference = m.reference.max(d);

        let stepped = stepped_logits(&model, &case.ids);
        let d = diff_all(&stepped, &full);
        eprintln!("{name} {}: cached vs full max abs diff {d:.2e}", case.name);
        assert!(d <= TOL, "{name} {}: cached differs by {d}", case.name);
        assert!(diff_vs_case(&stepped, case) <= TOL);
        m.cached = m.cached.max(d);
        singles.push(full);
    }
    let prompts: Vec<Vec<u32>> = cases.iter().map(|c| c.ids.clone()).collect();
    // One pass over the whole batch, and a prefill followed by cached steps as long as the
    // short prompt (so one row is all padding in the prefill and all real tokens after).
    let shortest = prompts.iter().map(Vec::len).min().unwrap();
    for tail in [0, shortest] {
        let batch = batched_logits(&model, &prompts, tail);
        for (r, (got, single)) in batch.iter().zip(&singles).enumerate() {
            let d = diff_all(got, single);
            eprintln!("{name}: batch row {r} (tail {tail}) vs single max abs diff {d:.2e}");
            assert!(d <= TOL, "{name}: batch row {r} differs by {d}");
            m.batched = m.batched.max(d);
        }
    }
    eprintln!(
        "{name}: max |lmrs - transformers| {:.2e}, cached vs full {:.2e}, batch vs single {:.2e}",
        m.reference, m.cached, m.batched
    );
    m
}

#[test]
fn llama_matches_transformers() {
    check_fixture("llama-tiny");
}

#[test]
fn llama3_rope_scaling_matches_transformers() {
    check_fixture("llama3-tiny");
}

#[test]
fn qwen2_matches_transformers() {
    check_fixture("qwen2-tiny");
}

#[test]
fn gpt2_matches_transformers() {
    check_fixture("gpt2-tiny");
}

#[test]
fn gemma3_matches_transformers() {
    check_fixture("gemma3-tiny");
}

#[test]
fn gemma3_sliding_window_is_applied() {
    // The long prompt (44 tokens) is far past the window of 8: a model that ignored the window
    // would differ from the reference by > 0.1 there (the fixture script checks this).
    let model = load_hf("gemma3-tiny");
    let exp = expected("gemma3-tiny");
    let long = &cases(&exp["logits"])[2];
    assert!(long.ids.len() > 40 && *long.positions.last().unwrap() > 16);
    let full = full_logits(&model, &long.ids);
    assert!(diff_vs_case(&full, long) <= TOL);
}

fn gguf_file_entry<'a>(exp: &'a Value, file: &str) -> &'a Value {
    exp["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == file)
        .unwrap_or_else(|| panic!("{file} not in expected.json"))
}

#[test]
fn f32_gguf_equals_the_safetensors_model() {
    let model = load_gguf("llama-tiny-f32.gguf");
    let hf = cases(&expected("llama-tiny")["logits"]);
    let exp = expected("llama-tiny-gguf");
    let own = cases(&gguf_file_entry(&exp, "llama-tiny-f32.gguf")["logits"]);
    let mut worst = 0f32;
    for (case, own) in hf.iter().zip(&own) {
        assert_eq!(
            case.ids, own.ids,
            "the GGUF references use the same prompts"
        );
        let full = full_logits(&model, &case.ids);
        let d = diff_vs_case(&full, case).max(diff_vs_case(&full, own));
        eprintln!("llama-tiny-f32.gguf {}: max abs diff {d:.2e}", case.name);
        assert!(d <= TOL, "f32 GGUF {}: logits differ by {d}", case.name);
        let stepped = stepped_logits(&model, &case.ids);
        assert!(diff_all(&stepped, &full) <= TOL, "f32 GGUF cached");
        worst = worst.max(d);
    }
    eprintln!("llama-tiny-f32.gguf: max |lmrs - safetensors reference| {worst:.2e}");
}

/// Standard deviation of every stored logit of `cases`.
fn logit_std(cases: &[Case]) -> f32 {
    let all: Vec<f32> = cases.iter().flat_map(|c| c.logits.concat()).collect();
    let mean = all.iter().sum::<f32>() / all.len() as f32;
    (all.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / all.len() as f32).sqrt()
}

/// Greedy continuation with the cache; returns `(new ids, top-2 margin at each step)`.
fn greedy(model: &CausalModel, prompt: &[u32], new: usize) -> (Vec<u32>, Vec<f32>) {
    let mut cache = model.new_cache(&[0], prompt.len() + new).unwrap();
    let mut x = Tensor::from_slice(prompt, (1, prompt.len()), &Device::Cpu).unwrap();
    let (mut ids, mut margins) = (Vec::new(), Vec::new());
    for _ in 0..new {
        let out = model
            .forward(&x, &mut cache, LogitsFor::Last)
            .unwrap()
            .unwrap();
        let row = rows(&out).pop().unwrap();
        let (best, &top) = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        let second = row
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != best)
            .map(|(_, &v)| v)
            .fold(f32::NEG_INFINITY, f32::max);
        ids.push(best as u32);
        margins.push(top - second);
        x = Tensor::from_slice(&[best as u32], (1, 1), &Device::Cpu).unwrap();
    }
    (ids, margins)
}

/// A quantized file against transformers run on the same file's dequantized weights.
///
/// The weights are identical on both sides (transformers dequantizes the GGUF blocks to f32).
/// What differs is that lmrs, like llama.cpp, multiplies quantized matrices with activations
/// quantized to 8 bits per block of 32 (Q8_0: `d = max|x| / 127`, `round(x / d)`), an error of
/// up to d/2 on every input of every projection; through 2 layers and the 512-wide head this is
/// logit noise proportional to the logits' scale, so the bounds are fractions of the std of the
/// reference logits (llama-tiny: std ~3.3, |logit| up to ~15). Measured, over every stored
/// position of the three prompts:
///
/// | file | max abs diff        | RMS diff            |
/// |------|---------------------|---------------------|
/// | q8_0 | 0.446 (13.5% of std) | 0.070 (2.1% of std) |
/// | q4_0 | 0.530 (15.9% of std) | 0.073 (2.2% of std) |
///
/// These are all activation quantization: running transformers on the dequantized weights
/// with llama.cpp's Q8_0 activation rounding added in front of every `nn.Linear` reproduces
/// lmrs's q4_0 logits to < 1e-5 everywhere, and its q8_0 logits to < 1e-5 except at the last two
/// positions of the long prompt (0.116), where one activation lies within 1e-4 of a rounding
/// tie (moving the ties by 1e-4 of a quantum moves those logits by the same 0.1). The maximum is
/// heavy-tailed (a flipped rounding moves a few logits by ~0.1-0.5), the RMS is not; so the
/// bounds are 4% of the std on the RMS and 25% on the max (~1.7x the measured values). A real
/// bug (a wrong block layout or scale, q/k not un-permuted) moves logits by about the std: the
/// RMS difference between the q4_0 file and the f32 model is already ~30% of it.
const QUANT_RMS_REL_TOL: f32 = 0.04;
/// See [`QUANT_RMS_REL_TOL`].
const QUANT_MAX_REL_TOL: f32 = 0.25;
/// Greedy steps are compared while lmrs's own top-2 gap exceeds this: about twice the measured
/// mean abs logit difference (0.055), as both of the two competing logits carry that noise.
/// Steps past the first narrower gap are not compared (there the two can legitimately pick
/// different tokens: q8_0 greedy_1 at step 2 has a gap of 0.006 and does diverge).
const QUANT_GREEDY_MARGIN: f32 = 0.1;

fn check_quantized(file: &str) {
    let model = load_gguf(file);
    let exp = expected("llama-tiny-gguf");
    let entry = gguf_file_entry(&exp, file);
    let refs = cases(&entry["logits"]);
    let std = logit_std(&refs);
    let (max_tol, rms_tol) = (QUANT_MAX_REL_TOL * std, QUANT_RMS_REL_TOL * std);
    let (mut worst, mut sq, mut n, mut cached) = (0f32, 0f64, 0usize, 0f32);
    for case in &refs {
        let full = full_logits(&model, &case.ids);
        let d = diff_vs_case(&full, case);
        eprintln!(
            "{file} {}: max abs diff {d:.3e} (bound {max_tol:.3e})",
            case.name
        );
        assert!(
            d <= max_tol,
            "{file} {}: logits differ by {d} > {max_tol}",
            case.name
        );
        for (&p, want) in case.positions.iter().zip(&case.logits) {
            sq += full[p]
                .iter()
                .zip(want)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>();
            n += want.len();
        }
        // One row at a time quantizes the same activations: only float order differs.
        let stepped = stepped_logits(&model, &case.ids);
        let dc = diff_all(&stepped, &full);
        assert!(
            dc <= max_tol,
            "{file} {}: cached differs by {dc}",
            case.name
        );
        cached = cached.max(dc);
        worst = worst.max(d);
    }
    let rms = (sq / n as f64).sqrt() as f32;
    eprintln!(
        "{file}: |lmrs - transformers(dequantized)| max {worst:.3e} ({:.1}% of the logit std {std:.2}), RMS {rms:.3e} ({:.2}%); cached vs full {cached:.2e}",
        100.0 * worst / std,
        100.0 * rms / std
    );
    assert!(
        rms <= rms_tol,
        "{file}: RMS logit difference {rms} > {rms_tol}"
    );

    let mut compared = 0;
    for case in entry["generate"].as_array().unwrap() {
        let prompt = u32s(&case["input_ids"][0]);
        let want = u32s(&case["output_ids"][0])[prompt.len()..].to_vec();
        let (got, margins) = greedy(&model, &prompt, want.len());
        let name = case["name"].as_str().unwrap();
        let n = margins
            .iter()
            .take_while(|&&m| m > QUANT_GREEDY_MARGIN)
            .count();
        assert_eq!(got[..n], want[..n], "{file} {name}: greedy ids");
        let equal = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        eprintln!(
            "{file} {name}: {n} of {} greedy ids compared (clear margins), {equal} equal in a row",
            want.len()
        );
        compared += n;
    }
    assert!(compared >= 5, "{file}: only {compared} greedy ids compared");
}

#[test]
fn q8_0_gguf_matches_transformers_dequantized() {
    check_quantized("llama-tiny-q8_0.gguf");
}

#[test]
fn q4_0_gguf_matches_transformers_dequantized() {
    check_quantized("llama-tiny-q4_0.gguf");
}
