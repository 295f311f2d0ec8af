//! Arbitrary upstream event sequences (golden streams reordered, truncated, repeated, and mutated events mixed
//! in) into every dialect's stream encoder, with in-stream errors and keepalives at random points, optionally
//! through the limits emulation; and the same events into the non-streaming assembly and every renderer.
//! Nothing may panic.

use dialects::assemble::Collected;
use dialects::limits::{Limiter, estimate_tokens};
use dialects::sse::SseFrame;
use dialects::{ErrorKind, Event, GatewayError, OutputLimits};
use dialects::{anthropic, chat, gemini, ollama, responses};
use proptest::prelude::*;
use serde_json::Value;

use crate::sse::GOLDEN_PAYLOADS;
use crate::strategies::{Op, Raw, edits, json_value, mutate, odd_string, raw};

/// One upstream payload: a golden event as is, mutated, or random JSON under a real event type.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let n = GOLDEN_PAYLOADS.len();
    prop_oneof![
        4 => (0..n).prop_map(|t| serde_json::to_vec(&GOLDEN_PAYLOADS[t]).unwrap_or_default()),
        3 => (0..n, edits(), raw()).prop_map(|(t, e, r)| mutate(&GOLDEN_PAYLOADS[t], &e, &r)),
        1 => (0..n, json_value()).prop_map(|(t, v)| {
            // Keep the type, replace everything else.
            let kind = GOLDEN_PAYLOADS[t].get("type").cloned().unwrap_or(Value::Null);
            let mut v = match v { Value::Object(m) => Value::Object(m), other => serde_json::json!({"x": other}) };
            v["type"] = kind;
            mutate(&v, &[(vec![], Op::Insert("output_index".into(), Value::from(u64::MAX)))], &Raw::Keep)
        }),
    ]
}

const KINDS: [ErrorKind; 12] = [
    ErrorKind::InvalidRequest,
    ErrorKind::Unauthorized,
    ErrorKind::PermissionDenied,
    ErrorKind::NotFound,
    ErrorKind::PayloadTooLarge,
    ErrorKind::ContextTooLong,
    ErrorKind::RateLimited,
    ErrorKind::NotLoggedIn,
    ErrorKind::Overloaded,
    ErrorKind::UpstreamUnavailable,
    ErrorKind::Timeout,
    ErrorKind::Internal,
];

/// What the driver does between events: nothing, a keepalive, or an in-stream error.
#[derive(Debug, Clone)]
enum Extra {
    None,
    Keepalive,
    Error(usize, String),
}

fn extra() -> impl Strategy<Value = Extra> {
    prop_oneof![
        8 => Just(Extra::None),
        1 => Just(Extra::Keepalive),
        1 => (0..KINDS.len(), odd_string()).prop_map(|(k, m)| Extra::Error(k, m)),
    ]
}

fn limits() -> impl Strategy<Value = Option<(OutputLimits, u64)>> {
    prop::option::of(
        (
            prop::option::of(prop_oneof![0u64..64, any::<u64>()]),
            prop::collection::vec(odd_string(), 0..3),
            any::<u64>(),
        )
            .prop_map(|(max, stops, input)| (OutputLimits { max_output_tokens: max, stop_sequences: stops }, input)),
    )
}

/// Every streaming encoder, fresh.
fn encoders() -> Vec<Box<dyn dialects::encoder::StreamEncoder>> {
    let opts = |include_thinking| anthropic::AnthropicOptions { include_thinking };
    vec![
        Box::new(responses::Passthrough::new()),
        Box::new(chat::ChatEncoder::new("chatcmpl-1".into(), 1, "gpt-5.4".into(), true)),
        Box::new(chat::ChatEncoder::new("chatcmpl-2".into(), u64::MAX, "".into(), false)),
        Box::new(anthropic::AnthropicEncoder::new("msg_1".into(), "claude".into(), &opts(true), u64::MAX)),
        Box::new(anthropic::AnthropicEncoder::new("msg_2".into(), "claude".into(), &opts(false), 0)),
        Box::new(gemini::GeminiEncoder::new(gemini::Framing::Sse, "r".into(), "gemini".into(), true)),
        Box::new(gemini::GeminiEncoder::new(gemini::Framing::JsonArray, "r".into(), "gemini".into(), false)),
        Box::new(ollama::OllamaEncoder::new(
            ollama::Endpoint::Chat,
            "m".into(),
            "2026-01-01T00:00:00Z".into(),
            true,
            Box::new(|| u64::MAX),
        )),
        Box::new(ollama::OllamaEncoder::new(ollama::Endpoint::Generate, "m".into(), "".into(), false, Box::new(|| 0))),
    ]
}

proptest! {
    #![proptest_config(crate::config(400))]

    #[test]
    fn encoders_take_any_event_sequence(
        payloads in prop::collection::vec((payload(), extra()), 0..40),
        limits in limits(),
    ) {
        let texts: Vec<String> = payloads.iter().map(|(p, _)| String::from_utf8_lossy(p).into_owned()).collect();
        let extras: Vec<Extra> = payloads.into_iter().map(|(_, x)| x).collect();
        drive(&texts, &extras, limits);
    }
}

/// Every payload (no extras, no limits unless given) through every encoder and renderer (regression tests).
pub fn run_everything(texts: &[String], limits: Option<(OutputLimits, u64)>) {
    drive(texts, &vec![Extra::None; texts.len()], limits);
}

fn drive(texts: &[String], extras: &[Extra], limits: Option<(OutputLimits, u64)>) {
    // Each event with the frame it came from (the passthrough forwards the frame).
    let parsed: Vec<(Event<'static>, &Extra, &String)> =
        texts.iter().zip(extras).filter_map(|(t, x)| Event::parse(t).ok().map(|e| (e.into_owned(), x, t))).collect();
    // What the encoders see: the events, through the limiter when limits are set.
    let mut events: Vec<(Event<'static>, &Extra, &String)> = Vec::new();
    match limits {
        Some((l, input)) => {
            let mut limiter = Limiter::new(l, Box::new(estimate_tokens), input);
            for (e, x, t) in parsed {
                limiter.apply(e, &mut |out| events.push((out.into_owned(), &Extra::None, t)));
                if let Some(last) = events.last_mut() {
                    last.1 = x;
                }
            }
        }
        None => events = parsed,
    }
    for mut enc in encoders() {
        let mut out = Vec::new();
        for (e, x, t) in &events {
            let frame = SseFrame { event: None, data: (*t).clone() };
            enc.on_event(&frame, e, &mut out);
            match x {
                Extra::None => {}
                Extra::Keepalive => enc.keepalive(&mut out),
                Extra::Error(k, m) => enc.on_error(&GatewayError::new(KINDS[*k], m.clone()), &mut out),
            }
            let _ = enc.is_finished();
        }
        enc.on_error(&GatewayError::internal("end"), &mut out);
    }
    let mut collected = Collected::new();
    for (e, _, _) in &events {
        collected.on_event(e.clone());
    }
    let _ = chat::render_completion(&collected, "id", u64::MAX, "m");
    let _ = anthropic::render_message(&collected, "id", "m", &anthropic::AnthropicOptions { include_thinking: true });
    let _ = gemini::render_response(&collected, "id", "m", true);
    let _ = ollama::render_chat(&collected, "m", "t", true, u64::MAX);
    let _ = ollama::render_generate(&collected, "m", "t", false, 0);
    let mut assembler = responses::ResponsesAssembler::new();
    for t in texts {
        if let Ok(v) = serde_json::from_str::<Value>(t) {
            assembler.on_payload(v);
        }
    }
    let _ = assembler.finish();
}
