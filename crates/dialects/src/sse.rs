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

impl SseFrame {
    /// The frame of one whole event's JSON, as the upstream WebSocket hands them over (one per text frame): named
    /// from the `type` the backend writes first, as the HTTP endpoint's `event:` line names it. Unnamed when the
    /// `type` is not first (the event's parse reads it then, as for an SSE event without an `event:` line).
    pub fn of_event(data: String) -> SseFrame {
        let event = data
            .strip_prefix(r#"{"type":""#)
            .and_then(|rest| rest.split_once('"'))
            .filter(|(kind, _)| !kind.ends_with('\\'))
            .map(|(kind, _)| event_name(kind.as_bytes()));
        SseFrame { event, data }
    }
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

/// A frame's name: one of [`KNOWN_EVENTS`] (compared as bytes, so the usual name is not UTF-8-checked first),
/// else an owned copy.
fn event_name(value: &[u8]) -> Cow<'static, str> {
    match KNOWN_EVENTS.iter().find(|k| k.as_bytes() == value) {
        Some(k) => Cow::Borrowed(*k),
        None => Cow::Owned(String::from_utf8_lossy(value).into_owned()),
    }
}

/// Error from the parser: a single event grew beyond the allowed size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an upstream SSE event exceeded {limit} bytes")]
pub struct FrameTooLarge {
    pub limit: usize,
}

/// Capacity kept for an unfinished line between chunks; a larger buffer is shrunk to its length.
const MIN_KEPT: usize = 1024;

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
    ///
    /// Only an unfinished last line is kept between chunks, and the buffer is freed once it is consumed: a
    /// stream waiting for its next event holds no parse buffer (with thousands of slow streams open, a buffer
    /// sized by the largest chunk seen was ~1 KB per stream; docs/performance.md, "Small waiting requests").
    pub fn push(&mut self, chunk: &[u8], out: &mut impl Extend<SseFrame>) -> Result<(), FrameTooLarge> {
        if self.buf.is_empty() {
            // The usual case, chunks that end on a line break: lines are parsed straight from the chunk.
            let done = self.parse_lines(chunk, 0, out);
            self.buf.extend_from_slice(&chunk[done..]);
        } else {
            let mut buf = std::mem::take(&mut self.buf);
            buf.extend_from_slice(chunk);
            let done = self.parse_lines(&buf, self.scanned, out);
            buf.drain(..done);
            if !buf.is_empty() {
                buf.shrink_to(buf.len().max(MIN_KEPT));
                self.buf = buf;
            }
        }
        self.scanned = self.buf.len();
        if self.buf.len() + self.data.len() > self.max_frame {
            return Err(FrameTooLarge { limit: self.max_frame });
        }
        Ok(())
    }

    /// Handle every complete line of `data`, whose bytes before `scan_from` hold no line break. Returns how many
    /// bytes were consumed (up to and including the last line break).
    fn parse_lines(&mut self, data: &[u8], scan_from: usize, out: &mut impl Extend<SseFrame>) -> usize {
        let mut start = 0;
        while let Some(pos) = memchr_newline(&data[scan_from.max(start)..]) {
            let end = scan_from.max(start) + pos;
            let line = &data[start..end];
            self.handle_line(line.strip_suffix(b"\r").unwrap_or(line), out);
            start = end + 1;
        }
        start
    }

    /// Flush a final frame that was not terminated by a blank line (end of body).
    pub fn finish(&mut self, out: &mut impl Extend<SseFrame>) {
        let buf = std::mem::take(&mut self.buf);
        if !buf.is_empty() {
            self.handle_line(buf.strip_suffix(b"\r").unwrap_or(&buf), out);
        }
        self.scanned = 0;
        self.dispatch(out);
    }

    fn handle_line(&mut self, line: &[u8], out: &mut impl Extend<SseFrame>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
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
        match field {
            b"event" => self.event = Some(event_name(value)),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                // Valid UTF-8 (the normal case) is checked with the fast validator; only broken input takes the
                // lossy path.
                match std::str::from_utf8(value) {
                    Ok(v) => self.data.push_str(v),
                    Err(_) => self.data.push_str(&String::from_utf8_lossy(value)),
                }
                self.has_data = true;
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut impl Extend<SseFrame>) {
        if self.has_data {
            out.extend([SseFrame { event: self.event.take(), data: std::mem::take(&mut self.data) }]);
        }
        self.event = None;
        self.has_data = false;
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

/// Append `event: <name>\ndata: <data>\n\n` to `out`. A line break inside `data` (an upstream event sent as
/// several `data:` lines, which the parser joins with `\n`) starts a new `data:` line, so the client joins them
/// back into the same payload.
pub fn write_event(out: &mut Vec<u8>, event: &str, data: &[u8]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\n");
    write_data(out, data);
}

/// Append `data: <data>\n\n` to `out`, one `data:` line per line of `data` (see [`write_event`]).
pub fn write_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(b"data: ");
    // The usual payload is one line of JSON: one vectorised scan finds no break and it is copied whole.
    let mut rest = data;
    while let Some(i) = memchr::memchr2(b'\n', b'\r', rest) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(b"\ndata: ");
        // CR, LF and CRLF all end a line for an SSE client; CRLF is one break, not two.
        let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    out.extend_from_slice(rest);
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

    /// A WebSocket event's JSON becomes the frame its SSE event would have been, named by its leading `type`.
    #[test]
    fn an_events_json_is_named_by_its_leading_type() {
        let delta = r#"{"type":"response.output_text.delta","delta":"hi"}"#;
        let frame = SseFrame::of_event(delta.to_string());
        assert_eq!(frame.event.as_deref(), Some("response.output_text.delta"));
        assert!(matches!(frame.event, Some(Cow::Borrowed(_))), "a known name is not allocated");
        assert_eq!(frame.data, delta);
        assert_eq!(SseFrame::of_event(r#"{"type":"x.new","a":1}"#.into()).event.as_deref(), Some("x.new"));
        // Not first, or escaped: unnamed, and the parse reads the type.
        assert_eq!(SseFrame::of_event(r#"{"delta":"a","type":"response.output_text.delta"}"#.into()).event, None);
        assert_eq!(SseFrame::of_event(r#"{"type":"a\"b","x":1}"#.into()).event, None);
    }

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

    /// Between chunks only an unfinished line is kept, in a buffer no larger than needed.
    #[test]
    fn keeps_no_buffer_between_whole_lines() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        let whole = format!("data: {}\n\n", "x".repeat(8000));
        assert!(p.push(whole.as_bytes(), &mut out).is_ok());
        assert_eq!((out.len(), p.buf.capacity()), (1, 0));
        assert!(p.push(b"data: par", &mut out).is_ok());
        assert!(p.buf.capacity() < 64, "capacity {}", p.buf.capacity());
        let rest = format!("tial {}\n\ndata: next", "y".repeat(8000));
        assert!(p.push(rest.as_bytes(), &mut out).is_ok());
        assert_eq!(out.len(), 2);
        assert!(out[1].data.starts_with("partial yyy"));
        assert!(p.buf.capacity() <= MIN_KEPT, "capacity {}", p.buf.capacity());
        assert!(p.push(b"\n\n", &mut out).is_ok());
        assert_eq!((out.len(), out[2].data.as_str(), p.buf.capacity()), (3, "next", 0));
    }

    /// A multi-line event went out with its second line lacking `data:` (an unparseable frame for the client).
    #[test]
    fn multi_line_data_is_written_as_several_data_lines() {
        let parsed = parse_all(&[b"event: e\ndata: {\"a\":\ndata:  1}\n\n"]);
        assert_eq!(parsed[0].data, "{\"a\":\n 1}");
        let mut out = Vec::new();
        write_event(&mut out, "e", parsed[0].data.as_bytes());
        assert_eq!(out, b"event: e\ndata: {\"a\":\ndata:  1}\n\n");
        assert_eq!(parse_all(&[&out]), parsed, "the client reads back the same payload");
        let mut out = Vec::new();
        write_data(&mut out, b"x\r\ny\rz\n");
        assert_eq!(out, b"data: x\ndata: y\ndata: z\ndata: \n\n");
        let mut out = Vec::new();
        write_data(&mut out, b"{\"one\":\"line\"}");
        assert_eq!(out, b"data: {\"one\":\"line\"}\n\n");
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
