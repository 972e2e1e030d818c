//! LoRA on a GGUF base kept in its quantized blocks (QLoRA): the projections run on the
//! blocks and pass gradients to their inputs by dequantizing in the backward pass. The adapter
//! gradients equal those of the same adapters on the dequantized base (the same file exported
//! to an f32 HF folder) within the quantization error of the forward pass; the backward
//! product itself is exact (`lmrs-nn`'s unit test of the quantized linear layer).

mod common;

use common::*;
use lmrs_core::candle::Tensor;
use lmrs_io::ModelSource;
use lmrs_train::causal::CausalObjective;
use lmrs_train::lora::LoraOptions;
use lmrs_train::Objective;

#[test]
fn lora_gradients_through_a_quantized_base_match_the_dequantized_base() {
    let gguf = fixtures().join("llama-tiny-gguf/llama-tiny-q8_0.gguf");
    let opts = LoraOptions {
        r: Some(4),
        ..Default::default()
    };
    let quantized = CausalObjective::load(&ModelSource::Gguf(gguf.clone()), None, Some(&opts), 7)
        .expect("quantized base");
    let tmp = tempfile::tempdir().expect("tmp");
    CausalObjective::load(&ModelSource::Gguf(gguf), None, None, 7)
        .expect("dequantized")
        .save(tmp.path())
        .expect("export");
    let dense = CausalObjective::load(
        &ModelSource::HfFolder(tmp.path().into()),
        None,
        Some(&opts),
        7,
    )
    .expect("dense base");
    // The same adapters (seeded by module name); B made non-zero so that A's gradients are
    // not trivially zero.
    let (pq, pd) = (quantized.params(), dense.params());
    assert_eq!(pq.len(), pd.len());
    assert!(!pq.is_empty());
    for ((kq, vq), (kd, vd)) in pq.iter().zip(&pd) {
        assert_eq!(kq, kd);
        assert_eq!(max_abs_diff(vq.as_tensor(), vd.as_tensor()), 0.0, "{kq}");
        if kq.contains("lora_B") {
            // Deterministic values in [-0.5, 0.5].
            let dims = vq.as_tensor().dims().to_vec();
            let n: usize = dims.iter().product();
            let t = Tensor::arange(0f32, n as f32, &lmrs_core::Device::Cpu)
                .and_then(|x| x.sin())
                .and_then(|x| x * 0.5)
                .and_then(|x| x.reshape(dims))
                .expect("values");
            vq.set(&t).expect("set");
            vd.set(&t).expect("set");
        }
    }
    let data = zen();
    let prompts = data.texts("document").expect("texts");
    let (ex_q, _) = quantized
        .tokenize(&prompts[..4], None, 24)
        .expect("tokenize");
    let (ex_d, _) = dense.tokenize(&prompts[..4], None, 24).expect("tokenize");
    assert_eq!(
        ex_q.iter().map(|e| &e.input_ids).collect::<Vec<_>>(),
        ex_d.iter().map(|e| &e.input_ids).collect::<Vec<_>>()
    );
    let grads = |obj: &CausalObjective, ex: &[lmrs_train::causal::CausalExample]| {
        let batch: Vec<_> = ex.iter().collect();
        let l = obj.loss(&batch, 0.0).expect("loss");
        let mean = (l.sum / l.count as f64).expect("mean");
        let loss = mean.to_scalar::<f32>().expect("scalar") as f64;
        (loss, mean.backward().expect("backward"))
    };
    let (lq, gq) = grads(&quantized, &ex_q);
    let (ld, gd) = grads(&dense, &ex_d);
    let mut worst = (0f64, String::new());
    for ((k, vq), (_, vd)) in pq.iter().zip(&pd) {
        let a = gq
            .get(vq.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {k}"));
        let b = gd.get(vd.as_tensor()).expect("dense gradient");
        let norm = |t: &Tensor| -> f64 {
            t.sqr()
                .and_then(|x| x.sum_all())
                .and_then(|x| x.to_scalar::<f32>())
                .expect("norm")
                .sqrt() as f64
        };
        let e = norm(&(a - b).expect("diff")) / norm(b).max(1e-12);
        if e > worst.0 {
            worst = (e, k.clone());
        }
        // Q8_0 products quantize their input rows too: the forward activations differ from
        // the f32 ones by that rounding, and the gradients by its effect (measured: at most
        // 4.6e-2 of a gradient's norm on this random tiny model, loss within 3.4e-4).
        assert!(e < 6e-2, "{k}: gradient differs by {e:.2e} of its norm");
    }
    eprintln!(
        "QLoRA on Q8_0: loss {lq:.6} vs {ld:.6} on the dequantized base; worst adapter-gradient relative difference {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(rel(lq, ld) < 1e-2);
}
