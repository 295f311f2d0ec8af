//! Golden tests of the Chat Completions mapping (and the Responses passthrough normalisation).
//!
//! Fixtures live in `tests/golden/chat/` and `tests/golden/responses/`. `UPDATE_GOLDEN=1 cargo test -p dialects
//! chat::tests` rewrites the expected files from the current output (review the diff before committing).

use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::assemble::Collected;
use crate::responses::event::Event;
use crate::sse::SseParser;

fn golden(dir: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(dir).join(name)
}

fn read(dir: &str, name: &str) -> String {
    std::fs::read_to_string(golden(dir, name)).unwrap_or_else(|e| panic!("read {dir}/{name}: {e}"))
}

fn check_text(dir: &str, name: &str, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden(dir, name), actual).unwrap_or_else(|e| panic!("write {name}: {e}"));
        return;
    }
    assert_eq!(actual, read(dir, name), "golden file {dir}/{name} differs (UPDATE_GOLDEN=1 rewrites it)");
}

fn check_json(dir: &str, name: &str, actual: &Value) {
    check_text(dir, name, &(serde_json::to_string_pretty(actual).unwrap_or_default() + "\n"));
}

fn events(name: &str) -> Vec<Event<'static>> {
    let mut parser = SseParser::default();
    let mut frames = Vec::new();
    parser.push(read("chat", name).as_bytes(), &mut frames).unwrap_or_else(|e| panic!("{e}"));
    parser.finish(&mut frames);
    frames
        .iter()
        .map(|f| Event::parse(&f.data).map(Event::into_owned).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

fn upstream_view(req: crate::UpstreamRequest, extra: Value) -> Value {
    json!({
        "model": {"requested": req.model.requested, "slug": req.model.slug, "effort": req.model.effort, "fast": req.model.fast},
        "stream": req.stream,
        "conversation_key": req.conversation_key,
        "limits": {"max_output_tokens": req.limits.max_output_tokens, "stop_sequences": req.limits.stop_sequences},
        "extra": extra,
        "body": Value::Object(req.body),
    })
}

#[test]
fn golden_chat_requests() {
    for name in ["full_mapping", "legacy_functions"] {
        let (req, opts) =
            decode(read("chat", &format!("{name}.request.json")).as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_json(
            "chat",
            &format!("{name}.upstream.json"),
            &upstream_view(req, json!({"include_usage": opts.include_usage})),
        );
    }
}

#[test]
fn golden_chat_streams_and_completions() {
    for name in ["text_with_reasoning", "tool_calls", "incomplete", "failed_mid_stream"] {
        let evs = events(&format!("{name}.events.sse"));
        let mut enc = ChatEncoder::new("chatcmpl-1".into(), 1_700_000_000, "gpt-5.4-high".into(), true);
        let mut out = Vec::new();
        for e in &evs {
            enc.on_event(e, &mut out);
        }
        check_text("chat", &format!("{name}.chat.sse"), &String::from_utf8_lossy(&out));
        let mut c = Collected::new();
        for e in evs {
            c.on_event(e);
        }
        let rendered = match c.error.take() {
            Some(err) => json!({"status": err.status(), "body": err.openai_body()}),
            None => render_completion(&c, "chatcmpl-1", 1_700_000_000, "gpt-5.4-high"),
        };
        check_json("chat", &format!("{name}.chat.json"), &rendered);
    }
}

#[test]
fn golden_responses_normalisation() {
    let (req, _) = crate::responses::decode(read("responses", "normalize.request.json").as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    check_json("responses", "normalize.upstream.json", &upstream_view(req, Value::Null));
}

#[test]
fn refused_parameters_name_the_field() {
    let cases = [
        (json!({"model":"m","messages":[{"role":"user","content":"x"}],"n":2}), "n"),
        (json!({"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true}), "logprobs"),
        (json!({"model":"m","messages":[{"role":"user","content":"x"}],"modalities":["text","audio"]}), "modalities"),
        (
            json!({"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}),
            "messages[0].content[0]",
        ),
        (json!({"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}), "stop"),
        (json!({"model":"m","messages":[{"role":"tool","tool_call_id":"nope","content":"x"}]}), "messages"),
        (json!({"model":"m","messages":[]}), "messages"),
        (json!({"model":"","messages":[{"role":"user","content":"x"}]}), "model"),
        (json!({"model":"m","messages":[{"role":"wizard","content":"x"}]}), "messages[0].role"),
        (
            json!({"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"extreme"}),
            "reasoning_effort",
        ),
    ];
    for (body, param) in cases {
        let err = decode(body.to_string().as_bytes()).err().unwrap_or_else(|| panic!("{body} must be refused"));
        assert_eq!(err.status(), 400, "{body}");
        assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
    }
}

#[test]
fn a_responses_request_says_what_it_chains_from_and_whether_it_is_kept() {
    use crate::responses::{Chain, decode as responses};
    let chain = |v: Value| responses(v.to_string().as_bytes()).map(|(_, c)| c);
    let plain = chain(json!({"model":"m","input":"x"})).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain, Chain { previous_response_id: None, store: true }, "OpenAI keeps by default");
    let chained = chain(json!({"model":"m","input":"x","previous_response_id":"resp_1","store":false}))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(chained, Chain { previous_response_id: Some("resp_1".into()), store: false });
    for (body, param) in [
        (json!({"model":"m","input":"x","previous_response_id":7}), "previous_response_id"),
        (json!({"model":"m","input":"x","store":"yes"}), "store"),
    ] {
        let err = chain(body.clone()).err().unwrap_or_else(|| panic!("{body} must be refused"));
        assert_eq!((err.status(), err.param.as_deref()), (400, Some(param)), "{body}");
    }
}
