//! Greedy continuation of raw token ids with any decoder-only checkpoint (a debugging aid):
//! `cargo run --release -p lmrs-models --example causal_probe -- MODEL.gguf 504 3575 282`.

use lmrs_core::{CausalLm, Device, LogitsFor, Tensor};
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: causal_probe MODEL.gguf ID...")?;
    let ids: Vec<u32> = args[2..]
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let dev = Device::Cpu;
    let t0 = std::time::Instant::now();
    let file = Arc::new(lmrs_io::GgufFile::open(std::path::Path::new(path))?);
    let model = lmrs_models::load_causal_gguf(file, &dev)?;
    println!("load {:?}", t0.elapsed());
    let mut cache = model.new_cache(&[0], ids.len() + 16)?;
    let input = Tensor::from_vec(ids.clone(), (1, ids.len()), &dev)?;
    let logits = model
        .forward(&input, &mut cache, LogitsFor::Last)?
        .ok_or("no logits")?;
    let row = logits.flatten_all()?.to_vec1::<f32>()?;
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    println!(
        "top5 {:?}",
        idx[..5].iter().map(|&i| (i, row[i])).collect::<Vec<_>>()
    );
    let mut out = Vec::new();
    let mut next = idx[0] as u32;
    let t1 = std::time::Instant::now();
    for _ in 0..10 {
        out.push(next);
        let input = Tensor::from_vec(vec![next], (1, 1), &dev)?;
        let l = model
            .forward(&input, &mut cache, LogitsFor::Last)?
            .ok_or("no logits")?;
        let r = l.flatten_all()?.to_vec1::<f32>()?;
        next = (0..r.len())
            .max_by(|&a, &b| r[a].total_cmp(&r[b]))
            .unwrap_or(0) as u32;
    }
    println!("greedy {out:?} in {:?}", t1.elapsed());
    Ok(())
}
