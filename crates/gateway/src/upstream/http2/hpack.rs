//! Header blocks (HPACK, RFC 7541): the request's, encoded here, and the response's, decoded by
//! [`super::hpack_decoder`] and checked as a response (RFC 9113 §8.3.2).
//!
//! The request block is encoded by hand because it is simple and the encoders at hand do what a client must
//! not: they add every new field to the dynamic table, the bearer token included (mature clients never index
//! `Authorization`; a pool of accounts would churn the table with ~1–2 KB tokens). Every field is sent as a
//! literal without indexing (sensitive ones never indexed), names and values unencoded: Huffman coding the
//! literals was a third of h2's HPACK cost per request (bench/notes.md) for a few hundred bytes saved. The block
//! starts with a dynamic table size update to 0, so the server's decoder holds nothing for this connection
//! whatever SETTINGS_HEADER_TABLE_SIZE it later announces.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};

use super::hpack_decoder::Decoder;

/// The dynamic table this client lets the server use for the response headers (the protocol's default).
pub const TABLE_SIZE: usize = 4096;
/// The most decoded header bytes (names, values and 32 bytes each, as RFC 9113 counts them) one response may
/// carry; more is refused as a stream error.
pub const MAX_HEADER_LIST: usize = 64 * 1024;

// Static table indices (RFC 7541 Appendix A).
const AUTHORITY: usize = 1;
const METHOD_POST: usize = 3;
const PATH: usize = 4;
const SCHEME_HTTP: usize = 6;
const SCHEME_HTTPS: usize = 7;

/// Fields HTTP/2 does not allow (RFC 9113 §8.2.2) or that travel as pseudo-headers; dropped from requests.
fn connection_specific(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::HOST
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Fields whose values are secrets: sent never-indexed, so no intermediary caches them in a table either.
fn sensitive(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION || name == header::COOKIE || name == header::PROXY_AUTHORIZATION
}

/// Append the header block of `POST uri` with `headers` and `content-length: body_len` to `out`.
pub fn encode_request(out: &mut Vec<u8>, uri: &Uri, headers: &HeaderMap, body_len: usize) {
    // Dynamic table size update to 0 (prefix 001xxxxx).
    integer(out, 0, 5, 0x20);
    indexed(out, METHOD_POST);
    indexed(out, if uri.scheme_str() == Some("https") { SCHEME_HTTPS } else { SCHEME_HTTP });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    literal_indexed_name(out, PATH, path.as_bytes());
    if let Some(authority) = uri.authority() {
        literal_indexed_name(out, AUTHORITY, authority.as_str().as_bytes());
    }
    for (name, value) in headers {
        if connection_specific(name) || name == header::CONTENT_LENGTH {
            continue;
        }
        literal(out, name.as_str().as_bytes(), value.as_bytes(), sensitive(name));
    }
    let mut len = itoa::Buffer::new();
    literal(out, header::CONTENT_LENGTH.as_str().as_bytes(), len.format(body_len).as_bytes(), false);
}

fn indexed(out: &mut Vec<u8>, index: usize) {
    integer(out, index, 7, 0x80);
}

/// Literal without indexing, name from the static table (prefix 0000xxxx).
fn literal_indexed_name(out: &mut Vec<u8>, index: usize, value: &[u8]) {
    integer(out, index, 4, 0x00);
    string(out, value);
}

/// Literal with a new name, without indexing (0x00) or never indexed (0x10).
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8], never_indexed: bool) {
    out.push(if never_indexed { 0x10 } else { 0x00 });
    string(out, name);
    string(out, value);
}

fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    integer(out, bytes.len(), 7, 0x00);
    out.extend_from_slice(bytes);
}

/// An integer with a `prefix`-bit prefix after the bits `leading` (RFC 7541 §5.1).
fn integer(out: &mut Vec<u8>, mut value: usize, prefix: u8, leading: u8) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(leading | value as u8);
        return;
    }
    out.push(leading | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// What a response header block said.
#[derive(Debug)]
pub enum Decoded {
    /// A final response's status and fields.
    Response(StatusCode, HeaderMap),
    /// An interim (1xx) response, to be skipped.
    Interim,
    /// Trailers (a block after the response's), which the gateway does not use.
    Trailers,
}

/// Why a response header block is malformed (RFC 9113 §8.1.1): a stream error, the connection goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the upstream's response headers have no valid :status")]
    Status,
    #[error("the upstream's response headers carry an invalid field")]
    Field,
    #[error("the upstream's response headers are larger than {MAX_HEADER_LIST} bytes")]
    TooLarge,
}

/// Decode a complete header block. `Err(None)`: the block could not be decoded (a connection error: the shared
/// table is out of step). `Err(Some(_))`: the fields are not a valid response (a stream error). `trailers`: the
/// stream already has its response headers.
pub fn decode_response(decoder: &mut Decoder, block: &[u8], trailers: bool) -> Result<Decoded, Option<Malformed>> {
    let mut status = None;
    let mut fields = HeaderMap::new();
    let mut problem = None;
    let mut size = 0;
    let mut regular_seen = false;
    let decoded = decoder.decode(block, |name: &[u8], value: &[u8]| {
        if problem.is_some() {
            return;
        }
        size += name.len() + value.len() + 32;
        if size > MAX_HEADER_LIST {
            problem = Some(Malformed::TooLarge);
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if pseudo != b"status" || status.is_some() || regular_seen || trailers {
                problem = Some(Malformed::Field);
                return;
            }
            match StatusCode::from_bytes(value) {
                Ok(code) => status = Some(code),
                Err(_) => problem = Some(Malformed::Status),
            }
            return;
        }
        regular_seen = true;
        if trailers {
            return;
        }
        // HTTP/2 field names are lowercase (RFC 9113 §8.2.1); `from_bytes` would fold an uppercase one.
        if name.iter().any(u8::is_ascii_uppercase) {
            problem = Some(Malformed::Field);
            return;
        }
        match (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            (Ok(name), Ok(value)) if !connection_specific(&name) => {
                fields.append(name, value);
            }
            _ => problem = Some(Malformed::Field),
        }
    });
    if decoded.is_err() {
        return Err(None);
    }
    if let Some(problem) = problem {
        return Err(Some(problem));
    }
    if trailers {
        return Ok(Decoded::Trailers);
    }
    match status {
        Some(code) if code == StatusCode::SWITCHING_PROTOCOLS => Err(Some(Malformed::Status)),
        Some(code) if code.is_informational() => Ok(Decoded::Interim),
        Some(code) => Ok(Decoded::Response(code, fields)),
        None => Err(Some(Malformed::Status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request block decodes (by the same crate the server side of many Rust stacks uses) to the request,
    /// with connection-specific fields dropped and the length set.
    #[test]
    fn a_request_block_decodes_to_the_request() {
        let uri: Uri = "https://chatgpt.com/backend-api/codex/responses?x=1".parse().unwrap_or_else(|e| panic!("{e}"));
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer secret"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert(header::HOST, HeaderValue::from_static("chatgpt.com"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert("session_id", HeaderValue::from_static("s1"));
        let mut block = Vec::new();
        encode_request(&mut block, &uri, &headers, 12);
        let mut decoder = loona_hpack::Decoder::new();
        let fields = decoder.decode(&block).unwrap_or_else(|e| panic!("{e}"));
        let text: Vec<(String, String)> = fields
            .iter()
            .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let pairs: Vec<(&str, &str)> = text.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                (":method", "POST"),
                (":scheme", "https"),
                (":path", "/backend-api/codex/responses?x=1"),
                (":authority", "chatgpt.com"),
                ("authorization", "Bearer secret"),
                ("session_id", "s1"),
                ("content-length", "12"),
            ]
        );
        // The token is never indexed (0x10 before its name).
        let at = block.windows(14).position(|w| w == b"\x0dauthorization").unwrap_or_else(|| panic!("no name"));
        assert_eq!(block[at - 1], 0x10);
    }

    fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut encoder = loona_hpack::Encoder::new();
        encoder.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    #[test]
    fn response_blocks_are_checked() {
        let mut decoder = Decoder::new(TABLE_SIZE);
        let ok = decode_response(&mut decoder, &block(&[(":status", "200"), ("x-codex-a", "1")]), false);
        match ok {
            Ok(Decoded::Response(status, fields)) => {
                assert_eq!(status, StatusCode::OK);
                assert_eq!(fields.get("x-codex-a").map(|v| v.as_bytes()), Some(&b"1"[..]));
            }
            other => panic!("{other:?}"),
        }
        let cases: [(&[(&str, &str)], Malformed); 5] = [
            (&[("x-a", "1")], Malformed::Status),
            (&[(":status", "abc")], Malformed::Status),
            (&[(":status", "200"), (":path", "/")], Malformed::Field),
            (&[("x-a", "1"), (":status", "200")], Malformed::Field),
            (&[(":status", "200"), ("connection", "close")], Malformed::Field),
        ];
        for (fields, expected) in cases {
            let mut decoder = Decoder::new(TABLE_SIZE);
            let got = decode_response(&mut decoder, &block(fields), false);
            assert!(matches!(got, Err(Some(m)) if m == expected), "{fields:?}: {got:?}");
        }
        let mut decoder = Decoder::new(TABLE_SIZE);
        let interim = decode_response(&mut decoder, &block(&[(":status", "103")]), false);
        assert!(matches!(interim, Ok(Decoded::Interim)), "{interim:?}");
        let big = "x".repeat(MAX_HEADER_LIST);
        let too_large = decode_response(&mut decoder, &block(&[(":status", "200"), ("x-big", &big)]), false);
        assert!(matches!(too_large, Err(Some(Malformed::TooLarge))), "{too_large:?}");
        assert!(matches!(decode_response(&mut decoder, &[0xff, 0xff, 0xff, 0xff], false), Err(None)));
    }
}
