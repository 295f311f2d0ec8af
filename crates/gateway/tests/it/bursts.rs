//! Events that arrive together leave together (issue 89; docs/performance.md, "Bursts"): an upstream burst read in
//! one go reaches the client in far fewer body chunks than it has events, over HTTP/1.1 SSE (where hyper's client
//! connection hands the pump one chunk at a time) and over the upstream WebSocket; and an event that comes alone
//! is not held back for company: paced deltas each arrive in a chunk of their own, as they are sent.
//!
//! Counted as a client sees the wire: the answer read raw over TCP and its chunked framing taken apart (each chunk
//! hyper writes is one body frame of the pump).

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Setup, TestEnv, scenario, start};

/// The deltas of the burst (no pause between them; the fake writes each event in its own HTTP chunk or frame).
const BURST_DELTAS: usize = 200;
/// The paced answer: this many deltas, this far apart.
const PACED_DELTAS: usize = 4;
const PACE: Duration = Duration::from_millis(150);

async fn gateway(transport: &str) -> TestEnv {
    start(Setup { config_toml: Some(format!("[upstream]\ntransport = \"{transport}\"\n")), ..Setup::default() }).await
}

/// A streamed chat completion read raw: each chunk of the chunked body with when it arrived.
async fn chunks(env: &TestEnv) -> Vec<(Instant, String)> {
    let addr = env.base.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let body = json!({"model": "gpt-5.4", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(format!("{head}{body}").as_bytes()).await.unwrap_or_else(|e| panic!("write: {e}"));
    let mut raw = Vec::new();
    let mut arrivals = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                raw.extend_from_slice(&buf[..n]);
                arrivals.push((Instant::now(), raw.len()));
            }
            Ok(Err(e)) => panic!("read: {e}"),
            Err(_) => panic!("no end of the answer within 20 s"),
        }
    }
    let text = String::from_utf8(raw).unwrap_or_else(|e| panic!("not UTF-8: {e}"));
    let Some(head_end) = text.find("\r\n\r\n") else { panic!("no head in {text:?}") };
    let head = &text[..head_end];
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    // Each chunk is timed by the read that brought its last byte.
    let mut out = Vec::new();
    let mut pos = head_end + 4;
    loop {
        let Some(line) = text[pos..].find("\r\n") else { panic!("no chunk size at {pos} in {text:?}") };
        let size = &text[pos..pos + line];
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or_else(|e| panic!("chunk size {size:?}: {e}"));
        if size == 0 {
            break;
        }
        let start = pos + line + 2;
        let end = start + size;
        let at = arrivals.iter().find(|(_, len)| *len >= end).map_or_else(Instant::now, |(at, _)| *at);
        out.push((at, text[start..end].to_string()));
        pos = end + 2;
    }
    out
}

/// The chat deltas' texts in `chunks`, one list per chunk.
fn deltas(chunks: &[(Instant, String)]) -> Vec<Vec<String>> {
    chunks
        .iter()
        .map(|(_, chunk)| {
            chunk
                .split("\n\n")
                .filter_map(|event| event.strip_prefix("data: "))
                .filter(|data| *data != "[DONE]")
                .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
                .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
                .collect()
        })
        .collect()
}

async fn burst_leaves_in_few_chunks(transport: &str) {
    let env = gateway(transport).await;
    let text = (1..=BURST_DELTAS).map(|i| format!("w{i} ")).collect::<String>();
    env.fake.enqueue(None, scenario(json!({"kind": "text", "text": text, "deltas": BURST_DELTAS})));
    let chunks = chunks(&env).await;
    let per_chunk = deltas(&chunks);
    let events: usize = per_chunk.iter().map(Vec::len).sum();
    assert_eq!(per_chunk.concat().concat(), text, "{transport}: the answer's text, whole and in order");
    assert_eq!(events, BURST_DELTAS, "{transport}");
    // One chunk per event before; a burst read in one go now leaves in a handful (the first event alone: the
    // early first chunk).
    assert!(
        chunks.len() * 8 <= events,
        "{transport}: {events} deltas of a burst left in {} chunks (at most {} expected)",
        chunks.len(),
        events / 8
    );
}

async fn lone_events_are_not_held(transport: &str) {
    let env = gateway(transport).await;
    let pace = PACE.as_millis() as u64;
    env.fake.enqueue(
        None,
        scenario(json!({"kind": "slow", "text": "one two three four", "deltas": PACED_DELTAS, "delay_ms": pace})),
    );
    let chunks = chunks(&env).await;
    let per_chunk = deltas(&chunks);
    // Each delta in a chunk of its own: none waited for the next.
    let with_deltas: Vec<(Instant, &Vec<String>)> =
        chunks.iter().zip(&per_chunk).filter(|(_, d)| !d.is_empty()).map(|((at, _), d)| (*at, d)).collect();
    assert_eq!(
        with_deltas.iter().map(|(_, d)| d.len()).collect::<Vec<_>>(),
        vec![1; PACED_DELTAS],
        "{transport}: {per_chunk:?}"
    );
    // And each came as it was sent: the gaps are the pace, not the pace plus a wait.
    for pair in with_deltas.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= PACE - Duration::from_millis(40) && gap <= PACE + Duration::from_millis(100),
            "{transport}: {gap:?} between deltas sent {PACE:?} apart"
        );
    }
}

#[tokio::test]
async fn a_burst_over_http_sse_leaves_in_few_writes() {
    burst_leaves_in_few_chunks("sse").await;
}

#[tokio::test]
async fn a_burst_over_the_upstream_websocket_leaves_in_few_writes() {
    burst_leaves_in_few_chunks("websocket").await;
}

#[tokio::test]
async fn a_lone_event_over_http_sse_is_not_held() {
    lone_events_are_not_held("sse").await;
}

#[tokio::test]
async fn a_lone_event_over_the_upstream_websocket_is_not_held() {
    lone_events_are_not_held("websocket").await;
}
