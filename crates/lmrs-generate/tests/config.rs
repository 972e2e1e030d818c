//! `GenerationConfig` parsing, layering and resolution.

use std::io::Write;

use lmrs_core::{Error, SpecialTokens};
use lmrs_generate::{EarlyStopping, GenerationConfig, LengthLimit};

/// Shaped like facebook/bart-large-cnn's file, plus keys we do not know.
const BART: &str = r#"{
  "_from_model_config": true,
  "bos_token_id": 0,
  "decoder_start_token_id": 2,
  "early_stopping": true,
  "eos_token_id": 2,
  "forced_bos_token_id": 0,
  "forced_eos_token_id": 2,
  "length_penalty": 2.0,
  "max_length": 142,
  "min_length": 56,
  "no_repeat_ngram_size": 3,
  "num_beams": 4,
  "pad_token_id": 1,
  "output_scores": false,
  "suppress_tokens": null,
  "transformers_version": "4.27.0.dev0"
}"#;

/// Shaped like a Llama 3 instruct file: several EOS ids.
const LLAMA: &str = r#"{
  "bos_token_id": 128000,
  "do_sample": true,
  "eos_token_id": [128001, 128008, 128009],
  "temperature": 0.6,
  "top_p": 0.9,
  "early_stopping": "never",
  "transformers_version": "4.45.0"
}"#;

#[test]
fn parses_hf_files() {
    let bart: GenerationConfig = serde_json::from_str(BART).unwrap();
    assert_eq!(bart.eos_token_id, Some(vec![2]));
    assert_eq!(bart.forced_eos_token_id, Some(vec![2]));
    assert_eq!(bart.early_stopping, Some(EarlyStopping::Enabled));
    assert_eq!(bart.max_length, Some(142));
    assert_eq!(bart.min_length, Some(56));
    assert_eq!(bart.num_beams, Some(4));
    assert_eq!(bart.length_penalty, Some(2.0));
    assert_eq!(bart.pad_token_id, Some(1));
    assert_eq!(bart.decoder_start_token_id, Some(2));
    assert_eq!(bart.top_k, None);

    let llama: GenerationConfig = serde_json::from_str(LLAMA).unwrap();
    assert_eq!(llama.eos_token_id, Some(vec![128001, 128008, 128009]));
    assert_eq!(llama.early_stopping, Some(EarlyStopping::Never));
    assert_eq!(llama.do_sample, Some(true));
    assert_eq!(llama.temperature, Some(0.6));
    assert_eq!(llama.top_p, Some(0.9));

    let off: GenerationConfig = serde_json::from_str(r#"{"early_stopping": false}"#).unwrap();
    assert_eq!(off.early_stopping, Some(EarlyStopping::Heuristic));
    assert!(serde_json::from_str::<GenerationConfig>(r#"{"early_stopping": "soon"}"#).is_err());
}

#[test]
fn serialises_back_with_hf_names() {
    let llama: GenerationConfig = serde_json::from_str(LLAMA).unwrap();
    let json = serde_json::to_value(&llama).unwrap();
    assert_eq!(json["early_stopping"], "never");
    assert_eq!(json["eos_token_id"][2], 128009);
    assert!(json.get("max_length").is_none());
    let back: GenerationConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, llama);
}

#[test]
fn from_file_names_the_file_on_error() {
    let dir = std::env::temp_dir().join(format!("lmrs-generate-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("generation_config.json");
    std::fs::File::create(&good)
        .unwrap()
        .write_all(BART.as_bytes())
        .unwrap();
    assert_eq!(
        GenerationConfig::from_file(&good).unwrap().num_beams,
        Some(4)
    );

    let bad = dir.join("broken_generation_config.json");
    std::fs::write(&bad, "{\"num_beams\": \"four\"}").unwrap();
    let msg = GenerationConfig::from_file(&bad).unwrap_err().to_string();
    assert!(msg.contains("broken_generation_config.json"), "{msg}");
    let missing = GenerationConfig::from_file(dir.join("nope.json")).unwrap_err();
    assert!(missing.to_string().contains("nope.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn merge_lets_set_fields_win() {
    let mut cfg: GenerationConfig = serde_json::from_str(BART).unwrap();
    let request = GenerationConfig {
        max_new_tokens: Some(30),
        num_beams: Some(1),
        early_stopping: Some(EarlyStopping::Never),
        ..Default::default()
    };
    cfg.merge(&request);
    assert_eq!(cfg.num_beams, Some(1));
    assert_eq!(cfg.max_new_tokens, Some(30));
    assert_eq!(cfg.early_stopping, Some(EarlyStopping::Never));
    // Unset request fields keep the file's values.
    assert_eq!(cfg.max_length, Some(142));
    assert_eq!(cfg.no_repeat_ngram_size, Some(3));
    let resolved = cfg.resolve(&SpecialTokens::default()).unwrap();
    // max_new_tokens takes precedence over max_length.
    assert_eq!(resolved.max_length, LengthLimit::NewTokens(30));
    assert_eq!(resolved.max_length.total(1), 31);
    assert_eq!(resolved.min_length, LengthLimit::Total(56));
}

#[test]
fn resolve_applies_hf_defaults_and_model_tokens() {
    let special = SpecialTokens {
        pad: None,
        eos: vec![5, 6],
        bos: Some(3),
        decoder_start: None,
    };
    let r = GenerationConfig::default().resolve(&special).unwrap();
    assert_eq!(r.max_length, LengthLimit::NewTokens(20));
    assert_eq!(r.min_length, LengthLimit::Total(0));
    assert_eq!((r.num_beams, r.num_return_sequences), (1, 1));
    assert!(!r.do_sample);
    assert_eq!((r.temperature, r.top_k, r.top_p), (1.0, 50, 1.0));
    assert_eq!((r.repetition_penalty, r.length_penalty), (1.0, 1.0));
    assert_eq!(r.early_stopping, EarlyStopping::Heuristic);
    assert_eq!(r.eos, vec![5, 6]);
    assert_eq!(r.pad, Some(5)); // first EOS, like HF
    assert_eq!(r.decoder_start, Some(3)); // falls back to BOS
    assert!(r.use_cache);

    let own = GenerationConfig {
        eos_token_id: Some(vec![9]),
        min_new_tokens: Some(4),
        min_length: Some(100),
        ..Default::default()
    };
    let r = own.resolve(&special).unwrap();
    assert_eq!(r.eos, vec![9]);
    assert_eq!(r.min_length, LengthLimit::NewTokens(4));
}

#[test]
fn resolve_rejects_bad_combinations() {
    let bad = [
        GenerationConfig {
            num_beams: Some(2),
            num_return_sequences: Some(3),
            ..Default::default()
        },
        GenerationConfig {
            num_return_sequences: Some(2),
            ..Default::default()
        },
        GenerationConfig {
            do_sample: Some(true),
            temperature: Some(-1.0),
            ..Default::default()
        },
        GenerationConfig {
            do_sample: Some(true),
            temperature: Some(1e-40),
            ..Default::default()
        },
        GenerationConfig {
            do_sample: Some(true),
            top_p: Some(1.5),
            ..Default::default()
        },
        GenerationConfig {
            max_new_tokens: Some(0),
            ..Default::default()
        },
        GenerationConfig {
            num_beams: Some(0),
            ..Default::default()
        },
        GenerationConfig {
            repetition_penalty: Some(0.0),
            ..Default::default()
        },
        GenerationConfig {
            bad_words_ids: Some(vec![vec![]]),
            ..Default::default()
        },
    ];
    for cfg in bad {
        let err = cfg.resolve(&SpecialTokens::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidOption(_)), "{cfg:?}: {err}");
    }
    // Sampling with several returned sequences is fine.
    let ok = GenerationConfig {
        do_sample: Some(true),
        num_return_sequences: Some(3),
        ..Default::default()
    };
    assert!(ok.resolve(&SpecialTokens::default()).is_ok());
}

#[test]
fn a_length_shadowed_by_the_models_new_token_bound_is_reported() {
    let model = GenerationConfig {
        max_new_tokens: Some(64),
        ..Default::default()
    };
    let flags = GenerationConfig {
        max_length: Some(10),
        ..Default::default()
    };
    let notes = flags.shadowed_lengths(&model);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("max_new_tokens` (=64") && notes[0].contains("(=10)"));
    // Setting the new-token bound too, or a model without one: nothing to say.
    let both = GenerationConfig {
        max_new_tokens: Some(5),
        ..flags.clone()
    };
    assert!(both.shadowed_lengths(&model).is_empty());
    assert!(flags
        .shadowed_lengths(&GenerationConfig::default())
        .is_empty());
}
