//! issue 59: every stream others recorded from the real backends (`../shared/replay/`, read at test time, never
//! copied into the project) played through fake-codex as the gateway's upstream, each event its own frame
//! (`Scenario::Replay`), over the upstream HTTP SSE and the upstream WebSocket, then asked for in every dialect,
//! streamed and whole. What a client reconstructs (`read.rs`) is held to what the recording's `expect` lists:
//! text, tool calls with ids and arguments, reasoning where the dialect has a place for it, usage, the finish
//! reason or the error, generated images; for the Responses passthrough also that every event went through
//! untouched. Captures their owners edited are excused check by check, each with its reason ([`EXCUSED`]).
//! docs/testing.md says how to run it and where the recordings come from.

mod expect;
mod read;

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, start};
use expect::{Capture, Check, checks};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dialect {
    Chat,
    Responses,
    Anthropic,
    Gemini,
    Ollama,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    Stream,
    Whole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Sse,
    Websocket,
}

const DIALECTS: [Dialect; 5] =
    [Dialect::Chat, Dialect::Responses, Dialect::Anthropic, Dialect::Gemini, Dialect::Ollama];

/// A check that fails on a capture for a reason of the recording itself, not of the gateway. An excuse whose
/// check passes is reported, so one that no longer applies is noticed.
struct Excuse {
    capture: &'static str,
    check: &'static str,
    /// Only answers of this kind; `None`: streamed and whole alike.
    mode: Option<Mode>,
    reason: &'static str,
}

const EXCUSED: &[Excuse] = &[
    Excuse {
        capture: "v-azure-gpt5-multi-summary-enc",
        check: "text",
        mode: Some(Mode::Whole),
        reason: "anonymised by its owner: the deltas read 'X...' while output_item.done carries other text, and a \
                 whole answer is built from the .done item (the backend's response.completed output is empty)",
    },
    Excuse {
        capture: "v-azure-gpt5-multi-summary-noenc",
        check: "text",
        mode: Some(Mode::Whole),
        reason: "anonymised by its owner: the deltas read 'X...' while output_item.done carries other text",
    },
    Excuse {
        capture: "v-openai-phase",
        check: "text",
        mode: Some(Mode::Whole),
        reason: "deltas trimmed by its owner ('Got it' / 'Here are a few **AI'); the .done items carry the full \
                 texts, which a whole answer shows",
    },
    Excuse {
        capture: "v-inline-incomplete-max-output",
        check: "text",
        mode: None,
        reason: "edited by hand: its delta and .done carry different item ids, so the .done's text reads as a message \
                 not seen yet (a whole answer holds the text twice, Anthropic writes it as a block of its own)",
    },
    Excuse {
        capture: "v-openai-parallel-tool-calls",
        check: "outcome",
        mode: None,
        reason: "a hand-made fixture whose response.created / response.completed lines are abbreviated, not JSON: \
                 translated dialects cannot read how it ended and say so (the passthrough forwards it as it is)",
    },
    Excuse {
        capture: "v-copilot-id-rotation",
        check: "text",
        mode: None,
        reason: "another provider (GitHub Copilot) gives every event of an item a new id; the Codex backend keeps \
                 one id per item, which is what the gateway keys an item's deltas by",
    },
    Excuse {
        capture: "v-copilot-id-rotation",
        check: "reasoning",
        mode: None,
        reason: "another provider (GitHub Copilot) gives every event of an item a new id (see its text excuse)",
    },
];

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Stream => "streamed",
        Mode::Whole => "whole",
    }
}

/// Where the recordings are: `CODEX_GATEWAY_REPLAY_DIR`, else `../shared/replay` beside the repository.
fn replay_dir() -> PathBuf {
    match std::env::var_os("CODEX_GATEWAY_REPLAY_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/replay"),
    }
}

/// The request each dialect sends: one user message, reasoning asked for where the dialect can show it, and
/// usage in streams where the dialect makes it optional. No token cap the recordings could reach.
fn request(dialect: Dialect, mode: Mode, ollama: &str, base: &str) -> (String, Value) {
    let stream = mode == Mode::Stream;
    match dialect {
        Dialect::Chat => {
            let mut body = json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "replay"}],
                "stream": stream, "reasoning_effort": "medium"});
            if stream {
                body["stream_options"] = json!({"include_usage": true});
            }
            (format!("{base}/v1/chat/completions"), body)
        }
        Dialect::Responses => (
            format!("{base}/v1/responses"),
            json!({"model": "gpt-5.4", "input": "replay", "stream": stream,
                "reasoning": {"effort": "medium", "summary": "auto"}, "include": ["reasoning.encrypted_content"]}),
        ),
        Dialect::Anthropic => (
            format!("{base}/v1/messages"),
            json!({"model": "claude-sonnet-4-5", "max_tokens": 128000, "stream": stream,
                "thinking": {"type": "enabled", "budget_tokens": 4096},
                "messages": [{"role": "user", "content": "replay"}]}),
        ),
        Dialect::Gemini => {
            let method = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
            (
                format!("{base}/v1beta/models/gemini-2.5-flash:{method}"),
                json!({"contents": [{"role": "user", "parts": [{"text": "replay"}]}],
                    "generationConfig": {"thinkingConfig": {"includeThoughts": true}}}),
            )
        }
        Dialect::Ollama => (
            format!("{ollama}/api/chat"),
            json!({"model": "gpt-5.4", "stream": stream, "think": true,
                "messages": [{"role": "user", "content": "replay"}]}),
        ),
    }
}

async fn env(transport: Transport) -> TestEnv {
    let name = match transport {
        Transport::Sse => "sse",
        Transport::Websocket => "websocket",
    };
    start(Setup {
        ollama: true,
        config_toml: Some(format!("[upstream]\ntransport = \"{name}\"\n")),
        ..Setup::default()
    })
    .await
}

/// One request of `dialect` in `mode` answered by `sse` played verbatim.
async fn ask(env: &TestEnv, dialect: Dialect, mode: Mode, sse: &str) -> read::Seen {
    env.fake.enqueue(None, fake_codex::Scenario::Replay { sse: sse.to_string() });
    let ollama = env.ollama.clone().unwrap_or_default();
    let (url, body) = request(dialect, mode, &ollama, &env.base);
    let resp = env.http.post(&url).json(&body).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    read::read(dialect, mode, status, &text)
}

/// The outcome of one check.
struct Outcome {
    capture: String,
    transport: Transport,
    dialect: Dialect,
    mode: Mode,
    check: &'static str,
    failure: Option<String>,
}

/// Every request and check of one capture over one transport. A capture that fails upstream leaves its account
/// cooling down (a rate limit does), so each of its requests gets a gateway of its own; the others share one.
async fn run_capture(capture: Capture, sse: String, transport: Transport) -> Vec<Outcome> {
    let fresh_each = capture.expect.error.is_some();
    let shared = if fresh_each { None } else { Some(env(transport).await) };
    let mut out = Vec::new();
    for dialect in DIALECTS {
        for mode in [Mode::Stream, Mode::Whole] {
            let own;
            let env = match &shared {
                Some(e) => e,
                None => {
                    own = env(transport).await;
                    &own
                }
            };
            let seen = ask(env, dialect, mode, &sse).await;
            // The answer came over the transport under test (the gateway falls back to HTTP only when the
            // backend refuses the WebSocket handshake, which the fake does only when told to).
            let over = env.fake.requests_to("/responses").last().map(|r| r.http_version.clone()).unwrap_or_default();
            let want_ws = transport == Transport::Websocket;
            let transport_check = Check {
                name: "transport",
                failure: ((over == "websocket") != want_ws).then(|| format!("the request went over {over:?}")),
            };
            for Check { name, failure } in
                checks(&capture, dialect, mode, &sse, &seen).into_iter().chain([transport_check])
            {
                out.push(Outcome { capture: capture.name.clone(), transport, dialect, mode, check: name, failure });
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_stream_reaches_every_dialect() {
    let dir = replay_dir();
    let Ok(index) = std::fs::read_to_string(dir.join("index.json")) else {
        // The recordings live beside the repository, not in it; without them there is nothing to replay.
        eprintln!("replay: SKIPPED (no recordings at {}; set CODEX_GATEWAY_REPLAY_DIR)", dir.display());
        return;
    };
    let captures: Vec<Capture> = serde_json::from_str(&index).unwrap_or_else(|e| panic!("index.json: {e}"));
    assert!(captures.len() >= 100, "only {} captures in {}", captures.len(), dir.display());
    let mut jobs = Vec::new();
    for capture in captures {
        let sse = std::fs::read_to_string(dir.join("captures").join(&capture.file))
            .unwrap_or_else(|e| panic!("{}: {e}", capture.file));
        for transport in [Transport::Sse, Transport::Websocket] {
            jobs.push(run_capture(capture.clone(), sse.clone(), transport));
        }
    }
    let outcomes: Vec<Outcome> =
        futures_util::stream::iter(jobs).buffer_unordered(8).collect::<Vec<_>>().await.into_iter().flatten().collect();
    report(&outcomes);
}

/// Print the tally per dialect and transport, then fail on every check that failed without an excuse.
fn report(outcomes: &[Outcome]) {
    let mut tally: BTreeMap<(Dialect, Transport), (usize, usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut excused_passing = Vec::new();
    for o in outcomes {
        let excuse =
            EXCUSED.iter().find(|e| e.capture == o.capture && e.check == o.check && e.mode.is_none_or(|m| m == o.mode));
        let t = tally.entry((o.dialect, o.transport)).or_default();
        match (&o.failure, excuse) {
            (None, None) => t.0 += 1,
            (None, Some(_)) => {
                t.0 += 1;
                excused_passing.push(format!("{} {}", o.capture, o.check));
            }
            (Some(_), Some(_)) => t.2 += 1,
            (Some(f), None) => {
                t.1 += 1;
                failures
                    .push(format!("{} [{:?} {:?} {:?}] {}: {f}", o.capture, o.transport, o.dialect, o.mode, o.check));
            }
        }
    }
    eprintln!("replay: checks passed / failed / excused, per dialect and upstream transport");
    for ((dialect, transport), (pass, fail, excused)) in &tally {
        eprintln!("  {dialect:?} over {transport:?}: {pass} passed, {fail} failed, {excused} excused");
    }
    excused_passing.sort();
    excused_passing.dedup();
    for e in &excused_passing {
        eprintln!("  excused but passing (somewhere): {e}");
    }
    for e in EXCUSED {
        eprintln!("  excused: {} {} ({}): {}", e.capture, e.check, e.mode.map_or("both", mode_name), e.reason);
    }
    failures.sort();
    assert!(failures.is_empty(), "{} replay checks failed:\n{}", failures.len(), failures.join("\n"));
}
