//! A safetensors file: header JSON, tensor table (dtypes, shapes, offsets), then every tensor
//! loaded through `Weights` with its declared shape, a wrong shape, and as a matrix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrs_core::{DType, Device};
use lmrs_io::Weights;
use safetensors::SafeTensors;

fuzz_target!(|data: &[u8]| {
    let path = lmrs_fuzz::scratch_file("model.safetensors", data);
    let Ok(w) = Weights::from_files(&[path], &Device::Cpu, DType::F32) else {
        return;
    };
    // `Weights` accepted the file, so the header parses here too; it names what to ask for.
    let (_, meta) = SafeTensors::read_metadata(data).expect("Weights accepted this header");
    for (name, info) in meta.tensors().into_iter().take(64) {
        let _ = w.get(&name, &info.shape);
        let _ = w.get_matrix(&name, &info.shape);
        let mut wrong = info.shape.clone();
        wrong.push(1);
        assert!(
            w.get(&name, &wrong).is_err(),
            "a wrong shape must be refused"
        );
        if let Some((head, rest)) = name.split_once('.') {
            let _ = w.pp(head).get(rest, &info.shape);
            let _ = w.pp(head).contains(rest);
        }
    }
    let _ = w.get("missing.tensor", &[1]);
});
