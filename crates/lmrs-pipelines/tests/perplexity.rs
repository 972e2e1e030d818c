//! Strided-window perplexity against `transformers` (tools/gen_perplexity_fixture.py): the
//! guide's weighting and the per-token average on the tiny Llama, GPT-2 and Gemma 3 fixtures,
//! for overlapping and disjoint windows and the last-window edge cases; tokenization
//! identical; batching and chunking do not change the result.

use lmrs_core::Device;
use lmrs_pipelines::{
    perplexity, AddBos, LoadOptions, PerplexityOptions, PerplexityReport, TextGenerationPipeline,
};
use serde_json::Value;
use std::path::PathBuf;

const REL_TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn expected() -> Value {
    let p = fixtures().join("perplexity/expected.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn text() -> String {
    std::fs::read_to_string(fixtures().join("perplexity/text.txt")).unwrap()
}

fn load(name: &str) -> TextGenerationPipeline {
    let dir = fixtures().join(name);
    TextGenerationPipeline::load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn u(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

/// Compare one report with one fixture configuration; returns the largest relative diff.
fn check(name: &str, cfg: &Value, r: &PerplexityReport) -> f64 {
    let label = format!("{name} {}", cfg["name"]);
    assert_eq!(r.windows, u(&cfg["windows"]), "{label}: windows");
    assert_eq!(r.tokens, u(&cfg["tokens"]), "{label}: tokens");
    assert_eq!(r.scored_tokens, u(&cfg["scored_tokens"]), "{label}: scored");
    let hf = &cfg["hf_docs"];
    let tl = &cfg["token_level"];
    assert_eq!(r.loss_tokens, u(&hf["n_tokens"]), "{label}: n_tokens");
    let pairs = [
        ("ppl", r.ppl, f(&hf["ppl"])),
        ("nll", r.nll, f(&hf["nll"])),
        ("nll_sum", r.nll_sum, f(&hf["nll_sum"])),
        ("token_ppl", r.token_ppl, f(&tl["ppl"])),
        ("token_nll", r.token_nll, f(&tl["nll"])),
    ];
    let mut worst = 0.0f64;
    for (what, got, want) in pairs {
        let d = rel(got, want);
        assert!(d < REL_TOL, "{label}: {what} {got} vs {want} (rel {d:e})");
        worst = worst.max(d);
    }
    // The guide's code run verbatim (float32 loss) agrees too, where it is not NaN.
    if let Some(t) = cfg["hf_docs_torch"].as_object() {
        let d = rel(r.ppl, f(&t["ppl"]));
        assert!(
            d < REL_TOL,
            "{label}: ppl {} vs torch {} (rel {d:e})",
            r.ppl,
            t["ppl"]
        );
        assert_eq!(r.loss_tokens, u(&t["n_tokens"]), "{label}: torch n_tokens");
    }
    worst
}

fn options(cfg: &Value) -> PerplexityOptions {
    PerplexityOptions {
        max_length: Some(u(&cfg["max_length"])),
        stride: Some(u(&cfg["stride"])),
        ..Default::default()
    }
}

fn run_model(name: &str) {
    let exp = expected();
    let entry = &exp["models"][name];
    let p = load(name);
    let ids = p.perplexity_ids(&text(), AddBos::Auto).unwrap();
    let want: Vec<u32> = serde_json::from_value(entry["ids"].clone()).unwrap();
    assert_eq!(ids, want, "{name}: tokenization of text.txt");
    let mut worst = 0.0f64;
    for cfg in entry["configs"].as_array().unwrap() {
        let limit = cfg["limit"].as_u64().map_or(ids.len(), |l| l as usize);
        let r = perplexity(p.model(), &ids[..limit], &options(cfg), &Device::Cpu, None).unwrap();
        worst = worst.max(check(name, cfg, &r));
    }
    eprintln!("{name}: largest relative diff {worst:e}");
}

#[test]
fn llama_matches_transformers() {
    run_model("llama-tiny");
}

#[test]
fn gpt2_matches_transformers() {
    run_model("gpt2-tiny");
}

#[test]
fn gemma3_with_bos_and_sliding_window_matches_transformers() {
    let exp = expected();
    assert_eq!(exp["models"]["gemma3-tiny"]["special_added"], 1);
    run_model("gemma3-tiny");
}

#[test]
fn default_window_is_the_context_and_stride_half_of_it() {
    let exp = expected();
    let cfg = exp["models"]["gpt2-tiny"]["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "len128_stride64")
        .unwrap()
        .clone();
    let p = load("gpt2-tiny");
    let mut calls = Vec::new();
    let mut progress = |done: usize, total: usize| calls.push((done, total));
    let r = p
        .perplexity(
            &text(),
            AddBos::Auto,
            &PerplexityOptions::default(),
            Some(&mut progress),
        )
        .unwrap();
    assert_eq!((r.max_length, r.stride), (128, 64));
    check("gpt2-tiny", &cfg, &r);
    let total = r.windows;
    assert_eq!(calls.last(), Some(&(total, total)));
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn batching_and_chunking_do_not_change_the_result() {
    let p = load("gemma3-tiny");
    let ids = p.perplexity_ids(&text(), AddBos::Auto).unwrap();
    let run = |batch_size, chunk_tokens| {
        let o = PerplexityOptions {
            max_length: Some(64),
            stride: Some(24),
            batch_size,
            chunk_tokens,
        };
        perplexity(p.model(), &ids[..240], &o, &Device::Cpu, None).unwrap()
    };
    let base = run(1, 512);
    for (b, c) in [(3, 512), (1, 7), (5, 16), (2, 3)] {
        let r = run(b, c);
        assert_eq!(r.windows, base.windows);
        assert_eq!(r.scored_tokens, base.scored_tokens);
        for (got, want) in [(r.ppl, base.ppl), (r.token_ppl, base.token_ppl)] {
            assert!(
                rel(got, want) < 1e-5,
                "batch {b} chunk {c}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn bos_modes() {
    let p = load("gemma3-tiny");
    let t = text();
    let auto = p.perplexity_ids(&t, AddBos::Auto).unwrap();
    let never = p.perplexity_ids(&t, AddBos::Never).unwrap();
    let always = p.perplexity_ids(&t, AddBos::Always).unwrap();
    assert_eq!(auto.len(), never.len() + 1);
    assert_eq!(always, auto);
    let g = load("gpt2-tiny");
    let plain = g.perplexity_ids(&t, AddBos::Auto).unwrap();
    assert_eq!(plain, g.perplexity_ids(&t, AddBos::Never).unwrap());
    let with = g.perplexity_ids(&t, AddBos::Always).unwrap();
    assert_eq!(with[0], 0, "gpt2-tiny's bos_token_id");
    assert_eq!(&with[1..], plain.as_slice());
}

#[test]
fn bad_input_is_an_error() {
    let p = load("llama-tiny");
    let err = |o: PerplexityOptions, t: &str| {
        p.perplexity(t, AddBos::Auto, &o, None)
            .unwrap_err()
            .to_string()
    };
    let t = text();
    let o = |max_length, stride| PerplexityOptions {
        max_length,
        stride,
        ..Default::default()
    };
    assert!(err(o(Some(64), Some(0)), &t).contains("stride 0"));
    assert!(err(o(Some(64), Some(65)), &t).contains("stride 65"));
    assert!(err(o(Some(256), None), &t).contains("context of 128"));
    assert!(err(o(None, None), "").contains("empty"));
    assert!(err(o(None, None), "a").contains("at least 2"));
    assert!(err(o(Some(1), None), &t).contains("no token was scored"));
    let bad = perplexity(p.model(), &[1, 9999], &o(None, None), &Device::Cpu, None);
    assert!(bad.unwrap_err().to_string().contains("vocabulary"));
}
