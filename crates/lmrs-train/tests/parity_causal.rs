//! Parity with `transformers`' `Trainer` on the tiny `LlamaForCausalLM` fixture (reference from
//! `tools/gen_train_references.py`), prompt/completion data in TRL's layout (loss on the
//! completion and EOS only): the first micro-batch's loss and every parameter's gradient, every
//! logged loss, grad_norm and learning rate of 20 steps with gradient accumulation, the trained
//! logits, and the saved folder reloading for inference with the same logits, cached decoding
//! included.

mod common;

use common::*;
use lmrs_core::candle::Tensor;
use lmrs_io::{ModelFiles, ModelSource};
use lmrs_train::causal::CausalObjective;
use serde_json::Value;

const CASE: &str = "llama-completion-accum";

fn setup(r: &Value) -> Setup<CausalObjective> {
    let obj = CausalObjective::load(&ModelSource::HfFolder(model_dir(r))).expect("load");
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
    assert!(with_loss.count() > examples.len() / 2);
    Setup::new(r, obj, examples)
}

#[test]
fn llama_completion_gradients_equal_torch_autograd() {
    let r = reference(CASE);
    setup(&r).check_gradients(CASE, &r);
}

#[test]
fn llama_completion_run_with_accumulation_equals_trainer() {
    let r = reference(CASE);
    let s = setup(&r);
    s.train_and_check_log(CASE, &r);
    let (ids, mask, _) = s.obj.collate(&s.first_batch()).expect("collate");
    let logits = s.obj.model().forward_train(&ids, &mask).expect("forward");
    let scale = check_logits(CASE, &r, &logits);

    // The folder reloads for inference: the same logits through the training forward, and the
    // cached (inference) path on the first sequence unpadded.
    let files = ModelFiles::from_folder(&s.output(CASE)).expect("output is a model folder");
    let again =
        lmrs_models::load_causal(&files, &lmrs_core::Device::Cpu).expect("loads for inference");
    let l2 = again.forward_train(&ids, &mask).expect("forward");
    let d = max_abs_diff(&l2, &logits);
    assert!(d <= 1e-5 * scale, "{CASE}: reloaded logits differ by {d}");

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
    assert!(d <= 1e-4 * scale, "{CASE}: cached inference differs by {d}");
}
