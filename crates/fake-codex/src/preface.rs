//! What a client sends first on a TLS connection, as the backend's front end sees it: the HTTP/2 connection
//! preface (the SETTINGS in order, the connection's WINDOW_UPDATE) and the order of the first request's header
//! fields. A front end can tell HTTP/2 clients apart by these; the parity suite compares the official client's
//! with the gateway's (`GET /_fake/connections/{n}/preface`, `n` the connection number each recorded request
//! carries).
//!
//! Only the first bytes of a connection are kept ([`LIMIT`]), read as they pass ([`Recording`]); the HPACK block
//! is read for its field names only, from the static table (a name the client wrote literally shows as
//! `<literal>`).

use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The bytes kept of each connection.
const LIMIT: usize = 4096;
/// The connections whose first bytes are kept (the latest).
const KEPT: usize = 256;
const MAGIC: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's first bytes, filled as they are read.
type FirstBytes = Arc<Mutex<Vec<u8>>>;

/// The first bytes of the latest connections, by connection number.
#[derive(Default)]
pub(crate) struct Prefaces {
    seen: Mutex<VecDeque<(u64, FirstBytes)>>,
}

impl Prefaces {
    /// A place for connection `n`'s first bytes.
    pub(crate) fn open(&self, n: u64) -> FirstBytes {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let mut seen = self.seen.lock();
        if seen.len() >= KEPT {
            seen.pop_front();
        }
        seen.push_back((n, bytes.clone()));
        bytes
    }

    /// Connection `n`'s preface, read; `None` when it is not kept.
    pub(crate) fn describe(&self, n: u64) -> Option<Value> {
        let bytes = self.seen.lock().iter().find(|(c, _)| *c == n).map(|(_, b)| b.lock().clone())?;
        Some(describe(&bytes))
    }
}

/// A stream whose first [`LIMIT`] bytes read are copied aside, and every byte read counted in `received` (the
/// bytes a client sent over TLS, as they came: a compressed WebSocket message at its compressed size).
pub(crate) struct Recording<S> {
    inner: S,
    first: FirstBytes,
    received: Arc<AtomicU64>,
}

impl<S> Recording<S> {
    pub(crate) fn new(inner: S, first: FirstBytes, received: Arc<AtomicU64>) -> Recording<S> {
        Recording { inner, first, received }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.received.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
            let mut first = self.first.lock();
            let room = LIMIT.saturating_sub(first.len());
            let new = &buf.filled()[before..];
            first.extend_from_slice(&new[..new.len().min(room)]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `{"http2": bool, "settings": [[id, value], ...], "window_update": n | null, "headers": [names]}`: the client's
/// SETTINGS in the order sent, its first connection-level WINDOW_UPDATE, and the field names of its first
/// HEADERS frame in order.
fn describe(bytes: &[u8]) -> Value {
    let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
        return json!({"http2": false});
    };
    let (mut settings, mut window_update, mut headers) = (Vec::new(), Value::Null, Value::Null);
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let (kind, flags) = (rest[3], rest[4]);
        let stream = u32::from_be_bytes([rest[5] & 0x7f, rest[6], rest[7], rest[8]]);
        let Some(payload) = rest.get(9..9 + len) else { break };
        match kind {
            // SETTINGS, not an acknowledgement.
            4 if flags & 1 == 0 && settings.is_empty() => {
                for e in payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([e[0], e[1]]);
                    let value = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                    settings.push(json!([id, value]));
                }
            }
            8 if stream == 0 && window_update.is_null() && payload.len() == 4 => {
                window_update = json!(u32::from_be_bytes([payload[0] & 0x7f, payload[1], payload[2], payload[3]]));
            }
            1 if headers.is_null() => headers = json!(field_names(header_block(payload, flags))),
            _ => {}
        }
        rest = &rest[9 + len..];
    }
    json!({"http2": true, "settings": settings, "window_update": window_update, "headers": headers})
}

/// A HEADERS payload without its padding and priority.
fn header_block(payload: &[u8], flags: u8) -> &[u8] {
    let mut block = payload;
    let mut pad = 0;
    if flags & 0x8 != 0 {
        pad = block.first().copied().map_or(0, usize::from);
        block = block.get(1..).unwrap_or_default();
    }
    if flags & 0x20 != 0 {
        block = block.get(5..).unwrap_or_default();
    }
    block.get(..block.len().saturating_sub(pad)).unwrap_or_default()
}

/// The field names of an HPACK block, in order (RFC 7541 §6), from the static table.
fn field_names(mut block: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    while let Some(&first) = block.first() {
        let (index, prefix) = match first {
            b if b & 0x80 != 0 => (true, 7),
            b if b & 0xc0 == 0x40 => (false, 6),
            b if b & 0xe0 == 0x20 => {
                // A dynamic table size update: no field.
                let Some((_, used)) = integer(block, 5) else { break };
                block = &block[used..];
                continue;
            }
            _ => (false, 4),
        };
        let Some((n, used)) = integer(block, prefix) else { break };
        block = &block[used..];
        names.push(static_name(n));
        if index {
            continue;
        }
        if n == 0 {
            let Some(used) = string(block) else { break };
            block = &block[used..];
        }
        let Some(used) = string(block) else { break };
        block = &block[used..];
    }
    names
}

/// An HPACK integer with an `n`-bit prefix: its value and the bytes it took.
fn integer(bytes: &[u8], n: u32) -> Option<(usize, usize)> {
    let max = (1usize << n) - 1;
    let mut value = usize::from(*bytes.first()?) & max;
    if value < max {
        return Some((value, 1));
    }
    let mut shift = 0;
    for (i, b) in bytes.iter().enumerate().skip(1) {
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    None
}

/// The bytes an HPACK string literal takes.
fn string(bytes: &[u8]) -> Option<usize> {
    let (len, used) = integer(bytes, 7)?;
    (used + len <= bytes.len()).then_some(used + len)
}

fn static_name(index: usize) -> String {
    const NAMES: [&str; 16] = [
        ":authority",
        ":method",
        ":method",
        ":path",
        ":path",
        ":scheme",
        ":scheme",
        ":status",
        ":status",
        ":status",
        ":status",
        ":status",
        ":status",
        ":status",
        "accept-charset",
        "accept-encoding",
    ];
    match index {
        0 => "<literal>".to_string(),
        i if i <= NAMES.len() => NAMES[i - 1].to_string(),
        i if i <= 61 => format!("<static {i}>"),
        _ => "<dynamic>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preface_is_read_for_its_settings_window_and_field_order() {
        let mut bytes = MAGIC.to_vec();
        // SETTINGS: ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 2 MB.
        bytes.extend_from_slice(&[0, 0, 12, 4, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 4, 0, 0x20, 0, 0]);
        // WINDOW_UPDATE of 5 MB on stream 0.
        bytes.extend_from_slice(&[0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0x50, 0, 0]);
        // HEADERS on stream 1: :method POST (3), :scheme https (7), :path literal with name 4, :authority with
        // name 1, then a literal name.
        let block = [0x83, 0x87, 0x44, 0x01, b'/', 0x41, 0x01, b'h', 0x40, 0x01, b'x', 0x01, b'y'];
        bytes.extend_from_slice(&[0, 0, u8::try_from(block.len()).unwrap_or(0), 1, 4, 0, 0, 0, 1]);
        bytes.extend_from_slice(&block);
        let d = describe(&bytes);
        assert_eq!(d["settings"], json!([[2, 0], [4, 0x200000]]));
        assert_eq!(d["window_update"], json!(0x500000));
        assert_eq!(d["headers"], json!([":method", ":scheme", ":path", ":authority", "<literal>"]));
        assert_eq!(describe(b"GET / HTTP/1.1\r\n"), json!({"http2": false}));
    }
}
