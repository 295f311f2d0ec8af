//! Writing one response: its head, then its body as the handler produces it (chunked unless its length is
//! known), every frame that is ready at a wake-up in one write, while the read side is watched for a client that
//! went away. Small frames (a paced stream's events) are framed into one contiguous buffer borrowed from the
//! thread and written with a plain `send`; large ones are written from the handler's own `Bytes` with a gather
//! write (`sendmsg`), never copied. Nothing is held by the connection between writes but what the socket has not
//! taken yet.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use axum::http::{StatusCode, response};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use hyper::body::Body as _;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Ready frames joined into one write, at most (each is three slices with its chunk framing).
const MAX_PIECES: usize = 48;
/// Frames up to this size are copied into the flat buffer with their framing (see [`Piece::Flat`]); larger ones
/// are written from their own `Bytes`.
const FLAT_FRAME: usize = 4096;
/// Bytes queued for one write, at most; beyond it the socket has to take some first (backpressure).
const MAX_QUEUED: usize = 256 * 1024;
/// Bytes a client may send ahead (a pipelined request) while its response is written; beyond it the
/// connection stops reading until the response is done.
pub const MAX_PIPELINED: usize = 64 * 1024;

/// Why a response was not written to its end; the connection closes in every case.
#[derive(Debug, thiserror::Error)]
pub enum Unfinished {
    #[error("the client closed the connection")]
    ClientGone,
    #[error("writing to the client failed: {0}")]
    Write(io::Error),
    #[error("the response body failed")]
    Body,
}

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length`: exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No body may follow (204, 304).
    Empty,
}

/// Write `response`; `close` says the connection closes after it (the head then says so).
pub async fn send(
    tcp: &TcpStream,
    response: Response,
    close: bool,
    pipelined: &mut BytesMut,
) -> Result<(), Unfinished> {
    let (mut body, head, framing) = {
        // The response's header map is freed once written, not kept while the body streams.
        let (parts, body) = response.into_parts();
        let mut head = upstream_transport::scratch::take();
        head.reserve(256);
        let framing = encode_head(&parts, &body, close, &mut head);
        (body, head, framing)
    };
    let queued = head.len();
    let mut out = Outgoing { queue: VecDeque::with_capacity(4), offset: 0, queued, framing, done: false };
    out.queue.push_back(Piece::Flat(head));
    if framing == Framing::Empty {
        out.done = true;
    }
    std::future::poll_fn(|cx| out.poll(cx, tcp, &mut body, pipelined)).await
}

/// Return a written flat buffer to the thread's shelf (`upstream_transport::scratch`; a burst's large one is freed
/// there). The flat buffer is taken from there when a response has small frames to write and given back
/// once the socket took them, so a connection waiting for its next event holds none.
fn give_back(flat: Vec<u8>) {
    upstream_transport::scratch::give_back(flat);
}

/// One piece of a write.
enum Piece {
    /// Small frames with their framing, copied into one contiguous buffer: a paced stream's event is then one
    /// plain `send` of one buffer. Written as three slices (size line, data, line end) with `sendmsg`, the kernel
    /// imported an iovec and copied per segment, and the connection built a slice array per write: ~3% of a
    /// paced stream's CPU against the copy of a few hundred hot bytes (docs/performance.md, "Flat small-chunk writes").
    /// Frames are appended to the last piece when it is a flat buffer, else a new one starts: order is kept.
    Flat(Vec<u8>),
    Data(Bytes),
    /// A chunk's size line.
    Size {
        line: [u8; 18],
        len: u8,
    },
    Static(&'static [u8]),
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Flat(v) => v,
            Piece::Data(b) => b,
            Piece::Size { line, len } => &line[..usize::from(*len)],
            Piece::Static(s) => s,
        }
    }

    fn size_line(n: usize) -> Piece {
        let mut line = [0u8; 18];
        let digits = if n == 0 { 1 } else { (usize::BITS - n.leading_zeros()).div_ceil(4) as usize };
        for (i, slot) in line[..digits].iter_mut().enumerate() {
            let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
            *slot = b"0123456789abcdef"[nibble];
        }
        line[digits] = b'\r';
        line[digits + 1] = b'\n';
        Piece::Size { line, len: (digits + 2) as u8 }
    }
}

impl Outgoing {
    /// Append to the flat buffer at the end of the queue, started (from the thread's) if the last piece is another.
    fn with_flat(&mut self, append: impl FnOnce(&mut Vec<u8>)) {
        if let Some(Piece::Flat(flat)) = self.queue.back_mut() {
            return append(flat);
        }
        let mut flat = upstream_transport::scratch::take();
        append(&mut flat);
        self.queue.push_back(Piece::Flat(flat));
    }
}

/// The response being written.
struct Outgoing {
    queue: VecDeque<Piece>,
    /// Bytes of the front piece already written.
    offset: usize,
    queued: usize,
    framing: Framing,
    /// The body has ended and its end is queued.
    done: bool,
}

impl Outgoing {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        tcp: &TcpStream,
        body: &mut Body,
        pipelined: &mut BytesMut,
    ) -> Poll<Result<(), Unfinished>> {
        // The body said Pending in this call: its waker is registered, and asking again before it wakes finds
        // nothing new. Without this, every write went back to the body once more, walking the whole handler's
        // poll chain (pump, reader, upstream socket, timers) for nothing: one in three of those walks per event
        // when events arrive one at a time (callgrind, docs/performance.md, "Paced-event write path").
        let mut body_pending = false;
        loop {
            // Everything the body has ready goes into this write.
            while !body_pending && !self.done && self.queue.len() + 3 <= MAX_PIECES && self.queued < MAX_QUEUED {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        // Trailers are not sent: the gateway's responses have none.
                        if let Ok(data) = frame.into_data() {
                            self.push_data(data)?;
                        }
                    }
                    Poll::Ready(Some(Err(_))) => return Poll::Ready(Err(Unfinished::Body)),
                    Poll::Ready(None) => self.push_end()?,
                    Poll::Pending => body_pending = true,
                }
            }
            if self.queue.is_empty() {
                if self.done {
                    return Poll::Ready(Ok(()));
                }
            } else {
                match self.write(tcp) {
                    Ok(()) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => match tcp.poll_write_ready(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(Unfinished::Write(e))),
                        Poll::Pending => {}
                    },
                    Err(e) => return Poll::Ready(Err(Unfinished::Write(e))),
                }
            }
            // Waiting for the body or the socket: a client that goes away meanwhile ends the response.
            return match poll_peer_gone(tcp, pipelined, cx) {
                Poll::Ready(()) => Poll::Ready(Err(Unfinished::ClientGone)),
                Poll::Pending => Poll::Pending,
            };
        }
    }

    fn push_data(&mut self, data: Bytes) -> Result<(), Unfinished> {
        if data.is_empty() {
            return Ok(());
        }
        self.queued += data.len();
        match &mut self.framing {
            Framing::Chunked if data.len() <= FLAT_FRAME => {
                let size = Piece::size_line(data.len());
                // The framing counts too: the flat buffer is let go of by its whole length once written.
                self.queued += size.bytes().len() + 2;
                self.with_flat(|flat| {
                    flat.extend_from_slice(size.bytes());
                    flat.extend_from_slice(&data);
                    flat.extend_from_slice(b"\r\n");
                });
            }
            Framing::Chunked => {
                self.queue.push_back(Piece::size_line(data.len()));
                self.queue.push_back(Piece::Data(data));
                self.queue.push_back(Piece::Static(b"\r\n"));
            }
            Framing::Length(left) => {
                // More than the length the head announced would corrupt the connection: end it instead.
                *left = left.checked_sub(data.len() as u64).ok_or(Unfinished::Body)?;
                if data.len() <= FLAT_FRAME {
                    self.with_flat(|flat| flat.extend_from_slice(&data));
                } else {
                    self.queue.push_back(Piece::Data(data));
                }
            }
            Framing::Empty => {}
        }
        Ok(())
    }

    fn push_end(&mut self) -> Result<(), Unfinished> {
        self.done = true;
        match self.framing {
            Framing::Chunked => {
                self.queued += 5;
                self.with_flat(|flat| flat.extend_from_slice(b"0\r\n\r\n"));
            }
            // A body shorter than its announced length leaves the client waiting for the rest: close instead.
            Framing::Length(left) if left > 0 => return Err(Unfinished::Body),
            Framing::Length(_) | Framing::Empty => {}
        }
        Ok(())
    }

    /// One write of the queue; `Ok` when the socket took some of it. MSG_NOSIGNAL: a client gone is an `EPIPE`
    /// error here, never a signal.
    fn write(&mut self, tcp: &TcpStream) -> io::Result<()> {
        let sock = SockRef::from(tcp);
        let mut written = if let (1, Some(front)) = (self.queue.len(), self.queue.front()) {
            // One buffer (the flat one, as a rule): a plain `send`, no iovec for the kernel to import.
            let bytes = front.bytes().get(self.offset..).unwrap_or_default();
            tcp.try_io(Interest::WRITABLE, || sock.send_with_flags(bytes, libc::MSG_NOSIGNAL))?
        } else {
            let mut slices = [IoSlice::new(&[]); MAX_PIECES];
            let mut n = 0;
            for (i, piece) in self.queue.iter().take(MAX_PIECES).enumerate() {
                let bytes = piece.bytes();
                slices[i] = IoSlice::new(if i == 0 { bytes.get(self.offset..).unwrap_or_default() } else { bytes });
                n = i + 1;
            }
            // `sendmsg`, the socket's own call, rather than tokio's `writev`: the same gather write without the
            // VFS layer a `writev` goes through first (`vfs_writev`), which perf put at ~0.7 us of kernel time per
            // write (docs/performance.md, "Paced-event write path").
            tcp.try_io(Interest::WRITABLE, || sock.send_vectored_with_flags(&slices[..n], libc::MSG_NOSIGNAL))?
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let Some(front) = self.queue.front() else { break };
            let left = front.bytes().len().saturating_sub(self.offset);
            if written < left {
                self.offset += written;
                break;
            }
            written -= left;
            self.offset = 0;
            match self.queue.pop_front() {
                Some(Piece::Flat(flat)) => {
                    self.queued -= flat.len().min(self.queued);
                    give_back(flat);
                }
                Some(Piece::Data(d)) => self.queued -= d.len().min(self.queued),
                Some(Piece::Size { .. } | Piece::Static(_)) | None => {}
            }
        }
        Ok(())
    }
}

/// Read what the client sends while its request is handled: bytes ahead (a pipelined request) are kept in
/// `pipelined` for the next head; the end of the stream or an error means the client went away (hyper's
/// default too: a half-closed request is a closed one). Past [`MAX_PIPELINED`] reading stops.
pub fn poll_peer_gone(tcp: &TcpStream, pipelined: &mut BytesMut, cx: &mut Context<'_>) -> Poll<()> {
    loop {
        if pipelined.len() >= MAX_PIPELINED {
            return Poll::Pending;
        }
        match tcp.poll_read_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
        // On the stack: a connection holds no read buffer while it waits (docs/performance.md, "Own HTTP/1.1 server connection").
        let mut scratch = [0u8; 2048];
        match tcp.try_read(&mut scratch) {
            Ok(0) => return Poll::Ready(()),
            Ok(n) => pipelined.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Poll::Ready(()),
        }
    }
}

/// The status line and headers; returns how the body is delimited. A `Content-Length` the handler set is
/// kept, else the body's exact size is announced when it knows it, else it is chunked. `Transfer-Encoding` is
/// the server's to set, and a `Date` is added as hyper adds one.
fn encode_head(parts: &response::Parts, body: &Body, close: bool, out: &mut Vec<u8>) -> Framing {
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let bodiless = status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let mut length = None;
    let mut dated = false;
    for (name, value) in &parts.headers {
        if *name == TRANSFER_ENCODING || (*name == CONNECTION && close) {
            continue;
        }
        if *name == CONTENT_LENGTH {
            match value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) {
                Some(n) if length.is_none() && !bodiless => length = Some(n),
                _ => continue,
            }
        }
        dated |= *name == DATE;
        header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let framing = if bodiless {
        Framing::Empty
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if let Some(n) = body.size_hint().exact() {
        header(out, b"content-length", itoa::Buffer::new().format(n).as_bytes());
        Framing::Length(n)
    } else {
        header(out, b"transfer-encoding", b"chunked");
        Framing::Chunked
    };
    if close {
        header(out, b"connection", b"close");
    }
    if !dated {
        header(out, b"date", httpdate::fmt_http_date(SystemTime::now()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    framing
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(response: Response, close: bool) -> (String, Framing) {
        let (parts, body) = response.into_parts();
        let mut out = Vec::new();
        let framing = encode_head(&parts, &body, close, &mut out);
        (String::from_utf8(out).unwrap_or_else(|e| panic!("{e}")), framing)
    }

    #[test]
    fn size_lines_are_lowercase_hex() {
        for (n, line) in [(0, "0\r\n"), (9, "9\r\n"), (10, "a\r\n"), (255, "ff\r\n"), (4096, "1000\r\n")] {
            assert_eq!(Piece::size_line(n).bytes(), line.as_bytes());
        }
        assert_eq!(Piece::size_line(usize::MAX).bytes(), b"ffffffffffffffff\r\n");
    }

    #[test]
    fn heads_announce_how_the_body_is_delimited() {
        let (head, framing) = head_of(Response::new(Body::from("hello")), false);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("content-length: 5\r\n") && head.contains("\r\ndate: "), "{head}");
        assert!(head.ends_with("\r\n\r\n") && !head.contains("connection"), "{head}");
        assert_eq!(framing, Framing::Length(5));

        let stream = Body::from_stream(futures_util::stream::empty::<Result<Bytes, io::Error>>());
        let (head, framing) = head_of(Response::new(stream), true);
        assert!(head.contains("transfer-encoding: chunked\r\n") && head.contains("connection: close\r\n"));
        assert_eq!(framing, Framing::Chunked);

        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        let (head, framing) = head_of(r, false);
        assert!(head.starts_with("HTTP/1.1 204 No Content\r\n") && !head.contains("content-length"), "{head}");
        assert_eq!(framing, Framing::Empty);

        let mut r = Response::new(Body::from_stream(futures_util::stream::empty::<Result<Bytes, io::Error>>()));
        r.headers_mut().insert(CONTENT_LENGTH, axum::http::HeaderValue::from_static("7"));
        r.headers_mut().insert(TRANSFER_ENCODING, axum::http::HeaderValue::from_static("chunked"));
        let (head, framing) = head_of(r, false);
        assert!(head.contains("content-length: 7\r\n") && !head.contains("transfer-encoding"), "{head}");
        assert_eq!(framing, Framing::Length(7));
    }
}
