//! One HTTP/2 connection's shared state: its streams, both directions' flow-control windows, the frames waiting
//! to be written, and what each frame the server sends does to them (RFC 9113 §5–§6). The driver
//! ([`super::driver`]) feeds it the frames it reads and writes out what it queues; requests and response bodies
//! ([`super::stream`]) open, read and close streams through it. Everything is under one lock, taken once per
//! read of the socket by the driver and once per burst of frames by a body. What each frame the server sends
//! does is in `receive`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Waker;

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::error::H2Error;
use super::frame::{self, MAX_WINDOW, Reason, flag, kind, setting};
use super::hpack;
use super::hpack_decoder;

mod receive;

/// What is shared between a connection's driver, its requests and its response bodies.
pub struct Shared {
    pub state: parking_lot::Mutex<State>,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited until its SETTINGS arrive), read by the pool
    /// without the lock.
    pub max_streams: AtomicUsize,
}

/// A stream's response head as the request waits for it.
pub enum Head2 {
    Waiting,
    Ready(StatusCode, HeaderMap),
    Taken,
}

/// How a stream's answer ended, if it did.
pub enum End {
    Open,
    /// END_STREAM arrived.
    Done,
    Failed(H2Error),
}

pub struct Stream {
    pub head: Head2,
    /// DATA payloads not yet taken by the body.
    pub data: VecDeque<Bytes>,
    pub end: End,
    /// The task waiting for this stream's head or data.
    pub waker: Option<Waker>,
    /// The request body still to send, and what the server lets this stream send.
    body: Bytes,
    send_window: i64,
    /// What the server may still send on this stream, and what the body took but this side has not given back.
    recv_window: i64,
    unreleased: i64,
    /// Open on the wire: it counts toward the server's stream limit until its END_STREAM or a reset.
    live: bool,
}

/// Requests waiting for a stream at the server's limit, in order, each by its ticket. A request dropped while
/// it waits leaves the queue; one dropped after it was woken passes its turn on ([`State::leave`]), so a freed
/// stream never goes unused while others wait.
#[derive(Default)]
pub struct Waiting {
    order: VecDeque<u64>,
    wakers: FxHashMap<u64, Waker>,
    next: u64,
}

impl Waiting {
    fn wait(&mut self, ticket: &mut Option<u64>, waker: &Waker) {
        let id = *ticket.get_or_insert_with(|| {
            self.next += 1;
            self.next
        });
        if let Some(known) = self.wakers.get_mut(&id) {
            known.clone_from(waker);
        } else {
            self.wakers.insert(id, waker.clone());
            self.order.push_back(id);
        }
    }

    fn wake_one(&mut self, wake: &mut Vec<Waker>) {
        while let Some(id) = self.order.pop_front() {
            if let Some(waker) = self.wakers.remove(&id) {
                wake.push(waker);
                return;
            }
        }
    }

    fn wake_all(&mut self, wake: &mut Vec<Waker>) {
        self.order.clear();
        wake.extend(self.wakers.drain().map(|(_, w)| w));
    }
}

/// A header block being collected from HEADERS and CONTINUATION frames.
struct Continuation {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
}

pub struct State {
    pub streams: FxHashMap<u32, Stream>,
    next_id: u32,
    /// Streams open on the wire, and requests waiting for one to close (at the server's limit).
    live: usize,
    pub waiting: Waiting,
    peer_initial_window: i64,
    peer_max_frame: usize,
    peer_max_streams: usize,
    /// Connection-level windows: what this side may send, what the server may send, what was taken and not given
    /// back yet.
    send_window: i64,
    recv_window: i64,
    recv_unreleased: i64,
    /// Streams whose body waits for window.
    blocked: VecDeque<u32>,
    /// Frames waiting for the driver to write them.
    pub out: Vec<u8>,
    /// The driver's waker, taken by whoever queues output.
    pub driver: Option<Waker>,
    /// The connection is over; every stream and request gets this.
    pub ended: Option<H2Error>,
    /// No new streams: a GOAWAY arrived (its error) or stream ids ran out.
    pub going_away: Option<H2Error>,
    decoder: hpack_decoder::Decoder,
    continuation: Option<Continuation>,
    /// The pool dropped the connection; with no stream left the driver ends it.
    pub abandoned: bool,
    windows: Windows,
}

impl Shared {
    /// A new connection's state, with the client preface, the client's SETTINGS and its connection window queued.
    pub fn new(stream_window: u32, connection_window: u32) -> Arc<Shared> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(frame::PREFACE);
        frame::put_settings(
            &mut out,
            &[(setting::ENABLE_PUSH, 0), (setting::INITIAL_WINDOW_SIZE, stream_window.min(MAX_WINDOW as u32))],
        );
        let connection_window = i64::from(connection_window).clamp(frame::DEFAULT_WINDOW, MAX_WINDOW);
        if connection_window > frame::DEFAULT_WINDOW {
            frame::put_window_update(&mut out, 0, (connection_window - frame::DEFAULT_WINDOW) as u32);
        }
        let decoder = hpack_decoder::Decoder::new(hpack::TABLE_SIZE);
        Arc::new(Shared {
            state: parking_lot::Mutex::new(State {
                streams: FxHashMap::default(),
                next_id: 1,
                live: 0,
                waiting: Waiting::default(),
                peer_initial_window: frame::DEFAULT_WINDOW,
                peer_max_frame: frame::MAX_RECEIVED_FRAME,
                peer_max_streams: usize::MAX,
                send_window: frame::DEFAULT_WINDOW,
                recv_window: connection_window,
                recv_unreleased: 0,
                blocked: VecDeque::new(),
                out,
                driver: None,
                ended: None,
                going_away: None,
                decoder,
                continuation: None,
                abandoned: false,
                windows: Windows { stream: i64::from(stream_window), connection: connection_window },
            }),
            max_streams: AtomicUsize::new(usize::MAX),
        })
    }
}

/// The windows this client gives the server (set at the handshake, fixed after).
#[derive(Clone, Copy)]
struct Windows {
    pub stream: i64,
    pub connection: i64,
}

impl State {
    /// Wake the driver to write what was queued.
    pub fn wake_driver(&mut self) {
        if let Some(waker) = self.driver.take() {
            waker.wake();
        }
    }

    /// Open a stream for `POST uri`: queue its HEADERS and as much of its body as the windows allow. `None`
    /// with `waker` kept while the server's stream limit is reached.
    pub fn open(
        &mut self,
        waker: &Waker,
        ticket: &mut Option<u64>,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Option<u32>, H2Error> {
        if let Some(e) = self.ended.as_ref().or(self.going_away.as_ref()) {
            return Err(e.clone());
        }
        if self.live >= self.peer_max_streams {
            self.waiting.wait(ticket, waker);
            return Ok(None);
        }
        *ticket = None;
        let id = self.next_id;
        if id > frame::MAX_WINDOW as u32 {
            // Stream ids ran out: this connection takes no more; the pool opens another.
            let e = H2Error::GoAway { reason: Reason::NO_ERROR, unprocessed: true };
            self.going_away = Some(e.clone());
            return Err(e);
        }
        self.next_id += 2;
        self.live += 1;
        // The block is encoded in place after room for its frame header; a block larger than one frame (rare: the
        // server's frame size is 16 KB or more) is moved out and split into CONTINUATION frames.
        let start = self.out.len();
        self.out.extend_from_slice(&[0; frame::HEADER_LEN]);
        hpack::encode_request(&mut self.out, uri, headers, body.len());
        let len = self.out.len() - start - frame::HEADER_LEN;
        let end_stream = if body.is_empty() { flag::END_STREAM } else { 0 };
        if len <= self.peer_max_frame {
            let head = frame::head_bytes(len, kind::HEADERS, flag::END_HEADERS | end_stream, id);
            self.out[start..start + frame::HEADER_LEN].copy_from_slice(&head);
        } else {
            let block = self.out.split_off(start + frame::HEADER_LEN);
            self.out.truncate(start);
            frame::put_headers(&mut self.out, id, &block, body.is_empty(), self.peer_max_frame);
        }
        self.streams.insert(
            id,
            Stream {
                head: Head2::Waiting,
                data: VecDeque::new(),
                end: End::Open,
                waker: None,
                body: body.clone(),
                send_window: self.peer_initial_window,
                recv_window: self.windows.stream,
                unreleased: 0,
                live: true,
            },
        );
        if !body.is_empty() && !self.send_body(id) {
            self.blocked.push_back(id);
        }
        self.wake_driver();
        Ok(Some(id))
    }

    /// Send what the windows allow of stream `id`'s body; `true` once all of it is queued.
    fn send_body(&mut self, id: u32) -> bool {
        let Some(stream) = self.streams.get_mut(&id) else { return true };
        while !stream.body.is_empty() {
            let room = self.send_window.min(stream.send_window).min(self.peer_max_frame as i64);
            if room <= 0 {
                return false;
            }
            let n = stream.body.len().min(room as usize);
            let chunk = stream.body.split_to(n);
            let flags = if stream.body.is_empty() { flag::END_STREAM } else { 0 };
            frame::put_head(&mut self.out, n, kind::DATA, flags, id);
            self.out.extend_from_slice(&chunk);
            self.send_window -= n as i64;
            stream.send_window -= n as i64;
        }
        true
    }

    /// Give waiting bodies the window that opened, in the order they started waiting.
    fn send_blocked(&mut self) {
        let mut i = 0;
        while i < self.blocked.len() && self.send_window > 0 {
            if self.send_body(self.blocked[i]) {
                self.blocked.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Stream `id` stopped counting toward the server's limit: let a waiting request open one.
    fn stream_closed(&mut self, id: u32, wake: &mut Vec<Waker>) {
        if let Some(stream) = self.streams.get_mut(&id)
            && std::mem::replace(&mut stream.live, false)
        {
            self.live -= 1;
            self.blocked.retain(|b| *b != id);
            self.waiting.wake_one(wake);
        }
    }

    /// A request holding `ticket` stopped waiting without opening a stream: off the queue, or, if it had been
    /// woken for a free stream, that turn goes to the next one.
    pub fn leave(&mut self, ticket: u64) {
        if self.waiting.wakers.remove(&ticket).is_none() && self.live < self.peer_max_streams {
            let mut wake = Vec::new();
            self.waiting.wake_one(&mut wake);
            wake.into_iter().for_each(Waker::wake);
        }
    }

    /// The body took `n` bytes of stream `id`: give the window back once half of it is taken.
    pub fn consumed(&mut self, id: u32, n: usize) {
        let n = n as i64;
        self.recv_unreleased += n;
        if self.recv_unreleased >= self.windows.connection / 2 {
            frame::put_window_update(&mut self.out, 0, self.recv_unreleased as u32);
            self.recv_window += std::mem::take(&mut self.recv_unreleased);
            self.wake_driver();
        }
        if let Some(stream) = self.streams.get_mut(&id)
            && matches!(stream.end, End::Open)
        {
            stream.unreleased += n;
            if stream.unreleased >= self.windows.stream / 2 {
                frame::put_window_update(&mut self.out, id, stream.unreleased as u32);
                stream.recv_window += std::mem::take(&mut stream.unreleased);
                self.wake_driver();
            }
        }
    }

    /// The request or body of stream `id` was dropped: reset the stream if it is still open on the wire, and give
    /// back the connection window its unread data held.
    pub fn drop_stream(&mut self, id: u32) {
        let mut wake = Vec::new();
        self.stream_closed_by_us(id, &mut wake);
        if let Some(stream) = self.streams.remove(&id) {
            let unread: usize = stream.data.iter().map(Bytes::len).sum();
            if unread > 0 && self.ended.is_none() {
                self.consumed(id, unread);
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }

    fn stream_closed_by_us(&mut self, id: u32, wake: &mut Vec<Waker>) {
        let live = self.streams.get(&id).is_some_and(|s| s.live);
        if live && self.ended.is_none() {
            frame::put_reset(&mut self.out, id, Reason::CANCEL);
            self.wake_driver();
        }
        self.stream_closed(id, wake);
    }

    /// End the connection with `error`: every open stream and waiting request gets it.
    pub fn end(&mut self, error: H2Error, wake: &mut Vec<Waker>) {
        if self.ended.is_some() {
            return;
        }
        for stream in self.streams.values_mut() {
            if matches!(stream.end, End::Open) {
                stream.end = End::Failed(error.clone());
                wake.extend(stream.waker.take());
            }
        }
        self.waiting.wake_all(wake);
        self.ended = Some(error);
    }

    /// Connection window the server has used and this side has not given back or counted as given back: what
    /// unread data holds.
    #[cfg(test)]
    pub fn window_held(&self) -> i64 {
        self.windows.connection - self.recv_window - self.recv_unreleased
    }

    /// Publish what the pool reads without the lock.
    pub fn publish(&self, shared: &Shared) {
        shared.max_streams.store(self.peer_max_streams, Ordering::Relaxed);
    }
}
