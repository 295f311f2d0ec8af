//! HTTP/1.1 body framing, removed from received bytes (RFC 9112 §6, §7.1): a content length, chunked
//! transfer coding, or the body running until the connection closes. Pure: `http1.rs` reads the socket and
//! hands every read here whole, so all the chunks one read holds come out as one buffer.

use bytes::BytesMut;

/// How the body's end is known, and where the decoder is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// This many body bytes are left.
    Length(u64),
    Chunked(Chunk),
    /// Everything until the connection closes.
    UntilClose,
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last (zero) chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

/// A chunk-size or trailer line longer than this is refused (a peer that never ends its line).
const MAX_LINE: usize = 4096;

impl Framing {
    pub fn chunked() -> Framing {
        Framing::Chunked(Chunk::Size)
    }

    /// The body is over (the connection may carry another exchange).
    pub fn is_done(&self) -> bool {
        matches!(self, Framing::Length(0) | Framing::Chunked(Chunk::Done))
    }

    /// Whether the connection closing now is the body's proper end.
    pub fn ends_at_close(&self) -> bool {
        matches!(self, Framing::UntilClose) || self.is_done()
    }

    /// Remove the framing from `input`: every body byte in it is appended to `data` (at most `input.len()`
    /// bytes). Returns how many input bytes were used; the rest is an unfinished framing line, to be decoded again
    /// with more bytes.
    pub fn decode(&mut self, input: &[u8], data: &mut BytesMut) -> Result<usize, &'static str> {
        match self {
            Framing::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(input.len());
                *left -= n as u64;
                data.extend_from_slice(&input[..n]);
                Ok(n)
            }
            Framing::UntilClose => {
                data.extend_from_slice(input);
                Ok(input.len())
            }
            Framing::Chunked(state) => decode_chunked(state, input, data),
        }
    }
}

fn decode_chunked(state: &mut Chunk, input: &[u8], data: &mut BytesMut) -> Result<usize, &'static str> {
    let mut at = 0;
    loop {
        let rest = &input[at..];
        match *state {
            Chunk::Done => break,
            Chunk::Data(left) => {
                if rest.is_empty() {
                    break;
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                data.extend_from_slice(&rest[..n]);
                at += n;
                *state = if left == n as u64 { Chunk::DataEnd } else { Chunk::Data(left - n as u64) };
            }
            Chunk::DataEnd => match rest {
                [b'\r', b'\n', ..] => {
                    at += 2;
                    *state = Chunk::Size;
                }
                [b'\n', ..] => {
                    at += 1;
                    *state = Chunk::Size;
                }
                [] | [b'\r'] => break,
                _ => return Err("no line break after a chunk"),
            },
            Chunk::Size | Chunk::Trailers => {
                let Some(end) = memchr::memchr(b'\n', rest) else {
                    if rest.len() > MAX_LINE {
                        return Err("a chunk line too long");
                    }
                    break;
                };
                let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
                at += end + 1;
                if *state == Chunk::Trailers {
                    if line.is_empty() {
                        *state = Chunk::Done;
                    }
                    continue;
                }
                let size = chunk_size(line)?;
                *state = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
            }
        }
    }
    Ok(at)
}

/// The hexadecimal size at the start of a chunk-size line; extensions (`;name=value`) are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let digits = line.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err("an invalid chunk size");
    }
    let mut size = 0u64;
    for d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err("an invalid chunk size"),
        };
        size = size * 16 + u64::from(v);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every body byte of a read comes out in one buffer, whatever the chunk boundaries, and a read that ends
    /// mid-line leaves that line to be decoded again with the next bytes.
    #[test]
    fn chunks_of_one_read_come_out_together_across_any_split() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n1\r\n!\r\n0\r\nx-trailer: 1\r\n\r\n";
        for split in 0..=wire.len() {
            let mut framing = Framing::chunked();
            let mut body = BytesMut::new();
            let mut carry = Vec::new();
            for piece in [&wire[..split], &wire[split..]] {
                carry.extend_from_slice(piece);
                let consumed = framing.decode(&carry, &mut body).unwrap_or_else(|e| panic!("split {split}: {e}"));
                carry.drain(..consumed);
            }
            assert_eq!(&body[..], b"hello, world!", "split at {split}");
            assert!(framing.is_done() && carry.is_empty(), "split at {split}: {framing:?} {carry:?}");
        }
        let (mut framing, mut data) = (Framing::chunked(), BytesMut::new());
        assert_eq!(framing.decode(wire, &mut data), Ok(wire.len()));
        assert_eq!(&data[..], b"hello, world!");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for wire in [&b"zz\r\n"[..], b"5\r\nhelloXX", b"\r\n", b"1234567890abcdef0\r\n"] {
            let mut data = BytesMut::new();
            assert!(Framing::chunked().decode(wire, &mut data).is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
        assert!(Framing::chunked().decode(&[b'1'; MAX_LINE + 1], &mut BytesMut::new()).is_err());
        assert!(!Framing::chunked().ends_at_close());
    }

    #[test]
    fn lengths_and_close_delimited_bodies() {
        let (mut framing, mut data) = (Framing::Length(5), BytesMut::new());
        assert_eq!(framing.decode(b"hel", &mut data), Ok(3));
        assert_eq!(framing.decode(b"lo, extra", &mut data), Ok(2));
        assert_eq!(&data[..], b"hello");
        assert!(framing.is_done());
        let (mut framing, mut data) = (Framing::UntilClose, BytesMut::new());
        assert_eq!(framing.decode(b"abc", &mut data), Ok(3));
        assert_eq!(&data[..], b"abc");
        assert!(framing.ends_at_close() && !framing.is_done());
    }
}
