//! The accepted socket as hyper reads it, with two looks at the bytes on their way:
//!
//! - a connection that has sent nothing when the drain begins is ended at once (hyper would wait for its first
//!   request, up to the header deadline, before a graceful shutdown closes it);
//! - the request heads are read beside hyper ([`Heads`]), to see a body's length given twice: hyper drops a
//!   second `Content-Length`, and one given with `Transfer-Encoding` (RFC 9112 lets it), so its requests no longer
//!   show it. The listener's service refuses such a request (listen.rs, `ambiguous_length`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::MAX_BUF;

/// Header fields a head may have; more is hyper's to refuse (431), as its own limit is the same.
const MAX_HEADERS: usize = 100;

pub struct Socket {
    tcp: TcpStream,
    /// The connection's slot under the process's connection limit (listen.rs `SLOTS`), given back with the
    /// descriptor.
    _slot: Option<OwnedSemaphorePermit>,
    /// Until the first byte arrives: the drain, which ends a connection that sent nothing.
    fresh: Option<CancellationToken>,
    heads: Heads,
}

impl Socket {
    /// The socket, and where its [`Heads`] note the first ambiguous head's index (`u32::MAX`: none).
    pub fn new(
        tcp: TcpStream,
        slot: Option<OwnedSemaphorePermit>,
        draining: CancellationToken,
    ) -> (Socket, Arc<AtomicU32>) {
        let ambiguous_at = Arc::new(AtomicU32::new(u32::MAX));
        let heads = Heads { state: State::Head, carry: Vec::new(), seen: 0, ambiguous_at: ambiguous_at.clone() };
        (Socket { tcp, _slot: slot, fresh: Some(draining), heads }, ambiguous_at)
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.fresh.as_ref().is_some_and(CancellationToken::is_cancelled) {
            // The end of the stream: hyper closes a connection that ends before a request began, unanswered.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            this.fresh = None;
            this.heads.feed(read);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Where the request bytes of a connection are: the heads are parsed (httparse, as hyper does), bodies skipped
/// by their framing (a length, or chunks), until a head gives its body's length twice; its index is noted, and
/// nothing after it is looked at (that request is refused and the connection closes). Whatever hyper refuses
/// itself (a malformed head, an unknown coding, a chunk it cannot read) ends the look too: hyper closes then.
struct Heads {
    state: State,
    /// A head, chunk-size line or trailer section not all read yet (empty almost always: no allocation).
    carry: Vec<u8>,
    /// Heads seen so far.
    seen: u32,
    ambiguous_at: Arc<AtomicU32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// This many bytes of body left.
    Body(u64),
    ChunkSize,
    /// This many bytes of a chunk left, its CRLF included.
    Chunk(u64),
    Trailers,
    /// Nothing more is looked at.
    Done,
}

/// What a complete head says of the bytes after it.
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Given twice: the request is refused.
    Ambiguous,
    /// Not HTTP after it (an upgrade), or a head hyper refuses.
    Stop,
}

impl Heads {
    fn feed(&mut self, read: &[u8]) {
        if self.state == State::Done {
            return;
        }
        if self.carry.is_empty() {
            if let Some(at) = self.scan(read) {
                self.carry = read[at..].to_vec();
            }
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(read);
            if let Some(at) = self.scan(&joined) {
                joined.drain(..at);
                self.carry = joined;
            }
        }
    }

    /// Go through `bytes`; where a head, size line or trailers begins that is not all there yet is returned, to
    /// be read again with the next bytes.
    fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let parsed = match self.state {
                State::Done => return None,
                State::Body(left) | State::Chunk(left) => {
                    let skip = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    at += skip;
                    let left = left - skip as u64;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::Body(_), _) => State::Body(left),
                        (_, 0) => State::ChunkSize,
                        _ => State::Chunk(left),
                    };
                    continue;
                }
                State::Head => self.head(rest),
                State::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, 0))) => Some((used, State::Trailers)),
                    Ok(httparse::Status::Complete((used, size))) => Some((used, State::Chunk(size.saturating_add(2)))),
                    Ok(httparse::Status::Partial) => None,
                    Err(_) => Some((0, State::Done)),
                },
                State::Trailers => {
                    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(rest, &mut fields) {
                        Ok(httparse::Status::Complete((used, _))) => Some((used, State::Head)),
                        Ok(httparse::Status::Partial) => None,
                        Err(_) => Some((0, State::Done)),
                    }
                }
            };
            match parsed {
                Some((used, next)) => {
                    at += used;
                    self.state = next;
                }
                // Not all there: kept for the next read, unless it is already more than hyper reads.
                None if rest.len() < MAX_BUF => return Some(at),
                None => self.state = State::Done,
            }
        }
        None
    }

    /// A head at the start of `bytes`: its length and the state after it, or `None` if it is not all there.
    fn head(&mut self, bytes: &[u8]) -> Option<(usize, State)> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut fields);
        let used = match req.parse(bytes) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return None,
            Err(_) => return Some((0, State::Done)),
        };
        let index = self.seen;
        self.seen = self.seen.saturating_add(1);
        let next = match framing(&req) {
            Framing::None | Framing::Length(0) => State::Head,
            Framing::Length(n) => State::Body(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Stop => State::Done,
            Framing::Ambiguous => {
                self.ambiguous_at.store(index, Ordering::Release);
                State::Done
            }
        };
        Some((used, next))
    }
}

/// How a parsed head frames its body, read as hyper reads it (RFC 9112, section 6).
fn framing(req: &httparse::Request) -> Framing {
    let named = |name: &'static str| req.headers.iter().filter(move |f| f.name.eq_ignore_ascii_case(name));
    let (lengths, codings) = (named("content-length").count(), named("transfer-encoding").count());
    if lengths + codings > 1 {
        return Framing::Ambiguous;
    }
    let upgrade = named("upgrade").next().is_some() || req.method.is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"));
    if upgrade {
        return Framing::Stop;
    }
    if let Some(coding) = named("transfer-encoding").next() {
        let last = coding.value.rsplit(|&b| b == b',').next().map(<[u8]>::trim_ascii).unwrap_or_default();
        return if req.version == Some(1) && last.eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::Stop
        };
    }
    match named("content-length").next() {
        Some(length) => content_length(length.value).map_or(Framing::Stop, Framing::Length),
        None => Framing::None,
    }
}

/// A `Content-Length` value: digits only (no sign, no list), as RFC 9110 has it.
fn content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads() -> Heads {
        Heads { state: State::Head, carry: Vec::new(), seen: 0, ambiguous_at: Arc::new(AtomicU32::new(u32::MAX)) }
    }

    /// `bytes` fed in pieces of `step` bytes: the index of the ambiguous head, if any, and the heads seen.
    fn scanned(bytes: &str, step: usize) -> (Option<u32>, u32) {
        let mut h = heads();
        for piece in bytes.as_bytes().chunks(step) {
            h.feed(piece);
        }
        let at = h.ambiguous_at.load(Ordering::Relaxed);
        ((at != u32::MAX).then_some(at), h.seen)
    }

    #[test]
    fn every_head_of_a_pipeline_is_found_past_its_body_in_any_pieces() {
        let bytes = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
                     POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nGET / HTTP/1\
                     POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                     5;ext=1\r\nPOST \r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n\
                     POST /d HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok";
        for step in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(scanned(bytes, step), (Some(3), 4), "in pieces of {step}");
        }
    }

    #[test]
    fn a_length_given_twice_is_ambiguous_in_every_form() {
        for head in [
            "Content-Length: 3\r\nContent-Length: 3\r\n",
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-length: 3\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-encoding: chunked\r\n",
        ] {
            let bytes = format!("GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\n{head}\r\n");
            assert_eq!(scanned(&bytes, 4096), (Some(1), 2), "{head:?}");
        }
        assert_eq!(scanned("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 5), (None, 1));
    }

    /// After an upgrade the bytes are not HTTP, and after a head hyper refuses it closes: nothing is looked at.
    #[test]
    fn the_look_ends_at_an_upgrade_or_a_head_hyper_refuses() {
        let after = "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        for first in [
            "GET /v1/responses HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(scanned(&format!("{first}{after}"), 4096).0, None, "{first:?}");
        }
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(content_length(b" 42 "), Some(42));
        assert_eq!(content_length(b"0"), Some(0));
        for bad in [&b""[..], b"-1", b"4 2", b"0x10", b"1,1", b"9999999999999999999"] {
            assert_eq!(content_length(bad), None, "{bad:?}");
        }
    }
}
