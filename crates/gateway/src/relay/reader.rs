//! Reading the upstream answer (SSE bytes, or the WebSocket's events one JSON per piece) as a sequence of (frame,
//! event), with bounded waits: each wait ends at a deadline the caller sets, however many bytes (comments, events
//! nobody reads) arrive meanwhile.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dialects::failure::{Refusal, Stage};
use dialects::sse::{SseFrame, SseParser};
use dialects::{Event, UpstreamFailure};
use tracing::debug;

use crate::relay::exchange;
use crate::upstream::{BodyStream, IntoFailure, Plain, TransportError, UpstreamResponse};

/// An upstream request whose response headers had not arrived when the client's status line had to go out
/// (the peek window, see `exchange::open`): the response body waits for them, sending keepalives meanwhile.
/// With the status line sent there is no failover, no refresh after a 401 and no quota reading from these
/// headers: an error answer or the header deadline ends the stream with the dialect's in-stream error.
pub struct LateHeaders {
    response: Pin<Box<dyn Future<Output = Result<UpstreamResponse, TransportError>> + Send>>,
    /// When the attempt's header deadline passes (`upstream_header_timeout_secs`).
    deadline: Instant,
    header_timeout: Duration,
    error_body_timeout: Duration,
    /// An error answer's body being read (bounded by `error_body_timeout`, no longer by the header deadline),
    /// then classified.
    error: Option<Pin<Box<dyn Future<Output = UpstreamFailure> + Send>>>,
    /// The timer of the waits for the headers (made at the first, moved to each wait's deadline).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl LateHeaders {
    pub fn new(
        response: Pin<Box<dyn Future<Output = Result<UpstreamResponse, TransportError>> + Send>>,
        deadline: Instant,
        header_timeout: Duration,
        error_body_timeout: Duration,
    ) -> LateHeaders {
        LateHeaders { response, deadline, header_timeout, error_body_timeout, error: None, timer: None }
    }
}

/// One step of reading.
pub enum Read {
    /// A frame; [`EventReader::event`] parses it.
    Frame(SseFrame),
    /// Nothing arrived within the wait.
    Idle,
    /// The body ended cleanly (whether or not a terminal event came).
    End,
    /// The connection failed, or the answer could not be read (boxed: rare, and every read carries the room).
    Error(Box<UpstreamFailure>),
}

/// Upstream events of a type the gateway does not know ([`Event::Unknown`]), since start: shown in
/// `/admin/status`, so a new event type the backend starts sending is noticed instead of skipped in silence.
/// Counted once per frame, whether a translated dialect skips it or the passthrough forwards it (a passthrough's
/// `*.delta` frames are forwarded unparsed and not counted). Relaxed: a statistic, nothing is ordered by it.
static UNKNOWN_EVENTS: AtomicU64 = AtomicU64::new(0);

/// See [`UNKNOWN_EVENTS`].
pub fn unknown_events() -> u64 {
    UNKNOWN_EVENTS.load(Ordering::Relaxed)
}

/// Received bytes are parsed about this much at a time, ending at a line break (see [`EventReader::buffered`]).
const PARSE_PIECE: usize = 2048;

pub struct EventReader {
    body: BodyStream,
    /// Received; the bytes from `parsed` on are not parsed yet.
    pending: Bytes,
    /// How much of `pending` the parser has had. An offset rather than `Bytes::split_to`: splitting a buffer
    /// made from a vector (every HTTP/1.1 read) first promotes it to a shared one, an allocation and atomic
    /// reference counting per read that the parser, which copies what it keeps, has no use for.
    parsed: usize,
    parser: SseParser,
    frames: VecDeque<SseFrame>,
    eof: bool,
    /// The encoder forwards frames as they are (Responses passthrough): a frame that cannot be parsed is passed
    /// on, since the client then sees exactly what the upstream sent. Translated dialects would lose its content
    /// silently, so for them it is an error.
    forwards_raw: bool,
    /// Set while the response headers are still awaited (boxed: rare, and every stream carries the field).
    late: Option<Box<LateHeaders>>,
    /// An unknown event type was logged for this stream: one debug line per stream, not one per event.
    unknown_logged: bool,
    /// The timer of the waits, made at the first real wait and kept: a wait whose deadline moved later (progress
    /// moves it with every event) leaves the timer where it was, and when it fires early it is set to the
    /// deadline then. So a stream pays one timer registration per keepalive period, not one per event (each wait
    /// made its own `sleep_until` before: a timer-wheel insert and removal per event of a paced stream).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl EventReader {
    pub fn new(body: BodyStream) -> EventReader {
        EventReader {
            body,
            pending: Bytes::new(),
            parsed: 0,
            parser: SseParser::default(),
            frames: VecDeque::new(),
            eof: false,
            forwards_raw: false,
            late: None,
            unknown_logged: false,
            timer: None,
        }
    }

    /// A reader whose response headers are still on their way.
    pub fn late(late: Box<LateHeaders>) -> EventReader {
        // An empty stream until the headers arrive (a boxed zero-sized value: no allocation).
        let mut reader = EventReader::new(Box::pin(Plain::new(futures_util::stream::empty())));
        reader.late = Some(late);
        reader
    }

    /// See [`EventReader::forwards_raw`].
    pub fn set_forwards_raw(&mut self, raw: bool) {
        self.forwards_raw = raw;
    }

    /// Whether an event is progress for the idle timeout: anything the gateway reads, the deltas a passthrough
    /// forwards unparsed, and the backend's own `keepalive` events. Those are what the real backend sends while a
    /// model reasons for minutes without output (spec/codex-upstream.md), and the official client counts them as
    /// activity: not counting them would cut long reasoning at `upstream_idle_timeout_secs`. SSE comments (they
    /// never become frames), `in_progress` and event types nobody reads are not progress, so an upstream that
    /// trickles them cannot hold a stream open forever. Checked only for ignored and unknown events (a string
    /// comparison).
    pub fn is_progress(&self, frame: &SseFrame, event: &Event) -> bool {
        !matches!(event, Event::Ignored | Event::Unknown { .. })
            || match frame.event.as_deref() {
                Some(name) => name == "keepalive",
                None => frame.data.starts_with(r#"{"type":"keepalive""#),
            }
    }

    /// Put a frame back at the front (used after peeking before the response headers are sent): [`EventReader::event`]
    /// parses it again when it comes.
    pub fn unread(&mut self, frame: SseFrame) {
        self.frames.push_front(frame);
    }

    /// The next frame, waiting at most `wait` for it.
    pub async fn next(&mut self, wait: Duration) -> Read {
        self.next_until(Instant::now() + wait).await
    }

    /// The next frame, or [`Read::Idle`] once `until` passes. One timer for the whole wait: bytes that make no
    /// frame (SSE comments) do not restart it.
    pub async fn next_until(&mut self, until: Instant) -> Read {
        std::future::poll_fn(|cx| self.poll_next_until(cx, until)).await
    }

    /// [`EventReader::next_until`] as a poll: what the streaming body calls (server-side, every chunk is a poll of
    /// the body, and an async wait there cost a state machine and a second box around the pump).
    pub fn poll_next_until(&mut self, cx: &mut Context<'_>, until: Instant) -> Poll<Read> {
        if self.late.is_some() {
            match self.poll_headers(cx, until) {
                Poll::Ready(Some(read)) => return Poll::Ready(read),
                Poll::Ready(None) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        if let Some(read) = self.buffered() {
            return Poll::Ready(read);
        }
        // Only a deadline moved earlier needs the timer moved: a later one is checked when it fires. The first
        // wait makes the timer (`poll_wait`).
        if let Some(timer) = &mut self.timer
            && timer.deadline() > until.into()
        {
            timer.as_mut().reset(until.into());
        }
        self.poll_wait(cx, until)
    }

    /// One poll of a wait: the body first (a frame that is there wins over a deadline that passed), then the
    /// timer; a timer that fires before `until` (the deadline moved later since it was set) is moved to it.
    fn poll_wait(&mut self, cx: &mut Context<'_>, until: Instant) -> Poll<Read> {
        loop {
            if let Poll::Ready(item) = self.body.as_mut().poll_next(cx) {
                if let Some(read) = self.on_bytes(item) {
                    return Poll::Ready(read);
                }
                if let Some(read) = self.buffered() {
                    return Poll::Ready(read);
                }
                continue;
            }
            let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until.into())));
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= until {
                return Poll::Ready(Read::Idle);
            }
            timer.as_mut().reset(until.into());
        }
    }

    /// Wait (until `until` at most) for late response headers; `None` once the body can be read. An error
    /// answer's body is read within its own bound, the header deadline no longer applies to it.
    fn poll_headers(&mut self, cx: &mut Context<'_>, until: Instant) -> Poll<Option<Read>> {
        let Some(late) = self.late.as_mut() else { return Poll::Ready(None) };
        if late.error.is_none() {
            match late.response.as_mut().poll(cx) {
                Poll::Ready(Ok(response)) if response.status.is_success() => {
                    self.late = None;
                    self.body = response.body;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(response)) => {
                    late.error = Some(Box::pin(exchange::error_answer(response, late.error_body_timeout)));
                }
                Poll::Ready(Err(e)) => return self.late_failed(e.failure(Stage::Request)),
                Poll::Pending => {}
            }
        }
        if let Some(error) = &mut late.error
            && let Poll::Ready(failure) = error.as_mut().poll(cx)
        {
            return self.late_failed(failure);
        }
        // Still waiting: for the headers until the header deadline, for an error body until its own bound.
        let stop = if late.error.is_some() { until } else { until.min(late.deadline) };
        let timer = late.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(stop.into())));
        if timer.deadline() != stop.into() {
            timer.as_mut().reset(stop.into());
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if late.error.is_some() || Instant::now() < late.deadline {
            return Poll::Ready(Some(Read::Idle));
        }
        let limit = late.header_timeout;
        self.late_failed(UpstreamFailure::HeaderTimeout { limit })
    }

    /// The late answer failed: the stream ends with it.
    fn late_failed(&mut self, failure: UpstreamFailure) -> Poll<Option<Read>> {
        self.late = None;
        Poll::Ready(Some(Read::Error(Box::new(failure))))
    }

    /// The next frame only if it can be had without waiting (already parsed, bytes already received, or bytes
    /// the body has ready). Lets the pump put everything that is ready into one write instead of one write per
    /// event. `None`: nothing more without waiting (or the response headers are still awaited).
    pub fn next_ready(&mut self, cx: &mut Context<'_>) -> Option<Read> {
        if self.late.is_some() {
            return None;
        }
        // Bounded: each turn either returns or consumes one ready chunk of the body.
        for _ in 0..64 {
            if let Some(read) = self.buffered() {
                return Some(read);
            }
            match self.body.as_mut().poll_next(cx) {
                Poll::Ready(item) => {
                    if let Some(read) = self.on_bytes(item) {
                        return Some(read);
                    }
                }
                Poll::Pending => return None,
            }
        }
        None
    }

    /// Whether a frame that is not ready now may be once this task has yielded, with no new I/O: the body's
    /// pieces are handed over by another task one at a time (HTTP/1.1, `Body::handed_over_one_at_a_time`).
    pub fn more_after_a_yield(&self) -> bool {
        self.late.is_none() && !self.eof && self.body.handed_over_one_at_a_time()
    }

    /// A frame already parsed, or the end once the body is over.
    ///
    /// Received bytes are parsed a piece at a time, as frames are asked for, not a whole read at once: the
    /// upstream's first read often holds dozens of events, and only the first few stand between the request and
    /// its first byte (~10 us less time to first byte at c=1). It also keeps few parsed frames per stream.
    fn buffered(&mut self) -> Option<Read> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Some(Read::Frame(frame));
            }
            let Some(unparsed) = self.pending.get(self.parsed..).filter(|rest| !rest.is_empty()) else {
                // Everything received was parsed: the buffer goes now, not at the next read.
                self.pending = Bytes::new();
                self.parsed = 0;
                return self.eof.then_some(Read::End);
            };
            let cut = match unparsed.get(PARSE_PIECE..).and_then(|rest| memchr::memchr(b'\n', rest)) {
                Some(i) => PARSE_PIECE + i + 1,
                None => unparsed.len(),
            };
            self.parsed += cut;
            if let Err(e) = self.parser.push(&unparsed[..cut], &mut self.frames) {
                self.pending = Bytes::new();
                self.parsed = 0;
                return Some(Read::Error(Box::new(UpstreamFailure::MalformedStream(e))));
            }
        }
    }

    /// The event a frame carries. It borrows the frame's payload, so a delta costs no allocation; parsing happens
    /// here, not when the frame is read, for that reason. An unknown type is counted ([`unknown_events`]) and
    /// logged at debug once per stream, then handed on (`Event::Unknown`: translated dialects skip it, the
    /// passthrough forwards it). A frame that cannot be parsed is a failure of the stream, built typed here
    /// (`Event::Failed` with `Reason::MalformedEvent`: its text would otherwise be lost without a word), except for
    /// encoders that forward frames raw.
    pub fn event<'f>(&mut self, frame: &'f SseFrame) -> Event<'f> {
        let event = match Event::parse(&frame.data) {
            Ok(Event::Unknown { kind }) => {
                self.on_unknown(&kind);
                Event::Unknown { kind }
            }
            Ok(e) => e,
            Err(e) if self.forwards_raw => {
                debug!("forwarding an upstream event the gateway cannot read: {e}");
                Event::Ignored
            }
            Err(e) => Event::Failed(Box::new(Refusal::malformed_event(format!(
                "The upstream sent an event the gateway cannot read ({e}); the answer is incomplete."
            )))),
        };
        if event.is_terminal() {
            // The answer is complete: the body may let its stream end by itself once dropped (issue 58).
            self.body.as_mut().answered();
        }
        event
    }

    #[cold]
    fn on_unknown(&mut self, kind: &str) {
        UNKNOWN_EVENTS.fetch_add(1, Ordering::Relaxed);
        if !self.unknown_logged {
            self.unknown_logged = true;
            debug!(
                event_type = kind,
                "the upstream sent an event type the gateway does not know (counted in /admin/status)"
            );
        }
    }

    /// Take what the body yielded; `Some` for an error (frames and the end are reported by `buffered`).
    fn on_bytes(&mut self, item: Option<Result<Bytes, TransportError>>) -> Option<Read> {
        match item {
            // One event's JSON (the upstream WebSocket): a frame as it is, no SSE lines to parse.
            Some(Ok(bytes)) if self.body.pieces_are_events() => {
                let data = String::from_utf8(Vec::from(bytes))
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                self.frames.push_back(SseFrame::of_event(data));
                None
            }
            Some(Ok(bytes)) => {
                // Only asked for once everything received before was parsed (`buffered` came back empty).
                self.pending = bytes;
                self.parsed = 0;
                None
            }
            Some(Err(e)) => Some(Read::Error(Box::new(e.failure(Stage::Body)))),
            None => {
                self.eof = true;
                self.parser.finish(&mut self.frames);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialects::failure::Reason;

    fn delta(i: usize) -> String {
        format!(
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"item_id\":\"m\",\"delta\":\"{i} \"}}\n\n"
        )
    }

    fn empty_reader() -> EventReader {
        EventReader::new(Box::pin(crate::upstream::Plain::new(futures_util::stream::iter(Vec::new()))))
    }

    fn frame(name: &'static str, data: &str) -> SseFrame {
        SseFrame { event: Some(name.into()), data: data.to_string() }
    }

    /// A frame put back after peeking comes out first and is parsed when asked; one that cannot be parsed is a
    /// failure of the stream, unless the encoder forwards frames as they are.
    #[tokio::test]
    async fn put_back_frames_come_out_first() {
        let mut reader = empty_reader();
        reader.unread(frame("response.created", r#"{"type":"response.created","response":{"id":"resp_1"}}"#));
        reader.unread(frame("response.created", "not json"));
        let Read::Frame(back) = reader.next(Duration::from_secs(1)).await else { panic!("no frame") };
        assert!(
            matches!(reader.event(&back), Event::Failed(r) if r.reason == Reason::MalformedEvent && r.code.is_none())
        );
        reader.set_forwards_raw(true);
        assert_eq!(reader.event(&back), Event::Ignored);
        let Read::Frame(next) = reader.next(Duration::from_secs(1)).await else { panic!("no frame") };
        assert!(matches!(reader.event(&next), Event::Created { .. }));
    }

    /// Waits share one timer: a wait whose deadline moved later (progress does that with every event) leaves it
    /// where it was instead of re-arming it, and a timer that fires before the wait's deadline is moved then, so
    /// the wait still ends at its own deadline, not earlier.
    #[tokio::test]
    async fn waits_share_one_timer_moved_only_when_it_fires_early() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, TransportError>>(4);
        let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
        let mut reader = EventReader::new(Box::pin(Plain::new(body)));
        let start = Instant::now();
        let first = start + Duration::from_millis(300);
        tokio::spawn({
            let tx = tx.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = tx.send(Ok(Bytes::from(delta(1)))).await;
            }
        });
        assert!(matches!(reader.next_until(first).await, Read::Frame(_)));
        assert!(std::future::poll_fn(|cx| Poll::Ready(reader.next_ready(cx))).await.is_none(), "the body is empty");
        let armed = reader.timer.as_ref().map(|t| t.deadline().into_std());
        assert_eq!(armed, Some(first));
        // A later deadline: the timer stays at the first one while the wait goes on.
        let later = start + Duration::from_millis(600);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let _ = tx.send(Ok(Bytes::from(delta(2)))).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(tx);
        });
        assert!(matches!(reader.next_until(later).await, Read::Frame(_)));
        assert_eq!(reader.timer.as_ref().map(|t| t.deadline().into_std()), Some(first), "re-armed per wait");
        // Nothing more comes: the wait ends at its own deadline, past the timer's first firing.
        assert!(matches!(reader.next_until(later).await, Read::Idle));
        assert!(Instant::now() >= later, "ended {:?} early", later - Instant::now());
        assert!(Instant::now() < later + Duration::from_millis(300), "ended late");
    }

    /// A read parsed to its end is released before the next one comes, not kept until then.
    #[tokio::test]
    async fn parsed_reads_are_released() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, TransportError>>(4);
        let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
        let mut reader = EventReader::new(Box::pin(Plain::new(body)));
        let wait = Duration::from_secs(5);
        let _ = tx.send(Ok(Bytes::from(delta(1)))).await;
        let Read::Frame(first) = reader.next(wait).await else { panic!("no frame") };
        assert!(matches!(reader.event(&first), Event::TextDelta { .. }));
        assert!(std::future::poll_fn(|cx| Poll::Ready(reader.next_ready(cx))).await.is_none());
        assert!(reader.pending.is_empty() && reader.frames.is_empty(), "the parsed read is still held");
        let _ = tx.send(Ok(Bytes::from(delta(2)))).await;
        let Read::Frame(second) = reader.next(wait).await else { panic!("no frame") };
        assert!(matches!(reader.event(&second), Event::TextDelta { delta, .. } if delta == "2 "));
        drop(tx);
        assert!(matches!(reader.next(wait).await, Read::End));
    }

    /// A body whose pieces are events (the upstream WebSocket) gives one frame per piece, named by its `type`, with
    /// no SSE lines around them; a piece of several lines stays one event.
    #[tokio::test]
    async fn event_pieces_are_frames_as_they_are() {
        let pieces = [
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a"}"#,
            "{\n\"type\":\"response.output_text.delta\",\n\"item_id\":\"m\",\"delta\":\"b\"}",
        ];
        let body = futures_util::stream::iter(pieces.map(|p| Ok(Bytes::from(p))));
        let mut reader = EventReader::new(Box::pin(Plain::events(body)));
        let mut deltas = Vec::new();
        while let Read::Frame(frame) = reader.next(Duration::from_secs(5)).await {
            if deltas.is_empty() {
                assert_eq!(frame.event.as_deref(), Some("response.output_text.delta"));
            }
            match reader.event(&frame) {
                Event::TextDelta { delta, .. } => deltas.push(delta.to_string()),
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert_eq!(deltas, ["a", "b"]);
    }

    /// A large read is parsed a piece at a time as frames are asked for, and every frame still comes out whole
    /// and in order, also when a read ends in the middle of a line.
    #[tokio::test]
    async fn parses_large_reads_piece_by_piece() {
        let first: String = (0..100).map(delta).collect();
        let (tail_a, tail_b) = {
            let tail: String = (100..102).map(delta).collect();
            let (a, b) = tail.split_at(30);
            (a.to_string(), b.to_string())
        };
        let chunks = vec![Ok(Bytes::from(first)), Ok(Bytes::from(tail_a)), Ok(Bytes::from(tail_b))];
        let mut reader = EventReader::new(Box::pin(crate::upstream::Plain::new(futures_util::stream::iter(chunks))));
        let mut texts = Vec::new();
        loop {
            match reader.next(Duration::from_secs(5)).await {
                Read::Frame(frame) => {
                    if texts.is_empty() {
                        assert!(reader.frames.len() < 50, "{} frames parsed ahead", reader.frames.len());
                        assert!(reader.parsed < reader.pending.len());
                    }
                    match reader.event(&frame) {
                        Event::TextDelta { delta, .. } => texts.push(delta.to_string()),
                        other => panic!("unexpected event {other:?}"),
                    }
                }
                Read::End => break,
                Read::Idle => panic!("idle"),
                Read::Error(e) => panic!("{e}"),
            }
        }
        let expected: Vec<String> = (0..102).map(|i| format!("{i} ")).collect();
        assert_eq!(texts, expected);
    }
}
