//! Incremental Server-Sent Events parsing and framing.
//!
//! Written by hand rather than taken from a crate because the available SSE crates are tied to an async stream
//! type; this crate must stay free of I/O and runtimes, and the gateway needs to feed arbitrary byte chunks and
//! get frames back without re-scanning what it already looked at.

use std::borrow::Cow;

/// One SSE event: the optional `event:` name and the joined `data:` lines. Names of the Responses protocol's
/// events are shared static strings (no allocation per frame); others are owned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseFrame {
    pub event: Option<Cow<'static, str>>,
    pub data: String,
}

/// Event names the Codex backend sends, so a frame's name needs no allocation.
const KNOWN_EVENTS: [&str; 24] = [
    "response.output_text.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta",
    "response.refusal.delta",
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.done",
    "response.function_call_arguments.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.done",
    "response.refusal.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "response.web_search_call.in_progress",
    "response.web_search_call.searching",
    "response.web_search_call.completed",
    "keepalive",
    "error",
];

fn event_name(value: Cow<'_, str>) -> Cow<'static, str> {
    match KNOWN_EVENTS.iter().find(|k| **k == value) {
        Some(k) => Cow::Borrowed(*k),
        None => Cow::Owned(value.into_owned()),
    }
}

/// Error from the parser: a single event grew beyond the allowed size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an upstream SSE event exceeded {limit} bytes")]
pub struct FrameTooLarge {
    pub limit: usize,
}

/// Feeds bytes, yields frames. Lines end in `\n` or `\r\n`; comments and unknown fields are ignored.
#[derive(Debug)]
pub struct SseParser {
    buf: Vec<u8>,
    /// Bytes of `buf` already known to contain no line break.
    scanned: usize,
    event: Option<Cow<'static, str>>,
    data: String,
    has_data: bool,
    max_frame: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(32 * 1024 * 1024)
    }
}

impl SseParser {
    /// `max_frame` bounds the memory one event may take.
    pub fn new(max_frame: usize) -> Self {
        SseParser { buf: Vec::new(), scanned: 0, event: None, data: String::new(), has_data: false, max_frame }
    }

    /// Parse `chunk`, appending each completed frame to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseFrame>) -> Result<(), FrameTooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(pos) = memchr_newline(&self.buf[self.scanned.max(start)..]) {
            let end = self.scanned.max(start) + pos;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            // Split borrow: process the line from a copy of the range.
            let (s, e) = (start, start + line.len());
            self.handle_line(s, e, out);
            start = end + 1;
            self.scanned = start;
        }
        if start > 0 {
            self.buf.drain(..start);
        }
        self.scanned = self.buf.len();
        if self.buf.len() + self.data.len() > self.max_frame {
            return Err(FrameTooLarge { limit: self.max_frame });
        }
        Ok(())
    }

    /// Flush a final frame that was not terminated by a blank line (end of body).
    pub fn finish(&mut self, out: &mut Vec<SseFrame>) {
        if !self.buf.is_empty() {
            let len = self.buf.len();
            let end = if self.buf.last() == Some(&b'\r') { len - 1 } else { len };
            self.handle_line(0, end, out);
            self.buf.clear();
            self.scanned = 0;
        }
        self.dispatch(out);
    }

    fn handle_line(&mut self, s: usize, e: usize, out: &mut Vec<SseFrame>) {
        if s == e {
            self.dispatch(out);
            return;
        }
        let line = &self.buf[s..e];
        if line[0] == b':' {
            return; // comment / keepalive
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        // Valid UTF-8 (the normal case) is checked with the fast validator; only broken input takes the lossy path.
        let value = match std::str::from_utf8(value) {
            Ok(v) => Cow::Borrowed(v),
            Err(_) => String::from_utf8_lossy(value),
        };
        match field {
            b"event" => self.event = Some(event_name(value)),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseFrame>) {
        if self.has_data {
            out.push(SseFrame { event: self.event.take(), data: std::mem::take(&mut self.data) });
        }
        self.event = None;
        self.has_data = false;
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

/// Append `event: <name>\ndata: <data>\n\n` to `out`.
pub fn write_event(out: &mut Vec<u8>, event: &str, data: &[u8]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

/// Append `data: <data>\n\n` to `out`.
pub fn write_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

/// Append `value` as JSON to `out`, serialised in place (no intermediate buffer). On a serialisation error
/// nothing is appended and false is returned.
pub fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> bool {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        return false;
    }
    true
}

/// [`write_data`] with a value serialised in place. Nothing is appended if it cannot be serialised.
pub fn write_data_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    out.extend_from_slice(b"data: ");
    if write_json(out, value) {
        out.extend_from_slice(b"\n\n");
    } else {
        out.truncate(mark);
    }
}

/// [`write_event`] with a value serialised in place. Nothing is appended if it cannot be serialised.
pub fn write_event_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, event: &str, value: &T) {
    let mark = out.len();
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    if write_json(out, value) {
        out.extend_from_slice(b"\n\n");
    } else {
        out.truncate(mark);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseFrame> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out).ok();
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn splits_events_across_arbitrary_chunks() {
        let whole = b"event: a\ndata: {\"x\":1}\n\n: keepalive\n\nevent: b\r\ndata: line1\r\ndata: line2\r\n\r\n";
        let expected = vec![
            SseFrame { event: Some("a".into()), data: "{\"x\":1}".into() },
            SseFrame { event: Some("b".into()), data: "line1\nline2".into() },
        ];
        assert_eq!(parse_all(&[whole]), expected);
        for split in 1..whole.len() {
            let (a, b) = whole.split_at(split);
            assert_eq!(parse_all(&[a, b]), expected, "split at {split}");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(parse_all(&bytes), expected);
    }

    #[test]
    fn unterminated_last_event_is_flushed() {
        assert_eq!(parse_all(&[b"data: tail"]), vec![SseFrame { event: None, data: "tail".into() }]);
    }

    #[test]
    fn oversized_frame_is_an_error() {
        let mut p = SseParser::new(16);
        let mut out = Vec::new();
        assert!(p.push(b"data: 0123456789abcdefghij", &mut out).is_err());
    }
}
