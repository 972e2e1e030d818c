//! The real-model tier for decoder-only LLMs: SmolLM2-135M-Instruct (Q4_1, the default model,
//! `$LMRS_HOME/models`) and Gemma 3 270M (Q4_K_M, `models/`), both fetched by
//! `scripts/fetch-models.sh`, against `tests/fixtures/real/llm_references.json`
//! (`tools/gen_llm_references.py`: transformers on the dequantized GGUF weights, in f32).
//!
//! lmrs runs the quantized weights directly with 8-bit activations (like llama.cpp), so its
//! logits are not exactly the reference's: at the last prompt position the top-20 logits differ
//! by up to 0.42 (SmolLM2) and 0.71 (Gemma). Two lmrs computations of the same logits that
//! differ only in float summation order (the prompt split differently between prefill and
//! steps, a left-padded batch, another attention kernel) differ by as much: the 8-bit rounding
//! of the activations turns float noise into whole quanta, and 18-30 layers amplify it. (With
//! the weights dequantized instead, `CANDLE_DEQUANTIZE_ALL=1`, Gemma's logits match the
//! reference within 3e-5.) So ids are compared only at steps whose reference top-2 margin is
//! clear of that noise (> [`clear_margin`]): teacher-forced at every such step, and free-running
//! greedy (through the pipeline, as `lmrs generate` runs it) over the leading such steps.
//!
//! Also: a batch of every prompt gives each prompt exactly its single run's tokens.
//!
//! Runs when `LMRS_REAL_MODELS=1`; then a missing model is a failure, not a skip.
//! `LMRS_MODELS_DIR` overrides `models/`, `LMRS_HOME` the default model cache.

use lmrs_core::{CausalLm, Device, LogitsFor, Tensor};
use lmrs_generate::GenerationConfig;
use lmrs_pipelines::{ChatMessage, LoadOptions, RunOptions, TextGenerationPipeline};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// Reference top-2 margins above this are "clear": lmrs must pick the reference's token there.
///
/// Measured with teacher forcing over every reference step (109 SmolLM2, 144 Gemma) and three
/// lmrs numeric paths (one pass; prefill then one chunk; prefill then one token per step): the
/// lmrs margin of the reference token minus the reference margin has a median of 0.09-0.13, a
/// 90th percentile of 0.25-0.30 and a max of 0.49 (SmolLM2) and 0.98 (Gemma: its K-quant
/// matmuls round activations in blocks of 256 values, SmolLM2's Q4_1/Q8_0 ones in 32). Steps with
/// reference margins of 0.24 (SmolLM2) and 0.86 (Gemma) do flip to the runner-up on some path,
/// so the bounds are 1.5x each model's max noise. (A bound of 0.1 failed as soon as the decode
/// attention kernel changed float order.)
fn clear_margin(model: &str) -> f64 {
    if model.starts_with("gemma") {
        1.5
    } else {
        0.75
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn enabled() -> bool {
    if std::env::var("LMRS_REAL_MODELS").ok().as_deref() == Some("1") {
        return true;
    }
    eprintln!("real-model tier disabled (set LMRS_REAL_MODELS=1 after scripts/fetch-models.sh)");
    false
}

fn references() -> Value {
    let path = repo().join("tests/fixtures/real/llm_references.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Where the reference's model file lives; asserts it is there.
fn model_path(name: &str, file: &str) -> PathBuf {
    let path = if name.starts_with("smollm2") {
        lmrs_pipelines::model_cache_dir().join(file)
    } else {
        std::env::var_os("LMRS_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("models"))
            .join(file)
    };
    assert!(
        path.is_file(),
        "LMRS_REAL_MODELS=1 but {} is missing: run scripts/fetch-models.sh",
        path.display()
    );
    path
}

fn u32s(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The models run one after the other: the backend's worker pool busy-waits at its barriers,
/// and two models decoding at once on a 2-core machine took 64 s where one after the other took
/// about 20 s.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn check_model(name: &str) {
    if !enabled() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let refs = references();
    let spec = refs["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in llm_references.json"));
    let path = model_path(name, spec["file"].as_str().unwrap());
    let t0 = Instant::now();
    let p = TextGenerationPipeline::load(path.to_str().unwrap(), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
    let load_s = t0.elapsed().as_secs_f64();
    assert_eq!(
        p.model().vocab_size(),
        spec["vocab_size"].as_u64().unwrap() as usize
    );
    assert_eq!(p.model().special_tokens().eos, u32s(&spec["eos_token_ids"]));

    let prompts = spec["prompts"].as_array().unwrap();
    let margin = clear_margin(name);
    let (mut leading, mut teacher_forced, mut generated) = (0, 0, 0);
    let t1 = Instant::now();
    for item in prompts {
        let pname = item["name"].as_str().unwrap();
        let text = item["text"].as_str().unwrap();
        let want_prompt = u32s(&item["prompt_ids"]);
        let add_special = item["add_special_tokens"].as_bool().unwrap();
        let ids = p.tokenizer().encode_plain(text, add_special).unwrap();
        assert_eq!(ids, want_prompt, "{name} {pname}: prompt ids of {text:?}");
        // A prompt rendered from the GGUF's own chat template must come out the same.
        if item["chat_template"]
            .as_str()
            .is_some_and(|t| t.starts_with("gguf"))
        {
            let messages: Vec<ChatMessage> =
                serde_json::from_value(item["messages"].clone()).unwrap();
            assert_eq!(
                p.chat_prompt(&messages).unwrap(),
                want_prompt,
                "{name} {pname}: chat template"
            );
        }

        let want = u32s(&item["new_ids"]);
        let margins: Vec<f64> = serde_json::from_value(item["top2_margins"].clone()).unwrap();
        let clear = |s: usize| margins[s] > margin;

        // Teacher-forced: the reference's continuation as input, lmrs's argmax at every step
        // whose reference margin is clear (a step that is within the noise cannot derail the
        // ones after it here). Step 0 is the last prompt position.
        let top = teacher_forced_argmax(&p, &ids, &want);
        let top20 = u32s(&item["last_logits_top20"]["ids"]);
        if clear(0) {
            assert_eq!(top[0], top20[0], "{name} {pname}: last-position top-1");
        } else {
            // Within the noise: lmrs's top-1 must still be one of the reference's top two.
            assert!(
                top20[..2].contains(&top[0]),
                "{name} {pname}: last-position top-1 {} not in the reference's top-2 {:?}",
                top[0],
                &top20[..2]
            );
        }
        let forced: Vec<usize> = (0..want.len()).filter(|&s| clear(s)).collect();
        let wrong: Vec<usize> = forced
            .iter()
            .copied()
            .filter(|&s| top[s] != want[s])
            .collect();
        assert!(
            wrong.is_empty(),
            "{name} {pname}: teacher-forced argmax differs at clear steps {wrong:?}"
        );

        // Free-running greedy through the pipeline, one prompt at a time like `lmrs generate
        // "..."`: equal over the leading clear steps.
        let lead = (0..want.len()).take_while(|&s| clear(s)).count();
        let mut got = Vec::new();
        if lead > 0 {
            let cfg = GenerationConfig {
                do_sample: Some(false),
                max_new_tokens: Some(lead),
                ..Default::default()
            };
            let out = p
                .generate_ids(std::slice::from_ref(&ids), &cfg, RunOptions::default())
                .unwrap();
            got = out[0].completions[0].token_ids.clone();
        }
        let same = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        eprintln!(
            "{name} {pname}: greedy {same}/{lead} leading clear steps equal; teacher-forced \
             {}/{} clear steps equal (of {} reference steps)",
            forced.len() - wrong.len(),
            forced.len(),
            want.len()
        );
        assert_eq!(
            got,
            want[..lead],
            "{name} {pname}: greedy ids over the leading clear-margin steps"
        );
        leading += lead;
        teacher_forced += forced.len();
        generated += got.len();
    }
    // A batch of every prompt (different lengths) equals each prompt's single run token for
    // token: prompts are prefilled one by one, and lmrs's own Q4_1/Q5_0 and Q4_K/Q6_K kernels
    // compute each row of a decoding step as a one-row step does (candle's K-quant matmul,
    // which Gemma's Q4_K/Q6_K matrices used before, sums several rows in another order than
    // one, and prompts 0 and 1 drifted after 22 and 13 tokens).
    let all: Vec<Vec<u32>> = prompts
        .iter()
        .map(|item| u32s(&item["prompt_ids"]))
        .collect();
    let cfg = GenerationConfig {
        do_sample: Some(false),
        max_new_tokens: Some(24),
        ..Default::default()
    };
    let opts = |batch_size| RunOptions {
        batch_size,
        ..Default::default()
    };
    let batched = p.generate_ids(&all, &cfg, opts(all.len())).unwrap();
    let single = p.generate_ids(&all, &cfg, opts(1)).unwrap();
    for (i, (b, s)) in batched.iter().zip(&single).enumerate() {
        assert_eq!(b.batch_size, all.len());
        let (b, s) = (&b.completions[0].token_ids, &s.completions[0].token_ids);
        assert_eq!(b, s, "{name}: prompt {i} batched vs alone");
    }
    eprintln!(
        "{name}: greedy ids equal over all {leading} leading clear-margin steps and argmax over \
         all {teacher_forced} teacher-forced clear steps of {} prompts; load {load_s:.1}s, \
         checks and {generated} generated tokens {:.1}s",
        prompts.len(),
        t1.elapsed().as_secs_f64()
    );
    // The reference has enough clear steps for the comparison to mean something.
    assert!(
        leading >= 3 * prompts.len(),
        "{name}: only {leading} leading clear steps"
    );
    assert!(
        teacher_forced >= 8 * prompts.len(),
        "{name}: only {teacher_forced} clear steps"
    );
}

/// lmrs's argmax after the prompt and after each prefix of `new` (teacher forcing): entry `s`
/// is the prediction for `new[s]`.
fn teacher_forced_argmax(p: &TextGenerationPipeline, prompt: &[u32], new: &[u32]) -> Vec<u32> {
    let model = p.model();
    let n = prompt.len();
    let mut cache = model.new_cache(&[0], n + new.len()).unwrap();
    if n > 1 {
        let head = Tensor::from_slice(&prompt[..n - 1], (1, n - 1), &Device::Cpu).unwrap();
        model
            .forward(&head, &mut cache, LogitsFor::Nothing)
            .unwrap();
    }
    // The last prompt token, then every reference token but the last.
    let mut tail = vec![prompt[n - 1]];
    tail.extend(&new[..new.len() - 1]);
    let x = Tensor::from_slice(&tail, (1, tail.len()), &Device::Cpu).unwrap();
    let logits = model
        .forward(&x, &mut cache, LogitsFor::All)
        .unwrap()
        .unwrap();
    logits
        .squeeze(0)
        .unwrap()
        .argmax(1)
        .unwrap()
        .to_vec1::<u32>()
        .unwrap()
}

#[test]
fn smollm2_matches_transformers() {
    check_model("smollm2-135m-instruct");
}

#[test]
fn gemma3_matches_transformers() {
    check_model("gemma-3-270m");
}
