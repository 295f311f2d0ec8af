//! Every request decoder against random bytes, random JSON and mutated valid requests: no panic, and every
//! error is a 4xx in the OpenAI, Anthropic, Gemini and Ollama renderings (a client's bad input is never a 5xx).
//! Each input goes to every decoder, so a template of one dialect also probes the others.

use std::collections::HashMap;
use std::sync::LazyLock;

use dialects::{GatewayError, UpstreamRequest, anthropic, chat, gemini, ollama, responses};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::strategies::{edits, json_soup, json_value, mutate, raw};

/// Valid requests of every dialect: the golden request files plus a few written here for what they lack.
static TEMPLATES: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let files = [
        include_str!("../golden/chat/full_mapping.request.json"),
        include_str!("../golden/chat/legacy_functions.request.json"),
        include_str!("../golden/gemini/classifier.request.json"),
        include_str!("../golden/gemini/cli_tool_turn.request.json"),
        include_str!("../golden/gemini/ids_absent_and_media.request.json"),
        include_str!("../golden/ollama/chat_tools_images.request.json"),
        include_str!("../golden/ollama/generate_json.request.json"),
        include_str!("../golden/responses/normalize.request.json"),
    ];
    // The Gemini golden files wrap the request as `{"model": ..., "body": {...}}` (the model is in the path).
    let unwrap = |v: Value| match v.get("body") {
        Some(body) if v.get("model").is_some() => body.clone(),
        _ => v,
    };
    let mut all: Vec<Value> = files.iter().filter_map(|f| serde_json::from_str(f).ok()).map(unwrap).collect();
    assert_eq!(all.len(), files.len(), "every golden request parses");
    all.extend([
        json!({"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,
            "thinking":{"type":"enabled","budget_tokens":2048},
            "system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
            "tools":[{"name":"Bash","description":"Run","input_schema":{"type":"object",
                "properties":{"command":{"type":"string"}},"required":["command"]}}],
            "tool_choice":{"type":"auto"},"stop_sequences":["STOP"],
            "messages":[
                {"role":"user","content":[{"type":"text","text":"list files"},
                    {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]},
                {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"c2ln"},
                    {"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"a.txt"}]}]}),
        json!({"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}),
        json!({"generateContentRequest":{"model":"models/gemini-2.5-pro",
            "contents":[{"role":"user","parts":[{"text":"count me"}]}]}}),
        json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}],
            "generationConfig":{"maxOutputTokens":5,"stopSequences":["x"],"thinkingConfig":{"includeThoughts":true}}}),
        json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stop":["x"]}),
        json!({"model":"gpt-5.4","input":"hi","reasoning":{"effort":"low","summary":"auto"}}),
    ]);
    all
});

/// Any catalog's lineup: the decoders only need slugs to name.
const LINEUP: [&str; 3] = ["gpt-5.5", "gpt-5.4", "gpt-5.4-mini"];

static ALIASES: LazyLock<HashMap<String, String>> =
    LazyLock::new(|| HashMap::from([("gemini-2.5-pro".to_string(), "gpt-5.4".to_string())]));

/// A decoder under test: the request body in, only the verdict out.
type Decoder = fn(&[u8]) -> Result<(), GatewayError>;

/// Every decoder, by name. Successful decodes also go through what count_tokens does with them.
fn decoders() -> [(&'static str, Decoder); 10] {
    [
        ("chat", |b| chat::decode(b).map(drop)),
        ("responses", |b| responses::decode(b).map(drop)),
        ("anthropic messages", |b| anthropic::decode(b, Some("session-1"), &LINEUP).map(drop)),
        ("anthropic count_tokens", |b| anthropic::decode_for_count(b).map(|r| drop(anthropic::countable_text(&r)))),
        ("gemini generateContent", |b| gemini::decode(b, "gemini-2.5-pro", false, &ALIASES, &LINEUP).map(drop)),
        ("gemini streamGenerateContent", |b| gemini::decode(b, "models/x", true, &HashMap::new(), &LINEUP).map(drop)),
        ("gemini countTokens", |b| gemini_count(b, "gemini-2.5-pro")),
        ("gemini countTokens, odd model", |b| gemini_count(b, " ")),
        ("ollama chat", |b| ollama::decode_chat(b).map(drop)),
        ("ollama generate", |b| ollama::decode_generate(b).map(drop)),
    ]
}

fn gemini_count(body: &[u8], model: &str) -> Result<(), GatewayError> {
    gemini::decode_count_tokens(body, model, &ALIASES).map(|r: UpstreamRequest| drop(gemini::countable(&r)))
}

/// Run `body` through every decoder; any error must be a client error in every dialect's rendering.
fn check_all(body: &[u8]) -> Result<(), TestCaseError> {
    for (name, decode) in decoders() {
        if let Err(e) = decode(body) {
            let statuses = [
                e.status(),
                anthropic::error_status_and_type(e.kind).0,
                gemini::error_status(e.kind).0,
                ollama::error_body(&e).0,
            ];
            prop_assert!(
                statuses.iter().all(|s| (400..500).contains(s)),
                "{name}: {statuses:?} for {e:?} on {}",
                String::from_utf8_lossy(body)
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::config(300))]

    #[test]
    fn decoders_take_random_bytes(body in prop::collection::vec(any::<u8>(), 0..200)) {
        check_all(&body)?;
    }

    #[test]
    fn decoders_take_json_token_soup(body in json_soup()) {
        check_all(&body)?;
    }

    #[test]
    fn decoders_take_random_json(v in json_value()) {
        check_all(&serde_json::to_vec(&v).unwrap_or_default())?;
    }
}

proptest! {
    #![proptest_config(crate::config(1500))]

    #[test]
    fn decoders_take_mutated_valid_requests(t in 0..TEMPLATES.len(), edits in edits(), raw in raw()) {
        check_all(&mutate(&TEMPLATES[t], &edits, &raw))?;
    }
}

/// The templates themselves decode in their own dialect (so the mutations start from requests that get far).
#[test]
fn templates_are_valid_requests() {
    let ok = |i: usize, r: Result<(), GatewayError>| r.unwrap_or_else(|e| panic!("template {i}: {e:?}"));
    let t = |i: usize| serde_json::to_vec(&TEMPLATES[i]).unwrap_or_default();
    ok(0, chat::decode(&t(0)).map(drop));
    ok(1, chat::decode(&t(1)).map(drop));
    for i in 2..5 {
        ok(i, gemini::decode(&t(i), "gemini-2.5-pro", true, &ALIASES, &LINEUP).map(drop));
    }
    ok(5, ollama::decode_chat(&t(5)).map(drop));
    ok(6, ollama::decode_generate(&t(6)).map(drop));
    ok(7, responses::decode(&t(7)).map(drop));
    ok(8, anthropic::decode(&t(8), None, &LINEUP).map(drop));
    ok(9, anthropic::decode_for_count(&t(9)).map(drop));
    ok(10, gemini_count(&t(10), "gemini-2.5-pro"));
    ok(11, gemini::decode(&t(11), "gemini-2.5-pro", false, &ALIASES, &LINEUP).map(drop));
    ok(12, chat::decode(&t(12)).map(drop));
    ok(13, responses::decode(&t(13)).map(drop));
}
