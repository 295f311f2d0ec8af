//! HTTP/2 frames on the wire (RFC 9113 §4 and §6): the 9-byte frame header, the frame types and flags the
//! client reads and writes, the error codes, and the frames this client writes, appended to a connection's
//! outgoing buffer.

use std::fmt;

/// Length of every frame's header.
pub const HEADER_LEN: usize = 9;
/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The largest frame payload this client accepts: the protocol's default, which it does not raise.
pub const MAX_RECEIVED_FRAME: usize = 16_384;
/// The largest window the protocol allows (2^31 - 1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The window every stream and the connection start with until SETTINGS or WINDOW_UPDATE change it.
pub const DEFAULT_WINDOW: i64 = 65_535;

/// Frame types (RFC 9113 §6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (RFC 9113 §6).
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS parameters (RFC 9113 §6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
}

/// An HTTP/2 error code (RFC 9113 §7), as a reset or a GOAWAY carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const CANCEL: Reason = Reason(0x8);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            0x0 => "no error",
            0x1 => "protocol error",
            0x2 => "internal error",
            0x3 => "flow-control error",
            0x4 => "settings timeout",
            0x5 => "stream closed",
            0x6 => "frame size error",
            0x7 => "stream refused before processing",
            0x8 => "cancelled",
            0x9 => "compression error",
            0xa => "connect error",
            0xb => "enhance your calm",
            0xc => "inadequate security",
            0xd => "HTTP/1.1 required",
            other => return write!(f, "error code {other:#x}"),
        };
        f.write_str(name)
    }
}

/// A frame's header, read off the first [`HEADER_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    /// The header at the start of `bytes`, if all nine bytes are there.
    pub fn parse(bytes: &[u8]) -> Option<Head> {
        let b: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Head {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A frame header's bytes.
pub fn head_bytes(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    let len = (len as u32).to_be_bytes();
    let stream = (stream & 0x7fff_ffff).to_be_bytes();
    [len[1], len[2], len[3], kind, flags, stream[0], stream[1], stream[2], stream[3]]
}

/// Append a frame header to `out`.
pub fn put_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&head_bytes(len, kind, flags, stream));
}

/// Append a SETTINGS frame with `params` to `out`.
pub fn put_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    put_head(out, params.len() * 6, kind::SETTINGS, 0, 0);
    for (id, value) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn put_settings_ack(out: &mut Vec<u8>) {
    put_head(out, 0, kind::SETTINGS, flag::ACK, 0);
}

pub fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    put_head(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & 0x7fff_ffff).to_be_bytes());
}

pub fn put_reset(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    put_head(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&reason.0.to_be_bytes());
}

pub fn put_ping_ack(out: &mut Vec<u8>, payload: &[u8; 8]) {
    put_head(out, 8, kind::PING, flag::ACK, 0);
    out.extend_from_slice(payload);
}

pub fn put_goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason) {
    put_head(out, 8, kind::GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&reason.0.to_be_bytes());
}

/// Append `block` (an encoded header block) as a HEADERS frame and as many CONTINUATION frames as the peer's
/// `max_frame` needs.
pub fn put_headers(out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool, max_frame: usize) {
    let mut chunks = block.chunks(max_frame.max(1));
    let first = chunks.next().unwrap_or_default();
    let rest = chunks.len();
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if rest == 0 {
        flags |= flag::END_HEADERS;
    }
    put_head(out, first.len(), kind::HEADERS, flags, stream);
    out.extend_from_slice(first);
    for (i, chunk) in chunks.enumerate() {
        let flags = if i + 1 == rest { flag::END_HEADERS } else { 0 };
        put_head(out, chunk.len(), kind::CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
    }
}

/// A 32-bit big-endian number at `at` in `payload` (callers check the length first).
pub fn u32_at(payload: &[u8], at: usize) -> u32 {
    payload.get(at..at + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip() {
        let mut out = Vec::new();
        put_head(&mut out, 70_000, kind::DATA, flag::END_STREAM | flag::PADDED, 0x8000_0003);
        let head = Head::parse(&out).unwrap_or_else(|| panic!("no head"));
        assert_eq!(head, Head { len: 70_000, kind: kind::DATA, flags: 0x9, stream: 3 });
        assert!(head.has(flag::END_STREAM) && !head.has(flag::END_HEADERS));
        assert_eq!(Head::parse(&out[..8]), None);
    }

    #[test]
    fn a_large_header_block_continues_in_continuation_frames() {
        let block: Vec<u8> = (0..25u8).collect();
        let mut out = Vec::new();
        put_headers(&mut out, 5, &block, true, 10);
        let mut frames = Vec::new();
        let mut rest = &out[..];
        while let Some(head) = Head::parse(rest) {
            frames.push((head.kind, head.flags, head.len));
            rest = &rest[HEADER_LEN + head.len..];
        }
        assert_eq!(
            frames,
            [
                (kind::HEADERS, flag::END_STREAM, 10),
                (kind::CONTINUATION, 0, 10),
                (kind::CONTINUATION, flag::END_HEADERS, 5)
            ]
        );
        let mut one = Vec::new();
        put_headers(&mut one, 5, &block, false, 16_384);
        assert_eq!(Head::parse(&one).map(|h| (h.flags, h.len)), Some((flag::END_HEADERS, 25)));
    }
}
