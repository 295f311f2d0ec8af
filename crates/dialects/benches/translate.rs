//! Translation micro-benchmarks: what the pure translators cost per upstream event and per request.
//!
//! - `encode/<dialect>`: the whole per-event path, upstream SSE bytes in -> client bytes out (SSE parse, event
//!   parse, encoder), over a realistic 200-delta answer shaped like the Codex backend's; criterion's
//!   throughput is the number of upstream events, so its time per element is ns per event.
//! - `encode_only/<dialect>`: the encoder alone on already parsed events.
//! - `parse/sse_and_event`: the shared part (bytes -> frames -> typed events).
//! - `decode/<dialect>`: one client request body -> the upstream Responses body.
//!
//! Run: `cargo bench -p dialects --bench translate` (scripts/bench --micro gathers the numbers).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dialects::Event;
use dialects::anthropic::{AnthropicEncoder, AnthropicOptions};
use dialects::chat::ChatEncoder;
use dialects::gemini::{Framing, GeminiEncoder};
use dialects::ollama::{Endpoint, OllamaEncoder};
use dialects::sse::{SseFrame, SseParser, write_event};
use serde_json::json;

const DELTAS: usize = 200;

/// The upstream byte stream of a 200-delta text answer, as the Codex backend frames it.
fn upstream_stream() -> Vec<u8> {
    let mut out = Vec::new();
    let mut seq = 0u64;
    let mut emit = |ty: &str, mut v: serde_json::Value| {
        v["type"] = json!(ty);
        v["sequence_number"] = json!(seq);
        seq += 1;
        out.extend_from_slice(format!("event: {ty}\ndata: {v}\n\n").as_bytes());
    };
    let response = json!({"id": "resp_0123456789abcdef", "object": "response", "created_at": 1767225600,
        "status": "in_progress", "background": false, "error": null, "incomplete_details": null,
        "model": "gpt-5.4", "output": [], "parallel_tool_calls": true, "store": false, "usage": null});
    emit("response.created", json!({"response": response}));
    emit("response.in_progress", json!({"response": response}));
    let id = "msg_0123456789abcdef0123456789abcdef";
    emit(
        "response.output_item.added",
        json!({"output_index": 0, "item": {"id": id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}}),
    );
    emit(
        "response.content_part.added",
        json!({"item_id": id, "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    let words = ["Hello", " from", " the", " fake", " upstream", ",", " with", " \"quotes\"", " and", " ünïcode"];
    let mut text = String::new();
    for i in 0..DELTAS {
        let d = words[i % words.len()];
        text.push_str(d);
        emit(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": 0, "content_index": 0, "delta": d, "logprobs": []}),
        );
    }
    emit(
        "response.output_text.done",
        json!({"item_id": id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
    );
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    emit("response.content_part.done", json!({"item_id": id, "output_index": 0, "content_index": 0, "part": part}));
    let item = json!({"id": id, "type": "message", "status": "completed", "role": "assistant", "content": [part]});
    emit("response.output_item.done", json!({"output_index": 0, "item": item}));
    let mut done = response.clone();
    done["status"] = json!("completed");
    done["usage"] = json!({"input_tokens": 60, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 360});
    emit("response.completed", json!({"response": done}));
    out
}

/// Parse `bytes` in 16 KiB reads, as a socket would deliver them, handing each frame to `f` as it completes.
fn each_frame(bytes: &[u8], mut f: impl FnMut(SseFrame)) {
    let mut parser = SseParser::default();
    let mut batch = Vec::new();
    for chunk in bytes.chunks(16 * 1024) {
        if parser.push(chunk, &mut batch).is_err() {
            return;
        }
        batch.drain(..).for_each(&mut f);
    }
    parser.finish(&mut batch);
    batch.drain(..).for_each(f);
}

fn frames(bytes: &[u8]) -> Vec<SseFrame> {
    let mut frames = Vec::new();
    each_frame(bytes, |f| frames.push(f));
    frames
}

fn events(frames: &[SseFrame]) -> Vec<Event<'_>> {
    frames.iter().map(|f| Event::parse(&f.data).unwrap_or(Event::Ignored)).collect()
}

/// One client-side encoder, boxed so every dialect runs through the same loop.
type Encode = Box<dyn FnMut(&Event, &mut Vec<u8>)>;
/// A dialect's name and how to make a fresh encoder for one stream.
type Dialect = (&'static str, fn() -> Encode);

fn encoders() -> Vec<Dialect> {
    vec![
        ("chat", || {
            let mut e = ChatEncoder::new("chatcmpl-0123456789abcdef".into(), 1767225600, "gpt-5.4".into(), false);
            Box::new(move |ev, out| e.on_event(ev, out))
        }),
        ("anthropic", || {
            let mut e = AnthropicEncoder::new(
                "msg_0123456789abcdef".into(),
                "claude-sonnet-4-5".into(),
                &AnthropicOptions::default(),
                60,
            );
            Box::new(move |ev, out| e.on_event(ev, out))
        }),
        ("gemini", || {
            let mut e =
                GeminiEncoder::new(Framing::Sse, "resp_0123456789abcdef".into(), "gemini-2.5-pro".into(), false);
            Box::new(move |ev, out| e.on_event(ev, out))
        }),
        ("ollama", || {
            let mut e = OllamaEncoder::new(
                Endpoint::Chat,
                "gpt-5.4".into(),
                "2026-01-01T00:00:00Z".into(),
                false,
                Box::new(|| 0),
            );
            Box::new(move |ev, out| e.on_event(ev, out))
        }),
    ]
}

fn bench_encode(c: &mut Criterion) {
    let bytes = upstream_stream();
    let frames = frames(&bytes);
    let parsed = events(&frames);
    let n = frames.len() as u64;

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(n));
    g.bench_function("sse_and_event", |b| {
        b.iter(|| {
            let f = self::frames(black_box(&bytes));
            let e = events(&f);
            black_box(&e);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(n));
    for (name, make) in encoders() {
        g.bench_function(name, |b| {
            let mut out = Vec::with_capacity(64 * 1024);
            b.iter(|| {
                out.clear();
                let mut enc = make();
                each_frame(black_box(&bytes), |f| {
                    let ev = Event::parse(&f.data).unwrap_or(Event::Ignored);
                    enc(&ev, &mut out);
                });
                black_box(out.len())
            })
        });
    }
    // Responses passthrough: frames go out as they came; only events that end or shape the stream are parsed.
    g.bench_function("responses_passthrough", |b| {
        let mut out = Vec::with_capacity(64 * 1024);
        b.iter(|| {
            out.clear();
            each_frame(black_box(&bytes), |f| {
                // As the gateway does: `*.delta` frames are forwarded without being parsed.
                let name = f.event.as_deref().unwrap_or("message");
                if !name.ends_with(".delta") {
                    black_box(Event::parse(&f.data).unwrap_or(Event::Ignored));
                }
                write_event(&mut out, name, f.data.as_bytes());
            });
            black_box(out.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("encode_only");
    g.throughput(Throughput::Elements(n));
    for (name, make) in encoders() {
        g.bench_function(name, |b| {
            let mut out = Vec::with_capacity(64 * 1024);
            b.iter(|| {
                out.clear();
                let mut enc = make();
                for ev in black_box(&parsed) {
                    enc(ev, &mut out);
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// A realistic agent turn: a system prompt, a few turns with a tool call and its result, two tools.
fn conversation() -> (Vec<serde_json::Value>, String) {
    let system = "You are a coding agent. Follow the repository's conventions. ".repeat(20);
    let turns = vec![
        json!({"role": "user", "content": "List the files in the repository and tell me what the build uses."}),
        json!({"role": "assistant", "content": "I will look at the files first."}),
        json!({"role": "user", "content": "Go ahead, and summarise the README as well. ".repeat(10)}),
    ];
    (turns, system)
}

fn bench_decode(c: &mut Criterion) {
    let (turns, system) = conversation();
    let params = json!({"type": "object", "properties": {"cmd": {"type": "string", "description": "the command"}}, "required": ["cmd"]});
    let mut chat_messages = vec![json!({"role": "system", "content": system})];
    chat_messages.extend(turns.iter().cloned());
    let chat = serde_json::to_vec(&json!({
        "model": "gpt-5.4", "stream": true, "messages": chat_messages, "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "exec_command", "description": "Run a shell command", "parameters": params}}],
    }))
    .unwrap_or_default();
    let anthropic = serde_json::to_vec(&json!({
        "model": "claude-sonnet-4-5", "max_tokens": 8192, "stream": true, "system": system, "messages": turns,
        "tools": [{"name": "exec_command", "description": "Run a shell command", "input_schema": params}],
    }))
    .unwrap_or_default();
    let input: Vec<_> = turns
        .iter()
        .map(|t| {
            let kind = if t["role"] == "assistant" { "output_text" } else { "input_text" };
            json!({"type": "message", "role": t["role"], "content": [{"type": kind, "text": t["content"]}]})
        })
        .collect();
    let responses = serde_json::to_vec(&json!({
        "model": "gpt-5.4", "stream": true, "instructions": system, "input": input, "store": false,
        "tools": [{"type": "function", "name": "exec_command", "description": "Run a shell command", "parameters": params}],
    }))
    .unwrap_or_default();
    let contents: Vec<_> = turns
        .iter()
        .map(|t| json!({"role": if t["role"] == "assistant" { "model" } else { "user" }, "parts": [{"text": t["content"]}]}))
        .collect();
    let gemini = serde_json::to_vec(&json!({
        "systemInstruction": {"parts": [{"text": system}]}, "contents": contents,
        "tools": [{"functionDeclarations": [{"name": "exec_command", "description": "Run a shell command", "parameters": params}]}],
    }))
    .unwrap_or_default();
    let mut ollama_messages = vec![json!({"role": "system", "content": system})];
    ollama_messages.extend(turns.iter().cloned());
    let ollama = serde_json::to_vec(&json!({"model": "gpt-5.4", "messages": ollama_messages, "stream": true}))
        .unwrap_or_default();
    let aliases = HashMap::new();
    // Any catalog's lineup: decoding only needs slugs to name.
    const LINEUP: [&str; 3] = ["gpt-5.5", "gpt-5.4", "gpt-5.4-mini"];
    assert!(dialects::chat::decode(&chat).is_ok(), "chat body");
    assert!(dialects::anthropic::decode(&anthropic, None, &LINEUP).is_ok(), "anthropic body");
    assert!(dialects::responses::decode(&responses).is_ok(), "responses body");
    assert!(dialects::gemini::decode(&gemini, "gemini-2.5-pro", true, &aliases, &LINEUP).is_ok(), "gemini body");
    assert!(dialects::ollama::decode_chat(&ollama).is_ok(), "ollama body");

    let mut g = c.benchmark_group("decode");
    g.bench_function("chat", |b| b.iter(|| black_box(dialects::chat::decode(black_box(&chat)).is_ok())));
    g.bench_function("anthropic", |b| {
        b.iter(|| black_box(dialects::anthropic::decode(black_box(&anthropic), None, &LINEUP).is_ok()))
    });
    g.bench_function("responses", |b| b.iter(|| black_box(dialects::responses::decode(black_box(&responses)).is_ok())));
    g.bench_function("gemini", |b| {
        b.iter(|| {
            black_box(dialects::gemini::decode(black_box(&gemini), "gemini-2.5-pro", true, &aliases, &LINEUP).is_ok())
        })
    });
    g.bench_function("ollama", |b| b.iter(|| black_box(dialects::ollama::decode_chat(black_box(&ollama)).is_ok())));
    g.finish();
}

criterion_group!(benches, bench_encode, bench_decode);
criterion_main!(benches);
