//! Incremental Server-Sent Events parsing and framing.
//!
//! Written by hand rather than taken from a crate because the available SSE crates are tied to an async stream
//! type; this crate must stay free of I/O and runtimes, and the gateway needs to feed arbitrary byte chunks and
//! get frames back without re-scanning what it already looked at.

use std::borrow::Cow;
use std::cell::RefCell;

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

/// A handed-back payload buffer larger than this is freed, not reused (one large event must not leave the
/// thread's pool holding its room).
const MAX_RECYCLED: usize = 1024;
/// Handed-back payload buffers kept by a thread for the parsers running on it (see [`SseParser::recycle`]).
const POOL_KEPT: usize = 16;

thread_local! {
    /// Payload buffers handed back, shared by the thread's parsers (no parser keeps one between frames, see
    /// [`SseParser::recycle`]): every frame takes its buffer from here, the most recently returned first, instead
    /// of allocating one. At most [`POOL_KEPT`] buffers of at most [`MAX_RECYCLED`] bytes: 16 KB per thread.
    static POOL: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Room given to a payload buffer the pool could not supply: every event of the backend's usual streams fits
/// (deltas are ~170 bytes, `response.created` ~300, `response.completed` ~500 without a long output), so a buffer
/// is not grown (a `realloc` and a copy) when a larger event reuses it.
const FRESH: usize = 512;

/// A buffer from the thread's pool (empty, with room), or a new one with [`FRESH`] room.
fn pooled() -> String {
    POOL.try_with(|pool| pool.borrow_mut().pop()).ok().flatten().unwrap_or_else(|| String::with_capacity(FRESH))
}

/// Keep `buf` (cleared, not larger than [`MAX_RECYCLED`]) in the thread's pool, or free it if the pool is full.
fn pool(buf: String) {
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_KEPT {
            pool.push(buf);
        }
    });
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

    /// Hand back a frame the caller is done with: its payload buffer goes to the thread's pool and is reused for
    /// a later frame, so a frame costs no allocation in the steady state (one `malloc`/`free` per event otherwise).
    ///
    /// The pool, not the parser, keeps it, and a parser takes a buffer only when a frame's first `data:` line
    /// arrives: the next frame on the thread, of whichever stream, then fills the buffer the last one left, still
    /// in the cache. When each parser kept its own for its next frame, every paced event wrote into a buffer not
    /// touched since that stream's previous event (callgrind's cache simulation, 64 paced streams: ~2 missed
    /// lines per event, the most of any copy on the per-event path; docs/performance.md, "SSE payload pool").
    pub fn recycle(&mut self, frame: SseFrame) {
        let mut data = frame.data;
        if data.capacity() == 0 || data.capacity() > MAX_RECYCLED {
            return;
        }
        data.clear();
        pool(data);
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
                if self.data.capacity() == 0 {
                    self.data = pooled();
                }
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
            // The next frame takes its buffer when its data arrives (`handle_line`), not now (see `recycle`).
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

    /// A frame handed back lends its payload buffer to the next frame (no allocation per event) through the
    /// thread's pool, a burst's frames and new streams reuse the pooled ones, the parser holds none between
    /// frames, and nothing handed back changes what later frames hold.
    #[test]
    fn handed_back_payload_buffers_are_reused() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        assert!(p.push(b"event: a\ndata: first payload\n\n", &mut out).is_ok());
        let first = out.remove(0);
        let at = first.data.as_ptr();
        p.recycle(first);
        assert_eq!(p.data.capacity(), 0, "the parser holds a buffer between frames");
        assert!(p.push(b"data: second\n\n", &mut out).is_ok());
        assert_eq!((out[0].event.as_deref(), out[0].data.as_str()), (None, "second"));
        assert_eq!(out[0].data.as_ptr(), at, "the handed-back buffer was not reused");

        // A burst: frames handed back beyond the parser's own go to the thread's pool (bounded); the next
        // burst's frames, and another stream's parser, take them.
        let burst: Vec<SseFrame> = out
            .drain(..)
            .chain((0..20).map(|i| {
                let mut one = Vec::new();
                assert!(p.push(format!("data: {i}\n\n").as_bytes(), &mut one).is_ok());
                one.remove(0)
            }))
            .collect();
        for frame in burst {
            p.recycle(frame);
        }
        let pooled: Vec<*const u8> = POOL.with_borrow(|pool| pool.iter().map(|s| s.as_ptr()).collect());
        assert_eq!(pooled.len(), POOL_KEPT);
        assert!(p.push(b"data: x\n\ndata: y\n\n", &mut out).is_ok());
        assert_eq!(out.iter().map(|f| f.data.as_str()).collect::<Vec<_>>(), ["x", "y"]);
        assert!(pooled.contains(&out[1].data.as_ptr()), "a burst frame did not take a pooled buffer");
        let mut other = SseParser::default();
        let mut theirs = Vec::new();
        assert!(other.push(b"data: another stream\n\n", &mut theirs).is_ok());
        assert_eq!(theirs[0].data, "another stream");
        assert!(pooled.contains(&theirs[0].data.as_ptr()), "a new stream's first frame did not take a pooled buffer");

        // A buffer the pool could not supply has room for the backend's usual events.
        POOL.with_borrow_mut(Vec::clear);
        assert!(p.push(b"data: fresh\n\n", &mut out).is_ok());
        assert!(out.last().is_some_and(|f| f.data == "fresh" && f.data.capacity() >= FRESH));

        // A large payload is freed, not kept.
        let before = POOL.with_borrow(Vec::len);
        p.recycle(SseFrame { event: None, data: "z".repeat(MAX_RECYCLED + 1) });
        assert_eq!(POOL.with_borrow(Vec::len), before);
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
