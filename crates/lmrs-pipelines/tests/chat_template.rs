//! Chat templates rendered against `transformers`' `render_jinja_template` (the renderer behind
//! `apply_chat_template(..., tokenize=False)`), references made by
//! `tools/gen_tokenizer_references.py` in `tests/fixtures/real/chat_templates.json`. The fixture
//! carries the template texts (SmolLM2's from its GGUF, Gemma 3, Llama 3, Qwen 2 / ChatML and a
//! whitespace-control template), so this needs no model file.

use lmrs_pipelines::{ChatMessage, ChatTemplate, PipelineError};
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/real/chat_templates.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn templates_render_like_transformers() {
    let fixture = fixture();
    let mut total = 0;
    for t in fixture["templates"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let template = ChatTemplate::new(
            t["template"].as_str().unwrap(),
            t["bos_token"].as_str(),
            t["eos_token"].as_str(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        for case in t["cases"].as_array().unwrap() {
            let messages: Vec<ChatMessage> =
                serde_json::from_value(case["messages"].clone()).unwrap();
            let agp = case["add_generation_prompt"].as_bool().unwrap();
            let what = format!(
                "{name} / {} / add_generation_prompt={agp}",
                case["conversation"]
            );
            let got = template.render(&messages, agp);
            match (case["expected"].as_str(), case["error"].as_str()) {
                (Some(want), _) => {
                    let got = got.unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(got, want, "{what}");
                }
                (None, Some(message)) => match got {
                    Err(PipelineError::ChatTemplateRaised(m)) => assert_eq!(m, message, "{what}"),
                    other => panic!("{what}: expected raise_exception({message:?}), got {other:?}"),
                },
                (None, None) => panic!("{what}: fixture case has neither expected nor error"),
            }
            total += 1;
        }
    }
    eprintln!("{total} chat template renders match transformers");
    assert!(total >= 40);
}

#[test]
fn tokenizer_config_forms() {
    let smollm2 = fixture()["templates"][0].clone();
    let source = smollm2["template"].as_str().unwrap();
    let user = [ChatMessage::new("user", "Hi")];

    // String form, with AddedToken-style special tokens.
    let cfg = json!({
        "chat_template": source,
        "bos_token": {"content": "<|im_start|>", "__type": "AddedToken"},
        "eos_token": "<|im_end|>",
    });
    let t = ChatTemplate::from_tokenizer_config(&cfg).unwrap().unwrap();
    assert_eq!(t.source(), source);
    let direct = ChatTemplate::new(source, Some("<|im_start|>"), Some("<|im_end|>")).unwrap();
    assert_eq!(
        t.render(&user, true).unwrap(),
        direct.render(&user, true).unwrap()
    );

    // List form: the "default" entry.
    let cfg = json!({"chat_template": [
        {"name": "tool_use", "template": "tools"},
        {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}"},
    ], "bos_token": "<s>"});
    let t = ChatTemplate::from_tokenizer_config(&cfg).unwrap().unwrap();
    assert_eq!(t.render(&user, false).unwrap(), "<s>Hi");

    // List form without a default is an error naming what is there.
    let cfg = json!({"chat_template": [{"name": "tool_use", "template": "x"}]});
    match ChatTemplate::from_tokenizer_config(&cfg) {
        Err(PipelineError::ChatTemplate(m)) => assert!(m.contains("tool_use"), "{m}"),
        other => panic!("expected an error, got {other:?}"),
    }

    // No template.
    assert!(
        ChatTemplate::from_tokenizer_config(&json!({"bos_token": "<s>"}))
            .unwrap()
            .is_none()
    );
    assert!(
        ChatTemplate::from_tokenizer_config(&json!({"chat_template": null}))
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        ChatTemplate::from_tokenizer_config(&json!({"chat_template": 3})),
        Err(PipelineError::ChatTemplate(_))
    ));
}

#[test]
fn broken_templates_are_typed_errors() {
    let user = [ChatMessage::new("user", "Hi")];
    // Does not compile: the error names the line.
    match ChatTemplate::new(
        "line one\n{% for m in messages %}{{ m.content }}",
        None,
        None,
    ) {
        Err(PipelineError::ChatTemplate(m)) => {
            assert!(m.contains("line 2") || m.contains(":2"), "{m}")
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
    // Fails while rendering.
    let t = ChatTemplate::new("{{ messages[0].content.nosuchmethod() }}", None, None).unwrap();
    assert!(matches!(
        t.render(&user, false),
        Err(PipelineError::ChatTemplate(_))
    ));
    let t = ChatTemplate::new("{{ 1 / 0 }}", None, None).unwrap();
    assert!(matches!(
        t.render(&user, false),
        Err(PipelineError::ChatTemplate(_))
    ));
    // raise_exception carries the template's message.
    let t = ChatTemplate::new(
        "{% if messages|length > 0 %}{{ raise_exception('no ' ~ messages[0].role ~ ' please') }}{% endif %}",
        None,
        None,
    )
    .unwrap();
    match t.render(&user, false) {
        Err(PipelineError::ChatTemplateRaised(m)) => assert_eq!(m, "no user please"),
        other => panic!("expected raise_exception, got {other:?}"),
    }
}

#[test]
fn python_environment_details() {
    let user = [ChatMessage::new("user", "Grüße \"quoted\"\n<tag> & more")];
    let render = |src: &str| {
        ChatTemplate::new(src, Some("<s>"), None)
            .unwrap()
            .render(&user, true)
            .unwrap()
    };
    // tojson: Python json.dumps, no HTML escaping, ensure_ascii=False by default.
    assert_eq!(
        render("{{ messages[0] | tojson }}"),
        r#"{"role": "user", "content": "Grüße \"quoted\"\n<tag> & more"}"#
    );
    assert_eq!(
        render("{{ messages[0].content | tojson(ensure_ascii=True) }}"),
        r#""Gr\u00fc\u00dfe \"quoted\"\n<tag> & more""#
    );
    assert_eq!(
        render("{{ {'b': [1, 2.5, none, true], 'a': {}} | tojson(indent=2, sort_keys=True) }}"),
        "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2.5,\n    null,\n    true\n  ]\n}"
    );
    assert_eq!(
        render("{{ [1, 'x'] | tojson(separators=(',', ':')) }}"),
        r#"[1,"x"]"#
    );
    // Python spellings of None / True / False; undefined eos_token prints nothing.
    assert_eq!(
        render("{{ none }} {{ add_generation_prompt }} {{ not add_generation_prompt }} [{{ eos_token }}] {{ tools }}"),
        "None True False [] None"
    );
    // Python string methods and loop controls.
    assert_eq!(
        render("{{ '  a b  '.strip().split(' ') | join('|') }} {{ 'abc'.startswith('ab') }} {% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
        "a|b True 02"
    );
    // strftime_now gives the local date.
    let year = render("{{ strftime_now('%Y') }}");
    assert_eq!(year.len(), 4);
    assert!(year.chars().all(|c| c.is_ascii_digit()), "{year}");
    // {% generation %} blocks render their body.
    assert_eq!(
        render(
            "{% for m in messages %}{% generation %}[{{ m.role }}]{% endgeneration %}{% endfor %}"
        ),
        "[user]"
    );
    // trim_blocks / lstrip_blocks: block lines leave no whitespace behind.
    assert_eq!(render("  {% if true %}\nx\n  {% endif %}\ny"), "x\ny");
}

/// A template that loops without end (here 10^10 iterations of nested loops, as a hostile GGUF
/// could carry) stops with a typed error instead of hanging the chat or the server thread.
#[test]
fn a_runaway_template_runs_out_of_fuel() {
    let source =
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}";
    let t = ChatTemplate::new(source, None, None).unwrap();
    let start = std::time::Instant::now();
    let err = t
        .render(&[ChatMessage::new("user", "hi")], true)
        .unwrap_err();
    assert!(
        matches!(&err, PipelineError::ChatTemplate(m) if m.contains("fuel")),
        "{err}"
    );
    // Not a timing test: only a guard that the limit is a limit and not hours of work.
    assert!(start.elapsed().as_secs() < 60, "{:?}", start.elapsed());
}

/// The fuel limit leaves real templates room for long conversations: 2,000 turns render with
/// every template in the fixture.
#[test]
fn real_templates_render_long_conversations_within_the_fuel_limit() {
    let fixture = fixture();
    let messages: Vec<ChatMessage> = (0..2000)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            ChatMessage::new(role, format!("turn {i}: some words of text"))
        })
        .collect();
    for t in fixture["templates"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let template = ChatTemplate::new(
            t["template"].as_str().unwrap(),
            t["bos_token"].as_str(),
            t["eos_token"].as_str(),
        )
        .unwrap();
        match template.render(&messages, true) {
            Ok(text) => assert!(text.contains("turn 1998"), "{name}"),
            // Templates that insist on their own role order may refuse; never for fuel.
            Err(PipelineError::ChatTemplateRaised(_)) => {}
            Err(e) => panic!("{name}: {e}"),
        }
    }
}
