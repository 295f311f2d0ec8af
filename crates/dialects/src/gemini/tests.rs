//! Golden tests for the Gemini mapping: request fixtures -> upstream bodies, upstream event fixtures -> client
//! stream bytes (SSE and JSON array) and non-streaming responses.
//!
//! Fixtures live in `tests/golden/gemini/`. `UPDATE_GOLDEN=1 cargo test -p dialects gemini` rewrites the
//! expected files from the current output (review the diff before committing).

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::assemble::Collected;
use crate::responses::event::Event;
use crate::sse::SseParser;

/// The lineup of the fake backend's Plus catalog.
const LINEUP: [&str; 3] = ["gpt-5.5", "gpt-5.4", "gpt-5.4-mini"];

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gemini")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(golden_dir().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// Compare `actual` with the golden file `name` (or rewrite it under UPDATE_GOLDEN=1).
fn check_text(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("write {name}: {e}"));
        return;
    }
    let expected = read(name);
    assert_eq!(actual, expected, "golden file {name} differs (UPDATE_GOLDEN=1 rewrites it)");
}

fn check_json(name: &str, actual: &Value) {
    let pretty = serde_json::to_string_pretty(actual).unwrap_or_default() + "\n";
    check_text(name, &pretty);
}

/// The upstream events of an SSE fixture.
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

fn decode_fixture(name: &str, stream: bool) -> (crate::UpstreamRequest, GeminiOptions) {
    // `{"model": <from the path>, "body": <the client's body>}`
    let fixture: Value = serde_json::from_str(&read(&format!("{name}.request.json"))).unwrap_or_else(|e| panic!("{e}"));
    let model = fixture["model"].as_str().unwrap_or_default();
    let body = fixture["body"].to_string();
    decode(body.as_bytes(), model, stream, &HashMap::new(), &LINEUP).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn golden_requests() {
    for name in ["cli_tool_turn", "classifier", "ids_absent_and_media"] {
        let (req, opts) = decode_fixture(name, true);
        let mut out = serde_json::Map::new();
        out.insert("slug".into(), json!(req.model.slug));
        out.insert("requested".into(), json!(req.model.requested));
        out.insert("include_thoughts".into(), json!(opts.include_thoughts));
        out.insert(
            "limits".into(),
            json!({"max_output_tokens": req.limits.max_output_tokens, "stop_sequences": req.limits.stop_sequences}),
        );
        out.insert("body".into(), Value::Object(req.body));
        check_json(&format!("{name}.upstream.json"), &Value::Object(out));
    }
}

#[test]
fn golden_streams_and_responses() {
    for (name, include_thoughts) in [("text_with_reasoning", true), ("tool_calls", false), ("failed_mid_stream", false)]
    {
        let evs = events(&format!("{name}.events.sse"));
        for framing in [Framing::Sse, Framing::JsonArray] {
            let mut enc = GeminiEncoder::new(framing, "resp_1".into(), "gemini-2.5-pro".into(), include_thoughts);
            let mut out = Vec::new();
            for e in &evs {
                enc.on_event(e, &mut out);
            }
            assert!(enc.is_finished(), "{name}: the encoder wrote its last chunk");
            let ext = if framing == Framing::Sse { "sse" } else { "array.json" };
            check_text(&format!("{name}.gemini.{ext}"), &String::from_utf8_lossy(&out));
            strict_framing(&out, framing);
        }
        let mut c = Collected::new();
        for e in evs {
            c.on_event(e);
        }
        if c.error.is_none() {
            check_json(
                &format!("{name}.response.json"),
                &render_response(&c, "resp_1", "gemini-2.5-pro", include_thoughts),
            );
        }
    }
}

/// Python-genai and js-genai rules: only `data: <json>` lines separated by blank lines, ending with one; the array
/// form is valid JSON.
fn strict_framing(out: &[u8], framing: Framing) {
    let text = String::from_utf8_lossy(out);
    match framing {
        Framing::Sse => {
            assert!(text.ends_with("\n\n"));
            for block in text.split_terminator("\n\n") {
                let data = block.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data block: {block:?}"));
                assert!(!data.contains('\n'), "one line per event");
                let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
                assert!(v.is_object());
            }
        }
        Framing::JsonArray => {
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert!(v.is_array());
        }
    }
}

#[test]
fn signature_round_trips_through_the_next_request() {
    let evs = events("tool_calls.events.sse");
    let mut enc = GeminiEncoder::new(Framing::Sse, "r".into(), "gemini-2.5-flash".into(), false);
    let mut out = Vec::new();
    for e in &evs {
        enc.on_event(e, &mut out);
    }
    let chunks: Vec<Value> = String::from_utf8_lossy(&out)
        .split_terminator("\n\n")
        .filter_map(|b| b.strip_prefix("data: ").and_then(|d| serde_json::from_str(d).ok()))
        .collect();
    let parts: Vec<Value> = chunks
        .iter()
        .flat_map(|c| c["candidates"][0]["content"]["parts"].as_array().cloned().unwrap_or_default())
        .filter(|p| p.get("functionCall").is_some())
        .collect();
    assert_eq!(parts.len(), 2);
    assert!(parts[0].get("thoughtSignature").is_some() && parts[1].get("thoughtSignature").is_none());
    // The client sends the calls back (ids rewritten Gemini-CLI style) with their results.
    let calls: Vec<Value> = parts
        .iter()
        .map(|p| {
            let mut p = p.clone();
            let name = p["functionCall"]["name"].as_str().unwrap_or_default().to_string();
            let id = p["functionCall"]["id"].as_str().unwrap_or_default().to_string();
            p["functionCall"]["id"] = json!(format!("{name}__{id}"));
            p
        })
        .collect();
    let responses: Vec<Value> = calls
        .iter()
        .map(|p| json!({"functionResponse": {"id": p["functionCall"]["id"], "name": p["functionCall"]["name"], "response": {"output": "ok"}}}))
        .collect();
    let body = json!({"contents": [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": calls},
        {"role": "user", "parts": responses},
    ]});
    let (req, _) = decode(body.to_string().as_bytes(), "gemini-2.5-flash", true, &HashMap::new(), &LINEUP)
        .unwrap_or_else(|e| panic!("{e}"));
    let input = req.body["input"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<&str> = input.iter().filter_map(|i| i["type"].as_str()).collect();
    assert_eq!(
        kinds,
        ["message", "reasoning", "function_call", "function_call", "function_call_output", "function_call_output"]
    );
    assert_eq!(input[1]["id"], "rs_1");
    assert_eq!(input[1]["encrypted_content"], "gAAAAABsealed==");
    assert_eq!(input[2]["call_id"], "call_a");
    assert_eq!(input[4]["call_id"], "call_a");
    assert_eq!(input[5]["call_id"], "call_b");
    assert_eq!(input[5]["output"], "ok");
}

#[test]
fn count_tokens_accepts_both_shapes() {
    let direct = json!({"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]});
    let wrapped = json!({"generateContentRequest": {"model": "models/gemini-2.5-flash", "contents": [{"role": "user", "parts": [{"text": "hello there"}]}],
        "systemInstruction": {"parts": [{"text": "sys"}]}}});
    let a = decode_count_tokens(direct.to_string().as_bytes(), "gemini-2.5-flash", &HashMap::new());
    let b = decode_count_tokens(wrapped.to_string().as_bytes(), "gemini-2.5-flash", &HashMap::new());
    let (ta, _) = countable(&a.unwrap_or_else(|e| panic!("{e}")));
    let (tb, _) = countable(&b.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(ta, "hello there\n");
    assert_eq!(tb, "sys\nhello there\n");
}

fn user_x() -> serde_json::Value {
    json!({"role": "user", "parts": [{"text": "x"}]})
}

#[test]
fn refusals_name_the_field() {
    let cases = [
        (json!({"contents": [user_x()], "generationConfig": {"candidateCount": 2}}), "generationConfig.candidateCount"),
        (
            json!({"contents": [{"role":"user","parts":[{"inlineData":{"mimeType":"audio/wav","data":"AA=="}}]}]}),
            "contents[0].parts[0].inlineData.mimeType",
        ),
        (json!({"contents": [user_x()], "tools": [{"codeExecution": {}}]}), "tools[0].codeExecution"),
        (json!({"contents": [{"role":"system","parts":[{"text":"x"}]}]}), "contents[0].role"),
        (json!({"contents": [user_x()], "cachedContent": "cachedContents/1"}), "cachedContent"),
        (json!({"contents": []}), "contents"),
        (json!({"systemInstruction": {"parts": [{"text": "only a system text"}]}}), "contents"),
    ];
    for (body, param) in cases {
        let err = decode(body.to_string().as_bytes(), "gemini-2.5-flash", false, &HashMap::new(), &LINEUP).err();
        assert_eq!(err.and_then(|e| e.param), Some(param.to_string()), "{body}");
    }
}

#[test]
fn orphan_function_responses_are_refused() {
    // A result that pairs with no call (by id, then name, then order) went upstream as user text; Gemini and the
    // backend refuse it, and so does every dialect here (docs/parameter-policy.md, "Tool history").
    let body = json!({"contents": [
        {"role": "user", "parts": [{"text": "q"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "lookup", "response": {"output": "ok"}}},
            {"functionResponse": {"name": "forgotten", "response": {"output": "stale"}}}
        ]}
    ]});
    let err = decode(body.to_string().as_bytes(), "gemini-2.5-flash", false, &HashMap::new(), &LINEUP).err();
    assert_eq!(err.and_then(|e| e.param), Some("contents[2].parts[1].functionResponse".to_string()));
    // Clients that omit ids still pair by name and order.
    let body = json!({"contents": [
        {"role": "user", "parts": [{"text": "q"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {}}}, {"functionCall": {"name": "b", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "b", "response": {"output": "B"}}},
            {"functionResponse": {"response": {"output": "A"}}}
        ]}
    ]});
    let (req, _) = decode(body.to_string().as_bytes(), "gemini-2.5-flash", false, &HashMap::new(), &LINEUP)
        .unwrap_or_else(|e| panic!("{e}"));
    let outputs: Vec<(&str, &str)> = req.body["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "function_call_output")
        .map(|i| (i["call_id"].as_str().unwrap_or_default(), i["output"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(outputs, [("call_gw2", "B"), ("call_gw1", "A")]);
}

/// Thinking budgets and levels as efforts: Gemini's levels stop at HIGH; a budget past Gemini's own largest asks
/// for more, up to `max` (the gateway holds it to what the model lists).
#[test]
fn thinking_budgets_and_levels_become_efforts() {
    let effort = |thinking: Value| {
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "generationConfig": {"thinkingConfig": thinking}});
        let (req, _) = decode(body.to_string().as_bytes(), "gemini-2.5-pro", false, &HashMap::new(), &LINEUP)
            .unwrap_or_else(|e| panic!("{e}"));
        req.body["reasoning"]["effort"].as_str().map(str::to_string)
    };
    let cases = [
        (json!({"thinkingBudget": -1}), None),
        (json!({"thinkingBudget": 0}), Some("low")),
        (json!({"thinkingBudget": 8192}), Some("medium")),
        (json!({"thinkingBudget": 32768}), Some("high")),
        (json!({"thinkingBudget": 40000}), Some("xhigh")),
        (json!({"thinkingBudget": 100000}), Some("max")),
        (json!({"thinkingLevel": "HIGH", "thinkingBudget": 100000}), Some("high")),
        (json!({"thinkingLevel": "minimal"}), Some("low")),
    ];
    for (thinking, want) in cases {
        assert_eq!(effort(thinking.clone()).as_deref(), want, "{thinking}");
    }
}
