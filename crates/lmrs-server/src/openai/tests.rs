//! Unit tests of the OpenAI request types: parsing, validation and the generation settings
//! they map to.

use super::*;

#[test]
fn base64_matches_reference() {
    // Python: base64.b64encode(struct.pack("<2f", 1.0, -2.5)).decode()
    assert_eq!(base64_f32(&[1.0, -2.5]), "AACAPwAAIMA=");
    assert_eq!(base64_f32(&[]), "");
    assert_eq!(base64_f32(&[0.5]), "AAAAPw==");
}

#[test]
fn inputs_parse() {
    let t: Texts = serde_json::from_str(r#""a""#).unwrap();
    assert_eq!(t.0, vec!["a"]);
    let t: Texts = serde_json::from_str(r#"["a", "b"]"#).unwrap();
    assert_eq!(t.0, vec!["a", "b"]);
    assert!(serde_json::from_str::<Texts>("3").is_err());
    assert!(serde_json::from_str::<Texts>("[1]").is_err());
    let i: Input = serde_json::from_str("[1, 2]").unwrap();
    assert_eq!(i, Input::Tokens(vec![vec![1, 2]]));
    let i: Input = serde_json::from_str("[[1], [2, 3]]").unwrap();
    assert_eq!(i, Input::Tokens(vec![vec![1], vec![2, 3]]));
    let i: Input = serde_json::from_str(r#"["x"]"#).unwrap();
    assert_eq!(i, Input::Texts(vec!["x".into()]));
    assert!(serde_json::from_str::<Input>(r#"["x", 1]"#).is_err());
}

#[test]
fn sampling_maps_to_generation_config() {
    let p: SamplingParams =
        serde_json::from_str(r#"{"temperature": 0, "max_tokens": 5, "n": 3}"#).unwrap();
    let c = p.generation_config(16, 100).unwrap();
    assert_eq!(c.do_sample, Some(false));
    assert_eq!(c.max_new_tokens, Some(5));
    assert_eq!(c.num_return_sequences, Some(1));
    let p: SamplingParams =
        serde_json::from_str(r#"{"temperature": 0.7, "top_p": 0.9, "seed": 4, "n": 2}"#).unwrap();
    let c = p.generation_config(16, 100).unwrap();
    assert_eq!(c.do_sample, Some(true));
    assert_eq!(c.top_k, Some(0));
    assert_eq!(c.num_return_sequences, Some(2));
    assert_eq!(c.max_new_tokens, Some(16));
    assert_eq!(c.seed, Some(4));
    assert_eq!(c.stop_strings, None);
    let p: SamplingParams = serde_json::from_str(r#"{"stop": ["\n", "END"]}"#).unwrap();
    let c = p.generation_config(16, 100).unwrap();
    assert_eq!(
        c.stop_strings,
        Some(vec!["\n".to_string(), "END".to_string()])
    );
    for bad in [
        r#"{"max_tokens": 101}"#,
        r#"{"max_tokens": 0}"#,
        r#"{"temperature": 3}"#,
        r#"{"top_p": 0}"#,
        r#"{"n": 0}"#,
        r#"{"n": 99}"#,
        r#"{"presence_penalty": 1}"#,
        r#"{"stop": ["a", "b", "c", "d", "e"]}"#,
        r#"{"stop": ""}"#,
        r#"{"max_tokens": 4, "min_tokens": 5}"#,
    ] {
        let p: SamplingParams = serde_json::from_str(bad).unwrap();
        let e = p.generation_config(16, 100).unwrap_err();
        assert_eq!(e.status, 400, "{bad}");
        assert!(e.param.is_some(), "{bad}");
    }
}

#[test]
fn chat_request_parses_openai_shapes() {
    let r: ChatCompletionRequest = serde_json::from_str(
        r#"{"model": "m", "messages": [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]}],
            "stream": true, "stream_options": {"include_usage": true}, "max_completion_tokens": 7,
            "max_tokens": 3, "stop": "\n", "extra_field_from_a_new_client": 1}"#,
    )
    .unwrap();
    r.validate().unwrap();
    assert_eq!(r.messages[1].text().unwrap(), "Hi!");
    assert!(r.sampling.stream());
    assert_eq!(r.sampling().max_tokens, Some(7));
    assert_eq!(r.sampling.stop_sequences().unwrap(), vec!["\n"]);
    let bad: ChatCompletionRequest =
        serde_json::from_str(r#"{"model": "m", "messages": [{"role": "robot", "content": "x"}]}"#)
            .unwrap();
    assert!(bad.validate().is_err());
    let c: CompletionRequest =
        serde_json::from_str(r#"{"model": "m", "prompt": "Once", "echo": true}"#).unwrap();
    assert!(c.validate().is_err());
}
