//! Request bodies per dialect, and a cheap scanner that reads the answer without parsing it: it counts SSE
//! events, notes when the first content token arrived, and checks that the answer ended the way the dialect
//! ends a complete answer. Searching is done with `memchr`'s SIMD finders so the generator stays cheap.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};
use memchr::memmem;
use serde_json::json;

use crate::RequestArgs;
use crate::target::{RequestSpec, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI Chat Completions.
    Chat,
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI Responses (also what fake-codex speaks directly).
    Responses,
}

impl Dialect {
    pub fn parse(s: &str) -> anyhow::Result<Dialect> {
        Ok(match s {
            "chat" | "openai" => Dialect::Chat,
            "anthropic" | "messages" => Dialect::Anthropic,
            "responses" => Dialect::Responses,
            other => bail!("unknown dialect `{other}` (chat, anthropic, responses)"),
        })
    }

    /// A byte string that appears in the first event carrying answer text.
    fn content_marker(self) -> &'static [u8] {
        match self {
            Dialect::Chat => b"\"content\":\"",
            Dialect::Anthropic => b"\"text_delta\"",
            Dialect::Responses => b"response.output_text.delta",
        }
    }

    /// What the end of a complete streamed answer contains.
    fn stream_end_marker(self) -> &'static [u8] {
        match self {
            Dialect::Chat => b"data: [DONE]",
            Dialect::Anthropic => b"message_stop",
            Dialect::Responses => b"response.completed",
        }
    }

    /// What a complete non-streamed answer contains.
    fn body_end_marker(self) -> &'static [u8] {
        match self {
            Dialect::Chat => b"\"finish_reason\"",
            Dialect::Anthropic => b"\"stop_reason\"",
            Dialect::Responses => b"\"status\":\"completed\"",
        }
    }
}

/// A prompt of about `chars` characters (fake-codex echoes up to 200 of them back).
fn prompt(chars: usize) -> String {
    const WORDS: [&str; 8] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"];
    let mut s = String::with_capacity(chars + 8);
    let mut i = 0;
    while s.len() < chars {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[i % WORDS.len()]);
        i += 1;
    }
    s.truncate(chars);
    s
}

/// The request `args` describe.
pub fn request_spec(args: &RequestArgs) -> anyhow::Result<(RequestSpec, Dialect)> {
    let dialect = Dialect::parse(&args.dialect)?;
    let target = Target::parse(&args.url)?;
    let text = match &args.fake_directive {
        Some(d) => format!("<<fake {d}>>"),
        None => prompt(args.prompt_chars),
    };
    let body = match dialect {
        Dialect::Chat => json!({
            "model": args.model,
            "stream": args.stream,
            "messages": [{"role": "user", "content": text}],
        }),
        Dialect::Anthropic => json!({
            "model": args.model,
            "max_tokens": 4096,
            "stream": args.stream,
            "messages": [{"role": "user", "content": text}],
        }),
        // Strict enough for fake-codex itself: instructions present, store false, typed input items.
        Dialect::Responses => json!({
            "model": args.model,
            "instructions": "You are a benchmark.",
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}],
            "store": false,
            "stream": args.stream,
        }),
    };
    let mut headers = Vec::new();
    if dialect == Dialect::Anthropic {
        headers.push((HeaderName::from_static("anthropic-version"), HeaderValue::from_static("2023-06-01")));
    }
    if let Some(path) = &args.auth_json {
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: serde_json::Value = serde_json::from_slice(&raw).with_context(|| format!("{}", path.display()))?;
        let tokens = &doc["tokens"];
        let token = tokens["access_token"].as_str().context("auth.json has no tokens.access_token")?;
        let account = tokens["account_id"].as_str().context("auth.json has no tokens.account_id")?;
        headers.push((AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}"))?));
        headers.push((HeaderName::from_static("chatgpt-account-id"), HeaderValue::from_str(account)?));
        headers.push((HeaderName::from_static("originator"), HeaderValue::from_static("codex_cli_rs")));
    }
    for h in &args.headers {
        let (k, v) = h.split_once(':').with_context(|| format!("header `{h}` is not `Name: value`"))?;
        headers.push((HeaderName::try_from(k.trim())?, HeaderValue::from_str(v.trim())?));
    }
    let body = Bytes::from(serde_json::to_vec(&body)?);
    Ok((RequestSpec { target, headers, body: Some(body) }, dialect))
}

/// How many bytes of a stream's end are kept to check how it ended.
const TAIL: usize = 4096;
/// Overlap kept between chunks so a marker split across two chunks is still found.
const CARRY: usize = 32;
/// Largest non-streamed body kept.
const MAX_BODY: usize = 8 << 20;

/// Reads one answer as it arrives.
pub struct Scanner {
    dialect: Dialect,
    stream: bool,
    bytes: u64,
    events: u64,
    last_newline: bool,
    ttft: Option<Duration>,
    carry: Vec<u8>,
    /// First bytes, for error messages; the whole body when not streaming.
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Scanner {
    pub fn new(dialect: Dialect, stream: bool) -> Scanner {
        Scanner {
            dialect,
            stream,
            bytes: 0,
            events: 0,
            last_newline: false,
            ttft: None,
            carry: Vec::with_capacity(2 * CARRY),
            head: Vec::new(),
            tail: Vec::new(),
        }
    }

    pub fn feed(&mut self, data: &[u8], start: Instant) {
        if data.is_empty() {
            return;
        }
        self.bytes += data.len() as u64;
        let keep = if self.stream { 512 } else { MAX_BODY };
        if self.head.len() < keep {
            let n = (keep - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
        }
        if !self.stream {
            return;
        }
        self.events += memmem::find_iter(data, b"\n\n").count() as u64;
        if self.last_newline && data[0] == b'\n' {
            self.events += 1;
        }
        self.last_newline = data[data.len() - 1] == b'\n';
        if self.ttft.is_none() {
            let found = self.has_content(data) || {
                // A marker split across the previous chunk and this one.
                let n = data.len().min(CARRY);
                self.carry.extend_from_slice(&data[..n]);
                let joined = std::mem::take(&mut self.carry);
                let hit = self.has_content(&joined);
                self.carry = joined;
                hit
            };
            if found {
                self.ttft = Some(start.elapsed());
            }
            self.carry.clear();
            self.carry.extend_from_slice(&data[data.len().saturating_sub(CARRY)..]);
        }
        if data.len() >= TAIL {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - TAIL..]);
        } else {
            let overflow = (self.tail.len() + data.len()).saturating_sub(TAIL);
            self.tail.drain(..overflow);
            self.tail.extend_from_slice(data);
        }
    }

    fn has_content(&self, hay: &[u8]) -> bool {
        let marker = self.dialect.content_marker();
        if self.dialect != Dialect::Chat {
            return memmem::find(hay, marker).is_some();
        }
        // Chat: a non-empty `content` string (the role-only first chunk may carry "").
        memmem::find_iter(hay, marker).any(|i| hay.get(i + marker.len()).is_some_and(|&b| b != b'"'))
    }

    /// The first bytes of the answer, for error messages.
    pub fn head(&self) -> String {
        String::from_utf8_lossy(&self.head[..self.head.len().min(300)]).into_owned()
    }

    /// (time to first content token, events, bytes), or why the answer is not a complete one.
    pub fn finish(self) -> anyhow::Result<(Option<Duration>, u64, u64)> {
        if self.stream {
            let end = self.dialect.stream_end_marker();
            if memmem::find(&self.tail, end).is_none() {
                let t = &self.tail[self.tail.len().saturating_sub(300)..];
                bail!("stream ended without {}: {}", String::from_utf8_lossy(end), String::from_utf8_lossy(t));
            }
            if self.ttft.is_none() {
                bail!("stream carried no content token: {}", self.head());
            }
            Ok((self.ttft, self.events, self.bytes))
        } else {
            if memmem::find(&self.head, self.dialect.body_end_marker()).is_none() {
                bail!("incomplete answer: {}", self.head());
            }
            Ok((None, 1, self.bytes))
        }
    }

    /// True once a content token was seen (disconnect trials stop reading there).
    pub fn saw_content(&self) -> bool {
        self.ttft.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_events_and_finds_markers_across_chunks() {
        let whole = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
        for split in 1..whole.len() {
            let mut s = Scanner::new(Dialect::Chat, true);
            let start = Instant::now();
            s.feed(&whole[..split], start);
            s.feed(&whole[split..], start);
            let (ttft, events, bytes) = s.finish().unwrap_or_else(|e| panic!("split {split}: {e}"));
            assert!(ttft.is_some(), "split {split}");
            assert_eq!(events, 3, "split {split}");
            assert_eq!(bytes, whole.len() as u64);
        }
    }

    #[test]
    fn a_stream_without_its_end_is_an_error() {
        let mut s = Scanner::new(Dialect::Responses, true);
        s.feed(b"event: response.output_text.delta\ndata: {}\n\n", Instant::now());
        assert!(s.finish().is_err());
    }

    #[test]
    fn prompt_has_the_asked_length() {
        assert_eq!(prompt(200).len(), 200);
        assert_eq!(prompt(3).len(), 3);
    }
}
