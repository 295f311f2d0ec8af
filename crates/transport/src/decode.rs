//! Compressed answers decoded: an answer with `Content-Encoding: zstd` or `gzip` (which the official client asks
//! for since 0.171 with `accept-encoding: zstd,gzip`) becomes the plain bytes it stands for. A streamed answer is
//! decoded as it streams, each piece handed on as soon as it decodes, so an event still reaches the client when it
//! arrives ([`decoded`]); the small JSON answers of the calls beside the turns are decoded whole ([`decode_whole`]).

use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};

use crate::{Body, BodyStream, TransportError, UpstreamResponse};

/// The response with its body decoded when its content coding is one the gateway asks for; as it came otherwise
/// (no coding, `identity`, or one never asked for, which the caller then reads as it is).
pub fn decoded(mut response: UpstreamResponse) -> UpstreamResponse {
    let decoder = match coding(&response.headers) {
        Some(Coding::Zstd) => zstd::stream::write::Decoder::new(Vec::new()).ok().map(Decoder::Zstd),
        Some(Coding::Gzip) => Some(Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new())))),
        None => None,
    };
    let Some(decoder) = decoder else { return response };
    response.headers.remove(CONTENT_ENCODING);
    response.headers.remove(CONTENT_LENGTH);
    response.body = Box::pin(Decoded { inner: response.body, decoder: Some(decoder) });
    response
}

/// A content coding the gateway asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Zstd,
    Gzip,
}

/// The answer's content coding, when it is one the gateway asks for (`None`: no coding, `identity`, or another).
fn coding(headers: &http::HeaderMap) -> Option<Coding> {
    let value = headers.get(CONTENT_ENCODING)?.to_str().ok()?.trim();
    if value.eq_ignore_ascii_case("zstd") {
        Some(Coding::Zstd)
    } else if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
        Some(Coding::Gzip)
    } else {
        None
    }
}

/// A whole answer's body decoded by the content coding its `headers` name (as it came without one, or with one the
/// gateway never asks for); an error when it does not decode or decodes to more than `limit` bytes.
pub fn decode_whole(headers: &http::HeaderMap, body: Bytes, limit: u64) -> std::io::Result<Bytes> {
    let mut out = Vec::new();
    match coding(headers) {
        None => return Ok(body),
        Some(Coding::Zstd) => zstd::stream::read::Decoder::new(&body[..])?.take(limit + 1).read_to_end(&mut out)?,
        Some(Coding::Gzip) => flate2::read::GzDecoder::new(&body[..]).take(limit + 1).read_to_end(&mut out)?,
    };
    if out.len() as u64 > limit {
        let text = format!("the upstream's compressed answer decodes to more than {limit} bytes");
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, text));
    }
    Ok(Bytes::from(out))
}

enum Decoder {
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
}

impl Decoder {
    /// Decode `data`, returning what it decoded to (nothing yet when it ends inside a block).
    fn push(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Decoder::Zstd(d) => {
                d.write_all(data)?;
                d.flush()?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Gzip(d) => {
                d.write_all(data)?;
                d.flush()?;
                Ok(std::mem::take(d.get_mut()))
            }
        }
    }

    /// The end of the input: what is left, or an error when the input stopped inside a frame.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Decoder::Zstd(mut d) => {
                d.flush()?;
                Ok(d.into_inner())
            }
            Decoder::Gzip(d) => d.finish(),
        }
    }
}

struct Decoded {
    inner: BodyStream,
    decoder: Option<Decoder>,
}

fn corrupt(e: std::io::Error) -> TransportError {
    let text = format!("the upstream's compressed answer could not be decoded: {e}");
    TransportError::of(std::io::Error::new(std::io::ErrorKind::InvalidData, text))
}

impl Stream for Decoded {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let Some(decoder) = this.decoder.as_mut() else { return Poll::Ready(None) };
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(data))) => match decoder.push(&data) {
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Poll::Ready(Some(Ok(Bytes::from(out)))),
                    Err(e) => {
                        this.decoder = None;
                        return Poll::Ready(Some(Err(corrupt(e))));
                    }
                },
                Poll::Ready(None) => {
                    return match this.decoder.take().map(Decoder::finish) {
                        Some(Ok(out)) if !out.is_empty() => Poll::Ready(Some(Ok(Bytes::from(out)))),
                        Some(Err(e)) => Poll::Ready(Some(Err(corrupt(e)))),
                        Some(Ok(_)) | None => Poll::Ready(None),
                    };
                }
            }
        }
    }
}

impl Body for Decoded {
    fn answered(self: Pin<&mut Self>) {
        self.get_mut().inner.as_mut().answered();
    }

    fn handed_over_one_at_a_time(&self) -> bool {
        self.inner.handed_over_one_at_a_time()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http::{HeaderMap, HeaderValue, StatusCode};

    fn response(coding: &str, pieces: Vec<Vec<u8>>) -> UpstreamResponse {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, HeaderValue::from_str(coding).unwrap_or(HeaderValue::from_static("x")));
        let stream = futures_util::stream::iter(pieces.into_iter().map(|p| Ok(Bytes::from(p))));
        UpstreamResponse { status: StatusCode::OK, headers, body: Box::pin(crate::Plain::new(stream)) }
    }

    async fn read_all(mut r: UpstreamResponse) -> (Vec<Vec<u8>>, Option<String>) {
        let mut out = Vec::new();
        while let Some(piece) = r.body.next().await {
            match piece {
                Ok(b) => out.push(b.to_vec()),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
        (out, None)
    }

    /// A whole answer decodes by its coding; one it never asked for, or none, comes as it is; a bomb over the
    /// limit and garbage are errors.
    #[test]
    fn a_whole_answer_decodes_by_its_coding() {
        let json = br#"{"models":[{"slug":"gpt-5.4"}]}"#;
        let zstd = zstd::stream::encode_all(&json[..], 3).unwrap_or_default();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = gz.write_all(json);
        let gzip = gz.finish().unwrap_or_default();
        let with = |coding: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_ENCODING, HeaderValue::from_str(coding).unwrap_or(HeaderValue::from_static("x")));
            h
        };
        let whole = |h: &HeaderMap, b: &[u8], limit| decode_whole(h, Bytes::copy_from_slice(b), limit);
        assert_eq!(whole(&with("zstd"), &zstd, 1 << 20).ok().as_deref(), Some(&json[..]));
        assert_eq!(whole(&with(" GZIP "), &gzip, 1 << 20).ok().as_deref(), Some(&json[..]));
        assert_eq!(whole(&HeaderMap::new(), json, 1 << 20).ok().as_deref(), Some(&json[..]));
        assert_eq!(whole(&with("br"), b"as it came", 1 << 20).ok().as_deref(), Some(&b"as it came"[..]));
        assert!(whole(&with("zstd"), &zstd, 10).is_err(), "over the limit");
        assert!(whole(&with("zstd"), b"not zstd at all", 1 << 20).is_err());
        assert!(whole(&with("gzip"), &gzip[..gzip.len() / 2], 1 << 20).is_err(), "cut short");
    }

    /// Each event flushed by the encoder comes out as soon as its compressed bytes arrived, whole.
    #[tokio::test]
    async fn a_zstd_stream_decodes_event_by_event() {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap_or_else(|e| panic!("{e}"));
        let mut pieces = Vec::new();
        for event in ["data: one\n\n", "data: two\n\n"] {
            enc.write_all(event.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            enc.flush().unwrap_or_else(|e| panic!("{e}"));
            pieces.push(std::mem::take(enc.get_mut()));
        }
        pieces.push(enc.finish().unwrap_or_else(|e| panic!("{e}")));
        let r = decoded(response("zstd", pieces));
        assert!(r.headers.get(CONTENT_ENCODING).is_none());
        let (out, err) = read_all(r).await;
        assert_eq!(err, None);
        assert_eq!(out, vec![b"data: one\n\n".to_vec(), b"data: two\n\n".to_vec()]);
    }

    #[tokio::test]
    async fn gzip_decodes_and_a_broken_stream_is_an_error() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"data: hi\n\n").unwrap_or_else(|e| panic!("{e}"));
        let whole = enc.finish().unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = whole.split_at(5);
        let (out, err) = read_all(decoded(response("gzip", vec![a.to_vec(), b.to_vec()]))).await;
        assert_eq!((out.concat(), err), (b"data: hi\n\n".to_vec(), None));
        let (_, err) = read_all(decoded(response("zstd", vec![b"not zstd at all".to_vec()]))).await;
        assert!(err.is_some_and(|e| e.contains("could not be decoded")), "garbage is an error");
        let (out, _) = read_all(decoded(response("br", vec![b"as it came".to_vec()]))).await;
        assert_eq!(out.concat(), b"as it came".to_vec(), "a coding never asked for is passed on");
    }
}
