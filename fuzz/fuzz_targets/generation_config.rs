//! `generation_config.json`: parsed, layered (`merge`) and resolved against several special
//! token sets, as every generation command and the server do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrs_core::SpecialTokens;
use lmrs_generate::GenerationConfig;

fuzz_target!(|data: &[u8]| {
    let path = lmrs_fuzz::scratch_file("generation_config.json", data);
    let Ok(cfg) = GenerationConfig::from_file(&path) else {
        return;
    };
    let specials = [
        SpecialTokens::default(),
        SpecialTokens {
            pad: Some(0),
            eos: vec![1],
            bos: None,
            decoder_start: Some(0),
        },
        SpecialTokens {
            pad: Some(u32::MAX),
            eos: vec![2, 3, u32::MAX],
            bos: Some(1),
            decoder_start: None,
        },
    ];
    for special in &specials {
        if let Ok(r) = cfg.resolve(special) {
            let _ = r.is_beam();
        }
    }
    let mut layered = GenerationConfig::default();
    layered.merge(&cfg);
    layered.merge(&cfg);
    let _ = layered.resolve(&specials[1]);
});
