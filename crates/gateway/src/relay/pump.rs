//! Driving a dialect encoder from the upstream stream: the streaming body (pull-based, so a client disconnect
//! drops the upstream connection at once), keepalives while upstream is silent, limits emulation, and the
//! non-streaming collection of a whole response. A failure after the hand-over (and the content filter's end) is
//! reported to the pool through the exchange, as one before it would have been: its risk signal is not lost.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dialects::assemble::Collected;
use dialects::encoder::StreamEncoder;
use dialects::failure::PolicyKind;
use dialects::limits::Limiter;
use dialects::responses::event::{IncompleteReason, Terminal};
use dialects::sse::SseFrame;
use dialects::{Event, GatewayError, OutputLimits, UpstreamFailure, Usage};
use hyper::body::Frame;
use tracing::debug;

use crate::metrics::streams::OpenStream;
use crate::record::Recorder;
use crate::relay::exchange::Exchange;
use crate::relay::reader::Read;
use crate::tokens;

/// Stop adding ready events to one outgoing chunk beyond this size (bounds per-stream memory).
const MAX_CHUNK: usize = 32 * 1024;
/// Room reserved for a chunk once its first event arrived: a few frames; bursts grow it.
const FIRST_CHUNK: usize = 4096;

/// Which limits the pump applies before the encoder sees events.
fn limiter_for(limits: OutputLimits, input_estimate: u64) -> Option<Limiter> {
    let l = Limiter::new(limits, Box::new(tokens::count), input_estimate);
    l.is_active().then_some(l)
}

/// A chunk held across a yield (see `Pump::poll_chunk`).
#[derive(Default)]
struct Held {
    out: Vec<u8>,
    /// When the chunk's first progress arrived.
    progress_at: Option<Instant>,
    /// Polls in a row that brought nothing since the last event: the first may be the connection's own poll again
    /// before any other task ran (hyper's HTTP/1.1 server polls a pending body twice when nothing is left to flush),
    /// so the chunk goes out at the second.
    empty_polls: u8,
}

/// The streaming response body: a dialect encoder fed from the upstream's events (see `poll_chunk`).
struct Pump<E: StreamEncoder> {
    /// Yield once before the next chunk, so the connection writes the first chunk it was just given (see
    /// `poll_chunk`).
    yield_first: bool,
    done: bool,
    /// Whether the first chunk of the body went out (see `poll_chunk`).
    started: bool,
    /// A chunk begun, held across a yield while the upstream's connection hands over what it already read (see
    /// `poll_chunk`).
    held: Option<Held>,
    /// When the client is due a keepalive: `keepalive` after the last output, on the client's clock.
    keepalive_due: Instant,
    /// When the stream has made no progress for `idle_timeout` (only meaningful events move it, see
    /// `EventReader::is_progress`).
    idle_deadline: Instant,
    keepalive: Duration,
    idle_timeout: Duration,
    /// Boxed: rare (only requests with output limits to emulate), so a stream without them does not carry its room.
    limiter: Option<Box<Limiter>>,
    encoder: E,
    ex: Exchange,
    usage: Option<Usage>,
    /// The request's record: completed when the stream ends, or (dropped with the body) when the client leaves.
    record: Option<Recorder>,
    _open: OpenStream,
}

impl<E: StreamEncoder> Pump<E> {
    /// The next piece of the response body: waits for the first event, then adds every event that is already
    /// there without waiting (one write for a burst instead of one per event; no added latency).
    ///
    /// One exception, the first byte: the first chunk ends with the first event that produced output, and the
    /// pump yields once, so the connection (hyper's, which keeps polling a ready body and writes only once it is
    /// pending) writes it before the rest of an upstream burst is translated. On the default path the burst
    /// arrives in one read after the first events (docs/performance.md, "Early first chunk").
    ///
    /// Where another task hands the upstream's pieces over one at a time (HTTP/1.1: hyper's connection passes one
    /// chunk and decodes the next only once it was taken), "already there" needs that task to run: while events
    /// keep arriving, the pump yields between them, holding its chunk, instead of handing each one over. A yield
    /// is not a wait: it ends as soon as the tasks queued before it ran, and when that brought nothing the chunk
    /// goes out (an event that came alone is handed over one scheduler turn later, with no timer; `Held`).
    ///
    /// A poll, not an async fn: nothing lives across a pending poll but the pump itself (the chunk is begun only
    /// once an event arrived, and held only across a yield), so the body is the pump, polled in place, with no
    /// state machine or second box.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.yield_first {
            // Pending now (the connection writes what it was given), polled again at once.
            self.yield_first = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        // Allocated only once something arrived, and never held across a wait: an idle stream (waiting on a slow
        // upstream) holds no buffer. When this chunk's first progress arrived: one clock read per chunk, not per
        // event (the rest of a burst arrived with it).
        let Held { mut out, mut progress_at, empty_polls } = self.held.take().unwrap_or_default();
        // Whether an event arrived in this poll: only then may one more yield bring another.
        let mut arrived = false;
        while !self.done {
            let read = if out.is_empty() {
                let Poll::Ready(read) = self.ex.reader.poll_next_until(cx, self.keepalive_due.min(self.idle_deadline))
                else {
                    return Poll::Pending;
                };
                if out.capacity() == 0 {
                    out.reserve_exact(FIRST_CHUNK);
                }
                read
            } else if out.len() >= MAX_CHUNK {
                break;
            } else {
                match self.ex.reader.next_ready(cx) {
                    Some(read) => read,
                    None if (arrived || empty_polls == 0) && self.ex.reader.more_after_a_yield() => {
                        let empty_polls = if arrived { 0 } else { empty_polls + 1 };
                        self.held = Some(Held { out, progress_at, empty_polls });
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    None => break,
                }
            };
            arrived = true;
            self.on_read(read, &mut out, &mut progress_at);
            if self.encoder.is_finished() {
                self.done = true;
            }
            if !self.started && !out.is_empty() && !self.done {
                self.yield_first = true;
                break;
            }
        }
        self.hand_over(out, progress_at)
    }

    /// One read of the upstream stream into `out`: an event translated (the idle deadline moved by the chunk's
    /// first progress, noted in `progress_at`), a deadline, the end, or a failure.
    #[inline]
    fn on_read(&mut self, read: Read, out: &mut Vec<u8>, progress_at: &mut Option<Instant>) {
        match read {
            Read::Frame(frame) => {
                let event = self.ex.reader.event(&frame);
                let progress = self.ex.reader.is_progress(&frame, &event);
                if progress && progress_at.is_none() {
                    let now = Instant::now();
                    self.idle_deadline = now + self.idle_timeout;
                    *progress_at = Some(now);
                }
                self.feed(&frame, event, out);
                // Frames that are not progress (events nobody reads) must not hold off the deadlines: checked
                // when such a frame ends a wait, never re-armed by it.
                if !progress && progress_at.is_none() && !self.done {
                    self.on_deadline(out);
                }
            }
            Read::Idle => self.on_deadline(out),
            Read::End => {
                if !self.encoder.is_finished() {
                    self.fail(UpstreamFailure::StreamCut, out);
                }
                self.done = true;
            }
            Read::Error(failure) => self.fail(*failure, out),
        }
    }

    /// The chunk read, handed to the connection (`None`: the body ends); the keepalive re-armed from its progress,
    /// the record told of the first byte and, at the end, finished.
    #[inline]
    fn hand_over(&mut self, mut out: Vec<u8>, progress_at: Option<Instant>) -> Poll<Option<Bytes>> {
        if let Some(at) = progress_at
            && !out.is_empty()
        {
            self.keepalive_due = at + self.keepalive;
        }
        if !self.started && !out.is_empty() {
            self.started = true;
            if let Some(record) = &mut self.record {
                record.first_byte();
            }
        }
        if self.done
            && let Some(mut record) = self.record.take()
        {
            record.usage(self.usage.unwrap_or_default());
            record.finish(200);
        }
        if out.is_empty() {
            return Poll::Ready(None);
        }
        // Handed over at its length, shrunk in place: `Bytes` keeps the vector's whole capacity alive until the
        // connection has written it, and with thousands of streams answered in one burst those waits overlap.
        out.shrink_to_fit();
        Poll::Ready(Some(Bytes::from(out)))
    }

    fn feed(&mut self, frame: &SseFrame, event: Event, out: &mut Vec<u8>) {
        if let Event::Finished { usage: Some(u), .. } = &event {
            self.usage = Some(*u);
        }
        // The encoder words a failure for the client; the record keeps what it was, the pool what it says.
        if let Some(record) = &mut self.record {
            note_event(&event, &self.ex, record);
            if let Event::Failed(refusal) = &event {
                record.error(&refusal.to_error());
            }
        }
        match &mut self.limiter {
            Some(limiter) => {
                let encoder = &mut self.encoder;
                let mut cut_usage = None;
                limiter.apply(event, &mut |e| {
                    if let Event::Finished { usage: Some(u), .. } = &e {
                        cut_usage = Some(*u);
                    }
                    encoder.on_event(frame, &e, out)
                });
                if cut_usage.is_some() {
                    self.usage = cut_usage;
                }
                if limiter.is_done() {
                    // The gateway ended the answer itself: stop reading (drops the upstream connection).
                    self.done = true;
                }
            }
            None => self.encoder.on_event(frame, &event, out),
        }
    }

    /// A wait ended at a deadline (or a frame that is not progress came after one): the idle timeout if the
    /// stream made no progress for that long, else a keepalive if one is due.
    fn on_deadline(&mut self, out: &mut Vec<u8>) {
        let now = Instant::now();
        if now >= self.idle_deadline {
            self.fail(UpstreamFailure::Idle, out);
        } else if now >= self.keepalive_due {
            self.encoder.keepalive(out);
            self.keepalive_due = now + self.keepalive;
        }
    }

    fn fail(&mut self, failure: UpstreamFailure, out: &mut Vec<u8>) {
        let err = failure.to_error();
        debug!(request_id = %self.ex.request_id, error = %err, "stream ended with an error");
        self.ex.report_failure(&failure);
        if let Some(record) = &mut self.record {
            record.upstream_failure(&failure);
            record.error(&err);
        }
        self.encoder.on_error(&err, out);
        self.done = true;
    }
}

/// The streaming response body for `encoder`.
pub fn stream_body<E: StreamEncoder>(
    mut ex: Exchange,
    encoder: E,
    limits: OutputLimits,
    keepalive: Duration,
    idle_timeout: Duration,
    record: Recorder,
) -> axum::body::Body {
    let limiter = limiter_for(limits, ex.input_estimate).map(Box::new);
    ex.reader.set_forwards_raw(encoder.forwards_frames());
    // The client got its status line at most a keepalive ago (the peek window), so the next one is due then.
    let now = Instant::now();
    let pump = Pump {
        ex,
        encoder,
        limiter,
        keepalive,
        idle_timeout,
        idle_deadline: now + idle_timeout,
        keepalive_due: now + keepalive,
        done: false,
        usage: None,
        record: Some(record),
        started: false,
        held: None,
        yield_first: false,
        _open: OpenStream::open(),
    };
    // The pump is the body: boxed once, inside axum's body, and polled in place.
    axum::body::Body::new(pump)
}

/// The pump holds nothing that is pinned in place (its futures are boxed), so it may move between polls.
impl<E: StreamEncoder> Unpin for Pump<E> {}

impl<E: StreamEncoder> hyper::body::Body for Pump<E> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut().poll_chunk(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Read the whole response into a [`Collected`] (non-streaming clients). An upstream failure is noted in
/// `record` before it becomes the client's error.
///
/// Boxed, like [`drain_raw`]: a handler's future is as large as its largest branch, and the streaming branch,
/// the common one, should not carry room for this one while its request waits for the upstream.
pub async fn collect(
    ex: Exchange,
    limits: OutputLimits,
    idle_timeout: Duration,
    record: &mut Recorder,
) -> Result<Collected, GatewayError> {
    Box::pin(collect_unboxed(ex, limits, idle_timeout, record)).await
}

async fn collect_unboxed(
    mut ex: Exchange,
    limits: OutputLimits,
    idle_timeout: Duration,
    record: &mut Recorder,
) -> Result<Collected, GatewayError> {
    let mut collected = Collected::new();
    let mut limiter = limiter_for(limits, ex.input_estimate);
    read_events(&mut ex, idle_timeout, record, |_, event| {
        match &mut limiter {
            Some(l) => l.apply(event, &mut |e| collected.on_event(e)),
            None => collected.on_event(event),
        }
        match collected.error.take() {
            Some(e) => Some(Err(e)),
            None => collected.finish.is_some().then_some(Ok(())),
        }
    })
    .await?;
    Ok(collected)
}

/// Read the whole response, handing each raw payload to `f` (Responses passthrough); returns the usage the
/// upstream reported. Stops after a terminal event.
pub async fn drain_raw(
    ex: Exchange,
    idle_timeout: Duration,
    record: &mut Recorder,
    f: impl FnMut(serde_json::Value) + Send,
) -> Result<Usage, GatewayError> {
    Box::pin(drain_raw_unboxed(ex, idle_timeout, record, f)).await
}

async fn drain_raw_unboxed(
    mut ex: Exchange,
    idle_timeout: Duration,
    record: &mut Recorder,
    mut f: impl FnMut(serde_json::Value),
) -> Result<Usage, GatewayError> {
    // The Responses passthrough: frames are handed on as they are (see `EventReader::forwards_raw`).
    ex.reader.set_forwards_raw(true);
    read_events(&mut ex, idle_timeout, record, |frame, event| {
        if let Ok(v) = serde_json::from_str(&frame.data) {
            f(v);
        }
        match &event {
            Event::Finished { usage, .. } => Some(Ok(usage.unwrap_or_default())),
            _ if event.is_terminal() => Some(Ok(Usage::default())),
            _ => None,
        }
    })
    .await
}

/// Read the frames of a non-streaming answer, each event noted (`note_event`), until `step` says it is done
/// (`Some`); the end of the body, a failure or a silence past the idle timeout (only progress moves it: see
/// `EventReader::is_progress`) is the client's error (`failed`).
async fn read_events<T>(
    ex: &mut Exchange,
    idle_timeout: Duration,
    record: &mut Recorder,
    mut step: impl FnMut(&SseFrame, Event<'_>) -> Option<Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    let mut deadline = Instant::now() + idle_timeout;
    let failure = loop {
        let frame = match ex.reader.next_until(deadline).await {
            Read::Frame(frame) => frame,
            Read::Idle => break UpstreamFailure::Idle,
            Read::End => break UpstreamFailure::StreamCut,
            Read::Error(failure) => break *failure,
        };
        let event = ex.reader.event(&frame);
        note_event(&event, ex, record);
        let now = Instant::now();
        if ex.reader.is_progress(&frame, &event) {
            deadline = now + idle_timeout;
        } else if now >= deadline {
            break UpstreamFailure::Idle;
        }
        if let Some(done) = step(&frame, event) {
            return done;
        }
    };
    Err(failed(failure, ex, record))
}

/// What an event of the answer says beyond its translation: a failure event is kept in the record (the renderers
/// word it for the client) and reported to the pool; the content filter's end after output is a policy refusal
/// for the record and the pool, while the client gets its dialect's finish for it as before.
fn note_event(event: &Event, ex: &Exchange, record: &mut Recorder) {
    match event {
        Event::Failed(refusal) => {
            let failure = UpstreamFailure::Refused((**refusal).clone());
            ex.report_failure(&failure);
            record.upstream_failure(&failure);
        }
        Event::Finished { terminal: Terminal::Incomplete { reason: IncompleteReason::ContentFilter }, .. } => {
            ex.report_refusal(PolicyKind::ContentFilter);
            record.refused(PolicyKind::ContentFilter);
        }
        Event::Finished { .. }
        | Event::Created { .. }
        | Event::ItemAdded { .. }
        | Event::TextDelta { .. }
        | Event::RefusalDelta { .. }
        | Event::ReasoningSummaryDelta { .. }
        | Event::ReasoningSummaryPartAdded { .. }
        | Event::FunctionArgsDelta { .. }
        | Event::ItemDone { .. }
        | Event::Ignored
        | Event::Unknown { .. } => {}
    }
}

/// The client's error for `failure`, noted in the record and reported to the pool.
fn failed(failure: UpstreamFailure, ex: &Exchange, record: &mut Recorder) -> GatewayError {
    ex.report_failure(&failure);
    record.upstream_failure(&failure);
    failure.to_error()
}
