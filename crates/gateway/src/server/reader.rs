//! Reading the upstream SSE body as a sequence of (frame, event), with bounded waits.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use dialects::sse::{SseFrame, SseParser};
use dialects::{ErrorKind, Event, GatewayError};
use futures_util::{FutureExt, Stream, StreamExt};
use tracing::debug;

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// One step of reading.
pub enum Read {
    /// A frame; [`EventReader::event`] parses it.
    Frame(SseFrame),
    /// Nothing arrived within the wait.
    Idle,
    /// The body ended cleanly (whether or not a terminal event came).
    End,
    /// The connection failed.
    Error(GatewayError),
}

pub struct EventReader {
    body: ByteStream,
    parser: SseParser,
    frames: VecDeque<SseFrame>,
    scratch: Vec<SseFrame>,
    eof: bool,
    /// Leave `*.delta` frames that carry an `event:` name unparsed (`Event::Ignored`): a passthrough forwards
    /// the raw frame and needs only the events that end or shape the stream.
    skip_deltas: bool,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> EventReader {
        EventReader {
            body: Box::pin(response.bytes_stream()),
            parser: SseParser::default(),
            frames: VecDeque::new(),
            scratch: Vec::new(),
            eof: false,
            skip_deltas: false,
        }
    }

    /// See [`EventReader::skip_deltas`]: for encoders that forward frames as they are.
    pub fn set_skip_deltas(&mut self, skip: bool) {
        self.skip_deltas = skip;
    }

    /// Put a frame back at the front (used after peeking before the response headers are sent).
    pub fn unread(&mut self, frame: SseFrame) {
        self.frames.push_front(frame);
    }

    /// The next frame, waiting at most `wait` for bytes.
    pub async fn next(&mut self, wait: Duration) -> Read {
        loop {
            if let Some(read) = self.buffered() {
                return read;
            }
            match tokio::time::timeout(wait, self.body.next()).await {
                Err(_) => return Read::Idle,
                Ok(item) => {
                    if let Some(read) = self.on_bytes(item) {
                        return read;
                    }
                }
            }
        }
    }

    /// The next frame only if it can be had without waiting (already parsed, or bytes already received).
    /// Lets the pump put everything that is ready into one write instead of one write per event.
    pub fn next_ready(&mut self) -> Option<Read> {
        // Bounded: each turn either returns or consumes one ready chunk of the body.
        for _ in 0..64 {
            if let Some(read) = self.buffered() {
                return Some(read);
            }
            let item = self.body.next().now_or_never()?;
            if let Some(read) = self.on_bytes(item) {
                return Some(read);
            }
        }
        None
    }

    /// A frame already parsed, or the end once the body is over.
    fn buffered(&mut self) -> Option<Read> {
        if let Some(frame) = self.frames.pop_front() {
            return Some(Read::Frame(frame));
        }
        self.eof.then_some(Read::End)
    }

    /// The event a frame carries (`Event::Ignored` when unknown or malformed). It borrows the frame's payload, so
    /// a delta costs no allocation; parsing happens here, not when the frame is read, for that reason.
    pub fn event<'f>(&self, frame: &'f SseFrame) -> Event<'f> {
        if self.skip_deltas && frame.event.as_deref().is_some_and(|n| n.ends_with(".delta")) {
            return Event::Ignored;
        }
        match Event::parse(&frame.data) {
            Ok(e) => e,
            Err(e) => {
                debug!("skipping an upstream event: {e}");
                Event::Ignored
            }
        }
    }

    /// Feed what the body yielded to the parser; `Some` for an error (the end is reported by `buffered`).
    fn on_bytes(&mut self, item: Option<reqwest::Result<Bytes>>) -> Option<Read> {
        match item {
            Some(Ok(bytes)) => {
                if let Err(e) = self.parser.push(&bytes, &mut self.scratch) {
                    return Some(Read::Error(GatewayError::new(ErrorKind::UpstreamUnavailable, e.to_string())));
                }
                self.frames.extend(self.scratch.drain(..));
                None
            }
            Some(Err(e)) => Some(Read::Error(GatewayError::new(
                ErrorKind::UpstreamUnavailable,
                format!("The upstream connection failed mid-response: {}", crate::upstream::transport_error_text(e)),
            ))),
            None => {
                self.eof = true;
                self.parser.finish(&mut self.scratch);
                self.frames.extend(self.scratch.drain(..));
                None
            }
        }
    }
}

/// The error for an upstream stream that ended without `response.completed` / `failed`.
pub fn cut_error() -> GatewayError {
    GatewayError::new(ErrorKind::UpstreamUnavailable, "The upstream stream ended before the response was complete.")
        .with_code("stream_cut")
}
