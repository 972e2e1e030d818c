//! Parity with `transformers`' `Trainer` on the tiny `LlamaForCausalLM`, `GPT2LMHeadModel` and
//! `Gemma3ForCausalLM` fixtures (references from `tools/gen_train_references.py`),
//! prompt/completion data in TRL's layout (loss on the completion and EOS only): the first
//! micro-batch's loss and every parameter's gradient, every logged loss, grad_norm and learning
//! rate of 20 steps with gradient accumulation, the trained logits, and the saved folder
//! reloading for inference with the same logits, cached decoding included.

mod common;

use common::*;
use lmrs_core::candle::Tensor;
use lmrs_io::{ModelFiles, ModelSource};
use lmrs_train::causal::CausalObjective;
use serde_json::Value;

/// The objective with dropout off (GPT-2 has 0.1 by default; the references train with 0).
fn setup(r: &Value) -> Setup<CausalObjective> {
    let obj = CausalObjective::load(&ModelSource::HfFolder(model_dir(r)), Some(0.0), None, 42)
        .expect("load");
    let data = zen();
    let max = r["max_length"].as_u64().expect("max_length") as usize;
    let prompts = data.texts("prompt").expect("prompts");
    let completions = data.texts("completion").expect("completions");
    let (examples, _) = obj
        .tokenize(&prompts, Some(&completions), max)
        .expect("tokenize");
    for e in &examples {
        assert!(e.input_ids.len() <= max);
        // The prompt carries no loss (a prompt cut at `max` leaves nothing, as in TRL).
        assert_eq!(e.labels[0], -100);
    }
    let with_loss = examples.iter().filter(|e| e.labels.iter().any(|&l| l >= 0));
    assert!(with_loss.count() > examples.len() / 3);
    Setup::new(r, obj, examples)
}

#[test]
fn llama_completion_gradients_equal_torch_autograd() {
    gradients("llama-completion-accum");
}

#[test]
fn llama_completion_run_with_accumulation_equals_trainer() {
    run_and_reload("llama-completion-accum");
}

#[test]
fn gpt2_completion_gradients_equal_torch_autograd() {
    gradients("gpt2-completion-accum");
}

#[test]
fn gpt2_completion_run_with_accumulation_equals_trainer() {
    run_and_reload("gpt2-completion-accum");
}

#[test]
fn gemma3_completion_gradients_equal_torch_autograd() {
    gradients("gemma3-completion-cosine");
}

#[test]
fn gemma3_completion_run_with_accumulation_equals_trainer() {
    run_and_reload("gemma3-completion-cosine");
}

fn gradients(case: &str) {
    let r = reference(case);
    setup(&r).check_gradients(case, &r);
}

/// 20 steps against the Trainer's log, the trained logits, and the saved folder reloaded for
/// inference (training forward and cached decoding) with the same logits.
fn run_and_reload(case: &str) {
    let r = reference(case);
    let s = setup(&r);
    s.train_and_check_log(case, &r);
    let (ids, mask, _) = s.obj.collate(&s.first_batch()).expect("collate");
    let logits = s.obj.model().forward_train(&ids, &mask).expect("forward");
    let scale = check_logits(case, &r, &logits);

    // The folder reloads for inference: the same logits through the training forward, and the
    // cached (inference) path on the first sequence unpadded.
    let files = ModelFiles::from_folder(&s.output(case)).expect("output is a model folder");
    let again =
        lmrs_models::load_causal(&files, &lmrs_core::Device::Cpu).expect("loads for inference");
    let l2 = again.forward_train(&ids, &mask).expect("forward");
    let d = max_abs_diff(&l2, &logits);
    assert!(d <= 1e-5 * scale, "{case}: reloaded logits differ by {d}");

    // Prefill the first half, then decode the rest against the cache: every position's
    // logits equal the training forward's.
    use lmrs_core::{CausalLm, LogitsFor};
    let first = &s.examples[0].input_ids;
    let t = first.len();
    let half = t / 2;
    let dev = lmrs_core::Device::Cpu;
    let mut cache = again.new_cache(&[0], t).expect("cache");
    let mut parts = Vec::new();
    for piece in [&first[..half], &first[half..]] {
        let x = Tensor::from_vec(piece.to_vec(), (1, piece.len()), &dev).expect("ids");
        let l = again
            .forward(&x, &mut cache, LogitsFor::All)
            .expect("cached forward")
            .expect("logits");
        parts.push(l);
    }
    let cached = Tensor::cat(&parts, 1).expect("cat");
    let trained = logits
        .narrow(0, 0, 1)
        .and_then(|x| x.narrow(1, 0, t))
        .expect("first row");
    let d = max_abs_diff(&cached, &trained);
    assert!(d <= 1e-4 * scale, "{case}: cached inference differs by {d}");
}

/// Conversational data tokenizes as `apply_chat_template` does (references in
/// `chat-tokens.json`): the whole conversation, the prompt with the generation prompt, labels
/// `-100` exactly on the prompt's tokens; `messages` alone carries the loss everywhere.
#[test]
fn conversations_tokenize_as_apply_chat_template() {
    use lmrs_pipelines::ChatMessage;
    let r = reference("chat-tokens");
    let obj =
        CausalObjective::load(&ModelSource::HfFolder(model_dir(&r)), None, None, 42).expect("load");
    let parse =
        |v: &Value| -> Vec<ChatMessage> { serde_json::from_value(v.clone()).expect("messages") };
    let ids = |v: &Value| -> Vec<u32> { serde_json::from_value(v.clone()).expect("ids") };
    let cases = r["cases"].as_array().expect("cases");
    let prompts: Vec<_> = cases.iter().map(|c| parse(&c["prompt"])).collect();
    let completions: Vec<_> = cases.iter().map(|c| parse(&c["completion"])).collect();
    let (pairs, cut) = obj
        .tokenize_chat(&prompts, Some(&completions), 1024)
        .expect("tokenize");
    assert_eq!(cut, 0);
    for (e, c) in pairs.iter().zip(cases) {
        let (want, prompt) = (ids(&c["ids"]), ids(&c["prompt_ids"]));
        assert_eq!(e.input_ids, want);
        assert!(want.starts_with(&prompt), "the prompt renders as a prefix");
        let masked = e.labels.iter().take_while(|&&l| l == -100).count();
        assert_eq!(masked, prompt.len());
        assert!(e.labels[masked..].iter().all(|&l| l >= 0));
    }
    // The whole conversation as one `messages` list: the same ids, the loss on all of them.
    let whole: Vec<Vec<ChatMessage>> = prompts
        .iter()
        .zip(&completions)
        .map(|(p, c)| p.iter().chain(c).cloned().collect())
        .collect();
    let (plain, _) = obj.tokenize_chat(&whole, None, 1024).expect("tokenize");
    for (e, c) in plain.iter().zip(cases) {
        assert_eq!(e.input_ids, ids(&c["ids"]));
        assert!(e.labels.iter().all(|&l| l >= 0));
    }
    // Truncation counts.
    let (_, cut) = obj.tokenize_chat(&whole, None, 8).expect("tokenize");
    assert_eq!(cut, whole.len());
}

/// LoRA on the tiny Llama against `Trainer` + PEFT (`llama-lora`): the run starts from the
/// adapter PEFT initialized (`--adapter`), only the adapters train (the base stays frozen),
/// and the first micro-batch's gradients, the 20 logged steps and the trained logits equal
/// PEFT's; the output root is an adapter folder.
#[test]
fn llama_lora_run_equals_trainer_with_peft() {
    use lmrs_train::lora::LoraOptions;
    let case = "llama-lora";
    let r = reference(case);
    let init = model_dir(&r).with_file_name(r["adapter"].as_str().expect("adapter"));
    let opts = LoraOptions {
        adapter: Some(init),
        ..Default::default()
    };
    let source = ModelSource::HfFolder(model_dir(&r));
    let obj = CausalObjective::load(&source, Some(0.0), Some(&opts), 42).expect("load");
    // Two adapted projections per layer, two matrices each; nothing else trains.
    let params = lmrs_train::Objective::params(&obj);
    assert_eq!(
        params.len(),
        2 * 2 * 2,
        "{:?}",
        params.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    assert!(params.iter().all(|(k, _)| k.contains(".lora_")));
    let data = zen();
    let max = r["max_length"].as_u64().expect("max_length") as usize;
    let (examples, _) = obj
        .tokenize(
            &data.texts("prompt").expect("prompts"),
            Some(&data.texts("completion").expect("completions")),
            max,
        )
        .expect("tokenize");
    let s = Setup::new(&r, obj, examples);
    s.check_gradients(case, &r);
    s.train_and_check_log(case, &r);
    let (ids, mask, _) = s.obj.collate(&s.first_batch()).expect("collate");
    let logits = s.obj.model().forward_train(&ids, &mask).expect("forward");
    check_logits(case, &r, &logits);
    let root = std::path::PathBuf::from(&s.args.output_dir);
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
    ] {
        assert!(root.join(f).is_file(), "{f} missing");
    }
    assert!(
        !root.join("model.safetensors").exists(),
        "a LoRA run writes no full model"
    );
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    let mut targets: Vec<&str> = cfg["target_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    targets.sort_unstable();
    assert_eq!(targets, ["q_proj", "v_proj"]);
}
