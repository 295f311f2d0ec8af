//! The HPACK decoder (RFC 7541) for the server's header blocks: integers, string literals (Huffman-coded ones
//! through `httlib-huffman`'s table-driven decoder), the static table and the dynamic table the server fills.
//!
//! Why by hand: the HPACK crates at hand either rebuild a hash map of the whole Huffman code for every string
//! they decode (loona-hpack and the hpack crate it forked: ~10% of the gateway's CPU on an HTTP/2 burst, perf)
//! or copy every field twice and shift the block after each one (httlib-hpack). This decoder hands each field
//! to the caller as borrowed bytes and keeps one reusable buffer for Huffman output.

use std::collections::VecDeque;

/// Why a header block could not be decoded: a connection error (COMPRESSION_ERROR), since the table the
/// blocks share is now out of step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an undecodable HPACK header block")]
pub struct DecodeError;

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Size an entry counts in the dynamic table (RFC 7541 §4.1).
fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

pub struct Decoder {
    /// Newest entry first (index 62).
    dynamic: VecDeque<Entry>,
    size: usize,
    /// The table's current maximum (set by the server's size updates) and the most it may set
    /// (this client's SETTINGS_HEADER_TABLE_SIZE).
    max_size: usize,
    allowed: usize,
    /// Huffman output of the field being decoded (name, value), reused.
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

/// Where a string literal's bytes are: in the block, or decoded into one of the decoder's buffers.
#[derive(Clone, Copy)]
enum Text {
    Block(usize, usize),
    /// The name of a table entry.
    Table(usize),
    Name,
    Value,
}

impl Decoder {
    pub fn new(allowed: usize) -> Decoder {
        Decoder {
            dynamic: VecDeque::new(),
            size: 0,
            max_size: allowed,
            allowed,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Decode `block`, handing each field to `field(name, value)` in order.
    pub fn decode(&mut self, block: &[u8], mut field: impl FnMut(&[u8], &[u8])) -> Result<(), DecodeError> {
        let mut at = 0;
        let mut fields_seen = false;
        while at < block.len() {
            let first = block[at];
            if first & 0x80 != 0 {
                let index = integer(block, &mut at, 7)?;
                let (name, value) = self.entry(index)?;
                field(name, value);
            } else if first & 0xe0 == 0x20 {
                // A size update, allowed only before the block's first field (RFC 7541 §4.2).
                let size = integer(block, &mut at, 5)?;
                if fields_seen || size > self.allowed {
                    return Err(DecodeError);
                }
                self.max_size = size;
                self.evict(0);
                continue;
            } else {
                let (prefix, indexing) = if first & 0x40 != 0 { (6, true) } else { (4, false) };
                let index = integer(block, &mut at, prefix)?;
                let name = if index == 0 { self.string(block, &mut at, Text::Name)? } else { self.check(index)? };
                let value = self.string(block, &mut at, Text::Value)?;
                let name_bytes = self.text(block, name);
                let value_bytes = self.text(block, value);
                field(name_bytes, value_bytes);
                if indexing {
                    let entry: Entry = (name_bytes.into(), value_bytes.into());
                    self.insert(entry);
                }
            }
            fields_seen = true;
        }
        Ok(())
    }

    /// The name and value at `index` of the static and dynamic tables.
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), DecodeError> {
        match index {
            0 => Err(DecodeError),
            1..=61 => STATIC_TABLE.get(index - 1).map(|(n, v)| (n.as_bytes(), v.as_bytes())).ok_or(DecodeError),
            _ => self.dynamic.get(index - 62).map(|(n, v)| (&**n, &**v)).ok_or(DecodeError),
        }
    }

    /// An indexed name, checked to exist (read later with [`Self::text`]).
    fn check(&self, index: usize) -> Result<Text, DecodeError> {
        self.entry(index).map(|_| Text::Table(index))
    }

    /// A string literal at `at`: its place in the block, or Huffman-decoded into `into`'s buffer.
    fn string(&mut self, block: &[u8], at: &mut usize, into: Text) -> Result<Text, DecodeError> {
        let huffman = block.get(*at).ok_or(DecodeError)? & 0x80 != 0;
        let len = integer(block, at, 7)?;
        let end = at.checked_add(len).filter(|end| *end <= block.len()).ok_or(DecodeError)?;
        let bytes = &block[*at..end];
        *at = end;
        if !huffman {
            return Ok(Text::Block(end - len, end));
        }
        let buf = if matches!(into, Text::Name) { &mut self.name_buf } else { &mut self.value_buf };
        buf.clear();
        httlib_huffman::decode(bytes, buf, httlib_huffman::DecoderSpeed::FourBits).map_err(|_| DecodeError)?;
        Ok(into)
    }

    /// The bytes of `text`.
    fn text<'a>(&'a self, block: &'a [u8], text: Text) -> &'a [u8] {
        match text {
            Text::Table(index) => self.entry(index).map_or(&[][..], |(name, _)| name),
            Text::Block(from, to) => block.get(from..to).unwrap_or_default(),
            Text::Name => &self.name_buf,
            Text::Value => &self.value_buf,
        }
    }

    fn insert(&mut self, (name, value): Entry) {
        let size = entry_size(&name, &value);
        if size > self.max_size {
            // Larger than the table: it empties the table and is not added (RFC 7541 §4.4).
            self.dynamic.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.dynamic.push_front((name, value));
    }

    /// Evict the oldest entries until `room` more fits under the maximum.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            let Some((name, value)) = self.dynamic.pop_back() else { break };
            self.size -= entry_size(&name, &value);
        }
    }
}

/// An integer with an `prefix`-bit prefix at `at` (RFC 7541 §5.1); `at` moves past it. Values above 2^28 are
/// refused (nothing in a header block is that large).
fn integer(block: &[u8], at: &mut usize, prefix: u8) -> Result<usize, DecodeError> {
    let mask = (1usize << prefix) - 1;
    let mut value = usize::from(*block.get(*at).ok_or(DecodeError)?) & mask;
    *at += 1;
    if value < mask {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let byte = *block.get(*at).ok_or(DecodeError)?;
        *at += 1;
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return if value <= 1 << 28 { Ok(value) } else { Err(DecodeError) };
        }
        shift += 7;
        if shift > 21 {
            return Err(DecodeError);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
        let mut fields = Vec::new();
        decoder.decode(block, |n, v| {
            fields.push((String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
        })?;
        Ok(fields)
    }

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap_or("00"), 16).unwrap_or(0))
            .collect()
    }

    /// RFC 7541 Appendix C.6: three responses with Huffman-coded literals sharing a 256-byte dynamic table,
    /// whose entries are evicted as the blocks go on.
    #[test]
    fn the_rfc_response_examples_decode() {
        let mut decoder = Decoder::new(4096);
        decoder.max_size = 256;
        let first =
            hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad \
             1718 63c7 8f0b 97c8 e9ae 82ae 43d3");
        let fields = decode_all(&mut decoder, &first).unwrap_or_else(|e| panic!("{e}"));
        let expected = [
            (":status", "302"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ];
        assert_eq!(fields, expected.map(|(n, v)| (n.to_string(), v.to_string())));
        assert_eq!(decoder.size, 222);
        let second = hex("4883 640e ffc1 c0bf");
        let fields = decode_all(&mut decoder, &second).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fields[0], (":status".to_string(), "307".to_string()));
        assert_eq!(fields[2], ("date".to_string(), "Mon, 21 Oct 2013 20:13:21 GMT".to_string()));
        assert_eq!(fields[3], ("location".to_string(), "https://www.example.com".to_string()));
        assert_eq!(decoder.size, 222);
        let third =
            hex("88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 \
             e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07");
        let fields = decode_all(&mut decoder, &third).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fields[0], (":status".to_string(), "200".to_string()));
        assert_eq!(fields[2], ("date".to_string(), "Mon, 21 Oct 2013 20:13:22 GMT".to_string()));
        assert_eq!(fields[4], ("content-encoding".to_string(), "gzip".to_string()));
        assert_eq!(
            fields[5],
            ("set-cookie".to_string(), "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1".to_string())
        );
        assert_eq!(decoder.size, 215);
    }

    /// Against an independent encoder (loona-hpack's, which indexes every new field): many blocks sharing one
    /// table, entries evicted along the way, decode to what was encoded.
    #[test]
    fn blocks_sharing_a_table_decode_to_what_was_encoded() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut decoder = Decoder::new(4096);
        for round in 0..200 {
            let fields: Vec<(String, String)> = (0..(round % 7 + 1))
                .map(|i| (format!("x-field-{}", (round * 3 + i) % 23), "v".repeat((round * 13 + i * 7) % 300)))
                .chain([(":status".to_string(), "200".to_string())])
                .collect();
            let block = encoder.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
            assert_eq!(decode_all(&mut decoder, &block), Ok(fields), "round {round}");
            assert!(decoder.size <= 4096);
        }
    }

    #[test]
    fn malformed_blocks_are_errors() {
        let cases: [&[u8]; 7] = [
            &[0x80],                         // index 0
            &[0xbf, 0x7f],                   // an index past both tables
            &[0x40, 0x05, b'a'],             // a name longer than the block
            &[0x3f, 0xe2, 0x1f],             // a size update to 4097, above the allowed 4096
            &[0x88, 0x20],                   // a size update after a field
            &[0x0f, 0xff, 0xff, 0xff, 0xff], // an integer too long
            &[0x00, 0x81, 0xff, 0x00],       // Huffman padding longer than 7 bits
        ];
        for block in cases {
            let mut decoder = Decoder::new(4096);
            assert_eq!(decode_all(&mut decoder, block), Err(DecodeError), "{block:02x?}");
        }
    }
}
