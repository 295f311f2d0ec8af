//! Reading the upstream SSE body as a sequence of (frame, event), with bounded waits.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use dialects::sse::{SseFrame, SseParser};
use dialects::{ErrorKind, Event, GatewayError};
use futures_util::{Stream, StreamExt};
use tracing::debug;

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// One step of reading.
pub enum Read {
    /// A frame and its parsed event (`Event::Ignored` when unknown or malformed).
    Frame(SseFrame, Event),
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
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> EventReader {
        EventReader {
            body: Box::pin(response.bytes_stream()),
            parser: SseParser::default(),
            frames: VecDeque::new(),
            scratch: Vec::new(),
            eof: false,
        }
    }

    /// Put a frame back at the front (used after peeking before the response headers are sent).
    pub fn unread(&mut self, frame: SseFrame) {
        self.frames.push_front(frame);
    }

    /// The next frame, waiting at most `wait` for bytes.
    pub async fn next(&mut self, wait: Duration) -> Read {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                let event = match Event::parse(&frame.data) {
                    Ok(e) => e,
                    Err(e) => {
                        debug!("skipping an upstream event: {e}");
                        Event::Ignored
                    }
                };
                return Read::Frame(frame, event);
            }
            if self.eof {
                return Read::End;
            }
            match tokio::time::timeout(wait, self.body.next()).await {
                Err(_) => return Read::Idle,
                Ok(Some(Ok(bytes))) => {
                    if let Err(e) = self.parser.push(&bytes, &mut self.scratch) {
                        return Read::Error(GatewayError::new(ErrorKind::UpstreamUnavailable, e.to_string()));
                    }
                    self.frames.extend(self.scratch.drain(..));
                }
                Ok(Some(Err(e))) => {
                    return Read::Error(GatewayError::new(
                        ErrorKind::UpstreamUnavailable,
                        format!("The upstream connection failed mid-response: {}", e.without_url()),
                    ));
                }
                Ok(None) => {
                    self.eof = true;
                    self.parser.finish(&mut self.scratch);
                    self.frames.extend(self.scratch.drain(..));
                }
            }
        }
    }
}

/// The error for an upstream stream that ended without `response.completed` / `failed`.
pub fn cut_error() -> GatewayError {
    GatewayError::new(ErrorKind::UpstreamUnavailable, "The upstream stream ended before the response was complete.")
        .with_code("stream_cut")
}
