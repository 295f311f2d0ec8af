//! Golden tests for the Ollama mapping: request fixtures -> upstream bodies, upstream event fixtures (shared with
//! the Gemini tests) -> NDJSON streams and non-streaming answers.
//!
//! Fixtures live in `tests/golden/ollama/`; `UPDATE_GOLDEN=1 cargo test -p dialects ollama` rewrites the
//! expected files (review the diff before committing).

use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::assemble::Collected;
use crate::responses::event::Event;
use crate::sse::SseParser;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(golden(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

fn check_text(name: &str, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden(name), actual).unwrap_or_else(|e| panic!("write {name}: {e}"));
        return;
    }
    assert_eq!(actual, read(name), "golden file {name} differs (UPDATE_GOLDEN=1 rewrites it)");
}

fn events(name: &str) -> Vec<Event<'static>> {
    let mut parser = SseParser::default();
    let mut frames = Vec::new();
    parser.push(read(name).as_bytes(), &mut frames).unwrap_or_else(|e| panic!("{e}"));
    parser.finish(&mut frames);
    frames
        .iter()
        .map(|f| Event::parse(&f.data).map(Event::into_owned).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

/// A clock that advances 1 ms per reading.
fn clock() -> encode::Clock {
    let mut t = 0;
    Box::new(move || {
        t += 1_000_000;
        t
    })
}

#[test]
fn golden_requests() {
    for (name, endpoint) in [("chat_tools_images", Endpoint::Chat), ("generate_json", Endpoint::Generate)] {
        let body = read(&format!("ollama/{name}.request.json"));
        let decoded = match endpoint {
            Endpoint::Chat => decode_chat(body.as_bytes()),
            Endpoint::Generate => decode_generate(body.as_bytes()),
        };
        let Ok(Decoded::Request(req, opts)) = decoded else { panic!("{name}: {decoded:?}") };
        let out = json!({
            "slug": req.model.slug,
            "requested": req.model.requested,
            "stream": req.stream,
            "think": opts.think,
            "limits": {"max_output_tokens": req.limits.max_output_tokens, "stop_sequences": req.limits.stop_sequences},
            "body": req.body,
        });
        check_text(
            &format!("ollama/{name}.upstream.json"),
            &(serde_json::to_string_pretty(&out).unwrap_or_default() + "\n"),
        );
    }
}

#[test]
fn golden_streams_and_answers() {
    for (events_name, endpoint, think) in [
        ("text_with_reasoning", Endpoint::Chat, true),
        ("text_with_reasoning", Endpoint::Generate, false),
        ("tool_calls", Endpoint::Chat, false),
        ("failed_mid_stream", Endpoint::Chat, false),
    ] {
        let evs = events(&format!("gemini/{events_name}.events.sse"));
        let kind = if endpoint == Endpoint::Chat { "chat" } else { "generate" };
        let mut enc =
            OllamaEncoder::new(endpoint, "gpt-5.4".into(), "2026-01-01T00:00:00.000000000Z".into(), think, clock());
        let mut out = Vec::new();
        for e in &evs {
            enc.on_event(e, &mut out);
        }
        assert!(enc.is_finished());
        let text = String::from_utf8_lossy(&out).to_string();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(v.is_object(), "{line}");
        }
        assert!(text.ends_with('\n') && !text.contains("\n\n"), "NDJSON: no blank lines");
        check_text(&format!("ollama/{events_name}.{kind}.ndjson"), &text);

        let mut c = Collected::new();
        for e in evs {
            c.on_event(e);
        }
        if c.error.is_none() {
            let v = match endpoint {
                Endpoint::Chat => render_chat(&c, "gpt-5.4", "2026-01-01T00:00:00.000000000Z", think, 5_000_000),
                Endpoint::Generate => {
                    render_generate(&c, "gpt-5.4", "2026-01-01T00:00:00.000000000Z", think, 5_000_000)
                }
            };
            let pretty = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
            check_text(&format!("ollama/{events_name}.{kind}.json"), &pretty);
        }
    }
}

#[test]
fn empty_requests_are_load_no_ops() {
    assert!(matches!(decode_chat(br#"{"model":"gpt-5.4","messages":[]}"#), Ok(Decoded::Load { .. })));
    assert!(matches!(decode_generate(br#"{"model":"gpt-5.4"}"#), Ok(Decoded::Load { .. })));
    let e = decode_generate(br#"{"model":"gpt-5.4","prompt":"a","suffix":"b"}"#).err();
    assert_eq!(e.and_then(|e| e.param), Some("suffix".to_string()));
    let e = decode_chat(br#"{"messages":[{"role":"user","content":"x"}]}"#).err();
    assert_eq!(e.and_then(|e| e.param), Some("model".to_string()));
}

#[test]
fn tool_results_pair_by_name_and_order() {
    let body = json!({"model":"gpt-5.4:latest","stream":false,"messages":[
        {"role":"user","content":"weather in Paris and Rome?"},
        {"role":"assistant","content":"","tool_calls":[
            {"function":{"name":"get_weather","arguments":{"city":"Paris"}}},
            {"function":{"name":"get_weather","arguments":{"city":"Rome"}}}]},
        {"role":"tool","tool_name":"get_weather","content":"sunny"},
        {"role":"tool","tool_name":"get_weather","content":"rainy"}
    ]});
    let Ok(Decoded::Request(req, _)) = decode_chat(body.to_string().as_bytes()) else { panic!("decode") };
    assert_eq!(req.model.slug, "gpt-5.4");
    assert!(!req.stream);
    let input = req.body["input"].as_array().cloned().unwrap_or_default();
    let pairs: Vec<(String, String)> = input
        .iter()
        .filter_map(|i| {
            Some((i["type"].as_str()?.to_string(), i.get("call_id").and_then(Value::as_str).unwrap_or("").to_string()))
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("message", ""),
            ("function_call", "call_gw1"),
            ("function_call", "call_gw2"),
            ("function_call_output", "call_gw1"),
            ("function_call_output", "call_gw2"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(input[3]["output"], "sunny");
}

#[test]
fn orphan_tool_results_are_refused() {
    use crate::error::ErrorKind;
    // A result that answers no call (by id, name or order) was sent on as user text; every dialect now
    // refuses it, as the backend does (docs/parameter-policy.md, "Tool history").
    let body = json!({"model":"gpt-5.4","messages":[
        {"role":"user","content":"weather?"},
        {"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{}}}]},
        {"role":"tool","tool_name":"get_weather","content":"sunny"},
        {"role":"tool","tool_name":"other","content":"stray"}
    ]});
    let err = decode_chat(body.to_string().as_bytes()).err();
    assert_eq!(
        err.as_ref().map(|e| (e.kind, e.param.clone())),
        Some((ErrorKind::InvalidRequest, Some("messages[3]".into())))
    );
    let body = json!({"model":"gpt-5.4","messages":[
        {"role":"user","content":"hi"},
        {"role":"tool","content":"no call at all"}
    ]});
    assert!(decode_chat(body.to_string().as_bytes()).is_err());
}
